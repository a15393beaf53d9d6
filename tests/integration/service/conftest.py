"""Starts the stand-ins the service-layer tests drive: registries, ARM emulator, Event Grid, Azurite.

Three regions on free ports; fast ARM provisioning and replication so a whole
rollout takes seconds. Every process is stopped by pid when the package ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from devenv.arm.launcher import start_arm_emulator
from devenv.config import LocalEnv, isolated_env
from devenv.eventgrid.launcher import (
    DeliverySettings,
    SubscriptionSpec,
    TopicSpec,
    start_eventgrid,
    wait_subscription_active,
)
from devenv.local_settings import EVENTS_TOPIC
from devenv.registries import RegistryControl, start_registries
from devenv.tls import TlsFiles
from tests.integration.service.service_stack import ServiceStack
from tests.support.cloudevents_receiver import EventReceiver

REGIONS = ("eastus", "westus", "westeurope")
PRIMARY, SECONDARIES = REGIONS[0], REGIONS[1:]
RECEIVER_SUBSCRIPTION = "recorder"
# Deliveries retried within tenths of a second: tests wait on conditions, not on schedules.
FAST_DELIVERY = DeliverySettings(
    retry_base_s=0.05, retry_max_s=0.2, retry_jitter=0.2, timeout_s=5, validation_retry_s=0.3
)


def events_topic(receiver: EventReceiver) -> TopicSpec:
    """georollout's events topic with one subscription: the recording receiver."""
    return TopicSpec(
        EVENTS_TOPIC, subscriptions=(SubscriptionSpec(RECEIVER_SUBSCRIPTION, receiver.url),)
    )


@pytest.fixture(scope="package")
def service_env(tmp_path_factory: pytest.TempPathFactory, azurite: LocalEnv) -> LocalEnv:
    env = isolated_env(tmp_path_factory.mktemp("service"), REGIONS)
    return replace(
        env,
        azurite_port=azurite.azurite_port,
        arm_provisioning_s=1.0,
        replication_base_s=0.5,
        replication_bandwidth_bytes_per_s=50_000_000.0,
    )


@pytest.fixture(scope="package")
def registry_control(service_env: LocalEnv, tls_files: TlsFiles) -> Iterator[RegistryControl]:
    process = start_registries(service_env, tls_files, eventgrid_topic_endpoint=None)
    try:
        yield RegistryControl(service_env.relay_url)
    finally:
        process.stop()


@pytest.fixture(scope="package")
def arm_emulator(service_env: LocalEnv, tls_files: TlsFiles) -> Iterator[str]:
    process = start_arm_emulator(service_env, tls_files)
    try:
        yield service_env.arm_url
    finally:
        process.stop()


@pytest.fixture(scope="package")
def event_receiver(tls_files: TlsFiles) -> Iterator[EventReceiver]:
    receiver = EventReceiver(tls_files).start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(scope="package")
def eventgrid(
    service_env: LocalEnv, tls_files: TlsFiles, event_receiver: EventReceiver
) -> Iterator[str]:
    process = start_eventgrid(
        service_env, tls_files, [events_topic(event_receiver)], delivery=FAST_DELIVERY
    )
    try:
        wait_subscription_active(service_env, tls_files, EVENTS_TOPIC, RECEIVER_SUBSCRIPTION)
        yield service_env.eventgrid_url
    finally:
        process.stop()


@pytest.fixture(scope="package")
def stack(
    service_env: LocalEnv,
    tls_files: TlsFiles,
    registry_control: RegistryControl,
    arm_emulator: str,
    eventgrid: str,
    event_receiver: EventReceiver,
) -> ServiceStack:
    return ServiceStack(service_env, tls_files, registry_control, event_receiver)
