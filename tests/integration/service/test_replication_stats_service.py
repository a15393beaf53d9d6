"""Replication statistics from real arrivals, and the ETA checked against a slow region's
real arrival (measured by the test itself, polling the replica, not through georollout)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from devenv.images import build_image
from shared.domain.model import RegionState, Rollout
from shared.service.intake import accept_notices
from shared.service.reconcile import reconcile
from shared.service.runtime import Services
from tests.integration.service.conftest import PRIMARY
from tests.integration.service.driving import poll_until, stored
from tests.integration.service.pushing import Pushed, notice_of, push, replica_has
from tests.integration.service.service_stack import ServiceStack

pytestmark = pytest.mark.integration

SLOW = "westeurope"
SLOW_DELAY_S = 3.0
# The ETA's stated error on a region that takes 3.5 s or more: detection by probe (every
# 0.3 s here) and a reconcile pass separate georollout's samples from the true arrivals.
ETA_ERROR_S = 1.5
# Probes close together, so the samples are near the true arrival times.
PROBE_GAP_S = 0.3  # the longest back-off below
PRECISE = {
    "GEOROLLOUT_PROBE_BACKOFF_INITIAL_SECONDS": "0.2",
    "GEOROLLOUT_PROBE_BACKOFF_MAX_SECONDS": "0.3",
}


def replicated_everywhere(rollout: Rollout) -> bool:
    return all(r.replicated_at is not None for r in rollout.regions)


async def push_and_accept(
    stack: ServiceStack, services: Services, name: str, size_bytes: int
) -> Pushed:
    """Push an image of about `size_bytes` and hand its notice to intake at once."""
    image = build_image(size_bytes=size_bytes, seed=name)
    pushed = push(stack.env, stack.tls, f"service/stats-{name}", "v1", seed=name, artifact=image)
    await accept_notices(services, [notice_of(pushed)])
    return pushed


async def until_replicated(services: Services, rollout_id: str) -> Rollout:
    async def step() -> Rollout:
        await reconcile(services, rollout_id, deploy=False)
        return await stored(services, rollout_id)

    return await poll_until(step, replicated_everywhere, what=f"{rollout_id} replicated")


def test_the_eta_of_a_slow_region_lands_near_the_real_arrival(stack: ServiceStack) -> None:
    stack.registries.set_region(SLOW, extra_delay_s=SLOW_DELAY_S)

    async def scenario() -> None:
        async with stack.services(**PRECISE) as services:
            # History: three images of different sizes arrive; each arrival is a sample.
            history = [
                await push_and_accept(stack, services, name, size)
                for name, size in (("small", 64_000), ("mid", 8_000_000), ("big", 24_000_000))
            ]
            done = await asyncio.gather(
                *(until_replicated(services, p.rollout_id) for p in history)
            )
            models = await services.replication.models()
            slow = models[SLOW]
            assert len(slow.samples) == 3
            assert slow.typical_latency_s is not None
            # Latency counts from when georollout saw the image in the primary, which is
            # after the push finished (intake, a loaded machine): the replica's delay less
            # that lag, less half a probe interval (a sample is the middle of the window).
            seen_late_s = max(
                _seen_in_primary_after_push_s(r, p) for r, p in zip(done, history, strict=True)
            )
            assert slow.typical_latency_s >= SLOW_DELAY_S - seen_late_s - PROBE_GAP_S / 2, (
                slow.typical_latency_s,
                seen_late_s,
            )
            document = await services.replication.document(["westus", SLOW])
            assert [r["region"] for r in document["regions"]] == ["westus", SLOW]
            assert document["regions"][1]["samples"] == 3

            # The next image: georollout predicts its arrival before it is there.
            pushed = await push_and_accept(stack, services, "next", 16_000_000)
            rollout = await stored(services, pushed.rollout_id)
            region = rollout.region(SLOW)
            assert region.state is RegionState.AWAITING_REPLICATION
            assert region.expected_at is not None, "no ETA despite three samples"
            arrival = await _real_arrival(stack, pushed)
            error = abs((region.expected_at - arrival).total_seconds())
            print(f"ETA {region.expected_at}, arrival {arrival}: {error:.2f} s off")
            assert error <= ETA_ERROR_S, (
                f"ETA {region.expected_at.isoformat()} vs arrival {arrival.isoformat()}: "
                f"{error:.2f} s off"
            )

    try:
        asyncio.run(scenario())
    finally:
        stack.registries.set_region(SLOW, extra_delay_s=0.0)


def _seen_in_primary_after_push_s(rollout: Rollout, pushed: Pushed) -> float:
    """How long after its push finished georollout saw the image in the primary (the slow
    replica has it SLOW_DELAY_S after the push at the earliest)."""
    seen = rollout.region(PRIMARY).replicated_at
    assert seen is not None
    return (seen - pushed.pushed_at).total_seconds()


async def _real_arrival(stack: ServiceStack, pushed: Pushed) -> datetime:
    """When the slow replica first serves the image, polled every 50 ms from the test."""

    def wait() -> datetime:
        deadline = time.monotonic() + 60
        while not replica_has(stack.env, stack.tls, SLOW, pushed.repository, pushed.digest):
            assert time.monotonic() < deadline, "the slow replica never got the image"
            time.sleep(0.05)  # the polling interval of this measurement, not a wait for state
        return datetime.now(UTC)

    return await asyncio.to_thread(wait)
