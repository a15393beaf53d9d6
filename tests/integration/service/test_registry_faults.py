"""Registries that are down or must be spared: an unreachable secondary replica, and the
per-registry request budget of one probe tick."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared.domain.model import RegionState, Rollout
from shared.service.intake import record_notices
from shared.service.reconcile import utc_now
from shared.service.runtime import Services
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
from tests.integration.service.pushing import notice_of, push
from tests.integration.service.service_stack import ServiceStack, new_table_name

pytestmark = pytest.mark.integration

DOWN_REGION = "westeurope"
UP_SECONDARY = "westus"
BUDGET_PER_MINUTE = 3
PUSHES = 6


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


def test_a_tick_spends_at_most_the_registrys_probe_budget_and_the_rest_stay_due(
    stack: ServiceStack,
) -> None:
    # Secondaries never get the images, so every tick wants to probe every one of them.
    for region in SECONDARIES:
        stack.registries.set_region(region, never_replicates=True)
    try:
        pushes = [
            push(stack.env, stack.tls, f"service/budget-{i}", "v1", seed=f"budget-{i}")
            for i in range(PUSHES)
        ]
        ids = [p.rollout_id for p in pushes]
        table = new_table_name()

        async def scenario() -> None:
            async with stack.services(table=table) as intake:
                await record_notices(intake, [notice_of(p) for p in pushes])
            # A fresh worker, with a small budget and none of it spent yet.
            async with stack.services(
                table=table, GEOROLLOUT_PROBE_BUDGET_PER_MINUTE=str(BUDGET_PER_MINUTE)
            ) as ticking:
                before = await _when_every_secondary_probe_is_due(ticking, ids)
                report = await run_tick(ticking, time_budget_s=20)
                assert (report.due, report.reconciled, report.failed) == (PUSHES, PUSHES, 0)
                after = {rid: await stored(ticking, rid) for rid in ids}
                due_now = set(await ticking.rollouts.due(utc_now(), limit=100))
                # One budget for the registry, whichever replica a probe goes to.
                spent = {
                    (rid, region): after[rid].region(region).probe_attempts
                    - before[rid].region(region).probe_attempts
                    for rid in ids
                    for region in SECONDARIES
                }
                assert sum(spent.values()) == BUDGET_PER_MINUTE, spent
                left = [key for key, n in spent.items() if n == 0]
                assert len(left) == PUSHES * len(SECONDARIES) - BUDGET_PER_MINUTE
                for rid, region in left:
                    progress = after[rid].region(region)
                    assert progress.next_probe_at is not None
                    assert progress.next_probe_at <= utc_now()
                    assert rid in due_now

        asyncio.run(scenario())
    finally:
        for region in SECONDARIES:
            stack.registries.set_region(region, never_replicates=False)


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
