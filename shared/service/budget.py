"""A registry's request budget, shared by every instance: at most N requests in any 60 seconds.

ACR meters read operations per registry (every replica's regional endpoint is
the same registry), and the function app scales out, so the budget cannot be
counted in one process. Requests go out on *slots*: points in time a fixed
spacing apart, handed out from one ledger row per registry that every instance
advances with an ETag (`shared/adapters/table_budget.py`). Spacing the slots
(rather than letting a minute's worth out at once) keeps every 60-second window
at or under the budget while using nearly all of it under a backlog.

A slot admits a request sent up to `LATE_S` after it (a busy event loop) on a
clock up to `SKEW_S` off the other instances' (Azure hosts keep NTP time,
typically within milliseconds). So that neither can crowd more than N requests
into any 60 s, N slots span 60 s plus both: a backlog uses 60 / 62 = 97 % of
the budget, and a request too late for its slot takes another.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

WINDOW_S = 60.0
LATE_S = 1.0
SKEW_S = 1.0
# How far ahead a request may wait for its slot; beyond that it is refused and the
# rollout stays due (a later step or tick tries again).
HORIZON_S = 5.0
# The longest line of refused requests: they come back within this long after the budget
# may give slots again (see `RegistryBudget._queue_refused`).
LINE_S = 2 * HORIZON_S


def spacing_s(per_minute: int) -> float:
    """Seconds between two slots of a budget of `per_minute` requests."""
    return (WINDOW_S + LATE_S + SKEW_S) / per_minute


@dataclass(frozen=True)
class Reservation:
    """`count` slots, the first at `first` (epoch seconds), `spacing` apart."""

    first: float
    count: int
    spacing: float

    @property
    def slots(self) -> list[float]:
        return [self.first + i * self.spacing for i in range(self.count)]

    @property
    def next_free(self) -> float:
        """Where the ledger's next reservation starts."""
        return self.first + self.count * self.spacing


def reserve(
    next_free: float | None, now: float, *, per_minute: int, want: int, horizon_s: float = HORIZON_S
) -> Reservation | None:
    """Up to `want` slots from a ledger whose next free slot is `next_free` (None: never
    used), none later than `now + horizon_s`; None when the first free one is later."""
    if want < 1:
        raise ValueError(f"want must be at least 1, got {want}")
    gap = spacing_s(per_minute)
    # A slot left unused in the past is gone: it is not handed out late (that would crowd it
    # into a later window).
    first = now if next_free is None else max(next_free, now)
    if first > now + horizon_s:
        return None
    within = int((now + horizon_s - first) / gap) + 1
    return Reservation(first, min(want, within), gap)


class BudgetLedger(Protocol):
    """One registry's ledger: `advance(decide)` calls `decide(next_free)` with the ledger's
    current next free slot and stores the reservation's end, atomically against every
    other instance (repeating `decide` when another instance wrote first)."""

    async def advance(
        self, decide: Callable[[float | None], Reservation | None]
    ) -> Reservation | None: ...


Sleep = Callable[[float], Awaitable[None]]


@dataclass
class RegistryBudget:
    """This instance's share of one registry's budget: `await take()` is True once a request
    may go out now, False when no slot is free within `horizon_s` (the caller tries later).

    Slots are reserved a few at a time (as many as requests are waiting, at most a
    second's worth) so a backlog costs one ledger write per second, not one per request.
    """

    per_minute: int
    ledger: BudgetLedger
    clock: Callable[[], float] = time.time
    sleep: Sleep = asyncio.sleep
    horizon_s: float = HORIZON_S
    _slots: deque[float] = field(default_factory=deque, init=False)
    _wanting: int = field(default=0, init=False)  # requests waiting for a slot
    _reserving: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    # After a refusal, the moment a slot could be within the horizon again: until then
    # refusals are answered here, not by another ledger read per waiting rollout.
    _refused_until: float = field(default=0.0, init=False)
    # The end of this process's line of refused requests: each refusal queues one slot's
    # spacing behind the one before (and behind `_refused_until`), so the steps a spent
    # budget refused come back spread out instead of all at once, each only to read its
    # rollout and be refused again.
    _line_end: float = field(default=0.0, init=False)

    @property
    def refused_retry_at(self) -> float | None:
        """Epoch seconds at which a request refused just now should be tried again: its
        place in the line of refused requests; None when this process has none waiting."""
        return self._line_end if self.clock() < self._line_end else None

    async def take(self) -> bool:
        while True:
            self._wanting += 1
            try:
                slot = await self._next_slot()
            finally:
                self._wanting -= 1
            if slot is None:
                self._queue_refused()
                return False
            wait = slot - self.clock()
            if wait > 0:
                await self.sleep(wait)
            if self.clock() - slot <= LATE_S:
                return True
            # Too late for this slot (the loop was busy): sending now could crowd a later
            # window, so take the next one.

    def _queue_refused(self) -> None:
        """Give a refused request its place in the line: one slot after the one before, but
        never more than `LINE_S` after the budget may give slots again. A longer line would
        be no fairer (requests refused again queue anew, the timer's steps join it) and
        would leave the budget idle while its waiters sleep."""
        free_again = max(self._refused_until, self.clock())
        place = max(self._line_end, free_again) + spacing_s(self.per_minute)
        self._line_end = min(place, free_again + LINE_S)

    async def _next_slot(self) -> float | None:
        if not self._slots:
            if self.clock() < self._refused_until:
                return None
            async with self._reserving:
                if not self._slots:  # another waiter may have reserved meanwhile
                    per_second = math.ceil(1.0 / spacing_s(self.per_minute))
                    seen: list[float | None] = []

                    def decide(next_free: float | None) -> Reservation | None:
                        # Counted when the ledger answers: waiters that came meanwhile
                        # share this reservation.
                        seen.append(next_free)
                        return reserve(
                            next_free,
                            self.clock(),
                            per_minute=self.per_minute,
                            want=max(1, min(self._wanting, per_second)),
                            horizon_s=self.horizon_s,
                        )

                    got = await self.ledger.advance(decide)
                    if got is None:
                        last = seen[-1] if seen else None
                        if last is not None:
                            self._refused_until = last - self.horizon_s
                        return None
                    self._slots.extend(got.slots)
        return self._slots.popleft()
