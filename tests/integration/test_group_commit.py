"""Group commit into one partition, against Azurite through the real azure-data-tables
client: the upserts of a burst share requests, each caller returns once its own entity is
stored, and an entity the service refuses fails only its own caller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline import PipelineRequest
from azure.data.tables.aio import TableClient

from devenv.config import LocalEnv
from shared.adapters.group_commit import PartitionWriter
from tests.integration.test_table_store import unique_table

pytestmark = pytest.mark.integration

PARTITION = "inbox"


@asynccontextmanager
async def counted_table(env: LocalEnv) -> AsyncIterator[tuple[TableClient, list[str]]]:
    """A table of its own, and the method and path of every request its client sends."""
    sent: list[str] = []

    def count(request: PipelineRequest[Any]) -> None:
        sent.append(f"{request.http_request.method} {request.http_request.url}")

    async with TableClient.from_connection_string(
        env.table_connection_string, table_name=unique_table(), raw_request_hook=count
    ) as table:
        await table.create_table()
        sent.clear()
        try:
            yield table, sent
        finally:
            await table.delete_table()


async def stored(table: TableClient) -> dict[str, str]:
    rows = table.query_entities("PartitionKey eq @pk", parameters={"pk": PARTITION})
    return {str(row["RowKey"]): str(row["Body"]) async for row in rows}


def notice(key: str, body: str) -> dict[str, str]:
    return {"PartitionKey": PARTITION, "RowKey": key, "Body": body}


def test_a_burst_of_upserts_shares_its_requests_and_every_one_is_stored(
    azurite: LocalEnv,
) -> None:
    async def scenario() -> tuple[list[str], dict[str, str], list[str], dict[str, str]]:
        async with counted_table(azurite) as (table, sent):
            writer = PartitionWriter(table)
            burst = [notice(f"n{i:03d}", f"push {i}") for i in range(40)]
            await asyncio.gather(*(writer.upsert(entity) for entity in burst))
            during_burst, after_burst = list(sent), await stored(table)
            sent.clear()
            await writer.upsert(notice("lone", "one push"))  # nothing in flight: at once
            alone = list(sent)
            await writer.close()
            return during_burst, after_burst, alone, await stored(table)

    during_burst, after_burst, alone, last = asyncio.run(scenario())
    assert after_burst == {f"n{i:03d}": f"push {i}" for i in range(40)}
    # Forty answers, at most two requests: one for the first, one for the rest.
    assert 1 <= len(during_burst) <= 2, during_burst
    assert any(request.startswith("POST ") and "$batch" in request for request in during_burst)
    assert len(alone) == 1 and alone[0].startswith("PUT "), alone  # a plain upsert
    assert last["lone"] == "one push"


def test_two_writes_of_one_row_in_a_group_both_return_and_the_later_stands(
    azurite: LocalEnv,
) -> None:
    async def scenario() -> dict[str, str]:
        async with counted_table(azurite) as (table, _):
            writer = PartitionWriter(table)
            await asyncio.gather(
                writer.upsert(notice("a", "first")),
                writer.upsert(notice("b", "other")),
                writer.upsert(notice("a", "second")),
            )
            await writer.close()
            return await stored(table)

    # A transaction may not touch a row twice: one operation, the later content.
    assert asyncio.run(scenario()) == {"a": "second", "b": "other"}


def test_an_entity_the_service_refuses_fails_only_its_own_caller(azurite: LocalEnv) -> None:
    async def scenario() -> tuple[list[BaseException | None], dict[str, str]]:
        async with counted_table(azurite) as (table, _):
            writer = PartitionWriter(table)
            # Table Storage refuses '#' in a key, and with it the whole transaction; n1 is
            # written twice in the group: on its own too, the later content stands.
            writes = [("n1", "first"), ("n2", "b"), ("bad#key", "x"), ("n3", "c"), ("n1", "last")]
            outcomes = await asyncio.gather(
                *(writer.upsert(notice(key, body)) for key, body in writes),
                return_exceptions=True,
            )
            await writer.close()
            return list(outcomes), await stored(table)

    outcomes, rows = asyncio.run(scenario())
    assert [o is None for o in outcomes] == [True, True, False, True, True], outcomes
    assert isinstance(outcomes[2], HttpResponseError)
    assert rows == {"n1": "last", "n2": "b", "n3": "c"}
