"""Detection with webhooks off: how long after an image really reached a slow replica
georollout saw it, probing with the production back-off scaled down, blind (no history)
and then paced by the expected arrival (the region's replication statistics).

In-process Services (the app's own follow-ups, a tick every 5 s) against the local
registries, ARM emulator, Event Grid emulator and Azurite; no regional webhook reaches the
app. The real arrival is measured apart from georollout: the slow replica's own log says
when the local replication stored the manifest there. Not a test: numbers depend on the
machine.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.figures import machine, percentile, stop_cleanly_on_sigterm
from benchmarks.stand_ins import running_stand_ins
from devenv.config import LocalEnv, isolated_env
from devenv.images import OCI_MANIFEST, build_image, push_image
from devenv.local_settings import app_settings
from devenv.registries import RegistryControl
from devenv.registries.request_log import manifest_writes
from devenv.tls import TlsFiles, ensure_tls
from shared.config import load_config
from shared.domain.model import rollout_id
from shared.domain.push import NoticeSource, PushNotice
from shared.domain.replication import ReplicationModel
from shared.entrypoints.startup import quiet_azure_sdk
from shared.service.intake import accept_notices
from shared.service.runtime import Services, build_services
from shared.service.tick import run_tick
from tests.integration.service.service_stack import FixedTokenCredential

REGIONS = ("eastus", "westus", "westeurope")
SLOW = "westeurope"
SLOW_DELAY_S = 6.0
BANDWIDTH = 2_000_000.0
# Production's back-off (15 s, growing to 300 s) and timer (30 s), divided by six; the
# registry's request budget (600 a minute by default) times six, so that it allows as many
# probes per back-off as in production (at 600, twelve images due at once wait for it).
SCALED = {
    "GEOROLLOUT_PROBE_BACKOFF_INITIAL_SECONDS": "2.5",
    "GEOROLLOUT_PROBE_BACKOFF_MAX_SECONDS": "50",
    "GEOROLLOUT_PROBE_BUDGET_PER_MINUTE": "3600",
    "GEOROLLOUT_DEPLOY_POLL_SECONDS": "2",
}
TICK_S = 5.0
SIZES_MB = (1, 4, 7, 10, 13, 16)
PER_SIZE = 2  # images of each size per phase: 12 lags for each p95
DEADLINE_S = 180.0


def _arrivals(env: LocalEnv, prefix: str) -> dict[str, datetime]:
    """When each image of repositories under `prefix` arrived in the slow replica: its first
    manifest write there, from the replica's own log (asking it in a loop would load the 2
    cores the app runs on)."""
    arrived: dict[str, datetime] = {}
    for write in manifest_writes(env, [SLOW], repository_prefix=prefix):
        repository = write.manifest_repository
        assert repository is not None
        arrived[repository] = min(write.at, arrived.get(repository, write.at))
    return arrived


async def _seen(services: Services, the_id: str) -> tuple[datetime, int]:
    """When georollout recorded the slow region replicated, and how many probes it took
    (the time is the rollout's own record: how often this looks does not change it)."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        loaded = await services.rollouts.get(the_id)
        region = loaded.rollout.region(SLOW) if loaded else None
        if region is not None and region.replicated_at is not None:
            return region.replicated_at, region.probe_attempts
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{the_id} never recorded replicated in {SLOW}")


async def _phase(
    services: Services, env: LocalEnv, tls: TlsFiles, label: str
) -> list[tuple[float, int]]:
    """Push `PER_SIZE` images of each size (each its own repository) and return (lag s,
    probes) for each."""
    pending = []
    for number, size_mb in enumerate(SIZES_MB * PER_SIZE):
        repository = f"bench/detect-{label}-{number}-{size_mb}"
        image = build_image(size_bytes=size_mb * 1_000_000, seed=f"{label}-{uuid.uuid4()}")
        digest = await asyncio.to_thread(
            push_image, env.primary.registry_url, repository, "v1", image, ca_path=tls.ca_pem
        )
        notice = PushNotice(
            registry=env.primary.registry_host,
            repository=repository,
            digest=digest,
            source=NoticeSource.EVENTGRID,
            tag="v1",
            media_type=OCI_MANIFEST,
            size=len(image.manifest),
            pushed_at=datetime.now(UTC),
        )
        await accept_notices(services, [notice])
        the_id = rollout_id(env.primary.registry_host, repository, digest)
        pending.append((repository, asyncio.create_task(_seen(services, the_id))))
    seen_at = [await seen for _, seen in pending]
    arrived = _arrivals(env, f"bench/detect-{label}-")  # one read of the log, after all
    return [
        ((at - arrived[repository]).total_seconds(), probes)
        for (repository, _), (at, probes) in zip(pending, seen_at, strict=True)
    ]


async def _ticks(services: Services) -> None:
    while True:
        await asyncio.sleep(TICK_S)
        await run_tick(services, time_budget_s=TICK_S)


async def _run(env: LocalEnv, tls: TlsFiles) -> dict[str, list[tuple[float, int]]]:
    settings = app_settings(env, tls) | SCALED | {"GEOROLLOUT_TABLE_NAME": "benchdetect"}
    services = build_services(load_config(settings), credential=FixedTokenCredential())
    services.follow_up_when_due()
    await services.ensure_table()
    ticking = asyncio.create_task(_ticks(services))
    try:
        # Blind: the statistics are kept, but no estimate is made (as before the ETA existed).
        with_estimates = services.replication.models

        async def no_history() -> dict[str, ReplicationModel]:
            return {}

        services.replication.models = no_history  # type: ignore[method-assign]
        blind = await _phase(services, env, tls, "blind")
        services.replication.models = with_estimates  # type: ignore[method-assign]
        paced = await _phase(services, env, tls, "paced")  # history from the blind phase
        return {"blind": blind, "paced": paced}
    finally:
        ticking.cancel()
        await services.close()


def main() -> None:
    quiet_azure_sdk("WARNING")  # as the app does at start-up (its default level)
    with tempfile.TemporaryDirectory() as state:
        env = isolated_env(Path(state), region_names=REGIONS)
        env = replace(env, replication_base_s=1.0, replication_bandwidth_bytes_per_s=BANDWIDTH)
        tls = ensure_tls(Path(state) / "tls")
        with running_stand_ins(env, tls):
            RegistryControl(env.relay_url).set_region(SLOW, extra_delay_s=SLOW_DELAY_S)
            results = asyncio.run(_run(env, tls))
    initial = float(SCALED["GEOROLLOUT_PROBE_BACKOFF_INITIAL_SECONDS"])
    print(f"machine: {machine()}")
    print(
        f"detection in {SLOW} without webhooks: replication {SLOW_DELAY_S:g} s + 1 s + size at "
        f"{BANDWIDTH / 1e6:g} MB/s, {PER_SIZE} images each of {', '.join(map(str, SIZES_MB))} MB; back-off "
        f"{initial:g}-{SCALED['GEOROLLOUT_PROBE_BACKOFF_MAX_SECONDS']} s (production's / 6)"
    )
    for label, what in (("blind", "no history"), ("paced", "paced by the ETA")):
        lags = [lag for lag, _ in results[label]]
        probes = [n for _, n in results[label]]
        print(
            f"  {what:17}: lag median {statistics.median(lags):5.2f} s, p95 {percentile(lags, 0.95):5.2f} s, "
            f"max {max(lags):5.2f} s; probes per image median {statistics.median(probes):g} "
            f"(goal: p95 <= initial back-off + 10% = {initial * 1.1:.2f} s)"
        )


if __name__ == "__main__":
    stop_cleanly_on_sigterm()
    main()
