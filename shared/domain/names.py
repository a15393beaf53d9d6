"""Azure ML online endpoint and deployment names derived from repositories and digests.

Azure's grammar: 3-32 characters, a letter first, then letters, digits and
hyphens (we also never end on a hyphen). Derivation is deterministic; a name
that must be cut or padded carries a short hash of the full input so two long
names that share a prefix stay distinct. Sanitising alone is not injective
(`a/b` and `a-b` both give `a-b`): configure a template when that matters.

An online endpoint's name must be unique in its Azure region across every
customer ("Endpoint name: ... It must be unique in the Azure region",
learn.microsoft.com/azure/machine-learning/how-to-deploy-online-endpoints and
concept-endpoints-online): the name also makes its scoring host,
`<name>.<region>.inference.ml.azure.com`. A name made from the repository alone
(`models-llm`) would collide with anyone else's, so the default template adds
`{instance}`, a short identifier of this georollout deployment.
"""

from __future__ import annotations

import hashlib
import re
import string

NAME_MIN_LENGTH = 3
NAME_MAX_LENGTH = 32
_HASH_LENGTH = 6
_AZURE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$", re.IGNORECASE)
_NOT_ALLOWED = re.compile(r"[^a-z0-9]+")
TEMPLATE_FIELDS = frozenset({"repository", "name", "instance"})
# The whole repository, not just its last component: `team-a/llm` and `team-b/llm` must
# not share (and so supersede each other on) one endpoint.
DEFAULT_ENDPOINT_TEMPLATE = "{repository}-{instance}"
# An instance name is a suffix, not a name of its own: short (it shares the 32 characters
# with the repository), lowercase letters, digits and inner hyphens.
INSTANCE_NAME_MAX_LENGTH = 12
_INSTANCE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?")
# 8 hex digits (32 bits): two deployments share a name by chance with odds ~1 in 4 billion,
# and even then only for repositories of the same name deployed to the same region.
_INSTANCE_HASH_LENGTH = 8


def is_valid_azure_name(name: str) -> bool:
    """True when `name` obeys the endpoint/deployment name grammar."""
    return bool(_AZURE_NAME.match(name))


def _short_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:_HASH_LENGTH]


def azure_name(raw: str, *, prefix: str = "m") -> str:
    """Turn any string into a valid Azure name; `prefix` (a letter) leads when `raw` does not start with one."""
    cleaned = _NOT_ALLOWED.sub("-", raw.lower()).strip("-")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = f"{prefix}-{cleaned}".rstrip("-")
    if len(cleaned) > NAME_MAX_LENGTH:
        keep = NAME_MAX_LENGTH - _HASH_LENGTH - 1
        cleaned = f"{cleaned[:keep].rstrip('-')}-{_short_hash(raw)}"
    elif len(cleaned) < NAME_MIN_LENGTH:
        cleaned = f"{cleaned}-{_short_hash(raw)}"
    return cleaned


def validate_endpoint_template(template: str) -> None:
    """Raise ValueError when `template` uses a placeholder other than {repository}, {name}
    and {instance} (or is not a format string)."""
    for field in _placeholders(template):
        if field not in TEMPLATE_FIELDS:
            raise ValueError(
                f"endpoint template {template!r}: unknown placeholder {{{field}}}; "
                "use {repository}, {name} or {instance}"
            )


def uses_instance(template: str) -> bool:
    """True when `template` has the `{instance}` placeholder."""
    return "instance" in _placeholders(template)


def validate_instance_name(instance: str) -> str:
    """`instance` when it is 1-12 lowercase letters, digits and inner hyphens; else ValueError."""
    if not _INSTANCE_NAME.fullmatch(instance):
        raise ValueError(
            f"instance name {instance!r} must be 1-{INSTANCE_NAME_MAX_LENGTH} lowercase letters, "
            "digits and hyphens, starting and ending with a letter or digit"
        )
    return instance


def derive_instance_name(registry_login_server: str, primary_workspace_id: str) -> str:
    """The default instance name: a short hash of what makes this georollout deployment
    itself, the registry it watches and the workspace of its primary region.

    Every process of the deployment reads the same two settings, so all derive the same
    name. Both are compared case-insensitively, as Azure does (ARM ids and host names).
    """
    identity = f"{registry_login_server.strip().lower()}\n{primary_workspace_id.strip().lower()}"
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:_INSTANCE_HASH_LENGTH]


def bind_instance(template: str, instance: str) -> str:
    """`template` with `{instance}` replaced by `instance` (validated); other placeholders
    and literal text are kept, so the result is still a template."""
    validate_endpoint_template(template)
    validate_instance_name(instance)
    parts: list[str] = []
    for literal, field, _, _ in string.Formatter().parse(template):
        parts.append(literal.replace("{", "{{").replace("}", "}}"))
        if field is not None:
            parts.append(instance if field == "instance" else f"{{{field}}}")
    return "".join(parts)


def endpoint_name(template: str, repository: str, *, instance: str | None = None) -> str:
    """The online endpoint name for `repository`: `template` filled in, then made a valid name.

    Placeholders: `{repository}` (the whole path), `{name}` (its last component) and
    `{instance}` (this georollout deployment's instance name; required when used).
    """
    validate_endpoint_template(template)
    if instance is None and uses_instance(template):
        raise ValueError(f"endpoint template {template!r} uses {{instance}}: give an instance name")
    filled = template.format(
        repository=repository,
        name=repository.rsplit("/", 1)[-1],
        instance=validate_instance_name(instance) if instance is not None else "",
    )
    return azure_name(filled, prefix="ep")


def _placeholders(template: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ValueError(f"endpoint template {template!r} is malformed: {error}") from None
    fields: list[str] = []
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if spec or conversion:
            raise ValueError(
                f"endpoint template {template!r}: {{{field}}} takes no format spec or conversion"
            )
        fields.append(field)
    return fields


def deployment_name(digest: str, *, generation: int = 1, attempt: int = 1) -> str:
    """The deployment name for `digest` (unique within its endpoint), e.g. `sha256-213bbc182920`.

    A later generation of the same digest (a rollback by re-tagging) gets `-g<n>`, and an
    operator's retry `-a<n>`, so neither collides with a deployment an earlier one created
    (which may still be being deleted).
    """
    algorithm, _, hexpart = digest.partition(":")
    base = azure_name(f"{algorithm}-{hexpart[:12]}", prefix="d")
    name = base if generation <= 1 else f"{base}-g{generation}"
    name = name if attempt <= 1 else f"{name}-a{attempt}"
    return name if is_valid_azure_name(name) else azure_name(name, prefix="d")
