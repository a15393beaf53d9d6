"""Probe throughput: georollout's ReplicaProbe (one pooled TLS session) against a naive client.

Runs against a real local registry over TLS and reports rates and their ratio,
with the machine it ran on. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from azure.containerregistry.aio import ContainerRegistryClient

from benchmarks.figures import machine, stop_cleanly_on_sigterm
from devenv.config import isolated_env
from devenv.images import build_image, push_image
from devenv.registries.launcher import start_registries
from devenv.tls import ensure_tls
from shared.adapters.replica_probe import ReplicaProbe
from shared.domain.verdicts import ProbeVerdict

PROBES = 400
CONCURRENCY = 50
REPOSITORY = "bench/model"


async def pooled(endpoint: str, ca: str, digest: str) -> float:
    probe = ReplicaProbe(
        {"r": endpoint}, credential=None, ca_bundle=ca, max_connections=CONCURRENCY
    )
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with gate:
            outcome = await probe.probe("r", REPOSITORY, digest)
            assert outcome.verdict is ProbeVerdict.PRESENT, outcome

    try:
        await one()  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(PROBES)))
        return PROBES / (time.perf_counter() - started)
    finally:
        await probe.close()


async def naive(endpoint: str, ca: str, digest: str) -> float:
    # What the SDK does when given a CA path: a new SSL context (and connection) per request.
    client = ContainerRegistryClient(endpoint, None, connection_verify=ca, retry_total=0)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with gate:
            await client.get_manifest(REPOSITORY, digest)

    try:
        await one()
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(PROBES)))
        return PROBES / (time.perf_counter() - started)
    finally:
        await client.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as state:
        env = isolated_env(Path(state), region_names=("benchregion",))
        tls = ensure_tls(Path(state) / "tls")
        registries = start_registries(env, tls, eventgrid_topic_endpoint=None)
        try:
            endpoint = env.primary.registry_url
            digest = push_image(
                endpoint,
                REPOSITORY,
                "v1",
                build_image(size_bytes=4096, seed="bench"),
                ca_path=tls.ca_pem,
            )
            fast = asyncio.run(pooled(endpoint, str(tls.ca_pem), digest))
            slow = asyncio.run(naive(endpoint, str(tls.ca_pem), digest))
        finally:
            registries.stop()
    print(f"machine: {machine()}")
    print(
        f"{PROBES} manifest probes, {CONCURRENCY} at a time, one local Distribution registry over TLS"
    )
    print(f"  ReplicaProbe (pooled TLS session): {fast:8.0f} probes/s")
    print(f"  SDK with connection_verify=<path>: {slow:8.0f} probes/s")
    print(f"  ratio: {fast / slow:.1f}x")


if __name__ == "__main__":
    stop_cleanly_on_sigterm()
    main()
