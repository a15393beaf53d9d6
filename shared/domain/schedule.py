"""When a rollout needs the timer again: pure scheduling from its recorded state.

The store keeps one due-queue entry per active rollout at `next_due_at`; the
timer reconciles what is due. Events only make a step happen sooner.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.domain.delivery import watched
from shared.domain.model import DeployStep, RegionProgress, RegionState, Rollout
from shared.domain.rollout import (
    RolloutPolicy,
    give_up_deadline,
    keep_previous_until,
    paused_by_hold,
    replication_deadline,
    waiting_gates,
)

# Steps that still need a call to Azure ML after the region's state settled.
PENDING_STEPS = frozenset(
    {
        DeployStep.CLEANING_UP,
        DeployStep.DISCARDING,
        DeployStep.RESTORING,
        DeployStep.REDEPLOYING_PREVIOUS,
    }
)
_PROBED = frozenset({RegionState.AWAITING_REPLICATION, RegionState.TIMED_OUT})
_DEPLOYING = frozenset({RegionState.REPLICATED, RegionState.DEPLOYING, RegionState.SOAKING})


def _housekeeping(rollout: Rollout) -> bool:
    """Work left whatever the rollout's fate: events to send, deployments to delete, leases."""
    return bool(rollout.outbox) or any(
        r.deploy_step in PENDING_STEPS or r.lease_until is not None for r in rollout.regions
    )


def _probing(region: RegionProgress) -> bool:
    return region.state in _PROBED and not region.gave_up


def _primary_readable(rollout: Rollout) -> bool:
    primary = rollout.primary
    return primary is None or not (primary.state in _PROBED and primary.gave_up)


def _can_move(rollout: Rollout, region: RegionProgress) -> bool:
    if _probing(region):
        return True
    if region.state not in _DEPLOYING:
        return False
    return region.primary or _primary_readable(rollout)


def _keeping_previous(rollout: Rollout) -> bool:
    return any(r.deploy_step is DeployStep.KEEPING_PREVIOUS for r in rollout.regions)


def _open_gates(rollout: Rollout) -> list[datetime]:
    """When each approval gate still waiting was opened (its timeout counts from then)."""
    return [gate.opened_at for gate in waiting_gates(rollout)]


def is_active(rollout: Rollout) -> bool:
    """True while a step still has something to do: moving regions, clean-up, a lease to give
    back, a tag to confirm, a previous deployment kept for a while, an approval that may
    time out, or unsent events."""
    if _housekeeping(rollout) or _keeping_previous(rollout) or _open_gates(rollout):
        return True
    readable = _primary_readable(rollout) or rollout.superseded_by is not None
    if (
        rollout.pending_tags
        and rollout.ignored_reason is None
        and rollout.deployable is not False
        and readable
    ):
        return True  # a claimed tag to check, also for a replaced rollout (a re-push?)
    if rollout.ignored_reason is not None or rollout.superseded_by is not None:
        return False
    if rollout.deployable is None and readable:
        return True
    # Timed-out regions are still probed (slowly) until the give-up time: late images count.
    return any(_can_move(rollout, r) for r in rollout.regions)


def next_due_at(
    rollout: Rollout,
    now: datetime,
    policy: RolloutPolicy,
    poll: timedelta,
    *,
    probes_from: datetime | None = None,
) -> datetime | None:
    """When the timer should next look at this rollout (None: never again by itself);
    never before `retry_after` when its last steps crashed. `probes_from`: no probe can go
    out before then (the registry's request budget refuses until then), so a probe due
    earlier counts as due then; every other step keeps its time."""
    due = _next_due_at(rollout, now, policy, poll, probes_from)
    if due is not None and rollout.retry_after is not None:
        return max(due, rollout.retry_after)
    return due


def _next_due_at(
    rollout: Rollout,
    now: datetime,
    policy: RolloutPolicy,
    poll: timedelta,
    probes_from: datetime | None,
) -> datetime | None:
    if not is_active(rollout):
        return None
    moments: list[datetime] = []
    if _housekeeping(rollout):
        moments.append(now + poll)
        moments += [
            _check_at(r, now, poll) for r in rollout.regions if r.deploy_step in PENDING_STEPS
        ]
    for region in rollout.regions:
        if _probing(region):
            probe_at = region.next_probe_at or now
            moments.append(probe_at if probes_from is None else max(probe_at, probes_from))
        elif watched(region):
            # A traffic step or a soak: the next check, and when the step or soak ends.
            end = region.soak_until if region.state is RegionState.SOAKING else region.step_until
            if region.operator_hold and region.state is RegionState.DEPLOYING:
                end = None  # held: the next step waits for the resume, only checks go on
            moments += [m for m in (region.next_verify_at or now, end) if m is not None]
        elif region.state in _DEPLOYING and not paused_by_hold(region):
            # Deployments are long-running operations: look again when ARM asked (its
            # Retry-After), at the latest after the poll interval. A region an operator
            # holds starts nothing until the resume (which steps the rollout itself): a
            # look on every poll would only read the rollout.
            moments.append(_check_at(region, now, poll))
    for region in rollout.regions:
        if region.state is RegionState.AWAITING_REPLICATION:
            moments.append(replication_deadline(rollout, policy, region))
        if region.state is RegionState.TIMED_OUT and not region.gave_up:
            moments.append(give_up_deadline(rollout, policy, region))
    if rollout.target is not None:
        timeout = timedelta(seconds=rollout.target.approval_timeout_s)
        moments += [opened + timeout for opened in _open_gates(rollout)]
    if _keeping_previous(rollout):
        # Nothing to do until the keep time ends (a settled rollout), or until the regions
        # still moving (their own moments above) settle it.
        until = keep_previous_until(rollout, policy)
        if until is not None:
            moments.append(until)
    if moments:
        return min(moments)
    if _waits_for_a_resume(rollout):
        return None
    return now + poll


def _waits_for_a_resume(rollout: Rollout) -> bool:
    """Active with no moment of its own only because regions an operator holds wait there:
    nothing starts until the resume, which steps the rollout itself, so a look on every
    poll would only read it. A claimed tag to confirm or a manifest not yet read still
    needs the registry: those keep the poll."""
    return (
        not rollout.pending_tags
        and rollout.deployable is not None
        and any(paused_by_hold(r) for r in rollout.regions)
    )


def _check_at(region: RegionProgress, now: datetime, poll: timedelta) -> datetime:
    """When to read the region's long-running operation again: at ARM's pace for it (its
    Retry-After) when that is quicker than the poll interval."""
    every = region.poll_every_s
    if every is not None and timedelta(seconds=every) < poll:
        return now + timedelta(seconds=every)
    return now + poll
