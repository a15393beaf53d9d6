"""Listing rows against Azurite: every listing one partition query, equal to the rollouts it
lists after every write, and put back after a write that died or lost a race."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from devenv.config import LocalEnv
from shared.adapters.table_keys import compose_key
from shared.adapters.table_listing import MARKER_PARTITION, listing_row_key
from shared.adapters.table_store import (
    RolloutAlreadyExistsError,
    RolloutStore,
    StaleRecordError,
    StoredRollout,
)
from tests.integration.listing_check import listings_disagree
from tests.integration.test_table_store import T0, fresh_store, rollout, run, with_tag

pytestmark = pytest.mark.integration

# Past the grace the tick gives a marker before it takes its writer for dead.
AFTER_GRACE = timedelta(minutes=6)


class WriterDied(BaseException):
    """The process stopping mid-write: nothing in the store catches it."""


class DiesBeforeTheRollout:
    """The table client of a writer that dies right before it writes the rollout entity
    (after its marker and listing rows): every other call goes through."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    async def create_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any:
        if entity["RowKey"] == "doc":
            raise WriterDied
        return await self._table.create_entity(entity, **kwargs)

    async def update_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any:
        if entity["RowKey"] == "doc":
            raise WriterDied
        return await self._table.update_entity(entity, **kwargs)


def dying(store: RolloutStore) -> RolloutStore:
    return RolloutStore(DiesBeforeTheRollout(store._table))  # type: ignore[arg-type]


async def markers(store: RolloutStore) -> list[str]:
    return [
        str(e["RowKey"])
        async for e in store._table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": MARKER_PARTITION}
        )
    ]


async def ids(store: RolloutStore, **query: Any) -> list[str]:
    page, _ = await store.list(limit=1000, **query)
    return [rec.id for rec in page]


def later(seconds: int) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_every_listing_is_one_query_of_copies_equal_to_the_rollouts(azurite: LocalEnv) -> None:
    async def scenario() -> None:
        async with fresh_store(azurite) as store:
            for n, (repository, state) in enumerate(
                [("models/a", "replicating"), ("models/b", "live"), ("models/a", "live")]
            ):
                await store.insert(
                    rollout(
                        f"r{n}",
                        repository=repository,
                        state=state,
                        created_at=T0 + timedelta(minutes=n),
                    )
                )
            assert await listings_disagree(store) == []
            # Every kind of write: a tag, a state change, a change of due time, and back.
            r0 = await store.get("r0")
            assert r0 is not None
            r0 = await store.replace(with_tag(r0, "v1"))
            r0 = await store.replace(dataclasses.replace(r0, state="deploying", next_due_at=T0))
            assert await listings_disagree(store) == []
            assert await ids(store, state="deploying") == ["r0"]
            assert await ids(store, state="replicating") == []
            r0 = await store.replace(dataclasses.replace(r0, state="live", active=False))
            assert await ids(store, state="live") == ["r2", "r1", "r0"]
            assert await ids(store, repository="models/a", state="live") == ["r2", "r0"]
            assert await ids(store, repository="models/b", state="deploying") == []
            (listed,) = (await store.list(repository="models/a", state="live", limit=1))[0]
            assert listed.id == "r2"
            assert await listings_disagree(store) == []
            assert await markers(store) == []

    run(scenario)


def test_a_page_is_read_from_the_rows_alone(azurite: LocalEnv) -> None:
    """The copies answer: a listing reads no rollout entity (proved by removing them)."""

    async def scenario() -> None:
        async with fresh_store(azurite) as store:
            for n in range(3):
                await store.insert(rollout(f"r{n}", created_at=T0 + timedelta(minutes=n)))
            for n in range(3):
                await store._table.delete_entity(compose_key("rollout", f"r{n}"), "doc")
            page, continuation = await store.list(limit=2)
            assert [r.id for r in page] == ["r2", "r1"] and continuation is not None
            rest, end = await store.list(limit=2, continuation=continuation)
            assert [r.id for r in rest] == ["r0"] and end is None
            assert page[0].record == {"id": "r2", "tags": []}

    run(scenario)


def test_a_writer_that_dies_before_the_rollout_leaves_rows_the_tick_puts_back(
    azurite: LocalEnv,
) -> None:
    async def scenario() -> None:
        async with fresh_store(azurite) as store:
            await store.insert(rollout("r1", created_at=T0))
            read = await store.get("r1")
            assert read is not None
            changed = dataclasses.replace(with_tag(read, "never"), state="failed", active=False)
            with pytest.raises(WriterDied):
                await dying(store).replace(changed)
            with pytest.raises(WriterDied):
                await dying(store).insert(rollout("r2", created_at=T0 + timedelta(minutes=1)))
            # The dead replace shows in the listings until its repair (its rows go first);
            # the dead insert never listed anything (its rows go after the rollout).
            assert await ids(store, state="failed") == ["r1"]
            assert await ids(store) == ["r1"]
            assert len(await markers(store)) == 2
            assert await store.repair_listings(later(0)) == 0  # within the grace: in flight
            assert await store.repair_listings(later(0) + AFTER_GRACE) == 2
            assert await ids(store, state="failed") == []
            assert await ids(store) == ["r1"]
            assert await listings_disagree(store) == []
            assert await markers(store) == []
            stored = await store.get("r1")
            assert stored is not None and stored.record["tags"] == []

    run(scenario)


def test_an_insert_that_dies_before_its_rows_is_listed_by_the_repair(azurite: LocalEnv) -> None:
    class DiesBeforeTheRows(DiesBeforeTheRollout):
        async def create_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any:
            if entity["Kind"] == "listing":
                raise WriterDied
            return await self._table.create_entity(entity, **kwargs)

    async def scenario() -> None:
        async with fresh_store(azurite) as store:
            with pytest.raises(WriterDied):
                await RolloutStore(DiesBeforeTheRows(store._table)).insert(  # type: ignore[arg-type]
                    rollout("r1", created_at=T0)
                )
            assert await store.get("r1") is not None
            assert await ids(store) == []
            assert await store.repair_listings(later(0) + AFTER_GRACE) == 1
            assert await ids(store) == ["r1"]
            assert await ids(store, repository="models/llm", state="replicating") == ["r1"]
            assert await listings_disagree(store) == []
            assert await markers(store) == []

    run(scenario)


def test_a_writer_that_dies_after_the_rollout_leaves_its_old_state_rows_to_the_tick(
    azurite: LocalEnv,
) -> None:
    """Rows of the state left are dropped after the rollout is written; a death in between
    leaves them listed in both states until the tick's repair."""

    async def scenario() -> None:
        async with fresh_store(azurite) as store:
            await store.insert(rollout("r1", created_at=T0))
            read = await store.get("r1")
            assert read is not None

            class DiesAfterTheRollout(DiesBeforeTheRollout):
                async def update_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any:
                    written = await self._table.update_entity(entity, **kwargs)
                    if entity["RowKey"] == "doc":
                        raise WriterDied
                    return written

            with pytest.raises(WriterDied):
                await RolloutStore(DiesAfterTheRollout(store._table)).replace(  # type: ignore[arg-type]
                    dataclasses.replace(read, state="deploying")
                )
            assert await ids(store, state="replicating") == ["r1"]
            assert await ids(store, state="deploying") == ["r1"]
            assert await store.repair_listings(later(0) + AFTER_GRACE) == 1
            assert await ids(store, state="replicating") == []
            assert await listings_disagree(store) == []

    run(scenario)


def test_a_losing_writer_puts_the_winners_rows_back(azurite: LocalEnv) -> None:
    async def scenario() -> None:
        async with fresh_store(azurite) as store:
            await store.insert(rollout("r1", created_at=T0))
            first, second = await store.get("r1"), await store.get("r1")
            assert first is not None and second is not None
            winner = dataclasses.replace(with_tag(first, "won"), state="deploying")
            loser = dataclasses.replace(with_tag(second, "lost"), state="failed", active=False)
            await store.replace(winner)
            with pytest.raises(StaleRecordError):
                await store.replace(loser)
            assert await ids(store, state="failed") == []
            (listed,) = (await store.list(state="deploying"))[0]
            assert listed.record["tags"] == ["won"]
            assert await listings_disagree(store) == []
            assert await markers(store) == []

    run(scenario)


def test_a_losing_insert_at_another_time_leaves_no_row(azurite: LocalEnv) -> None:
    """Two deliveries of one push record it at once, each with its own creation time (the
    rows' key): the loser's rows go, whatever their key."""

    async def scenario() -> None:
        async with fresh_store(azurite) as store:
            await store.insert(rollout("r1", created_at=T0))
            with pytest.raises(RolloutAlreadyExistsError):
                await store.insert(rollout("r1", created_at=T0 + timedelta(seconds=1)))
            assert await ids(store) == ["r1"]
            assert await ids(store, state="replicating") == ["r1"]
            assert await listings_disagree(store) == []
            assert await markers(store) == []

    run(scenario)


def test_the_repair_of_a_dead_write_keeps_what_a_later_write_listed(azurite: LocalEnv) -> None:
    """The dead write and the next one both wrote version 2 of the rollout; only the dead
    one's rows are undone."""

    async def scenario() -> None:
        async with fresh_store(azurite) as store:
            await store.insert(rollout("r1", created_at=T0))
            read = await store.get("r1")
            assert read is not None
            with pytest.raises(WriterDied):
                await dying(store).replace(dataclasses.replace(read, state="failed"))
            await store.replace(dataclasses.replace(with_tag(read, "next"), state="deploying"))
            assert await ids(store, state="failed") == ["r1"]
            assert await store.repair_listings(later(0) + AFTER_GRACE) == 1
            assert await ids(store, state="failed") == []
            (listed,) = (await store.list(state="deploying"))[0]
            assert listed.record["tags"] == ["next"]
            assert await listings_disagree(store) == []

    run(scenario)


def test_rows_of_an_earlier_version_are_listed_through_their_rollout(azurite: LocalEnv) -> None:
    """Stores written before the rows held copies: an id-only row is read through."""

    async def scenario() -> None:
        async with fresh_store(azurite) as store:
            await store.insert(rollout("r1", created_at=T0))
            row_key = listing_row_key(T0, "r1")
            await store._table.upsert_entity(
                {"PartitionKey": "created", "RowKey": row_key, "Id": "r1", "CreatedAt": "x"},
                mode=UpdateMode.REPLACE,
            )
            (listed,) = (await store.list())[0]
            assert isinstance(listed, StoredRollout) and listed.id == "r1"
            assert listed.record == {"id": "r1", "tags": []}

    run(scenario)


def test_a_page_hands_out_the_document_its_writer_rendered(azurite: LocalEnv) -> None:
    """The writer renders the listed document once; a page decodes it and nothing else,
    and a later write renders it again."""

    async def scenario() -> None:
        async with fresh_store(azurite) as store:
            shown = {"id": "r1", "state": "replicating", "regions": [{"region": "eastus"}]}
            await store.insert(dataclasses.replace(rollout("r1"), listing=shown))
            (listed,) = (await store.list())[0]
            assert listed.listing == shown and listed.record == {}
            stored = await store.get("r1")
            assert stored is not None and stored.record == {"id": "r1", "tags": []}
            moved = {**shown, "state": "live"}
            await store.replace(dataclasses.replace(stored, state="live", listing=moved))
            (listed,) = (await store.list(state="live"))[0]
            assert listed.listing == moved
            assert await ids(store, state="replicating") == []

    run(scenario)
