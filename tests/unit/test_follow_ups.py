"""Follow-ups: one wake-up per rollout at its earliest due time, within the horizon; the
step runs then; a failing step is logged and the chain (or the timer) carries on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.model import Rollout
from shared.service.follow_ups import MARGIN_S, FollowUps
from tests.unit.domain.builders import fresh

DEADLINE_S = 5.0


class Dues:
    """The due time each rollout id is given (offset from now in seconds, or None)."""

    def __init__(self) -> None:
        self.offsets: dict[str, float | None] = {}
        self.probing: set[str] = set()  # rollouts whose next step is a probe

    def __call__(
        self, rollout: Rollout, now: datetime, probes_from: datetime | None
    ) -> datetime | None:
        offset = self.offsets.get(rollout.id)
        if offset is None:
            return None
        due = now + timedelta(seconds=offset)
        # As the schedule does for a rollout whose next step is a probe.
        return (
            due if probes_from is None or rollout.id not in self.probing else max(due, probes_from)
        )


def follow_ups(dues: Dues, *, horizon_s: float = 60.0) -> FollowUps:
    return FollowUps(
        dues, lambda: datetime.now(UTC), concurrency=2, horizon_s=horizon_s, min_delay_s=0.0
    )


def rollout(rollout_id: str) -> Rollout:
    return replace(fresh(), id=rollout_id)


def recorder(calls: list[str], done: asyncio.Event, name: str) -> Callable[[], Awaitable[None]]:
    async def step() -> None:
        calls.append(name)
        done.set()

    return step


def test_the_earliest_due_time_wins_and_the_step_runs_then() -> None:
    async def scenario() -> list[str]:
        dues, done = Dues(), asyncio.Event()
        calls: list[str] = []
        wakes = follow_ups(dues)
        dues.offsets["r1"] = 30.0
        wakes.after(rollout("r1"), recorder(calls, done, "late"))
        dues.offsets["r1"] = 0.05
        wakes.after(rollout("r1"), recorder(calls, done, "early"))
        dues.offsets["r1"] = 20.0  # a later due time does not push the earlier wake-up back
        wakes.after(rollout("r1"), recorder(calls, done, "later"))
        assert list(wakes.pending()) == ["r1"]
        await asyncio.wait_for(done.wait(), DEADLINE_S)
        assert wakes.pending() == {}
        await wakes.close()
        return calls

    assert asyncio.run(scenario()) == ["early"]


def test_settled_or_far_rollouts_get_no_wake_up() -> None:
    async def scenario() -> dict[str, datetime]:
        dues = Dues()
        wakes = follow_ups(dues, horizon_s=60.0)
        dues.offsets["far"] = 3600.0  # a kept deployment's hour: the timer's
        wakes.after(rollout("far"), recorder([], asyncio.Event(), "far"))
        wakes.after(rollout("settled"), recorder([], asyncio.Event(), "settled"))
        pending = wakes.pending()
        await wakes.close()
        return pending

    assert asyncio.run(scenario()) == {}


def test_a_failing_step_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> list[str]:
        dues, done = Dues(), asyncio.Event()
        calls: list[str] = []
        wakes = follow_ups(dues)

        async def broken() -> None:
            raise RuntimeError("table unreachable")

        dues.offsets = {"bad": 0.0, "good": 0.05}
        wakes.after(rollout("bad"), broken)
        wakes.after(rollout("good"), recorder(calls, done, "good"))
        await asyncio.wait_for(done.wait(), DEADLINE_S)
        await wakes.close()
        return calls

    with caplog.at_level(logging.ERROR, logger="georollout.follow_ups"):
        assert asyncio.run(scenario()) == ["good"]
    assert "follow-up step of bad failed" in caplog.text


def test_close_cancels_what_is_pending_and_refuses_more() -> None:
    async def scenario() -> tuple[dict[str, datetime], list[str]]:
        dues = Dues()
        calls: list[str] = []
        wakes = follow_ups(dues)
        dues.offsets["r1"] = 0.2
        wakes.after(rollout("r1"), recorder(calls, asyncio.Event(), "r1"))
        await wakes.close()
        wakes.after(rollout("r2"), recorder(calls, asyncio.Event(), "r2"))
        # Past r1's due time, nothing ran: its wake-up was cancelled.
        await asyncio.sleep(0.4)
        return wakes.pending(), calls

    assert asyncio.run(scenario()) == ({}, [])


def test_the_pause_between_wake_ups_counts_from_the_start_of_the_last_step() -> None:
    async def scenario() -> tuple[datetime, datetime, datetime, datetime]:
        dues = Dues()
        wakes = FollowUps(dues, lambda: datetime.now(UTC), concurrency=2, min_delay_s=1.0)
        dues.offsets = {"long": -0.5, "quick": -0.5}  # both overdue when their steps end
        now = wakes.now()
        # A step that began 3 s ago (it deployed elsewhere while the probe came due):
        # woken at once. One that began just now: only after the pause.
        wakes.after(
            rollout("long"), recorder([], asyncio.Event(), "long"), began=now - timedelta(seconds=3)
        )
        wakes.after(rollout("quick"), recorder([], asyncio.Event(), "quick"), began=now)
        pending = wakes.pending()
        await wakes.close()
        return now, pending["long"], pending["quick"], wakes.now()

    now, long, quick, after = asyncio.run(scenario())
    assert long <= after  # due already: no pause added
    assert quick == now + timedelta(seconds=1.0)


def test_a_moment_that_came_due_after_the_step_began_is_kept_not_held_to_the_pause() -> None:
    """A probe whose back-off ends 0.3 s into a step (a deployment's poll) is woken then; a
    step that left its rollout due as it began (no moment of its own) waits the pause."""

    async def scenario() -> tuple[datetime, datetime, datetime]:
        dues = Dues()
        wakes = FollowUps(dues, lambda: datetime.now(UTC), concurrency=2, min_delay_s=1.0)
        dues.offsets = {"probe": 0.3, "stuck": 0.0}  # from the step's start
        began = wakes.now() - timedelta(seconds=0.2)
        for name in ("probe", "stuck"):
            wakes.after(rollout(name), recorder([], asyncio.Event(), name), began=began)
        pending = wakes.pending()
        await wakes.close()
        return began, pending["probe"], pending["stuck"]

    began, probe, stuck = asyncio.run(scenario())
    assert probe == began + timedelta(seconds=0.3 + MARGIN_S)  # not a second after `began`
    assert stuck == began + timedelta(seconds=1.0)


def test_a_probe_the_budget_refuses_is_woken_when_the_budget_frees() -> None:
    """A step whose probe the budget refused is woken when the budget may give a slot
    again, not every second to be refused again; the budget's refusal is handed to the
    schedule, which keeps every other step's time (a deployment's poll)."""

    async def scenario() -> tuple[datetime, datetime, datetime]:
        dues = Dues()
        wakes = FollowUps(dues, lambda: datetime.now(UTC), concurrency=2, min_delay_s=1.0)
        dues.offsets = {"refused": -0.5, "polling": 3.0}
        dues.probing = {"refused"}
        now = wakes.now()
        free = now + timedelta(seconds=20)
        for name in ("refused", "polling"):
            wakes.after(
                rollout(name), recorder([], asyncio.Event(), name), began=now, probes_from=free
            )
        pending = wakes.pending()
        await wakes.close()
        return now, pending["refused"], pending["polling"]

    now, refused, polling = asyncio.run(scenario())
    assert now + timedelta(seconds=20) <= refused < now + timedelta(seconds=21)
    assert now + timedelta(seconds=3) <= polling < now + timedelta(seconds=4)


def test_the_tick_is_told_which_rollouts_this_process_steps_or_wakes_soon() -> None:
    async def scenario() -> list[tuple[str, bool]]:
        dues = Dues()
        wakes = follow_ups(dues)
        seen: list[tuple[str, bool]] = []
        release, stepping = asyncio.Event(), asyncio.Event()

        async def step() -> None:
            seen.append(("while its step runs", wakes.takes_care_of("soon")))
            stepping.set()
            await release.wait()

        dues.offsets = {"soon": 0.2, "later": 30.0}
        wakes.after(rollout("soon"), step)
        wakes.after(rollout("later"), recorder([], asyncio.Event(), "later"))
        seen.append(("woken within a second", wakes.takes_care_of("soon")))
        seen.append(("woken in 30 s", wakes.takes_care_of("later")))
        seen.append(("never seen", wakes.takes_care_of("other")))
        await asyncio.wait_for(stepping.wait(), DEADLINE_S)
        release.set()
        # Once the step is over (and set no new wake-up), the tick takes the rollout again.
        for _ in range(100):
            if not wakes.takes_care_of("soon"):
                break
            await asyncio.sleep(0.01)
        seen.append(("after its step", wakes.takes_care_of("soon")))
        await wakes.close()
        return seen

    assert asyncio.run(scenario()) == [
        ("woken within a second", True),
        ("woken in 30 s", False),
        ("never seen", False),
        ("while its step runs", True),
        ("after its step", False),
    ]


def storing_follow_ups(*, defer_max_s: float) -> FollowUps:
    """Storing waits for 50 ms without an answer, at most `defer_max_s`."""
    return FollowUps(
        Dues(),
        lambda: datetime.now(UTC),
        concurrency=4,
        quiet_s=0.05,
        storing_defer_max_s=defer_max_s,
    )


def test_storing_waits_while_answers_are_under_way_and_runs_once_they_are_quiet() -> None:
    async def scenario() -> tuple[list[str], list[str], list[str]]:
        wakes = storing_follow_ups(defer_max_s=60.0)
        calls: list[str] = []
        stored, stepped = asyncio.Event(), asyncio.Event()
        with wakes.answering():
            wakes.start(recorder(calls, stored, "storing"), "accepted notices", storing=True)
            wakes.start(recorder(calls, stepped, "step"), "a rollout's step")
            await asyncio.wait_for(stepped.wait(), DEADLINE_S)
            # Many times the quiet the storing waits for, an answer still under way.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(stored.wait()), 0.3)
            during = list(calls)
        after_answer = list(calls)
        await asyncio.wait_for(stored.wait(), DEADLINE_S)
        await wakes.close()
        return during, after_answer, calls

    during, after_answer, calls = asyncio.run(scenario())
    assert during == ["step"]  # a step of another lane is not held back
    assert after_answer == ["step"]  # the quiet counts from the answer's end
    assert calls == ["step", "storing"]


def test_a_steady_stream_of_answers_holds_storing_back_no_longer_than_the_bound() -> None:
    async def scenario() -> list[str]:
        wakes = storing_follow_ups(defer_max_s=0.2)
        calls: list[str] = []
        stored = asyncio.Event()
        with wakes.answering():  # never quiet while the storing waits
            wakes.start(recorder(calls, stored, "storing"), "accepted notices", storing=True)
            await asyncio.wait_for(stored.wait(), DEADLINE_S)
        await wakes.close()
        return calls

    assert asyncio.run(scenario()) == ["storing"]
