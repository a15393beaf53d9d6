"""RolloutRepository: the store's public face, speaking the domain's `Rollout`.

Everything the service layer reads or writes about rollouts goes through here:
`get` / `add` / `save` with optimistic concurrency, `update` (the one
read-change-write primitive, with one retry policy), `targeting` (every rollout
on an endpoint, from the endpoint index), listings, the due queue, endpoint
leases and the record of what serves each endpoint. The stored form (entities,
index rows, due keys) stays inside `shared.adapters`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import random
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.adapters.table_keys import compose_key
from shared.adapters.table_pages import Page
from shared.adapters.table_store import (
    DueEntry,
    RolloutAlreadyExistsError,
    RolloutStore,
    ServingRecord,
    StaleRecordError,
    StoredRollout,
)
from shared.domain.model import Rollout, RolloutSummary, rollout_id, summarize
from shared.domain.push import PushNotice
from shared.domain.replication import ReplicationSample
from shared.domain.rollout import RolloutPolicy
from shared.domain.schedule import is_active, next_due_at
from shared.domain.serialization import (
    notice_from_record,
    notice_to_record,
    rollout_from_record,
    rollout_to_document,
    rollout_to_record,
    sample_from_record,
    sample_to_record,
)
from shared.domain.timestamps import format_timestamp, parse_timestamp


@dataclass(frozen=True)
class NoticePage:
    """One write of the inbox: the notices accepted together, by their keys."""

    key: str
    notices: tuple[tuple[str, PushNotice], ...]


def _notice_page(page: Page) -> NoticePage:
    notices = tuple((key, notice_from_record(record)) for key, record in page.entries.items())
    return NoticePage(page.key, notices)


# region -> (its recent samples, the version to write them back at)
RegionSamples = dict[str, tuple[tuple[ReplicationSample, ...], str]]

__all__ = [
    "DueEntry",
    "Lease",
    "Loaded",
    "NoticePage",
    "RolloutAlreadyExistsError",
    "RolloutRepository",
    "ServingRecord",
    "StaleRecordError",
]

Clock = Callable[[], datetime]
Change = Callable[[Rollout], Rollout]
# The method `RolloutRepository.list` shadows the builtin inside the class body.
Summaries = list[RolloutSummary]
RolloutIds = list[str]
NoticePages = list[NoticePage]
ServingRecords = list[ServingRecord]
Endpoints = list[tuple[str, str]]
_UPDATE_ATTEMPTS = 6


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds an endpoint's lease in a region, and since when (its last renewal)."""

    holder_rollout_id: str
    taken_at: datetime


@dataclass(frozen=True, slots=True)
class Loaded:
    """A rollout and the stored version it was read at (opaque; `save` needs it)."""

    rollout: Rollout
    version: StoredRollout


def summary_to_entry(summary: RolloutSummary) -> dict[str, Any]:
    return {
        "id": summary.id,
        "repository": summary.repository,
        "digest": summary.digest,
        "generation": summary.generation,
        "confirmed_at": format_timestamp(summary.confirmed_at) if summary.confirmed_at else None,
        "tags_seen": list(summary.tags_seen),
        "deployable": summary.deployable,
        "ignored": summary.ignored,
    }


def summary_from_entry(entry: dict[str, Any]) -> RolloutSummary:
    confirmed = entry.get("confirmed_at")
    return RolloutSummary(
        id=str(entry["id"]),
        repository=str(entry["repository"]),
        digest=str(entry["digest"]),
        generation=int(entry["generation"]),
        confirmed_at=parse_timestamp(confirmed) if confirmed else None,
        tags_seen=tuple(entry.get("tags_seen", ())),
        deployable=entry.get("deployable"),
        ignored=bool(entry.get("ignored")),
    )


class RolloutRepository:
    """Rollouts in Table Storage, in the domain's terms."""

    def __init__(
        self,
        store: RolloutStore,
        *,
        policy: RolloutPolicy,
        poll: timedelta,
        clock: Clock = _utc_now,
    ) -> None:
        self.store = store
        self._policy = policy
        self._poll = poll
        self._clock = clock

    # --- one rollout ---------------------------------------------------------------------

    async def get(self, rollout_id: str) -> Loaded | None:
        stored = await self.store.get(rollout_id)
        if stored is None:
            return None
        return Loaded(rollout_from_record(stored.record), stored)

    async def add(self, rollout: Rollout) -> Loaded:
        """Store a new rollout; RolloutAlreadyExistsError when its id is taken.

        The endpoint index entry goes first (like every index), the rollout last.
        """
        await self._index(None, rollout)
        stored = await self.store.insert(self._stored(rollout))
        return Loaded(rollout, stored)

    async def save(self, loaded: Loaded, rollout: Rollout) -> Loaded:
        """Write `rollout` over `loaded` if nobody changed it since; StaleRecordError if not."""
        if rollout is loaded.rollout:
            return loaded
        await self._index(loaded.rollout, rollout)
        stored = await self.store.replace(self._stored(rollout, loaded.version))
        return Loaded(rollout, stored)

    async def update(self, rollout_id: str, change: Change) -> Rollout | None:
        """Read, `change`, save; on a concurrent write read again and re-apply `change`.

        `change` must be pure (it may run several times); returning the very same object
        writes nothing. None when the rollout does not exist.
        """
        for attempt in range(_UPDATE_ATTEMPTS):
            loaded = await self.get(rollout_id)
            if loaded is None:
                return None
            changed = change(loaded.rollout)
            try:
                return (await self.save(loaded, changed)).rollout
            except StaleRecordError:
                if attempt == _UPDATE_ATTEMPTS - 1:
                    raise
                # Jitter so that two losers do not collide again in lockstep.
                await asyncio.sleep(random.uniform(0, 0.02 * 2**attempt))
        raise StaleRecordError(rollout_id)

    # --- queries -------------------------------------------------------------------------

    async def targeting(self, endpoint: str) -> Summaries:
        """Every rollout ever recorded for `endpoint`, whatever its repository (one query)."""
        return [summary_from_entry(e) for e in await self.store.endpoint_entries(endpoint)]

    async def list(
        self,
        *,
        repository: str | None = None,
        state: str | None = None,
        limit: int = 50,
        continuation: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The rollout documents of one page, newest first, as rendered when each was
        written (one query), and the continuation."""
        page, token = await self.store.list(
            repository=repository, state=state, limit=limit, continuation=continuation
        )
        documents = [
            s.listing
            if s.listing is not None
            else rollout_to_document(rollout_from_record(s.record))
            for s in page
        ]
        return documents, token

    async def repair_listings(self, now: datetime) -> int:
        """Put back the listing rows of writes that died before their rollout (the tick's
        housekeeping); how many writes were repaired."""
        return await self.store.repair_listings(now)

    async def due(self, now: datetime, *, limit: int) -> RolloutIds:
        """Ids of active rollouts due at `now`, earliest first."""
        return [s.id for s in await self.store.list_due(now, limit=limit)]

    async def each_due(self, now: datetime) -> AsyncGenerator[DueEntry, None]:
        """The due queue up to `now`, earliest first, read as the caller goes; each entry is
        checked by `due_rollout` only when the caller gets to it, so the rollout it loads is
        fresh when its step starts."""
        async with aclosing(self.store.due_entries(now)) as entries:
            async for entry in entries:
                yield entry

    async def due_rollout(self, entry: DueEntry, now: datetime) -> Loaded | None:
        """The rollout `entry` names, if the entry still counts and the rollout is due at
        `now` (one point read); None if not."""
        stored = await self.store.due_rollout(entry, now)
        if stored is None:
            return None
        return Loaded(rollout_from_record(stored.record), stored)

    # --- endpoints -----------------------------------------------------------------------

    async def take_lease(
        self, region: str, endpoint: str, holder: str, now: datetime
    ) -> tuple[datetime | None, str | None]:
        """(until, None) when `holder` holds the lease afterwards; (None, other holder) if not."""
        ttl = timedelta(seconds=self._policy.lease_ttl_s)
        if await self.store.acquire_endpoint_lease(region, endpoint, holder, now, ttl):
            return now + ttl, None
        lease = await self.store.get_endpoint_lease(region, endpoint)
        return None, lease.holder_rollout_id if lease else None

    async def lease(self, region: str, endpoint: str) -> Lease | None:
        """The lease on `endpoint` in `region` as stored (possibly expired), or None."""
        found = await self.store.get_endpoint_lease(region, endpoint)
        if found is None:
            return None
        ttl = timedelta(seconds=self._policy.lease_ttl_s)
        return Lease(found.holder_rollout_id, taken_at=found.expires_at - ttl)

    async def take_over_lease(
        self, region: str, endpoint: str, abandoned_by: str, holder: str, now: datetime
    ) -> datetime | None:
        """Take a lease its holder abandoned; the new expiry, or None when it moved meanwhile."""
        ttl = timedelta(seconds=self._policy.lease_ttl_s)
        taken = await self.store.take_over_endpoint_lease(
            region, endpoint, abandoned_by, holder, now, ttl
        )
        return now + ttl if taken else None

    async def release_lease(self, region: str, endpoint: str, holder: str) -> None:
        await self.store.release_endpoint_lease(region, endpoint, holder)

    async def serving(self, region: str, endpoint: str) -> ServingRecord | None:
        return await self.store.get_serving(region, endpoint)

    async def set_serving(self, record: ServingRecord) -> None:
        await self.store.set_serving(record)

    async def mark_serving_deleted(self, rollout_id: str) -> int:
        """Flag the endpoints `rollout_id` serves: its digest left the registry."""
        return await self.store.mark_serving_deleted(rollout_id)

    async def serving_deleted_digests(self) -> ServingRecords:
        """Endpoints (per region) that serve a digest the registry has deleted."""
        return [r for r in await self.store.serving_records() if r.deleted]

    async def set_endpoint_failed(
        self, region: str, endpoint: str, *, failed: bool, rollout_id: str, now: datetime
    ) -> None:
        await self.store.set_endpoint_failed(
            region, endpoint, failed=failed, rollout_id=rollout_id, now=now
        )

    async def failed_endpoints(self) -> Endpoints:
        """(region, endpoint) last seen in a failed state by a rollout that needed it."""
        return await self.store.failed_endpoints()

    async def build_message_answer(self, message_id: str, now: datetime) -> dict[str, Any] | None:
        """What a build message was answered, while it is remembered (replays answer so)."""
        return await self.store.build_message_answer(message_id, now)

    async def remember_build_message(
        self, message_id: str, answer: dict[str, Any], now: datetime, *, keep: timedelta
    ) -> dict[str, Any]:
        return await self.store.remember_build_message(message_id, answer, now, now + keep)

    async def purge_build_messages(self, now: datetime) -> int:
        return await self.store.purge_build_messages(now)

    # --- the inbox ----------------------------------------------------------------------

    async def accept(self, notice: PushNotice, now: datetime) -> NoticePage | None:
        """Keep `notice` until it is recorded (one durable write, shared with the notices
        accepted meanwhile: an inbox page). Returns the page that holds it to the one caller
        that sees to that page's recording (the first it holds); None to the others.

        Its key is the rollout's id and a hash of the notice: a redelivery of the same
        notice is the same notice in whichever page it lands, a different notice of the same
        digest (another tag, a regional hint) one of its own."""
        record = notice_to_record(notice)
        content = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
        identity = rollout_id(notice.registry, notice.repository, notice.digest)
        key = compose_key(identity, hashlib.sha256(content).hexdigest()[:24])
        added = await self.store.put_notice(key, record, now)
        return _notice_page(added.page) if added.first else None

    async def waiting_notices(self, received_before: datetime, *, limit: int) -> NoticePages:
        """The inbox pages written before `received_before` (about `limit` notices)."""
        pages = await self.store.notice_pages(received_before=received_before, limit=limit)
        return [_notice_page(page) for page in pages]

    async def notices_recorded(self, page: NoticePage) -> None:
        """Every notice `page` holds is recorded: the page leaves the inbox."""
        await self.store.delete_notice_page(page.key)

    async def replication_samples(self) -> RegionSamples:
        """Every region's recent replication samples and their version (one query)."""
        stored = await self.store.replication_samples()
        return {
            region: (tuple(sample_from_record(r) for r in records), etag)
            for region, (records, etag) in stored.items()
        }

    async def put_replication_samples(
        self, region: str, samples: tuple[ReplicationSample, ...], *, version: str | None
    ) -> bool:
        """Write `region`'s samples if they are still at `version` (None: none stored yet);
        False when another writer got there first."""
        records = [sample_to_record(s) for s in samples]
        return await self.store.put_replication_samples(region, records, etag=version)

    async def check_health(self) -> str | None:
        return await self.store.check_health()

    # --- internals -----------------------------------------------------------------------

    async def _index(self, before: Rollout | None, after: Rollout) -> None:
        if after.target is None:
            return
        summary = summarize(after)
        if (
            before is not None
            and before.target is not None
            and before.target.endpoint == after.target.endpoint
            and summarize(before) == summary
        ):
            return
        await self.store.upsert_endpoint_entry(
            after.target.endpoint, after.id, summary_to_entry(summary)
        )

    def _stored(self, rollout: Rollout, base: StoredRollout | None = None) -> StoredRollout:
        now = self._clock()
        fields = {
            "id": rollout.id,
            "registry": rollout.registry,
            "repository": rollout.repository,
            "digest": rollout.digest,
            "state": rollout.state.value,
            "created_at": rollout.created_at,
            "next_due_at": next_due_at(rollout, now, self._policy, self._poll),
            "active": is_active(rollout),
            "record": rollout_to_record(rollout),
            "listing": rollout_to_document(rollout),
        }
        if base is None:
            return StoredRollout(**fields)  # type: ignore[arg-type]
        return dataclasses.replace(base, **fields)  # type: ignore[arg-type]
