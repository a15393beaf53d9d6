"""Bringing subscriptions to `Succeeded`: the validation handshake on creation, retried while it fails.

Azure leaves a subscription that failed validation in `Failed` and never delivers to
it; the emulator does the same but keeps trying, because locally the receiving host is
often started after the emulator.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from devenv.eventgrid.config import DeliverySettings, SubscriptionSpec, TopicSpec
from devenv.eventgrid.delivery import DeliveryDispatcher
from devenv.eventgrid.handshake import ValidationFailedError, validate_endpoint
from devenv.eventgrid.subscriptions import (
    ProvisioningState,
    SubscriptionRecord,
    SubscriptionRegistry,
)

log = logging.getLogger(__name__)


class SubscriptionProvisioner:
    def __init__(
        self,
        *,
        topics: dict[str, TopicSpec],
        registry: SubscriptionRegistry,
        dispatcher: DeliveryDispatcher,
        settings: DeliverySettings,
    ) -> None:
        self._topics = {name.lower(): topic for name, topic in topics.items()}
        self._registry = registry
        self._dispatcher = dispatcher
        self._settings = settings

    async def provision(self, topic_name: str, spec: SubscriptionSpec) -> SubscriptionRecord | None:
        """Validate the endpoint and record the verdict; None if the subscription went away meanwhile."""
        topic = self._topics[topic_name.lower()]
        reason: str | None = None
        try:
            await validate_endpoint(self._session, topic, spec, self._settings.timeout_s)
        except ValidationFailedError as error:
            state, reason = ProvisioningState.FAILED, str(error)
        else:
            state = ProvisioningState.SUCCEEDED
        current = self._registry.get(topic.name, spec.name)
        # A PUT may have replaced the subscription while we were validating the old endpoint.
        if current is None or current.spec != spec:
            return current
        log.info("subscription %s/%s: %s %s", topic.name, spec.name, state, reason or "")
        record = self._registry.set_state(topic.name, spec.name, state, reason)
        self._dispatcher.wake(topic.name, spec.name)
        return record

    async def keep_validating(self) -> None:
        """Validate every subscription not yet `Succeeded`, now and then every `validation_retry_s`."""
        while True:
            waiting = [r for r in self._registry.all() if not r.active]
            await asyncio.gather(*(self.provision(r.topic, r.spec) for r in waiting))
            await asyncio.sleep(self._settings.validation_retry_s)

    @property
    def _session(self) -> aiohttp.ClientSession:
        return self._dispatcher.session
