"""Publishes spooled ImagePushed events to an Event Grid topic with azure-eventgrid, retrying until accepted."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import AzureError
from azure.eventgrid.aio import EventGridPublisherClient

log = logging.getLogger(__name__)


class TopicPublisher:
    """One aio EventGridPublisherClient for the topic; `publish` sends one event as given."""

    def __init__(self, endpoint: str, *, key: str, ca_pem: Path) -> None:
        self.endpoint = endpoint
        # retry_total=0: the supervisor's spool does the retrying, with its own backoff,
        # so a dead topic never stalls the loop inside the SDK.
        self._client = EventGridPublisherClient(
            endpoint,
            AzureKeyCredential(key),
            connection_verify=str(ca_pem),
            retry_total=0,
        )

    async def publish(self, event: dict[str, Any]) -> str | None:
        """Send `event`; return None on success, else the error text (the caller retries)."""
        try:
            await self._client.send([event])
        except AzureError as error:
            log.warning("publishing %s to %s failed: %s", event.get("id"), self.endpoint, error)
            return f"{type(error).__name__}: {error}"
        return None

    async def close(self) -> None:
        await self._client.close()
