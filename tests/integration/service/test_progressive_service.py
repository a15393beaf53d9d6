"""Progressive rollouts through the service layer (`shared.service.reconcile`): waves that wait
for the wave before them to soak, verification of a deployment taking traffic (failures made
real in the ARM emulator with its scoring-fault and fail knobs) that rolls the wave back, and
traffic steps that show in the emulator's deterministic routing; against the real registries,
ARM emulator (through azure-ai-ml), Event Grid emulator and Azurite.

Every scenario starts from an endpoint that already serves a previous rollout (tag v1, the
plain rule), so the new one (tag v2, the progressive rule) has a deployment to split traffic
with and to go back to.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.ai.ml import MLClient

from devenv.arm.cloud import LOCAL_CLOUD_NAME, cloud_metadata
from devenv.config import LOCAL_RESOURCE_GROUP, LOCAL_SUBSCRIPTION
from devenv.process import wait_until
from shared.domain.delivery import STOPPED_BY_ROLLBACK
from shared.domain.events import EventType, event_id
from shared.domain.model import DeployStep, RegionState, Rollout, RolloutState
from shared.domain.names import deployment_name
from shared.domain.serialization import rollout_to_document
from shared.domain.targets import Delivery, VerifyPolicy
from shared.service.intake import record_notices
from shared.service.reconcile import Clock, reconcile, utc_now
from shared.service.runtime import Services
from tests.integration.service.arm_audit import audit_records, deployment_writes
from tests.integration.service.conftest import PRIMARY, REGIONS, SECONDARIES
from tests.integration.service.driving import (
    DEADLINE_S,
    POLL_S,
    describe,
    is_live,
    reconcile_until,
    stored,
)
from tests.integration.service.pushing import Pushed, notice_of, push, replica_has
from tests.integration.service.service_stack import (
    FixedTokenCredential,
    ServiceStack,
    ShiftedClock,
)

pytestmark = pytest.mark.integration

SECOND, THIRD = SECONDARIES
DEPLOYMENT_HEADER = "azureml-model-deployment"
BEARER = {"Authorization": "Bearer local-test-token"}
# Reconcile passes run after a state is reached, to show that nothing further happens.
EXTRA_PASSES = 4
# A soak or a step "long enough": the clock is moved past it (ShiftedClock), never waited for.
LONG_S = 600.0
Snapshot = dict[str, tuple[str, str | None, int]]


# --- rules, pushes, documents ------------------------------------------------------------


def _rules(repository: str, **progressive: Any) -> str:
    """GEOROLLOUT_TARGETS: `repository:v2` by the progressive rule, everything else (the
    previous rollout, v1) by the plain one; both name the endpoint `{repository}-{instance}`."""
    return json.dumps(
        [
            {"repository": repository, "tag": "v2", **progressive},
            {"repository": "*", "tag": "*"},
        ]
    )


def _wait_replicated(stack: ServiceStack, pushed: Pushed) -> None:
    wait_until(
        lambda: all(
            replica_has(stack.env, stack.tls, region, pushed.repository, pushed.digest)
            for region in REGIONS
        ),
        timeout=DEADLINE_S,
        interval=POLL_S,
        what=f"{pushed.repository}@{pushed.digest} in every replica",
    )


async def _record_replicated(stack: ServiceStack, services: Services, pushed: Pushed) -> Rollout:
    """Intake of a push every replica already has: every region is replicated at once."""
    await asyncio.to_thread(_wait_replicated, stack, pushed)
    result = await record_notices(services, [notice_of(pushed)])
    assert result.recorded == (pushed.rollout_id,)
    rollout = await stored(services, pushed.rollout_id)
    assert {r.state for r in rollout.regions} == {RegionState.REPLICATED}, describe(rollout)
    return rollout


async def _previous_then_new(
    stack: ServiceStack, services: Services, repository: str, seed: str, clock: Clock = utc_now
) -> tuple[Pushed, Pushed, Rollout]:
    """A (v1, plain rule) live everywhere, then B (v2, the progressive rule) recorded with
    every replica holding it; B as recorded."""
    a = push(stack.env, stack.tls, repository, "v1", seed=f"{seed}-a")
    await _record_replicated(stack, services, a)
    await reconcile_until(services, a.rollout_id, is_live, what="A live everywhere", clock=clock)
    b = push(stack.env, stack.tls, repository, "v2", seed=f"{seed}-b")
    return a, b, await _record_replicated(stack, services, b)


def _endpoint(rollout: Rollout) -> str:
    assert rollout.target is not None, describe(rollout)
    return rollout.target.endpoint


def _snapshot(document: dict[str, Any]) -> Snapshot:
    """Each region's (state, waiting_for, wave) as the rollout document shows them."""
    return {r["region"]: (r["state"], r["waiting_for"], r["wave"]) for r in document["regions"]}


def _regions_doc(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["region"]: r for r in document["regions"]}


def _recording(
    documents: list[dict[str, Any]], done: Callable[[Rollout], bool]
) -> Callable[[Rollout], bool]:
    """`done`, keeping every rollout document a poll saw."""

    def check(rollout: Rollout) -> bool:
        documents.append(rollout_to_document(rollout))
        return done(rollout)

    return check


async def _passes(services: Services, rid: str, clock: Clock = utc_now) -> Rollout:
    """A few more reconcile passes (as repeated triggers would run them); the rollout after."""
    for _ in range(EXTRA_PASSES):
        await reconcile(services, rid, clock=clock)
        await asyncio.sleep(POLL_S)
    return await stored(services, rid)


def _ts(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- what the ARM emulator saw and serves ---------------------------------------------------


def _on_endpoint(stack: ServiceStack, endpoint: str, region: str) -> list[dict[str, Any]]:
    """The audit records about `endpoint` in `region`, oldest first."""
    return [
        r
        for r in audit_records(stack.env, stack.tls)
        if r.get("endpoint") == endpoint and r.get("region") == region
    ]


def _traffic_maps(records: Iterable[dict[str, Any]]) -> list[dict[str, int]]:
    return [r["traffic"] for r in records if r["action"] == "traffic_changed"]


def _at(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["timestamp"])


def _first(records: list[dict[str, Any]], action: str, **fields: Any) -> dict[str, Any]:
    found = [
        r
        for r in records
        if r["action"] == action and all(r.get(k) == v for k, v in fields.items())
    ]
    assert found, f"no {action} {fields} in {records}"
    return found[0]


def _knob(
    stack: ServiceStack, region: str, endpoint: str, deployment: str, knob: str, body: Any = None
) -> dict[str, Any]:
    """POST one of the emulator's per-deployment knobs (`scoring`, `fail`)."""
    workspace = stack.env.region(region).workspace_name
    request = urllib.request.Request(
        f"{stack.env.arm_url}/emulator/deployments/{workspace}/{endpoint}/{deployment}/{knob}",
        data=json.dumps(body).encode() if body is not None else b"",
        headers={**BEARER, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, context=stack.tls.client_context(), timeout=10) as answer:
        assert answer.status == 200, answer.status
        result: dict[str, Any] = json.loads(answer.read())
    return result


@dataclass(frozen=True)
class Served:
    """One scoring call routed by the traffic weights: its status, who served it, which digest."""

    status: int
    deployment: str | None
    digest: str | None


class Scoring:
    """Scoring calls as an endpoint's clients make them: no `azureml-model-deployment`
    header, so the endpoint's traffic split picks the deployment (keys and scoring URI read
    through azure-ai-ml's MLClient)."""

    def __init__(self, stack: ServiceStack) -> None:
        self._env = stack.env
        self._tls = stack.tls
        self._clients: dict[str, MLClient] = {}
        self._http = httpx.Client(verify=stack.tls.client_context(), timeout=10)

    def _client(self, region: str) -> MLClient:
        if region not in self._clients:
            self._clients[region] = MLClient(
                FixedTokenCredential(),
                LOCAL_SUBSCRIPTION,
                LOCAL_RESOURCE_GROUP,
                self._env.region(region).workspace_name,
                # One cloud name per emulator: MLClient keeps the first URL registered under a name.
                cloud=f"{LOCAL_CLOUD_NAME}-{self._env.arm_port}",
                cloud_metadata=cloud_metadata(self._env.arm_url),
                connection_verify=str(self._tls.ca_pem),
                enable_telemetry=False,
            )
        return self._clients[region]

    def _calls(self, region: str, endpoint: str, calls: int) -> list[Served]:
        client = self._client(region)
        uri = client.online_endpoints.get(endpoint).scoring_uri
        key = client.online_endpoints.get_keys(endpoint).primary_key
        served = []
        for _ in range(calls):
            answer = self._http.post(
                uri, json={"ping": 1}, headers={"Authorization": f"Bearer {key}"}
            )
            body = answer.json()
            served.append(
                Served(
                    answer.status_code, answer.headers.get(DEPLOYMENT_HEADER), body.get("digest")
                )
            )
        return served

    async def calls(self, region: str, endpoint: str, calls: int) -> list[Served]:
        """`calls` consecutive scoring calls to `endpoint` in `region`, in order."""
        return await asyncio.to_thread(self._calls, region, endpoint, calls)

    def close(self) -> None:
        self._http.close()
        for client in self._clients.values():
            close = getattr(client, "close", None)
            if close is not None:
                close()


def _digests(served: list[Served]) -> list[str | None]:
    assert {s.status for s in served} == {200}, served
    return [s.digest for s in served]


# --- waves and soaks -----------------------------------------------------------------------


def test_a_wave_starts_only_after_every_earlier_wave_has_soaked(stack: ServiceStack) -> None:
    repository = "service/prog-waves"
    soak = 2.0  # real seconds: the audit's own timestamps are compared with it
    rules = _rules(
        repository, waves=[[SECOND], [THIRD]], soak_seconds=soak, verify={"interval_seconds": 0.5}
    )
    documents: list[dict[str, Any]] = []

    async def scenario() -> tuple[Pushed, Pushed, str]:
        # No keep time: the previous deployments go as soon as the rollout allows.
        async with stack.services(
            GEOROLLOUT_TARGETS=rules, GEOROLLOUT_KEEP_PREVIOUS_MINUTES="0"
        ) as services:
            scoring = Scoring(stack)
            try:
                a, b, recorded = await _previous_then_new(stack, services, repository, "prog-w")
                assert recorded.target is not None
                assert recorded.target.delivery == Delivery(
                    waves=((SECOND,), (THIRD,)), soak_s=soak, verify=VerifyPolicy(interval_s=0.5)
                )
                endpoint = _endpoint(recorded)
                live = await reconcile_until(
                    services,
                    b.rollout_id,
                    _recording(documents, is_live),
                    what="B live everywhere, wave after wave",
                )
                name_b = deployment_name(b.digest)
                for region in REGIONS:
                    progress = live.region(region)
                    assert progress.deployment is not None
                    assert progress.deployment.name == name_b, describe(live)
                    assert progress.previous_deployment == deployment_name(a.digest)
                    assert progress.verify_passes >= 1 and progress.verify_failures == 0
                    served = await scoring.calls(region, endpoint, 4)
                    assert _digests(served) == [b.digest] * 4, (region, served)
                await reconcile_until(
                    services,
                    b.rollout_id,
                    lambda r: all(p.deploy_step is DeployStep.DONE for p in r.regions),
                    what="A's deployments cleaned up",
                )
                return a, b, endpoint
            finally:
                scoring.close()

    a, b, endpoint = asyncio.run(scenario())

    # What the documents showed on the way: each wave soaked while the later ones waited.
    snapshots = [_snapshot(d) for d in documents]
    primary_soaks: Snapshot = {
        PRIMARY: ("soaking", "soak", 0),
        SECOND: ("replicated", "previous wave", 1),
        THIRD: ("replicated", "previous wave", 2),
    }
    second_soaks: Snapshot = {
        PRIMARY: ("live", None, 0),
        SECOND: ("soaking", "soak", 1),
        THIRD: ("replicated", "previous wave", 2),
    }
    third_soaks: Snapshot = {
        PRIMARY: ("live", None, 0),
        SECOND: ("live", None, 1),
        THIRD: ("soaking", "soak", 2),
    }
    everything_live: Snapshot = {
        PRIMARY: ("live", None, 0),
        SECOND: ("live", None, 1),
        THIRD: ("live", None, 2),
    }
    seen = [s for s in (primary_soaks, second_soaks, third_soaks) if s in snapshots]
    assert seen == [primary_soaks, second_soaks, third_soaks], snapshots
    assert (
        snapshots.index(primary_soaks)
        < snapshots.index(second_soaks)
        < snapshots.index(third_soaks)
        < snapshots.index(everything_live)
    ), snapshots
    for snapshot in snapshots:
        # A wave never moves before the one ahead of it is live (soaked).
        if snapshot[SECOND][0] != "replicated":
            assert snapshot[PRIMARY][0] == "live", snapshot
        if snapshot[THIRD][0] != "replicated":
            assert snapshot[SECOND][0] == "live", snapshot
    soaking = [
        region
        for document in documents
        for region in document["regions"]
        if region["state"] == "soaking"
    ]
    for region in soaking:
        assert region["soaking"] is True and region["traffic_percent"] == 100, region
        assert _ts(region["soak_until"]) - _ts(region["live_at"]) == timedelta(seconds=soak)
    final = documents[-1]
    assert final["state"] == "live"
    for region in final["regions"]:
        assert region["soaking"] is False and region["waiting_for"] is None, region
        assert region["traffic_percent"] == 100

    # In the ARM emulator: each wave's first create came after the previous wave soaked.
    name_a, name_b = deployment_name(a.digest), deployment_name(b.digest)
    creates, full_traffic = {}, {}
    for region in REGIONS:
        records = _on_endpoint(stack, endpoint, region)
        assert _traffic_maps(records) == [{name_a: 100}, {name_b: 100}], records
        creates[region] = _at(_first(records, "deployment_create", deployment=name_b))
        full_traffic[region] = _at(_first(records, "traffic_changed", traffic={name_b: 100}))
    soaked = timedelta(seconds=soak)
    assert creates[SECOND] >= full_traffic[PRIMARY] + soaked, (creates, full_traffic)
    assert creates[THIRD] >= full_traffic[SECOND] + soaked, (creates, full_traffic)
    writes = deployment_writes(stack.env, stack.tls, b.digest)
    assert sorted(w["region"] for w in writes) == sorted(REGIONS), writes
    # The previous deployments were kept (for a wave's rollback) until the last wave soaked.
    last_soak_ended = full_traffic[THIRD] + soaked
    for region in REGIONS:
        records = _on_endpoint(stack, endpoint, region)
        deleted = _at(_first(records, "deployment_deleted", deployment=name_a))
        assert deleted >= last_soak_ended, (region, deleted, last_soak_ended)


# --- verification fails: the wave goes back ------------------------------------------------


def test_a_scoring_fault_during_the_soak_rolls_the_wave_back_and_stops_the_rollout(
    stack: ServiceStack,
) -> None:
    repository = "service/prog-scoring-fault"
    rules = _rules(
        repository,
        waves=[[SECOND], [THIRD]],
        soak_seconds=LONG_S,
        # Checks far enough apart that a poll sees the first failure before the second.
        verify={"interval_seconds": 2, "max_failures": 1},
    )
    clock = ShiftedClock()

    async def scenario() -> tuple[Pushed, Pushed, str]:
        async with stack.services(GEOROLLOUT_TARGETS=rules) as services:
            scoring = Scoring(stack)
            try:
                a, b, recorded = await _previous_then_new(
                    stack, services, repository, "prog-sf", clock
                )
                rid, endpoint = b.rollout_id, _endpoint(recorded)
                name_a, name_b = deployment_name(a.digest), deployment_name(b.digest)
                await reconcile_until(
                    services,
                    rid,
                    lambda r: r.region(PRIMARY).state is RegionState.SOAKING,
                    what="the primary soaking",
                    clock=clock,
                )
                clock.advance(LONG_S)  # the primary's soak is over
                soaking = await reconcile_until(
                    services,
                    rid,
                    lambda r: (
                        r.region(SECOND).state is RegionState.SOAKING
                        and r.region(SECOND).verify_passes >= 1
                    ),
                    what="the second region soaking, checked once",
                    clock=clock,
                )
                assert soaking.region(PRIMARY).state is RegionState.LIVE, describe(soaking)
                assert soaking.region(THIRD).state is RegionState.REPLICATED

                fault = _knob(
                    stack,
                    SECOND,
                    endpoint,
                    name_b,
                    "scoring",
                    {"status": 500, "message": "model weights corrupt"},
                )
                assert fault["scoringFault"] == {"status": 500, "message": "model weights corrupt"}

                # One failed check is allowed (max_failures 1): still soaking, the failure shown.
                failed_once = await reconcile_until(
                    services,
                    rid,
                    lambda r: r.region(SECOND).verify_failures > 0 or r.rolled_back_at is not None,
                    what="a failed check",
                    clock=clock,
                )
                second = failed_once.region(SECOND)
                assert failed_once.rolled_back_at is None, describe(failed_once)
                assert second.state is RegionState.SOAKING and second.verify_failures == 1
                assert (second.last_error or "").startswith(
                    "verification failed (1 of at most 1 allowed): smoke_request: "
                    "smoke request answered 500"
                ), second.last_error

                await reconcile_until(
                    services,
                    rid,
                    lambda r: r.region(SECOND).deploy_step is DeployStep.DISCARDED,
                    what="the second region rolled back and B's deployment there deleted",
                    clock=clock,
                )
                # Later passes change nothing: in particular the third region never deploys.
                back = await _passes(services, rid, clock)
                assert back.state is RolloutState.ROLLED_BACK, describe(back)
                reason = back.rollback_reason or ""
                assert "verification failed 2 time(s) in " + SECOND in reason, reason
                assert "during its soak" in reason and "answered 500" in reason, reason
                assert back.region(SECOND).state is RegionState.ROLLED_BACK, describe(back)
                third = back.region(THIRD)
                assert third.state is RegionState.ROLLED_BACK and third.deployment is None
                assert third.last_error == STOPPED_BY_ROLLBACK
                primary = back.region(PRIMARY)
                assert primary.state is RegionState.LIVE, describe(back)
                assert primary.deployment is not None and primary.deployment.name == name_b

                document = rollout_to_document(back)
                assert document["state"] == "rolled_back"
                assert document["rollback_reason"] == reason
                regions = _regions_doc(document)
                assert regions[SECOND]["state"] == "rolled_back"
                assert regions[SECOND]["traffic_percent"] == 0
                assert regions[THIRD]["state"] == "rolled_back"

                # What serves, routed by weight: the previous image where the wave went back,
                # the new one in the primary (an earlier wave keeps it).
                in_second = await scoring.calls(SECOND, endpoint, 4)
                assert _digests(in_second) == [a.digest] * 4, in_second
                assert {s.deployment for s in in_second} == {name_a}
                assert _digests(await scoring.calls(PRIMARY, endpoint, 4)) == [b.digest] * 4
                assert _digests(await scoring.calls(THIRD, endpoint, 4)) == [a.digest] * 4
                return a, b, endpoint
            finally:
                scoring.close()

    a, b, endpoint = asyncio.run(scenario())
    name_a, name_b = deployment_name(a.digest), deployment_name(b.digest)

    in_second = _on_endpoint(stack, endpoint, SECOND)
    assert _traffic_maps(in_second) == [{name_a: 100}, {name_b: 100}, {name_a: 100}], in_second
    fault_set = in_second.index(_first(in_second, "scoring_fault_set", deployment=name_b))
    restored = max(i for i, r in enumerate(in_second) if r["action"] == "traffic_changed")
    deleted = in_second.index(_first(in_second, "deployment_deleted", deployment=name_b))
    assert fault_set < restored < deleted, in_second
    assert in_second[restored]["previous_traffic"] == {name_b: 100}
    assert not any(
        r["action"] == "deployment_deleted" and r["deployment"] == name_a for r in in_second
    )
    # The later wave never started; the earlier one kept the new image.
    writes = deployment_writes(stack.env, stack.tls, b.digest)
    assert sorted(w["region"] for w in writes) == sorted((PRIMARY, SECOND)), writes
    assert _traffic_maps(_on_endpoint(stack, endpoint, THIRD)) == [{name_a: 100}]
    in_primary = _on_endpoint(stack, endpoint, PRIMARY)
    assert _traffic_maps(in_primary) == [{name_a: 100}, {name_b: 100}], in_primary
    assert not any(r["action"] == "deployment_deleted" for r in in_primary), in_primary

    rid = b.rollout_id
    rolled_back = event_id(rid, 1, SECOND, EventType.REGION_ROLLED_BACK)
    finished = event_id(rid, 1, "~rolled_back", EventType.ROLLOUT_FINISHED)
    wait_until(
        lambda: len(stack.receiver.deliveries([rolled_back, finished])) >= 2,
        timeout=DEADLINE_S,
        what="region.rolledback and rollout.finished delivered",
    )
    delivered = {e["id"]: e for e in stack.receiver.deliveries([rolled_back, finished])}
    event = delivered[rolled_back]
    assert event["type"] == "georollout.region.rolledback"
    assert event["subject"] == f"{repository}@{b.digest}"
    assert event["data"]["region"] == SECOND and event["data"]["state"] == "rolled_back"
    assert event["data"]["deployment"] == name_b
    assert delivered[finished]["data"]["state"] == "rolled_back"


def test_a_deployment_failed_in_arm_during_the_soak_rolls_the_wave_back(
    stack: ServiceStack,
) -> None:
    """The primary's wave (wave 0): the `fail` knob turns B's deployment Failed in ARM while
    it soaks; with max_failures 0 the first failed check rolls it back, and no secondary
    ever deploys."""
    repository = "service/prog-arm-failed"
    rules = _rules(
        repository,
        waves=[[SECOND], [THIRD]],
        soak_seconds=LONG_S,
        verify={"interval_seconds": 1, "max_failures": 0},
    )

    async def scenario() -> tuple[Pushed, Pushed, str]:
        async with stack.services(GEOROLLOUT_TARGETS=rules) as services:
            scoring = Scoring(stack)
            try:
                a, b, recorded = await _previous_then_new(stack, services, repository, "prog-af")
                rid, endpoint = b.rollout_id, _endpoint(recorded)
                name_a, name_b = deployment_name(a.digest), deployment_name(b.digest)
                await reconcile_until(
                    services,
                    rid,
                    lambda r: (
                        r.region(PRIMARY).state is RegionState.SOAKING
                        and r.region(PRIMARY).verify_passes >= 1
                    ),
                    what="the primary soaking, checked once",
                )
                failed = _knob(stack, PRIMARY, endpoint, name_b, "fail")
                assert failed == {"provisioningState": "Failed"}

                await reconcile_until(
                    services,
                    rid,
                    lambda r: r.region(PRIMARY).deploy_step is DeployStep.DISCARDED,
                    what="the primary rolled back and B's deployment deleted",
                )
                back = await _passes(services, rid)
                assert back.state is RolloutState.ROLLED_BACK, describe(back)
                reason = back.rollback_reason or ""
                assert f"verification failed 1 time(s) in {PRIMARY} during its soak" in reason
                assert "(max_failures 0)" in reason, reason
                assert f"deployment {name_b} is in the Failed state in ARM" in reason, reason
                assert back.region(PRIMARY).state is RegionState.ROLLED_BACK, describe(back)
                for secondary in SECONDARIES:
                    progress = back.region(secondary)
                    assert progress.state is RegionState.ROLLED_BACK, describe(back)
                    assert progress.deployment is None and progress.deploy_started_at is None

                served = await scoring.calls(PRIMARY, endpoint, 4)
                assert _digests(served) == [a.digest] * 4, served
                assert {s.deployment for s in served} == {name_a}
                return a, b, endpoint
            finally:
                scoring.close()

    a, b, endpoint = asyncio.run(scenario())
    name_a, name_b = deployment_name(a.digest), deployment_name(b.digest)

    in_primary = _on_endpoint(stack, endpoint, PRIMARY)
    assert _traffic_maps(in_primary) == [{name_a: 100}, {name_b: 100}, {name_a: 100}], in_primary
    unhealthy = in_primary.index(_first(in_primary, "deployment_unhealthy", deployment=name_b))
    restored = max(i for i, r in enumerate(in_primary) if r["action"] == "traffic_changed")
    deleted = in_primary.index(_first(in_primary, "deployment_deleted", deployment=name_b))
    assert unhealthy < restored < deleted, in_primary
    writes = deployment_writes(stack.env, stack.tls, b.digest)
    assert [w["region"] for w in writes] == [PRIMARY], writes
    for secondary in SECONDARIES:
        assert _traffic_maps(_on_endpoint(stack, endpoint, secondary)) == [{name_a: 100}]


# --- traffic steps ---------------------------------------------------------------------------


def test_traffic_steps_show_in_the_emulators_routing(stack: ServiceStack) -> None:
    repository = "service/prog-steps"
    rules = _rules(
        repository, traffic_steps=[10, 50, 100], step_seconds=LONG_S, verify={"interval_seconds": 1}
    )
    clock = ShiftedClock()

    def holding(percent: int) -> Callable[[Rollout], bool]:
        def done(rollout: Rollout) -> bool:
            primary = rollout.region(PRIMARY)
            return (
                primary.deploy_step is DeployStep.HOLDING_STEP
                and primary.traffic_percent == percent
                and primary.verify_passes >= 1
            )

        return done

    def live_past_each_step(rollout: Rollout) -> bool:
        """Every region holding a step with a passing check is moved past its step time."""
        ends = [
            r.step_until
            for r in rollout.regions
            if r.deploy_step is DeployStep.HOLDING_STEP and r.verify_passes and r.step_until
        ]
        if ends:
            clock.advance(max((max(ends) - clock()).total_seconds(), 0) + 1)
        return is_live(rollout)

    async def scenario() -> tuple[Pushed, Pushed, str]:
        async with stack.services(GEOROLLOUT_TARGETS=rules) as services:
            scoring = Scoring(stack)
            try:
                a, b, recorded = await _previous_then_new(
                    stack, services, repository, "prog-st", clock
                )
                rid, endpoint = b.rollout_id, _endpoint(recorded)

                at_10 = await reconcile_until(
                    services, rid, holding(10), what="the primary holding 10%", clock=clock
                )
                primary_doc = _regions_doc(rollout_to_document(at_10))[PRIMARY]
                assert primary_doc["traffic_percent"] == 10
                assert primary_doc["deploy_step"] == "holding_step"
                assert primary_doc["state"] == "deploying"
                assert primary_doc["waiting_for"] == "traffic step"
                assert primary_doc["wave"] == 0
                assert _ts(primary_doc["step_until"]) > clock()
                for secondary in SECONDARIES:
                    doc = _regions_doc(rollout_to_document(at_10))[secondary]
                    assert (doc["state"], doc["waiting_for"]) == ("replicated", "previous wave")
                served = _digests(await scoring.calls(PRIMARY, endpoint, 10))
                assert served.count(b.digest) == 1 and served.count(a.digest) == 9, served

                clock.advance(LONG_S)
                at_50 = await reconcile_until(
                    services, rid, holding(50), what="the primary holding 50%", clock=clock
                )
                primary_doc = _regions_doc(rollout_to_document(at_50))[PRIMARY]
                assert (primary_doc["traffic_percent"], primary_doc["deploy_step"]) == (
                    50,
                    "holding_step",
                )
                served = _digests(await scoring.calls(PRIMARY, endpoint, 10))
                assert served.count(b.digest) == 5 and served.count(a.digest) == 5, served

                clock.advance(LONG_S)
                live = await reconcile_until(
                    services,
                    rid,
                    live_past_each_step,
                    what="B live everywhere, step by step",
                    clock=clock,
                )
                for region in REGIONS:
                    progress = live.region(region)
                    assert progress.traffic_percent == 100, describe(live)
                    served = _digests(await scoring.calls(region, endpoint, 10))
                    assert served == [b.digest] * 10, (region, served)
                return a, b, endpoint
            finally:
                scoring.close()

    a, b, endpoint = asyncio.run(scenario())
    name_a, name_b = deployment_name(a.digest), deployment_name(b.digest)
    for region in REGIONS:
        assert _traffic_maps(_on_endpoint(stack, endpoint, region)) == [
            {name_a: 100},
            {name_b: 10, name_a: 90},
            {name_b: 50, name_a: 50},
            {name_b: 100},
        ], region


def test_a_failed_check_while_a_traffic_step_holds_moves_the_traffic_back(
    stack: ServiceStack,
) -> None:
    """A scoring fault on B while the primary holds its 10% step: the step's watch fails
    (max_failures 0), the 10% go back to A by a traffic change, B is deleted, nothing else
    deploys."""
    repository = "service/prog-step-fault"
    rules = _rules(
        repository,
        traffic_steps=[10, 100],
        step_seconds=LONG_S,
        verify={"interval_seconds": 1, "max_failures": 0},
    )

    async def scenario() -> tuple[Pushed, Pushed, str]:
        async with stack.services(GEOROLLOUT_TARGETS=rules) as services:
            scoring = Scoring(stack)
            try:
                a, b, recorded = await _previous_then_new(stack, services, repository, "prog-sf10")
                rid, endpoint = b.rollout_id, _endpoint(recorded)
                name_a, name_b = deployment_name(a.digest), deployment_name(b.digest)
                await reconcile_until(
                    services,
                    rid,
                    lambda r: (
                        r.region(PRIMARY).deploy_step is DeployStep.HOLDING_STEP
                        and r.region(PRIMARY).verify_passes >= 1
                    ),
                    what="the primary holding 10%, checked once",
                )
                _knob(stack, PRIMARY, endpoint, name_b, "scoring", {"status": 503})
                await reconcile_until(
                    services,
                    rid,
                    lambda r: r.region(PRIMARY).deploy_step is DeployStep.DISCARDED,
                    what="the primary's 10% moved back and B deleted",
                )
                back = await _passes(services, rid)
                assert back.state is RolloutState.ROLLED_BACK, describe(back)
                reason = back.rollback_reason or ""
                assert f"in {PRIMARY} during its 10% step" in reason, reason
                assert back.region(PRIMARY).state is RegionState.ROLLED_BACK
                assert back.region(PRIMARY).traffic_percent == 0
                for secondary in SECONDARIES:
                    assert back.region(secondary).deployment is None, describe(back)
                served = await scoring.calls(PRIMARY, endpoint, 10)
                assert _digests(served) == [a.digest] * 10, served
                assert {s.deployment for s in served} == {name_a}
                return a, b, endpoint
            finally:
                scoring.close()

    a, b, endpoint = asyncio.run(scenario())
    name_a, name_b = deployment_name(a.digest), deployment_name(b.digest)
    in_primary = _on_endpoint(stack, endpoint, PRIMARY)
    assert _traffic_maps(in_primary) == [
        {name_a: 100},
        {name_b: 10, name_a: 90},
        {name_a: 100},
    ], in_primary
    restored = max(i for i, r in enumerate(in_primary) if r["action"] == "traffic_changed")
    deleted = in_primary.index(_first(in_primary, "deployment_deleted", deployment=name_b))
    assert restored < deleted, in_primary
    assert [w["region"] for w in deployment_writes(stack.env, stack.tls, b.digest)] == [PRIMARY]


# --- the plain rule is unchanged --------------------------------------------------------------


def test_a_rule_without_progressive_fields_deploys_every_secondary_at_once(
    stack: ServiceStack,
) -> None:
    pushed = push(stack.env, stack.tls, "service/prog-plain", "v1", seed="prog-plain-v1")
    documents: list[dict[str, Any]] = []

    async def scenario() -> str:
        async with stack.services() as services:
            recorded = await _record_replicated(stack, services, pushed)
            assert recorded.target is not None and recorded.target.delivery == Delivery()
            live = await reconcile_until(
                services,
                pushed.rollout_id,
                _recording(documents, is_live),
                what="every region live",
            )
            assert all(r.deploy_step is DeployStep.DONE for r in live.regions), describe(live)
            return _endpoint(live)

    endpoint = asyncio.run(scenario())

    for document in documents:
        primary_live = _regions_doc(document)[PRIMARY]["state"] == "live"
        for region in document["regions"]:
            assert region["state"] != "soaking", region
            assert region["waiting_for"] not in ("soak", "traffic step"), region
            # The one wave of secondaries waits for the primary (wave 0), and for nothing else.
            if region["waiting_for"] == "previous wave":
                assert not primary_live, document
            assert region["wave"] == (0 if region["primary"] else 1)
    assert all(r["traffic_percent"] == 100 for r in documents[-1]["regions"])
    assert documents[-1]["delivery"]["soak_seconds"] == 0
    assert documents[-1]["delivery"]["traffic_steps"] == [100]

    # Both secondaries were created before either took traffic: one wave, no soak between.
    name = deployment_name(pushed.digest)
    creates = {}
    first_traffic = []
    for region in SECONDARIES:
        records = _on_endpoint(stack, endpoint, region)
        assert _traffic_maps(records) == [{name: 100}], records
        creates[region] = _at(_first(records, "deployment_create", deployment=name))
        first_traffic.append(_at(_first(records, "traffic_changed")))
    assert max(creates.values()) < min(first_traffic), (creates, first_traffic)
