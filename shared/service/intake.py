"""Intake: record push notices as rollouts, supersede older ones, and move each on at once.

A notice is a hint from any channel (Event Grid, ACR webhook, registry
notification). Recording is idempotent: the same digest is the same rollout,
a tag is added once, a redelivery changes nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from shared.adapters.table_store import RolloutAlreadyExistsError, StoredRollout
from shared.domain import rollout as machine
from shared.domain.model import Rollout, rollout_id
from shared.domain.push import PushNotice
from shared.domain.targets import match_target
from shared.errors import InvalidInputError
from shared.intake.notices import Ignored
from shared.service.reconcile import Clock, reconcile, utc_now
from shared.service.records import from_stored, to_stored
from shared.service.runtime import Services

log = logging.getLogger("georollout.intake")


@dataclass(frozen=True)
class IntakeResult:
    recorded: tuple[str, ...]  # rollout ids created or updated
    ignored: tuple[str, ...]  # reasons, for the log and the response


def check_regions(services: Services, notices: Sequence[PushNotice | Ignored]) -> None:
    """A region hint must name a configured region (a misrouted webhook is a 400, not a guess)."""
    for notice in notices:
        hint = notice.region_hint if isinstance(notice, PushNotice) else None
        if hint is not None and hint not in services.config.region_names:
            raise InvalidInputError(
                "region",
                f"unknown region {hint!r}; configured: {', '.join(services.config.region_names)}",
                code="unknown_region",
            )


async def record_notices(
    services: Services,
    notices: Sequence[PushNotice | Ignored],
    *,
    clock: Clock = utc_now,
    replication_hints: bool = False,
) -> IntakeResult:
    """Record every notice, then probe for each touched rollout (a hinted region at once);
    deployments follow through the completion function and the timer.

    `replication_hints`: the notices say an image reached a replica (a regional
    webhook). Their timestamps are the replica's, later than the push itself, so
    for a known rollout they add the tag and make a probe due, and never move the
    rollout's push time, which orders supersession.
    """
    recorded: list[str] = []
    ignored: list[str] = []
    for notice in notices:
        if isinstance(notice, Ignored):
            ignored.append(notice.reason)
            continue
        rollout, order_changed = await _record(services, notice, clock, replication_hints)
        recorded.append(rollout.id)
        if order_changed:
            await _supersede_around(services, rollout, clock)
        await reconcile(
            services, rollout.id, clock=clock, probe_now=notice.region_hint, deploy=False
        )
    return IntakeResult(tuple(dict.fromkeys(recorded)), tuple(ignored))


async def _record(
    services: Services, notice: PushNotice, clock: Clock, replication_hint: bool
) -> tuple[Rollout, bool]:
    """The rollout after this notice, and whether its place in push order may have changed
    (new, or pushed later: the only cases where supersession must be looked at again)."""
    target = match_target(services.rules, notice.repository, notice.tag)
    identity = rollout_id(notice.registry, notice.repository, notice.digest)
    for _ in range(3):
        existing = await services.store.get(identity)
        now = clock()
        if existing is None:
            fresh = machine.new_rollout(notice, services.config.region_names, target, now)
            try:
                await services.store.insert(
                    to_stored(fresh, now, services.policy, services.deploy_poll)
                )
            except RolloutAlreadyExistsError:
                continue  # a concurrent delivery created it first: record onto theirs
            log.info("new rollout %s (%s)", fresh.id, fresh.state.value)
            return fresh, True

        def add_push(stored: StoredRollout) -> StoredRollout | None:
            current = from_stored(stored)
            seen = replace(notice, pushed_at=current.pushed_at) if replication_hint else notice
            updated = machine.record_push(current, seen, clock(), target=target)
            if updated is current:
                return None
            return to_stored(updated, clock(), services.policy, services.deploy_poll, stored)

        before = from_stored(existing)
        after = from_stored(await services.store.update_with_retry(identity, add_push))
        moved = (after.pushed_at, after.generation) != (before.pushed_at, before.generation)
        return after, moved
    raise RuntimeError(f"could not record {notice.repository}@{notice.digest}")


async def _supersede_around(services: Services, rollout: Rollout, clock: Clock) -> None:
    """A newer push takes the endpoint from older unfinished rollouts (and a late, older push
    is itself superseded by a newer one already recorded): the registry's time decides."""
    if rollout.target is None:
        return
    page, _ = await services.store.list(repository=rollout.repository, limit=100)
    for stored in page:
        other = from_stored(stored)
        if other.id == rollout.id:
            continue
        if machine.supersedes(rollout, other) and other.superseded_by is None:
            await _mark_superseded(services, other.id, by=rollout.id, clock=clock)
        elif machine.supersedes(other, rollout):
            await _mark_superseded(services, rollout.id, by=other.id, clock=clock)


async def _mark_superseded(services: Services, target_id: str, *, by: str, clock: Clock) -> None:
    def stop(stored: StoredRollout) -> StoredRollout | None:
        current = from_stored(stored)
        if current.superseded_by is not None:
            return None
        updated = machine.supersede(current, by=by, now=clock())
        if updated is current:
            return None
        return to_stored(updated, clock(), services.policy, services.deploy_poll, stored)

    await services.store.update_with_retry(target_id, stop)
    log.info("rollout %s superseded by %s", target_id, by)
    # Let it give up its endpoint leases and send its events now, not when a timer finds it.
    await reconcile(services, target_id, clock=clock, deploy=False)
