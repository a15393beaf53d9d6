"""Pages in one partition, against Azurite through the real azure-data-tables client: the
entries of a burst share one entity and one request, each caller returns once the page
holding its entry is stored, a page larger than a string property holds is split over
several, and the inbox reads the notices an earlier version kept one per entity."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.core.pipeline import PipelineRequest
from azure.data.tables.aio import TableClient

from devenv.config import LocalEnv
from shared.adapters.table_pages import (
    CHUNK_CHARS,
    MAX_ENTRIES,
    Added,
    PageWriter,
    page_from_entity,
)
from tests.integration.test_table_store import fresh_store, unique_table

pytestmark = pytest.mark.integration

PARTITION = "inbox"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


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


async def in_flight(sent: list[str]) -> None:
    """Returns once the client has sent a request (the first page is being written)."""
    deadline = asyncio.get_running_loop().time() + 10
    while not sent:
        assert asyncio.get_running_loop().time() < deadline, "no request was sent"
        await asyncio.sleep(0.001)


async def stored(table: TableClient) -> dict[str, dict[str, Any]]:
    """Page key → what the page holds, as read back from the table."""
    rows = table.query_entities("PartitionKey eq @pk", parameters={"pk": PARTITION})
    pages = [page_from_entity(row) async for row in rows]
    return {page.key: dict(page.entries) for page in pages}


def test_a_burst_shares_one_page_and_every_caller_is_told_the_page_that_holds_it(
    azurite: LocalEnv,
) -> None:
    async def scenario() -> tuple[
        list[Added], list[str], dict[str, dict[str, Any]], Added, list[str]
    ]:
        async with counted_table(azurite) as (table, sent):
            writer = PageWriter(table, PARTITION)
            burst = await asyncio.gather(
                *(writer.add(f"n{i:03d}", {"push": i}, NOW) for i in range(40))
            )
            during_burst, pages = list(sent), await stored(table)
            sent.clear()
            lone = await writer.add("lone", {"push": "one"}, NOW)  # nothing in flight: at once
            alone = list(sent)
            await writer.close()
            return burst, during_burst, pages, lone, alone

    burst, during_burst, pages, lone, alone = asyncio.run(scenario())
    # Forty answers, at most two requests (the first entry alone, the rest together), each
    # a plain upsert of one entity.
    assert 1 <= len(during_burst) <= 2, during_burst
    assert all(request.startswith("PUT ") for request in during_burst), during_burst
    held = {key: entry for page in pages.values() for key, entry in page.items()}
    assert held == {f"n{i:03d}": {"push": i} for i in range(40)}
    for i, added in enumerate(burst):
        assert pages[added.page.key][f"n{i:03d}"] == {"push": i}  # told its own page
        assert dict(added.page.entries) == pages[added.page.key]
    # Exactly one caller per page sees to it.
    firsts = sorted(added.page.key for added in burst if added.first)
    assert firsts == sorted({added.page.key for added in burst})
    assert len(alone) == 1 and alone[0].startswith("PUT "), alone
    assert lone.first and dict(lone.page.entries) == {"lone": {"push": "one"}}


def test_two_entries_of_one_key_in_a_page_are_one_and_the_later_stands(
    azurite: LocalEnv,
) -> None:
    async def scenario() -> tuple[list[Added], dict[str, dict[str, Any]]]:
        async with counted_table(azurite) as (table, sent):
            writer = PageWriter(table, PARTITION)
            blocker = asyncio.ensure_future(writer.add("first", {"alone": True}, NOW))
            await in_flight(sent)  # the first write is in flight: the rest wait together
            together = await asyncio.gather(
                writer.add("a", {"v": 1}, NOW),
                writer.add("b", {"v": 2}, NOW),
                writer.add("a", {"v": 3}, NOW),
            )
            await blocker
            await writer.close()
            return list(together), await stored(table)

    together, pages = asyncio.run(scenario())
    assert len({added.page.key for added in together}) == 1
    assert pages[together[0].page.key] == {"a": {"v": 3}, "b": {"v": 2}}
    assert [added.first for added in together] == [True, False, False]


def test_a_page_larger_than_a_property_holds_is_split_and_a_full_page_starts_another(
    azurite: LocalEnv,
) -> None:
    """Azurite, like Table Storage, refuses a string property over 64 KiB: the pages here
    are only stored because their text is split over several properties."""
    big = "x" * 2_000

    async def scenario() -> tuple[dict[str, dict[str, Any]], int, int]:
        async with counted_table(azurite) as (table, sent):
            writer = PageWriter(table, PARTITION)
            first = asyncio.ensure_future(writer.add("k0000", big, NOW))
            await in_flight(sent)
            rest = await asyncio.gather(
                *(writer.add(f"k{i:04d}", big, NOW) for i in range(1, 1 + MAX_ENTRIES + 30))
            )
            await first
            await writer.close()
            pages = await stored(table)
            widest = max(len(json.dumps(entries)) for entries in pages.values())
            return pages, widest, len({added.page.key for added in rest})

    pages, widest, pages_of_rest = asyncio.run(scenario())
    held = {key: entry for entries in pages.values() for key, entry in entries.items()}
    assert held == {f"k{i:04d}": big for i in range(1 + MAX_ENTRIES + 30)}
    assert pages_of_rest == 2  # 130 entries: a full page of 100, then the other 30
    assert max(len(entries) for entries in pages.values()) == MAX_ENTRIES
    assert widest > 3 * CHUNK_CHARS  # a page of several properties


def test_a_page_the_service_fails_fails_every_caller_it_holds(azurite: LocalEnv) -> None:
    async def scenario() -> list[BaseException | Added]:
        async with TableClient.from_connection_string(
            azurite.table_connection_string, table_name=unique_table()
        ) as missing:  # never created
            writer = PageWriter(missing, PARTITION)
            outcomes = await asyncio.gather(
                *(writer.add(f"n{i}", {"push": i}, NOW) for i in range(5)),
                return_exceptions=True,
            )
            await writer.close()
            return list(outcomes)

    outcomes = asyncio.run(scenario())
    assert all(isinstance(outcome, ResourceNotFoundError) for outcome in outcomes), outcomes


def test_the_inbox_reads_a_notice_an_earlier_version_kept_on_its_own(azurite: LocalEnv) -> None:
    """An update finds the inbox as the version before left it: one entity per notice."""
    notice = {"registry": "r.azurecr.io", "repository": "m", "digest": "sha256:" + "a" * 64}

    async def scenario() -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
        async with fresh_store(azurite) as store:
            table = TableClient.from_connection_string(
                azurite.table_connection_string, table_name=store.table_name
            )
            async with table:
                await table.upsert_entity(
                    {
                        "PartitionKey": PARTITION,
                        "RowKey": "old-notice",
                        "Kind": "notice",
                        "Notice": json.dumps(notice),
                        "ReceivedAt": (NOW - timedelta(minutes=1)).isoformat(
                            timespec="microseconds"
                        ),
                    }
                )
            await store.put_notice("new-notice", notice, NOW)
            pages = await store.notice_pages(received_before=NOW + timedelta(1), limit=10)
            found = [(page.key, dict(page.entries)) for page in pages]
            for page in pages:
                await store.delete_notice_page(page.key)
            left = await store.notice_pages(received_before=NOW + timedelta(1), limit=10)
            return found, [page.key for page in left]

    found, left = asyncio.run(scenario())
    pages = dict(found)
    assert pages.pop("old-notice") == {"old-notice": notice}  # a page of one, its own key
    assert list(pages.values()) == [{"new-notice": notice}]
    assert left == []
