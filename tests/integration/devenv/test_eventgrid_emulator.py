"""The Event Grid emulator against the real azure-eventgrid publisher over HTTPS, delivering to a
webhook receiver that answers like the local Functions host's Event Grid endpoint."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient
from azure.eventgrid.aio import EventGridPublisherClient as AsyncEventGridPublisherClient

from devenv.config import LOCAL_TOPIC_KEY, LocalEnv
from devenv.eventgrid.launcher import (
    ChaosSettings,
    DeliverySettings,
    InputSchema,
    SubscriptionSpec,
    TopicSpec,
    dead_letters,
    get_subscription,
    start_eventgrid,
    subscription_url,
    topic_endpoint,
    wait_subscription_active,
)
from devenv.ports import LOOPBACK, free_port
from devenv.process import ManagedProcess, wait_until
from devenv.tls import TlsFiles

pytestmark = pytest.mark.integration

FAST = DeliverySettings(
    retry_base_s=0.05, retry_max_s=0.2, retry_jitter=0.2, timeout_s=5, validation_retry_s=0.3
)
DEADLINE_S = 20


# --- a webhook receiver that behaves like the Functions host's /runtime/webhooks/eventgrid ---


@dataclass
class Request:
    function: str
    method: str
    headers: dict[str, str]  # lower-cased names
    body: Any


@dataclass
class WebhookReceiver:
    """Runs in a background thread; records every request; per function it can fail or refuse."""

    port: int = field(default_factory=free_port)
    requests: list[Request] = field(default_factory=list)
    fail_next: dict[str, int] = field(default_factory=dict)  # function -> Notifications to fail
    always_fail: set[str] = field(default_factory=set)
    bad_request: set[str] = field(default_factory=set)  # answer Notifications with 400
    refuse_validation: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None

    def url(self, function: str) -> str:
        return f"http://{LOOPBACK}:{self.port}/runtime/webhooks/eventgrid?functionName={function}"

    def notifications(self, function: str) -> list[Request]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.function == function and r.headers.get("aeg-event-type") == "Notification"
            ]

    def handshakes(self, function: str) -> list[Request]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.function == function
                and (
                    r.method == "OPTIONS"
                    or r.headers.get("aeg-event-type") == "SubscriptionValidation"
                )
            ]

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(ready),), daemon=True)
        self._thread.start()
        assert ready.wait(10), "webhook receiver did not start"

    def stop(self) -> None:
        assert self._loop is not None and self._stop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _serve(self, ready: threading.Event) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/runtime/webhooks/eventgrid", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, LOOPBACK, self.port).start()
        ready.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        function = request.query.get("functionName", "")
        text = await request.text()
        headers = {k.lower(): v for k, v in request.headers.items()}
        event_type = headers.get("aeg-event-type")
        with self._lock:
            self.requests.append(
                Request(function, request.method, headers, json.loads(text) if text else None)
            )
            refuse = function in self.refuse_validation
            fail = False
            if event_type == "Notification":
                pending_failures = self.fail_next.get(function, 0)
                fail = function in self.always_fail or pending_failures > 0
                if pending_failures > 0:
                    self.fail_next[function] = pending_failures - 1
        if request.method == "OPTIONS":
            if refuse:
                return web.Response(status=403)
            origin = request.headers.get("WebHook-Request-Origin", "")
            return web.Response(status=200, headers={"WebHook-Allowed-Origin": origin})
        if event_type == "SubscriptionValidation":
            if refuse:
                return web.Response(status=400, text="validation refused")
            code = json.loads(text)[0]["data"]["validationCode"]
            return web.json_response({"validationResponse": code})
        if event_type == "Notification":
            if function in self.bad_request:
                return web.Response(status=400)
            return web.Response(status=500 if fail else 202)
        return web.Response(status=400)


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    server.start()
    yield server
    server.stop()


class Emulators:
    """Starts emulators on a fresh port and state directory; `stop_all` stops each by pid."""

    def __init__(self, local_env: LocalEnv, tls: TlsFiles, state_dir: Path) -> None:
        self._base_env = local_env
        self._tls = tls
        self._state_dir = state_dir
        self._processes: list[ManagedProcess] = []

    def start(
        self,
        topics: list[TopicSpec],
        *,
        delivery: DeliverySettings = FAST,
        chaos: ChaosSettings | None = None,
        env: LocalEnv | None = None,
    ) -> LocalEnv:
        env = env or replace(self._base_env, state_dir=self._state_dir, eventgrid_port=free_port())
        self._processes.append(
            start_eventgrid(env, self._tls, topics, delivery=delivery, chaos=chaos)
        )
        return env

    def stop_all(self) -> None:
        while self._processes:
            self._processes.pop().stop()


@pytest.fixture
def emulators(local_env: LocalEnv, tls_files: TlsFiles, tmp_path: Path) -> Iterator[Emulators]:
    runner = Emulators(local_env, tls_files, tmp_path)
    yield runner
    runner.stop_all()


def publisher(env: LocalEnv, topic: str, key: str = LOCAL_TOPIC_KEY) -> EventGridPublisherClient:
    return EventGridPublisherClient(topic_endpoint(env, topic), AzureKeyCredential(key))


def send(
    env: LocalEnv, tls: TlsFiles, topic: str, events: list[Any], key: str = LOCAL_TOPIC_KEY
) -> None:
    # The sync client drops constructor options; connection_verify goes with each call.
    publisher(env, topic, key).send(events, connection_verify=str(tls.ca_pem), retry_total=0)


def management(
    env: LocalEnv, tls: TlsFiles, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    context = ssl.create_default_context(cafile=str(tls.ca_pem))
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None


def wait_active(env: LocalEnv, tls: TlsFiles, topic: str, subscription: str) -> None:
    wait_subscription_active(env, tls, topic, subscription, timeout_s=DEADLINE_S)


def pending(env: LocalEnv, tls: TlsFiles, topic: str, subscription: str) -> int:
    document = get_subscription(env, tls, topic, subscription)
    assert document is not None, f"subscription {subscription} does not exist"
    return int(document["pendingDeliveries"])


def wait_drained(env: LocalEnv, tls: TlsFiles, topic: str, subscription: str) -> None:
    def drained() -> bool:
        document = get_subscription(env, tls, topic, subscription)
        return document is not None and document["pendingDeliveries"] == 0

    wait_until(drained, timeout=DEADLINE_S, what=f"{subscription} to have nothing pending")


def event_ids(requests: list[Request]) -> list[str]:
    ids: list[str] = []
    for request in requests:
        events = request.body if isinstance(request.body, list) else [request.body]
        ids.extend(e["id"] for e in events)
    return ids


# --- delivery of both schemas ---


def test_event_grid_event_is_validated_then_delivered_as_azure_does(
    emulators: Emulators, tls_files: TlsFiles, receiver: WebhookReceiver
) -> None:
    sub = SubscriptionSpec("egsub", receiver.url("eg_basic"))
    env = emulators.start([TopicSpec("eg-topic", InputSchema.EVENT_GRID, subscriptions=(sub,))])
    wait_active(env, tls_files, "eg-topic", "egsub")
    validation = receiver.handshakes("eg_basic")[0]
    assert validation.headers["aeg-event-type"] == "SubscriptionValidation"
    assert validation.body[0]["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent"

    event = EventGridEvent("models/llm@sha256:ab", "georollout.test", {"n": 1}, "1.0")
    send(env, tls_files, "eg-topic", [event])

    wait_until(
        lambda: bool(receiver.notifications("eg_basic")), timeout=DEADLINE_S, what="delivery"
    )
    (delivery,) = receiver.notifications("eg_basic")
    assert delivery.headers["content-type"] == "application/json; charset=utf-8"
    assert delivery.headers["aeg-subscription-name"] == "EGSUB"
    assert delivery.headers["aeg-delivery-count"] == "0"
    assert delivery.headers["aeg-data-version"] == "1.0"
    (body,) = delivery.body
    assert body["id"] == str(event.id)
    assert body["subject"] == "models/llm@sha256:ab"
    assert body["eventType"] == "georollout.test"
    assert body["data"] == {"n": 1}
    assert body["metadataVersion"] == "1"
    assert body["topic"].endswith("/providers/Microsoft.EventGrid/topics/eg-topic")


def test_cloud_events_are_delivered_one_per_request_from_the_async_client(
    emulators: Emulators, tls_files: TlsFiles, receiver: WebhookReceiver
) -> None:
    sub = SubscriptionSpec("cesub", receiver.url("ce_basic"))
    env = emulators.start([TopicSpec("ce-topic", InputSchema.CLOUD_EVENTS, subscriptions=(sub,))])
    wait_active(env, tls_files, "ce-topic", "cesub")
    (handshake,) = receiver.handshakes("ce_basic")
    assert handshake.method == "OPTIONS"
    assert handshake.headers["webhook-request-origin"] == "eventgrid.azure.net"

    events = [
        CloudEvent(
            source="/georollout",
            type="georollout.replica.available",
            subject=f"r@{i}",
            data={"i": i},
        )
        for i in range(2)
    ]

    async def publish() -> None:
        async with AsyncEventGridPublisherClient(
            topic_endpoint(env, "ce-topic"),
            AzureKeyCredential(LOCAL_TOPIC_KEY),
            connection_verify=str(tls_files.ca_pem),
        ) as client:
            await client.send(events)

    asyncio.run(publish())

    wait_until(
        lambda: len(receiver.notifications("ce_basic")) == 2,
        timeout=DEADLINE_S,
        what="2 deliveries",
    )
    deliveries = receiver.notifications("ce_basic")
    assert sorted(d.body["id"] for d in deliveries) == sorted(e.id for e in events)
    for delivery in deliveries:
        assert delivery.headers["content-type"] == "application/cloudevents+json; charset=utf-8"
        assert delivery.headers["aeg-event-type"] == "Notification"
        assert delivery.headers["aeg-subscription-name"] == "CESUB"
        assert delivery.body["specversion"] == "1.0"
        assert delivery.body["type"] == "georollout.replica.available"
        assert delivery.body["data"] == {"i": int(delivery.body["subject"].split("@")[1])}


def test_event_type_and_subject_filters_select_events(
    emulators: Emulators, tls_files: TlsFiles, receiver: WebhookReceiver
) -> None:
    subs = (
        SubscriptionSpec(
            "by-type", receiver.url("f_type"), included_event_types=("Georollout.Region.Live",)
        ),
        SubscriptionSpec("by-prefix", receiver.url("f_prefix"), subject_begins_with="models/"),
        SubscriptionSpec("by-suffix", receiver.url("f_suffix"), subject_ends_with="@V2"),
        SubscriptionSpec(
            "by-suffix-exact",
            receiver.url("f_suffix_exact"),
            subject_ends_with="@V2",
            is_subject_case_sensitive=True,
        ),
    )
    env = emulators.start([TopicSpec("filters", InputSchema.CLOUD_EVENTS, subscriptions=subs)])
    for sub in subs:
        wait_active(env, tls_files, "filters", sub.name)
    live_model: CloudEvent[Any] = CloudEvent(
        source="/g", type="georollout.region.live", subject="models/a@v2", id="e1"
    )
    failed_model: CloudEvent[Any] = CloudEvent(
        source="/g", type="georollout.region.failed", subject="models/b@v1", id="e2"
    )
    live_other: CloudEvent[Any] = CloudEvent(
        source="/g", type="georollout.region.live", subject="other/c@v3", id="e3"
    )

    send(env, tls_files, "filters", [live_model, failed_model, live_other])

    for sub in subs:
        wait_drained(env, tls_files, "filters", sub.name)
    assert sorted(event_ids(receiver.notifications("f_type"))) == ["e1", "e3"]
    assert sorted(event_ids(receiver.notifications("f_prefix"))) == ["e1", "e2"]
    assert event_ids(receiver.notifications("f_suffix")) == ["e1"]
    assert event_ids(receiver.notifications("f_suffix_exact")) == []


# --- what the publish endpoint refuses ---


def test_wrong_or_missing_key_is_refused_with_401(
    emulators: Emulators, tls_files: TlsFiles
) -> None:
    env = emulators.start([TopicSpec("keyed", InputSchema.EVENT_GRID)])
    event = EventGridEvent("s", "t", {}, "1")
    with pytest.raises(ClientAuthenticationError):
        send(env, tls_files, "keyed", [event], key="not-the-key")

    status, body = management(
        env, tls_files, "POST", topic_endpoint(env, "keyed") + "?api-version=2018-01-01", []
    )
    assert status == 401
    assert "aeg-sas-key" in body["error"]["message"]


def test_malformed_and_oversized_events_are_refused(
    emulators: Emulators, tls_files: TlsFiles
) -> None:
    env = emulators.start(
        [
            TopicSpec("eg-strict", InputSchema.EVENT_GRID),
            TopicSpec("ce-strict", InputSchema.CLOUD_EVENTS),
        ]
    )
    bad_time = {
        "id": "1",
        "subject": "s",
        "eventType": "t",
        "data": {},
        "dataVersion": "1",
        "eventTime": "yesterday",
    }
    with pytest.raises(HttpResponseError) as refused:
        send(env, tls_files, "eg-strict", [bad_time])
    assert refused.value.status_code == 400
    assert "eventTime" in str(refused.value)

    with pytest.raises(HttpResponseError) as wrong_schema:
        send(env, tls_files, "ce-strict", [EventGridEvent("s", "t", {}, "1")])
    assert wrong_schema.value.status_code == 400
    assert "CloudEventSchemaV1_0" in str(wrong_schema.value)

    with pytest.raises(HttpResponseError) as too_big:
        send(env, tls_files, "ce-strict", [CloudEvent(source="/g", type="t", data="x" * 1_100_000)])
    assert too_big.value.status_code == 413

    request = urllib.request.Request(
        topic_endpoint(env, "ce-strict") + "?api-version=2018-01-01",
        data=json.dumps([{"id": "1", "specversion": "1.0", "type": "t"}]).encode(),
        method="POST",
        headers={
            "aeg-sas-key": LOCAL_TOPIC_KEY,
            "Content-Type": "application/cloudevents-batch+json; charset=utf-8",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as missing_source:
        urllib.request.urlopen(request, context=tls_files.client_context(), timeout=10)
    assert missing_source.value.code == 400
    assert json.loads(missing_source.value.read())["error"]["message"] == (
        "event [0]: required property 'source' is missing"
    )


# --- retries and dead-lettering ---


def test_receiver_failing_twice_gets_the_event_on_the_third_attempt(
    emulators: Emulators, tls_files: TlsFiles, receiver: WebhookReceiver
) -> None:
    receiver.fail_next["flaky"] = 2
    sub = SubscriptionSpec("flaky-sub", receiver.url("flaky"))
    env = emulators.start([TopicSpec("retries", InputSchema.EVENT_GRID, subscriptions=(sub,))])
    wait_active(env, tls_files, "retries", "flaky-sub")
    event = EventGridEvent("s", "t", {}, "1")

    send(env, tls_files, "retries", [event])

    wait_drained(env, tls_files, "retries", "flaky-sub")
    attempts = receiver.notifications("flaky")
    assert [a.headers["aeg-delivery-count"] for a in attempts] == ["0", "1", "2"]
    assert event_ids(attempts) == [str(event.id)] * 3
    assert dead_letters(env, "retries", "flaky-sub") == []


def test_receiver_always_failing_is_dead_lettered_after_max_attempts(
    emulators: Emulators, tls_files: TlsFiles, receiver: WebhookReceiver
) -> None:
    receiver.always_fail.add("broken")
    sub = SubscriptionSpec("broken-sub", receiver.url("broken"), max_delivery_attempts=3)
    env = emulators.start([TopicSpec("deadletters", InputSchema.EVENT_GRID, subscriptions=(sub,))])
    wait_active(env, tls_files, "deadletters", "broken-sub")
    event = EventGridEvent("models/x@sha256:1", "georollout.test", {"k": "v"}, "1")

    send(env, tls_files, "deadletters", [event])

    wait_until(
        lambda: bool(dead_letters(env, "deadletters", "broken-sub")),
        timeout=DEADLINE_S,
        what="a dead letter",
    )
    (record,) = dead_letters(env, "deadletters", "broken-sub")
    assert record["id"] == str(event.id)
    assert record["data"] == {"k": "v"}
    assert record["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
    assert record["deliveryAttempts"] == 3
    assert record["lastHttpStatusCode"] == 500
    assert record["lastDeliveryOutcome"] == "GenericError"
    assert len(receiver.notifications("broken")) == 3
    folder = env.state_dir / "eventgrid" / "deadletter" / "deadletters" / "broken-sub"
    assert len(list(folder.glob("*.json"))) == 1
    assert pending(env, tls_files, "deadletters", "broken-sub") == 0


def test_receiver_answering_400_is_dead_lettered_without_retries(
    emulators: Emulators, tls_files: TlsFiles, receiver: WebhookReceiver
) -> None:
    receiver.bad_request.add("picky")
    sub = SubscriptionSpec("picky-sub", receiver.url("picky"))
    env = emulators.start(
        [TopicSpec("bad-requests", InputSchema.CLOUD_EVENTS, subscriptions=(sub,))]
    )
    wait_active(env, tls_files, "bad-requests", "picky-sub")
    event: CloudEvent[Any] = CloudEvent(source="/g", type="t", id="refused-1")

    send(env, tls_files, "bad-requests", [event])

    wait_until(
        lambda: bool(dead_letters(env, "bad-requests", "picky-sub")),
        timeout=DEADLINE_S,
        what="a dead letter",
    )
    (record,) = dead_letters(env, "bad-requests", "picky-sub")
    assert record["id"] == "refused-1"
    assert record["deadLetterReason"] == "UndeliverableDueToHttpBadRequest"
    assert (record["deliveryAttempts"], record["lastHttpStatusCode"]) == (1, 400)
    assert len(receiver.notifications("picky")) == 1


# --- the validation handshake through the management API ---


@pytest.mark.parametrize("schema", [InputSchema.EVENT_GRID, InputSchema.CLOUD_EVENTS])
def test_subscription_failing_validation_stays_inactive_until_it_passes(
    schema: InputSchema, emulators: Emulators, tls_files: TlsFiles, receiver: WebhookReceiver
) -> None:
    function = f"refuser_{schema.name.lower()}"
    receiver.refuse_validation.add(function)
    env = emulators.start([TopicSpec("handshake", schema)])
    url = subscription_url(env, "handshake", "late-sub")

    status, document = management(env, tls_files, "PUT", url, {"endpoint": receiver.url(function)})
    assert status == 201
    assert document["provisioningState"] == "Failed"
    assert document["lastValidationError"]
    assert document["eventDeliverySchema"] == schema.value
    event: Any = (
        EventGridEvent("s", "t", {}, "1")
        if schema is InputSchema.EVENT_GRID
        else CloudEvent(source="/g", type="t")
    )
    send(env, tls_files, "handshake", [event])  # nobody active: accepted, delivered to no one
    assert pending(env, tls_files, "handshake", "late-sub") == 0

    receiver.refuse_validation.discard(function)  # the background retry now succeeds
    wait_active(env, tls_files, "handshake", "late-sub")
    send(env, tls_files, "handshake", [event])
    wait_until(lambda: bool(receiver.notifications(function)), timeout=DEADLINE_S, what="delivery")
    assert event_ids(receiver.notifications(function)) == [str(event.id)]

    status, listing = management(env, tls_files, "GET", url.rsplit("/", 1)[0])
    assert status == 200 and [s["name"] for s in listing["value"]] == ["late-sub"]
    assert management(env, tls_files, "DELETE", url)[0] == 200
    assert management(env, tls_files, "GET", url)[0] == 404
    send(env, tls_files, "handshake", [event])  # no subscription: delivered to no one

    status, document = management(env, tls_files, "PUT", url, {"endpoint": receiver.url(function)})
    assert (status, document["provisioningState"]) == (201, "Succeeded")
    second: Any = (
        EventGridEvent("s", "t", {}, "1")
        if schema is InputSchema.EVENT_GRID
        else CloudEvent(source="/g", type="t")
    )
    send(env, tls_files, "handshake", [second])
    wait_until(
        lambda: len(receiver.notifications(function)) == 2, timeout=DEADLINE_S, what="delivery"
    )
    assert event_ids(receiver.notifications(function)) == [str(event.id), str(second.id)]


# --- chaos and restarts ---


def test_chaos_mode_delivers_duplicates_and_out_of_order(
    emulators: Emulators, tls_files: TlsFiles, receiver: WebhookReceiver
) -> None:
    sub = SubscriptionSpec("chaos-sub", receiver.url("chaotic"))
    chaos = ChaosSettings(enabled=True, seed=7, max_delay_s=0.3)
    env = emulators.start(
        [TopicSpec("chaos", InputSchema.CLOUD_EVENTS, subscriptions=(sub,))], chaos=chaos
    )
    wait_active(env, tls_files, "chaos", "chaos-sub")
    events: list[CloudEvent[Any]] = [
        CloudEvent(source="/g", type="t", id=f"ev-{i:02d}") for i in range(12)
    ]

    send(env, tls_files, "chaos", events)

    wait_drained(env, tls_files, "chaos", "chaos-sub")
    received = event_ids(receiver.notifications("chaotic"))
    assert set(received) == {e.id for e in events}
    assert len(received) > len(events), "no event was delivered twice"
    first_arrivals = list(dict.fromkeys(received))
    assert first_arrivals != [e.id for e in events], "events arrived in publish order"


def test_restart_keeps_undelivered_events(
    emulators: Emulators, tls_files: TlsFiles, receiver: WebhookReceiver
) -> None:
    receiver.always_fail.add("restarted")
    sub = SubscriptionSpec("restart-sub", receiver.url("restarted"))
    topics = [TopicSpec("restarts", InputSchema.EVENT_GRID, subscriptions=(sub,))]
    slow_retries = replace(FAST, retry_base_s=0.5, retry_max_s=1.0)
    env = emulators.start(topics, delivery=slow_retries)
    wait_active(env, tls_files, "restarts", "restart-sub")
    event = EventGridEvent("s", "t", {"keep": True}, "1")
    send(env, tls_files, "restarts", [event])
    wait_until(
        lambda: bool(receiver.notifications("restarted")),
        timeout=DEADLINE_S,
        what="a first attempt",
    )

    emulators.stop_all()
    spooled = list((env.state_dir / "eventgrid" / "spool").glob("*/*/*.json"))
    assert len(spooled) == 1
    receiver.always_fail.discard("restarted")
    emulators.start(topics, delivery=slow_retries, env=env)

    wait_drained(env, tls_files, "restarts", "restart-sub")
    last = receiver.notifications("restarted")[-1]
    assert event_ids([last]) == [str(event.id)]
    assert int(last.headers["aeg-delivery-count"]) >= 1
    assert len(receiver.handshakes("restarted")) == 1, (
        "an unchanged subscription was validated again"
    )
