"""Status queries: the operators' view of every rollout (health checks live in `health`)."""

from __future__ import annotations

from typing import Any

from shared.adapters.table_store import MAX_LIST_LIMIT
from shared.domain.model import RolloutState, parse_rollout_id
from shared.domain.serialization import rollout_to_document
from shared.errors import InvalidInputError, NotFoundError
from shared.intake.validation import validate_repository
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
    loaded = await services.rollouts.get(rollout_id)
    if loaded is None:
        raise NotFoundError(f"no rollout {rollout_id!r}; {_ID_HINT}")
    return rollout_to_document(loaded.rollout)


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
    page, token = await services.rollouts.list(
        repository=repository, state=state, limit=limit, continuation=continuation
    )
    return {"rollouts": page, "continuation": token}
