"""Registries that are down or must be spared: an unreachable secondary replica, the
per-registry request budget that instances share, and what the tick costs the table for
each region check."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from devenv.registries.request_log import manifest_reads_by_georollout
from shared.domain.model import RegionState, Rollout
from shared.service.budget import HORIZON_S, LATE_S, Reservation, spacing_s
from shared.service.intake import record_notices
from shared.service.reconcile import reconcile, utc_now
from shared.service.runtime import Services
from shared.service.steering import act
from shared.service.tick import run_tick
from tests.integration.service.conftest import PRIMARY, SECONDARIES
from tests.integration.service.driving import (
    DEADLINE_S,
    POLL_S,
    describe,
    is_live,
    stored,
    tick_until,
)
from tests.integration.service.pushing import Pushed, notice_of, push
from tests.integration.service.service_stack import ServiceStack, new_table_name

pytestmark = pytest.mark.integration

DOWN_REGION = "westeurope"
UP_SECONDARY = "westus"
# One slot a second (62 span the 60 s window and the 2 s a slot tolerates).
BUDGET_PER_MINUTE = 62
BUDGET = {"GEOROLLOUT_PROBE_BUDGET_PER_MINUTE": str(BUDGET_PER_MINUTE)}
PUSHES = 6
TICK_S = 3.0
# The Azure SDK logs each request it sends here (at INFO).
_SDK_HTTP_LOG = "azure.core.pipeline.policies.http_logging_policy"


def test_an_unreachable_secondary_waits_with_its_error_and_goes_live_once_back(
    stack: ServiceStack,
) -> None:
    stack.registries.set_region(DOWN_REGION, unavailable=True)
    try:
        pushed = push(stack.env, stack.tls, "service/region-down", "v1", seed="region-down-v1")
        rid = pushed.rollout_id

        def others_live(found: dict[str, Rollout]) -> bool:
            rollout = found[rid]
            return all(rollout.region(r).state is RegionState.LIVE for r in (PRIMARY, UP_SECONDARY))

        async def scenario() -> None:
            async with stack.services() as services:
                await record_notices(services, [notice_of(pushed)])
                found = await tick_until(services, [rid], others_live, what="the others live")
                waiting = found[rid].region(DOWN_REGION)
                assert waiting.state is RegionState.AWAITING_REPLICATION, describe(found[rid])
                assert waiting.last_error, describe(found[rid])
                assert waiting.probe_attempts >= 2
                assert waiting.deployment is None

                await asyncio.to_thread(stack.registries.set_region, DOWN_REGION, unavailable=False)
                done = await tick_until(
                    services, [rid], lambda f: is_live(f[rid]), what="the late region live"
                )
                late = done[rid].region(DOWN_REGION)
                assert late.last_error is None
                assert late.replicated_at is not None and late.live_at is not None

        asyncio.run(scenario())
    finally:
        stack.registries.set_region(DOWN_REGION, unavailable=False)


def test_two_instances_ticking_at_once_share_the_registrys_probe_budget(
    stack: ServiceStack,
) -> None:
    """Two instances of the function app tick over the same backlog at the same time: the
    registry (counted in its own request log) sees one budget's pace, not two; what they
    could not probe stays due."""
    with _a_backlog_that_never_replicates(stack, "budget") as backlog:
        ids, table = backlog.ids, backlog.table

        async def scenario() -> None:
            await backlog.record()
            async with (
                stack.services(table=table, **BUDGET) as one,
                stack.services(table=table, **BUDGET) as other,
            ):
                before = await _when_every_secondary_probe_is_due(one, ids)
                started = datetime.now(UTC)
                await asyncio.gather(
                    run_tick(one, time_budget_s=TICK_S), run_tick(other, time_budget_s=TICK_S)
                )
                ended = datetime.now(UTC)
                probes = [
                    r
                    for r in manifest_reads_by_georollout(
                        stack.env, SECONDARIES, repository_prefix="service/budget-"
                    )
                    if started <= r.at <= ended
                ]
                # Every probe went out on its own slot, one spacing apart, all within the
                # run: a shared budget lets at most this many out; two budgets (one per
                # instance) would let out about twice as many.
                elapsed = (ended - started).total_seconds()
                allowed = int(elapsed / spacing_s(BUDGET_PER_MINUTE)) + 1
                assert 1 <= len(probes) <= allowed, (len(probes), allowed, elapsed)
                gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(probes)]
                # The registry sees them paced, whichever instance sent them (a request may
                # go out up to LATE_S after its slot).
                assert all(gap >= spacing_s(BUDGET_PER_MINUTE) - LATE_S for gap in gaps), gaps
                after = {rid: await stored(one, rid) for rid in ids}
                left = [
                    (rid, region)
                    for rid in ids
                    for region in SECONDARIES
                    if after[rid].region(region).probe_attempts
                    == before[rid].region(region).probe_attempts
                ]
                assert left, "the backlog outlasted the budget, so some checks must wait"
                due_now = set(await one.rollouts.due(utc_now(), limit=100))
                for rid, region in left:
                    progress = after[rid].region(region)
                    assert progress.next_probe_at is not None
                    assert progress.next_probe_at <= utc_now()
                    assert rid in due_now

        asyncio.run(scenario())


def test_the_tick_reads_each_due_rollout_once(
    stack: ServiceStack, caplog: pytest.LogCaptureFixture
) -> None:
    """The tick's check of a due entry loads the rollout its step decides on, and a pass
    after a write starts from what it wrote: one point read of the rollout per step (the
    tick at 1,000s of checks is bound by its table requests). Counted in the Azure SDK's
    own log of the requests it sent."""
    with _a_backlog_that_never_replicates(stack, "reads") as backlog:
        ids, table = backlog.ids, backlog.table

        async def scenario() -> None:
            await backlog.record()
            async with stack.services(table=table) as services:
                for rid in ids:  # probes go on, nothing deploys: every step is alike
                    await act(services, rid, "hold", {"reason": "one read per step"}, {})
                before = await _when_every_secondary_probe_is_due(services, ids)
                caplog.clear()
                with caplog.at_level(logging.INFO, logger=_SDK_HTTP_LOG):
                    report = await run_tick(services, time_budget_s=60)
                sent = [r.getMessage() for r in caplog.records if r.name == _SDK_HTTP_LOG]
                assert (report.due, report.reconciled) == (len(ids), len(ids)), report
                for rid in ids:  # each step probed every secondary and wrote it down
                    after = await stored(services, rid)
                    assert all(
                        after.region(s).probe_attempts > before[rid].region(s).probe_attempts
                        for s in SECONDARIES
                    ), describe(after)
                reads = [
                    m
                    for m in sent
                    if "Request method: 'GET'" in m and "(PartitionKey='rollout%7C" in m
                ]
                assert len(reads) == len(ids), f"{len(reads)} reads for {len(ids)} steps"

        asyncio.run(scenario())


def test_a_step_the_budget_refused_is_followed_up_when_the_budget_frees(
    stack: ServiceStack,
) -> None:
    """Other instances booked the registry's budget for the next minute: this instance's
    step is refused its probes, and its follow-up waits until the budget may give a slot
    again, instead of reading the rollout every second only to be refused again."""
    with _a_backlog_that_never_replicates(stack, "booked") as backlog:
        rid, table = backlog.ids[0], backlog.table

        async def scenario() -> None:
            await backlog.record()
            async with stack.services(table=table) as services:
                # Live in the primary: the secondaries' probes are all the step has to do.
                await tick_until(
                    services,
                    [rid],
                    lambda found: found[rid].region(PRIMARY).state is RegionState.LIVE,
                    what="the primary live",
                )
                before = (await _when_every_secondary_probe_is_due(services, [rid]))[rid]
                booked = time.time() + 60
                other_instance = services.store.budget_ledger(services.config.registry_login_server)
                await other_instance.advance(lambda _: Reservation(booked, 1, 0.0))
                follow_ups = services.follow_up_when_due()
                await reconcile(services, rid)
                after = await stored(services, rid)
                assert [after.region(s).probe_attempts for s in SECONDARIES] == [
                    before.region(s).probe_attempts for s in SECONDARIES
                ], "the budget refused every probe"
                # Refused until the booking is within the budget's horizon.
                free_again = datetime.fromtimestamp(booked - HORIZON_S, UTC)
                assert follow_ups.pending()[rid] >= free_again, (follow_ups.pending(), free_again)

        asyncio.run(scenario())


async def _when_every_secondary_probe_is_due(
    services: Services, ids: list[str]
) -> dict[str, Rollout]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        found = {rid: await stored(services, rid) for rid in ids}
        now = utc_now()
        if all(
            (p := r.region(s)).next_probe_at is not None and p.next_probe_at <= now
            for r in found.values()
            for s in SECONDARIES
        ):
            return found
        assert time.monotonic() < deadline, "secondary probes never came due"
        await asyncio.sleep(POLL_S)


def test_a_tick_cancelled_mid_work_leaves_no_step_running(stack: ServiceStack) -> None:
    """The host stopping cancels the timer's invocation: the steps it started stop with it,
    instead of writing on through clients that are being closed."""
    with _a_backlog_that_never_replicates(stack, "cancel") as backlog:
        ids, table = backlog.ids, backlog.table

        async def scenario() -> None:
            await backlog.record()
            async with stack.services(table=table, **BUDGET) as ticking:
                await _when_every_secondary_probe_is_due(ticking, ids)
                tick = asyncio.create_task(run_tick(ticking, time_budget_s=TICK_S))
                # Wait until the tick has steps in flight (they wait for their slots, a
                # second apart), besides itself.
                deadline = time.monotonic() + DEADLINE_S
                while not any(
                    "run_tick" in task.get_coro().__qualname__  # type: ignore[union-attr]
                    for task in asyncio.all_tasks() - {tick}
                ):
                    assert time.monotonic() < deadline, "the tick started no step"
                    await asyncio.sleep(0.01)
                tick.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await tick
                others = asyncio.all_tasks() - {asyncio.current_task()}
                assert not others, others

        asyncio.run(scenario())


@dataclass(frozen=True)
class _Backlog:
    """PUSHES images on the primary whose secondaries never replicate, recorded into a
    table of their own: every tick over it wants to probe every secondary."""

    stack: ServiceStack
    pushes: list[Pushed]
    table: str

    @property
    def ids(self) -> list[str]:
        return [p.rollout_id for p in self.pushes]

    async def record(self) -> None:
        async with self.stack.services(table=self.table) as intake:
            await record_notices(intake, [notice_of(p) for p in self.pushes])


@contextmanager
def _a_backlog_that_never_replicates(stack: ServiceStack, name: str) -> Iterator[_Backlog]:
    for region in SECONDARIES:
        stack.registries.set_region(region, never_replicates=True)
    try:
        pushes = [
            push(stack.env, stack.tls, f"service/{name}-{i}", "v1", seed=f"{name}-{i}")
            for i in range(PUSHES)
        ]
        yield _Backlog(stack, pushes, new_table_name())
    finally:
        for region in SECONDARIES:
            stack.registries.set_region(region, never_replicates=False)
