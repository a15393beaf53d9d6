"""The registry's request budget, shared by every instance: never more than the budget in any
60 seconds, whatever the instances' clocks and lateness, and nearly all of it used under a
backlog (the old per-process token bucket let twice the budget out in its first minute, and
N instances N times the budget)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.service.budget import (
    HORIZON_S,
    LATE_S,
    LINE_S,
    SKEW_S,
    WINDOW_S,
    RegistryBudget,
    Reservation,
    reserve,
    spacing_s,
)


def most_in_any_window(moments: list[float]) -> int:
    """The most requests any 60 s window [start, start + 60) holds."""
    ordered = sorted(moments)
    return max(
        (sum(1 for other in ordered if start <= other < start + WINDOW_S) for start in ordered),
        default=0,
    )


class MemoryLedger:
    """The ledger's contract (one next-free slot, advanced atomically) held in memory: the
    arithmetic is what these tests check; tests/integration/test_table_budget.py checks
    the table's ledger under racing instances."""

    def __init__(self) -> None:
        self.next_free: float | None = None
        self.calls = 0

    async def advance(
        self, decide: Callable[[float | None], Reservation | None]
    ) -> Reservation | None:
        self.calls += 1
        await asyncio.sleep(0)  # a round trip: other requests may queue up meanwhile
        got = decide(self.next_free)
        if got is not None:
            self.next_free = got.next_free
        return got


class VirtualTime:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_first_reservation_starts_now_and_the_next_where_it_ended() -> None:
    gap = spacing_s(62)
    assert gap == 1.0  # 62 slots span the 60 s window plus the lateness and skew allowed
    first = reserve(None, 100.0, per_minute=62, want=3)
    assert first == Reservation(100.0, 3, 1.0)
    assert first.slots == [100.0, 101.0, 102.0] and first.next_free == 103.0
    # Later: the next starts where the last ended, never before now.
    assert reserve(103.0, 100.5, per_minute=62, want=2) == Reservation(103.0, 2, 1.0)
    assert reserve(103.0, 200.0, per_minute=62, want=1) == Reservation(200.0, 1, 1.0)


def test_no_slot_is_handed_out_beyond_the_horizon() -> None:
    # The ledger is booked until 110: a request at 100 would wait 10 s, more than 5.
    assert reserve(110.0, 100.0, per_minute=62, want=1, horizon_s=5.0) is None
    # Within the horizon, only as many as fit before it.
    assert reserve(103.0, 100.0, per_minute=62, want=10, horizon_s=5.0) == Reservation(
        103.0, 3, 1.0
    )


@settings(max_examples=200, deadline=None)
@given(
    per_minute=st.integers(min_value=1, max_value=120),
    offsets=st.lists(st.floats(min_value=0, max_value=SKEW_S), min_size=1, max_size=4),
    asks=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=3),  # which instance asks
            st.floats(min_value=0, max_value=3),  # real seconds since the last ask
            st.integers(min_value=1, max_value=5),  # slots wanted
            st.floats(min_value=0, max_value=LATE_S),  # how late each request goes out
        ),
        max_size=300,
    ),
)
def test_no_sixty_seconds_see_more_than_the_budget_across_instances(
    per_minute: int, offsets: list[float], asks: list[tuple[int, float, int, float]]
) -> None:
    """Instances with clocks up to SKEW_S apart reserve from one ledger and send up to
    LATE_S after their slots; the registry (real time) never sees more than the budget
    in any 60 s."""
    next_free: float | None = None
    real = 0.0
    sent: list[float] = []
    for who, gap, want, late in asks:
        real += gap
        offset = offsets[who % len(offsets)]
        local = real + offset
        got = reserve(next_free, local, per_minute=per_minute, want=want)
        if got is None:
            continue
        next_free = got.next_free
        # A slot is a moment on the reserving instance's clock: it goes out then, real time.
        sent.extend(slot - offset + late for slot in got.slots)
    assert most_in_any_window(sent) <= per_minute


def test_a_backlog_uses_at_least_nine_tenths_of_the_budget_and_never_more() -> None:
    time = VirtualTime()
    ledger = MemoryLedger()
    budget = RegistryBudget(100, ledger, clock=time.clock, sleep=time.sleep)
    started = time.now
    sent: list[float] = []

    async def backlog() -> None:
        while time.now - started < 300:  # five minutes of requests waiting
            if await budget.take():
                sent.append(time.now)
            else:
                await time.sleep(1.0)

    asyncio.run(backlog())
    assert most_in_any_window(sent) <= 100
    used = len(sent) / (100 * 300 / WINDOW_S)
    assert used >= 0.9, used
    assert used == len(sent) / 500 and len(sent) >= 483  # 60/62 of five minutes' budget


def test_waiters_share_one_reservation_and_a_refusal_is_remembered() -> None:
    time = VirtualTime()
    ledger = MemoryLedger()
    budget = RegistryBudget(620, ledger, clock=time.clock, sleep=time.sleep)

    async def five_at_once() -> list[bool]:
        return list(await asyncio.gather(*(budget.take() for _ in range(5))))

    assert asyncio.run(five_at_once()) == [True] * 5
    # Five waiters, one ledger write: a reservation covers as many as wait (up to a
    # second's worth, ten slots at 620 a minute).
    assert ledger.calls == 1
    assert ledger.next_free is not None
    # Book the ledger far ahead (other instances' backlog): the next take is refused.
    ledger.next_free = time.now + 60
    calls = ledger.calls
    assert asyncio.run(budget.take()) is False
    assert ledger.calls == calls + 1
    # Refused again without asking the ledger until a slot could be within the horizon.
    assert asyncio.run(budget.take()) is False
    assert ledger.calls == calls + 1
    time.now += 60 - HORIZON_S
    assert asyncio.run(budget.take()) is True
    assert ledger.calls == calls + 2


def test_the_budget_tells_until_when_it_refuses() -> None:
    """A follow-up woken while the budget refuses could only read its rollout and stop: the
    budget says until when that is, so the wake-up can wait for it."""
    time = VirtualTime()
    ledger = MemoryLedger()
    budget = RegistryBudget(620, ledger, clock=time.clock, sleep=time.sleep)
    assert budget.refused_retry_at is None  # never refused: a take asks the ledger
    ledger.next_free = time.now + 60  # other instances booked the next minute
    assert asyncio.run(budget.take()) is False
    gap = spacing_s(620)
    free_again = time.now + 60 - HORIZON_S  # when a slot is within the horizon again
    assert budget.refused_retry_at == pytest.approx(free_again + gap)
    time.now = free_again + gap
    assert budget.refused_retry_at is None


def test_requests_refused_together_come_back_one_slot_apart() -> None:
    """A spent budget refuses a burst of steps: each is told to come back one slot after the
    one refused before it, not all at the moment the budget frees (where all but a second's
    worth would be refused again)."""
    time = VirtualTime()
    ledger = MemoryLedger()
    budget = RegistryBudget(300, ledger, clock=time.clock, sleep=time.sleep)
    ledger.next_free = time.now + 60
    free_again, gap = time.now + 60 - HORIZON_S, spacing_s(300)
    told = []
    for _ in range(4):
        assert asyncio.run(budget.take()) is False
        told.append(budget.refused_retry_at)
    assert told == pytest.approx([free_again + k * gap for k in (1, 2, 3, 4)])
    # However many are refused, none is told to wait longer than the line's length.
    for _ in range(200):
        assert asyncio.run(budget.take()) is False
    assert budget.refused_retry_at == pytest.approx(free_again + LINE_S)
    # The line empties with time: once past its end, a refusal queues from its own moment.
    time.now = free_again + 10
    ledger.next_free = time.now + 60
    assert asyncio.run(budget.take()) is False
    assert budget.refused_retry_at == pytest.approx(time.now + 60 - HORIZON_S + gap)


def test_a_request_too_late_for_its_slot_takes_the_next() -> None:
    time = VirtualTime()
    ledger = MemoryLedger()

    async def oversleep(seconds: float) -> None:
        # The event loop was busy: the first wait overshoots by more than LATE_S.
        time.now += seconds + (LATE_S + 0.5 if not late else 0)
        late.append(seconds)

    late: list[float] = []
    budget = RegistryBudget(62, ledger, clock=time.clock, sleep=oversleep)
    # Someone else booked the next second, so this request must wait for its slot.
    ledger.next_free = time.now + 1.0
    assert asyncio.run(budget.take()) is True
    # The overshot slot was given up and a second one reserved (free at once).
    assert len(late) == 1
    assert ledger.calls == 2
