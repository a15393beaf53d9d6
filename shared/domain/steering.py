"""Operators steer rollouts: approve, hold, resume, retry, rollback. Pure transitions.

`apply_request` decides whether an action fits the rollout as it is now and
returns the rollout with the action carried out (or not) and recorded in its
`history` either way, with the event that tells subscribers. It runs inside the
repository's read-change-save loop, so it may run several times for one request:
a request id already in the history changes nothing. What the regions then do
(deploy, stop, restore traffic) is the state machine's, in `shared.domain.rollout`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared.domain.delivery import (
    served_before,
    start_rollback,
    stop_for_rollback,
    takes_traffic,
)
from shared.domain.events import EventType, OutgoingEvent, operator_event_id
from shared.domain.model import (
    HOLDABLE_REGION_STATES,
    DeployStep,
    HistoryEntry,
    OperatorAction,
    RegionProgress,
    RegionState,
    Rollout,
)
from shared.domain.rollout import commit, next_attempt, waiting_gates
from shared.domain.timestamps import format_timestamp

# Entries kept per rollout (the newest win): a script looping on `hold` must not grow the
# document without bound.
MAX_HISTORY = 200
ACCEPTED = "accepted"
REFUSED = "refused"

_EVENT_TYPES = {
    OperatorAction.APPROVE: EventType.OPERATOR_APPROVE,
    OperatorAction.HOLD: EventType.OPERATOR_HOLD,
    OperatorAction.RESUME: EventType.OPERATOR_RESUME,
    OperatorAction.RETRY: EventType.OPERATOR_RETRY,
    OperatorAction.ROLLBACK: EventType.OPERATOR_ROLLBACK,
}
# States a retry gives a new attempt ("held" here: waiting for a failed primary).
RETRYABLE_STATES = frozenset(
    {RegionState.FAILED, RegionState.ROLLED_BACK, RegionState.TIMED_OUT, RegionState.HELD}
)


@dataclass(frozen=True, slots=True)
class OperatorRequest:
    """One operator's request. `regions` None: every region the action fits."""

    action: OperatorAction
    regions: tuple[str, ...] | None
    reason: str | None
    actor: str
    actor_verified: bool
    request_id: str


# A transition's result: the changed rollout and the regions it applies to (what the history
# names when the request named none).
Applied = tuple[Rollout, tuple[str, ...]]


class Refused(Exception):
    """The action does not fit the rollout's state; the message says why (and what would)."""


def apply_request(rollout: Rollout, request: OperatorRequest, now: datetime) -> Rollout:
    """Carry out `request` if it fits, record it in the history either way."""
    if outcome_of(rollout, request.request_id) is not None:
        return rollout  # already applied (this is a retried write)
    try:
        changed, named = _TRANSITIONS[request.action](rollout, request, now)
        outcome, message = ACCEPTED, None
    except Refused as refusal:
        changed, named, outcome, message = rollout, (), REFUSED, str(refusal)
    entry = HistoryEntry(
        at=now,
        action=request.action,
        actor=request.actor,
        actor_verified=request.actor_verified,
        reason=request.reason,
        regions=request.regions if request.regions is not None else named,
        outcome=outcome,
        message=message,
        request_id=request.request_id,
    )
    recorded = replace(changed, history=(*changed.history, entry)[-MAX_HISTORY:])
    stepped = commit(rollout, recorded, now)
    return replace(stepped, outbox=(*stepped.outbox, _event(stepped, entry)))


def outcome_of(rollout: Rollout, request_id: str) -> HistoryEntry | None:
    """The history entry of request `request_id`, if it was applied."""
    return next((e for e in reversed(rollout.history) if e.request_id == request_id), None)


# --- the transitions ------------------------------------------------------------------


def _hold(rollout: Rollout, request: OperatorRequest, now: datetime) -> Applied:
    _refuse_if_ended(rollout, "hold")
    regions = _pick(
        rollout,
        request,
        fits=lambda r: r.state in HOLDABLE_REGION_STATES and not r.operator_hold,
        why_not=lambda r: (
            "is held already"
            if r.operator_hold
            else f"is {r.state.value}: nothing left to hold there"
        ),
        none_fit="nothing to hold: every region has finished (live, failed, rolled back or "
        "superseded) or is held already",
    )
    return _change(rollout, regions, lambda r: replace(r, operator_hold=True)), regions


def _resume(rollout: Rollout, request: OperatorRequest, now: datetime) -> Applied:
    regions = _pick(
        rollout,
        request,
        fits=lambda r: r.operator_hold,
        why_not=lambda r: "is not held",
        none_fit="nothing to resume: no region is held",
    )
    resumed = _change(rollout, regions, lambda r: replace(r, operator_hold=False, resumed_at=now))
    return resumed, regions


def _approve(rollout: Rollout, request: OperatorRequest, now: datetime) -> Applied:
    _refuse_if_ended(rollout, "approve")
    target = rollout.target
    waiting = {g.wave: g for g in waiting_gates(rollout)}
    if target is None or not waiting:
        raise Refused(
            "no approval gate is waiting (the target rule asks for none, it was "
            "approved already, or the wave before it is not live yet)"
        )

    def wave(progress: RegionProgress) -> int:
        assert target is not None
        return target.wave_of(progress.region, progress.primary)

    regions = _pick(
        rollout,
        request,
        fits=lambda r: wave(r) in waiting and r.state in HOLDABLE_REGION_STATES,
        why_not=lambda r: f"is {r.state.value} and waits for no approval",
        none_fit="no region waits for an approval",
    )
    waves = {wave(rollout.region(name)) for name in regions}
    gates = tuple(
        replace(g, approved_at=now, approved_by=request.actor) if g.wave in waves else g
        for g in rollout.gates
    )
    # The regions the approval lets go on (they leave awaiting_approval in the commit).
    return replace(rollout, gates=gates), regions


def _retry(rollout: Rollout, request: OperatorRequest, now: datetime) -> Applied:
    if rollout.ignored_reason is not None:
        raise Refused(f"the rollout is ignored: {rollout.ignored_reason}")
    if rollout.superseded_by is not None:
        raise Refused(
            f"superseded by {rollout.superseded_by}: the newer rollout owns the endpoint now"
        )
    if rollout.deleted_at is not None:
        raise Refused("the image was deleted from the registry: push it again to retry")
    primary = rollout.primary

    def why_not(progress: RegionProgress) -> str:
        if (
            progress.state is RegionState.FAILED
            and progress.deploy_step is DeployStep.SHIFTING_TRAFFIC
        ):
            return "failed while traffic was moving to it: roll the region back instead"
        if progress.state is RegionState.HELD and primary is not None:
            return f"waits for the primary {primary.region}, which failed: retry {primary.region}"
        return f"is {progress.state.value}: only failed, rolled-back, timed-out or held regions are retried"

    def fits(progress: RegionProgress) -> bool:
        if progress.state not in RETRYABLE_STATES or progress.retry_requested:
            return False
        if progress.state is RegionState.FAILED:
            return progress.deploy_step is not DeployStep.SHIFTING_TRAFFIC
        if progress.state is RegionState.HELD:
            # Released by the primary's retry: named alone it could not go on.
            return request.regions is None or (
                primary is not None and primary.region in request.regions
            )
        return True

    regions = _pick(
        rollout,
        request,
        fits=fits,
        why_not=why_not,
        none_fit="nothing to retry: no region is failed, rolled back, timed out or held",
    )

    def again(progress: RegionProgress) -> RegionProgress:
        if progress.state is RegionState.HELD:
            return progress  # goes on once the primary is live again
        if progress.deploy_step is DeployStep.DISCARDING:
            # The failed attempt's deployment is still being deleted: start after that.
            return replace(progress, retry_requested=True)
        return next_attempt(progress, now)

    retried = _change(rollout, regions, again)
    target = retried.target
    if target is not None:
        # Gates that were not approved in time wait again, from now.
        waves = {
            target.wave_of(r.region, r.primary) for r in retried.regions if r.region in regions
        }
        gates = tuple(g for g in retried.gates if g.approved_at is not None or g.wave not in waves)
        retried = replace(retried, gates=gates)
    return replace(retried, rolled_back_at=None, rollback_reason=None), regions


def _rollback(rollout: Rollout, request: OperatorRequest, now: datetime) -> Applied:
    if rollout.ignored_reason is not None:
        raise Refused(f"the rollout is ignored: {rollout.ignored_reason}")

    def fits(progress: RegionProgress) -> bool:
        # Live, soaking or holding a traffic step: our deployment takes traffic.
        return takes_traffic(progress)

    def why_not(progress: RegionProgress) -> str:
        if progress.deploy_step in (DeployStep.RESTORING, DeployStep.REDEPLOYING_PREVIOUS):
            return "is rolling back already"
        return f"is {progress.state.value}: only a live region (or one soaking or holding a traffic step) can be rolled back"

    regions = _pick(
        rollout,
        request,
        fits=fits,
        why_not=why_not,
        none_fit="nothing to roll back: no region takes traffic from this rollout",
    )
    # An earlier attempt of this rollout (the same image) is not what served before it.
    nothing_before = [name for name in regions if not served_before(rollout, rollout.region(name))]
    if nothing_before:
        endpoint = rollout.target.endpoint if rollout.target else "the endpoint"
        raise Refused(
            f"nothing served {endpoint} before this rollout in {', '.join(nothing_before)}: "
            "there is nothing to go back to"
        )
    chosen = set(regions)

    def back(progress: RegionProgress) -> RegionProgress:
        if progress.region in chosen:
            return start_rollback(progress, now)
        return stop_for_rollback(rollout, progress, now, whole=request.regions is None)

    why = f"rolled back by {request.actor}" + (f": {request.reason}" if request.reason else "")
    rolled = replace(
        rollout,
        regions=tuple(back(r) for r in rollout.regions),
        rolled_back_at=now,
        rollback_reason=why,
    )
    # Every region the rollback changed: those going back and those it stopped.
    return rolled, _named(rollout, rolled)


_TRANSITIONS: dict[OperatorAction, Callable[[Rollout, OperatorRequest, datetime], Applied]] = {
    OperatorAction.APPROVE: _approve,
    OperatorAction.HOLD: _hold,
    OperatorAction.RESUME: _resume,
    OperatorAction.RETRY: _retry,
    OperatorAction.ROLLBACK: _rollback,
}


# --- helpers --------------------------------------------------------------------------


def _refuse_if_ended(rollout: Rollout, action: str) -> None:
    if rollout.ignored_reason is not None:
        raise Refused(f"the rollout is ignored: {rollout.ignored_reason}")
    if rollout.rolled_back_at is not None:
        raise Refused("the rollout was rolled back: retry it to go on")
    if rollout.superseded_by is not None:
        raise Refused(f"superseded by {rollout.superseded_by}: nothing to {action}")


def _pick(
    rollout: Rollout,
    request: OperatorRequest,
    *,
    fits: Callable[[RegionProgress], bool],
    why_not: Callable[[RegionProgress], str],
    none_fit: str,
) -> tuple[str, ...]:
    """The regions the request applies to: those named (each must fit), or every one that
    fits. The caller checked that named regions are the rollout's."""
    if request.regions is None:
        chosen = tuple(r.region for r in rollout.regions if fits(r))
        if not chosen:
            raise Refused(none_fit)
        return chosen
    unfit = [
        f"{name} {why_not(rollout.region(name))}"
        for name in request.regions
        if not fits(rollout.region(name))
    ]
    if unfit:
        raise Refused("; ".join(unfit))
    return request.regions


def _change(
    rollout: Rollout, regions: Sequence[str], change: Callable[[RegionProgress], RegionProgress]
) -> Rollout:
    chosen = set(regions)
    return replace(
        rollout,
        regions=tuple(change(r) if r.region in chosen else r for r in rollout.regions),
    )


def _named(before: Rollout, after: Rollout) -> tuple[str, ...]:
    """The regions whose progress differs between `before` and `after`."""
    old = {r.region: r for r in before.regions}
    return tuple(r.region for r in after.regions if old.get(r.region) != r)


def history_to_document(entry: HistoryEntry) -> dict[str, Any]:
    """A history entry as the rollout document and the events show it."""
    return {
        "at": format_timestamp(entry.at),
        "action": entry.action.value,
        "actor": entry.actor,
        "actor_verified": entry.actor_verified,
        "reason": entry.reason,
        "regions": list(entry.regions),
        "outcome": entry.outcome,
        "message": entry.message,
        "request_id": entry.request_id,
    }


def _event(rollout: Rollout, entry: HistoryEntry) -> OutgoingEvent:
    data = {
        "rollout_id": rollout.id,
        "registry": rollout.registry,
        "repository": rollout.repository,
        "digest": rollout.digest,
        "generation": rollout.generation,
        "endpoint": rollout.target.endpoint if rollout.target else None,
        "state": rollout.state.value,
        **history_to_document(entry),
    }
    return OutgoingEvent(
        id=operator_event_id(rollout.id, entry.request_id),
        type=_EVENT_TYPES[entry.action],
        subject=rollout.subject,
        time=entry.at,
        region="",
        data=data,
    )
