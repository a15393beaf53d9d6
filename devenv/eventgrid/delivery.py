"""Push delivery to webhooks: one worker per subscription, retries with backoff, dead-lettering.

Each (event, subscription) is a spool entry; a worker takes the entry due first, POSTs it,
and on a 2xx removes it. Otherwise it records the outcome and either schedules a retry
(exponential backoff with jitter) or dead-letters it: at once for 400/401/403/413 as Azure
does, after `maxDeliveryAttempts`, or when the event's time to live runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from devenv.eventgrid.chaos import ChaosPlanner
from devenv.eventgrid.config import DeliverySettings, InputSchema, TopicSpec
from devenv.eventgrid.deadletter import (
    MAX_DELIVERY_ATTEMPTS_EXCEEDED,
    TIME_TO_LIVE_EXCEEDED,
    UNDELIVERABLE_STATUS_REASONS,
    write_dead_letter,
)
from devenv.eventgrid.filters import subscription_wants
from devenv.eventgrid.spool import DeliverySpool, PendingDelivery
from devenv.eventgrid.subscriptions import SubscriptionRecord, SubscriptionRegistry

log = logging.getLogger(__name__)

# Names Azure uses for lastDeliveryOutcome in dead-letter records.
OUTCOME_BY_STATUS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    408: "TimedOut",
    413: "RequestEntityTooLarge",
    503: "Busy",
}


@dataclass
class _Channel:
    """The pending deliveries of one subscription and the worker that sends them."""

    items: list[PendingDelivery] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class DeliveryDispatcher:
    def __init__(
        self,
        *,
        topics: dict[str, TopicSpec],
        registry: SubscriptionRegistry,
        spool: DeliverySpool,
        state_dir: Path,
        settings: DeliverySettings,
        chaos: ChaosPlanner,
        client_ssl: ssl.SSLContext,
    ) -> None:
        self._topics = {name.lower(): topic for name, topic in topics.items()}
        self._registry = registry
        self._spool = spool
        self._state_dir = state_dir
        self._settings = settings
        self._chaos = chaos
        self._client_ssl = client_ssl
        self._jitter = random.Random()
        self._channels: dict[tuple[str, str], _Channel] = {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "dispatcher not started"
        return self._session

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._client_ssl))
        for item in self._spool.load_all():
            if self._registry.get(item.topic, item.subscription) is None:
                self._spool.remove(item)  # its subscription was deleted while we were down
                continue
            self._channel(item.topic, item.subscription).items.append(item)

    async def close(self) -> None:
        tasks = [c.task for c in self._channels.values() if c.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()

    def enqueue(self, topic: TopicSpec, events: list[dict[str, Any]]) -> int:
        """Spool each event for every active subscription that wants it; returns the entries written."""
        written = 0
        now = time.time()
        for event in events:
            for record in self._registry.for_topic(topic.name):
                if not record.active or not subscription_wants(
                    record.spec, topic.input_schema, event
                ):
                    continue
                for delay in self._chaos.copy_delays():
                    item = PendingDelivery(
                        seq=self._spool.next_seq(),
                        topic=topic.name,
                        subscription=record.spec.name,
                        event=event,
                        published_at=now,
                        due_at=now + delay,
                    )
                    self._spool.save(item)
                    channel = self._channel(topic.name, record.spec.name)
                    channel.items.append(item)
                    channel.wake.set()
                    written += 1
        return written

    def wake(self, topic: str, subscription: str) -> None:
        """Tell a subscription's worker its state changed (validated, for instance)."""
        self._channel(topic, subscription).wake.set()

    def forget(self, topic: str, subscription: str) -> None:
        """A deleted subscription's pending events are dropped, as in Azure."""
        channel = self._channels.pop((topic.lower(), subscription.lower()), None)
        if channel is not None and channel.task is not None:
            channel.task.cancel()
        self._spool.drop_subscription(topic, subscription)

    def pending(self, topic: str, subscription: str) -> int:
        channel = self._channels.get((topic.lower(), subscription.lower()))
        return 0 if channel is None else len(channel.items)

    def _channel(self, topic: str, subscription: str) -> _Channel:
        key = (topic.lower(), subscription.lower())
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = _Channel()
        # A worker ends when its subscription is gone; one created again under that name needs a new one.
        if channel.task is None or channel.task.done():
            channel.task = asyncio.get_running_loop().create_task(self._work(key, channel))
        return channel

    async def _work(self, key: tuple[str, str], channel: _Channel) -> None:
        while True:
            channel.wake.clear()
            record = self._registry.get(*key)
            if record is None:
                return
            if not channel.items or not record.active:
                await channel.wake.wait()
                continue
            item = min(channel.items, key=lambda i: (i.due_at, i.seq))
            wait_s = item.due_at - time.time()
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(channel.wake.wait(), wait_s)
                continue
            try:
                await self._attempt(record, item, channel)
            except Exception:
                # A worker must outlive any one bad delivery; the entry stays spooled.
                log.exception("delivery of %s to %s failed unexpectedly", item.seq, key)
                item.due_at = time.time() + self._settings.retry_max_s

    async def _attempt(
        self, record: SubscriptionRecord, item: PendingDelivery, channel: _Channel
    ) -> None:
        topic = self._topics[record.topic.lower()]
        spec = record.spec
        expires_at = item.published_at + spec.event_time_to_live_minutes * 60
        if time.time() >= expires_at:
            self._dead_letter(item, channel, TIME_TO_LIVE_EXCEEDED)
            return
        status, outcome = await self._post(topic, spec.name, spec.endpoint, item)
        item.attempts += 1
        item.last_attempt_at = time.time()
        item.last_http_status = status
        item.last_outcome = outcome
        log.info(
            "delivery %s of event %s to %s/%s: %s (%s)",
            item.attempts,
            item.event.get("id"),
            topic.name,
            spec.name,
            outcome,
            status,
        )
        if status is not None and 200 <= status < 300:
            channel.items.remove(item)
            self._spool.remove(item)
            return
        if status in UNDELIVERABLE_STATUS_REASONS:
            self._dead_letter(item, channel, UNDELIVERABLE_STATUS_REASONS[status])
        elif item.attempts >= spec.max_delivery_attempts:
            self._dead_letter(item, channel, MAX_DELIVERY_ATTEMPTS_EXCEEDED)
        else:
            item.due_at = time.time() + self._backoff(item.attempts)
            if item.due_at >= expires_at:
                self._dead_letter(item, channel, TIME_TO_LIVE_EXCEEDED)
            else:
                self._spool.save(item)

    async def _post(
        self, topic: TopicSpec, subscription: str, endpoint: str, item: PendingDelivery
    ) -> tuple[int | None, str]:
        event = item.event
        headers = {
            "aeg-event-type": "Notification",
            "aeg-subscription-name": subscription.upper(),
            # Azure counts previous attempts: the first delivery carries 0.
            "aeg-delivery-count": str(item.attempts),
        }
        if topic.input_schema is InputSchema.EVENT_GRID:
            body = json.dumps([event])
            headers["Content-Type"] = "application/json; charset=utf-8"
            headers["aeg-metadata-version"] = "1"
            headers["aeg-data-version"] = str(event.get("dataVersion", ""))
        else:
            body = json.dumps(event)
            headers["Content-Type"] = "application/cloudevents+json; charset=utf-8"
            headers["aeg-metadata-version"] = str(event.get("specversion", "1.0"))
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_s)
        try:
            async with self.session.post(
                endpoint, data=body.encode(), headers=headers, timeout=timeout
            ) as response:
                await response.read()
                status = response.status
        except TimeoutError:
            return None, "TimedOut"
        except aiohttp.ClientError as error:
            log.info("delivery to %s failed: %s", endpoint, error)
            return None, "CannotConnect"
        if 200 <= status < 300:
            return status, "Succeeded"
        return status, OUTCOME_BY_STATUS.get(status, "GenericError")

    def _backoff(self, attempts: int) -> float:
        settings = self._settings
        delay = min(settings.retry_max_s, settings.retry_base_s * 2.0 ** (attempts - 1))
        return delay * self._jitter.uniform(1 - settings.retry_jitter, 1 + settings.retry_jitter)

    def _dead_letter(self, item: PendingDelivery, channel: _Channel, reason: str) -> None:
        path = write_dead_letter(self._state_dir, item, reason)
        log.warning("dead-lettered event %s (%s) to %s", item.event.get("id"), reason, path)
        channel.items.remove(item)
        self._spool.remove(item)
