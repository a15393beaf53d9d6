"""The event publisher through the real azure-eventgrid aio client, over HTTPS, to the Event Grid
emulator's CloudEvents topic, which pushes each event on to a webhook subscriber run by this test."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from azure.core.exceptions import ClientAuthenticationError

from devenv.config import LOCAL_TOPIC_KEY, LocalEnv
from devenv.eventgrid.launcher import SubscriptionSpec, subscription_url, wait_subscription_active
from devenv.ports import LOOPBACK, free_port
from devenv.process import wait_until
from devenv.tls import TlsFiles
from shared.adapters.event_publisher import EventPublisher, EventToPublish, PublishError
from tests.integration.adapters.conftest import EVENTS_TOPIC

pytestmark = pytest.mark.integration

SUBSCRIPTION = "recorder"
SUBJECT = "models/llm@sha256:" + "a" * 64
DEADLINE_S = 20


@dataclass
class CloudEventsSubscriber:
    """An HTTPS webhook on its own thread: passes the CloudEvents OPTIONS handshake, records deliveries."""

    tls: TlsFiles
    port: int = field(default_factory=free_port)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}/events"

    async def _handshake(self, request: web.Request) -> web.Response:
        origin = request.headers.get("WebHook-Request-Origin", "")
        return web.Response(status=200, headers={"WebHook-Allowed-Origin": origin})

    async def _deliver(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        with self._lock:
            self.deliveries.extend(body if isinstance(body, list) else [body])
        return web.Response(status=200)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("OPTIONS", "/events", self._handshake)
        app.router.add_post("/events", self._deliver)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(
            self._runner, LOOPBACK, self.port, ssl_context=self.tls.server_context()
        ).start()

    def start(self) -> CloudEventsSubscriber:
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()

    def received(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        with self._lock:
            return [event for event in self.deliveries if event.get("id") in ids]


@pytest.fixture(scope="module")
def subscriber(
    adapter_env: LocalEnv, tls_files: TlsFiles, events_topic: str
) -> Iterator[CloudEventsSubscriber]:
    """The subscriber, registered on the topic through the emulator's management API."""
    receiver = CloudEventsSubscriber(tls_files).start()
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


def _wait_for(subscriber: CloudEventsSubscriber, ids: Sequence[str], count: int) -> None:
    wait_until(
        lambda: len(subscriber.received(ids)) >= count,
        timeout=DEADLINE_S,
        what=f"{count} deliveries of {list(ids)}",
    )


def test_published_events_reach_the_subscriber_as_cloud_events(
    events_topic: str, tls_files: TlsFiles, subscriber: CloudEventsSubscriber
) -> None:
    sent = [_event("replica.available"), _event("replication.completed")]

    _publish(events_topic, tls_files, sent, LOCAL_TOPIC_KEY)

    ids = [event.id for event in sent]
    _wait_for(subscriber, ids, len(sent))
    received = {event["id"]: event for event in subscriber.received(ids)}
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
    events_topic: str, tls_files: TlsFiles, subscriber: CloudEventsSubscriber
) -> None:
    event = _event("rollout.finished")

    _publish(events_topic, tls_files, [event], LOCAL_TOPIC_KEY)
    _publish(events_topic, tls_files, [event], LOCAL_TOPIC_KEY)

    # At-least-once: dropping the duplicate is the subscriber's job, by id.
    _wait_for(subscriber, [event.id], 2)
    deliveries = subscriber.received([event.id])
    assert len(deliveries) == 2
    assert {d["id"] for d in deliveries} == {event.id}
    assert {d["type"] for d in deliveries} == {event.type}
