"""The request-budget ledger against Azurite: instances racing for one registry's slots never
get the same slot (ETag-conditional writes), and each registry has its own ledger."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest

from devenv.config import LocalEnv
from shared.adapters.table_budget import TableBudgetLedger
from shared.adapters.table_store import RolloutStore
from shared.service.budget import Reservation, reserve, spacing_s
from tests.integration.test_table_store import fresh_store, run

pytestmark = pytest.mark.integration

PER_MINUTE = 6200  # 0.01 s apart: many reservations in little time
REGISTRY = "contoso.azurecr.io"


class CountingLedger(TableBudgetLedger):
    """The table's ledger, counting the writes another instance beat."""

    lost = 0

    async def _write(self, next_free: float, etag: str | None) -> str | None:
        written = await super()._write(next_free, etag)
        if written is None:
            CountingLedger.lost += 1
        return written


def asking(now: Callable[[], float], want: int) -> Callable[[float | None], Reservation | None]:
    return lambda next_free: reserve(
        next_free, now(), per_minute=PER_MINUTE, want=want, horizon_s=3600
    )


def test_instances_racing_for_slots_never_share_one(azurite: LocalEnv) -> None:
    clock = itertools.count(1_000_000.0, 0.001).__next__  # one shared, always-moving clock

    async def scenario() -> list[Reservation]:
        async with fresh_store(azurite) as first:
            name = first.table_name
            others = [
                RolloutStore.from_connection_string(azurite.table_connection_string, name)
                for _ in range(3)
            ]
            try:
                ledgers = [CountingLedger(store._table, REGISTRY) for store in (first, *others)]

                async def instance(ledger: TableBudgetLedger) -> list[Reservation | None]:
                    # One reservation in flight per instance, as RegistryBudget makes them.
                    return [await ledger.advance(asking(clock, want=3)) for _ in range(10)]

                got = await asyncio.gather(*(instance(ledger) for ledger in ledgers))
            finally:
                for store in others:
                    await store.close()
        return [r for per_instance in got for r in per_instance if r is not None]

    CountingLedger.lost = 0
    reservations = run(scenario)
    # The race happened (writes lost to another instance, then decided again on the
    # winner's slots); a reservation that lost too often is refused, never doubled.
    assert CountingLedger.lost > 0
    assert len(reservations) >= 10
    slots = sorted(slot for r in reservations for slot in r.slots)
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert min(gaps) >= spacing_s(PER_MINUTE) - 1e-6, min(gaps)


def test_each_registry_has_its_own_ledger_and_a_new_instance_continues_it(
    azurite: LocalEnv,
) -> None:
    async def scenario() -> tuple[Reservation | None, ...]:
        async with fresh_store(azurite) as store:
            now = 1_000_000.0
            one = await store.budget_ledger(REGISTRY).advance(
                lambda nf: reserve(nf, now, per_minute=62, want=5)
            )
            other = await store.budget_ledger("fabrikam.azurecr.io").advance(
                lambda nf: reserve(nf, now, per_minute=62, want=1)
            )
            # A new instance (no ETag seen) reads where the ledger stands.
            later = await store.budget_ledger(REGISTRY).advance(
                lambda nf: reserve(nf, now, per_minute=62, want=1, horizon_s=60)
            )
            # Booked past the horizon: refused, and nothing written.
            refused = await store.budget_ledger(REGISTRY).advance(
                lambda nf: reserve(nf, now, per_minute=62, want=1, horizon_s=1.0)
            )
            after = await store.budget_ledger(REGISTRY).advance(
                lambda nf: reserve(nf, now, per_minute=62, want=1, horizon_s=60)
            )
            return one, other, later, refused, after

    one, other, later, refused, after = run(scenario)
    assert one == Reservation(1_000_000.0, 5, 1.0)
    assert other == Reservation(1_000_000.0, 1, 1.0)  # another registry: its own slots
    assert later == Reservation(1_000_005.0, 1, 1.0)
    assert refused is None
    assert after == Reservation(1_000_006.0, 1, 1.0)
