"""Azure ML online endpoint and deployment names derived from repositories and digests.

Azure's grammar: 3-32 characters, a letter first, then letters, digits and
hyphens (we also never end on a hyphen). Derivation is deterministic; a name
that must be cut or padded carries a short hash of the full input so two long
names that share a prefix stay distinct. Sanitising alone is not injective
(`a/b` and `a-b` both give `a-b`): configure a template when that matters.
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
TEMPLATE_FIELDS = frozenset({"repository", "name"})


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
    """Raise ValueError when `template` uses a placeholder other than {repository} and {name}."""
    for _, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if field not in TEMPLATE_FIELDS or spec or conversion:
            raise ValueError(
                f"endpoint template {template!r}: unknown placeholder {{{field}}}; "
                f"use {{repository}} or {{name}}"
            )


def endpoint_name(template: str, repository: str) -> str:
    """The online endpoint name for `repository`: `template` filled in, then made a valid name.

    Placeholders: `{repository}` (the whole path) and `{name}` (its last component).
    """
    validate_endpoint_template(template)
    filled = template.format(repository=repository, name=repository.rsplit("/", 1)[-1])
    return azure_name(filled, prefix="ep")


def deployment_name(digest: str, *, generation: int = 1) -> str:
    """The deployment name for `digest` (unique within its endpoint), e.g. `sha256-213bbc182920`.

    A later generation of the same digest (a rollback by re-tagging) gets `-g<n>` so it
    never collides with the deployment its first generation created.
    """
    algorithm, _, hexpart = digest.partition(":")
    base = azure_name(f"{algorithm}-{hexpart[:12]}", prefix="d")
    name = base if generation <= 1 else f"{base}-g{generation}"
    return name if is_valid_azure_name(name) else azure_name(name, prefix="d")
