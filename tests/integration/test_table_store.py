"""RolloutStore against Azurite through the real azure-data-tables client (ETags, indexes, leases)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from devenv.config import LocalEnv
from devenv.ports import free_port
from devenv.tls import TlsFiles
from shared.adapters.table_keys import ascending_time, compose_key
from shared.adapters.table_listing import listing_partitions
from shared.adapters.table_store import (
    InvalidContinuationError,
    RolloutAlreadyExistsError,
    RolloutNotFoundError,
    RolloutStore,
    StaleRecordError,
    StoredRollout,
    StoreUnavailableError,
    UnstorableRecordError,
)
from tests.support.sockets import open_connections

pytestmark = pytest.mark.integration

T = TypeVar("T")
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DIGEST = "sha256:" + "ab" * 32


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())  # type: ignore[arg-type]


def unique_table() -> str:
    return "t" + uuid.uuid4().hex[:24]


@asynccontextmanager
async def fresh_store(env: LocalEnv) -> AsyncIterator[RolloutStore]:
    """A store on a table of its own, deleted afterwards."""
    name = unique_table()
    store = RolloutStore.from_connection_string(env.table_connection_string, name)
    await store.ensure_table()
    try:
        yield store
    finally:
        await store.close()
        async with TableClient.from_connection_string(
            env.table_connection_string, table_name=name
        ) as table:
            await table.delete_table()


def rollout(
    rollout_id: str,
    *,
    repository: str = "models/llm",
    created_at: datetime = T0,
    state: str = "replicating",
    next_due_at: datetime | None = None,
    active: bool = True,
    record: dict[str, Any] | None = None,
) -> StoredRollout:
    return StoredRollout(
        id=rollout_id,
        registry="127.0.0.1:5001",
        repository=repository,
        digest=DIGEST,
        state=state,
        created_at=created_at,
        next_due_at=next_due_at,
        active=active,
        record=record if record is not None else {"id": rollout_id, "tags": []},
    )


def with_tag(rec: StoredRollout, tag: str) -> StoredRollout:
    record = {**rec.record, "tags": [*rec.record["tags"], tag]}
    return dataclasses.replace(rec, record=record)


# --- ETag concurrency ------------------------------------------------------------------


def test_azurite_answers_412_to_a_stale_if_match(azurite: LocalEnv) -> None:
    """The SDK itself, no store: the second update with the first read's ETag is refused."""

    async def scenario() -> None:
        name = unique_table()
        async with TableClient.from_connection_string(
            azurite.table_connection_string, table_name=name
        ) as table:
            await table.create_table()
            try:
                await table.create_entity({"PartitionKey": "p", "RowKey": "r", "n": 0})
                read = await table.get_entity("p", "r")
                etag = read.metadata["etag"]
                await table.update_entity(
                    {"PartitionKey": "p", "RowKey": "r", "n": 1},
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
                with pytest.raises(ResourceModifiedError) as raised:
                    await table.update_entity(
                        {"PartitionKey": "p", "RowKey": "r", "n": 2},
                        mode=UpdateMode.REPLACE,
                        etag=etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
                assert raised.value.status_code == 412
                assert (await table.get_entity("p", "r"))["n"] == 1
            finally:
                await table.delete_table()

    run(scenario)


def test_first_replace_wins_and_the_second_writer_is_stale(azurite: LocalEnv) -> None:
    async def scenario() -> None:
        async with fresh_store(azurite) as store:
            inserted = await store.insert(rollout("r1"))
            assert inserted.etag
            first = await store.get("r1")
            second = await store.get("r1")
            assert first is not None and second is not None and first.etag == second.etag
            saved = await store.replace(with_tag(first, "v1"))
            assert saved.etag != first.etag
            with pytest.raises(StaleRecordError) as raised:
                await store.replace(with_tag(second, "v2"))
            assert raised.value.rollout_id == "r1" and raised.value.http_status == 409
            stored = await store.get("r1")
            assert stored is not None and stored.record["tags"] == ["v1"]
            assert stored.etag == saved.etag

    run(scenario)


def test_update_with_retry_applies_both_concurrent_mutations(azurite: LocalEnv) -> None:
    class BothReadFirstStore(RolloutStore):
        """Holds each task's first read until both have read: one of them must lose."""

        def __init__(self, store: RolloutStore) -> None:
            super().__init__(store._table)
            self.barrier = asyncio.Barrier(2)
            self.waited: set[str] = set()

        async def get(self, rollout_id: str, *, with_listing: bool = False) -> StoredRollout | None:
            rec = await super().get(rollout_id, with_listing=with_listing)
            task = asyncio.current_task()
            name = task.get_name() if task else ""
            if name not in self.waited:
                self.waited.add(name)
                await self.barrier.wait()
            return rec

    async def scenario() -> None:
        async with fresh_store(azurite) as plain:
            await plain.insert(rollout("r1"))
            store = BothReadFirstStore(plain)
            calls: list[str] = []

            def adding(tag: str) -> Callable[[StoredRollout], StoredRollout]:
                def mutate(rec: StoredRollout) -> StoredRollout:
                    calls.append(tag)
                    return with_tag(rec, tag)

                return mutate

            results = await asyncio.gather(
                asyncio.create_task(store.update_with_retry("r1", adding("a")), name="a"),
                asyncio.create_task(store.update_with_retry("r1", adding("b")), name="b"),
            )
            stored = await plain.get("r1")
            assert stored is not None
            assert sorted(stored.record["tags"]) == ["a", "b"]
            # Both read the same version; the loser read again and re-applied its mutation.
            assert len(calls) == 3
            assert stored.etag in {r.etag for r in results}

    run(scenario)


def test_update_with_retry_edge_cases(azurite: LocalEnv) -> None:
    async def scenario() -> None:
        async with fresh_store(azurite) as store:
            with pytest.raises(RolloutNotFoundError):
                await store.update_with_retry("missing", lambda rec: rec)
            inserted = await store.insert(rollout("r1"))
            unchanged = await store.update_with_retry("r1", lambda rec: None)
            assert unchanged.etag == inserted.etag
            with pytest.raises(ValueError, match="changed the rollout id"):
                await store.update_with_retry("r1", lambda rec: dataclasses.replace(rec, id="r2"))

    run(scenario)


def test_insert_twice_is_a_conflict(azurite: LocalEnv) -> None:
    async def scenario() -> None:
        async with fresh_store(azurite) as store:
            await store.insert(rollout("r1", record={"id": "r1", "tags": ["first"]}))
            with pytest.raises(RolloutAlreadyExistsError) as raised:
                await store.insert(rollout("r1", record={"id": "r1", "tags": ["second"]}))
            assert raised.value.code == "rollout_exists"
            stored = await store.get("r1")
            assert stored is not None and stored.record["tags"] == ["first"]
            assert await store.get("r2") is None
            page, _ = await store.list()
            assert [r.id for r in page] == ["r1"]

    run(scenario)


# --- listing ------------------------------------------------------------------------------


def test_list_by_repository_newest_first_across_pages(azurite: LocalEnv) -> None:
    async def scenario() -> None:
        async with fresh_store(azurite) as store:
            minutes = [3, 0, 6, 1, 5, 2, 4]  # inserted out of time order on purpose
            for n in minutes:
                repository = "models/a" if n % 3 else "models/b"
                state = "live" if n in (1, 4) else "replicating"
                created = T0 + timedelta(minutes=n)
                await store.insert(
                    rollout(f"r{n}", repository=repository, created_at=created, state=state)
                )
            expected_a = [f"r{n}" for n in sorted(minutes, reverse=True) if n % 3]
            seen: list[str] = []
            continuation: str | None = None
            pages = 0
            while True:
                page, continuation = await store.list(
                    repository="models/a", limit=2, continuation=continuation
                )
                pages += 1
                assert len(page) <= 2
                seen.extend(r.id for r in page)
                if continuation is None:
                    break
            assert seen == expected_a and pages == 2  # r5 r4 | r2 r1 and the end
            everything, end = await store.list(limit=100)
            assert [r.id for r in everything] == [f"r{n}" for n in range(6, -1, -1)]
            assert end is None
            assert everything[0].created_at == T0 + timedelta(minutes=6)
            live, _ = await store.list(state="live")
            assert [r.id for r in live] == ["r4", "r1"]
            live_b, _ = await store.list(repository="models/b", state="live")
            assert live_b == []
            assert (await store.list(repository="models/none"))[0] == []
            _, token = await store.list(repository="models/a", limit=1)
            assert token is not None
            with pytest.raises(InvalidContinuationError):
                await store.list(repository="models/b", continuation=token)
            with pytest.raises(InvalidContinuationError) as raised:
                await store.list(continuation="not a token!")
            assert raised.value.field == "continuation"

    run(scenario)


@pytest.mark.parametrize(
    "repository",
    [
        "models/llm",
        "a\\b#c?d",
        "tab\tnew\nline\x00nul\x7fdel\x9f",
        "100%/pipe|tilde~",
        "ünïcødé/名前",
        "x/" * 300 + "end",  # over the key length: hashed
    ],
)
def test_hostile_repository_names_round_trip(azurite: LocalEnv, repository: str) -> None:
    async def scenario() -> None:
        async with fresh_store(azurite) as store:
            await store.insert(rollout("hostile", repository=repository))
            await store.insert(rollout("neighbour", repository=repository + "x"))
            stored = await store.get("hostile")
            assert stored is not None and stored.repository == repository
            page, _ = await store.list(repository=repository)
            assert [r.id for r in page] == ["hostile"]

    run(scenario)


# --- due work ------------------------------------------------------------------------------


def test_list_due_follows_next_due_at_and_active(azurite: LocalEnv) -> None:
    async def scenario() -> None:
        now = T0 + timedelta(hours=1)
        async with fresh_store(azurite) as store:
            await store.insert(rollout("late", next_due_at=now - timedelta(minutes=5)))
            await store.insert(rollout("exact", next_due_at=now))
            await store.insert(rollout("future", next_due_at=now + timedelta(seconds=1)))
            await store.insert(
                rollout("inactive", next_due_at=now - timedelta(hours=1), active=False)
            )
            await store.insert(rollout("undated"))
            assert [r.id for r in await store.list_due(now, limit=10)] == ["late", "exact"]
            assert [r.id for r in await store.list_due(now, limit=1)] == ["late"]

            # Moved into the future: no longer due. Moved back: due once, not twice.
            late = await store.get("late")
            assert late is not None
            moved = await store.replace(
                dataclasses.replace(late, next_due_at=now + timedelta(minutes=30))
            )
            assert [r.id for r in await store.list_due(now)] == ["exact"]
            back = await store.replace(dataclasses.replace(moved, next_due_at=now))
            assert sorted(r.id for r in await store.list_due(now)) == ["exact", "late"]
            # Finished: inactive rollouts are never due, whatever their time.
            await store.replace(dataclasses.replace(back, active=False, state="live"))
            await store.update_with_retry(
                "exact", lambda rec: dataclasses.replace(rec, next_due_at=None)
            )
            assert [r.id for r in await store.list_due(now + timedelta(days=1))] == ["future"]
            # A rollout that was inactive comes back when it is reactivated.
            await store.update_with_retry(
                "inactive", lambda rec: dataclasses.replace(rec, active=True)
            )
            assert [r.id for r in await store.list_due(now)] == ["inactive"]

    run(scenario)


def test_a_losing_writer_leaves_no_due_entry_behind(azurite: LocalEnv) -> None:
    async def scenario() -> None:
        now = T0 + timedelta(hours=1)
        async with fresh_store(azurite) as store:
            await store.insert(rollout("r1", next_due_at=now + timedelta(hours=1)))
            first = await store.get("r1")
            second = await store.get("r1")
            assert first is not None and second is not None
            await store.replace(dataclasses.replace(first, state="deploying"))
            with pytest.raises(StaleRecordError):
                await store.replace(dataclasses.replace(second, next_due_at=now))
            # The loser's entry (due now) was removed: r1 is not due until its stored time.
            assert await store.list_due(now) == []
            assert [r.id for r in await store.list_due(now + timedelta(hours=1))] == ["r1"]

    run(scenario)


# --- large records ----------------------------------------------------------------------------


def test_large_record_round_trips_across_chunks(azurite: LocalEnv) -> None:
    async def scenario() -> None:
        async with fresh_store(azurite) as store:
            # Incompressible text: ~300 KB stays ~225 KB zlib'd, several 64 KB properties.
            blob = os.urandom(225_000).hex()
            record = {"id": "big", "tags": [], "evidence": blob, "nested": {"ü": [1, 2.5, None]}}
            await store.insert(rollout("big", record=record))
            stored = await store.get("big")
            assert stored is not None and stored.record == record
            smaller = await store.replace(
                dataclasses.replace(stored, record={"id": "big", "tags": []})
            )
            again = await store.get("big")
            assert again is not None and again.record == {"id": "big", "tags": []}
            assert again.etag == smaller.etag

            with pytest.raises(UnstorableRecordError, match="over the"):
                await store.insert(rollout("huge", record={"blob": os.urandom(1_200_000).hex()}))
            assert await store.get("huge") is None
            with pytest.raises(UnstorableRecordError, match="not JSON"):
                await store.insert(rollout("odd", record={"when": T0}))
            with pytest.raises(UnstorableRecordError, match="naive"):
                await store.insert(rollout("naive", created_at=datetime(2025, 1, 1)))
            assert [r.id for r in (await store.list())[0]] == ["big"]

    run(scenario)


# --- endpoint leases ----------------------------------------------------------------------------


def test_endpoint_lease_is_exclusive_until_it_expires(azurite: LocalEnv) -> None:
    async def scenario() -> None:
        ttl = timedelta(minutes=5)
        async with fresh_store(azurite) as store:
            assert await store.acquire_endpoint_lease("eastus", "llm", "rollout-a", T0, ttl)
            assert not await store.acquire_endpoint_lease("eastus", "llm", "rollout-b", T0, ttl)
            # Other endpoints and other regions are separate leases.
            assert await store.acquire_endpoint_lease("westus", "llm", "rollout-b", T0, ttl)
            assert await store.acquire_endpoint_lease("eastus", "llm/x", "rollout-b", T0, ttl)
            # The holder renews; the other still waits.
            later = T0 + timedelta(minutes=4)
            assert await store.acquire_endpoint_lease("eastus", "llm", "rollout-a", later, ttl)
            lease = await store.get_endpoint_lease("eastus", "llm")
            assert lease is not None and lease.holder_rollout_id == "rollout-a"
            assert lease.expires_at == later + ttl
            assert not await store.acquire_endpoint_lease(
                "eastus", "llm", "rollout-b", later + timedelta(minutes=2), ttl
            )
            # Once expired, another rollout takes it, and the old holder cannot release it.
            expired = later + ttl + timedelta(seconds=1)
            assert await store.acquire_endpoint_lease("eastus", "llm", "rollout-b", expired, ttl)
            assert not await store.release_endpoint_lease("eastus", "llm", "rollout-a")
            assert await store.release_endpoint_lease("eastus", "llm", "rollout-b")
            assert await store.get_endpoint_lease("eastus", "llm") is None
            assert not await store.release_endpoint_lease("eastus", "llm", "rollout-b")

    run(scenario)


def test_concurrent_lease_takers_agree_on_one_winner(azurite: LocalEnv) -> None:
    async def scenario() -> None:
        ttl = timedelta(minutes=5)
        async with fresh_store(azurite) as store:
            for round_number in range(3):
                endpoint = f"ep{round_number}"
                won = await asyncio.gather(
                    *(
                        store.acquire_endpoint_lease("eastus", endpoint, f"r{i}", T0, ttl)
                        for i in range(4)
                    )
                )
                assert sum(won) == 1
                lease = await store.get_endpoint_lease("eastus", endpoint)
                assert lease is not None and lease.holder_rollout_id == f"r{won.index(True)}"

    run(scenario)


# --- health -----------------------------------------------------------------------------------


def test_check_health_says_what_is_wrong(azurite: LocalEnv) -> None:
    async def scenario() -> None:
        async with fresh_store(azurite) as store:
            assert await store.check_health() is None
        missing = RolloutStore.from_connection_string(
            azurite.table_connection_string, unique_table()
        )
        async with missing:
            problem = await missing.check_health()
            assert problem is not None and "does not exist" in problem
            with pytest.raises(StoreUnavailableError, match="does not exist"):
                await missing.get("r1")
        nowhere = azurite.table_connection_string.replace(
            str(azurite.azurite_port), str(free_port())
        )
        async with RolloutStore.from_connection_string(nowhere, "rollouts") as unreachable:
            problem = await unreachable.check_health()
            assert problem is not None and "cannot reach" in problem

    run(scenario)


def test_list_due_collects_an_orphaned_due_entry_after_the_grace(azurite: LocalEnv) -> None:
    """A writer that crashed between its due entry and its rollout write leaves an entry no
    rollout points at: skipped at once, deleted once it is older than the grace period."""

    async def scenario() -> None:
        async with fresh_store(azurite) as store:
            await store.insert(rollout("r1", next_due_at=T0 + timedelta(days=365 * 5)))
            orphan_key = compose_key(ascending_time(T0), "r1", "deadbeef")
            async with TableClient.from_connection_string(
                azurite.table_connection_string, table_name=store.table_name
            ) as table:
                await table.create_entity(
                    {"PartitionKey": "due", "RowKey": orphan_key, "Id": "r1", "DueAt": "x"}
                )
                wall_clock = datetime.now(UTC)
                assert await store.list_due(wall_clock) == []
                assert await table.get_entity("due", orphan_key)  # within the grace: kept
                assert await store.list_due(wall_clock + timedelta(minutes=16)) == []
                remaining = [
                    e["RowKey"] async for e in table.query_entities("PartitionKey eq 'due'")
                ]
                assert orphan_key not in remaining and len(remaining) == 1

    run(scenario)


# --- connections ------------------------------------------------------------------------


def test_requests_share_one_pooled_connection_with_a_ca_bundle(
    azurite: LocalEnv, tls_files: TlsFiles
) -> None:
    """With a CA bundle configured (always, locally) azure-core would build a TLS context
    per request and open a new connection for each; the store's pool keeps reusing one."""
    name = unique_table()

    async def scenario() -> int:
        store = RolloutStore.from_connection_string(
            azurite.table_connection_string, name, ca_bundle=str(tls_files.ca_pem)
        )
        async with store:
            await store.ensure_table()
            await store.insert(rollout("r1"))
            for _ in range(30):
                assert await store.get("r1") is not None
            held = open_connections(azurite.azurite_port)
            async with TableClient.from_connection_string(
                azurite.table_connection_string, table_name=name
            ) as table:
                await table.delete_table()
            return held

    # The insert writes its four listing rows side by side: four connections, reused by the
    # 30 reads after it, never one per request.
    assert run(scenario) <= len(listing_partitions("models/llm", "replicating"))
