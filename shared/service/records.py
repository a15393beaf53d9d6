"""Between domain rollouts and the store's records: which index fields a rollout implies."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from shared.adapters.table_store import StoredRollout
from shared.domain.model import DeployStep, RegionState, Rollout
from shared.domain.rollout import RolloutPolicy, replication_deadline
from shared.domain.serialization import rollout_from_record, rollout_to_record

# Steps that still need a call to Azure ML after the region's state settled.
PENDING_STEPS = frozenset({DeployStep.CLEANING_UP, DeployStep.DISCARDING})


def is_active(rollout: Rollout) -> bool:
    """True while a tick still has something to do: moving regions, clean-up, or unsent events."""
    if rollout.outbox:
        return True
    if any(r.deploy_step in PENDING_STEPS for r in rollout.regions):
        return True
    if rollout.ignored_reason is not None or rollout.superseded_by is not None:
        return False
    # Timed-out regions are still probed (slowly): a late image is accepted.
    return any(
        r.state
        in (
            RegionState.AWAITING_REPLICATION,
            RegionState.REPLICATED,
            RegionState.DEPLOYING,
            RegionState.TIMED_OUT,
        )
        for r in rollout.regions
    )


def next_due_at(
    rollout: Rollout, now: datetime, policy: RolloutPolicy, poll: timedelta
) -> datetime | None:
    """When the timer should next look at this rollout (None: never again by itself)."""
    if not is_active(rollout):
        return None
    if rollout.outbox or any(r.deploy_step in PENDING_STEPS for r in rollout.regions):
        return now + poll
    moments: list[datetime] = []
    for region in rollout.regions:
        if region.state in (RegionState.AWAITING_REPLICATION, RegionState.TIMED_OUT):
            moments.append(region.next_probe_at or now)
        elif region.state in (RegionState.REPLICATED, RegionState.DEPLOYING):
            # Deployments are long-running operations: look again after the poll interval.
            moments.append(now + poll)
    if any(r.state is RegionState.AWAITING_REPLICATION for r in rollout.regions):
        moments.append(replication_deadline(rollout, policy))
    return min(moments) if moments else now + poll


def to_stored(
    rollout: Rollout,
    now: datetime,
    policy: RolloutPolicy,
    poll: timedelta,
    base: StoredRollout | None = None,
) -> StoredRollout:
    """The record for `rollout`; `base` (the record it was loaded from) keeps the ETag."""
    fields = {
        "id": rollout.id,
        "registry": rollout.registry,
        "repository": rollout.repository,
        "digest": rollout.digest,
        "state": rollout.state.value,
        "created_at": rollout.created_at,
        "next_due_at": next_due_at(rollout, now, policy, poll),
        "active": is_active(rollout),
        "record": rollout_to_record(rollout),
    }
    if base is None:
        return StoredRollout(**fields)  # type: ignore[arg-type]
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


def from_stored(stored: StoredRollout) -> Rollout:
    return rollout_from_record(stored.record)
