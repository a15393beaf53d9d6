"""The reconcile step under the failures the architecture names: two triggers at once (ETag race),
a crash between starting a deployment and saving it, and a deployment Azure fails."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import pytest

from devenv.process import wait_until
from shared.adapters.foundry_deployer import ProvisioningState
from shared.domain.events import EventType, event_id
from shared.domain.model import DeployStep, RegionState, Rollout, RolloutState
from shared.domain.names import deployment_name
from shared.service.intake import record_notices
from shared.service.reconcile import reconcile
from shared.service.runtime import Services
from tests.integration.service.arm_audit import audit_records, deployment_writes, records_for
from tests.integration.service.conftest import PRIMARY, REGIONS, SECONDARIES
from tests.integration.service.driving import (
    DEADLINE_S,
    POLL_S,
    describe,
    is_live,
    reconcile_until,
    stored,
)
from tests.integration.service.pushing import Pushed, delete_manifest, notice_of, push, replica_has
from tests.integration.service.service_stack import ServiceStack, new_table_name

pytestmark = pytest.mark.integration


async def _traffic(services: Services, rollout: Rollout) -> dict[str, dict[str, int]]:
    assert rollout.target is not None
    traffic = {}
    for region in REGIONS:
        status = await services.deployer.endpoint_status(region, rollout.target.endpoint)
        traffic[region] = dict(status.traffic)
    return traffic


def test_two_reconciles_racing_on_one_rollout_create_each_deployment_once(
    stack: ServiceStack, caplog: pytest.LogCaptureFixture
) -> None:
    pushed = push(stack.env, stack.tls, "service/race", "v1", seed="race-v1")
    table = new_table_name()
    caplog.set_level(logging.INFO, logger="georollout.reconcile")

    async def scenario() -> Rollout:
        # Two workers (two sets of clients) on one table: the timer and an event at once.
        async with stack.services(table=table) as first, stack.services(table=table) as second:
            await record_notices(first, [notice_of(pushed)])
            deadline = time.monotonic() + DEADLINE_S
            while True:
                await asyncio.gather(
                    reconcile(first, pushed.rollout_id), reconcile(second, pushed.rollout_id)
                )
                rollout = await stored(first, pushed.rollout_id)
                if is_live(rollout) and not rollout.outbox:
                    break
                assert time.monotonic() < deadline, f"not live in time: {describe(rollout)}"
                await asyncio.sleep(POLL_S)
            name = deployment_name(pushed.digest)
            assert rollout.target is not None
            for region in rollout.regions:
                assert region.state is RegionState.LIVE, describe(rollout)
                assert region.deploy_step is DeployStep.DONE
                assert region.deployment is not None and region.deployment.name == name
                assert region.deploy_started_at is not None and region.live_at is not None
                assert region.deploy_started_at <= region.live_at
                lease = await first.store.get_endpoint_lease(region.region, rollout.target.endpoint)
                assert lease is None, f"lease on {region.region} not released: {lease}"
            assert await _traffic(first, rollout) == {r: {name: 100} for r in REGIONS}
            return rollout

    asyncio.run(scenario())

    conflicts = [r for r in caplog.records if "changed under us" in r.getMessage()]
    assert conflicts, "the two steps never collided: the race was not exercised"
    writes = deployment_writes(stack.env, stack.tls, pushed.digest)
    assert sorted(w["region"] for w in writes) == sorted(REGIONS), writes
    assert {w["action"] for w in writes} == {"deployment_create"}, writes


def test_a_deployment_started_before_a_crash_is_adopted_not_created_again(
    stack: ServiceStack,
) -> None:
    pushed = push(stack.env, stack.tls, "service/crash", "v1", seed="crash-v1")
    name = deployment_name(pushed.digest)

    async def scenario() -> None:
        async with stack.services() as services:
            await record_notices(services, [notice_of(pushed)])
            rollout = await stored(services, pushed.rollout_id)
            assert rollout.region(PRIMARY).state is RegionState.REPLICATED, describe(rollout)
            assert rollout.target is not None
            endpoint = rollout.target.endpoint
            # What the dead process had done: the endpoint, then the deployment's PUT, unsaved.
            await services.deployer.begin_create_endpoint(PRIMARY, endpoint, auth_mode="key")
            await _wait_endpoint_ready(services, endpoint)
            await services.deployer.begin_create_deployment(
                PRIMARY,
                endpoint,
                name,
                image=f"{pushed.registry}/{pushed.repository}@{pushed.digest}",
                instance_type="Standard_DS3_v2",
                instance_count=1,
            )
            unsaved = await stored(services, pushed.rollout_id)
            assert unsaved.region(PRIMARY).deployment is None

            live = await reconcile_until(
                services, pushed.rollout_id, is_live, what="every region live"
            )
            adopted = live.region(PRIMARY).deployment
            assert adopted is not None and adopted.name == name

    asyncio.run(scenario())

    writes = deployment_writes(stack.env, stack.tls, pushed.digest)
    primary_writes = [w for w in writes if w["region"] == PRIMARY]
    assert len(primary_writes) == 1, primary_writes
    assert primary_writes[0]["action"] == "deployment_create"
    assert Counter(w["region"] for w in writes) == Counter(REGIONS), writes


async def _wait_endpoint_ready(services: Services, endpoint: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while (await services.deployer.endpoint_status(PRIMARY, endpoint)).state is not (
        ProvisioningState.SUCCEEDED
    ):
        assert time.monotonic() < deadline, f"endpoint {endpoint} never provisioned"
        await asyncio.sleep(POLL_S)


def _wait_replicated(stack: ServiceStack, pushed: Pushed) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not all(
        replica_has(stack.env, stack.tls, region, pushed.repository, pushed.digest)
        for region in SECONDARIES
    ):
        assert time.monotonic() < deadline, "the image never reached the secondaries"
        time.sleep(POLL_S)


def test_a_failed_primary_deployment_keeps_traffic_and_holds_the_secondaries(
    stack: ServiceStack,
) -> None:
    repository = "service/pull-fails"
    serving = push(stack.env, stack.tls, repository, "v1", seed="pull-fails-v1")

    async def scenario() -> Pushed:
        async with stack.services() as services:
            await record_notices(services, [notice_of(serving)])
            await reconcile_until(services, serving.rollout_id, is_live, what="v1 live")
            previous = await stored(services, serving.rollout_id)
            before = await _traffic(services, previous)
            assert before == {r: {deployment_name(serving.digest): 100} for r in REGIONS}

            broken = push(stack.env, stack.tls, repository, "v2", seed="pull-fails-v2")
            _wait_replicated(stack, broken)
            # Intake reads the manifest and probes: every replica has it, so it is deployable.
            await record_notices(services, [notice_of(broken)])
            seen = await stored(services, broken.rollout_id)
            assert {r.state for r in seen.regions} == {RegionState.REPLICATED}, describe(seen)
            # Gone from the primary before Foundry pulls it: the pull must fail there.
            delete_manifest(stack.env, stack.tls, PRIMARY, repository, broken.digest)

            failed = await reconcile_until(
                services,
                broken.rollout_id,
                lambda r: r.region(PRIMARY).deploy_step is DeployStep.DISCARDED,
                what="the failed primary deployment discarded",
            )
            primary = failed.region(PRIMARY)
            assert failed.state is RolloutState.FAILED
            assert primary.state is RegionState.ROLLED_BACK
            assert primary.last_error is not None
            assert primary.last_error.startswith("ImagePullFailed"), primary.last_error
            for name in SECONDARIES:
                assert failed.region(name).state is RegionState.HELD, describe(failed)
                assert failed.region(name).deployment is None
            assert await _traffic(services, previous) == before
            return broken

    broken = asyncio.run(scenario())

    records = records_for(stack.env, stack.tls, broken.digest)
    assert {r["region"] for r in records} == {PRIMARY}, records
    actions = [r["action"] for r in records]
    assert actions[:2] == ["deployment_create", "deployment_failed"], actions
    assert "deployment_deleted" in actions, actions
    failed_event = event_id(broken.rollout_id, 1, PRIMARY, EventType.REGION_FAILED)
    wait_until(
        lambda: bool(stack.receiver.deliveries([failed_event])),
        timeout=DEADLINE_S,
        what="georollout.region.failed delivered",
    )
    failure = stack.receiver.deliveries([failed_event])[0]
    assert failure["type"] == EventType.REGION_FAILED.value
    assert str(failure["data"]["error"]).startswith("ImagePullFailed"), failure
    shifts_to_broken = [
        r
        for r in audit_records(stack.env, stack.tls)
        if r["action"] == "traffic_changed"
        and any(d["digest"] == broken.digest for d in r["deployments"].values())
    ]
    assert shifts_to_broken == []
