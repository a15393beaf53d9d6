"""Operator actions: `POST /api/rollouts/{id}/{action}` validated, applied, recorded.

The decision is the domain's (`shared.domain.steering`); this module checks the
request, names the actor, applies the transition through the repository's
read-change-save loop (so two operators, or an operator and the timer, never
lose each other's change) and sends the events. Bad input writes nothing; an
action that does not fit is recorded in the history and answered 409.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.domain.model import OperatorAction, Rollout, parse_rollout_id
from shared.domain.serialization import rollout_to_document
from shared.domain.steering import REFUSED, OperatorRequest, apply_request, outcome_of
from shared.errors import InvalidInputError, InvalidTransitionError, NotFoundError
from shared.service.reconcile import publish_outbox, utc_now
from shared.service.runtime import Services

log = logging.getLogger("georollout.steering")

__all__ = ["ACTIONS", "Answer", "InvalidTransitionError", "act", "actor_of", "parse_body"]

ACTIONS = tuple(action.value for action in OperatorAction)
BODY_FIELDS = ("reason", "regions", "actor")
MAX_REASON_CHARS = 1000
MAX_ACTOR_CHARS = 256
# Set by Azure App Service authentication (Easy Auth) for a signed-in caller.
PRINCIPAL_HEADER = "x-ms-client-principal-name"
UNKNOWN_ACTOR = "unknown"


@dataclass(frozen=True, slots=True)
class Answer:
    """What the route answers: the rollout document after the action."""

    document: dict[str, Any]


def parse_action(raw: str) -> OperatorAction:
    if raw not in ACTIONS:
        raise InvalidInputError(
            "action",
            f"unknown action {raw[:32]!r}; one of {', '.join(ACTIONS)}",
            code="unknown_action",
        )
    return OperatorAction(raw)


def parse_body(
    body: Any, regions: tuple[str, ...]
) -> tuple[str | None, tuple[str, ...] | None, str | None]:
    """(reason, regions, claimed actor) from the optional JSON body; 400 naming the field."""
    if body is None:
        return None, None, None
    if not isinstance(body, dict):
        raise InvalidInputError("body", "must be a JSON object (or empty)")
    unknown = sorted(set(body) - set(BODY_FIELDS))
    if unknown:
        raise InvalidInputError(
            unknown[0][:64],
            f"unknown field; the body takes {', '.join(BODY_FIELDS)}",
            code="unknown_field",
        )
    reason = _text(body, "reason", MAX_REASON_CHARS)
    actor = _text(body, "actor", MAX_ACTOR_CHARS)
    named: tuple[str, ...] | None = None
    if "regions" in body and body["regions"] is not None:
        raw = body["regions"]
        if not isinstance(raw, list) or not raw or not all(isinstance(r, str) for r in raw):
            raise InvalidInputError(
                "regions", "must be a non-empty list of region names (omit it for every region)"
            )
        unknown_regions = [r for r in raw if r not in regions]
        if unknown_regions:
            raise InvalidInputError(
                "regions",
                f"unknown region {unknown_regions[0][:64]!r}; this rollout's regions are "
                f"{', '.join(regions)}",
                code="unknown_region",
            )
        named = tuple(dict.fromkeys(raw))
    return reason, named, actor


def _text(body: Mapping[str, Any], field: str, limit: int) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(field, "must be a non-empty string")
    if len(value) > limit or any(ord(ch) < 32 and ch not in "\t" for ch in value):
        raise InvalidInputError(field, f"must be at most {limit} printable characters")
    return value.strip()


def actor_of(
    headers: Mapping[str, str], claimed: str | None, *, app_service_auth: bool
) -> tuple[str, bool]:
    """(actor, verified): the signed-in principal when App Service authentication is on
    (then the platform sets the header and drops any the caller sent); otherwise what the
    caller claims, unverified."""
    lowered = {k.lower(): v for k, v in headers.items()}
    principal = (lowered.get(PRINCIPAL_HEADER) or "").strip()
    if app_service_auth and principal:
        return principal[:MAX_ACTOR_CHARS], True
    return claimed or UNKNOWN_ACTOR, False


async def act(
    services: Services,
    rollout_id: str,
    raw_action: str,
    body: Any,
    headers: Mapping[str, str],
    *,
    clock: Callable[[], datetime] = utc_now,
) -> Answer:
    """Apply one operator action; the updated document, or the project's errors (400, 404,
    409 invalid_transition)."""
    action = parse_action(raw_action)
    try:
        parse_rollout_id(rollout_id)
    except ValueError:
        raise NotFoundError(f"no rollout {rollout_id[:200]!r}") from None
    loaded = await services.rollouts.get(rollout_id)
    if loaded is None:
        raise NotFoundError(f"no rollout {rollout_id[:200]!r}")
    names = tuple(r.region for r in loaded.rollout.regions)
    reason, regions, claimed = parse_body(body, names)
    actor, verified = actor_of(headers, claimed, app_service_auth=services.config.app_service_auth)
    request = OperatorRequest(
        action=action,
        regions=regions,
        reason=reason,
        actor=actor,
        actor_verified=verified,
        request_id=uuid.uuid4().hex,
    )
    updated = await services.rollouts.update(
        rollout_id, lambda r: apply_request(r, request, clock())
    )
    if updated is None:
        raise NotFoundError(f"no rollout {rollout_id[:200]!r}")
    entry = outcome_of(updated, request.request_id)
    assert entry is not None  # apply_request always records the request
    log.info(
        "operator %s (%s) %s %s: %s%s",
        actor,
        "verified" if verified else "unverified",
        action.value,
        rollout_id,
        entry.outcome,
        f" ({entry.message})" if entry.message else "",
    )
    # The event wakes the completion function, which moves the rollout on at once.
    sent: Rollout = await publish_outbox(services, updated)
    if entry.outcome == REFUSED:
        raise InvalidTransitionError(entry.message or "the action does not fit")
    return Answer(rollout_to_document(sent))
