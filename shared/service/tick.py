"""The timer's tick: reconcile every rollout that is due, concurrently, and stop in time.

The tick is the safety net under the events: a lost event, a crash between
two steps or a 429 only delays a rollout until the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass

from shared.adapters.rollout_repository import DueEntry
from shared.service.intake import record_inbox
from shared.service.reconcile import Clock, postpone_after_crash, reconcile, utc_now
from shared.service.runtime import Services

log = logging.getLogger("georollout.tick")


@dataclass(frozen=True)
class TickReport:
    """Rollouts the tick started (`due`; any left when its time was up stay due for the next
    tick), of which `reconciled` finished and `failed` raised; `followed`: due rollouts it
    left to this process's follow-ups (stepping them now or waking them within a second)."""

    due: int
    reconciled: int
    failed: int
    followed: int = 0


async def run_tick(
    services: Services, *, time_budget_s: float, clock: Clock = utc_now
) -> TickReport:
    """Reconcile every due rollout, the whole backlog, with at most `probe.concurrency` at
    once; start none after `time_budget_s` (so a tick ends before the timer's next run is
    due). The registry's request budget paces the probes among them."""
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
    concurrency = services.config.probe.concurrency
    due = done = failed = followed = 0
    follow_ups = services.follow_ups
    started_ids: set[str] = set()
    in_flight: set[asyncio.Task[bool | None]] = set()

    async def one(entry: DueEntry) -> bool | None:
        """None when the entry no longer counts; else whether the step finished."""
        nonlocal due
        try:
            # Checked and read only now, as its step starts: the step decides on a fresh read.
            loaded = await services.rollouts.due_rollout(entry, clock())
        except Exception:
            due += 1
            log.exception("reading %s failed; the next tick tries again", entry.rollout_id)
            return False
        if loaded is None or entry.rollout_id in started_ids:
            return None
        started_ids.add(entry.rollout_id)
        due += 1
        try:
            await reconcile(services, entry.rollout_id, clock=clock, loaded=loaded)
            return True
        except Exception as error:
            # One rollout's trouble must not starve the others: it is tried again later,
            # later each time, so it never holds the head of the due queue.
            log.exception("reconciling %s failed", entry.rollout_id)
            await postpone_after_crash(services, entry.rollout_id, error, clock=clock)
            return False

    async def settle(until_fewer_than: int) -> None:
        nonlocal done, failed
        while len(in_flight) >= until_fewer_than and in_flight:
            finished, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                in_flight.discard(task)
                outcome = task.result()
                if outcome is True:
                    done += 1
                elif outcome is False:
                    failed += 1

    # The due queue is read page by page as the work goes: a backlog of any size is worked
    # through until the tick's time is up, and what is left stays due for the next one.
    try:
        async with aclosing(services.rollouts.each_due(clock())) as entries:
            async for entry in entries:
                await settle(until_fewer_than=concurrency)
                if time.monotonic() - started > time_budget_s:
                    break
                if entry.rollout_id in started_ids:
                    continue  # started once already (a step wrote it a new entry due now)
                if follow_ups is not None and follow_ups.takes_care_of(entry.rollout_id):
                    followed += 1
                    continue
                in_flight.add(asyncio.create_task(one(entry)))
        await settle(until_fewer_than=1)
    finally:
        # A tick cancelled (the host stopping) takes its steps with it: none may go on
        # writing through clients that are being closed. The due queue keeps them.
        for task in in_flight:
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
    report = TickReport(due, done, failed, followed)
    if due or followed:
        log.info(
            "tick: %d due, %d reconciled, %d failed, %d left to follow-ups",
            *vars(report).values(),
        )
    return report
