"""Runs one Distribution registry per region and the work the relay accepts: events out, replication.

Everything accepted is spooled on disk before the relay answers, and worked off
by one loop, so a slow topic or an unavailable region never delays a registry's
notifications, and a restart of the supervisor loses nothing.

Replication carries the primary's manifest pushes *and* manifest deletes to every other
region, as ACR's geo-replication does: "After you push or delete an image in any geo-replica,
ACR eventually replicates the change to all geo-replicas in the background ... a deleted image
or tag might still be available for pull in other geo-replicas until the deletion propagates"
(https://learn.microsoft.com/azure/container-registry/container-registry-geo-replication,
"Consistency model"). A delete is due after the same base delay (+ per-region delay) as a push,
waits for an unavailable region like a copy does, and never overtakes an earlier copy or delete
of the same repository in the same region (jobs carry the order the primary reported them in).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from devenv.process import ManagedProcess
from devenv.registries.config import (
    RegionSettings,
    SupervisorSettings,
    write_registry_config,
)
from devenv.registries.events import (
    MANIFEST_MEDIA_TYPES,
    ManifestPush,
    RegistryDelete,
    event_id,
    image_pushed_event,
    manifest_push,
    registry_delete,
)
from devenv.registries.publisher import TopicPublisher
from devenv.registries.replicator import ManifestGoneError, RegistryCopier
from devenv.registries.spool import Spool
from devenv.tls import TlsFiles

log = logging.getLogger(__name__)

TICK_S = 0.05
MAX_RECENT = 50
# A replication job's `action`: copy a manifest from the primary, or delete it in the target.
COPY = "copy"
DELETE = "delete"


def _backoff(attempts: int, *, cap: float) -> float:
    return float(min(0.2 * 2 ** max(attempts - 1, 0), cap))


@dataclass
class RegionRuntime:
    """A region's live state: its knobs, its registry process, what arrived there."""

    settings: RegionSettings
    process: ManagedProcess | None = None
    received: Counter[str] = field(default_factory=Counter)
    replicated: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[dict[str, Any]] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.exit_code() is None


class RegistrySupervisor:
    """Owns the registries' processes, the spools and the worker loop."""

    def __init__(self, settings: SupervisorSettings) -> None:
        self.settings = settings
        self.regions = {r.name: RegionRuntime(r) for r in settings.regions}
        spool_root = settings.state_dir / "spool"
        self.pushes = Spool(spool_root / "pushes")
        self.events = Spool(spool_root / "events")
        self.replications = Spool(spool_root / "replications")
        # The order the primary reported pushes and deletes in, carried by every job (and kept
        # across restarts): a job waits for the earlier ones of its repository and region.
        self._next_seq = 1 + max(
            (
                int(item.get("seq", 0))
                for spool in (self.pushes, self.replications)
                for item in spool.items().values()
            ),
            default=0,
        )
        self.published: list[str] = []
        self._in_flight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._region_locks = {name: asyncio.Lock() for name in self.regions}
        self._tls = TlsFiles(settings.ca_pem, settings.cert_pem, settings.key_pem)
        self._copier: RegistryCopier | None = None
        self._publisher: TopicPublisher | None = None
        self._loop_task: asyncio.Task[None] | None = None

    # ---- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        self._copier = RegistryCopier(RegistryCopier.new_session(self._tls.client_context()))
        if self.settings.eventgrid_topic_endpoint:
            self._publisher = TopicPublisher(
                self.settings.eventgrid_topic_endpoint,
                key=self.settings.topic_key,
                ca_pem=self.settings.ca_pem,
            )
        await asyncio.gather(
            *(self._start_registry(r) for r in self.regions.values() if not r.settings.unavailable)
        )
        self._loop_task = asyncio.create_task(self._work_loop())

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._copier is not None:
            await self._copier.session.close()
        if self._publisher is not None:
            await self._publisher.close()
        await asyncio.gather(*(self._stop_registry(r) for r in self.regions.values()))

    async def _start_registry(self, region: RegionRuntime) -> None:
        if region.running:
            return
        config_path = write_registry_config(region.settings, self.settings)
        binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
        process = ManagedProcess(
            name=f"registry-{region.settings.name}",
            argv=[binary, "serve", str(config_path)],
            log_path=self.settings.log_dir / f"registry-{region.settings.name}.log",
        ).start()
        region.process = process
        try:
            await asyncio.to_thread(process.wait_for_port, region.settings.port, timeout=30)
        except BaseException:
            await self._stop_registry(region)
            raise

    async def _stop_registry(self, region: RegionRuntime) -> None:
        process, region.process = region.process, None
        if process is not None:
            await asyncio.to_thread(process.stop)

    # ---- control ---------------------------------------------------------

    async def set_knobs(self, name: str, knobs: dict[str, Any]) -> None:
        """Apply region knobs; `unavailable` stops or starts that region's registry (by pid)."""
        region = self.regions[name]
        async with self._region_locks[name]:
            region.settings = replace(region.settings, **knobs)
            if region.settings.unavailable:
                await self._stop_registry(region)
            else:
                await self._start_registry(region)

    def region_state(self, name: str) -> dict[str, Any]:
        region = self.regions[name]
        now = time.time()
        pending = []
        for job_id, job in self.replications.items().items():
            if job["target"] != name:
                continue
            pending.append(
                {
                    "id": job_id,
                    "action": job.get("action", COPY),
                    "repository": job["repository"],
                    "digest": job["digest"],
                    "tag": job["tag"],
                    "total_bytes": job["total_bytes"],
                    "due_in_s": round(self._due_at(job) - now, 3),
                    "attempts": job.get("attempts", 0),
                    "last_error": job.get("last_error"),
                }
            )
        return {
            **asdict(region.settings),
            "url": region.settings.url,
            "running": region.running,
            "pid": region.process.pid if region.process is not None else None,
            "pending_replications": pending,
            "replicated": list(region.replicated),
            "deleted": list(region.deleted),
            "received": dict(region.received),
        }

    def state(self) -> dict[str, Any]:
        events = self.events.items()
        return {
            "regions": [self.region_state(name) for name in self.regions],
            "events": {
                "topic_endpoint": self.settings.eventgrid_topic_endpoint,
                "schema": self.settings.event_schema,
                "pending": len(events),
                "published": list(self.published),
                "last_errors": [e["last_error"] for e in events.values() if e.get("last_error")],
            },
            "pending_pushes": len(self.pushes),
        }

    # ---- intake (called by the relay; must stay fast: disk only) ---------

    def accept(self, region_name: str, event: dict[str, Any]) -> bool:
        """Record one Distribution event; spool the work a primary manifest push or delete causes."""
        region = self.regions.get(region_name)
        if region is None:
            log.warning("notification for unknown region %s ignored", region_name)
            return False
        push = manifest_push(event)
        delete = registry_delete(event) if push is None else None
        region.received[_kind(event, push, delete)] += 1
        if delete is not None:
            return self._accept_delete(region, delete)
        if push is None:
            return False
        if not region.settings.primary:
            region.replicated.append(
                {
                    "repository": push.repository,
                    "digest": push.digest,
                    "tag": push.tag,
                    "at": time.time(),
                }
            )
            del region.replicated[:-MAX_RECENT]
            return False
        if self._publisher is not None:
            published = image_pushed_event(
                push,
                resource_id=self.settings.registry_resource_id,
                schema=self.settings.event_schema,
            )
            self.events.put(event_id(push), {"event": published, "attempts": 0, "next_at": 0.0})
        self.pushes.put(
            event_id(push),
            {
                "push": asdict(push),
                "received_at": time.time(),
                "seq": self._take_seq(),
                "attempts": 0,
                "next_at": 0.0,
            },
        )
        return True

    def _accept_delete(self, region: RegionRuntime, delete: RegistryDelete) -> bool:
        """Spool one delete job per secondary for a primary digest delete."""
        if not region.settings.primary:
            # A replicated delete landing (the replicator's own DELETE in this region).
            region.deleted.append(
                {
                    "repository": delete.repository,
                    "digest": delete.digest,
                    "tag": delete.tag,
                    "at": time.time(),
                }
            )
            del region.deleted[:-MAX_RECENT]
            return False
        if delete.digest is None:
            # A tag delete: Distribution 2.8 sends one only after a digest delete, for each tag
            # that pointed at the digest, and each replica untags those itself when the
            # replicated digest delete lands (2.8 cannot delete a tag alone: it answers 400).
            return False
        received_at = time.time()
        seq = self._take_seq()
        for target in self.regions.values():
            if target.settings.primary:
                continue
            self.replications.put(
                f"{event_id(delete)}-{target.settings.name}",
                {
                    "action": DELETE,
                    "target": target.settings.name,
                    "repository": delete.repository,
                    "digest": delete.digest,
                    "tag": None,
                    "total_bytes": 0,  # nothing to transfer: the base (+ region) delay only
                    "received_at": received_at,
                    "seq": seq,
                    "attempts": 0,
                    "next_at": 0.0,
                },
            )
        return True

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    # ---- the worker loop -------------------------------------------------

    async def _work_loop(self) -> None:
        while True:
            try:
                self._dispatch()
            except Exception:  # keep the loop alive; the spool still holds the work
                log.exception("worker loop tick failed")
            await asyncio.sleep(TICK_S)

    def _dispatch(self) -> None:
        now = time.time()
        for item_id, item in self.events.items().items():
            if item["next_at"] <= now:
                self._launch(f"event:{item_id}", self._publish(item_id, item))
        pushes = self.pushes.items()
        for item_id, item in pushes.items():
            if item["next_at"] <= now:
                self._launch(f"push:{item_id}", self._plan_replication(item_id, item))
        jobs = self.replications.items()
        # Only the earliest pending job of a repository in a region may run (a push still being
        # planned counts for every region), so a delete never lands before the copy it undoes,
        # nor a copy before an earlier delete of the same digest.
        earliest: dict[tuple[str, str], int] = {}
        for region_name in self.regions:
            for item in pushes.values():
                _keep_min(earliest, (region_name, item["push"]["repository"]), item.get("seq", 0))
        for job in jobs.values():
            _keep_min(earliest, (job["target"], job["repository"]), job.get("seq", 0))
        for job_id, job in jobs.items():
            target = self.regions.get(job["target"])
            if (
                target is None
                or target.settings.never_replicates
                or target.settings.unavailable
                or not target.running
            ):
                continue
            if job.get("seq", 0) > earliest[(job["target"], job["repository"])]:
                continue
            if self._due_at(job) <= now and job.get("next_at", 0.0) <= now:
                self._launch(f"replication:{job_id}", self._replicate(job_id, job))

    def _launch(self, key: str, work: Any) -> None:
        if key in self._in_flight:
            work.close()  # an un-awaited coroutine object; close it quietly
            return
        self._in_flight.add(key)

        async def run() -> None:
            try:
                await work
            finally:
                self._in_flight.discard(key)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _due_at(self, job: dict[str, Any]) -> float:
        region = self.regions[job["target"]]
        transfer = job["total_bytes"] / self.settings.replication_bandwidth_bytes_per_s
        return float(
            job["received_at"]
            + self.settings.replication_base_s
            + transfer
            + region.settings.extra_delay_s
        )

    async def _publish(self, item_id: str, item: dict[str, Any]) -> None:
        assert self._publisher is not None
        error = await self._publisher.publish(item["event"])
        if error is None:
            self.events.remove(item_id)
            self.published.append(item_id)
            del self.published[:-MAX_RECENT]
            return
        attempts = item["attempts"] + 1
        self.events.put(
            item_id,
            {
                **item,
                "attempts": attempts,
                "next_at": time.time() + _backoff(attempts, cap=10.0),
                "last_error": error,
            },
        )

    async def _plan_replication(self, item_id: str, item: dict[str, Any]) -> None:
        """Size the pushed manifest (with its children and blobs) and spool one job per secondary."""
        assert self._copier is not None
        push = ManifestPush(**item["push"])
        primary = self.settings.primary
        try:
            node = await self._copier.describe(primary.url, push.repository, push.digest)
        except ManifestGoneError:
            log.info("%s@%s was deleted before replication", push.repository, push.digest)
            self.pushes.remove(item_id)
            return
        except Exception as error:
            attempts = item["attempts"] + 1
            self.pushes.put(
                item_id,
                {
                    **item,
                    "attempts": attempts,
                    "next_at": time.time() + _backoff(attempts, cap=2.0),
                    "last_error": str(error),
                },
            )
            return
        for region in self.regions.values():
            if region.settings.primary:
                continue
            self.replications.put(
                f"{item_id}-{region.settings.name}",
                {
                    "action": COPY,
                    "target": region.settings.name,
                    "repository": push.repository,
                    "digest": push.digest,
                    "tag": push.tag,
                    "total_bytes": node.total_bytes,
                    "received_at": item["received_at"],
                    "seq": item.get("seq", 0),
                    "attempts": 0,
                    "next_at": 0.0,
                },
            )
        self.pushes.remove(item_id)

    async def _replicate(self, job_id: str, job: dict[str, Any]) -> None:
        assert self._copier is not None
        target = self.regions[job["target"]]
        source = self.settings.primary.url
        try:
            if job.get("action", COPY) == DELETE:
                await self._delete(job, source=source, target=target.settings.url)
                self.replications.remove(job_id)
                return
            node = await self._copier.describe(source, job["repository"], job["digest"])
            await self._copier.copy(
                node,
                source=source,
                target=target.settings.url,
                repository=job["repository"],
                tag=job["tag"],
            )
        except ManifestGoneError:
            log.info("%s@%s was deleted before replication", job["repository"], job["digest"])
            self.replications.remove(job_id)
            return
        except Exception as error:
            attempts = job.get("attempts", 0) + 1
            log.info("replication %s failed (attempt %d): %s", job_id, attempts, error)
            if job_id in self.replications:
                self.replications.put(
                    job_id,
                    {
                        **job,
                        "attempts": attempts,
                        "next_at": time.time() + _backoff(attempts, cap=1.0),
                        "last_error": f"{type(error).__name__}: {error}",
                    },
                )
            return
        self.replications.remove(job_id)
        log.info("replicated %s@%s to %s", job["repository"], job["digest"], target.settings.name)

    async def _delete(self, job: dict[str, Any], *, source: str, target: str) -> None:
        """Carry a primary delete to `target`, unless the primary serves the digest again."""
        assert self._copier is not None
        repository, digest = job["repository"], job["digest"]
        if await self._copier.has_manifest(source, repository, digest):
            # Pushed again since the delete: that later push's copy job follows this one, so
            # deleting now would only make the region miss an image the primary serves.
            log.info("%s@%s pushed again: delete in %s skipped", repository, digest, job["target"])
            return
        if await self._copier.delete_manifest(target, repository, digest):
            log.info("deleted %s@%s in %s", repository, digest, job["target"])


def _keep_min(smallest: dict[tuple[str, str], int], key: tuple[str, str], value: int) -> None:
    smallest[key] = min(smallest.get(key, value), value)


def _kind(event: dict[str, Any], push: ManifestPush | None, delete: RegistryDelete | None) -> str:
    """A counter key such as `push:manifest`, `pull:manifest`, `push:blob`, `delete:digest`."""
    if delete is not None:
        return "delete:digest" if delete.digest else "delete:tag"
    media_type = (event.get("target") or {}).get("mediaType", "")
    what = "manifest" if push is not None or media_type in MANIFEST_MEDIA_TYPES else "blob"
    return f"{event.get('action', 'unknown')}:{what}"
