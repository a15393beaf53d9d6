"""Operators steer rollouts through the service layer (`shared.service.steering.act`): hold,
resume, retry and rollback against the real registries, ARM emulator, Event Grid emulator and
Azurite, with what Azure ML ends up serving checked through azure-ai-ml's own MLClient."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any

import pytest
from azure.ai.ml import MLClient
from azure.core.exceptions import ResourceNotFoundError

from devenv.process import wait_until
from shared.adapters.rollout_repository import Loaded, RolloutRepository, StaleRecordError
from shared.domain.events import EventType, event_id, operator_event_id
from shared.domain.model import DeployStep, RegionState, Rollout, RolloutState, rollout_id
from shared.domain.names import deployment_name
from shared.domain.serialization import rollout_to_document
from shared.errors import InvalidInputError, NotFoundError
from shared.service.intake import record_notices
from shared.service.reconcile import Clock, reconcile, utc_now
from shared.service.runtime import Services
from shared.service.steering import InvalidTransitionError, act
from shared.service.tick import TickReport, run_tick
from tests.integration.service.arm_audit import deployment_writes, records_for
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
from tests.integration.service.service_stack import (
    FixedTokenCredential,
    ServiceStack,
    ShiftedClock,
    new_table_name,
)

pytestmark = pytest.mark.integration

HELD_SECONDARY, OTHER_SECONDARY = SECONDARIES
# Reconcile passes (and timer ticks) run after a state is reached, to show that nothing
# further happens: each one would start the next step if the hold did not stop it.
EXTRA_PASSES = 4
# The state machine's default verification deadline (RolloutPolicy.verify_timeout_s).
VERIFY_TIMEOUT_S = 600
NO_HEADERS: dict[str, str] = {}


# --- Azure ML as azure-ai-ml sees it ----------------------------------------------------


class Foundry:
    """azure-ai-ml MLClients on each region's workspace in the ARM emulator (the same
    client the deployer uses, built independently of it)."""

    def __init__(self, services: Services) -> None:
        config = services.config
        arm = config.arm_endpoint.rstrip("/") + "/"
        self._options: dict[str, Any] = {
            "show_progress": False,
            "enable_telemetry": False,
            "cloud": "GeoRolloutTests-" + hashlib.sha256(arm.encode()).hexdigest()[:10],
            "cloud_metadata": {
                "azure_portal": arm,
                "resource_manager": arm,
                "active_directory": "https://login.microsoftonline.com/",
                "aml_resource_id": arm,
                "storage_endpoint": "core.windows.net",
                "registry_discovery_endpoint": arm,
            },
        }
        if config.ca_bundle:
            self._options["connection_verify"] = str(config.ca_bundle)
        self._workspaces = {r.name: r.workspace for r in config.regions}
        self._clients: dict[str, MLClient] = {}

    def client(self, region: str) -> MLClient:
        if region not in self._clients:
            ws = self._workspaces[region]
            self._clients[region] = MLClient(
                FixedTokenCredential(),
                ws.subscription_id,
                ws.resource_group,
                ws.name,
                **self._options,
            )
        return self._clients[region]

    def _traffic(self, region: str, endpoint: str) -> dict[str, int] | None:
        try:
            found = self.client(region).online_endpoints.get(endpoint)
        except ResourceNotFoundError:
            return None
        return {str(k): int(v) for k, v in (found.traffic or {}).items()}

    def _deployments(self, region: str, endpoint: str) -> dict[str, str]:
        try:
            listed = list(self.client(region).online_deployments.list(endpoint))
        except ResourceNotFoundError:
            return {}
        # azure-ai-ml answers an enum (DeploymentProvisioningState) or, for some, a string.
        return {
            str(d.name): str(getattr(d.provisioning_state, "value", d.provisioning_state))
            for d in listed
        }

    async def traffic(self, region: str, endpoint: str) -> dict[str, int] | None:
        """The endpoint's traffic split (None: the endpoint does not exist)."""
        return await asyncio.to_thread(self._traffic, region, endpoint)

    async def deployments(self, region: str, endpoint: str) -> dict[str, str]:
        """The endpoint's deployments and their provisioning states ({}: no endpoint)."""
        return await asyncio.to_thread(self._deployments, region, endpoint)

    def close(self) -> None:
        for client in self._clients.values():
            close = getattr(client, "close", None)
            if close is not None:
                close()


# --- helpers -----------------------------------------------------------------------------


def _endpoint(rollout: Rollout) -> str:
    assert rollout.target is not None, describe(rollout)
    return rollout.target.endpoint


def _wait_replicated(stack: ServiceStack, pushed: Pushed, regions: Iterable[str]) -> None:
    wait_until(
        lambda: all(
            replica_has(stack.env, stack.tls, region, pushed.repository, pushed.digest)
            for region in regions
        ),
        timeout=DEADLINE_S,
        interval=POLL_S,
        what=f"{pushed.repository}@{pushed.digest} in {', '.join(regions)}",
    )


async def _record_replicated(stack: ServiceStack, services: Services, pushed: Pushed) -> Rollout:
    """Intake of a push every replica already has: every region is replicated at once."""
    await asyncio.to_thread(_wait_replicated, stack, pushed, REGIONS)
    result = await record_notices(services, [notice_of(pushed)])
    assert result.recorded == (pushed.rollout_id,)
    rollout = await stored(services, pushed.rollout_id)
    assert {r.state for r in rollout.regions} == {RegionState.REPLICATED}, describe(rollout)
    return rollout


async def _passes(services: Services, rid: str, clock: Clock = utc_now) -> Rollout:
    """A few more reconcile passes (as repeated triggers would run them); the rollout after."""
    for _ in range(EXTRA_PASSES):
        await reconcile(services, rid, clock=clock)
        await asyncio.sleep(POLL_S)
    return await stored(services, rid)


async def _ticks(services: Services, clock: Clock) -> list[TickReport]:
    reports = []
    for _ in range(EXTRA_PASSES):
        reports.append(await run_tick(services, time_budget_s=20, clock=clock))
        await asyncio.sleep(POLL_S)
    return reports


async def _settled(services: Services, rid: str) -> Rollout:
    """More reconcile passes and timer ticks after a state was reached; the rollout after."""
    await _passes(services, rid)
    await _ticks(services, utc_now)
    return await stored(services, rid)


def _regions_doc(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["region"]: r for r in document["regions"]}


def _snapshot(rollout: Rollout) -> list[tuple[Any, ...]]:
    """What a step would change in each region."""
    return [
        (
            r.region,
            r.state,
            r.deploy_step,
            r.operator_hold,
            r.smoke_attempts,
            r.deployment.name if r.deployment else None,
            r.live_at,
            r.last_error,
        )
        for r in rollout.regions
    ]


def _every_region(rollout: Rollout, state: RegionState, step: DeployStep) -> bool:
    return all(r.state is state and r.deploy_step is step for r in rollout.regions)


# --- hold and resume ---------------------------------------------------------------------


def test_a_hold_lets_the_provisioning_in_flight_finish_and_starts_no_further_step(
    stack: ServiceStack,
) -> None:
    pushed = push(stack.env, stack.tls, "service/op-hold-deploying", "v1", seed="op-hold-dep-v1")
    rid = pushed.rollout_id
    name = deployment_name(pushed.digest)
    clock = ShiftedClock()

    async def scenario() -> None:
        async with stack.services() as services:
            foundry = Foundry(services)
            try:
                await _record_replicated(stack, services, pushed)
                creating = await reconcile_until(
                    services,
                    rid,
                    lambda r: r.region(PRIMARY).deploy_step is DeployStep.CREATING,
                    what="the primary's deployment provisioning",
                    clock=clock,
                )
                endpoint = _endpoint(creating)

                answer = await act(
                    services,
                    rid,
                    "hold",
                    {"reason": "incident 42", "actor": "alice"},
                    {"X-MS-CLIENT-PRINCIPAL-NAME": "mallory"},  # not trusted: auth is off
                    clock=clock,
                )
                document = answer.document
                assert document["state"] == RolloutState.HELD.value
                regions = _regions_doc(document)
                assert regions[PRIMARY]["state"] == RegionState.HELD.value
                assert regions[PRIMARY]["held"] is True
                assert regions[PRIMARY]["held_in"] == RegionState.DEPLOYING.value
                assert regions[PRIMARY]["deploy_step"] == DeployStep.CREATING.value
                for secondary in SECONDARIES:
                    assert regions[secondary]["state"] == RegionState.HELD.value
                    assert regions[secondary]["held_in"] == RegionState.REPLICATED.value
                entry = document["history"][-1]
                assert entry["action"] == "hold" and entry["outcome"] == "accepted", entry
                assert entry["actor"] == "alice" and entry["actor_verified"] is False, entry
                assert entry["reason"] == "incident 42"
                assert entry["regions"] == list(REGIONS), entry
                assert rollout_to_document(await stored(services, rid)) == document

                # The provisioning Azure was already doing finishes and is recorded...
                verifying = await reconcile_until(
                    services,
                    rid,
                    lambda r: r.region(PRIMARY).deploy_step is DeployStep.VERIFYING,
                    what="the provisioning in flight recorded",
                    clock=clock,
                )
                assert verifying.region(PRIMARY).operator_hold
                # ...and nothing after it starts: no smoke request, no traffic, no secondary.
                held = await _passes(services, rid, clock)
                assert held.state is RolloutState.HELD, describe(held)
                primary = held.region(PRIMARY)
                assert primary.state is RegionState.DEPLOYING
                assert primary.deploy_step is DeployStep.VERIFYING, describe(held)
                assert primary.smoke_attempts == 0
                for secondary in SECONDARIES:
                    progress = held.region(secondary)
                    assert progress.state is RegionState.REPLICATED, describe(held)
                    assert progress.deployment is None and progress.deploy_started_at is None
                    assert await foundry.deployments(secondary, endpoint) == {}
                assert await foundry.deployments(PRIMARY, endpoint) == {name: "Succeeded"}
                assert (await foundry.traffic(PRIMARY, endpoint) or {}).get(name, 0) == 0

                # The timer, past the verification deadline: a paused step has none.
                before = _snapshot(held)
                clock.advance(VERIFY_TIMEOUT_S + 60)
                reports = await _ticks(services, clock)
                assert any(r.reconciled for r in reports), reports
                after = await stored(services, rid)
                assert _snapshot(after) == before, describe(after)
                assert after.state is RolloutState.HELD
                assert (await foundry.traffic(PRIMARY, endpoint) or {}).get(name, 0) == 0

                resumed = await act(services, rid, "resume", None, NO_HEADERS, clock=clock)
                assert resumed.document["state"] == RolloutState.DEPLOYING.value
                assert not any(r["held"] for r in resumed.document["regions"])
                assert resumed.document["history"][-1]["actor"] == "unknown"
                live = await reconcile_until(
                    services, rid, is_live, what="every region live after resume", clock=clock
                )
                for region in REGIONS:
                    assert live.region(region).deployment is not None
                    assert await foundry.traffic(region, endpoint) == {name: 100}
                assert [e.action.value for e in live.history] == ["hold", "resume"]
            finally:
                foundry.close()

    asyncio.run(scenario())

    records = records_for(stack.env, stack.tls, pushed.digest)
    provisioned = [r["region"] for r in records if r["action"] == "deployment_provisioned"]
    assert sorted(provisioned) == sorted(REGIONS), records
    writes = deployment_writes(stack.env, stack.tls, pushed.digest)
    assert sorted(w["region"] for w in writes) == sorted(REGIONS), writes


def test_a_held_replicated_secondary_gets_no_deployment_until_resumed(
    stack: ServiceStack,
) -> None:
    pushed = push(stack.env, stack.tls, "service/op-hold-replicated", "v1", seed="op-hold-rep-v1")
    rid = pushed.rollout_id
    name = deployment_name(pushed.digest)

    async def scenario() -> None:
        async with stack.services() as services:
            foundry = Foundry(services)
            try:
                await _record_replicated(stack, services, pushed)
                answer = await act(services, rid, "hold", {"regions": [HELD_SECONDARY]}, NO_HEADERS)
                held_doc = _regions_doc(answer.document)[HELD_SECONDARY]
                assert held_doc["state"] == RegionState.HELD.value
                assert held_doc["held_in"] == RegionState.REPLICATED.value
                assert _regions_doc(answer.document)[PRIMARY]["held"] is False
                assert answer.document["state"] == RolloutState.HELD.value

                others = await reconcile_until(
                    services,
                    rid,
                    lambda r: all(
                        r.region(n).state is RegionState.LIVE for n in (PRIMARY, OTHER_SECONDARY)
                    ),
                    what="the regions not held live",
                )
                endpoint = _endpoint(others)
                await _passes(services, rid)  # stepped again: still no deployment there
                # Nothing can start until the resume, so the timer does not look at it.
                reports = await _ticks(services, utc_now)
                assert not any(r.due or r.followed for r in reports), reports
                held = await stored(services, rid)
                assert held.state is RolloutState.HELD, describe(held)
                waiting = held.region(HELD_SECONDARY)
                assert waiting.state is RegionState.REPLICATED and waiting.operator_hold
                assert waiting.deployment is None and waiting.deploy_started_at is None
                assert waiting.lease_until is None
                assert await foundry.deployments(HELD_SECONDARY, endpoint) == {}
                writes = deployment_writes(stack.env, stack.tls, pushed.digest)
                assert sorted(w["region"] for w in writes) == sorted((PRIMARY, OTHER_SECONDARY)), (
                    writes
                )

                resumed = await act(
                    services, rid, "resume", {"regions": [HELD_SECONDARY]}, NO_HEADERS
                )
                assert _regions_doc(resumed.document)[HELD_SECONDARY]["state"] == (
                    RegionState.REPLICATED.value
                )
                live = await reconcile_until(services, rid, is_live, what="every region live")
                assert live.region(HELD_SECONDARY).resumed_at is not None
                assert await foundry.traffic(HELD_SECONDARY, endpoint) == {name: 100}
            finally:
                foundry.close()

    asyncio.run(scenario())


# --- retry -------------------------------------------------------------------------------


def test_a_retried_primary_deploys_a_new_attempt_and_releases_the_held_secondaries(
    stack: ServiceStack,
) -> None:
    repository = "service/op-retry"
    pushed = push(stack.env, stack.tls, repository, "v1", seed="op-retry-v1")
    rid = pushed.rollout_id
    first, second = deployment_name(pushed.digest), deployment_name(pushed.digest, attempt=2)
    assert second.endswith("-a2") and first != second

    async def scenario() -> None:
        async with stack.services() as services:
            foundry = Foundry(services)
            try:
                await _record_replicated(stack, services, pushed)
                # Gone from the primary before Foundry pulls it: the pull fails there for real.
                await asyncio.to_thread(
                    delete_manifest, stack.env, stack.tls, PRIMARY, repository, pushed.digest
                )
                failed = await reconcile_until(
                    services,
                    rid,
                    lambda r: r.region(PRIMARY).deploy_step is DeployStep.DISCARDED,
                    what="the failed primary deployment discarded",
                )
                endpoint = _endpoint(failed)
                primary = failed.region(PRIMARY)
                assert failed.state is RolloutState.FAILED, describe(failed)
                assert primary.state in (RegionState.FAILED, RegionState.ROLLED_BACK)
                assert primary.last_error is not None
                assert primary.last_error.startswith("ImagePullFailed"), primary.last_error
                assert primary.deployment is not None and primary.deployment.name == first
                for secondary in SECONDARIES:
                    assert failed.region(secondary).state is RegionState.HELD, describe(failed)
                assert await foundry.deployments(PRIMARY, endpoint) == {}

                # A held secondary alone cannot go on: it waits for the primary.
                with pytest.raises(InvalidTransitionError) as refused:
                    await act(services, rid, "retry", {"regions": [HELD_SECONDARY]}, NO_HEADERS)
                assert PRIMARY in refused.value.message, refused.value.message

                # The cause goes away: the image is pushed again (the delete reached every
                # replica first, so the copies that follow are the new push's).
                await asyncio.to_thread(
                    wait_until,
                    lambda: (
                        not any(
                            replica_has(stack.env, stack.tls, r, repository, pushed.digest)
                            for r in REGIONS
                        )
                    ),
                    timeout=DEADLINE_S,
                    what="the delete replicated",
                )
                again = push(stack.env, stack.tls, repository, "v1", seed="op-retry-v1")
                assert again.digest == pushed.digest
                await asyncio.to_thread(_wait_replicated, stack, again, REGIONS)

                answer = await act(services, rid, "retry", {"regions": [PRIMARY]}, NO_HEADERS)
                regions = _regions_doc(answer.document)
                assert regions[PRIMARY]["attempt"] == 2
                assert regions[PRIMARY]["state"] == RegionState.REPLICATED.value
                assert regions[PRIMARY]["deployment"] is None
                for secondary in SECONDARIES:
                    assert regions[secondary]["state"] == RegionState.REPLICATED.value
                    assert regions[secondary]["attempt"] == 1
                assert answer.document["history"][-1]["outcome"] == "accepted"

                primary_live = await reconcile_until(
                    services,
                    rid,
                    lambda r: r.region(PRIMARY).state is RegionState.LIVE,
                    what="the primary's second attempt live",
                )
                retried = primary_live.region(PRIMARY)
                assert retried.deployment is not None and retried.deployment.name == second
                assert await foundry.deployments(PRIMARY, endpoint) == {second: "Succeeded"}
                assert await foundry.traffic(PRIMARY, endpoint) == {second: 100}

                live = await reconcile_until(services, rid, is_live, what="every region live")
                live_primary = live.region(PRIMARY)
                assert live_primary.live_at is not None
                for secondary in SECONDARIES:
                    progress = live.region(secondary)
                    assert progress.deployment is not None
                    assert progress.deployment.name == first  # their first attempt
                    assert progress.deploy_started_at is not None
                    assert progress.deploy_started_at > live_primary.live_at
                    assert await foundry.traffic(secondary, endpoint) == {first: 100}
                assert [(e.action.value, e.outcome) for e in live.history] == [
                    ("retry", "refused"),
                    ("retry", "accepted"),
                ]
            finally:
                foundry.close()

    asyncio.run(scenario())

    records = records_for(stack.env, stack.tls, pushed.digest)
    in_primary = [(r["action"], r["deployment"]) for r in records if r["region"] == PRIMARY]
    assert in_primary.index(("deployment_failed", first)) < in_primary.index(
        ("deployment_deleted", first)
    ), in_primary
    assert in_primary.index(("deployment_deleted", first)) < in_primary.index(
        ("deployment_create", second)
    ), in_primary
    assert ("deployment_provisioned", second) in in_primary

    # The second attempt's events are new events (the attempt is in their ids).
    region_failed = event_id(rid, 1, PRIMARY, EventType.REGION_FAILED)
    region_live = event_id(rid, 1, PRIMARY, EventType.REGION_LIVE, 2)
    finished_failed = event_id(rid, 1, "", EventType.ROLLOUT_FINISHED)
    finished_live = event_id(rid, 1, "", EventType.ROLLOUT_FINISHED, 2)
    wanted = [region_failed, region_live, finished_failed, finished_live]
    wait_until(
        lambda: len(stack.receiver.deliveries(wanted)) >= len(wanted),
        timeout=DEADLINE_S,
        what="both attempts' events delivered",
    )
    delivered = {e["id"]: e for e in stack.receiver.deliveries(wanted)}
    assert delivered[region_failed]["data"]["attempt"] == 1
    assert delivered[region_live]["data"]["attempt"] == 2
    assert delivered[region_live]["data"]["deployment"] == second
    assert delivered[finished_failed]["data"]["state"] == RolloutState.FAILED.value
    assert delivered[finished_live]["data"]["state"] == RolloutState.LIVE.value


# --- rollback ----------------------------------------------------------------------------


async def _a_then_b_live(
    stack: ServiceStack, services: Services, repository: str, seed: str
) -> tuple[Pushed, Pushed, Rollout]:
    """Push A and let it go live everywhere, then B over it; B as it is once live."""
    a = push(stack.env, stack.tls, repository, "v1", seed=f"{seed}-a")
    await record_notices(services, [notice_of(a)])
    await reconcile_until(services, a.rollout_id, is_live, what="A live everywhere")
    b = push(stack.env, stack.tls, repository, "v2", seed=f"{seed}-b")
    await record_notices(services, [notice_of(b)])
    live = await reconcile_until(services, b.rollout_id, is_live, what="B live everywhere")
    for region in live.regions:
        assert region.previous_deployment == deployment_name(a.digest), describe(live)
        assert region.previous_rollout == a.rollout_id
    return a, b, live


def test_a_rollback_puts_the_traffic_back_on_the_kept_previous_deployment(
    stack: ServiceStack,
) -> None:
    repository = "service/op-rollback-kept"

    async def scenario() -> tuple[Pushed, Pushed]:
        async with stack.services(GEOROLLOUT_KEEP_PREVIOUS_MINUTES="600") as services:
            foundry = Foundry(services)
            try:
                a, b, live = await _a_then_b_live(stack, services, repository, "op-rb-kept")
                endpoint = _endpoint(live)
                name_a, name_b = deployment_name(a.digest), deployment_name(b.digest)
                for region in REGIONS:
                    assert live.region(region).deploy_step is DeployStep.KEEPING_PREVIOUS
                    assert await foundry.deployments(region, endpoint) == {
                        name_a: "Succeeded",
                        name_b: "Succeeded",
                    }
                    # Azure lists every deployment in the split, the kept one at 0%.
                    assert await foundry.traffic(region, endpoint) == {name_a: 0, name_b: 100}

                answer = await act(
                    services, b.rollout_id, "rollback", {"reason": "bad model"}, NO_HEADERS
                )
                assert answer.document["state"] == RolloutState.ROLLED_BACK.value
                for region in answer.document["regions"]:
                    assert region["deploy_step"] == DeployStep.RESTORING.value, region
                    assert region["restore_to"]["name"] == name_a, region

                back = await reconcile_until(
                    services,
                    b.rollout_id,
                    lambda r: _every_region(r, RegionState.ROLLED_BACK, DeployStep.DISCARDED),
                    what="B rolled back and its deployments deleted",
                )
                # Later steps (events, the timer) change nothing about what serves.
                back = await _settled(services, b.rollout_id)
                assert back.state is RolloutState.ROLLED_BACK, describe(back)
                assert _every_region(back, RegionState.ROLLED_BACK, DeployStep.DISCARDED)
                assert back.rolled_back_at is not None
                document = rollout_to_document(back)
                assert document["state"] == "rolled_back"
                assert document["history"][-1]["reason"] == "bad model"
                for region in REGIONS:
                    assert await foundry.traffic(region, endpoint) == {name_a: 100}
                    assert await foundry.deployments(region, endpoint) == {name_a: "Succeeded"}
                    lease = await services.store.get_endpoint_lease(region, endpoint)
                    assert lease is None, f"lease on {region} not released: {lease}"
                return a, b
            finally:
                foundry.close()

    a, b = asyncio.run(scenario())

    # A traffic change: A's deployments were never created again.
    creates_a = deployment_writes(stack.env, stack.tls, a.digest)
    assert sorted(w["region"] for w in creates_a) == sorted(REGIONS), creates_a
    deleted_b = [
        r["region"]
        for r in records_for(stack.env, stack.tls, b.digest)
        if r["action"] == "deployment_deleted"
    ]
    assert sorted(deleted_b) == sorted(REGIONS), deleted_b


def test_a_rollback_redeploys_the_previous_image_when_its_deployment_was_cleaned_up(
    stack: ServiceStack,
) -> None:
    repository = "service/op-rollback-redeploy"

    async def scenario() -> Pushed:
        async with stack.services(GEOROLLOUT_KEEP_PREVIOUS_MINUTES="0") as services:
            foundry = Foundry(services)
            try:
                a, b, _ = await _a_then_b_live(stack, services, repository, "op-rb-redeploy")
                name_a, name_b = deployment_name(a.digest), deployment_name(b.digest)
                cleaned = await reconcile_until(
                    services,
                    b.rollout_id,
                    lambda r: _every_region(r, RegionState.LIVE, DeployStep.DONE),
                    what="A's deployments cleaned up",
                )
                endpoint = _endpoint(cleaned)
                for region in REGIONS:
                    assert await foundry.deployments(region, endpoint) == {name_b: "Succeeded"}

                answer = await act(services, b.rollout_id, "rollback", None, NO_HEADERS)
                assert answer.document["state"] == RolloutState.ROLLED_BACK.value
                back = await reconcile_until(
                    services,
                    b.rollout_id,
                    lambda r: _every_region(r, RegionState.ROLLED_BACK, DeployStep.DISCARDED),
                    what="B rolled back onto a redeployed A",
                )
                back = await _settled(services, b.rollout_id)
                assert back.state is RolloutState.ROLLED_BACK, describe(back)
                assert _every_region(back, RegionState.ROLLED_BACK, DeployStep.DISCARDED)
                for region in REGIONS:
                    assert back.region(region).last_error is None, describe(back)
                    assert await foundry.traffic(region, endpoint) == {name_a: 100}
                    assert await foundry.deployments(region, endpoint) == {name_a: "Succeeded"}
                return a
            finally:
                foundry.close()

    a = asyncio.run(scenario())

    image_a = f"{a.registry}/{a.repository}@{a.digest}"
    creates_a = deployment_writes(stack.env, stack.tls, a.digest)
    for region in REGIONS:
        in_region = [w for w in creates_a if w["region"] == region]
        # The first rollout's create, then the rollback's, under the same name and image.
        assert len(in_region) == 2, creates_a
        assert {w["deployment"] for w in in_region} == {deployment_name(a.digest)}
        assert {w["image"] for w in in_region} == {image_a}, in_region
    records_a = records_for(stack.env, stack.tls, a.digest)
    provisioned = [r["region"] for r in records_a if r["action"] == "deployment_provisioned"]
    assert sorted(provisioned) == sorted(REGIONS * 2), records_a


# --- two actions at once -----------------------------------------------------------------


class SaveRace:
    """Holds the first save of each armed writer until every armed writer has read and
    decided: then exactly one of them wins the ETag race and the others must read again."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, repositories: Iterable[RolloutRepository]
    ) -> None:
        self.stale = 0
        self._waiting: set[int] = set()
        self._all_read = asyncio.Event()
        for repository in repositories:
            monkeypatch.setattr(repository, "save", self._wrap(repository, repository.save))

    def arm(self, repositories: Iterable[RolloutRepository]) -> None:
        self.stale = 0
        self._waiting = {id(r) for r in repositories}
        self._all_read = asyncio.Event()

    def _wrap(
        self,
        repository: RolloutRepository,
        original: Callable[[Loaded, Rollout], Awaitable[Loaded]],
    ) -> Callable[[Loaded, Rollout], Awaitable[Loaded]]:
        async def save(loaded: Loaded, rollout: Rollout) -> Loaded:
            if id(repository) in self._waiting:
                self._waiting.discard(id(repository))
                if not self._waiting:
                    self._all_read.set()
                await asyncio.wait_for(self._all_read.wait(), timeout=DEADLINE_S)
            try:
                return await original(loaded, rollout)
            except StaleRecordError:
                self.stale += 1
                raise

        return save


def test_two_operators_and_a_reconcile_at_once_lose_nothing(
    stack: ServiceStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    pushed = push(stack.env, stack.tls, "service/op-concurrent", "v1", seed="op-concurrent-v1")
    rid = pushed.rollout_id
    table = new_table_name()

    async def scenario() -> None:
        # Two workers (two sets of clients) on one table, as two function instances.
        async with stack.services(table=table) as one, stack.services(table=table) as two:
            race = SaveRace(monkeypatch, [one.rollouts, two.rollouts])
            await _record_replicated(stack, one, pushed)

            race.arm([one.rollouts, two.rollouts])
            first, second = await asyncio.gather(
                act(one, rid, "hold", {"regions": [HELD_SECONDARY], "actor": "ann"}, NO_HEADERS),
                act(two, rid, "hold", {"regions": [OTHER_SECONDARY], "actor": "bob"}, NO_HEADERS),
            )
            assert race.stale >= 1, "the two writes never collided: the race was not exercised"
            both = await stored(one, rid)
            assert both.region(HELD_SECONDARY).operator_hold, describe(both)
            assert both.region(OTHER_SECONDARY).operator_hold, describe(both)
            assert not both.region(PRIMARY).operator_hold
            assert sorted((e.actor, e.regions, e.outcome) for e in both.history) == [
                ("ann", (HELD_SECONDARY,), "accepted"),
                ("bob", (OTHER_SECONDARY,), "accepted"),
            ]
            # Whichever saved second saw the other's hold: its answer shows both.
            later = max((first.document, second.document), key=lambda d: len(d["history"]))
            assert len(later["history"]) == 2
            assert {r["region"] for r in later["regions"] if r["held"]} == set(SECONDARIES)

            # An operator's hold of the primary while a reconcile claims its endpoint.
            race.arm([one.rollouts, two.rollouts])
            answer, _ = await asyncio.gather(
                act(one, rid, "hold", {"regions": [PRIMARY], "actor": "cy"}, NO_HEADERS),
                reconcile(two, rid),
            )
            assert race.stale >= 1, "the hold and the reconcile never collided"
            assert answer.document["state"] == RolloutState.HELD.value
            held = await _passes(two, rid)
            assert all(r.operator_hold for r in held.regions), describe(held)
            assert len(held.history) == 3, held.history
            assert {e.actor for e in held.history} == {"ann", "bob", "cy"}
            assert {e.outcome for e in held.history} == {"accepted"}
            primary = held.region(PRIMARY)
            # Claimed before the hold landed, or not at all: either way nothing is created.
            assert primary.deploy_step in (None, DeployStep.REQUESTED), describe(held)
            assert deployment_writes(stack.env, stack.tls, pushed.digest) == []

            resumed = await act(one, rid, "resume", {"actor": "dee"}, NO_HEADERS)
            assert set(resumed.document["history"][-1]["regions"]) == set(REGIONS)
            await reconcile_until(two, rid, is_live, what="every region live after resume")

    asyncio.run(scenario())


# --- refusals and bad requests -----------------------------------------------------------


def test_bad_requests_write_nothing_and_a_refusal_is_recorded(stack: ServiceStack) -> None:
    pushed = push(stack.env, stack.tls, "service/op-errors", "v1", seed="op-errors-v1")
    rid = pushed.rollout_id
    missing = rollout_id(pushed.registry, pushed.repository, "sha256:" + "0" * 64)

    async def scenario() -> str:
        async with stack.services() as services:
            await _record_replicated(stack, services, pushed)
            loaded = await services.rollouts.get(rid)
            assert loaded is not None
            before = (loaded.version.etag, loaded.version.record)

            async def unchanged() -> None:
                now = await services.rollouts.get(rid)
                assert now is not None
                assert (now.version.etag, now.version.record) == before

            with pytest.raises(InvalidInputError) as unknown_action:
                await act(services, rid, "pause", None, NO_HEADERS)
            assert unknown_action.value.detail_code == "unknown_action"
            assert unknown_action.value.field == "action"
            assert unknown_action.value.http_status == 400
            await unchanged()

            with pytest.raises(InvalidInputError) as unknown_region:
                await act(services, rid, "hold", {"regions": ["northpole"]}, NO_HEADERS)
            assert unknown_region.value.detail_code == "unknown_region"
            assert unknown_region.value.field == "regions"
            assert "northpole" in unknown_region.value.message
            await unchanged()

            with pytest.raises(InvalidInputError) as unknown_field:
                await act(services, rid, "hold", {"region": PRIMARY}, NO_HEADERS)
            assert unknown_field.value.detail_code == "unknown_field"
            await unchanged()

            for bad_id in (missing, "not-a-rollout-id"):
                with pytest.raises(NotFoundError) as not_found:
                    await act(services, bad_id, "hold", None, NO_HEADERS)
                assert not_found.value.http_status == 404
                assert not_found.value.code == "not_found"
            assert await services.rollouts.get(missing) is None
            await unchanged()

            with pytest.raises(InvalidTransitionError) as refused:
                await act(services, rid, "resume", {"reason": "try it", "actor": "eve"}, {})
            assert refused.value.http_status == 409
            assert refused.value.to_body()["error"]["code"] == "invalid_transition"
            assert "nothing to resume" in refused.value.message
            after = await stored(services, rid)
            assert [r.operator_hold for r in after.regions] == [False] * len(REGIONS)
            (entry,) = after.history
            assert entry.action.value == "resume" and entry.outcome == "refused"
            assert entry.actor == "eve" and entry.reason == "try it"
            assert entry.message == refused.value.message
            assert entry.regions == ()
            return operator_event_id(rid, entry.request_id)

    event = asyncio.run(scenario())

    wait_until(
        lambda: bool(stack.receiver.deliveries([event])),
        timeout=DEADLINE_S,
        what="the refused resume's event delivered",
    )
    (delivered,) = stack.receiver.deliveries([event])
    assert delivered["type"] == "georollout.operator.resume"
    assert delivered["data"]["outcome"] == "refused", delivered


def test_a_deployment_holding_traffic_is_never_deleted_whatever_the_record_says(
    stack: ServiceStack,
) -> None:
    """The record may be wrong about traffic (a PUT that landed after its deadline): a
    discard or clean-up checks the endpoint first and leaves a serving deployment alone."""
    pushed = push(stack.env, stack.tls, "service/op-serving-guard", "v1", seed="op-guard-v1")
    rid = pushed.rollout_id
    name = deployment_name(pushed.digest)

    async def scenario() -> None:
        async with stack.services() as services:
            foundry = Foundry(services)
            try:
                await _record_replicated(stack, services, pushed)
                live = await reconcile_until(services, rid, is_live, what="every region live")
                endpoint = _endpoint(live)
                assert await foundry.traffic(PRIMARY, endpoint) == {name: 100}

                def misrecorded(rollout: Rollout) -> Rollout:
                    # As if the traffic deadline had passed before the PUT was seen to land.
                    primary = rollout.region(PRIMARY)
                    wrong = replace(
                        primary,
                        state=RegionState.FAILED,
                        deploy_step=DeployStep.DISCARDING,
                        step_started_at=utc_now(),
                    )
                    regions = tuple(wrong if r.region == PRIMARY else r for r in rollout.regions)
                    return replace(rollout, regions=regions)

                await services.rollouts.update(rid, misrecorded)
                await _passes(services, rid)
                after = await stored(services, rid)
                primary = after.region(PRIMARY)
                assert primary.deploy_step is DeployStep.DISCARDING, describe(after)
                assert f"{name} has 100% of endpoint {endpoint}'s traffic: not deleted" in (
                    primary.last_error or ""
                )
                assert await foundry.deployments(PRIMARY, endpoint) == {name: "Succeeded"}
                assert await foundry.traffic(PRIMARY, endpoint) == {name: 100}
            finally:
                foundry.close()

    asyncio.run(scenario())
