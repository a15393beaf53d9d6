"""The timer's tick: reconcile every rollout that is due, concurrently, and stop in time.

The tick is the safety net under the events: a lost event, a crash between
two steps or a 429 only delays a rollout until the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from shared.service.intake import record_inbox
from shared.service.reconcile import Clock, postpone_after_crash, reconcile, utc_now
from shared.service.runtime import Services

log = logging.getLogger("georollout.tick")


@dataclass(frozen=True)
class TickReport:
    due: int
    reconciled: int
    left_for_next_tick: int
    failed: int


async def run_tick(
    services: Services, *, time_budget_s: float, clock: Clock = utc_now, limit: int = 500
) -> TickReport:
    """Reconcile due rollouts with at most `probe.concurrency` at once; start none after
    `time_budget_s` (so a tick ends before the timer's next run is due)."""
    started = time.monotonic()
    try:
        # Housekeeping first, bounded: answered build messages past their replay window.
        await services.rollouts.purge_build_messages(clock())
    except Exception:
        log.exception("purging build messages failed; the next tick tries again")
    try:
        # Notices a process accepted but did not record (it stopped right after answering).
        await record_inbox(services, clock=clock)
    except Exception:
        log.exception("recording the inbox failed; the next tick tries again")
    try:
        # Listing rows of writes that died between their rows and their rollout.
        repaired = await services.rollouts.repair_listings(clock())
        if repaired:
            log.warning("repaired the listing rows of %d interrupted writes", repaired)
    except Exception:
        log.exception("repairing listings failed; the next tick tries again")
    due = await services.rollouts.due(clock(), limit=limit)
    gate = asyncio.Semaphore(services.config.probe.concurrency)
    done = skipped = failed = 0

    async def one(rollout_id: str) -> None:
        nonlocal done, skipped, failed
        async with gate:
            if time.monotonic() - started > time_budget_s:
                skipped += 1
                return
            try:
                await reconcile(services, rollout_id, clock=clock)
                done += 1
            except Exception as error:
                # One rollout's trouble must not starve the others: it is tried again later,
                # later each time, so it never holds the head of the due queue.
                failed += 1
                log.exception("reconciling %s failed", rollout_id)
                await postpone_after_crash(services, rollout_id, error, clock=clock)

    await asyncio.gather(*(one(rollout_id) for rollout_id in due))
    report = TickReport(len(due), done, skipped, failed)
    if due:
        log.info(
            "tick: %d due, %d reconciled, %d left for the next tick, %d failed",
            *vars(report).values(),
        )
    return report
