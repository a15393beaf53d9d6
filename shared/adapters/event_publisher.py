"""Publishes georollout's own events (CloudEvents 1.0) to its Event Grid topic."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core.credentials import AzureKeyCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError
from azure.core.messaging import CloudEvent
from azure.eventgrid.aio import EventGridPublisherClient

from shared.adapters.http_pool import PooledTransport

EVENT_SOURCE = "/georollout"


class PublishError(Exception):
    """The topic did not accept the batch; the events stay in the outbox for the next tick."""


@dataclass(frozen=True)
class EventToPublish:
    id: str
    type: str
    subject: str
    time: datetime
    data: Mapping[str, Any]


class EventPublisher:
    """Sends CloudEvents with deterministic ids, so a republished event is recognisably the same one."""

    def __init__(
        self,
        endpoint: str,
        *,
        key: str | None = None,
        credential: AsyncTokenCredential | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        auth: AzureKeyCredential | AsyncTokenCredential
        if key is not None:
            auth = AzureKeyCredential(key)
        elif credential is not None:
            auth = credential
        else:
            raise ValueError("EventPublisher needs a topic key or a token credential")
        self._client = EventGridPublisherClient(
            endpoint, auth, retry_total=2, transport=PooledTransport(ca_bundle)
        )

    async def publish(self, events: Sequence[EventToPublish]) -> None:
        if not events:
            return
        cloud_events = [
            CloudEvent(
                source=EVENT_SOURCE,
                type=event.type,
                subject=event.subject,
                id=event.id,
                time=event.time,
                data=dict(event.data),
            )
            for event in events
        ]
        try:
            await self._client.send(cloud_events)
        except AzureError as error:
            raise PublishError(
                f"Event Grid topic refused {len(events)} event(s): {error}"
            ) from error

    async def close(self) -> None:
        await self._client.close()
