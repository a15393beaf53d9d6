"""Status queries (the operators' view) and health checks (is each dependency reachable?)."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.adapters.table_store import MAX_LIST_LIMIT
from shared.domain.model import RolloutState, parse_rollout_id
from shared.domain.serialization import rollout_to_document
from shared.errors import InvalidInputError, NotFoundError
from shared.intake.validation import validate_repository
from shared.service.records import from_stored
from shared.service.runtime import Services

STATES = tuple(state.value for state in RolloutState)
_ID_HINT = (
    "ids look like <registry>~<repository, / as ~>~sha256-<hex>, e.g. "
    "contoso.azurecr.io~models~llm~sha256-3f2a...; GET /api/rollouts?repository=<repo> lists them"
)
DEFAULT_LIMIT = 50
MAX_LIMIT = MAX_LIST_LIMIT


async def get_rollout(services: Services, rollout_id: str) -> dict[str, Any]:
    try:
        parse_rollout_id(rollout_id)
    except ValueError:
        raise NotFoundError(f"no rollout {rollout_id!r}; {_ID_HINT}") from None
    stored = await services.store.get(rollout_id)
    if stored is None:
        raise NotFoundError(f"no rollout {rollout_id!r}; {_ID_HINT}")
    return rollout_to_document(from_stored(stored))


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidInputError(
            "limit", f"must be an integer from 1 to {MAX_LIMIT}", code="invalid_limit"
        )
    return int(raw)


async def list_rollouts(
    services: Services,
    *,
    repository: str | None,
    state: str | None,
    limit: int,
    continuation: str | None,
) -> dict[str, Any]:
    if repository is not None:
        validate_repository(repository, "repository")
    if state is not None and state not in STATES:
        raise InvalidInputError(
            "state", f"must be one of {', '.join(STATES)}", code="invalid_state"
        )
    page, token = await services.store.list(
        repository=repository, state=state, limit=limit, continuation=continuation
    )
    return {"rollouts": [rollout_to_document(from_stored(s)) for s in page], "continuation": token}


def _check(problem: str | None) -> dict[str, str]:
    return {"status": "ok"} if problem is None else {"status": "error", "message": problem}


async def health(services: Services) -> dict[str, Any]:
    """Check the table, and per region its registry replica and its workspace, concurrently."""

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

    regions = services.config.region_names
    table_task = asyncio.create_task(services.store.check_health())
    registry_tasks = {r: asyncio.create_task(registry(r)) for r in regions}
    workspace_tasks = {
        r: asyncio.create_task(services.deployer.check_workspace(r)) for r in regions
    }
    table = await table_task
    checks: dict[str, Any] = {"table": _check(table), "regions": {}}
    healthy = table is None
    for region in regions:
        registry_problem = await registry_tasks[region]
        workspace_problem = await workspace_tasks[region]
        healthy = healthy and registry_problem is None and workspace_problem is None
        checks["regions"][region] = {
            "registry": _check(registry_problem)
            | {"endpoint": services.config.region(region).registry_endpoint},
            "workspace": _check(workspace_problem)
            | {"id": services.config.region(region).workspace.resource_id},
        }
    return {"status": "ok" if healthy else "degraded", "checks": checks}
