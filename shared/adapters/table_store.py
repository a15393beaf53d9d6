"""RolloutStore: rollout records in Azure Table Storage, with ETag concurrency.

One table holds the rollout documents, their listing rows (`table_listing`), a queue
of rollouts due for work and per-endpoint leases (docs/table-layout.md explains the
keys). The same
code runs on Azurite (connection string) and Azure (DefaultAzureCredential). Azure
SDK errors are translated here into the exceptions below; none leaks out.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import json
import random
import secrets
import zlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.adapters.http_pool import PooledTransport
from shared.adapters.table_budget import TableBudgetLedger
from shared.adapters.table_keys import (
    ascending_time,
    compose_key,
    split_key,
    time_from_ascending,
)
from shared.adapters.table_listing import (
    MARKER_PARTITION,
    Marker,
    is_copy,
    listing_partition,
    listing_partitions,
    listing_row_key,
    listing_rows,
    repair_action,
    version_of,
)
from shared.adapters.table_pages import Added, Page, PageWriter, page_from_entity, stamp
from shared.errors import (
    ConflictError,
    GeorolloutError,
    InvalidInputError,
    NotFoundError,
    TransientError,
)

# ---------------------------------------------------------------------------------------
# Errors


class StoreError(GeorolloutError):
    """The table store failed in a way that is not the caller's to fix by retrying."""

    code: ClassVar[str] = "store_error"


class StoreUnavailableError(TransientError):
    """The table service could not be reached, refused access or answered 5xx/429."""

    code: ClassVar[str] = "store_unavailable"


class RolloutAlreadyExistsError(ConflictError):
    """`insert` found a rollout with the same id already stored."""

    code: ClassVar[str] = "rollout_exists"

    def __init__(self, rollout_id: str) -> None:
        super().__init__(f"rollout {rollout_id!r} already exists")
        self.rollout_id = rollout_id


class StaleRecordError(ConflictError):
    """The stored rollout changed since it was read (HTTP 412 on If-Match); read it again."""

    code: ClassVar[str] = "stale_record"

    def __init__(self, rollout_id: str) -> None:
        super().__init__(f"rollout {rollout_id!r} was changed by another writer; read it again")
        self.rollout_id = rollout_id


class RolloutNotFoundError(NotFoundError):
    """The rollout an update names is not stored."""

    code: ClassVar[str] = "rollout_not_found"

    def __init__(self, rollout_id: str) -> None:
        super().__init__(f"rollout {rollout_id!r} does not exist")
        self.rollout_id = rollout_id


class InvalidContinuationError(InvalidInputError):
    """A continuation token that this listing did not hand out."""

    def __init__(self, message: str) -> None:
        super().__init__("continuation", message, code="invalid_continuation")


class UnstorableRecordError(StoreError):
    """A record that cannot be stored: not JSON, a naive time, or over the entity size."""

    code: ClassVar[str] = "unstorable_record"


# ---------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class StoredRollout:
    """One rollout as stored: the fields the indexes need, plus the full JSON document.

    `etag` is the version this value was read at (None before the first insert).
    """

    id: str
    registry: str
    repository: str
    digest: str
    state: str
    created_at: datetime
    next_due_at: datetime | None
    active: bool
    record: dict[str, Any]
    etag: str | None = None
    # The document listings show, rendered by the writer (kept beside the record so that
    # a page needs no rendering); read from a listing row, the record is then left empty.
    listing: dict[str, Any] | None = None
    # Store-private: the due-queue entry the stored version points at, so that a replace
    # can drop the entry it supersedes; the write count and the state as read, so that
    # it can tag its listing rows and drop those of the state it leaves.
    # dataclasses.replace carries them along.
    _due_key: str | None = field(default=None, repr=False, compare=False)
    _version: int = field(default=0, repr=False, compare=False)
    _listed_state: str | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ServingRecord:
    """Which deployment georollout last put in front of an endpoint in a region, and for
    which rollout: the only deployment a later rollout may delete as "the previous one"."""

    region: str
    endpoint: str
    deployment: str
    rollout_id: str
    # The registry reported the digest it runs deleted (it keeps running what it pulled).
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class EndpointLease:
    """Who may change an endpoint in a region, until when."""

    region: str
    endpoint: str
    holder_rollout_id: str
    expires_at: datetime


RolloutPage = tuple[list[StoredRollout], str | None]
# The method `RolloutStore.list` shadows the builtin inside the class body.
RolloutList = list[StoredRollout]
Pages = list[Page]
Summaries = list[dict[str, Any]]
ServingRecords = list["ServingRecord"]
RegionEndpoints = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class DueEntry:
    """One entry of the due queue as listed, not yet checked against its rollout."""

    rollout_id: str
    key: str
    written_at: datetime | None  # by the table service's clock


# region -> (samples as stored, ETag)
RegionSamples = dict[str, tuple[list[dict[str, Any]], str]]

# ---------------------------------------------------------------------------------------
# Layout (docs/table-layout.md)

_DOC_ROW = "doc"
_DUE_PARTITION = "due"
# Due entries checked against their rollouts at once (point reads, bounded by _READ_CONCURRENCY).
_DUE_BATCH = 100
_LEASE_PARTITION = "lease"
_SERVING_PARTITION = "serving"
_FAILED_ENDPOINT_PARTITION = "failed-endpoint"
_BUILD_MESSAGE_PARTITION = "build-message"
_INBOX_PARTITION = "inbox"
_REPLICATION_PARTITION = "replication"
_DOC_FORMAT = "json+zlib"
# A binary property holds at most 64 KiB; an entity at most 1 MiB with every property.
_CHUNK_BYTES = 64_000
_MAX_CHUNKS = 15
_READ_CONCURRENCY = 16
# A due entry no rollout points at is kept this long, because its writer may still be
# between writing it and writing the rollout that will point at it.
_ORPHAN_GRACE = timedelta(minutes=15)
# A listing marker older than this belongs to a write that died (a live one deletes its
# marker within a request or two); the tick repairs its rows. Generous, because a repair
# that ran beside a write still in flight would put that write's rows back.
_MARKER_GRACE = timedelta(minutes=5)
MAX_LIST_LIMIT = 1000


def _rollout_partition(rollout_id: str) -> str:
    return compose_key("rollout", rollout_id)


def _endpoint_partition(endpoint: str) -> str:
    return compose_key("endpoint", endpoint)


def _new_due_row(due_at: datetime, rollout_id: str) -> str:
    # The nonce makes every due entry unique to the write that made it, so deleting a
    # superseded entry can never delete one a concurrent writer is about to point at.
    return compose_key(ascending_time(due_at), rollout_id, secrets.token_hex(6))


def _new_intent() -> str:
    """The tag of one write's listing rows (docs/table-layout.md, "Listing rows")."""
    return secrets.token_hex(8)


def _due_time(due_row: str) -> datetime | None:
    try:
        return time_from_ascending(split_key(due_row)[0])
    except ValueError:
        return None


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise UnstorableRecordError(f"naive datetime {moment!r}: times must be aware (UTC)")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _inbox_page(entity: Mapping[str, Any]) -> Page:
    """An inbox entity as a page; one that an earlier version wrote (a notice of its own,
    `Notice`) is a page holding that notice alone, so an update loses none of them."""
    if entity.get("Kind") == "notice":
        key = str(entity["RowKey"])
        notice = json.loads(entity["Notice"])
        return Page(key, _parse_iso(str(entity["ReceivedAt"])), {key: notice})
    return page_from_entity(entity)


def _encode_document(rollout_id: str, record: dict[str, Any]) -> list[bytes]:
    try:
        text = json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise UnstorableRecordError(
            f"rollout {rollout_id!r}: record is not JSON: {error}"
        ) from None
    packed = zlib.compress(text.encode("utf-8"), level=6)
    chunks = [packed[i : i + _CHUNK_BYTES] for i in range(0, len(packed), _CHUNK_BYTES)] or [b""]
    if len(chunks) > _MAX_CHUNKS:
        raise UnstorableRecordError(
            f"rollout {rollout_id!r}: record compresses to {len(packed)} bytes, over the "
            f"{_CHUNK_BYTES * _MAX_CHUNKS} a table entity can hold"
        )
    return chunks


def _listing_chunks(rollout_id: str, listing: dict[str, Any] | None, room: int) -> list[bytes]:
    """The listing document's chunks, or none when it does not fit beside the record (the
    listing then renders the record: slower, same answer)."""
    if listing is None:
        return []
    chunks = _encode_document(rollout_id, listing)
    return chunks if len(chunks) <= room else []


def _decode_listing(entity: dict[str, Any]) -> dict[str, Any] | None:
    count = int(entity.get("ListChunks", 0))
    if not count:
        return None
    packed = b"".join(bytes(entity[f"List{i}"]) for i in range(count))
    listing = json.loads(zlib.decompress(packed).decode("utf-8"))
    return listing if isinstance(listing, dict) else None


def _decode_document(entity: dict[str, Any]) -> dict[str, Any]:
    if entity.get("DocFormat") != _DOC_FORMAT:
        raise StoreError(
            f"entity {entity.get('Id')!r} has unknown DocFormat {entity.get('DocFormat')!r}"
        )
    packed = b"".join(bytes(entity[f"Doc{i}"]) for i in range(int(entity["DocChunks"])))
    document = json.loads(zlib.decompress(packed).decode("utf-8"))
    if not isinstance(document, dict):
        raise StoreError(f"entity {entity.get('Id')!r} holds a document that is not an object")
    return document


def _rollout_entity(
    rec: StoredRollout, due_key: str | None, *, version: int, intent: str
) -> dict[str, Any]:
    chunks = _encode_document(rec.id, rec.record)
    entity: dict[str, Any] = {
        "PartitionKey": _rollout_partition(rec.id),
        "RowKey": _DOC_ROW,
        "Kind": "rollout",
        "Id": rec.id,
        "Registry": rec.registry,
        "Repository": rec.repository,
        "Digest": rec.digest,
        "State": rec.state,
        "CreatedAt": _iso(rec.created_at),
        "Active": rec.active,
        "DocFormat": _DOC_FORMAT,
        "DocChunks": len(chunks),
        "Version": version,
        "Intent": intent,
    }
    if rec.next_due_at is not None:
        entity["NextDueAt"] = _iso(rec.next_due_at)
    if due_key is not None:
        entity["DueKey"] = due_key
    for index, chunk in enumerate(chunks):
        entity[f"Doc{index}"] = chunk
    listing = _listing_chunks(rec.id, rec.listing, room=_MAX_CHUNKS - len(chunks))
    if listing:
        entity["ListChunks"] = len(listing)
        for index, chunk in enumerate(listing):
            entity[f"List{index}"] = chunk
    return entity


def _stored_rollout(
    entity: dict[str, Any],
    etag: str | None,
    *,
    for_listing: bool = False,
    with_listing: bool = False,
) -> StoredRollout:
    """The rollout an entity (or a listing row) holds: its record, and with `with_listing`
    the document its listing rows copy (a step needs only the record: the next write
    renders the document again). `for_listing`: only what a listing shows (the record is
    decoded only when the rendered document is missing)."""
    next_due = entity.get("NextDueAt")
    listing = _decode_listing(entity) if for_listing or with_listing else None
    return StoredRollout(
        id=str(entity["Id"]),
        registry=str(entity["Registry"]),
        repository=str(entity["Repository"]),
        digest=str(entity["Digest"]),
        state=str(entity["State"]),
        created_at=_parse_iso(str(entity["CreatedAt"])),
        next_due_at=_parse_iso(str(next_due)) if next_due else None,
        active=bool(entity["Active"]),
        record={} if for_listing and listing is not None else _decode_document(entity),
        etag=etag,
        listing=listing,
        _due_key=entity.get("DueKey") or None,
        _version=version_of(entity),
        _listed_state=str(entity["State"]),
    )


def _error_code(error: HttpResponseError) -> str:
    code = getattr(error, "error_code", None)
    # The SDK gives a TableErrorCode (a str enum) for known codes, a plain str otherwise.
    return str(getattr(code, "value", code) or "")


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "message", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class RolloutStore:
    """Rollout records in one Azure table (or Azurite), safe under concurrent writers."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._reads = asyncio.Semaphore(_READ_CONCURRENCY)
        # The inbox is one partition: the answers of a burst share its writes (pages).
        self._inbox = PageWriter(table, _INBOX_PARTITION)

    @classmethod
    def from_connection_string(
        cls, connection_string: str, table_name: str, *, ca_bundle: str | None = None
    ) -> RolloutStore:
        """A store on the table `table_name` of the account in `connection_string` (Azurite);
        `ca_bundle`: the only CA trusted for an HTTPS endpoint (else the system's)."""
        return cls(
            TableClient.from_connection_string(
                connection_string, table_name=table_name, transport=PooledTransport(ca_bundle)
            )
        )

    @classmethod
    def from_endpoint(
        cls,
        endpoint: str,
        credential: AsyncTokenCredential,
        table_name: str,
        *,
        ca_bundle: str | None = None,
    ) -> RolloutStore:
        """A store on `endpoint` (https://<account>.table.core.windows.net) with an Entra
        credential, e.g. azure.identity.aio.DefaultAzureCredential."""
        return cls(
            TableClient(
                endpoint,
                table_name=table_name,
                credential=credential,
                transport=PooledTransport(ca_bundle),
            )
        )

    @property
    def table_name(self) -> str:
        return str(self._table.table_name)

    def budget_ledger(self, registry: str) -> TableBudgetLedger:
        """The ledger of `registry`'s request slots, shared with every other instance."""
        return TableBudgetLedger(self._table, registry)

    async def close(self) -> None:
        await self._inbox.close()
        await self._table.close()

    async def __aenter__(self) -> RolloutStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- errors --------------------------------------------------------------------

    @contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        """Turn whatever the SDK raises into this module's errors; `doing` says what failed."""
        try:
            yield
        except GeorolloutError:
            raise
        except ResourceNotFoundError as error:
            if _error_code(error) == "TableNotFound":
                raise StoreUnavailableError(
                    f"{doing}: table {self.table_name!r} does not exist"
                ) from error
            raise StoreError(f"{doing}: not found: {_first_line(error)}") from error
        except ClientAuthenticationError as error:
            raise StoreUnavailableError(f"{doing}: access denied: {_first_line(error)}") from error
        except HttpResponseError as error:
            status = error.status_code or 0
            message = f"{doing}: table service answered {status}: {_first_line(error)}"
            if status in (401, 403, 429) or status >= 500:
                raise StoreUnavailableError(message) from error
            raise StoreError(message) from error
        except AzureError as error:
            raise StoreUnavailableError(f"{doing}: {_first_line(error)}") from error

    async def _quietly(self, work: Awaitable[object]) -> None:
        """Best-effort clean-up: a failure leaves garbage that readers already skip."""
        with suppress(AzureError):
            await work

    # --- table -----------------------------------------------------------------------

    async def ensure_table(self) -> None:
        """Create the table unless it exists."""
        with self._translated(f"creating table {self.table_name!r}"), suppress(ResourceExistsError):
            await self._table.create_table()

    async def check_health(self, *, timeout: float = 10.0) -> str | None:
        """None when the table answers; otherwise one line saying what is wrong. Never raises."""
        try:
            async with asyncio.timeout(timeout):
                await self._table.get_entity("health", "probe", retry_total=0)
        except ResourceNotFoundError as error:
            if _error_code(error) == "TableNotFound":
                return f"table {self.table_name!r} does not exist"
            return None
        except ClientAuthenticationError as error:
            return f"access to table {self.table_name!r} denied: {_first_line(error)}"
        except HttpResponseError as error:
            return f"table service answered {error.status_code}: {_first_line(error)}"
        except TimeoutError:
            return f"the table service at {self._table.url} did not answer within {timeout:g} s"
        except (AzureError, OSError) as error:
            return f"cannot reach the table service at {self._table.url}: {_first_line(error)}"
        return None

    # --- one rollout -----------------------------------------------------------------

    async def get(self, rollout_id: str, *, with_listing: bool = False) -> StoredRollout | None:
        """The stored rollout `rollout_id` (a point read), or None; `with_listing`: the
        document its listing rows copy decoded too (a step does not need it)."""
        with self._translated(f"reading rollout {rollout_id!r}"):
            try:
                async with self._reads:
                    entity = await self._table.get_entity(_rollout_partition(rollout_id), _DOC_ROW)
            except ResourceNotFoundError as error:
                if _error_code(error) == "TableNotFound":
                    raise
                return None
        return _stored_rollout(entity, str(entity.metadata["etag"]), with_listing=with_listing)

    async def insert(self, rec: StoredRollout) -> StoredRollout:
        """Store a new rollout; RolloutAlreadyExistsError when `rec.id` is taken.

        The marker and the due entry, the rollout, then its listing rows (created, never
        overwritten: a row already there is a newer write's), the marker last. Rows go
        after the rollout here, unlike in `replace`, because two deliveries of one push
        race to insert it, each at its own creation time (the rows' key): the loser must
        never have listed it. A crash before the rows leaves the marker, whose repair
        creates them.
        """
        due_key = _new_due_row(rec.next_due_at, rec.id) if rec.active and rec.next_due_at else None
        intent = _new_intent()
        entity = _rollout_entity(rec, due_key, version=1, intent=intent)
        row_key = listing_row_key(rec.created_at, rec.id)
        rows = listing_rows(entity, row_key)
        marker = Marker(rec.id, intent, row_key, tuple(rows), creates=True)
        with self._translated(f"inserting rollout {rec.id!r}"):
            # Side by side: the rows come after the rollout, so nothing needs the marker first.
            due = [self._due_entry(rec, due_key)] if due_key is not None else []
            await asyncio.gather(*(self._table.upsert_entity(e) for e in [marker.entity(), *due]))
            try:
                metadata = await self._table.create_entity(entity)
            except ResourceExistsError:
                if due_key is not None:
                    await self._quietly(self._table.delete_entity(_DUE_PARTITION, due_key))
                await self._quietly(self._table.delete_entity(MARKER_PARTITION, marker.key))
                raise RolloutAlreadyExistsError(rec.id) from None
            await self._then_forget(
                marker, asyncio.gather(*(self._create_quietly(row) for row in rows.values()))
            )
        return dataclasses.replace(
            rec, etag=metadata["etag"], _due_key=due_key, _version=1, _listed_state=rec.state
        )

    async def replace(self, rec: StoredRollout) -> StoredRollout:
        """Overwrite the rollout if it is still at `rec.etag`; StaleRecordError if not.

        The marker, the listing rows of the new version (and a new due entry), the
        rollout, then the rows of the state it leaves (dropped before, a crash would
        unlist a rollout still in that state), the marker last. Rows go before the
        rollout so that two writes in a row land their rows in order: the next writer
        reads this version only once its rows are out.
        """
        if rec.etag is None:
            raise ValueError(f"rollout {rec.id!r}: replace needs the etag of the version it read")
        old_key = rec._due_key
        due_at = rec.next_due_at if rec.active else None
        if due_at is None:
            new_key = None
        elif old_key is not None and _due_time(old_key) == due_at:
            new_key = old_key
        else:
            new_key = _new_due_row(due_at, rec.id)
        intent = _new_intent()
        version = rec._version + 1
        entity = _rollout_entity(rec, new_key, version=version, intent=intent)
        row_key = listing_row_key(rec.created_at, rec.id)
        rows = listing_rows(entity, row_key)
        was = rec._listed_state
        left = [
            p for p in (listing_partitions(rec.repository, was) if was else ()) if p not in rows
        ]
        marker = Marker(rec.id, intent, row_key, (*rows, *left))
        with self._translated(f"replacing rollout {rec.id!r}"):
            await self._table.upsert_entity(marker.entity())
            due = [self._due_entry(rec, new_key)] if new_key not in (None, old_key) else []
            await asyncio.gather(*(self._table.upsert_entity(e) for e in [*rows.values(), *due]))
            try:
                metadata = await self._table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=rec.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceNotFoundError) as error:
                if new_key is not None and new_key != old_key:
                    await self._quietly(self._table.delete_entity(_DUE_PARTITION, new_key))
                # The winner's rows may have been overwritten by ours: put them back.
                await self._quietly(self._settle(marker))
                if isinstance(error, ResourceNotFoundError):
                    if _error_code(error) == "TableNotFound":
                        raise
                    raise RolloutNotFoundError(rec.id) from None
                raise StaleRecordError(rec.id) from None
            if old_key is not None and old_key != new_key:
                await self._quietly(self._table.delete_entity(_DUE_PARTITION, old_key))
            await self._then_forget(marker, self._repair_rows(marker, left, entity))
        return dataclasses.replace(
            rec,
            etag=metadata["etag"],
            _due_key=new_key,
            _version=version,
            _listed_state=rec.state,
        )

    async def update_with_retry(
        self,
        rollout_id: str,
        mutate: Callable[[StoredRollout], StoredRollout | None],
        attempts: int = 5,
    ) -> StoredRollout:
        """Read, `mutate`, replace; on a stale ETag read again and re-apply `mutate`.

        `mutate` must be pure (it may run several times) and returns the new value, or
        None to leave the rollout unchanged. Raises RolloutNotFoundError when absent and
        StaleRecordError when every attempt lost a race.
        """
        for attempt in range(attempts):
            current = await self.get(rollout_id)
            if current is None:
                raise RolloutNotFoundError(rollout_id)
            changed = mutate(current)
            if changed is None:
                return current
            if changed.id != rollout_id:
                raise ValueError(f"mutate changed the rollout id {rollout_id!r} to {changed.id!r}")
            try:
                return await self.replace(
                    dataclasses.replace(
                        changed,
                        etag=current.etag,
                        _due_key=current._due_key,
                        _version=current._version,
                        _listed_state=current._listed_state,
                    )
                )
            except StaleRecordError:
                if attempt == attempts - 1:
                    raise
                # Jitter so that two losers do not collide again in lockstep.
                await asyncio.sleep(random.uniform(0, 0.02 * 2**attempt))
        raise StaleRecordError(rollout_id)

    # --- index entries -----------------------------------------------------------------

    def _due_entry(self, rec: StoredRollout, due_key: str) -> dict[str, Any]:
        assert rec.next_due_at is not None
        return {
            "PartitionKey": _DUE_PARTITION,
            "RowKey": due_key,
            "Kind": "due",
            "Id": rec.id,
            "DueAt": _iso(rec.next_due_at),
        }

    # --- listing -------------------------------------------------------------------------

    async def list(
        self,
        repository: str | None = None,
        state: str | None = None,
        limit: int = 50,
        continuation: str | None = None,
    ) -> RolloutPage:
        """Rollouts newest first (of one repository, in one state, when given), and the
        continuation for the next page or None at the end: one partition query, the
        documents read from the listing rows themselves.
        """
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValueError(f"limit must be within 1..{MAX_LIST_LIMIT}, got {limit}")
        partition = listing_partition(repository, state)
        after = _decode_continuation(continuation, partition)
        query = "PartitionKey eq @pk" + (" and RowKey gt @after" if after else "")
        parameters = {"pk": partition, "after": after or ""}
        rows: list[dict[str, Any]] = []
        with self._translated("listing rollouts"):
            # One more than the page, in the same request, says whether another page follows.
            async for row in self._table.query_entities(
                query, parameters=parameters, results_per_page=min(limit + 1, MAX_LIST_LIMIT)
            ):
                rows.append(row)
                if len(rows) > limit:
                    break
            page = rows[:limit]
            listed = await asyncio.gather(*(self._listed(row) for row in page))
        found = [rec for rec in listed if rec is not None]
        if len(rows) <= limit:
            return found, None
        return found, _encode_continuation(partition, str(page[-1]["RowKey"]))

    async def _listed(self, row: dict[str, Any]) -> StoredRollout | None:
        """The rollout a listing row stands for: the copy it holds, or (a row written by an
        earlier version, which held only the id) the rollout itself when the row is current."""
        if is_copy(row):
            return _stored_rollout(row, None, for_listing=True)
        rec = await self.get(str(row["Id"]), with_listing=True)
        if rec is None:
            return None  # an insert in flight (or one that crashed): not listed yet
        if listing_row_key(rec.created_at, rec.id) != row["RowKey"]:
            # An earlier, failed insert of this id at another time: never valid again.
            await self._quietly(self._table.delete_entity(row["PartitionKey"], row["RowKey"]))
            return None
        return rec

    async def _then_forget(self, marker: Marker, rows: Awaitable[object]) -> None:
        """The listing rows written after the rollout, then the marker deleted; if the rows
        fail, the rollout stands and the marker stays for the tick's repair."""
        try:
            await rows
        except AzureError:
            return
        await self._quietly(self._table.delete_entity(MARKER_PARTITION, marker.key))

    async def _create_quietly(self, row: dict[str, Any]) -> None:
        """Create a listing row unless one is there (then a newer write made it)."""
        with suppress(ResourceExistsError):
            await self._table.create_entity(row)

    # --- listing repair --------------------------------------------------------------------

    async def repair_listings(self, now: datetime, *, limit: int = 100) -> int:
        """Put back the listing rows of writes that died between their rows and their
        rollout (markers older than the grace); how many writes were repaired."""
        repaired = 0
        with self._translated("repairing listings"):
            async for entity in self._table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": MARKER_PARTITION}
            ):
                written_at = entity.metadata.get("timestamp")
                if not isinstance(written_at, datetime) or now - written_at <= _MARKER_GRACE:
                    continue
                await self._settle(Marker.from_entity(entity))
                repaired += 1
                if repaired >= limit:
                    break
        return repaired

    async def _settle(self, marker: Marker) -> None:
        """Repair every row `marker`'s write touched against the rollout as it is now,
        then forget the marker."""
        try:
            truth: dict[str, Any] | None = await self._table.get_entity(
                _rollout_partition(marker.rollout_id), _DOC_ROW
            )
        except ResourceNotFoundError as error:
            if _error_code(error) == "TableNotFound":
                raise
            truth = None
        await self._repair_rows(marker, marker.partitions, truth)
        await self._table.delete_entity(MARKER_PARTITION, marker.key)

    async def _repair_rows(
        self, marker: Marker, partitions: Sequence[str], truth: dict[str, Any] | None
    ) -> None:
        if truth is not None:
            created_at = _parse_iso(str(truth["CreatedAt"]))
            if listing_row_key(created_at, marker.rollout_id) != marker.row_key:
                # A losing insert of the same id at another time: its rows list nothing.
                truth = None
        copies = listing_rows(truth, marker.row_key) if truth is not None else {}

        async def repair(partition: str) -> None:
            try:
                row = await self._table.get_entity(partition, marker.row_key)
            except ResourceNotFoundError:
                if marker.creates and partition in copies:
                    await self._create_quietly(copies[partition])  # an insert died before
                return
            action = repair_action(partition, row, intent=marker.intent, truth=truth)
            etag = str(row.metadata["etag"])
            unchanged = MatchConditions.IfNotModified
            # A row changed since we read it was written by a newer write: it stays.
            with suppress(ResourceModifiedError, ResourceNotFoundError):
                if action == "delete":
                    await self._table.delete_entity(
                        partition, marker.row_key, etag=etag, match_condition=unchanged
                    )
                elif action == "rewrite":
                    await self._table.update_entity(
                        copies[partition],
                        mode=UpdateMode.REPLACE,
                        etag=etag,
                        match_condition=unchanged,
                    )

        await asyncio.gather(*(repair(partition) for partition in partitions))

    async def list_due(self, now: datetime, limit: int = 100) -> RolloutList:
        """Active rollouts whose next_due_at is at or before `now`, earliest due first."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        due: list[StoredRollout] = []
        async with aclosing(self.iter_due(now, batch=min(limit, _DUE_BATCH))) as stream:
            async for rec in stream:
                due.append(rec)
                if len(due) == limit:
                    break
        return due

    async def iter_due(
        self, now: datetime, *, batch: int = _DUE_BATCH
    ) -> AsyncGenerator[StoredRollout, None]:
        """Every active rollout due at `now`, earliest first, read `batch` at a time as the
        caller goes (a backlog of 10,000 is never held at once)."""
        seen: set[str] = set()
        async with aclosing(self.due_entries(now, page=max(batch, 100))) as entries:
            exhausted = False
            while not exhausted:
                chunk: list[DueEntry] = []
                while len(chunk) < batch:
                    try:
                        chunk.append(await entries.__anext__())
                    except StopAsyncIteration:
                        exhausted = True
                        break
                rollouts = await asyncio.gather(*(self.due_rollout(e, now) for e in chunk))
                for rec in rollouts:
                    if rec is not None and rec.id not in seen:
                        seen.add(rec.id)
                        yield rec

    async def due_entries(
        self, now: datetime, *, page: int = _DUE_BATCH
    ) -> AsyncGenerator[DueEntry, None]:
        """The due queue up to `now`, earliest first, `page` entries per query page as the
        caller goes; unchecked: only `due_rollout` tells whether an entry still counts."""
        bound = ascending_time(now + timedelta(microseconds=1))
        with self._translated("listing due rollouts"):
            async for entity in self._table.query_entities(
                "PartitionKey eq @pk and RowKey lt @bound",
                parameters={"pk": _DUE_PARTITION, "bound": bound},
                results_per_page=min(page, 1000),
                select=["Id", "RowKey", "Timestamp"],
            ):
                written_at = entity.metadata.get("timestamp")
                yield DueEntry(
                    str(entity["Id"]),
                    str(entity["RowKey"]),
                    written_at if isinstance(written_at, datetime) else None,
                )

    async def due_rollout(self, entry: DueEntry, now: datetime) -> StoredRollout | None:
        """The rollout `entry` names, when it still points back at the entry and is active and
        due at `now` (a point read); None if not. An entry no rollout points at is deleted
        once its writer can no longer be between its two writes."""
        rec = await self.get(entry.rollout_id)
        if rec is not None and rec._due_key == entry.key:
            if rec.active and rec.next_due_at is not None and rec.next_due_at <= now:
                return rec
            return None
        if entry.written_at is not None and now - entry.written_at > _ORPHAN_GRACE:
            await self._quietly(self._table.delete_entity(_DUE_PARTITION, entry.key))
        return None

    # --- the endpoint index -----------------------------------------------------------------

    async def upsert_endpoint_entry(
        self, endpoint: str, rollout_id: str, summary: dict[str, Any]
    ) -> None:
        """Record (or refresh) that `rollout_id` targets `endpoint`, with its summary."""
        entity = {
            "PartitionKey": _endpoint_partition(endpoint),
            "RowKey": compose_key(rollout_id),
            "Kind": "endpoint",
            "Id": rollout_id,
            "Endpoint": endpoint,
            "Summary": json.dumps(summary, separators=(",", ":")),
        }
        with self._translated(f"indexing rollout {rollout_id!r} under endpoint {endpoint!r}"):
            await self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    async def endpoint_entries(self, endpoint: str) -> Summaries:
        """Every summary indexed under `endpoint` (one partition query)."""
        found: Summaries = []
        with self._translated(f"listing rollouts of endpoint {endpoint!r}"):
            async for entity in self._table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": _endpoint_partition(endpoint)}
            ):
                summary = json.loads(str(entity["Summary"]))
                if isinstance(summary, dict):
                    found.append(summary)
        return found

    # --- what serves each endpoint ------------------------------------------------------------

    async def get_serving(self, region: str, endpoint: str) -> ServingRecord | None:
        with self._translated(f"reading what serves {endpoint!r} in {region}"):
            try:
                entity = await self._table.get_entity(
                    _SERVING_PARTITION, compose_key(region, endpoint)
                )
            except ResourceNotFoundError as error:
                if _error_code(error) == "TableNotFound":
                    raise
                return None
        return _serving_record(entity)

    async def set_serving(self, record: ServingRecord) -> None:
        """Written by the endpoint's lease holder only, so a plain upsert cannot race."""
        entity = {
            "PartitionKey": _SERVING_PARTITION,
            "RowKey": compose_key(record.region, record.endpoint),
            "Kind": "serving",
            "Region": record.region,
            "Endpoint": record.endpoint,
            "Deployment": record.deployment,
            "Rollout": record.rollout_id,
            "Deleted": record.deleted,
        }
        with self._translated(f"recording what serves {record.endpoint!r} in {record.region}"):
            await self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    async def serving_records(self) -> ServingRecords:
        """Every serving record (one partition: one row per region and endpoint)."""
        with self._translated("listing what serves each endpoint"):
            return [
                _serving_record(entity)
                async for entity in self._table.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": _SERVING_PARTITION}
                )
            ]

    async def mark_serving_deleted(self, rollout_id: str) -> int:
        """Flag every serving record of `rollout_id`: its digest left the registry. Returns
        how many endpoints (regions) still serve it. `If-Match`: a record a newer rollout
        wrote meanwhile is left alone."""
        marked = 0
        with self._translated(f"marking what serves rollout {rollout_id!r} as deleted"):
            async for entity in self._table.query_entities(
                "PartitionKey eq @pk and Rollout eq @rollout",
                parameters={"pk": _SERVING_PARTITION, "rollout": rollout_id},
            ):
                if entity.get("Deleted"):
                    marked += 1
                    continue
                patch = {
                    "PartitionKey": entity["PartitionKey"],
                    "RowKey": entity["RowKey"],
                    "Deleted": True,
                }
                try:
                    await self._table.update_entity(
                        patch,
                        mode=UpdateMode.MERGE,
                        etag=entity.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                    marked += 1
                except (ResourceModifiedError, ResourceNotFoundError):
                    continue  # replaced by a newer rollout's record: not this digest any more
        return marked

    # --- build webhook messages already answered ------------------------------------------

    async def build_message_answer(self, message_id: str, now: datetime) -> dict[str, Any] | None:
        """The answer given to build message `message_id`, while it is remembered."""
        with self._translated("reading a build message"):
            try:
                entity = await self._table.get_entity(
                    _BUILD_MESSAGE_PARTITION, compose_key(message_id)
                )
            except ResourceNotFoundError as error:
                if _error_code(error) == "TableNotFound":
                    raise
                return None
        if _parse_iso(str(entity["ExpiresAt"])) <= now:
            return None
        answer = json.loads(str(entity["Answer"]))
        return answer if isinstance(answer, dict) else None

    async def remember_build_message(
        self, message_id: str, answer: dict[str, Any], now: datetime, expires_at: datetime
    ) -> dict[str, Any]:
        """Keep the answer to `message_id` until `expires_at`; when a concurrent delivery of
        the same message got there first, its answer is the one returned (and kept)."""
        entity = {
            "PartitionKey": _BUILD_MESSAGE_PARTITION,
            "RowKey": compose_key(message_id),
            "Kind": "build-message",
            "Answer": json.dumps(answer, separators=(",", ":")),
            "ExpiresAt": _iso(expires_at),
        }
        with self._translated("remembering a build message"):
            try:
                await self._table.create_entity(entity)
                return answer
            except ResourceExistsError:
                earlier = await self.build_message_answer(message_id, now)
                if earlier is not None:
                    return earlier
                await self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)  # expired
                return answer

    async def purge_build_messages(self, now: datetime, *, limit: int = 200) -> int:
        """Forget answered build messages past their expiry; how many were forgotten."""
        purged = 0
        with self._translated("purging build messages"):
            async for entity in self._table.query_entities(
                "PartitionKey eq @pk and ExpiresAt lt @now",
                parameters={"pk": _BUILD_MESSAGE_PARTITION, "now": _iso(now)},
            ):
                await self._quietly(
                    self._table.delete_entity(_BUILD_MESSAGE_PARTITION, entity["RowKey"])
                )
                purged += 1
                if purged >= limit:
                    break
        return purged

    # --- the inbox: notices accepted, not yet recorded -------------------------------------

    async def put_notice(self, key: str, notice: dict[str, Any], received_at: datetime) -> Added:
        """Keep `notice` under `key` until it is recorded: in the inbox page written next
        (one write, shared with the notices accepted meanwhile: `table_pages`)."""
        with self._translated("accepting a notice"):
            return await self._inbox.add(key, notice, received_at)

    async def notice_pages(self, *, received_before: datetime, limit: int) -> Pages:
        """The oldest inbox pages written before `received_before`, holding about `limit`
        notices in all (the page that reaches `limit` is the last)."""
        found: Pages = []
        held = 0
        with self._translated("reading the inbox"):
            async for entity in self._table.query_entities(
                "PartitionKey eq @pk and ReceivedAt lt @before",
                parameters={"pk": _INBOX_PARTITION, "before": stamp(received_before)},
                results_per_page=min(limit, 1000),
            ):
                page = _inbox_page(entity)
                found.append(page)
                held += len(page.entries)
                if held >= limit:
                    break
        return found

    async def delete_notice_page(self, key: str) -> None:
        """Every notice of the page under `key` is recorded: forget it (gone already is fine)."""
        with self._translated("clearing recorded notices"), suppress(ResourceNotFoundError):
            await self._table.delete_entity(_INBOX_PARTITION, key)

    # --- replication statistics: recent arrivals per region --------------------------------

    async def replication_samples(self) -> RegionSamples:
        """Every region's recent replication samples with the entity's ETag (one query)."""
        found: RegionSamples = {}
        with self._translated("reading replication statistics"):
            async for entity in self._table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": _REPLICATION_PARTITION}
            ):
                found[str(entity["Region"])] = (
                    json.loads(entity["Samples"]),
                    str(entity.metadata["etag"]),
                )
        return found

    async def put_replication_samples(
        self, region: str, samples: Summaries, *, etag: str | None
    ) -> bool:
        """Store `region`'s samples: created when `etag` is None, else replaced only if the
        entity is still at `etag`. False when another writer got there first (read again)."""
        entity = {
            "PartitionKey": _REPLICATION_PARTITION,
            "RowKey": compose_key(region),
            "Kind": "replication-samples",
            "Region": region,
            "Samples": json.dumps(samples, separators=(",", ":")),
        }
        with self._translated(f"recording replication statistics of {region}"):
            try:
                if etag is None:
                    await self._table.create_entity(entity)
                else:
                    await self._table.update_entity(
                        entity,
                        mode=UpdateMode.REPLACE,
                        etag=etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
            except (ResourceExistsError, ResourceModifiedError):
                return False
            except ResourceNotFoundError as error:
                if _error_code(error) == "TableNotFound":
                    raise
                return False  # deleted since we read it: read again
        return True

    # --- endpoints seen in a failed state ----------------------------------------------------

    async def set_endpoint_failed(
        self, region: str, endpoint: str, *, failed: bool, rollout_id: str, now: datetime
    ) -> None:
        """Remember (or forget) that `endpoint` in `region` was seen in a failed state."""
        row = compose_key(region, endpoint)
        with self._translated(f"recording the state of {endpoint!r} in {region}"):
            if not failed:
                with suppress(ResourceNotFoundError):
                    await self._table.delete_entity(_FAILED_ENDPOINT_PARTITION, row)
                return
            await self._table.upsert_entity(
                {
                    "PartitionKey": _FAILED_ENDPOINT_PARTITION,
                    "RowKey": row,
                    "Kind": "failed-endpoint",
                    "Region": region,
                    "Endpoint": endpoint,
                    "Rollout": rollout_id,
                    "SeenAt": _iso(now),
                },
                mode=UpdateMode.REPLACE,
            )

    async def failed_endpoints(self) -> RegionEndpoints:
        """(region, endpoint) of every endpoint last seen in a failed state (one query)."""
        with self._translated("listing failed endpoints"):
            return [
                (str(e["Region"]), str(e["Endpoint"]))
                async for e in self._table.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": _FAILED_ENDPOINT_PARTITION}
                )
            ]

    # --- endpoint leases ------------------------------------------------------------------

    async def get_endpoint_lease(self, region: str, endpoint: str) -> EndpointLease | None:
        """The lease on `endpoint` in `region` as stored (possibly expired), or None."""
        entity = await self._read_lease(region, endpoint)
        if entity is None:
            return None
        return EndpointLease(
            region=region,
            endpoint=endpoint,
            holder_rollout_id=str(entity["Holder"]),
            expires_at=_parse_iso(str(entity["ExpiresAt"])),
        )

    async def _read_lease(self, region: str, endpoint: str) -> Any | None:
        with self._translated(f"reading the lease on {endpoint!r} in {region}"):
            try:
                return await self._table.get_entity(_LEASE_PARTITION, compose_key(region, endpoint))
            except ResourceNotFoundError as error:
                if _error_code(error) == "TableNotFound":
                    raise
                return None

    async def acquire_endpoint_lease(
        self,
        region: str,
        endpoint: str,
        holder_rollout_id: str,
        now: datetime,
        ttl: timedelta,
    ) -> bool:
        """Take (or renew) the right to change `endpoint` in `region` until `now + ttl`.

        True when `holder_rollout_id` holds it afterwards; False while another rollout's
        unexpired lease stands. ETags make two concurrent takers agree on one winner.
        """
        entity = _lease_entity(region, endpoint, holder_rollout_id, now + ttl)
        with self._translated(f"taking the lease on {endpoint!r} in {region}"):
            for _ in range(3):
                current = await self._read_lease(region, endpoint)
                try:
                    if current is None:
                        await self._table.create_entity(entity)
                        return True
                    expires_at = _parse_iso(str(current["ExpiresAt"]))
                    if current["Holder"] != holder_rollout_id and expires_at > now:
                        return False
                    await self._table.update_entity(
                        entity,
                        mode=UpdateMode.REPLACE,
                        etag=current.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                    return True
                except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                    continue  # another taker moved between our read and write: look again
        return False

    async def take_over_endpoint_lease(
        self,
        region: str,
        endpoint: str,
        abandoned_by: str,
        holder_rollout_id: str,
        now: datetime,
        ttl: timedelta,
    ) -> bool:
        """Give the lease to `holder_rollout_id` if `abandoned_by` still holds it (If-Match)."""
        entity = _lease_entity(region, endpoint, holder_rollout_id, now + ttl)
        with self._translated(f"taking over the lease on {endpoint!r} in {region}"):
            current = await self._read_lease(region, endpoint)
            if current is None or current["Holder"] != abandoned_by:
                return False
            try:
                await self._table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=current.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceNotFoundError):
                return False
        return True

    async def release_endpoint_lease(
        self, region: str, endpoint: str, holder_rollout_id: str
    ) -> bool:
        """Give the lease up; True when `holder_rollout_id` held it and it is now free."""
        with self._translated(f"releasing the lease on {endpoint!r} in {region}"):
            for _ in range(3):
                current = await self._read_lease(region, endpoint)
                if current is None or current["Holder"] != holder_rollout_id:
                    return False
                try:
                    await self._table.delete_entity(
                        _LEASE_PARTITION,
                        compose_key(region, endpoint),
                        etag=current.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                    return True
                except ResourceModifiedError:
                    continue
                except ResourceNotFoundError:
                    return False
        return False


def _lease_entity(
    region: str, endpoint: str, holder_rollout_id: str, expires_at: datetime
) -> dict[str, Any]:
    return {
        "PartitionKey": _LEASE_PARTITION,
        "RowKey": compose_key(region, endpoint),
        "Kind": "lease",
        "Region": region,
        "Endpoint": endpoint,
        "Holder": holder_rollout_id,
        "ExpiresAt": _iso(expires_at),
    }


def _serving_record(entity: dict[str, Any]) -> ServingRecord:
    return ServingRecord(
        region=str(entity["Region"]),
        endpoint=str(entity["Endpoint"]),
        deployment=str(entity["Deployment"]),
        rollout_id=str(entity["Rollout"]),
        deleted=bool(entity.get("Deleted", False)),
    )


def _partition_digest(partition: str) -> str:
    return hashlib.sha256(partition.encode("utf-8")).hexdigest()[:16]


def _encode_continuation(partition: str, last_row: str) -> str:
    payload = json.dumps({"q": _partition_digest(partition), "r": last_row}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode("utf-8")).decode("ascii").rstrip("=")


def _decode_continuation(token: str | None, partition: str) -> str | None:
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8"))
        digest, row = payload["q"], payload["r"]
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
        raise InvalidContinuationError(
            "is not a continuation token this listing handed out"
        ) from None
    if digest != _partition_digest(partition) or not isinstance(row, str):
        raise InvalidContinuationError("belongs to a listing with other filters") from None
    return row
