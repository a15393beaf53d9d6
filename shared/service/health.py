"""Health: can georollout reach each dependency, and is it configured safely?

One round of checks looks at the table, each region's registry replica and Foundry
workspace, and whether the ACR webhook is protected. The round is summarised twice:

- `HealthReport.public_document()` for the anonymous `GET /api/health`: statuses only,
  never a setting's value, a resource id, a host name, a key or an error text;
- `HealthReport.detail_document()` for `GET /api/health/detail` (function key): the
  messages, endpoints and ids, with every secret setting's value replaced by `<redacted>`.

`HealthCache` keeps one round per process for `CACHE_SECONDS` and lets concurrent callers
share the round in flight, so calling either route often never multiplies the load on
the registries, ARM or the table.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared.config import REGION_PLACEHOLDER, SETTINGS, Config
from shared.errors import ConfigurationError, GeorolloutError

if TYPE_CHECKING:
    # Only a type here: start-up and devenv import this module for `Redactor` and
    # `unprotected_webhook` without loading every Azure SDK the adapters need.
    from shared.service.runtime import Services

# The contract allows up to 30 s; 10 s still turns any rate of health calls into at most
# one round of probes per 10 s per process, and shows a failing dependency within 10 s.
CACHE_SECONDS = 10.0
# A dependency that hangs must not hold the health routes longer than this.
CHECK_TIMEOUT_SECONDS = 20.0
REDACTED = "<redacted>"
WEBHOOK_TOKEN_SETTING = "GEOROLLOUT_ACR_WEBHOOK_TOKEN"

# "Running against Azure" is read from the configuration: an Azure Container Registry
# login server (public, China and US Government clouds) or one of Azure's own ARM
# endpoints. The local environment uses loopback addresses for both.
AZURE_REGISTRY_SUFFIXES = (".azurecr.io", ".azurecr.cn", ".azurecr.us")
AZURE_ARM_HOSTS = frozenset(
    {"management.azure.com", "management.chinacloudapi.cn", "management.usgovcloudapi.net"}
)

# `name=value` parts that carry a credential wherever they turn up: storage and Event
# Grid connection strings, SAS tokens, a function key in a URL (`code=`).
_CREDENTIAL_PART = re.compile(
    r"(?i)\b(AccountKey|SharedAccessKey|SharedAccessSignature|sig|password|pwd|code|"
    r"access_token)=([^;&\s'\"]+)"
)
# Names of the catalogue's secret settings, per-region ones as patterns.
_SECRET_NAMES = tuple(
    re.compile(
        "^" + re.escape(spec.name).replace(re.escape(REGION_PLACEHOLDER), "[A-Z0-9_]+") + "$"
    )
    for spec in SETTINGS
    if spec.secret
)
_SETTING_PREFIX = "GEOROLLOUT_"


# ---------------------------------------------------------------------------------------
# Redaction


class Redactor:
    """Replaces every secret setting's value in a text with `<redacted>`.

    A value counts as secret when its setting is marked secret in the catalogue, or when
    it carries a credential (`AccountKey=`, `sig=`, ...) whatever setting it was pasted
    into: a connection string in GEOROLLOUT_TABLE_ENDPOINT is echoed by the setting's
    validation message, and its key must not reach a log or an answer.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        source = os.environ if environ is None else environ
        values: set[str] = set()
        for name, raw in source.items():
            if not name.startswith(_SETTING_PREFIX) or not raw.strip():
                continue
            if any(p.match(name) for p in _SECRET_NAMES) or _CREDENTIAL_PART.search(raw):
                stripped = raw.strip()
                # As read, as load_config keeps it, and as `{value!r}` / JSON echo it.
                values.update((raw, stripped, repr(stripped)[1:-1], json.dumps(stripped)[1:-1]))
        # Longest first, so a value containing another is replaced whole.
        self._values = sorted((v for v in values if v), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, REDACTED)
        return _CREDENTIAL_PART.sub(lambda match: f"{match[1]}={REDACTED}", text)


# ---------------------------------------------------------------------------------------
# The webhook token


def against_azure(config: Config) -> bool:
    """True when the configuration points at Azure rather than at local stand-ins."""
    registry_host = config.registry_login_server.partition(":")[0].lower()
    arm_host = (urlsplit(config.arm_endpoint).hostname or "").lower()
    return registry_host.endswith(AZURE_REGISTRY_SUFFIXES) or arm_host in AZURE_ARM_HOSTS


def unprotected_webhook(config: Config) -> str | None:
    """Why the ACR webhook route is at risk, or None (token set, or running locally)."""
    if config.acr_webhook_token or not against_azure(config):
        return None
    return (
        f"{WEBHOOK_TOKEN_SETTING} is not set while georollout runs against Azure: "
        "POST /api/hooks/acr then checks no webhook token and records a rollout for any "
        "push notice sent with a function key, forged ones included; set it and send it from "
        "the ACR webhooks as 'Authorization: Bearer <token>'"
    )


def webhook_token_check(config: Config) -> Check:
    risk = unprotected_webhook(config)
    if risk is not None:
        return Check(ok=False, message=risk)
    if config.acr_webhook_token:
        return Check(ok=True)
    return Check(
        ok=True,
        message=f"{WEBHOOK_TOKEN_SETTING} is not set; accepted because georollout is not "
        "running against Azure",
    )


# ---------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome; `message` and `facts` (endpoint, id, ...) are for the detail only."""

    ok: bool
    message: str | None = None
    facts: tuple[tuple[str, str], ...] = ()

    def public(self) -> dict[str, str]:
        return {"status": "ok" if self.ok else "error"}

    def detail(self) -> dict[str, Any]:
        document: dict[str, Any] = self.public()
        if self.message is not None:
            document["message"] = self.message
        document.update(self.facts)
        return document


@dataclass(frozen=True, slots=True)
class RegionChecks:
    registry: Check
    workspace: Check


@dataclass(frozen=True, slots=True)
class HealthReport:
    """One round of checks. Build it with `health` or `configuration_report`, which redact."""

    checked_at: datetime
    configuration: Check
    configuration_problems: tuple[str, ...] = ()
    table: Check | None = None
    regions: tuple[tuple[str, RegionChecks], ...] = ()
    webhook_token: Check | None = None
    # Endpoints serving a digest the registry deleted (a scale-out could not pull it).
    images: Check | None = None
    # Online endpoints a rollout found in a failed state (its regions wait on them).
    endpoints: Check | None = None

    @property
    def healthy(self) -> bool:
        checks = [self.configuration, self.table, self.webhook_token, self.images]
        checks.append(self.endpoints)
        checks += [c for _, region in self.regions for c in (region.registry, region.workspace)]
        return all(check is None or check.ok for check in checks) and self.table is not None

    @property
    def status(self) -> str:
        return "ok" if self.healthy else "degraded"

    def public_document(self) -> dict[str, Any]:
        """Statuses only: what an anonymous caller may see.

        The webhook check is left out on purpose: telling anyone that the webhook route
        checks no token would point at the weakness; it only turns the status degraded.
        """
        checks: dict[str, Any] = {}
        if not self.configuration.ok:
            checks["configuration"] = self.configuration.public()
        if self.table is not None:
            checks["table"] = self.table.public()
            checks["regions"] = {
                name: {"registry": r.registry.public(), "workspace": r.workspace.public()}
                for name, r in self.regions
            }
        if self.images is not None:
            checks["images"] = self.images.public()
        if self.endpoints is not None:
            checks["endpoints"] = self.endpoints.public()
        return {"status": self.status, "checks": checks}

    def detail_document(self) -> dict[str, Any]:
        """Messages, endpoints and ids too: for callers with a function key."""
        configuration = self.configuration.detail()
        if self.configuration_problems:
            configuration["problems"] = list(self.configuration_problems)
        checks: dict[str, Any] = {"configuration": configuration}
        if self.table is not None:
            checks["table"] = self.table.detail()
            checks["regions"] = {
                name: {"registry": r.registry.detail(), "workspace": r.workspace.detail()}
                for name, r in self.regions
            }
        if self.webhook_token is not None:
            checks["webhook_token"] = self.webhook_token.detail()
        if self.images is not None:
            checks["images"] = self.images.detail()
        if self.endpoints is not None:
            checks["endpoints"] = self.endpoints.detail()
        return {
            "status": self.status,
            "checked_at": self.checked_at.isoformat().replace("+00:00", "Z"),
            "checks": checks,
        }


def _redacted(check: Check, redactor: Redactor) -> Check:
    return Check(
        ok=check.ok,
        message=None if check.message is None else redactor(check.message),
        facts=tuple((key, redactor(value)) for key, value in check.facts),
    )


def _problem_check(problem: str | None, *facts: tuple[str, str]) -> Check:
    return Check(ok=problem is None, message=problem, facts=facts)


def configuration_report(
    error: ConfigurationError, *, environ: Mapping[str, str] | None = None
) -> HealthReport:
    """The report when the settings are invalid: nothing else can be checked."""
    redactor = Redactor(environ)
    problems = tuple(redactor(p) for p in error.problems or (error.message,))
    return HealthReport(
        checked_at=datetime.now(UTC),
        configuration=Check(
            ok=False,
            message=f"{len(problems)} setting problem(s); every trigger fails until fixed",
        ),
        configuration_problems=problems,
    )


async def health(
    services: Services,
    *,
    environ: Mapping[str, str] | None = None,
    timeout_s: float = CHECK_TIMEOUT_SECONDS,
) -> HealthReport:
    """Check the table, and per region its registry replica and its workspace, concurrently."""
    config = services.config
    redactor = Redactor(environ)

    async def bounded(what: str, check: Awaitable[str | None]) -> str | None:
        try:
            async with asyncio.timeout(timeout_s):
                return await check
        except TimeoutError:
            return f"{what} did not answer within {timeout_s:g} s"
        except Exception as error:  # one failing check must not hide the others' outcomes
            return f"{what}: {type(error).__name__}: {error}"

    async def registry(region: str) -> str | None:
        # Any verdict but CONFIG_ERROR/TRANSIENT proves the endpoint answers and lets us in:
        # a made-up digest must come back ABSENT.
        outcome = await services.probe.probe(region, "georollout/health", "sha256:" + "0" * 64)
        if outcome.verdict.value in ("absent", "present"):
            return None
        return (
            outcome.error
            or f"registry answered {outcome.evidence.status if outcome.evidence else 'nothing'}"
        )

    async def serving_deleted() -> str | None:
        gone = await services.rollouts.serving_deleted_digests()
        if not gone:
            return None
        where = ", ".join(f"{r.region}/{r.endpoint} ({r.deployment})" for r in gone[:20])
        return (
            f"{len(gone)} endpoint(s) serve a digest deleted from the registry: {where}; "
            "a scale-out or a new replica cannot pull it"
        )

    async def failed_endpoints() -> str | None:
        failed = await services.rollouts.failed_endpoints()
        if not failed:
            return None
        where = ", ".join(f"{region}/{endpoint}" for region, endpoint in failed[:20])
        return (
            f"{len(failed)} online endpoint(s) in a failed state: {where}; rollouts wait for "
            "them until their deployment deadline (fix or delete the endpoint)"
        )

    regions = config.region_names
    outcomes = await asyncio.gather(
        bounded("the failed endpoints", failed_endpoints()),
        bounded("the serving records", serving_deleted()),
        bounded("the table service", services.rollouts.check_health()),
        *(bounded(f"the {r} registry", registry(r)) for r in regions),
        *(bounded(f"the {r} workspace", services.deployer.check_workspace(r)) for r in regions),
    )
    endpoints_problem, images_problem, outcomes = outcomes[0], outcomes[1], outcomes[2:]
    table_problem, registry_problems = outcomes[0], outcomes[1 : 1 + len(regions)]
    workspace_problems = outcomes[1 + len(regions) :]
    table_facts = [("table", config.table.table_name)]
    if config.table.endpoint:
        table_facts.append(("endpoint", config.table.endpoint))
    region_checks = tuple(
        (
            name,
            RegionChecks(
                registry=_redacted(
                    _problem_check(
                        registry_problems[i], ("endpoint", config.region(name).registry_endpoint)
                    ),
                    redactor,
                ),
                workspace=_redacted(
                    _problem_check(
                        workspace_problems[i], ("id", config.region(name).workspace.resource_id)
                    ),
                    redactor,
                ),
            ),
        )
        for i, name in enumerate(regions)
    )
    unknown = config.unknown_settings
    return HealthReport(
        checked_at=datetime.now(UTC),
        configuration=Check(
            ok=True,
            message=f"unknown settings ignored (typos?): {', '.join(unknown)}" if unknown else None,
        ),
        table=_redacted(_problem_check(table_problem, *table_facts), redactor),
        regions=region_checks,
        webhook_token=_redacted(webhook_token_check(config), redactor),
        images=_problem_check(images_problem),
        endpoints=_problem_check(endpoints_problem),
    )


async def process_health(
    get_services: Callable[[], Awaitable[Services]],
    *,
    environ: Mapping[str, str] | None = None,
) -> HealthReport:
    """The report for this process's services, also when they cannot be built."""
    try:
        services = await get_services()
    except ConfigurationError as error:
        return configuration_report(error, environ=environ)
    except GeorolloutError as error:
        # Building the services prepares the table first; when that fails, there is
        # nothing to run the other checks with, and the table is what to fix.
        message = f"the table could not be prepared: {error.message}"
        return HealthReport(
            checked_at=datetime.now(UTC),
            configuration=Check(ok=True),
            table=Check(ok=False, message=Redactor(environ)(message)),
        )
    return await health(services, environ=environ)


# ---------------------------------------------------------------------------------------
# The per-process cache


class HealthCache:
    """Keeps the last round for `ttl_s` (measured from its start) and shares the round in flight.

    Rounds run on the caller's event loop; a round in flight on another loop (tests that
    call `asyncio.run` more than once) is not shared, as a task cannot be awaited across loops.
    """

    def __init__(
        self, ttl_s: float = CACHE_SECONDS, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._report: HealthReport | None = None
        self._started = 0.0
        self._pending: asyncio.Task[HealthReport] | None = None

    def clear(self) -> None:
        self._report = None
        self._pending = None

    async def get(self, run: Callable[[], Awaitable[HealthReport]]) -> HealthReport:
        """The cached report while fresh, else the round in flight, else a new round of `run`."""
        if self._report is not None and self._clock() - self._started < self._ttl_s:
            return self._report
        loop = asyncio.get_running_loop()
        pending = self._pending
        if pending is None or pending.done() or pending.get_loop() is not loop:
            pending = loop.create_task(self._round(run), name="georollout-health")
            # A round whose callers all went away must not log "exception never retrieved".
            pending.add_done_callback(lambda task: task.cancelled() or task.exception())
            self._pending = pending
        # Shielded: a caller that disconnects does not cancel the round the others wait for.
        return await asyncio.shield(pending)

    async def _round(self, run: Callable[[], Awaitable[HealthReport]]) -> HealthReport:
        started = self._clock()
        report = await run()
        self._report, self._started = report, started
        return report
