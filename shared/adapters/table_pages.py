"""Pages: entries added to one partition while a write is in flight share one entity.

The inbox takes one write per webhook delivery. Under a burst (a build pushing a dozen
images, Event Grid redelivering a batch) each answer waiting for a request of its own made
the SDK's pipeline about half the host's CPU per answer; an entity-group transaction cut
the requests but not the CPU (its multipart body costs the SDK about as much per entity:
0.72 ms against 0.14 ms per entry for one entity holding 16). So the entries gathered while
the last write was in flight go out as one entity, a page, in one plain upsert; each caller
returns once the page holding its entry is stored. Nothing waits for company: an entry that
finds no write in flight goes at once, in a page of its own.

A page holds up to `MAX_ENTRIES` entries and `MAX_CHARS` characters of JSON, spread over
properties of at most `CHUNK_CHARS` characters (Table Storage: a string property holds
64 KiB of UTF-16, an entity 1 MiB with every property). Its row key starts with the time its
oldest entry came, so pages list oldest first; `ReceivedAt` holds that time too, for a
filter. The entries are JSON values under string keys; two entries of one key in a page are
one, the later value standing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.adapters.table_keys import ascending_time, compose_key

MAX_ENTRIES = 100
CHUNK_CHARS = 30_000  # 60,000 bytes of UTF-16: under the 64 KiB a string property holds
MAX_CHUNKS = 12  # 720,000 bytes: under the 1 MiB of an entity, with room for the rest
MAX_CHARS = CHUNK_CHARS * MAX_CHUNKS
_BODY = "Entries"  # the first chunk's property; the next ones are Entries1, Entries2, ...


@dataclass(frozen=True)
class Page:
    """One stored page: its row key, when its oldest entry came, and what it holds."""

    key: str
    received_at: datetime
    entries: Mapping[str, Any]


@dataclass(frozen=True)
class Added:
    """The page that holds a caller's entry; `first`: this caller sees to what the page
    holds (exactly one caller per page is told so: the first whose entry it holds and who
    still waits)."""

    page: Page
    first: bool


def _page_entity(partition: str, page: Page, body: str) -> dict[str, Any]:
    """`page` as one Table Storage entity; `body`: its entries as JSON (an object)."""
    entity: dict[str, Any] = {
        "PartitionKey": partition,
        "RowKey": page.key,
        "Kind": "page",
        "Count": len(page.entries),
        "ReceivedAt": stamp(page.received_at),
    }
    for index, start in enumerate(range(0, max(len(body), 1), CHUNK_CHARS)):
        entity[_BODY + (str(index) if index else "")] = body[start : start + CHUNK_CHARS]
    return entity


def page_from_entity(entity: Mapping[str, Any]) -> Page:
    """The page a `PageWriter` stored (KeyError, ValueError when it is not one)."""
    chunks = [str(entity[_BODY])]
    while (name := f"{_BODY}{len(chunks)}") in entity:
        chunks.append(str(entity[name]))
    entries = json.loads("".join(chunks))
    if not isinstance(entries, dict):
        raise ValueError("a page's entries are not an object")
    received_at = datetime.fromisoformat(str(entity["ReceivedAt"]))
    return Page(str(entity["RowKey"]), received_at, entries)


def stamp(moment: datetime) -> str:
    """A page's `ReceivedAt` (text of one width, so that `lt` compares it as time)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _page_key(oldest: datetime) -> str:
    # Oldest first when listed; the random part keeps two instances' pages apart.
    return compose_key(ascending_time(oldest), uuid.uuid4().hex[:16])


@dataclass
class _Entry:
    key: str
    value: Any
    member: str  # `"key":value`, as the page's JSON holds it (encoded once, on adding)
    at: datetime
    done: asyncio.Future[Added] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class PageWriter:
    """Entries added to `partition` of `table`, stored in pages (see the module's doc)."""

    def __init__(self, table: TableClient, partition: str) -> None:
        self._table = table
        self._partition = partition
        self._waiting: list[_Entry] = []
        self._writing: asyncio.Task[None] | None = None

    async def add(self, key: str, value: Any, at: datetime) -> Added:
        """Store `value` under `key` in a page; returns once that page is stored. `at`: when
        the entry came (a page's time is its oldest entry's).
        ValueError: the value alone is larger than a page holds."""
        member = json.dumps(key) + ":" + json.dumps(value, separators=(",", ":"))
        if len(member) + 2 > MAX_CHARS:
            raise ValueError(f"an entry of {len(member)} characters does not fit a page")
        entry = _Entry(key, value, member, at)
        # Its outcome counts as seen even when its caller stopped waiting (no "exception
        # never retrieved" for an entry nobody awaits any more).
        entry.done.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._waiting.append(entry)
        if self._writing is None or self._writing.done():
            self._writing = asyncio.get_running_loop().create_task(self._write_all())
        # Shielded: a caller that stops waiting does not take its neighbours' write with it.
        return await asyncio.shield(entry.done)

    async def close(self) -> None:
        """Stop: entries still waiting fail with CancelledError (their callers are going too)."""
        if self._writing is not None:
            self._writing.cancel()
            await asyncio.gather(self._writing, return_exceptions=True)
        for entry in self._waiting:
            entry.done.cancel()
        self._waiting.clear()

    async def _write_all(self) -> None:
        while self._waiting:
            group = self._next_group()
            try:
                await self._write(group)
            except asyncio.CancelledError:
                for entry in group:
                    entry.done.cancel()
                raise

    def _next_group(self) -> list[_Entry]:
        """The oldest waiting entries that fit one page (at least one)."""
        group: list[_Entry] = []
        keys: set[str] = set()
        size = 2  # the braces around the entries
        for entry in self._waiting:
            full = entry.key not in keys and len(keys) == MAX_ENTRIES
            if group and (full or size + len(entry.member) + 1 > MAX_CHARS):
                break
            group.append(entry)
            keys.add(entry.key)
            size += len(entry.member) + 1  # and its comma
        del self._waiting[: len(group)]
        return group

    async def _write(self, group: list[_Entry]) -> None:
        # The later of two entries of one key is the one that stands.
        latest = {entry.key: entry for entry in group}
        oldest = min(entry.at for entry in group)
        entries = {key: entry.value for key, entry in latest.items()}
        page = Page(_page_key(oldest), oldest, entries)
        body = "{" + ",".join(entry.member for entry in latest.values()) + "}"
        try:
            await self._table.upsert_entity(
                _page_entity(self._partition, page, body), mode=UpdateMode.REPLACE
            )
        except Exception as error:
            # Nothing a caller's value holds makes the service refuse a page (its keys are
            # ours, its size is capped): what failed (the service down, a timeout) failed
            # every entry in it, as it would have failed each one alone.
            for entry in group:
                if not entry.done.done():
                    entry.done.set_exception(error)
            return
        first = True
        for entry in group:
            if not entry.done.done():  # its caller is still waiting
                entry.done.set_result(Added(page, first=first))
                first = False
