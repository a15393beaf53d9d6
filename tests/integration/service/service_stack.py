"""The running stand-ins one test module shares, and Services built against them per scenario.

Each scenario gets its own table, so a tick only ever sees that test's rollouts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.credentials import AccessToken

from devenv.config import LocalEnv
from devenv.local_settings import app_settings
from devenv.registries import RegistryControl
from devenv.tls import TlsFiles
from shared.config import load_config
from shared.domain.serialization import rollout_from_record, rollout_to_document
from shared.domain.targets import match_target
from shared.service.runtime import Services, build_services
from tests.integration.listing_check import listings_disagree
from tests.integration.service.driving import poll_until
from tests.support.cloudevents_receiver import EventReceiver


def _document(record: dict[str, Any]) -> dict[str, Any]:
    return rollout_to_document(rollout_from_record(record))


async def listings_settle(services: Services) -> None:
    """After a scenario, whatever it did: every listing equals the rollouts it lists, and
    no write left a marker. Follow-ups may still be writing (polled, with a deadline); a
    scenario that stopped them mid-write (a process dying) leaves markers, which the tick
    repairs five minutes later: done here as the tick would, then checked the same way."""
    store = services.rollouts.store

    async def problems() -> list[str]:
        dead = [m async for m in store._table.query_entities("PartitionKey eq 'relist'")]
        disagree = await listings_disagree(store, render=_document)
        return [*disagree, *(f"marker {m['RowKey']}" for m in dead)]

    try:
        await poll_until(problems, lambda found: not found, what="listings", timeout=5)
    except AssertionError:
        await services.rollouts.repair_listings(datetime.now(UTC) + timedelta(minutes=6))
        assert await problems() == [], "listings disagree with the rollouts after the repair"


class FixedTokenCredential:
    """The one stand-in: there is no local Entra ID, and the ARM emulator accepts any bearer."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("local-test-token", int(time.time()) + 3600)


class ShiftedClock:
    """Real time plus an offset the test moves forward: for tests about timeouts only."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


# Look at deployments and replicas again within tenths of a second: the stand-ins are fast.
FAST_TIMING = {
    "GEOROLLOUT_DEPLOY_POLL_SECONDS": "0.2",
    "GEOROLLOUT_PROBE_BACKOFF_INITIAL_SECONDS": "0.3",
    "GEOROLLOUT_PROBE_BACKOFF_MAX_SECONDS": "2",
}


def new_table_name() -> str:
    return "svc" + uuid.uuid4().hex[:16]


@dataclass
class ServiceStack:
    """Registries, ARM emulator, Event Grid (with a recording subscriber) and Azurite, running."""

    env: LocalEnv
    tls: TlsFiles
    registries: RegistryControl
    receiver: EventReceiver

    @staticmethod
    def endpoint_for(services: Services, repository: str, tag: str = "v1") -> str:
        """The endpoint the configured rules give `repository:tag`."""
        target = match_target(services.rules, repository, tag)
        assert target is not None, f"no rule matches {repository}:{tag}"
        return target.endpoint

    def settings(self, table: str, overrides: dict[str, str]) -> dict[str, str]:
        return (
            app_settings(self.env, self.tls)
            | FAST_TIMING
            | {"GEOROLLOUT_TABLE_NAME": table}
            | overrides
        )

    @asynccontextmanager
    async def services(
        self, *, table: str | None = None, **overrides: str
    ) -> AsyncIterator[Services]:
        """Services on `table` (a fresh one by default) with settings `overrides`; closed after."""
        config = load_config(self.settings(table or new_table_name(), overrides))
        services = build_services(config, credential=FixedTokenCredential())
        try:
            await services.ensure_table()
            yield services
            await listings_settle(services)
        finally:
            await services.close()
