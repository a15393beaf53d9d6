"""Starts the local stand-ins the adapter tests run against: registries, ARM emulator, Event Grid.

One environment on free ports for the whole package: three regions, where
westeurope's replica never receives pushes (a region that lacks every digest).
Every process is stopped by pid when its fixture ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from devenv.arm.launcher import start_arm_emulator
from devenv.config import LocalEnv, isolated_env
from devenv.eventgrid.launcher import DeliverySettings, TopicSpec, start_eventgrid, topic_endpoint
from devenv.registries import RegistryControl, start_registries
from devenv.tls import TlsFiles

REGIONS = ("eastus", "westus", "westeurope")
REGION_WITHOUT_IMAGES = "westeurope"
EVENTS_TOPIC = "georollout-events"
# Deliveries and handshake retries in tenths of a second, so a test waits on conditions, not schedules.
FAST_DELIVERY = DeliverySettings(
    retry_base_s=0.05, retry_max_s=0.2, retry_jitter=0.2, timeout_s=5, validation_retry_s=0.3
)


@pytest.fixture(scope="package")
def adapter_env(tmp_path_factory: pytest.TempPathFactory) -> LocalEnv:
    env = isolated_env(tmp_path_factory.mktemp("adapters"), REGIONS)
    env = env.with_region(REGION_WITHOUT_IMAGES, never_replicates=True)
    # Provisioning long enough to see an operation in progress, short enough to keep tests fast.
    return replace(
        env,
        arm_provisioning_s=1.5,
        replication_base_s=0.3,
        replication_bandwidth_bytes_per_s=50_000_000.0,
    )


@pytest.fixture(scope="package")
def registries(adapter_env: LocalEnv, tls_files: TlsFiles) -> Iterator[RegistryControl]:
    """Every region's registry and the replicator; yields the control client for region knobs."""
    process = start_registries(adapter_env, tls_files, eventgrid_topic_endpoint=None)
    try:
        yield RegistryControl(adapter_env.relay_url)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def arm_emulator(adapter_env: LocalEnv, tls_files: TlsFiles) -> Iterator[str]:
    """The ARM emulator with one workspace per region; yields its base URL."""
    process = start_arm_emulator(adapter_env, tls_files)
    try:
        yield adapter_env.arm_url
    finally:
        process.stop()


@pytest.fixture(scope="module")
def events_topic(adapter_env: LocalEnv, tls_files: TlsFiles) -> Iterator[str]:
    """The Event Grid emulator with one CloudEvents topic and no subscription yet; yields its endpoint."""
    process = start_eventgrid(
        adapter_env, tls_files, [TopicSpec(EVENTS_TOPIC)], delivery=FAST_DELIVERY
    )
    try:
        yield topic_endpoint(adapter_env, EVENTS_TOPIC)
    finally:
        process.stop()
