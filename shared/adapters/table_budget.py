"""A registry's request-budget ledger in Table Storage: one entity every instance advances.

The entity (`budget` / `<registry>`) holds `NextFree`, the epoch second of the
registry's next free request slot. Every reservation is a write conditional on
the ETag the instance last saw, so two instances never hand out the same slot:
the loser re-reads and decides again on the winner's `NextFree`. An instance
remembers the ETag it wrote, so while it alone is probing a reservation costs
one round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.adapters.table_keys import compose_key
from shared.errors import TransientError
from shared.service.budget import Reservation

BUDGET_PARTITION = "budget"
# Each conflict means another instance reserved slots meanwhile; past this many in a row
# the registry is busy enough that this request can wait for a later step.
_ATTEMPTS = 8


class TableBudgetLedger:
    """The ledger of `registry`'s request slots, shared through `table`."""

    def __init__(self, table: TableClient, registry: str) -> None:
        self._table = table
        self._key = compose_key(registry)
        self._registry = registry
        self._seen: tuple[float | None, str | None] | None = None  # (NextFree, ETag)

    async def advance(
        self, decide: Callable[[float | None], Reservation | None]
    ) -> Reservation | None:
        try:
            for _ in range(_ATTEMPTS):
                next_free, etag = self._seen if self._seen is not None else await self._read()
                reservation = decide(next_free)
                if reservation is None:
                    self._seen = None  # the next reservation reads what others wrote
                    return None
                written = await self._write(reservation.next_free, etag)
                if written is not None:
                    self._seen = (reservation.next_free, written)
                    return reservation
                self._seen = None
            return None
        except AzureError as error:
            self._seen = None
            raise TransientError(
                f"reserving request slots of registry {self._registry!r}: {error}"
            ) from error

    async def _read(self) -> tuple[float | None, str | None]:
        try:
            entity = await self._table.get_entity(BUDGET_PARTITION, self._key)
        except ResourceNotFoundError:
            return None, None
        return float(entity["NextFree"]), str(entity.metadata["etag"])

    async def _write(self, next_free: float, etag: str | None) -> str | None:
        """The new ETag, or None when another instance wrote first."""
        entity: dict[str, Any] = {
            "PartitionKey": BUDGET_PARTITION,
            "RowKey": self._key,
            "Registry": self._registry,
            "NextFree": next_free,
        }
        try:
            if etag is None:
                answer = await self._table.create_entity(entity)
            else:
                answer = await self._table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return None
        return str(answer["etag"])
