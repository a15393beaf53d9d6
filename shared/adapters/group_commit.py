"""Group commit: upserts into one partition that arrive while a write is in flight go out
together, in one entity-group transaction, as soon as that write ends.

The inbox takes one write per webhook delivery, and under a burst (a build pushing a
dozen images, Event Grid redelivering a batch) each answer waited for a request of its
own: about half of the host's CPU per answer was the SDK's pipeline for that request.
Gathered, the answers of a burst share one request per round trip, and each answer still
returns only once its own entity is stored. Nothing waits for company: a write that finds
none in flight goes at once, as a plain upsert.

A transaction is all or nothing (Table Storage: one partition, at most 100 operations,
4 MiB). When the service refuses one (an entity it will not take fails every other one
with it; so does a body it finds too large), each row goes again on its own, so only the
refused one's callers see the error. Any other failure (the service down, a timeout) is
every caller's: each would have met it alone too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient

# Table Storage's limits for one transaction: 100 operations and a 4 MiB body. The body
# holds each entity's JSON and the multipart framing around it: a quarter is left for it.
MAX_OPERATIONS = 100
MAX_BYTES = 3 * 1024 * 1024

Entity = Mapping[str, Any]


@dataclass
class _Write:
    entity: Entity
    size: int
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def settle(self, error: BaseException | None = None) -> None:
        if self.done.done():
            return  # its caller stopped waiting (cancelled): nobody to tell
        if error is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(error)


def _size(entity: Entity) -> int:
    return sum(len(str(key)) + len(str(value)) for key, value in entity.items())


class PartitionWriter:
    """Upserts (replace mode) into one partition of `table`, committed in groups."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._waiting: list[_Write] = []
        self._writing: asyncio.Task[None] | None = None

    async def upsert(self, entity: Entity) -> None:
        """Store `entity` (replacing one with its keys); returns once it is stored."""
        write = _Write(entity, _size(entity))
        # Its outcome counts as seen even when its caller stopped waiting (no "exception
        # never retrieved" for a write nobody awaits any more).
        write.done.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._waiting.append(write)
        if self._writing is None or self._writing.done():
            self._writing = asyncio.get_running_loop().create_task(self._write_all())
        # Shielded: a caller that stops waiting does not take its neighbours' write with it.
        await asyncio.shield(write.done)

    async def close(self) -> None:
        """Stop: writes still waiting fail with CancelledError (their callers are going too)."""
        if self._writing is not None:
            self._writing.cancel()
            await asyncio.gather(self._writing, return_exceptions=True)
        for write in self._waiting:
            write.done.cancel()
        self._waiting.clear()

    async def _write_all(self) -> None:
        while self._waiting:
            group = self._next_group()
            try:
                await self._commit(group)
            except asyncio.CancelledError:
                for write in group:
                    write.done.cancel()
                raise

    def _next_group(self) -> list[_Write]:
        """The oldest waiting writes that fit one transaction (at least one)."""
        group: list[_Write] = []
        keys: set[str] = set()
        size = 0
        for write in self._waiting:
            key = str(write.entity["RowKey"])
            full = key not in keys and len(keys) == MAX_OPERATIONS
            if group and (full or size + write.size > MAX_BYTES):
                break
            group.append(write)
            keys.add(key)
            size += write.size
        del self._waiting[: len(group)]
        return group

    async def _commit(self, group: list[_Write]) -> None:
        # One operation per row: a transaction may not touch a row twice, and the later of
        # two writes of one row is the one that stands (both callers are answered by it).
        latest = {str(write.entity["RowKey"]): write.entity for write in group}
        try:
            if len(latest) == 1:
                (entity,) = latest.values()
                await self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
            else:
                await self._table.submit_transaction(
                    [("upsert", entity, {"mode": UpdateMode.REPLACE}) for entity in latest.values()]
                )
        except TableTransactionError:
            await asyncio.gather(
                *(self._alone(key, entity, group) for key, entity in latest.items())
            )
            return
        except Exception as error:
            for write in group:
                write.settle(error)
            return
        for write in group:
            write.settle()

    async def _alone(self, key: str, entity: Entity, group: list[_Write]) -> None:
        """`entity` written on its own; its outcome is that of every write of its row."""
        error: Exception | None = None
        try:
            await self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except Exception as failed:
            error = failed
        for write in group:
            if str(write.entity["RowKey"]) == key:
                write.settle(error)
