"""Blue-green deployment per region: primary first, secondaries after, failures hold, events."""

from __future__ import annotations

from datetime import timedelta

from shared.domain.events import EventType
from shared.domain.model import DeployStep, RegionState, RolloutState
from shared.domain.rollout import (
    CheckDeployment,
    DeletePrevious,
    DiscardDeployment,
    ProbeRegion,
    ShiftTraffic,
    SmokeTest,
    StartDeployment,
    new_rollout,
    next_actions,
    record_action_error,
    record_deployment_discarded,
    record_deployment_failed,
    record_deployment_started,
    record_previous_deleted,
    record_provisioning_failed,
    record_provisioning_succeeded,
    record_smoke_failed,
    record_smoke_passed,
    record_traffic_shifted,
    tick,
)
from shared.domain.targets import DeploymentSettings, RegionOverride, Target
from tests.unit.domain.builders import (
    POLICY,
    REGIONS,
    T0,
    at,
    fresh,
    live,
    notice,
    ref,
    replicated,
)


def starts(actions: list[object]) -> list[str]:
    return [a.region for a in actions if isinstance(a, StartDeployment)]


def test_nothing_deploys_before_the_manifest_is_known_deployable() -> None:
    rollout = new_rollout(notice(), REGIONS, fresh().target, T0)
    rollout = replicated(rollout, "eastus", at(1))
    assert starts(next_actions(rollout, at(1), POLICY)) == []  # type: ignore[arg-type]


def test_primary_walks_the_blue_green_steps() -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    actions = next_actions(rollout, at(1), POLICY)
    start = next(a for a in actions if isinstance(a, StartDeployment))
    assert start.region == "eastus"
    assert start.endpoint == "models-llm"
    assert start.deployment_name == "sha256-aaaaaaaaaaaa"

    rollout = record_deployment_started(rollout, "eastus", ref("eastus"), at(2))
    east = rollout.region("eastus")
    assert (east.state, east.deploy_step, east.deploy_started_at) == (
        RegionState.DEPLOYING,
        DeployStep.CREATING,
        at(2),
    )
    assert rollout.state is RolloutState.DEPLOYING
    assert CheckDeployment("eastus", ref("eastus")) in next_actions(rollout, at(3), POLICY)

    rollout = record_provisioning_succeeded(rollout, "eastus", at(4))
    assert SmokeTest("eastus", ref("eastus"), "{}") in next_actions(rollout, at(4), POLICY)

    rollout = record_smoke_passed(rollout, "eastus", at(5))
    assert ShiftTraffic("eastus", ref("eastus")) in next_actions(rollout, at(5), POLICY)

    rollout = record_traffic_shifted(rollout, "eastus", "blue", at(6))
    east = rollout.region("eastus")
    assert (east.state, east.deploy_step, east.live_at) == (
        RegionState.LIVE,
        DeployStep.CLEANING_UP,
        at(6),
    )
    assert DeletePrevious("eastus", ref("eastus", "blue")) in next_actions(rollout, at(7), POLICY)
    assert (EventType.REGION_LIVE, "eastus") in [(e.type, e.region) for e in rollout.outbox]

    rollout = record_previous_deleted(rollout, "eastus", at(8))
    assert rollout.region("eastus").deploy_step is DeployStep.DONE
    assert not any(isinstance(a, DeletePrevious) for a in next_actions(rollout, at(9), POLICY))


def test_no_smoke_request_goes_straight_to_traffic_and_no_previous_means_done() -> None:
    target = Target("models-llm", DeploymentSettings(smoke_request=None))
    rollout = new_rollout(notice(), ("eastus",), target, T0)
    rollout = replicated(rollout, "eastus", at(1))
    rollout = record_deployment_started(rollout, "eastus", ref("eastus"), at(2))
    rollout = record_provisioning_succeeded(rollout, "eastus", at(3))
    assert rollout.region("eastus").deploy_step is DeployStep.SHIFTING_TRAFFIC
    rollout = record_traffic_shifted(rollout, "eastus", None, at(4))
    assert rollout.region("eastus").deploy_step is DeployStep.DONE
    # a single live region makes the rollout live, and finished exactly once
    assert rollout.state is RolloutState.LIVE
    assert [e.type for e in rollout.outbox].count(EventType.ROLLOUT_FINISHED) == 1


def test_secondary_waits_for_replication_and_for_primary_live() -> None:
    rollout = fresh()
    rollout = replicated(rollout, "westus", at(1))  # secondary replicated first
    assert starts(next_actions(rollout, at(1), POLICY)) == []  # type: ignore[arg-type]
    rollout = replicated(rollout, "eastus", at(2))
    assert starts(next_actions(rollout, at(2), POLICY)) == ["eastus"]  # type: ignore[arg-type]
    rollout = record_deployment_started(rollout, "eastus", ref("eastus"), at(3))
    rollout = record_provisioning_succeeded(rollout, "eastus", at(4))
    rollout = record_smoke_passed(rollout, "eastus", at(5))
    assert starts(next_actions(rollout, at(5), POLICY)) == []  # type: ignore[arg-type]
    # a secondary may not start even if someone tries out of turn
    assert record_deployment_started(rollout, "northeurope", ref("northeurope"), at(5)) is rollout
    rollout = record_traffic_shifted(rollout, "eastus", None, at(6))
    # westus replicated -> starts; northeurope not replicated -> only probed
    actions = next_actions(rollout, at(6), POLICY)
    assert starts(actions) == ["westus"]  # type: ignore[arg-type]
    assert ProbeRegion("northeurope") in actions


def test_every_region_live_finishes_the_rollout_once() -> None:
    rollout = fresh()
    for i, region in enumerate(REGIONS):
        rollout = replicated(rollout, region, at(i))
    for region in REGIONS:
        rollout = live(rollout, region, at(100))
    assert rollout.state is RolloutState.LIVE
    kinds = [e.type for e in rollout.outbox]
    assert kinds.count(EventType.REGION_LIVE) == 3
    assert kinds.count(EventType.ROLLOUT_FINISHED) == 1
    finished = next(e for e in rollout.outbox if e.type is EventType.ROLLOUT_FINISHED)
    assert finished.data["state"] == "live"
    assert next_actions(rollout, at(200), POLICY) == []


def test_primary_provisioning_failure_holds_secondaries_and_discards_deployment() -> None:
    rollout = fresh()
    for region in REGIONS[:2]:
        rollout = replicated(rollout, region, at(1))
    rollout = record_deployment_started(rollout, "eastus", ref("eastus"), at(2))
    rollout = record_provisioning_failed(rollout, "eastus", "ImagePullFailure: not found", at(3))
    east = rollout.region("eastus")
    assert east.state is RegionState.FAILED
    assert east.last_error == "ImagePullFailure: not found"
    assert rollout.region("westus").state is RegionState.HELD
    assert rollout.state is RolloutState.FAILED
    kinds = [(e.type, e.region) for e in rollout.outbox]
    assert (EventType.REGION_FAILED, "eastus") in kinds
    assert (EventType.ROLLOUT_FINISHED, "") in kinds
    actions = next_actions(rollout, at(4), POLICY)
    assert DiscardDeployment("eastus", ref("eastus")) in actions
    assert starts(actions) == []  # type: ignore[arg-type]
    # a secondary that replicates later is held too, never deployed
    rollout = replicated(rollout, "northeurope", at(5))
    assert rollout.region("northeurope").state is RegionState.HELD
    rollout = record_deployment_discarded(rollout, "eastus", at(6))
    assert rollout.region("eastus").state is RegionState.ROLLED_BACK
    assert rollout.state is RolloutState.FAILED
    assert not any(isinstance(a, DiscardDeployment) for a in next_actions(rollout, at(7), POLICY))


def test_smoke_failure_fails_the_region_and_leaves_traffic() -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    rollout = record_deployment_started(rollout, "eastus", ref("eastus"), at(2))
    rollout = record_provisioning_succeeded(rollout, "eastus", at(3))
    rollout = record_smoke_failed(rollout, "eastus", "scoring answered 500", at(4))
    east = rollout.region("eastus")
    assert east.state is RegionState.FAILED
    assert east.live_at is None
    assert not any(isinstance(a, ShiftTraffic) for a in next_actions(rollout, at(5), POLICY))


def test_secondary_failure_does_not_hold_other_secondaries() -> None:
    rollout = fresh()
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
    rollout = live(rollout, "eastus", at(2))
    rollout = record_deployment_started(rollout, "westus", ref("westus"), at(3))
    rollout = record_provisioning_failed(rollout, "westus", "quota", at(4))
    assert rollout.region("northeurope").state is RegionState.REPLICATED
    assert "northeurope" in starts(next_actions(rollout, at(5), POLICY))  # type: ignore[arg-type]


def test_stale_deployment_results_are_ignored() -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    assert record_provisioning_succeeded(rollout, "eastus", at(2)) is rollout
    assert record_smoke_passed(rollout, "eastus", at(2)) is rollout
    assert record_traffic_shifted(rollout, "eastus", None, at(2)) is rollout
    assert record_previous_deleted(rollout, "eastus", at(2)) is rollout
    assert record_deployment_discarded(rollout, "eastus", at(2)) is rollout
    started = record_deployment_started(rollout, "eastus", ref("eastus"), at(2))
    assert record_deployment_started(started, "eastus", ref("eastus", "other"), at(3)) is started
    assert record_smoke_failed(started, "eastus", "x", at(3)) is started
    done = live(rollout, "eastus", at(3))
    assert record_deployment_failed(done, "eastus", "late failure", at(4)) is done


def test_provisioning_that_never_finishes_times_out() -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    rollout = record_deployment_started(rollout, "eastus", ref("eastus"), at(2))
    limit = at(2) + timedelta(seconds=POLICY.deployment_timeout_s)
    assert tick(rollout, limit - timedelta(seconds=1), POLICY) is rollout
    failed = tick(rollout, limit, POLICY)
    assert failed.region("eastus").state is RegionState.FAILED
    assert "not provisioned" in (failed.region("eastus").last_error or "")


def test_per_region_overrides_reach_the_start_action() -> None:
    target = Target(
        "models-llm",
        DeploymentSettings(instance_type="Standard_DS3_v2", instance_count=2),
        (("westus", RegionOverride(instance_type="Standard_NC6s_v3")),),
    )
    rollout = new_rollout(notice(), ("eastus", "westus"), target, T0)
    assert target.settings_for("westus").instance_type == "Standard_NC6s_v3"
    assert target.settings_for("westus").instance_count == 2
    assert target.settings_for("eastus").instance_type == "Standard_DS3_v2"
    assert rollout.target == target


def test_action_error_is_shown_without_changing_state() -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    errored = record_action_error(rollout, "eastus", "ARM answered 503", at(2))
    assert errored.region("eastus").last_error == "ARM answered 503"
    assert errored.region("eastus").state is RegionState.REPLICATED
    assert record_action_error(errored, "eastus", "ARM answered 503", at(3)) is errored
