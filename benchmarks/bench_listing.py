"""Listing and point-read latency against raw table operations, at 1,000 and 10,000 rollouts.

The service calls behind `GET /api/rollouts` (a page of 50, unfiltered and with each
filter) and `GET /api/rollouts/{id}` are timed in-process against one Azurite, next to what
the table itself takes for one 50-entity query of the same rows and one point read in the
same run, with the table requests each call makes counted. The HTTP hop is left out on
both sides. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.figures import SentRequests, machine, percentile, stop_cleanly_on_sigterm
from devenv.azurite import start_azurite
from devenv.config import isolated_env
from devenv.local_settings import app_settings
from devenv.tls import ensure_tls
from shared.adapters.table_store import _rollout_partition
from shared.config import load_config
from shared.domain.push import NoticeSource, PushNotice
from shared.domain.rollout import new_rollout
from shared.domain.targets import match_target
from shared.entrypoints.startup import quiet_azure_sdk
from shared.service import status
from shared.service.runtime import Services, build_services
from tests.integration.service.service_stack import FixedTokenCredential

SIZES = (1_000, 10_000)
REPEATS = 100
LISTINGS = ("list", "list ?state=replicating", "list ?state=failed", "list ?repository=&state=")
WRITERS = 16


async def _seed(services: Services, count: int, start: int) -> list[str]:
    """`count` new rollouts as intake records them (entity, listing rows, due entry)."""
    regions = services.config.region_names
    gate = asyncio.Semaphore(WRITERS)
    ids: list[str] = []

    async def one(number: int) -> None:
        digest = "sha256:" + hashlib.sha256(f"listing-{number}".encode()).hexdigest()
        notice = PushNotice(
            registry=services.config.registry_login_server,
            repository=f"bench/listing-{number % 20}",
            digest=digest,
            source=NoticeSource.ACR_WEBHOOK,
            tag="v1",
        )
        target = match_target(services.rules, notice.repository, "v1")
        rollout = new_rollout(notice, regions, target, datetime.now(UTC))
        async with gate:
            await services.rollouts.add(rollout)
        ids.append(rollout.id)

    await asyncio.gather(*(one(n) for n in range(start, start + count)))
    return ids


class _Timing(list[float]):
    """Milliseconds per call, and the table requests each call sent."""

    requests_per_call: float = 0.0


# Every Azure client of the app sends through a PooledTransport: count them all.
_sent = SentRequests()


async def _interleaved(calls: dict[str, Callable[[], Awaitable[object]]]) -> dict[str, _Timing]:
    """Each call once per round, `REPEATS` rounds: a baseline and what it is compared
    with see the same moments of the machine (Azurite's pauses land on both)."""
    timings = {name: _Timing() for name in calls}
    sent = dict.fromkeys(calls, 0)
    for _ in range(REPEATS):
        for name, call in calls.items():
            before = _sent.count
            began = time.perf_counter()
            await call()
            timings[name].append((time.perf_counter() - began) * 1000)
            sent[name] += _sent.count - before
    for name, timing in timings.items():
        timing.requests_per_call = sent[name] / REPEATS
    return timings


async def _measure(services: Services, ids: list[str]) -> dict[str, _Timing]:
    table = services.store._table  # the raw SDK client under the store, for the baselines
    one_id = ids[len(ids) // 2]
    doc_partition = _rollout_partition(one_id)

    async def raw_query() -> None:
        pages = table.query_entities("PartitionKey eq 'created'", results_per_page=50).by_page()
        async for page in pages:
            _ = [entity async for entity in page]
            break

    async def listing(state: str | None = None, repository: str | None = None) -> None:
        await status.list_rollouts(
            services, repository=repository, state=state, limit=50, continuation=None
        )

    async def point() -> None:
        await status.get_rollout(services, one_id)

    async def raw_point() -> None:
        await table.get_entity(doc_partition, "doc")

    return await _interleaved(
        {
            "raw query": raw_query,
            "list": listing,
            "list ?state=replicating": lambda: listing("replicating"),
            "list ?state=failed": lambda: listing("failed"),
            "list ?repository=&state=": lambda: listing("replicating", "bench/listing-3"),
            "raw point read": raw_point,
            "point read": point,
        }
    )


async def _run(settings: dict[str, str]) -> list[tuple[int, dict[str, _Timing]]]:
    services = build_services(load_config(settings), credential=FixedTokenCredential())
    await services.ensure_table()
    results = []
    ids: list[str] = []
    try:
        for size in SIZES:
            ids += await _seed(services, size - len(ids), len(ids))
            results.append((size, await _measure(services, ids)))
    finally:
        await services.close()
    return results


def main() -> None:
    quiet_azure_sdk("WARNING")  # as the app does at start-up (its default level)
    with tempfile.TemporaryDirectory() as state:
        env = isolated_env(Path(state))
        tls = ensure_tls(Path(state) / "tls")
        azurite = start_azurite(env)
        try:
            settings = app_settings(env, tls) | {"GEOROLLOUT_TABLE_NAME": "benchlisting"}
            with _sent:
                results = asyncio.run(_run(settings))
        finally:
            azurite.stop()
    print(f"machine: {machine()}")
    print("page of 50 and point read (ms, in-process service call vs the raw table operation)")
    for size, timings in results:
        query, point = timings["raw query"], timings["raw point read"]
        print(
            f"  {size:,} rollouts: raw 50-entity query p50 {percentile(query, 0.5):6.1f}, p99 {percentile(query, 0.99):6.1f}"
        )
        for name in LISTINGS:
            values = timings[name]
            print(
                f"    {name:26} p50 {percentile(values, 0.5):7.1f}, p99 {percentile(values, 0.99):7.1f}: "
                f"{percentile(values, 0.5) / percentile(query, 0.5):5.1f}x the raw query at p50, "
                f"{percentile(values, 0.99) / percentile(query, 0.99):5.1f}x at p99 (goal <= 1.5x); "
                f"{values.requests_per_call:g} table requests (goal 1)"
            )
        values = timings["point read"]
        print(
            f"    {'GET one rollout':26} p50 {percentile(values, 0.5):7.1f} vs raw {percentile(point, 0.5):5.1f}: "
            f"{percentile(values, 0.5) / percentile(point, 0.5):5.1f}x (goal <= 1.3x); n={len(values)}, "
            f"{values.requests_per_call:g} table requests"
        )


if __name__ == "__main__":
    stop_cleanly_on_sigterm()
    main()
