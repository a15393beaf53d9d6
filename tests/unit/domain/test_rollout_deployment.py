"""Blue-green deployment per region: the endpoint claimed first, primary first, secondaries
after, failures hold, every step has a deadline, leases, events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from shared.domain.events import EventType
from shared.domain.model import DeployStep, RegionState, Rollout, RolloutState
from shared.domain.rollout import (
    LEASE_SAVE_GRACE,
    Action,
    CheckDeployment,
    ClaimEndpoint,
    CreateDeployment,
    DeletePrevious,
    DiscardDeployment,
    EndpointClaim,
    ProbeRegion,
    ReleaseLease,
    RenewLease,
    ShiftTraffic,
    SmokeTest,
    lease_abandoned,
    new_rollout,
    next_actions,
    record_action_error,
    record_deployable,
    record_deployment_created,
    record_deployment_discarded,
    record_deployment_failed,
    record_endpoint_claim,
    record_lease_released,
    record_lease_renewed,
    record_previous_deleted,
    record_provisioning_failed,
    record_provisioning_succeeded,
    record_replaced,
    record_smoke_answer,
    record_smoke_failed,
    record_smoke_passed,
    record_traffic_shifted,
    record_waiting,
    supersede,
    tick,
)
from shared.domain.targets import DeploymentSettings, RegionOverride, Target
from tests.unit.domain.builders import (
    DIGEST_A,
    DIGEST_B,
    POLICY,
    REGIONS,
    T0,
    TARGET,
    WORKSPACE,
    at,
    claimed,
    confirmed,
    fresh,
    live,
    notice,
    ref,
    replicated,
    started,
    summary,
    verifying,
)

ENDPOINT = TARGET.endpoint


def claims(actions: list[Action]) -> list[str]:
    return [a.region for a in actions if isinstance(a, ClaimEndpoint)]


def of_type(actions: list[Action], kind: type) -> list[Action]:
    return [a for a in actions if isinstance(a, kind)]


def creates(actions: list[Action]) -> list[CreateDeployment]:
    return [a for a in actions if isinstance(a, CreateDeployment)]


def shifting(rollout: Rollout, region: str, now: datetime, previous: str | None = None) -> Rollout:
    """Verified: traffic is to move to the new deployment next."""
    return record_smoke_passed(verifying(rollout, region, now, previous), region, now)


# --- the happy path -------------------------------------------------------------------


def test_nothing_deploys_before_the_manifest_is_known_deployable() -> None:
    rollout = confirmed(new_rollout(notice(), REGIONS, TARGET, T0), T0)
    rollout = replicated(rollout, "eastus", at(1))
    assert rollout.confirmed_at == T0
    assert claims(next_actions(rollout, at(1), POLICY)) == []


def test_nothing_deploys_before_the_registry_confirmed_a_tag() -> None:
    rollout = record_deployable(new_rollout(notice(), REGIONS, TARGET, T0), 1, T0)
    rollout = replicated(rollout, "eastus", at(1))
    assert rollout.confirmed_at is None and rollout.pending_tags == ("v1",)
    assert claims(next_actions(rollout, at(1), POLICY)) == []
    assert claims(next_actions(confirmed(rollout, at(2)), at(2), POLICY)) == ["eastus"]


def test_primary_walks_the_blue_green_steps() -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    assert ClaimEndpoint("eastus", ENDPOINT) in next_actions(rollout, at(1), POLICY)

    rollout = claimed(rollout, "eastus", at(2), serving="blue", serving_rollout="rollout-blue")
    east = rollout.region("eastus")
    assert (east.state, east.deploy_step, east.deploy_started_at) == (
        RegionState.DEPLOYING,
        DeployStep.REQUESTED,
        at(2),
    )
    assert east.deployment == ref("eastus")
    assert (east.previous_deployment, east.previous_rollout) == ("blue", "rollout-blue")
    assert east.lease_until == at(2) + timedelta(hours=2)
    assert rollout.state is RolloutState.DEPLOYING
    # By digest, never by tag: the tag may move while the regions roll out.
    assert CreateDeployment(
        "eastus", ref("eastus"), f"contoso.azurecr.io/models/llm@{DIGEST_A}", DeploymentSettings()
    ) in next_actions(rollout, at(2), POLICY)

    rollout = record_deployment_created(rollout, "eastus", "https://op/1", at(3))
    east = rollout.region("eastus")
    assert east.deploy_step is DeployStep.CREATING
    operation = replace(ref("eastus"), operation="https://op/1")
    assert east.deployment == operation
    assert CheckDeployment("eastus", operation) in next_actions(rollout, at(3), POLICY)

    rollout = record_provisioning_succeeded(rollout, "eastus", at(4))
    assert SmokeTest("eastus", operation, "{}") in next_actions(rollout, at(4), POLICY)

    rollout = record_smoke_passed(rollout, "eastus", at(5))
    assert ShiftTraffic("eastus", operation) in next_actions(rollout, at(5), POLICY)

    rollout = record_traffic_shifted(rollout, "eastus", at(6))
    east = rollout.region("eastus")
    assert (east.state, east.deploy_step, east.live_at) == (
        RegionState.LIVE,
        DeployStep.KEEPING_PREVIOUS,
        at(6),
    )
    assert (EventType.REGION_LIVE, "eastus") in [(e.type, e.region) for e in rollout.outbox]
    # The previous deployment stays (a rollback is then a traffic change) until every
    # region is live and the keep time has passed.
    assert not of_type(next_actions(rollout, at(7), POLICY), DeletePrevious)
    for region in ("westus", "northeurope"):
        rollout = live(replicated(rollout, region, at(7)), region, at(8))
    kept_until = at(8) + timedelta(seconds=POLICY.keep_previous_s)
    waiting = tick(rollout, kept_until - timedelta(seconds=1), POLICY)
    assert waiting.region("eastus").deploy_step is DeployStep.KEEPING_PREVIOUS
    rollout = tick(rollout, kept_until, POLICY)
    assert rollout.region("eastus").deploy_step is DeployStep.CLEANING_UP
    blue = replace(operation, name="blue")
    assert DeletePrevious("eastus", blue) in next_actions(rollout, kept_until, POLICY)

    rollout = record_previous_deleted(rollout, "eastus", kept_until)
    assert rollout.region("eastus").deploy_step is DeployStep.DONE
    assert not of_type(next_actions(rollout, kept_until, POLICY), DeletePrevious)


def test_the_image_deployed_is_the_platform_manifest_that_runs() -> None:
    rollout = new_rollout(notice(), ("eastus",), TARGET, T0)
    rollout = confirmed(record_deployable(rollout, 1, T0, platform_digest=DIGEST_B), T0)
    assert rollout.platform_digest == DIGEST_B
    rollout = claimed(replicated(rollout, "eastus", at(1)), "eastus", at(2))
    (create,) = creates(next_actions(rollout, at(2), POLICY))
    assert create.image == f"contoso.azurecr.io/models/llm@{DIGEST_B}"
    assert fresh().platform_digest == DIGEST_A  # a plain image runs itself


def test_no_smoke_request_goes_straight_to_traffic_and_no_previous_means_done() -> None:
    target = Target(ENDPOINT, DeploymentSettings(smoke_request=None))
    rollout = new_rollout(notice(), ("eastus",), target, T0)
    rollout = confirmed(record_deployable(rollout, None, T0), T0)
    rollout = replicated(rollout, "eastus", at(1))
    rollout = started(rollout, "eastus", at(2))
    rollout = record_provisioning_succeeded(rollout, "eastus", at(3))
    assert rollout.region("eastus").deploy_step is DeployStep.SHIFTING_TRAFFIC
    rollout = record_traffic_shifted(rollout, "eastus", at(4))
    assert rollout.region("eastus").deploy_step is DeployStep.DONE
    # a single live region makes the rollout live, and finished exactly once
    assert rollout.state is RolloutState.LIVE
    assert [e.type for e in rollout.outbox].count(EventType.ROLLOUT_FINISHED) == 1


def test_secondary_waits_for_replication_and_for_primary_live() -> None:
    rollout = fresh()
    rollout = replicated(rollout, "westus", at(1))  # secondary replicated first
    assert claims(next_actions(rollout, at(1), POLICY)) == []
    rollout = replicated(rollout, "eastus", at(2))
    assert claims(next_actions(rollout, at(2), POLICY)) == ["eastus"]
    rollout = shifting(rollout, "eastus", at(3))
    assert claims(next_actions(rollout, at(5), POLICY)) == []
    # a secondary that is not replicated cannot be claimed even if someone tries out of turn
    assert claimed(rollout, "northeurope", at(5)) is rollout
    rollout = record_traffic_shifted(rollout, "eastus", at(6))
    # westus replicated -> claimed; northeurope not replicated -> only probed
    actions = next_actions(rollout, at(6), POLICY)
    assert claims(actions) == ["westus"]
    assert ProbeRegion("northeurope") in actions


def test_every_region_live_finishes_the_rollout_once_and_gives_back_every_lease() -> None:
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
    # done changing the endpoint everywhere: only the leases are left to give back
    assert next_actions(rollout, at(200), POLICY) == [ReleaseLease(r, ENDPOINT) for r in REGIONS]
    for region in REGIONS:
        rollout = record_lease_released(rollout, region, at(201))
    assert next_actions(rollout, at(202), POLICY) == []


def test_per_region_overrides_reach_the_create_action() -> None:
    target = Target(
        ENDPOINT,
        DeploymentSettings(instance_type="Standard_DS3_v2", instance_count=2),
        (("westus", RegionOverride(instance_type="Standard_NC6s_v3")),),
    )
    rollout = new_rollout(notice(), ("eastus", "westus"), target, T0)
    rollout = confirmed(record_deployable(rollout, None, T0), T0)
    assert rollout.target == target
    for region in ("eastus", "westus"):
        rollout = replicated(rollout, region, at(1))
    rollout = claimed(rollout, "eastus", at(2))
    (east,) = creates(next_actions(rollout, at(2), POLICY))
    assert east.settings == DeploymentSettings("Standard_DS3_v2", 2)
    rollout = claimed(live(rollout, "eastus", at(3)), "westus", at(4))
    (west,) = creates(next_actions(rollout, at(4), POLICY))
    assert west.settings == DeploymentSettings("Standard_NC6s_v3", 2)


# --- claiming the endpoint ------------------------------------------------------------


def test_a_newer_rollout_found_on_the_endpoint_supersedes_instead_of_deploying() -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    newer = fresh(DIGEST_B, at_=at(30))
    stopped = record_endpoint_claim(
        rollout, "eastus", EndpointClaim(workspace=WORKSPACE, newer=summary(newer)), at(31)
    )
    assert stopped.superseded_by == newer.id
    assert stopped.state is RolloutState.SUPERSEDED
    assert stopped.region("eastus").deployment is None
    assert claims(next_actions(stopped, at(32), POLICY)) == []


def test_a_lease_held_by_another_rollout_makes_the_region_wait_not_fail() -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    held = EndpointClaim(workspace=WORKSPACE, held_by="other-rollout")
    waiting = record_endpoint_claim(rollout, "eastus", held, at(2))
    east = waiting.region("eastus")
    assert east.state is RegionState.REPLICATED
    assert east.waiting_for == f"endpoint {ENDPOINT} is being changed by other-rollout"
    assert east.last_error is None
    assert east.lease_until is None
    assert record_endpoint_claim(waiting, "eastus", held, at(3)) is waiting
    # it asks again on the next step and deploys once the lease is free
    assert claims(next_actions(waiting, at(3), POLICY)) == ["eastus"]
    requested = claimed(waiting, "eastus", at(4))
    assert requested.region("eastus").deploy_step is DeployStep.REQUESTED
    assert requested.region("eastus").waiting_for is None


def test_the_previous_deployment_comes_from_the_claim_never_from_a_guess() -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    unknown = claimed(rollout, "eastus", at(2))
    assert unknown.region("eastus").previous_deployment is None
    assert unknown.region("eastus").previous_rollout is None
    # the endpoint already serves this very deployment (an earlier attempt): nothing to delete
    itself = claimed(rollout, "eastus", at(2), serving=ref("eastus").name, serving_rollout="x")
    assert itself.region("eastus").previous_deployment is None
    assert itself.region("eastus").previous_rollout is None


def test_record_waiting_is_shown_apart_from_errors() -> None:
    rollout = claimed(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    why = f"endpoint {ENDPOINT} is being created"
    waiting = record_waiting(rollout, "eastus", why, at(3))
    assert waiting.region("eastus").waiting_for == why
    assert waiting.region("eastus").last_error is None
    assert waiting.region("eastus").deploy_step is DeployStep.REQUESTED
    assert record_waiting(waiting, "eastus", why, at(4)) is waiting
    created = record_deployment_created(waiting, "eastus", None, at(5))
    assert created.region("eastus").waiting_for is None


# --- failures -------------------------------------------------------------------------


def test_primary_provisioning_failure_holds_secondaries_and_discards_deployment() -> None:
    rollout = fresh()
    for region in REGIONS[:2]:
        rollout = replicated(rollout, region, at(1))
    rollout = started(rollout, "eastus", at(2))
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
    assert claims(actions) == []
    # a secondary that replicates later is held too, never deployed
    rollout = replicated(rollout, "northeurope", at(5))
    assert rollout.region("northeurope").state is RegionState.HELD
    rollout = record_deployment_discarded(rollout, "eastus", at(6))
    assert rollout.region("eastus").state is RegionState.ROLLED_BACK
    assert rollout.state is RolloutState.FAILED
    assert not of_type(next_actions(rollout, at(7), POLICY), DiscardDeployment)


def test_smoke_failure_fails_the_region_and_leaves_traffic() -> None:
    rollout = verifying(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    rollout = record_smoke_failed(rollout, "eastus", "scoring answered 500", at(4))
    east = rollout.region("eastus")
    assert east.state is RegionState.FAILED
    assert east.live_at is None
    assert east.deploy_step is DeployStep.DISCARDING
    assert not of_type(next_actions(rollout, at(5), POLICY), ShiftTraffic)


def test_secondary_failure_does_not_hold_other_secondaries() -> None:
    rollout = fresh()
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
    rollout = live(rollout, "eastus", at(2))
    rollout = started(rollout, "westus", at(3))
    rollout = record_provisioning_failed(rollout, "westus", "quota", at(4))
    assert rollout.region("northeurope").state is RegionState.REPLICATED
    assert "northeurope" in claims(next_actions(rollout, at(5), POLICY))


def test_stale_deployment_results_are_ignored() -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    assert record_deployment_created(rollout, "eastus", None, at(2)) is rollout
    assert record_provisioning_succeeded(rollout, "eastus", at(2)) is rollout
    assert record_smoke_passed(rollout, "eastus", at(2)) is rollout
    assert record_smoke_answer(rollout, "eastus", 503, "", at(2)) is rollout
    assert record_traffic_shifted(rollout, "eastus", at(2)) is rollout
    assert record_previous_deleted(rollout, "eastus", at(2)) is rollout
    assert record_deployment_discarded(rollout, "eastus", at(2)) is rollout
    assert record_lease_released(rollout, "eastus", at(2)) is rollout
    requested = claimed(rollout, "eastus", at(2))
    # a second claim answer (a retried step) changes nothing
    assert claimed(requested, "eastus", at(3), serving="other") is requested
    created = record_deployment_created(requested, "eastus", None, at(3))
    assert record_deployment_created(created, "eastus", "https://late", at(4)) is created
    assert record_smoke_failed(created, "eastus", "x", at(4)) is created
    assert record_traffic_shifted(created, "eastus", at(4)) is created
    done = live(rollout, "eastus", at(3))
    assert record_deployment_failed(done, "eastus", "late failure", at(4)) is done
    assert record_endpoint_claim(done, "eastus", EndpointClaim(WORKSPACE), at(4)) is done


def test_action_error_is_shown_without_changing_state() -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    errored = record_action_error(rollout, "eastus", "ARM answered 503", at(2))
    assert errored.region("eastus").last_error == "ARM answered 503"
    assert errored.region("eastus").state is RegionState.REPLICATED
    assert record_action_error(errored, "eastus", "ARM answered 503", at(3)) is errored


# --- smoke answers --------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_any_2xx_smoke_answer_passes(status: int) -> None:
    rollout = verifying(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    passed = record_smoke_answer(rollout, "eastus", status, "ok", at(3))
    assert passed.region("eastus").deploy_step is DeployStep.SHIFTING_TRAFFIC
    assert passed.region("eastus").smoke_attempts == 1


@pytest.mark.parametrize("status", [None, 408, 429, 502, 503, 504])
def test_a_smoke_answer_that_says_not_now_is_retried_until_the_verification_deadline(
    status: int | None,
) -> None:
    rollout = verifying(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    deadline = at(2) + timedelta(seconds=POLICY.verify_timeout_s)
    now = at(3)
    for attempt in range(1, 4):
        rollout = record_smoke_answer(rollout, "eastus", status, "busy", now)
        east = rollout.region("eastus")
        assert east.state is RegionState.DEPLOYING
        assert east.deploy_step is DeployStep.VERIFYING
        assert east.smoke_attempts == attempt
        assert "tried again" in (east.last_error or "")
        assert of_type(next_actions(rollout, now, POLICY), SmokeTest)
        now += timedelta(seconds=60)
    assert tick(rollout, deadline - timedelta(seconds=1), POLICY) is rollout
    failed = tick(rollout, deadline, POLICY)
    east = failed.region("eastus")
    assert east.state is RegionState.FAILED
    assert east.deploy_step is DeployStep.DISCARDING
    assert (east.last_error or "").startswith(
        f"not verified within {int(POLICY.verify_timeout_s)} s"
    )
    assert "busy" in (east.last_error or "")
    assert DiscardDeployment("eastus", ref("eastus")) in next_actions(failed, deadline, POLICY)


@pytest.mark.parametrize("status", [400, 401, 404, 500, 501])
def test_a_broken_smoke_answer_fails_the_region_at_once(status: int) -> None:
    rollout = verifying(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    failed = record_smoke_answer(rollout, "eastus", status, "Traceback ...", at(3))
    east = failed.region("eastus")
    assert east.state is RegionState.FAILED
    assert east.deploy_step is DeployStep.DISCARDING
    assert east.last_error == f"smoke request answered {status}: Traceback ..."
    assert (EventType.REGION_FAILED, "eastus") in [(e.type, e.region) for e in failed.outbox]


# --- step deadlines -------------------------------------------------------------------


def test_a_requested_deployment_that_never_gets_created_times_out_and_is_discarded() -> None:
    rollout = claimed(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    rollout = record_waiting(rollout, "eastus", f"endpoint {ENDPOINT} is being created", at(3))
    limit = at(2) + timedelta(seconds=POLICY.deployment_timeout_s)
    assert tick(rollout, limit - timedelta(seconds=1), POLICY) is rollout
    failed = tick(rollout, limit, POLICY)
    east = failed.region("eastus")
    assert (east.state, east.deploy_step) == (RegionState.FAILED, DeployStep.DISCARDING)
    assert "not provisioned" in (east.last_error or "")
    assert f"waiting for: endpoint {ENDPOINT} is being created" in (east.last_error or "")
    assert east.waiting_for is None
    # the create may have reached Azure: the recorded deployment is deleted, not orphaned
    assert DiscardDeployment("eastus", ref("eastus")) in next_actions(failed, limit, POLICY)


def test_provisioning_that_never_finishes_times_out() -> None:
    rollout = started(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    limit = at(2) + timedelta(seconds=POLICY.deployment_timeout_s)
    assert tick(rollout, limit - timedelta(seconds=1), POLICY) is rollout
    failed = tick(rollout, limit, POLICY)
    assert failed.region("eastus").state is RegionState.FAILED
    assert failed.region("eastus").deploy_step is DeployStep.DISCARDING
    assert "not provisioned" in (failed.region("eastus").last_error or "")


def test_a_traffic_shift_that_never_finishes_fails_the_region() -> None:
    rollout = shifting(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    limit = at(2) + timedelta(seconds=POLICY.traffic_timeout_s)
    assert tick(rollout, limit - timedelta(seconds=1), POLICY) is rollout
    failed = tick(rollout, limit, POLICY)
    east = failed.region("eastus")
    assert (east.state, east.deploy_step) == (RegionState.FAILED, DeployStep.DISCARDING)
    assert (east.last_error or "").startswith("traffic not shifted within")
    assert not of_type(next_actions(failed, limit, POLICY), ShiftTraffic)


def one_region() -> Rollout:
    rollout = new_rollout(notice(), ("eastus",), TARGET, T0)
    return confirmed(record_deployable(rollout, 1, T0), T0)


def test_a_previous_deployment_that_cannot_be_deleted_is_left_with_a_clear_error() -> None:
    rollout = live(replicated(one_region(), "eastus", at(1)), "eastus", at(2), previous="blue")
    kept_until = at(2) + timedelta(seconds=POLICY.keep_previous_s)
    rollout = tick(rollout, kept_until, POLICY)
    assert rollout.region("eastus").deploy_step is DeployStep.CLEANING_UP
    limit = kept_until + timedelta(seconds=POLICY.cleanup_timeout_s)
    assert tick(rollout, limit - timedelta(seconds=1), POLICY) is rollout
    done = tick(rollout, limit, POLICY)
    east = done.region("eastus")
    assert (east.state, east.deploy_step) == (RegionState.LIVE, DeployStep.DONE)
    assert "could not delete deployment blue" in (east.last_error or "")
    assert "still billed" in (east.last_error or "")
    assert not of_type(next_actions(done, limit, POLICY), DeletePrevious)


def test_a_failed_deployment_that_cannot_be_discarded_is_left_with_a_clear_error() -> None:
    rollout = started(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    rollout = record_provisioning_failed(rollout, "eastus", "quota", at(3))
    limit = at(3) + timedelta(seconds=POLICY.cleanup_timeout_s)
    assert tick(rollout, limit - timedelta(seconds=1), POLICY) is rollout
    left = tick(rollout, limit, POLICY)
    east = left.region("eastus")
    assert east.deploy_step is DeployStep.DISCARDED
    assert f"could not delete deployment {ref('eastus').name}" in (east.last_error or "")
    assert "still billed" in (east.last_error or "")
    assert not of_type(next_actions(left, limit, POLICY), DiscardDeployment)


# --- supersession of a deploying region -----------------------------------------------


@pytest.mark.parametrize("step", ["requested", "creating", "verifying"])
def test_superseding_a_region_before_traffic_discards_the_recorded_deployment(step: str) -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    if step == "requested":
        rollout = claimed(rollout, "eastus", at(2))
    elif step == "creating":
        rollout = started(rollout, "eastus", at(2))
    else:
        rollout = verifying(rollout, "eastus", at(2))
    assert rollout.region("eastus").deploy_step is DeployStep(step)
    stopped = supersede(rollout, by="newer", now=at(3))
    east = stopped.region("eastus")
    assert (east.state, east.deploy_step) == (RegionState.SUPERSEDED, DeployStep.DISCARDING)
    actions = next_actions(stopped, at(4), POLICY)
    # no orphan: the deployment named at the claim is deleted, even if its create never ran
    assert DiscardDeployment("eastus", ref("eastus")) in actions
    assert not of_type(actions, CreateDeployment)
    # the lease is kept while our deployment is being deleted, given back afterwards
    assert not of_type(actions, ReleaseLease)
    discarded = record_deployment_discarded(stopped, "eastus", at(5))
    assert discarded.region("eastus").deploy_step is DeployStep.DISCARDED
    assert discarded.region("eastus").state is RegionState.SUPERSEDED
    assert next_actions(discarded, at(6), POLICY) == [ReleaseLease("eastus", ENDPOINT)]


def test_a_superseded_discard_that_keeps_failing_is_left_after_the_cleanup_deadline() -> None:
    rollout = started(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    stopped = supersede(rollout, by="newer", now=at(3))
    assert stopped.region("eastus").deploy_step is DeployStep.DISCARDING
    left = tick(stopped, at(3) + timedelta(seconds=POLICY.cleanup_timeout_s), POLICY)
    east = left.region("eastus")
    assert east.deploy_step is DeployStep.DISCARDED
    assert "still billed" in (east.last_error or "")
    assert not of_type(next_actions(left, at(10_000), POLICY), DiscardDeployment)


# --- the previous deployment ----------------------------------------------------------


def test_traffic_shifted_deletes_only_the_previous_deployment_recorded_at_the_claim() -> None:
    rollout = shifting(replicated(one_region(), "eastus", at(1)), "eastus", at(2), previous="blue")
    rollout = record_traffic_shifted(rollout, "eastus", at(3))
    rollout = tick(rollout, at(3) + timedelta(seconds=POLICY.keep_previous_s), POLICY)
    deletes = of_type(next_actions(rollout, at(4), POLICY), DeletePrevious)
    assert deletes == [DeletePrevious("eastus", ref("eastus", "blue"))]
    assert rollout.region("eastus").previous_rollout == "older"


def test_traffic_shifted_deletes_nothing_when_nothing_served_before() -> None:
    rollout = shifting(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    rollout = record_traffic_shifted(rollout, "eastus", at(3))
    east = rollout.region("eastus")
    assert (east.state, east.deploy_step) == (RegionState.LIVE, DeployStep.DONE)
    assert east.previous_deployment is None
    actions = next_actions(rollout, at(4), POLICY)
    assert not of_type(actions, DeletePrevious)
    assert not of_type(actions, DiscardDeployment)


# --- leases ---------------------------------------------------------------------------


def test_a_working_region_renews_its_lease_once_half_the_ttl_is_gone() -> None:
    rollout = started(replicated(fresh(), "eastus", at(1)), "eastus", at(1))
    lease = rollout.region("eastus").lease_until
    assert lease == at(1) + timedelta(seconds=POLICY.lease_ttl_s)
    half = lease - timedelta(seconds=POLICY.lease_ttl_s / 2)
    assert not of_type(next_actions(rollout, half - timedelta(seconds=1), POLICY), RenewLease)
    assert RenewLease("eastus", ENDPOINT) in next_actions(rollout, half, POLICY)
    renewed = record_lease_renewed(rollout, "eastus", half + timedelta(hours=2), half)
    assert renewed.region("eastus").lease_until == half + timedelta(hours=2)
    assert not of_type(next_actions(renewed, half, POLICY), RenewLease)
    # a late, shorter renewal never shortens the lease
    assert record_lease_renewed(renewed, "eastus", half + timedelta(hours=1), half) is renewed


def test_a_region_gives_its_lease_back_once_done_changing_the_endpoint() -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    steps: list[Callable[[Rollout], Rollout]] = [
        lambda r: claimed(r, "eastus", at(2), serving="blue", serving_rollout="older"),
        lambda r: record_deployment_created(r, "eastus", None, at(3)),
        lambda r: record_provisioning_succeeded(r, "eastus", at(4)),
        lambda r: record_smoke_passed(r, "eastus", at(5)),
    ]
    for step in steps:
        rollout = step(rollout)
        assert rollout.region("eastus").lease_until is not None
        assert not of_type(next_actions(rollout, at(7), POLICY), ReleaseLease)
    # Live: "blue" is only kept (0% traffic) for a rollback; nothing changes the endpoint.
    rollout = record_traffic_shifted(rollout, "eastus", at(6))
    assert rollout.region("eastus").deploy_step is DeployStep.KEEPING_PREVIOUS
    assert ReleaseLease("eastus", ENDPOINT) in next_actions(rollout, at(9), POLICY)
    released = record_lease_released(rollout, "eastus", at(9))
    assert released.region("eastus").lease_until is None
    assert not of_type(next_actions(released, at(10), POLICY), ReleaseLease)
    assert record_lease_released(released, "eastus", at(11)) is released


def test_a_failed_region_keeps_its_lease_until_its_deployment_is_discarded() -> None:
    rollout = started(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    failed = record_provisioning_failed(rollout, "eastus", "quota", at(3))
    assert not of_type(next_actions(failed, at(4), POLICY), ReleaseLease)
    discarded = record_deployment_discarded(failed, "eastus", at(5))
    assert ReleaseLease("eastus", ENDPOINT) in next_actions(discarded, at(6), POLICY)


def test_a_superseded_rollout_still_gives_back_its_leases() -> None:
    rollout = live(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    stopped = supersede(rollout, by="newer", now=at(3))
    assert next_actions(stopped, at(4), POLICY) == [ReleaseLease("eastus", ENDPOINT)]


# --- replaced on the endpoint ---------------------------------------------------------


def test_record_replaced_makes_a_live_region_superseded_and_the_rollout_superseded() -> None:
    rollout = fresh()
    for region in REGIONS:
        rollout = live(replicated(rollout, region, at(1)), region, at(2))
    assert rollout.state is RolloutState.LIVE
    newer = fresh(DIGEST_B, at_=at(50))
    replaced = record_replaced(rollout, "eastus", newer.id, at(60))
    east = replaced.region("eastus")
    assert east.state is RegionState.SUPERSEDED
    assert east.last_error == f"replaced by {newer.id}"
    assert replaced.superseded_by == newer.id
    assert replaced.state is RolloutState.SUPERSEDED
    assert replaced.region("westus").state is RegionState.LIVE  # still serving there
    assert record_replaced(replaced, "eastus", newer.id, at(61)) is replaced
    both = record_replaced(replaced, "westus", newer.id, at(62))
    assert both.region("westus").state is RegionState.SUPERSEDED


def test_record_replaced_ignores_a_region_that_is_not_live() -> None:
    rollout = started(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    assert record_replaced(rollout, "eastus", "newer", at(3)) is rollout
    assert record_replaced(rollout, "nowhere", "newer", at(3)) is rollout


def test_record_replaced_stops_the_regions_still_deploying_like_a_supersession() -> None:
    rollout = fresh()
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
    rollout = live(rollout, "eastus", at(2))
    rollout = started(rollout, "westus", at(3))
    replaced = record_replaced(rollout, "eastus", "newer", at(4))
    # a rollout marked replaced gets no more deployment steps: a region left in CREATING would
    # keep its lease (renewed forever) and its deployment (billed forever)
    west = replaced.region("westus")
    assert (west.state, west.deploy_step) == (RegionState.SUPERSEDED, DeployStep.DISCARDING)
    assert DiscardDeployment("westus", ref("westus")) in next_actions(replaced, at(5), POLICY)
    assert replaced.region("northeurope").state is RegionState.SUPERSEDED


def test_no_event_is_lost_and_none_repeats_along_the_steps() -> None:
    rollout = fresh()
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
    rollout = live(rollout, "eastus", at(2), previous="blue")
    ids = [e.id for e in rollout.outbox]
    assert len(ids) == len(set(ids))
    again = live(rollout, "eastus", at(3), previous="blue")  # a replay of every step
    assert again is rollout
    assert DIGEST_A in rollout.outbox[-1].subject


def test_superseding_a_region_that_is_shifting_traffic_leaves_no_deployment_behind() -> None:
    # Traffic may already be moving to it, so it is not simply discarded; but something must
    # account for it: finish the shift (the newer rollout then replaces and deletes it as the
    # serving deployment) or delete it. Giving the lease back and forgetting it orphans it.
    rollout = shifting(replicated(fresh(), "eastus", at(1)), "eastus", at(2), previous="blue")
    stopped = supersede(rollout, by="newer", now=at(3))
    actions = next_actions(stopped, at(4), POLICY)
    handled = [
        a
        for a in actions
        if isinstance(a, ShiftTraffic | DiscardDeployment) and a.region == "eastus"
    ]
    assert handled, actions
    assert not of_type(actions, ReleaseLease)


def test_a_lease_its_holder_does_not_record_is_abandoned_after_the_grace() -> None:
    holder = replicated(fresh(), "eastus", at(1))  # never recorded a lease
    taken = at(2)
    assert not lease_abandoned(holder, "eastus", taken, taken + LEASE_SAVE_GRACE / 2)
    assert lease_abandoned(holder, "eastus", taken, taken + LEASE_SAVE_GRACE)
    assert lease_abandoned(None, "eastus", taken, taken + LEASE_SAVE_GRACE)
    recorded = claimed(holder, "eastus", at(2))
    assert not lease_abandoned(recorded, "eastus", taken, at(3600))
