"""The function app's configuration: one typed, frozen object loaded and validated once.

`SETTINGS` is the machine-readable catalogue of every app setting (the infra tests and
`local.settings.sample.json` are checked against it); `load_config` reads them all and
reports every problem together in one ConfigurationError.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from shared.domain.names import (
    DEFAULT_ENDPOINT_TEMPLATE,
    bind_instance,
    derive_instance_name,
    validate_instance_name,
)
from shared.errors import ConfigurationError
from shared.intake.webhook_signature import InvalidSecretError, secret_key

REGION_PLACEHOLDER = "{REGION}"
_PREFIX = "GEOROLLOUT_"
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One app setting. Per-region names contain the literal `{REGION}` placeholder."""

    name: str
    description: str
    required: bool
    default: str | None
    per_region: bool
    secret: bool
    local_only: bool


def _spec(
    name: str,
    description: str,
    *,
    required: bool = False,
    default: str | None = None,
    secret: bool = False,
    local_only: bool = False,
) -> SettingSpec:
    return SettingSpec(
        name=name,
        description=description,
        required=required,
        default=default,
        per_region=REGION_PLACEHOLDER in name,
        secret=secret,
        local_only=local_only,
    )


# `{instance}` keeps endpoint names unique in each Azure region across customers (see
# shared.domain.names); a rule may still set any template.
DEFAULT_TARGETS_JSON = '[{"repository": "*", "tag": "*", "endpoint": "{repository}-{instance}"}]'

SETTINGS: tuple[SettingSpec, ...] = (
    _spec(
        "GEOROLLOUT_TABLE_CONNECTION_STRING",
        "Table Storage connection string (local Azurite only). Set exactly one of this "
        "and GEOROLLOUT_TABLE_ENDPOINT.",
        secret=True,
        local_only=True,
    ),
    _spec(
        "GEOROLLOUT_TABLE_ENDPOINT",
        "Table service URL, https://<account>.table.core.windows.net, reached with "
        "DefaultAzureCredential. Set exactly one of this and GEOROLLOUT_TABLE_CONNECTION_STRING.",
    ),
    _spec("GEOROLLOUT_TABLE_NAME", "Name of the table holding the rollouts.", default="rollouts"),
    _spec(
        "GEOROLLOUT_REGISTRY_LOGIN_SERVER",
        "The registry's login server, host[:port] (e.g. contoso.azurecr.io); a rollout's `registry`.",
        required=True,
    ),
    _spec(
        "GEOROLLOUT_REGIONS",
        "Comma-separated Azure regions in rollout order; the first is the primary.",
        required=True,
    ),
    _spec(
        "GEOROLLOUT_REGION_{REGION}_REGISTRY_ENDPOINT",
        "https URL of the region's registry replica. Defaults to "
        "https://<registry>.<region>.geo.azurecr.io when the login server ends with .azurecr.io; "
        "required otherwise.",
    ),
    _spec(
        "GEOROLLOUT_REGION_{REGION}_WORKSPACE_ID",
        "Full ARM resource id of the region's Foundry (Azure ML) workspace.",
        required=True,
    ),
    _spec(
        "GEOROLLOUT_REGION_{REGION}_ENDPOINT_IDENTITY_ID",
        "ARM resource id of the user-assigned identity the region's online endpoints pull "
        "images with (optional; without it endpoints use their system-assigned identity).",
    ),
    _spec(
        "GEOROLLOUT_ARM_ENDPOINT",
        "Azure Resource Manager URL the Foundry client talks to.",
        default="https://management.azure.com/",
    ),
    _spec(
        "GEOROLLOUT_CA_BUNDLE",
        "Path to a PEM CA bundle every client trusts in addition to the system CAs (optional).",
    ),
    _spec(
        "GEOROLLOUT_EVENTS_TOPIC_ENDPOINT",
        "https URL of the Event Grid topic georollout publishes its CloudEvents to.",
        required=True,
    ),
    _spec(
        "GEOROLLOUT_EVENTS_TOPIC_KEY",
        "Access key of the events topic (local only); unset, the publisher uses "
        "DefaultAzureCredential.",
        secret=True,
        local_only=True,
    ),
    _spec(
        "GEOROLLOUT_PROBE_SCHEDULE",
        "NCRONTAB schedule (six fields, seconds first) of the replica-probe timer.",
        default="*/30 * * * * *",
    ),
    _spec(
        "GEOROLLOUT_PROBE_BUDGET_PER_MINUTE",
        "Most requests to the registry (all its replicas together) in any 60 seconds, all "
        "instances of the function app together.",
        default="600",
    ),
    _spec("GEOROLLOUT_PROBE_CONCURRENCY", "Most probe requests in flight at once.", default="16"),
    _spec(
        "GEOROLLOUT_PROBE_BACKOFF_INITIAL_SECONDS",
        "First wait before probing a replica again (grows with jitter).",
        default="15",
    ),
    _spec(
        "GEOROLLOUT_PROBE_BACKOFF_MAX_SECONDS",
        "Longest wait between two probes of one replica.",
        default="300",
    ),
    _spec(
        "GEOROLLOUT_REPLICATION_TIMEOUT_MINUTES",
        "Base time a replica has to receive an image before its region is timed_out.",
        default="60",
    ),
    _spec(
        "GEOROLLOUT_REPLICATION_TIMEOUT_MINUTES_PER_GB",
        "Extra replication time allowed per GB of image.",
        default="10",
    ),
    _spec(
        "GEOROLLOUT_INSTANCE_NAME",
        "Short name of this georollout deployment (1-12 lowercase letters, digits and hyphens): "
        "the {instance} of endpoint templates, which keeps endpoint names unique in each Azure "
        "region. Unset: the first 8 hex digits of the SHA-256 of the lower-cased registry login "
        "server and primary workspace id, joined by a newline. Set it to keep endpoint names "
        "when either changes.",
    ),
    _spec(
        "GEOROLLOUT_TARGETS",
        'JSON list of target rules, first match wins: {"repository": glob, "tag": glob, '
        '"endpoint": template with {repository}, {name} or {instance}, "instance_type", '
        '"instance_count", "smoke_request", "region_settings": {region: {"instance_type", '
        '"instance_count", "smoke_request"}}, "approval": "none" | "before_secondaries" | '
        '"before_each_wave", "approval_timeout_hours": number (default 24), "regions": '
        '[region, ...] (default all; the primary always), "waves": [[region, ...], ...], '
        '"soak_seconds": number, "verify": {"smoke_request", "interval_seconds", '
        '"max_failures"}, "traffic_steps": [percent, ..., 100], "step_seconds": number}. '
        '"regions" as an object is read as "region_settings" (the form before waves). A rule '
        'without "endpoint", and the default catch-all rule, name the endpoint '
        "{repository}-{instance}. With an approval, secondaries wait in awaiting_approval once "
        "the wave before them is live until POST /api/rollouts/{id}/approve; not approved in "
        "time, the rollout fails. README: Progressive rollouts.",
        default=DEFAULT_TARGETS_JSON,
    ),
    _spec(
        "GEOROLLOUT_INSTANCE_TYPE",
        "Default VM size of a deployment (rules may override it).",
        default="Standard_DS3_v2",
    ),
    _spec(
        "GEOROLLOUT_INSTANCE_COUNT",
        "Default instance count of a deployment (rules may override it).",
        default="1",
    ),
    _spec(
        "GEOROLLOUT_SMOKE_REQUEST",
        "Default JSON body of the smoke request sent to a new deployment's scoring route.",
        default='{"input": "ping"}',
    ),
    _spec(
        "GEOROLLOUT_ENDPOINT_AUTH_MODE",
        "Auth mode of the online endpoints georollout creates: key, aml_token or aad_token.",
        default="key",
    ),
    _spec(
        "GEOROLLOUT_ACR_WEBHOOK_TOKEN",
        "When set, ACR webhooks must carry this token (Authorization header); unset, none is checked.",
        secret=True,
    ),
    _spec(
        "GEOROLLOUT_DEPLOY_POLL_SECONDS",
        "How soon a region with a deployment in progress is looked at again.",
        default="10",
    ),
    _spec(
        "GEOROLLOUT_BUILD_WEBHOOK_SECRETS",
        "Comma-separated Standard Webhooks secrets (whsec_<base64>) that may sign "
        "POST /api/hooks/build (several for rotation); unset, every build notice is refused.",
        secret=True,
    ),
    _spec(
        "GEOROLLOUT_REPLICATION_GIVE_UP_HOURS",
        "How long after a push a replica still without the image is probed (slowly, once "
        "timed_out); then its region stays timed_out for good, until a new push or regional "
        "webhook names the image again.",
        default="24",
    ),
    _spec(
        "GEOROLLOUT_SMOKE_TIMEOUT_SECONDS",
        "How long one smoke request may take (Azure ML's scoring timeout defaults to 5 s). "
        "No answer, 408, 429 and 502-504 are tried again until the verification deadline.",
        default="5",
    ),
    _spec(
        "GEOROLLOUT_KEEP_PREVIOUS_MINUTES",
        "How long the deployment that served before a rollout is kept (0% traffic) after "
        "the rollout settled in every region, so that an operator's rollback is a traffic "
        "change rather than a redeploy. 0 deletes it as soon as the rollout settled.",
        default="60",
    ),
    _spec(
        "GEOROLLOUT_AZURE_SDK_LOG_LEVEL",
        "Level of the Azure SDK's own loggers (azure.*, also those azure-ai-ml sets a level "
        "on): WARNING keeps them to problems; INFO or DEBUG adds a record of every HTTP "
        "request and response (headers redacted by the SDK) and azure-ai-ml's progress "
        "lines, for debugging a connection.",
        default="WARNING",
    ),
)

_SPECS_BY_NAME = {spec.name: spec for spec in SETTINGS}


def region_token(region: str) -> str:
    """The `{REGION}` part of a per-region setting name: upper case, non-alphanumerics -> `_`."""
    return "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in region.upper())


def region_setting_name(pattern: str, region: str) -> str:
    """`pattern` (a per-region setting name) for `region`."""
    return pattern.replace(REGION_PLACEHOLDER, region_token(region))


def setting_names(regions: Sequence[str]) -> list[str]:
    """Every setting name, in catalogue order, per-region ones expanded for `regions`."""
    names: list[str] = []
    for spec in SETTINGS:
        if spec.per_region:
            names.extend(region_setting_name(spec.name, region) for region in regions)
        else:
            names.append(spec.name)
    return names


# ---------------------------------------------------------------------------------------
# The typed configuration


@dataclass(frozen=True, slots=True)
class TableSettings:
    """Where the rollout table lives: a connection string (local) or an endpoint (Azure)."""

    connection_string: str | None
    endpoint: str | None
    table_name: str


@dataclass(frozen=True, slots=True)
class WorkspaceRef:
    """A Foundry (Azure ML) workspace, parsed from its ARM resource id."""

    resource_id: str
    subscription_id: str
    resource_group: str
    name: str


@dataclass(frozen=True, slots=True)
class RegionSettings:
    """One configured region: its registry replica and its workspace."""

    name: str
    primary: bool
    registry_endpoint: str
    workspace: WorkspaceRef
    endpoint_identity_id: str | None


@dataclass(frozen=True, slots=True)
class EventsSettings:
    """The Event Grid topic georollout publishes to; no key means DefaultAzureCredential."""

    topic_endpoint: str
    topic_key: str | None


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """The replica-probe timer and its politeness limits."""

    schedule: str
    budget_per_minute: int
    concurrency: int
    backoff_initial_seconds: float
    backoff_max_seconds: float


@dataclass(frozen=True, slots=True)
class ReplicationSettings:
    """How long a replica may take: base + per GB of image."""

    timeout_minutes: float
    timeout_minutes_per_gb: float
    give_up_hours: float = 24.0


@dataclass(frozen=True, slots=True)
class TargetRegionOverride:
    """Per-region changes to a target rule; None keeps the rule's value."""

    instance_type: str | None = None
    instance_count: int | None = None
    smoke_request: str | None = None


@dataclass(frozen=True, slots=True)
class TargetVerifyConfig:
    """A rule's `verify`: checks while a traffic step holds and while a wave soaks."""

    smoke_request: str | None = None  # None: the region's smoke request
    interval_seconds: float = 30.0
    max_failures: int = 1


@dataclass(frozen=True, slots=True)
class TargetRuleConfig:
    """One configured target rule, global defaults already filled in.

    `smoke_request` is JSON text (validated). `endpoint_template` has `{instance}` already
    replaced by the instance name. The domain has its own TargetRule; the service layer
    maps this onto it.
    """

    repository_glob: str
    tag_glob: str
    endpoint_template: str
    instance_type: str
    instance_count: int
    smoke_request: str
    region_overrides: Mapping[str, TargetRegionOverride]
    approval: str = "none"
    approval_timeout_hours: float = 24.0
    # Progressive delivery (None / empty: every region, one wave of secondaries).
    regions: tuple[str, ...] | None = None
    waves: tuple[tuple[str, ...], ...] = ()
    soak_seconds: float = 0.0
    verify: TargetVerifyConfig = dataclasses.field(default_factory=TargetVerifyConfig)
    traffic_steps: tuple[int, ...] = (100,)
    step_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the function app reads from its settings, validated."""

    table: TableSettings
    registry_login_server: str
    regions: tuple[RegionSettings, ...]
    arm_endpoint: str
    ca_bundle: Path | None
    events: EventsSettings
    probe: ProbeSettings
    replication: ReplicationSettings
    targets: tuple[TargetRuleConfig, ...]
    instance_type: str
    instance_count: int
    smoke_request: str
    endpoint_auth_mode: str
    acr_webhook_token: str | None
    deploy_poll_seconds: float
    smoke_timeout_seconds: float
    # HMAC keys of the build webhook's secrets (empty: the route refuses every request).
    build_webhook_keys: tuple[bytes, ...]
    # This deployment's instance name (GEOROLLOUT_INSTANCE_NAME, or derived), the {instance}.
    instance_name: str
    # GEOROLLOUT_* names that are set but not in the catalogue (likely typos); worth showing.
    unknown_settings: tuple[str, ...] = ()
    keep_previous_minutes: float = 60.0
    azure_sdk_log_level: str = "WARNING"
    # Azure App Service authentication is on (WEBSITE_AUTH_ENABLED): X-MS-CLIENT-PRINCIPAL-NAME
    # is then set by the platform, never by the caller.
    app_service_auth: bool = False

    @property
    def primary_region(self) -> RegionSettings:
        return self.regions[0]

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(region.name for region in self.regions)

    def region(self, name: str) -> RegionSettings:
        """The settings of region `name`; KeyError when it is not configured."""
        for region in self.regions:
            if region.name == name:
                return region
        raise KeyError(name)


# ---------------------------------------------------------------------------------------
# Validation rules

_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_REGION_NAME = re.compile(r"^[a-z][a-z0-9]{1,39}$")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_RESOURCE_GROUP = re.compile(r"^[-\w.()]{0,89}[-\w()]$")
_WORKSPACE_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<name>[^/]+)$",
    re.IGNORECASE,
)
_WORKSPACE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,32}$")
_IDENTITY_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/(?P<name>[A-Za-z0-9][-\w]{2,127})$",
    re.IGNORECASE,
)
_INSTANCE_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{1,63}$")
_AUTH_MODES = ("key", "aml_token", "aad_token")
_TEMPLATE_FIELDS = ("repository", "name", "instance")
_RULE_KEYS = frozenset(
    {
        "repository",
        "tag",
        "endpoint",
        "instance_type",
        "instance_count",
        "smoke_request",
        "regions",
        "region_settings",
        "approval",
        "approval_timeout_hours",
        "waves",
        "soak_seconds",
        "verify",
        "traffic_steps",
        "step_seconds",
    }
)
_VERIFY_KEYS = frozenset({"smoke_request", "interval_seconds", "max_failures"})
_APPROVALS = ("none", "before_secondaries", "before_each_wave")
_OVERRIDE_KEYS = frozenset({"instance_type", "instance_count", "smoke_request"})
# NCRONTAB: second, minute, hour, day of month, month, day of week.
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    (
        "month",
        1,
        12,
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    ),
    ("day of week", 0, 6, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)


class _Problems:
    """Collects one line per problem so they can all be reported together."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, name: str, message: str) -> None:
        self.lines.append(f"{name}: {message}")

    def check(self, name: str, raw: str, parse: Callable[[str], _T]) -> _T | None:
        """`parse(raw)`, or None after recording its ValueError as a problem."""
        try:
            return parse(raw)
        except ValueError as error:
            self.add(name, str(error))
            return None


def _https_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"must be an https URL, got {raw!r}")
    try:
        _ = parts.port
    except ValueError as error:
        raise ValueError(f"has an invalid port: {raw!r}") from error
    return raw


def _login_server(raw: str) -> str:
    host, _, port = raw.partition(":")
    if "/" in raw or "://" in raw:
        raise ValueError(f"must be host[:port] without a scheme or path, got {raw!r}")
    if not host or not all(_HOST_LABEL.match(label) for label in host.split(".")):
        raise ValueError(f"is not a valid host name: {raw!r}")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"has an invalid port: {raw!r}")
    return raw.lower()


def _region_list(raw: str) -> tuple[str, ...]:
    names = [part.strip() for part in raw.split(",")]
    if not any(names):
        raise ValueError("lists no region")
    problems = []
    bad = [name for name in names if not _REGION_NAME.match(name)]
    if bad:
        problems.append(
            "region names are Azure region names (lowercase letters and digits, e.g. eastus2); "
            f"invalid: {', '.join(repr(name) for name in bad)}"
        )
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        problems.append(f"lists a region more than once: {', '.join(duplicates)}")
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(names)


def _table_name(raw: str) -> str:
    if not _TABLE_NAME.match(raw) or raw.lower() == "tables":
        raise ValueError(
            "a table name is 3-63 letters and digits, starting with a letter, and not 'tables'; "
            f"got {raw!r}"
        )
    return raw


def _table_endpoint(raw: str) -> str:
    url = _https_url(raw)
    if urlsplit(url).path.strip("/"):
        raise ValueError(f"must be the table service URL without a path, got {raw!r}")
    return url


def _connection_string(raw: str) -> str:
    pairs = dict(part.split("=", 1) for part in raw.split(";") if "=" in part)
    if raw.strip() != "UseDevelopmentStorage=true" and not (
        "AccountName" in pairs or "TableEndpoint" in pairs
    ):
        raise ValueError("is not a storage connection string (no AccountName or TableEndpoint)")
    return raw


def _workspace(raw: str) -> WorkspaceRef:
    match = _WORKSPACE_ID.match(raw)
    if not match:
        raise ValueError(
            "must be a workspace ARM id, /subscriptions/<id>/resourceGroups/<rg>/providers/"
            f"Microsoft.MachineLearningServices/workspaces/<name>; got {raw!r}"
        )
    problems = []
    if not _GUID.match(match["sub"]):
        problems.append(f"subscription {match['sub']!r} is not a GUID")
    if not _RESOURCE_GROUP.match(match["rg"]):
        problems.append(f"resource group {match['rg']!r} is not a valid name")
    if not _WORKSPACE_NAME.match(match["name"]):
        problems.append(f"workspace name {match['name']!r} is not a valid name")
    if problems:
        raise ValueError("; ".join(problems))
    return WorkspaceRef(
        resource_id=raw,
        subscription_id=match["sub"],
        resource_group=match["rg"],
        name=match["name"],
    )


def _identity_id(raw: str) -> str:
    match = _IDENTITY_ID.match(raw)
    if not match or not _GUID.match(match["sub"]):
        raise ValueError(
            "must be a user-assigned identity ARM id, /subscriptions/<id>/resourceGroups/<rg>/"
            f"providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>; got {raw!r}"
        )
    return raw


def _ca_bundle(raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ValueError(f"no such file: {str(path)!r} (resolved from {str(Path.cwd())!r})")
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as error:
        raise ValueError(f"cannot read {str(path)!r}: {error.strerror}") from error
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ValueError(f"{str(path)!r} holds no PEM certificate")
    return path


def _cron_value(token: str, names: tuple[str, ...], field: str) -> int:
    if token.isdigit():
        return int(token)
    if token.lower() in names:
        return names.index(token.lower()) + (1 if field == "month" else 0)
    raise ValueError(f"{field} value {token!r} is not a number")


def _ncrontab(raw: str) -> str:
    fields = raw.split()
    if len(fields) != 6:
        raise ValueError(
            "an NCRONTAB schedule has six fields (second minute hour day month day-of-week), "
            f"got {len(fields)} in {raw!r}"
        )
    for text, (field, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            base, slash, step = item.partition("/")
            if slash and not (step.isdigit() and int(step) > 0):
                raise ValueError(f"{field} step {step!r} in {raw!r} is not a positive number")
            if base == "*":
                continue
            first, dash, last = base.partition("-")
            values = [_cron_value(first, names, field)]
            if dash:
                values.append(_cron_value(last, names, field))
            if any(not low <= value <= high for value in values):
                raise ValueError(f"{field} {base!r} in {raw!r} is outside {low}-{high}")
    return raw


def _webhook_secrets(raw: str) -> tuple[bytes, ...]:
    """Comma-separated `whsec_` secrets as HMAC keys; the message never repeats a secret."""
    keys: list[bytes] = []
    for position, secret in enumerate((part for part in raw.split(",") if part.strip()), 1):
        try:
            keys.append(secret_key(secret))
        except InvalidSecretError as error:
            raise ValueError(f"secret #{position}: {error}") from None
    return tuple(keys)


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"must be a whole number, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def _number(raw: str, *, minimum: float, inclusive: bool) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"must be a number, got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"must be a finite number, got {raw!r}")
    if value < minimum or (not inclusive and value == minimum):
        bound = "at least" if inclusive else "more than"
        raise ValueError(f"must be {bound} {minimum:g}, got {raw!r}")
    return value


def _positive_number(raw: str) -> float:
    return _number(raw, minimum=0.0, inclusive=False)


def _non_negative_number(raw: str) -> float:
    return _number(raw, minimum=0.0, inclusive=True)


def _instance_type(raw: str) -> str:
    if not _INSTANCE_TYPE.match(raw):
        raise ValueError(f"is not a VM size name (e.g. Standard_DS3_v2): {raw!r}")
    return raw


def _auth_mode(raw: str) -> str:
    if raw not in _AUTH_MODES:
        raise ValueError(f"must be one of {', '.join(_AUTH_MODES)}; got {raw!r}")
    return raw


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in _LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}; got {raw!r}")
    return level


def _json_text(raw: str) -> str:
    try:
        value = json.loads(raw)
    except ValueError as error:
        raise ValueError(f"is not valid JSON: {error}") from None
    return json.dumps(value, separators=(",", ":"))


def _endpoint_template(raw: str) -> str:
    if not raw.strip():
        raise ValueError("endpoint template is empty")
    try:
        parsed = list(string.Formatter().parse(raw))
    except ValueError as error:
        raise ValueError(f"endpoint template {raw!r} is malformed: {error}") from None
    for _, field, spec, conversion in parsed:
        if field is not None and (field not in _TEMPLATE_FIELDS or spec or conversion):
            raise ValueError(
                f"endpoint template {raw!r} uses {{{field}}}; the placeholders are "
                + ", ".join(f"{{{name}}}" for name in _TEMPLATE_FIELDS)
            )
    return raw


# ---------------------------------------------------------------------------------------
# Targets


class _Defaults:
    def __init__(self, instance_type: str, instance_count: int, smoke_request: str) -> None:
        self.instance_type = instance_type
        self.instance_count = instance_count
        self.smoke_request = smoke_request


def _rule_field(
    rule: Mapping[str, Any], key: str, where: str, parse: Callable[[Any], _T], default: _T
) -> _T:
    if key not in rule:
        return default
    try:
        return parse(rule[key])
    except (ValueError, TypeError) as error:
        raise ValueError(f"{where}.{key}: {error}") from None


def _glob(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty glob string")
    return value


def _template_value(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return _endpoint_template(value)


def _instance_type_value(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return _instance_type(value)


def _instance_count_value(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"must be a whole number of at least 1, got {value!r}")
    return value


def _smoke_value(value: Any) -> str:
    # The smoke request is a JSON body; a rule gives it as JSON, not as JSON text.
    return json.dumps(value, separators=(",", ":"))


def _approval_value(value: Any) -> str:
    if value not in _APPROVALS:
        raise ValueError(f"must be one of {', '.join(_APPROVALS)}, got {value!r}")
    return str(value)


def _hours_value(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"must be a positive number of hours, got {value!r}")
    return float(value)


def _seconds_value(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"must be a number of seconds, 0 or more, got {value!r}")
    return float(value)


def _verify_value(value: Any) -> TargetVerifyConfig:
    if not isinstance(value, dict):
        raise ValueError("must be an object")
    unknown = sorted(set(value) - _VERIFY_KEYS)
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_VERIFY_KEYS))}"
        )
    interval = value.get("interval_seconds", 30.0)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not interval > 0:
        raise ValueError(f"interval_seconds must be a positive number, got {interval!r}")
    failures = value.get("max_failures", 1)
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
        raise ValueError(f"max_failures must be a whole number, 0 or more, got {failures!r}")
    smoke = value.get("smoke_request")
    return TargetVerifyConfig(
        # null, like no key: the region's own smoke request.
        smoke_request=_smoke_value(smoke) if smoke is not None else None,
        interval_seconds=float(interval),
        max_failures=failures,
    )


def _traffic_steps_value(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list of percentages, e.g. [10, 50, 100]")
    for step in value:
        if isinstance(step, bool) or not isinstance(step, int) or not 0 < step <= 100:
            raise ValueError(f"{step!r} is not a whole percentage from 1 to 100")
    if any(a >= b for a, b in itertools.pairwise(value)):
        raise ValueError(f"must increase, got {value}")
    if value[-1] != 100:
        raise ValueError(f"must end at 100 (all traffic on the new deployment), got {value}")
    return tuple(value)


def _rule_regions(
    rule: Mapping[str, Any], where: str, configured: tuple[str, ...] | None
) -> tuple[tuple[str, ...] | None, str, Mapping[str, Any]]:
    """The rule's region list (None: every region), and its per-region settings with the key
    they came from. `regions` as a list chooses regions; as an object (the form before
    progressive rules) it gives per-region settings, now also `region_settings`."""
    raw = rule.get("regions")
    settings = rule.get("region_settings", {})
    if not isinstance(settings, dict):
        raise ValueError(f"{where}.region_settings: must be an object keyed by region")
    if isinstance(raw, dict):
        if "region_settings" in rule:
            raise ValueError(
                f"{where}: give per-region settings in region_settings and make regions a list"
            )
        return None, "regions", raw
    if raw is None:
        return None, "region_settings", settings
    if not isinstance(raw, list) or not raw or not all(isinstance(r, str) for r in raw):
        raise ValueError(
            f"{where}.regions: must be a non-empty list of region names (or, as before, an "
            "object of per-region settings)"
        )
    if len(set(raw)) != len(raw):
        raise ValueError(f"{where}.regions: names a region twice")
    if configured is not None:
        unknown = [r for r in raw if r not in configured]
        if unknown:
            raise ValueError(
                f"{where}.regions: {', '.join(unknown)} not in GEOROLLOUT_REGIONS "
                f"({', '.join(configured)})"
            )
        # The primary always deploys (first): it is where an image is verified.
        return (
            (configured[0], *(r for r in configured[1:] if r in raw)),
            "region_settings",
            settings,
        )
    return tuple(raw), "region_settings", settings


def _waves(
    rule: Mapping[str, Any], where: str, regions: tuple[str, ...] | None
) -> tuple[tuple[str, ...], ...]:
    """`waves`: ordered lists of the rule's secondaries, each named once, none left out."""
    if "waves" not in rule:
        return ()
    raw = rule["waves"]
    if (
        not isinstance(raw, list)
        or not raw
        or not all(isinstance(w, list) and w and all(isinstance(r, str) for r in w) for w in raw)
    ):
        raise ValueError(
            f'{where}.waves: must be a list of non-empty lists of regions, e.g. [["westus"], '
            '["westeurope", "northeurope"]]'
        )
    named = [region for wave in raw for region in wave]
    twice = sorted({r for r in named if named.count(r) > 1})
    if twice:
        raise ValueError(f"{where}.waves: {', '.join(twice)} in more than one place")
    if regions is not None:
        primary, secondaries = regions[0], regions[1:]
        if primary in named:
            raise ValueError(
                f"{where}.waves: {primary} is the primary region: it always deploys first, "
                "before every wave"
            )
        outside = [r for r in named if r not in secondaries]
        if outside:
            raise ValueError(
                f"{where}.waves: {', '.join(outside)} not among the rule's secondary regions "
                f"({', '.join(secondaries) or 'none'})"
            )
        missing = [r for r in secondaries if r not in named]
        if missing:
            raise ValueError(
                f"{where}.waves: {', '.join(missing)} in no wave: put every secondary the rule "
                "deploys to in a wave, or leave it out of the rule's regions"
            )
    return tuple(tuple(wave) for wave in raw)


def _override(value: Any, where: str) -> TargetRegionOverride:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: must be an object")
    unknown = sorted(set(value) - _OVERRIDE_KEYS)
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_OVERRIDE_KEYS))}"
        )
    return TargetRegionOverride(
        instance_type=_rule_field(value, "instance_type", where, _instance_type_value, None),
        instance_count=_rule_field(value, "instance_count", where, _instance_count_value, None),
        smoke_request=_rule_field(value, "smoke_request", where, _smoke_value, None),
    )


def _targets(
    raw: str, defaults: _Defaults, regions: tuple[str, ...] | None, instance: str | None
) -> tuple[TargetRuleConfig, ...]:
    """The rules of GEOROLLOUT_TARGETS, `{instance}` filled in (left as is when the instance
    name is unknown: another setting's problem is reported then)."""
    try:
        document = json.loads(raw)
    except ValueError as error:
        raise ValueError(f"is not valid JSON: {error}") from None
    if not isinstance(document, list) or not document:
        raise ValueError("must be a non-empty JSON list of rules")
    rules: list[TargetRuleConfig] = []
    problems: list[str] = []
    for index, rule in enumerate(document):
        where = f"rule {index}"
        try:
            if not isinstance(rule, dict):
                raise ValueError(f"{where}: must be an object")
            unknown = sorted(set(rule) - _RULE_KEYS)
            if unknown:
                raise ValueError(
                    f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_RULE_KEYS))}"
                )
            chosen, overrides_key, overrides_raw = _rule_regions(rule, where, regions)
            overrides: dict[str, TargetRegionOverride] = {}
            for region, value in overrides_raw.items():
                if regions is not None and region not in regions:
                    raise ValueError(
                        f"{where}.{overrides_key}: {region!r} is not in GEOROLLOUT_REGIONS ({', '.join(regions)})"
                    )
                overrides[region] = _override(value, f"{where}.{overrides_key}.{region}")
            rules.append(
                TargetRuleConfig(
                    repository_glob=_rule_field(rule, "repository", where, _glob, "*"),
                    tag_glob=_rule_field(rule, "tag", where, _glob, "*"),
                    endpoint_template=_bound(
                        _rule_field(
                            rule, "endpoint", where, _template_value, DEFAULT_ENDPOINT_TEMPLATE
                        ),
                        instance,
                    ),
                    instance_type=_rule_field(
                        rule, "instance_type", where, _instance_type_value, defaults.instance_type
                    ),
                    instance_count=_rule_field(
                        rule,
                        "instance_count",
                        where,
                        _instance_count_value,
                        defaults.instance_count,
                    ),
                    smoke_request=_rule_field(
                        rule, "smoke_request", where, _smoke_value, defaults.smoke_request
                    ),
                    region_overrides=MappingProxyType(overrides),
                    approval=_rule_field(rule, "approval", where, _approval_value, "none"),
                    approval_timeout_hours=_rule_field(
                        rule, "approval_timeout_hours", where, _hours_value, 24.0
                    ),
                    regions=chosen,
                    waves=_waves(rule, where, chosen or regions),
                    soak_seconds=_rule_field(rule, "soak_seconds", where, _seconds_value, 0.0),
                    verify=_rule_field(rule, "verify", where, _verify_value, TargetVerifyConfig()),
                    traffic_steps=_rule_field(
                        rule, "traffic_steps", where, _traffic_steps_value, (100,)
                    ),
                    step_seconds=_rule_field(rule, "step_seconds", where, _seconds_value, 0.0),
                )
            )
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(rules)


def _bound(template: str, instance: str | None) -> str:
    return template if instance is None else bind_instance(template, instance)


def _instance_name(
    raw: str | None, login_server: str | None, regions: Sequence[RegionSettings]
) -> str | None:
    """GEOROLLOUT_INSTANCE_NAME, or derived from the login server and the primary's
    workspace (None when those are invalid: their own problems are reported)."""
    if raw:
        return validate_instance_name(raw)
    if login_server and regions and regions[0].primary:
        return derive_instance_name(login_server, regions[0].workspace.resource_id)
    return None


# ---------------------------------------------------------------------------------------
# Loading


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate every setting from `environ` (os.environ by default).

    Empty values count as unset. Raises ConfigurationError listing every problem, one
    line each, so a misconfiguration is fixed in one go.
    """
    source = os.environ if environ is None else environ
    problems = _Problems()

    def value(name: str, region: str | None = None) -> str | None:
        key = name if region is None else region_setting_name(name, region)
        raw = source.get(key)
        if raw is None or not raw.strip():
            spec = _SPECS_BY_NAME[name]
            if spec.required:
                problems.add(key, "is required" + (f" ({spec.description})" if region else ""))
            return spec.default
        return raw.strip()

    # Table storage: exactly one of connection string and endpoint.
    connection_raw = value("GEOROLLOUT_TABLE_CONNECTION_STRING")
    endpoint_raw = value("GEOROLLOUT_TABLE_ENDPOINT")
    if connection_raw and endpoint_raw:
        problems.add(
            "GEOROLLOUT_TABLE_CONNECTION_STRING",
            "set together with GEOROLLOUT_TABLE_ENDPOINT; set exactly one of them",
        )
    elif not connection_raw and not endpoint_raw:
        problems.add(
            "GEOROLLOUT_TABLE_ENDPOINT",
            "is required (or GEOROLLOUT_TABLE_CONNECTION_STRING for a local Azurite)",
        )
    connection_string = (
        problems.check("GEOROLLOUT_TABLE_CONNECTION_STRING", connection_raw, _connection_string)
        if connection_raw
        else None
    )
    table_endpoint = (
        problems.check("GEOROLLOUT_TABLE_ENDPOINT", endpoint_raw, _table_endpoint)
        if endpoint_raw
        else None
    )
    table_name = problems.check(
        "GEOROLLOUT_TABLE_NAME", value("GEOROLLOUT_TABLE_NAME") or "", _table_name
    )

    login_raw = value("GEOROLLOUT_REGISTRY_LOGIN_SERVER")
    login_server = (
        problems.check("GEOROLLOUT_REGISTRY_LOGIN_SERVER", login_raw, _login_server)
        if login_raw
        else None
    )

    regions_raw = value("GEOROLLOUT_REGIONS")
    region_names = (
        problems.check("GEOROLLOUT_REGIONS", regions_raw, _region_list) if regions_raw else None
    )

    regions: list[RegionSettings] = []
    for index, region in enumerate(region_names or ()):
        registry_name = region_setting_name("GEOROLLOUT_REGION_{REGION}_REGISTRY_ENDPOINT", region)
        registry_raw = value("GEOROLLOUT_REGION_{REGION}_REGISTRY_ENDPOINT", region)
        registry_endpoint: str | None = None
        if registry_raw:
            registry_endpoint = problems.check(registry_name, registry_raw, _https_url)
        elif login_server and login_server.endswith(".azurecr.io"):
            registry_endpoint = (
                f"https://{login_server.removesuffix('.azurecr.io')}.{region}.geo.azurecr.io"
            )
        elif login_server:
            problems.add(
                registry_name,
                f"is required: the login server {login_server!r} is not *.azurecr.io, "
                "so the replica endpoint cannot be derived",
            )
        workspace_name = region_setting_name("GEOROLLOUT_REGION_{REGION}_WORKSPACE_ID", region)
        workspace_raw = value("GEOROLLOUT_REGION_{REGION}_WORKSPACE_ID", region)
        workspace = (
            problems.check(workspace_name, workspace_raw, _workspace) if workspace_raw else None
        )
        identity_name = region_setting_name(
            "GEOROLLOUT_REGION_{REGION}_ENDPOINT_IDENTITY_ID", region
        )
        identity_raw = value("GEOROLLOUT_REGION_{REGION}_ENDPOINT_IDENTITY_ID", region)
        identity = (
            problems.check(identity_name, identity_raw, _identity_id) if identity_raw else None
        )
        if registry_endpoint and workspace:
            regions.append(
                RegionSettings(
                    name=region,
                    primary=index == 0,
                    registry_endpoint=registry_endpoint,
                    workspace=workspace,
                    endpoint_identity_id=identity,
                )
            )

    arm_endpoint = problems.check(
        "GEOROLLOUT_ARM_ENDPOINT", value("GEOROLLOUT_ARM_ENDPOINT") or "", _https_url
    )
    ca_raw = value("GEOROLLOUT_CA_BUNDLE")
    ca_bundle = problems.check("GEOROLLOUT_CA_BUNDLE", ca_raw, _ca_bundle) if ca_raw else None

    topic_raw = value("GEOROLLOUT_EVENTS_TOPIC_ENDPOINT")
    topic_endpoint = (
        problems.check("GEOROLLOUT_EVENTS_TOPIC_ENDPOINT", topic_raw, _https_url)
        if topic_raw
        else None
    )
    topic_key = value("GEOROLLOUT_EVENTS_TOPIC_KEY")

    def parsed(name: str, parse: Callable[[str], _T]) -> _T | None:
        return problems.check(name, value(name) or "", parse)

    schedule = parsed("GEOROLLOUT_PROBE_SCHEDULE", _ncrontab)
    budget = parsed("GEOROLLOUT_PROBE_BUDGET_PER_MINUTE", _positive_int)
    concurrency = parsed("GEOROLLOUT_PROBE_CONCURRENCY", _positive_int)
    backoff_initial = parsed("GEOROLLOUT_PROBE_BACKOFF_INITIAL_SECONDS", _positive_number)
    backoff_max = parsed("GEOROLLOUT_PROBE_BACKOFF_MAX_SECONDS", _positive_number)
    if backoff_initial is not None and backoff_max is not None and backoff_max < backoff_initial:
        problems.add(
            "GEOROLLOUT_PROBE_BACKOFF_MAX_SECONDS",
            f"({backoff_max:g}) must not be less than GEOROLLOUT_PROBE_BACKOFF_INITIAL_SECONDS "
            f"({backoff_initial:g})",
        )
    timeout = parsed("GEOROLLOUT_REPLICATION_TIMEOUT_MINUTES", _positive_number)
    timeout_per_gb = parsed("GEOROLLOUT_REPLICATION_TIMEOUT_MINUTES_PER_GB", _non_negative_number)

    instance_type = parsed("GEOROLLOUT_INSTANCE_TYPE", _instance_type)
    instance_count = parsed("GEOROLLOUT_INSTANCE_COUNT", _positive_int)
    smoke_request = parsed("GEOROLLOUT_SMOKE_REQUEST", _json_text)
    auth_mode = parsed("GEOROLLOUT_ENDPOINT_AUTH_MODE", _auth_mode)
    instance_name = problems.check(
        "GEOROLLOUT_INSTANCE_NAME",
        value("GEOROLLOUT_INSTANCE_NAME") or "",
        lambda raw: _instance_name(raw, login_server, regions),
    )
    targets: tuple[TargetRuleConfig, ...] | None = None
    if instance_type is not None and instance_count is not None and smoke_request is not None:
        defaults = _Defaults(instance_type, instance_count, smoke_request)
        targets = problems.check(
            "GEOROLLOUT_TARGETS",
            value("GEOROLLOUT_TARGETS") or "",
            lambda raw: _targets(raw, defaults, region_names, instance_name),
        )
    webhook_token = value("GEOROLLOUT_ACR_WEBHOOK_TOKEN")
    deploy_poll = parsed("GEOROLLOUT_DEPLOY_POLL_SECONDS", _positive_number)
    give_up = parsed("GEOROLLOUT_REPLICATION_GIVE_UP_HOURS", _positive_number)
    build_keys = parsed("GEOROLLOUT_BUILD_WEBHOOK_SECRETS", _webhook_secrets)
    smoke_timeout = parsed("GEOROLLOUT_SMOKE_TIMEOUT_SECONDS", _positive_number)
    keep_previous = parsed("GEOROLLOUT_KEEP_PREVIOUS_MINUTES", _non_negative_number)
    sdk_log_level = parsed("GEOROLLOUT_AZURE_SDK_LOG_LEVEL", _log_level)

    known = set(setting_names(region_names or ()))
    unknown = tuple(
        sorted(name for name in source if name.startswith(_PREFIX) and name not in known)
    )

    if problems.lines:
        raise ConfigurationError(
            "invalid configuration:\n" + "\n".join(f"  - {line}" for line in problems.lines),
            problems=tuple(problems.lines),
        )
    # Every value below was checked above: a None left here would have added a problem.
    assert table_name and login_server and region_names and arm_endpoint and topic_endpoint
    assert schedule and budget and concurrency and backoff_initial and backoff_max
    assert timeout and timeout_per_gb is not None and targets and auth_mode and deploy_poll
    assert instance_type and instance_count and smoke_request and instance_name
    assert give_up and smoke_timeout and keep_previous is not None and sdk_log_level
    return Config(
        table=TableSettings(
            connection_string=connection_string, endpoint=table_endpoint, table_name=table_name
        ),
        registry_login_server=login_server,
        regions=tuple(regions),
        arm_endpoint=arm_endpoint,
        ca_bundle=ca_bundle,
        events=EventsSettings(topic_endpoint=topic_endpoint, topic_key=topic_key),
        probe=ProbeSettings(
            schedule=schedule,
            budget_per_minute=budget,
            concurrency=concurrency,
            backoff_initial_seconds=backoff_initial,
            backoff_max_seconds=backoff_max,
        ),
        replication=ReplicationSettings(
            timeout_minutes=timeout, timeout_minutes_per_gb=timeout_per_gb, give_up_hours=give_up
        ),
        targets=targets,
        instance_type=instance_type,
        instance_count=instance_count,
        smoke_request=smoke_request,
        endpoint_auth_mode=auth_mode,
        acr_webhook_token=webhook_token,
        deploy_poll_seconds=deploy_poll,
        smoke_timeout_seconds=smoke_timeout,
        build_webhook_keys=build_keys or (),
        instance_name=instance_name,
        unknown_settings=unknown,
        keep_previous_minutes=keep_previous,
        azure_sdk_log_level=sdk_log_level,
        # Set by App Service when its authentication is on: only then is the signed-in
        # principal's header the platform's and not the caller's.
        app_service_auth=(source.get("WEBSITE_AUTH_ENABLED") or "").strip().lower() == "true",
    )
