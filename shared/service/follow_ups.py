"""Follow-ups: each rollout's next step runs when it is due, not at the next timer tick.

Every reconcile ends with the moment the rollout next needs a step (the same
`next_due_at` the due queue holds). When that moment is near, this process sets
an asyncio timer for it, so a deployment's status is read when its poll is due,
a soak ends on the second, and a probe goes out at its back-off's end, whatever
the timer's schedule (30 s in Azure).

Nothing is lost when the process stops or a follow-up is dropped: the due queue
in the table is the truth and the timer's tick works through it. A follow-up is
only ever a reconcile that happens sooner; two instances doing it for the same
rollout are serialised by the rollout's ETag like any two triggers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from shared.domain.model import Rollout

log = logging.getLogger("georollout.follow_ups")

# A step due further out than this is left to the timer (a kept deployment's hour, a gate's
# timeout): the process need not hold a timer for every settled rollout.
DEFAULT_HORIZON_S = 600.0

# A step that leaves its rollout due no later than the moment it began could not do that
# work (an ETag race lost five times; a probe the request budget refused waits for the
# budget instead): it is tried again after this pause, counted from the step's start,
# never in a loop. A step that took longer than the pause (a pass that deployed in one
# region while another region's probe came due) is followed at once.
MIN_DELAY_S = 1.0
# A moment that comes due after the step began (a probe's back-off ending a few hundred
# milliseconds into a deployment poll) is new work: it is woken for on time, not held to
# the pause (held, a probe due 0.1 s after a poll went out a second late, and a replica was
# seen that much later). This floor only bounds how often a rollout whose moments crowd
# together (a Retry-After of a few milliseconds) is stepped.
MIN_GAP_S = 0.2
# Woken just after the due time, so the step finds the work due (the event loop's clock
# and the wall clock differ by milliseconds).
MARGIN_S = 0.05
# A rollout this process wakes within this long (or is stepping) is left to it by the tick:
# both stepping it at once would ask its replica twice and lose one write to the ETag.
SOON_S = 1.0

# Storing answered pushes waits while answers are being given: in a burst each answer's
# one write then has the process to itself, and the storing (a rollout's rows, about twenty
# table requests per push) follows once no answer has been under way for `QUIET_S`. A steady
# stream never holds a push's storing back longer than `STORING_DEFER_MAX_S`: there the two
# share the process. (`bench_intake`, 300 pushes: beside the answers, storing took about
# half the host's CPU; held back 3 s, the answers went from 19-27 % of the table's raw write
# rate to 58-71 %.)
QUIET_S = 0.05
STORING_DEFER_MAX_S = 2.0

Step = Callable[[], Awaitable[object]]
# (rollout, now, no probe before) -> when its next step is due, None: not by itself.
Due = Callable[[Rollout, datetime, datetime | None], datetime | None]


class FollowUps:
    """At most one pending wake-up per rollout, at its earliest due time; at most
    `concurrency` follow-up steps at once."""

    def __init__(
        self,
        due: Due,
        now: Callable[[], datetime],
        *,
        concurrency: int,
        horizon_s: float = DEFAULT_HORIZON_S,
        min_delay_s: float = MIN_DELAY_S,
        quiet_s: float = QUIET_S,
        storing_defer_max_s: float = STORING_DEFER_MAX_S,
    ) -> None:
        self._due = due
        self._min_delay_s = min_delay_s
        self._now = now
        self._horizon_s = horizon_s
        self._gate = asyncio.Semaphore(concurrency)
        # Storing runs beside the answers, which are what a burst waits on: a quarter of
        # the steps' concurrency keeps up with the table and leaves it to them.
        self._storing_gate = asyncio.Semaphore(max(1, concurrency // 4))
        self._quiet_s = quiet_s
        self._storing_defer_max_s = storing_defer_max_s
        self._answering = 0  # answers under way now
        self._answer_seen_at = float("-inf")  # loop time an answer last began or ended
        # Rollout id → (its due time, when it will be woken, the timer).
        self._pending: dict[str, tuple[datetime, datetime, asyncio.TimerHandle]] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._stepping: Counter[str] = Counter()  # rollout id → its steps running now
        self._closed = False

    def after(
        self,
        rollout: Rollout,
        step: Step,
        *,
        began: datetime | None = None,
        probes_from: datetime | None = None,
    ) -> None:
        """A step of `rollout` that began at `began` (default: now) just ended: run `step`
        when its next one is due (if soon): on time when that moment came after `began`;
        `MIN_DELAY_S` after `began` when the step left it due (work it could not do).
        `probes_from`: no probe can go out before then (the registry's request budget
        refuses until then): a step woken earlier for a probe could only read the rollout
        and stop, so probes count as due then (other steps keep their times)."""
        if self._closed:
            return
        now = self._now()
        began = began or now
        # Asked as of the step's start, the schedule's "due at once" (a check with no moment
        # of its own) is the start itself, so it counts as work the step could not do.
        due = self._due(rollout, began, probes_from)
        if due is None:
            return  # settled: nothing until a new push or an operator's action
        pause = self._min_delay_s if due <= began else min(MIN_GAP_S, self._min_delay_s)
        wake_at = max(due + timedelta(seconds=MARGIN_S), began + timedelta(seconds=pause))
        delay = max((wake_at - now).total_seconds(), 0.0)
        if delay > self._horizon_s:
            return
        pending = self._pending.get(rollout.id)
        if pending is not None:
            if pending[0] <= due:
                return  # an earlier wake-up will see this change too
            pending[2].cancel()
        loop = asyncio.get_running_loop()
        handle = loop.call_later(delay, self._wake, rollout.id, step)
        self._pending[rollout.id] = (due, wake_at, handle)

    def now(self) -> datetime:
        """The time on the clock the wake-ups are set by."""
        return self._now()

    def start(
        self, step: Step, what: str, *, storing: bool = False, rollout_id: str | None = None
    ) -> None:
        """Run `step` now, beside the caller (which answers without waiting for it); a step
        of `rollout_id` counts as that rollout's (see `takes_care_of`).
        `storing`: it stores answered pushes (table writes only) in a lane of its own: it
        must not queue behind steps that wait for the registry's request slots, nor crowd
        the table beside the answers (unbounded, it took intake from 30 % of the table's
        raw write rate to 8 %); it waits while answers are under way (`QUIET_S`), at
        most `STORING_DEFER_MAX_S`."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        gate = self._storing_gate if storing else self._gate
        latest = loop.time() + self._storing_defer_max_s if storing else None
        task = loop.create_task(self._run(what, step, gate, rollout_id, latest))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    @contextmanager
    def answering(self) -> Iterator[None]:
        """An answer is under way (its notices' one write): storing waits for it."""
        loop = asyncio.get_running_loop()
        self._answering += 1
        self._answer_seen_at = loop.time()
        try:
            yield
        finally:
            self._answering -= 1
            self._answer_seen_at = loop.time()

    def takes_care_of(self, rollout_id: str) -> bool:
        """Whether this process is stepping `rollout_id` now or wakes it within `SOON_S`."""
        if self._stepping[rollout_id]:
            return True
        pending = self._pending.get(rollout_id)
        return pending is not None and pending[1] <= self._now() + timedelta(seconds=SOON_S)

    def pending(self) -> dict[str, datetime]:
        """Rollout id → when it will be woken."""
        return {rollout_id: wake_at for rollout_id, (_, wake_at, _) in self._pending.items()}

    def _wake(self, rollout_id: str, step: Step) -> None:
        self._pending.pop(rollout_id, None)
        self.start(step, rollout_id, rollout_id=rollout_id)

    async def _answers_quiet(self, latest: float) -> None:
        """Returns once no answer has been under way for `quiet_s`, or at `latest`."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            quiet_at = self._answer_seen_at + self._quiet_s
            if now >= latest or (not self._answering and now >= quiet_at):
                return
            # Looked at again when the quiet would be long enough, had no answer begun.
            wake_at = quiet_at if not self._answering else now + self._quiet_s
            await asyncio.sleep(min(wake_at, latest) - now)

    async def _run(
        self,
        what: str,
        step: Step,
        gate: asyncio.Semaphore,
        rollout_id: str | None,
        defer_until: float | None = None,
    ) -> None:
        if rollout_id is not None:
            self._stepping[rollout_id] += 1  # from the wake-up on, waiting for a slot too
        try:
            if defer_until is not None:
                await self._answers_quiet(defer_until)
            async with gate:
                # The step itself calls `after` with its outcome: the chain goes on.
                await step()
        except Exception:
            # The step recorded nothing, so the due queue still has the rollout: the
            # timer's tick tries it again (and postpones it if it crashes again).
            log.exception("follow-up step of %s failed; the timer carries on", what)
        finally:
            if rollout_id is not None:
                self._stepping[rollout_id] -= 1
                if not self._stepping[rollout_id]:
                    del self._stepping[rollout_id]

    async def close(self) -> None:
        """Cancel every pending wake-up and step (the due queue keeps them)."""
        self._closed = True
        for _, _, handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
