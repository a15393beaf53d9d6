"""Georollout's own events while its Event Grid topic is down: state moves on, the events wait in
the rollout's outbox, and go out with the same deterministic ids once the topic is back."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest

from devenv.eventgrid.launcher import start_eventgrid, topic_endpoint, wait_subscription_active
from devenv.local_settings import EVENTS_TOPIC
from devenv.ports import free_port
from shared.domain.events import EventType, event_id
from shared.service.intake import record_notices
from shared.service.reconcile import publish_outbox, reconcile
from tests.integration.service.conftest import (
    FAST_DELIVERY,
    PRIMARY,
    RECEIVER_SUBSCRIPTION,
    REGIONS,
    events_topic,
)
from tests.integration.service.driving import DEADLINE_S, POLL_S, is_live, reconcile_until, stored
from tests.integration.service.pushing import notice_of, push
from tests.integration.service.service_stack import ServiceStack
from tests.support.cloudevents_receiver import EventReceiver

pytestmark = pytest.mark.integration


async def _wait_deliveries(receiver: EventReceiver, ids: list[str], each: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        delivered = [e["id"] for e in receiver.deliveries(ids)]
        if all(delivered.count(i) >= each for i in ids):
            return
        assert time.monotonic() < deadline, f"delivered {delivered}, wanted each of {ids} x{each}"
        await asyncio.sleep(POLL_S)


def test_events_wait_in_the_outbox_while_the_topic_is_down_and_keep_their_ids(
    stack: ServiceStack, tmp_path: Path
) -> None:
    # A topic address where nothing listens yet; its emulator is started later in the test.
    down_env = replace(stack.env, eventgrid_port=free_port(), state_dir=tmp_path)
    pushed = push(stack.env, stack.tls, "service/topic-down", "v1", seed="topic-down-v1")
    rid = pushed.rollout_id
    expected = {
        event_id(rid, 1, region, kind): (kind, region)
        for region in REGIONS
        for kind in (EventType.REPLICA_AVAILABLE, EventType.REGION_LIVE)
    } | {
        event_id(rid, 1, "", kind): (kind, "")
        for kind in (EventType.REPLICATION_COMPLETED, EventType.ROLLOUT_FINISHED)
    }

    async def scenario() -> None:
        topic = topic_endpoint(down_env, EVENTS_TOPIC)
        async with stack.services(GEOROLLOUT_EVENTS_TOPIC_ENDPOINT=topic) as services:
            await record_notices(services, [notice_of(pushed)])
            await reconcile_until(services, rid, is_live, what="live with the topic down")
            waiting = await stored(services, rid)
            assert {e.id: (e.type, e.region) for e in waiting.outbox} == expected
            assert waiting.region(PRIMARY).live_at is not None

            process = await asyncio.to_thread(
                start_eventgrid,
                down_env,
                stack.tls,
                [events_topic(stack.receiver)],
                delivery=FAST_DELIVERY,
            )
            try:
                await asyncio.to_thread(
                    wait_subscription_active,
                    down_env,
                    stack.tls,
                    EVENTS_TOPIC,
                    RECEIVER_SUBSCRIPTION,
                )
                await reconcile(services, rid)
                assert (await stored(services, rid)).outbox == ()
                await _wait_deliveries(stack.receiver, list(expected), 1)

                # A crash after sending, before the outbox write, sends them again: same ids.
                await publish_outbox(services, waiting)
                await _wait_deliveries(stack.receiver, list(expected), 2)
            finally:
                await asyncio.to_thread(process.stop)

    asyncio.run(scenario())

    delivered = stack.receiver.deliveries(list(expected))
    assert len(delivered) == 2 * len(expected)
    for event in delivered:
        kind, _region = expected[event["id"]]
        assert event["type"] == kind.value
        assert event["subject"] == f"{pushed.repository}@{pushed.digest}"
