"""Timer triggers: fire a function on its schedule, one run at a time.

Like the host's singleton timers, a run never overlaps the previous one. Ticks
missed while a run was still going are coalesced into one run that starts
at once with `past_due` set.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from azure.functions.meta import Datum

from devenv.host.invocation import FunctionInvoker, InvocationResult
from devenv.host.loader import IndexedFunction
from devenv.host.ncrontab import Schedule

log = logging.getLogger("devenv.host")

# A run that starts later than its scheduled time by more than this is past due.
PAST_DUE_TOLERANCE = timedelta(milliseconds=500)


def utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


class TimerRunner:
    """Drives one timer-triggered function; `run()` is its long-lived task."""

    def __init__(
        self,
        function: IndexedFunction,
        schedule: Schedule,
        invoker: FunctionInvoker,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.function = function
        self.schedule = schedule
        self._invoker = invoker
        self._clock = clock
        self._lock = asyncio.Lock()
        self._last: datetime | None = None

    @property
    def run_on_startup(self) -> bool:
        return bool(self.function.trigger_setting("run_on_startup"))

    async def fire(self, *, scheduled: datetime | None, reason: str) -> InvocationResult:
        """One invocation, after any run of this timer still going has finished.

        `scheduled` is the occurrence this run stands for; None for runs outside
        the schedule (start-up, manual), which are never past due.
        """
        async with self._lock:
            now = self._clock()
            past_due = scheduled is not None and now - scheduled > PAST_DUE_TOLERANCE
            upcoming = self.schedule.next_after(now)
            info = {
                "Schedule": {"AdjustForDST": True},
                "ScheduleStatus": {
                    "Last": _iso(self._last),
                    "Next": _iso(upcoming),
                    "LastUpdated": _iso(now),
                },
                "IsPastDue": past_due,
            }
            self._last = scheduled or now
            return await self._invoker.invoke(
                self.function, Datum(type="json", value=json.dumps(info)), reason=reason
            )

    async def _sleep_until(self, moment: datetime) -> None:
        while (remaining := (moment - self._clock()).total_seconds()) > 0:
            await asyncio.sleep(remaining)

    def _latest_due(self, after: datetime, now: datetime) -> datetime:
        """The last occurrence after `after` that is not later than `now`."""
        latest = self.schedule.next_after(after)
        while (following := self.schedule.next_after(latest)) <= now:
            latest = following
        return latest

    async def run(self) -> None:
        if self.run_on_startup:
            await self.fire(scheduled=None, reason="Timer fired at startup (run_on_startup)")
        due = self.schedule.next_after(self._clock())
        log.info("Timer %s: next run at %s", self.function.name, due.isoformat())
        while True:
            await self._sleep_until(due)
            await self.fire(scheduled=due, reason=f"Timer fired at {self._clock().isoformat()}")
            finished = self._clock()
            upcoming = self.schedule.next_after(due)
            due = self._latest_due(due, finished) if upcoming <= finished else upcoming
