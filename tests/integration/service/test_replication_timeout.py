"""A replica that never gets the image times out (a clock moved past the replication timeout),
says so in an event, and is still accepted and rolled out when the image turns up late."""

from __future__ import annotations

import asyncio
import time

import pytest

from devenv.process import wait_until
from shared.domain.events import EventType, event_id
from shared.domain.model import RegionState, Rollout, RolloutState
from shared.service.intake import record_notices
from tests.integration.service.driving import (
    DEADLINE_S,
    describe,
    is_live,
    reconcile_until,
)
from tests.integration.service.pushing import notice_of, push, replica_has
from tests.integration.service.service_stack import ServiceStack, ShiftedClock

pytestmark = pytest.mark.integration

LATE_REGION = "westeurope"
TIMEOUT_MINUTES = 1
# Timed-out replicas are probed again only this often (the state machine's default).
TIMED_OUT_PROBE_INTERVAL_S = 300


def test_a_replica_that_never_replicates_times_out_and_is_accepted_when_it_turns_up(
    stack: ServiceStack,
) -> None:
    stack.registries.set_region(LATE_REGION, never_replicates=True)
    try:
        pushed = push(stack.env, stack.tls, "service/late-replica", "v1", seed="late-v1")
        rid = pushed.rollout_id
        clock = ShiftedClock()
        timed_out_id = event_id(rid, 1, LATE_REGION, EventType.REPLICATION_TIMED_OUT)

        def others_live(rollout: Rollout) -> bool:
            return all(
                r.state is RegionState.LIVE for r in rollout.regions if r.region != LATE_REGION
            )

        async def scenario() -> None:
            async with stack.services(
                GEOROLLOUT_REPLICATION_TIMEOUT_MINUTES=str(TIMEOUT_MINUTES)
            ) as services:
                await record_notices(services, [notice_of(pushed)], clock=clock)
                before = await reconcile_until(
                    services, rid, others_live, what="the other regions live", clock=clock
                )
                assert before.region(LATE_REGION).state is RegionState.AWAITING_REPLICATION

                clock.advance(TIMEOUT_MINUTES * 60 + 1)
                timed_out = await reconcile_until(
                    services,
                    rid,
                    lambda r: r.region(LATE_REGION).state is RegionState.TIMED_OUT,
                    what="the late region timed out",
                    clock=clock,
                )
                assert timed_out.state is RolloutState.TIMED_OUT, describe(timed_out)
                late = timed_out.region(LATE_REGION)
                assert late.last_error is not None
                assert late.last_error.startswith("replication timed out")
                assert late.timed_out_at is not None

                await asyncio.to_thread(
                    stack.registries.set_region, LATE_REGION, never_replicates=False
                )
                await asyncio.to_thread(
                    wait_until,
                    lambda: replica_has(
                        stack.env, stack.tls, LATE_REGION, pushed.repository, pushed.digest
                    ),
                    timeout=DEADLINE_S,
                    what="the late replica to receive the image",
                )
                clock.advance(TIMED_OUT_PROBE_INTERVAL_S + 1)
                live = await reconcile_until(
                    services, rid, is_live, what="the late region live", clock=clock
                )
                accepted = live.region(LATE_REGION)
                assert accepted.replicated_at is not None
                assert accepted.replicated_at > late.timed_out_at
                assert accepted.live_at is not None

        asyncio.run(scenario())
    finally:
        stack.registries.set_region(LATE_REGION, never_replicates=False)

    deadline = time.monotonic() + DEADLINE_S
    while not stack.receiver.deliveries([timed_out_id]):
        assert time.monotonic() < deadline, "no georollout.replication.timedout delivered"
        time.sleep(0.1)
    delivered = stack.receiver.deliveries([timed_out_id])[0]
    assert delivered["type"] == "georollout.replication.timedout"
    assert delivered["data"]["region"] == LATE_REGION
    assert delivered["data"]["state"] == RegionState.TIMED_OUT.value
