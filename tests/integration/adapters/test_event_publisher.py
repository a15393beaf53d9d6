"""The event publisher through the real azure-eventgrid aio client, over HTTPS, to the Event Grid
emulator's CloudEvents topic, which pushes each event on to a webhook subscriber run by this test."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import pytest
from azure.core.exceptions import ClientAuthenticationError

from devenv.config import LOCAL_TOPIC_KEY, LocalEnv
from devenv.eventgrid.launcher import SubscriptionSpec, subscription_url, wait_subscription_active
from devenv.process import wait_until
from devenv.tls import TlsFiles
from shared.adapters.event_publisher import EventPublisher, EventToPublish, PublishError
from tests.integration.adapters.conftest import EVENTS_TOPIC
from tests.support.cloudevents_receiver import EventReceiver
from tests.support.sockets import open_connections

pytestmark = pytest.mark.integration

SUBSCRIPTION = "recorder"
SUBJECT = "models/llm@sha256:" + "a" * 64
DEADLINE_S = 20


@pytest.fixture(scope="module")
def subscriber(
    adapter_env: LocalEnv, tls_files: TlsFiles, events_topic: str
) -> Iterator[EventReceiver]:
    """The subscriber, registered on the topic through the emulator's management API."""
    receiver = EventReceiver(tls_files).start()
    try:
        body = json.dumps(SubscriptionSpec(SUBSCRIPTION, receiver.url).to_json()).encode()
        request = urllib.request.Request(
            subscription_url(adapter_env, EVENTS_TOPIC, SUBSCRIPTION),
            data=body,
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, context=tls_files.client_context(), timeout=10):
            pass
        wait_subscription_active(adapter_env, tls_files, EVENTS_TOPIC, SUBSCRIPTION)
        yield receiver
    finally:
        receiver.stop()


def _event(kind: str, event_id: str | None = None) -> EventToPublish:
    return EventToPublish(
        id=event_id or str(uuid.uuid4()),
        type=f"georollout.{kind}",
        subject=SUBJECT,
        time=datetime.now(UTC),
        data={"region": "westus", "kind": kind},
    )


def _publish(endpoint: str, tls: TlsFiles, events: Sequence[EventToPublish], key: str) -> None:
    async def run() -> None:
        publisher = EventPublisher(endpoint, key=key, ca_bundle=str(tls.ca_pem))
        try:
            await publisher.publish(events)
        finally:
            await publisher.close()

    asyncio.run(run())


def _wait_for(subscriber: EventReceiver, ids: Sequence[str], count: int) -> None:
    wait_until(
        lambda: len(subscriber.deliveries(ids)) >= count,
        timeout=DEADLINE_S,
        what=f"{count} deliveries of {list(ids)}",
    )


def test_published_events_reach_the_subscriber_as_cloud_events(
    events_topic: str, tls_files: TlsFiles, subscriber: EventReceiver
) -> None:
    sent = [_event("replica.available"), _event("replication.completed")]

    _publish(events_topic, tls_files, sent, LOCAL_TOPIC_KEY)

    ids = [event.id for event in sent]
    _wait_for(subscriber, ids, len(sent))
    received = {event["id"]: event for event in subscriber.deliveries(ids)}
    assert sorted(received) == sorted(ids)
    for event in sent:
        delivered = received[event.id]
        assert delivered["type"] == event.type
        assert delivered["subject"] == event.subject
        assert delivered["specversion"] == "1.0"
        assert delivered["source"] == "/georollout"
        assert delivered["data"] == dict(event.data)
        assert datetime.fromisoformat(delivered["time"]) == event.time


def test_wrong_topic_key_is_a_publish_error(events_topic: str, tls_files: TlsFiles) -> None:
    with pytest.raises(PublishError) as refused:
        _publish(events_topic, tls_files, [_event("region.live")], "not-the-topic-key")

    assert "refused 1 event(s)" in str(refused.value)
    cause = refused.value.__cause__
    assert isinstance(cause, ClientAuthenticationError) and cause.status_code == 401


def test_republished_event_is_delivered_again_with_the_same_id(
    events_topic: str, tls_files: TlsFiles, subscriber: EventReceiver
) -> None:
    event = _event("rollout.finished")

    _publish(events_topic, tls_files, [event], LOCAL_TOPIC_KEY)
    _publish(events_topic, tls_files, [event], LOCAL_TOPIC_KEY)

    # At-least-once: dropping the duplicate is the subscriber's job, by id.
    _wait_for(subscriber, [event.id], 2)
    deliveries = subscriber.deliveries([event.id])
    assert len(deliveries) == 2
    assert {d["id"] for d in deliveries} == {event.id}
    assert {d["type"] for d in deliveries} == {event.type}


def test_batches_share_one_pooled_tls_connection(
    adapter_env: LocalEnv, events_topic: str, tls_files: TlsFiles
) -> None:
    """One TLS context and one kept-alive connection for every batch, not one per request."""

    async def run() -> int:
        publisher = EventPublisher(
            events_topic, key=LOCAL_TOPIC_KEY, ca_bundle=str(tls_files.ca_pem)
        )
        try:
            for _ in range(10):
                await publisher.publish([_event("region.live")])
            return open_connections(adapter_env.eventgrid_port)
        finally:
            await publisher.close()

    assert asyncio.run(run()) == 1
