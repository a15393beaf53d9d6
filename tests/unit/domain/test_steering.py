"""Operator actions as pure transitions: what each does, when it is refused, and that every
request lands in the history (and an event) exactly once."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from shared.domain.events import EventType
from shared.domain.model import (
    DeploymentRef,
    DeployStep,
    OperatorAction,
    RegionState,
    Rollout,
    RolloutState,
)
from shared.domain.rollout import (
    CheckDeployment,
    ClaimEndpoint,
    CreateDeployment,
    DeletePrevious,
    DiscardDeployment,
    RedeployPrevious,
    RestorePrevious,
    ShiftTraffic,
    SmokeTest,
    new_rollout,
    next_actions,
    record_deployable,
    record_deployment_discarded,
    record_lease_taken,
    record_previous_gone,
    record_previous_redeployed,
    record_probe,
    record_provisioning_failed,
    record_provisioning_succeeded,
    record_rollback_failed,
    record_smoke_passed,
    record_traffic_restored,
    record_traffic_shifted,
    tick,
)
from shared.domain.serialization import (
    rollout_from_record,
    rollout_to_document,
    rollout_to_record,
)
from shared.domain.steering import (
    ACCEPTED,
    MAX_HISTORY,
    REFUSED,
    OperatorRequest,
    apply_request,
    outcome_of,
)
from shared.domain.targets import ApprovalMode, Target
from tests.unit.domain.builders import (
    ABSENT,
    POLICY,
    REGIONS,
    T0,
    TARGET,
    at,
    confirmed,
    fresh,
    live,
    notice,
    replicated,
    started,
    verifying,
)

_ids = itertools.count(1)


def request(
    action: str,
    *regions: str,
    reason: str | None = "looks wrong",
    actor: str = "alice",
    verified: bool = False,
) -> OperatorRequest:
    return OperatorRequest(
        action=OperatorAction(action),
        regions=regions or None,
        reason=reason,
        actor=actor,
        actor_verified=verified,
        request_id=f"req-{next(_ids)}",
    )


def act(rollout: Rollout, action: str, *regions: str, now: datetime | None = None) -> Rollout:
    applied = apply_request(rollout, request(action, *regions), now or at(100))
    return applied


def outcome(rollout: Rollout) -> str:
    return rollout.history[-1].outcome


def all_live(previous: str | None = "blue") -> Rollout:
    rollout = fresh()
    for region in REGIONS:
        rollout = live(replicated(rollout, region, at(1)), region, at(2), previous=previous)
    return rollout


def gated(approval: ApprovalMode = ApprovalMode.BEFORE_SECONDARIES, hours: float = 24) -> Rollout:
    target = replace(TARGET, approval=approval, approval_timeout_s=hours * 3600)
    rollout = new_rollout(notice(), REGIONS, target, T0)
    return confirmed(record_deployable(rollout, 1, T0), T0)


# --- the audit trail --------------------------------------------------------------------


def test_an_accepted_action_is_recorded_with_who_why_where_and_an_event() -> None:
    rollout = replicated(fresh(), "westus", at(1))
    req = request("hold", "westus", reason="canary looks odd", actor="bob", verified=True)
    held = apply_request(rollout, req, at(5))
    entry = held.history[-1]
    assert (entry.at, entry.action, entry.actor, entry.actor_verified) == (
        at(5),
        OperatorAction.HOLD,
        "bob",
        True,
    )
    assert (entry.reason, entry.regions, entry.outcome, entry.message) == (
        "canary looks odd",
        ("westus",),
        ACCEPTED,
        None,
    )
    (event,) = [e for e in held.outbox if e.type is EventType.OPERATOR_HOLD]
    assert event.data["outcome"] == ACCEPTED and event.data["actor"] == "bob"
    assert event.data["rollout_id"] == rollout.id and event.data["regions"] == ["westus"]


def test_a_refused_action_is_recorded_too_and_changes_nothing_else() -> None:
    rollout = fresh()
    refused = act(rollout, "resume")
    assert outcome(refused) == REFUSED
    assert "nothing to resume" in (refused.history[-1].message or "")
    assert refused.regions == rollout.regions
    assert [e.type for e in refused.outbox][-1] is EventType.OPERATOR_RESUME


def test_the_same_request_applied_twice_is_recorded_once() -> None:
    rollout = fresh()
    req = request("hold")
    once = apply_request(rollout, req, at(1))
    assert apply_request(once, req, at(2)) is once
    assert outcome_of(once, req.request_id) is once.history[-1]
    assert outcome_of(rollout, req.request_id) is None


def test_without_regions_the_history_names_the_regions_changed() -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    held = act(rollout, "hold")
    assert held.history[-1].regions == REGIONS


def test_the_history_is_bounded() -> None:
    rollout = fresh()
    for _ in range(MAX_HISTORY + 5):
        rollout = act(rollout, "resume")
    assert len(rollout.history) == MAX_HISTORY
    assert len({e.id for e in rollout.outbox}) == len(rollout.outbox)


def test_history_and_steering_fields_survive_the_storage_record() -> None:
    rollout = act(act(gated(), "hold", "westus"), "resume")
    rollout = act(rollout, "hold", "eastus")
    assert rollout_from_record(rollout_to_record(rollout)) == rollout
    document = rollout_to_document(rollout)
    assert document["history"][0]["action"] == "hold"
    assert document["approval"] == "before_secondaries"


# --- hold and resume --------------------------------------------------------------------


def test_a_held_replicated_region_claims_nothing_until_resumed() -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    assert ClaimEndpoint("eastus", TARGET.endpoint) in next_actions(rollout, at(2), POLICY)
    held = act(rollout, "hold", "eastus")
    assert held.state is RolloutState.HELD
    east = held.region("eastus")
    assert (east.state, east.shown_state) == (RegionState.REPLICATED, RegionState.HELD)
    assert not [a for a in next_actions(held, at(2), POLICY) if isinstance(a, ClaimEndpoint)]
    document = rollout_to_document(held)
    assert (document["state"], document["regions"][0]["state"]) == ("held", "held")
    assert document["regions"][0]["held_in"] == "replicated"
    resumed = act(held, "resume", "eastus", now=at(200))
    assert resumed.region("eastus").resumed_at == at(200)
    assert ClaimEndpoint("eastus", TARGET.endpoint) in next_actions(resumed, at(201), POLICY)


def test_a_held_region_finishes_provisioning_but_starts_no_smoke_request() -> None:
    rollout = started(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    held = act(rollout, "hold", "eastus")
    actions = next_actions(held, at(3), POLICY)
    assert [a for a in actions if isinstance(a, CheckDeployment)]  # in flight: finishes
    provisioned = record_provisioning_succeeded(held, "eastus", at(4))
    assert provisioned.region("eastus").deploy_step is DeployStep.VERIFYING
    assert not [a for a in next_actions(provisioned, at(5), POLICY) if isinstance(a, SmokeTest)]
    # the verification deadline does not run while held ...
    late = at(4) + timedelta(seconds=POLICY.verify_timeout_s * 3)
    assert tick(provisioned, late, POLICY).region("eastus").state is RegionState.DEPLOYING
    # ... and counts from the resume
    resumed = act(provisioned, "resume", now=late)
    assert [a for a in next_actions(resumed, late, POLICY) if isinstance(a, SmokeTest)]
    before = late + timedelta(seconds=POLICY.verify_timeout_s - 1)
    assert tick(resumed, before, POLICY).region("eastus").state is RegionState.DEPLOYING
    after = late + timedelta(seconds=POLICY.verify_timeout_s)
    assert tick(resumed, after, POLICY).region("eastus").state is RegionState.FAILED


def test_a_hold_never_stops_a_traffic_shift_half_way() -> None:
    rollout = verifying(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    shifting = record_smoke_passed(rollout, "eastus", at(3))
    held = act(shifting, "hold", "eastus")
    assert [a for a in next_actions(held, at(4), POLICY) if isinstance(a, ShiftTraffic)]
    done = record_traffic_shifted(held, "eastus", at(5))
    assert done.region("eastus").state is RegionState.LIVE


def test_a_held_requested_region_does_not_create_nor_time_out() -> None:
    from tests.unit.domain.builders import claimed

    rollout = claimed(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    held = act(rollout, "hold", "eastus")
    assert not [a for a in next_actions(held, at(3), POLICY) if isinstance(a, CreateDeployment)]
    late = at(2) + timedelta(seconds=POLICY.deployment_timeout_s * 2)
    assert tick(held, late, POLICY).region("eastus").state is RegionState.DEPLOYING


def test_hold_refusals_name_the_region_and_why() -> None:
    rollout = live(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    refused = act(rollout, "hold", "eastus")
    assert outcome(refused) == REFUSED
    assert "eastus is live" in (refused.history[-1].message or "")
    held = act(rollout, "hold", "westus")
    again = act(held, "hold", "westus")
    assert "westus is held already" in (again.history[-1].message or "")
    assert again.regions == held.regions


def test_a_partly_unfit_region_list_is_refused_as_a_whole() -> None:
    rollout = live(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    refused = act(rollout, "hold", "westus", "eastus")
    assert outcome(refused) == REFUSED
    assert not any(r.operator_hold for r in refused.regions)


def test_resume_refused_when_nothing_is_held() -> None:
    refused = act(fresh(), "resume", "westus")
    assert outcome(refused) == REFUSED and "westus is not held" in (
        refused.history[-1].message or ""
    )


# --- approval gates ----------------------------------------------------------------------


def test_secondaries_wait_for_approval_once_the_primary_is_live() -> None:
    rollout = gated()
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
    assert rollout.gates == ()
    assert act(rollout, "approve").history[-1].outcome == REFUSED  # not reached yet
    rollout = live(rollout, "eastus", at(2))
    assert [g.wave for g in rollout.gates] == [1]
    assert rollout.state is RolloutState.AWAITING_APPROVAL
    assert rollout.region("westus").state is RegionState.AWAITING_APPROVAL
    assert not [a for a in next_actions(rollout, at(3), POLICY) if isinstance(a, ClaimEndpoint)]
    approved = act(rollout, "approve", now=at(4))
    assert approved.history[-1].regions == ("westus", "northeurope")  # what it let go on
    (gate,) = approved.gates
    assert (gate.approved_at, gate.approved_by) == (at(4), "alice")
    assert approved.region("westus").state is RegionState.REPLICATED
    claims = [
        a.region for a in next_actions(approved, at(5), POLICY) if isinstance(a, ClaimEndpoint)
    ]
    assert claims == ["westus", "northeurope"]
    assert outcome(act(approved, "approve")) == REFUSED  # approved already


def test_a_region_still_replicating_waits_for_approval_when_it_arrives() -> None:
    rollout = live(replicated(gated(), "eastus", at(1)), "eastus", at(2))
    assert rollout.state is RolloutState.AWAITING_APPROVAL
    arrived = replicated(rollout, "westus", at(3))
    assert arrived.region("westus").state is RegionState.AWAITING_APPROVAL


def test_an_approval_not_given_in_time_fails_the_rollout_with_the_reason() -> None:
    rollout = gated(hours=2)
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
    rollout = live(rollout, "eastus", at(2))
    deadline = at(2) + timedelta(hours=2)
    assert tick(rollout, deadline - timedelta(seconds=1), POLICY).state is (
        RolloutState.AWAITING_APPROVAL
    )
    failed = tick(rollout, deadline, POLICY)
    assert failed.state is RolloutState.FAILED
    assert failed.region("westus").last_error == "approval not given within 2 h"
    assert failed.region("eastus").state is RegionState.LIVE
    assert outcome(act(failed, "approve", now=deadline)) == REFUSED
    # a retry waits for approval again, from now
    retried = act(failed, "retry", now=deadline)
    assert retried.region("westus").state is RegionState.AWAITING_APPROVAL
    assert retried.gates[0].opened_at == deadline


def test_before_each_wave_gates_every_secondary_wave() -> None:
    rollout = gated(ApprovalMode.BEFORE_EACH_WAVE)
    rollout = live(
        replicated(replicated(rollout, "eastus", at(1)), "westus", at(1)), "eastus", at(2)
    )
    assert rollout.region("westus").state is RegionState.AWAITING_APPROVAL
    assert Target("e").gated(1) is False
    assert replace(TARGET, approval=ApprovalMode.BEFORE_EACH_WAVE).gated(2) is True
    assert replace(TARGET, approval=ApprovalMode.BEFORE_SECONDARIES).gated(2) is False


# --- retry --------------------------------------------------------------------------------


def failed_primary() -> Rollout:
    rollout = fresh()
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
    rollout = started(rollout, "eastus", at(2))
    return record_provisioning_failed(rollout, "eastus", "ImagePullFailed", at(3))


def test_retry_of_a_failed_primary_waits_for_its_discard_then_starts_attempt_two() -> None:
    rollout = failed_primary()
    assert rollout.region("westus").state is RegionState.HELD
    retried = act(rollout, "retry", now=at(10))
    assert outcome(retried) == ACCEPTED
    east = retried.region("eastus")
    assert (east.state, east.retry_requested, east.attempt) == (RegionState.FAILED, True, 1)
    assert [a for a in next_actions(retried, at(11), POLICY) if isinstance(a, DiscardDeployment)]
    discarded = record_deployment_discarded(retried, "eastus", at(12))
    east = discarded.region("eastus")
    assert (east.state, east.attempt, east.deployment) == (RegionState.REPLICATED, 2, None)
    assert east.attempt_started_at == at(12)
    assert discarded.region("westus").state is RegionState.REPLICATED  # released
    # attempt 2 gets a deployment name of its own; secondaries wait for the primary
    claimed = [a for a in next_actions(discarded, at(13), POLICY) if isinstance(a, ClaimEndpoint)]
    assert [a.region for a in claimed] == ["eastus"]
    again = started(discarded, "eastus", at(14))
    deployment = again.region("eastus").deployment
    assert deployment is not None and deployment.name.endswith("-a2")


def test_retry_of_a_rolled_back_region_starts_at_once_and_events_get_new_ids() -> None:
    rollout = record_deployment_discarded(failed_primary(), "eastus", at(4))
    assert rollout.region("eastus").state is RegionState.ROLLED_BACK
    failed_ids = {e.id for e in rollout.outbox if e.type is EventType.REGION_FAILED}
    retried = act(rollout, "retry", "eastus", now=at(10))
    assert retried.region("eastus").state is RegionState.REPLICATED
    again = record_provisioning_failed(started(retried, "eastus", at(11)), "eastus", "x", at(12))
    refailed = {e.id for e in again.outbox if e.type is EventType.REGION_FAILED}
    assert refailed - failed_ids  # a new event, not a duplicate subscribers would drop


def test_retry_of_a_timed_out_region_probes_again_with_a_fresh_deadline() -> None:
    rollout = fresh()
    deadline = at(0) + POLICY.replication_timeout(rollout.image_size_bytes)
    timed_out = tick(
        record_probe(rollout, "westus", ABSENT, at(1), POLICY, jitter=0.5), deadline, POLICY
    )
    assert timed_out.region("westus").state is RegionState.TIMED_OUT
    retried = act(timed_out, "retry", "westus", now=deadline)
    west = retried.region("westus")
    assert (west.state, west.next_probe_at, west.attempt) == (
        RegionState.AWAITING_REPLICATION,
        deadline,
        2,
    )
    later = deadline + timedelta(seconds=60)
    assert tick(retried, later, POLICY).region("westus").state is RegionState.AWAITING_REPLICATION


def test_retry_refusals() -> None:
    assert "nothing to retry" in (act(fresh(), "retry").history[-1].message or "")
    held_alone = act(failed_primary(), "retry", "westus")
    assert outcome(held_alone) == REFUSED
    assert "retry eastus" in (held_alone.history[-1].message or "")
    superseded = replace(failed_primary(), superseded_by="newer")
    assert "superseded by newer" in (act(superseded, "retry").history[-1].message or "")
    deleted = replace(failed_primary(), deleted_at=at(5))
    assert "deleted" in (act(deleted, "retry").history[-1].message or "")


# --- rollback -----------------------------------------------------------------------------


def test_rollback_sends_traffic_back_to_the_kept_previous_deployment() -> None:
    rollout = all_live()
    assert rollout.region("eastus").deploy_step is DeployStep.KEEPING_PREVIOUS
    back = act(rollout, "rollback", now=at(10))
    assert back.state is RolloutState.ROLLED_BACK and back.rolled_back_at == at(10)
    east = back.region("eastus")
    assert east.deploy_step is DeployStep.RESTORING
    assert east.restore_to is not None and east.restore_to.name == "blue"
    restores = [a for a in next_actions(back, at(11), POLICY) if isinstance(a, RestorePrevious)]
    assert [a.region for a in restores] == list(REGIONS)
    assert restores[0].previous_rollout == "older"
    # the lease is taken first, then traffic restored
    leased = record_lease_taken(back, "eastus", at(11) + timedelta(hours=2), at(11))
    restored = record_traffic_restored(leased, "eastus", at(12))
    east = restored.region("eastus")
    assert (east.state, east.deploy_step) == (RegionState.ROLLED_BACK, DeployStep.DISCARDING)
    (discard,) = [
        a
        for a in next_actions(restored, at(13), POLICY)
        if isinstance(a, DiscardDeployment) and a.region == "eastus"
    ]
    assert discard.deployment.name != "blue"  # ours goes; the restored one stays
    assert (EventType.REGION_ROLLED_BACK, "eastus") in [(e.type, e.region) for e in restored.outbox]


def test_rollback_redeploys_the_previous_image_when_its_deployment_is_gone() -> None:
    back = act(all_live(), "rollback", "westus", now=at(10))
    assert back.region("eastus").deploy_step is DeployStep.KEEPING_PREVIOUS  # not named
    image = "contoso.azurecr.io/models/llm@sha256:" + "0" * 64
    gone = record_previous_gone(back, "westus", image, "", at(11))
    west = gone.region("westus")
    assert (west.deploy_step, west.restore_image) == (DeployStep.REDEPLOYING_PREVIOUS, image)
    (redeploy,) = [a for a in next_actions(gone, at(12), POLICY) if isinstance(a, RedeployPrevious)]
    assert (redeploy.deployment.name, redeploy.image) == ("blue", image)
    redeployed = record_previous_redeployed(gone, "westus", at(13))
    assert redeployed.region("westus").deploy_step is DeployStep.RESTORING
    assert record_traffic_restored(redeployed, "westus", at(14)).region("westus").state is (
        RegionState.ROLLED_BACK
    )


def test_a_rollback_that_cannot_finish_leaves_traffic_where_it_is_and_says_why() -> None:
    back = act(all_live(), "rollback", "westus", now=at(10))
    unknown = record_previous_gone(back, "westus", None, "its image was deleted", at(11))
    west = unknown.region("westus")
    assert (west.state, west.deploy_step) == (RegionState.LIVE, DeployStep.DONE)
    assert (west.last_error or "").startswith("rollback failed: its image was deleted")
    # Whether the traffic PUT went through is unknown: "blue" is never deleted on a guess.
    failed = record_rollback_failed(back, "westus", "quota", at(11))
    west = failed.region("westus")
    assert (west.deploy_step, west.previous_deployment) == (DeployStep.DONE, None)
    assert "blue is left in place and the traffic may be on it" in (west.last_error or "")
    timed = tick(back, at(10) + timedelta(seconds=POLICY.traffic_timeout_s), POLICY)
    west = timed.region("westus")
    assert "rollback failed: not finished within" in (west.last_error or "")
    assert west.previous_deployment is None
    later = tick(timed, at(10) + timedelta(days=2), POLICY)
    deletes = next_actions(later, at(10) + timedelta(days=2), POLICY)
    assert not [a for a in deletes if isinstance(a, DeletePrevious) and a.region == "westus"]
    assert [a for a in deletes if isinstance(a, DeletePrevious) and a.region == "eastus"]


def test_a_whole_rollback_stops_regions_that_had_not_deployed() -> None:
    rollout = fresh()
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
    rollout = live(rollout, "eastus", at(2), previous="blue")
    rollout = started(rollout, "westus", at(3))  # creating
    back = act(rollout, "rollback", now=at(4))
    west, north = back.region("westus"), back.region("northeurope")
    assert (west.state, west.deploy_step) == (RegionState.ROLLED_BACK, DeployStep.DISCARDING)
    assert north.state is RegionState.ROLLED_BACK and north.deploy_step is None
    assert not [a for a in next_actions(back, at(5), POLICY) if isinstance(a, ClaimEndpoint)]


def test_a_rollback_during_a_traffic_shift_waits_for_it_then_goes_back() -> None:
    rollout = live(replicated(fresh(), "eastus", at(1)), "eastus", at(2), previous="blue")
    rollout = verifying(replicated(rollout, "westus", at(3)), "westus", at(3), previous="green")
    rollout = record_smoke_passed(rollout, "westus", at(4))  # shifting traffic
    back = act(rollout, "rollback", now=at(5))
    assert back.region("westus").rollback_requested
    assert [a for a in next_actions(back, at(6), POLICY) if isinstance(a, ShiftTraffic)]
    shifted = record_traffic_shifted(back, "westus", at(7))
    west = shifted.region("westus")
    assert west.deploy_step is DeployStep.RESTORING and not west.rollback_requested


def test_rollback_refusals() -> None:
    first_ever = all_live(previous=None)
    refused = act(first_ever, "rollback")
    assert outcome(refused) == REFUSED
    assert "nothing served models-llm before this rollout" in (refused.history[-1].message or "")
    assert "only a live region" in (act(fresh(), "rollback", "westus").history[-1].message or "")
    back = act(all_live(), "rollback", "eastus")
    assert "rolling back already" in (act(back, "rollback", "eastus").history[-1].message or "")


def test_a_retry_after_a_rollback_goes_forward_again() -> None:
    back = act(all_live(), "rollback", now=at(10))
    for region in REGIONS:
        back = record_lease_taken(back, region, at(11) + timedelta(hours=2), at(11))
        back = record_traffic_restored(back, region, at(11))
        back = record_deployment_discarded(back, region, at(12))
    assert back.state is RolloutState.ROLLED_BACK
    retried = act(back, "retry", now=at(20))
    assert retried.rolled_back_at is None
    assert retried.region("eastus").state is RegionState.REPLICATED
    assert retried.region("eastus").attempt == 2


# --- keeping the previous deployment ----------------------------------------------------------


def test_the_previous_deployment_is_kept_while_the_rollout_waits_for_approval() -> None:
    rollout = gated()
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
    rollout = live(rollout, "eastus", at(2), previous="blue")
    much_later = at(2) + timedelta(seconds=POLICY.keep_previous_s * 5)
    waiting = tick(rollout, much_later, POLICY)
    assert waiting.region("eastus").deploy_step is DeployStep.KEEPING_PREVIOUS


def test_keep_zero_cleans_up_as_soon_as_the_rollout_settled() -> None:
    policy = replace(POLICY, keep_previous_s=0)
    rollout = all_live()
    cleaned = tick(rollout, at(2), policy)
    assert {r.deploy_step for r in cleaned.regions} == {DeployStep.CLEANING_UP}


@pytest.mark.parametrize("action", [a.value for a in OperatorAction])
def test_every_action_is_refused_on_an_ignored_rollout(action: str) -> None:
    ignored = replace(fresh(), ignored_reason="not an image")
    assert outcome(act(ignored, action)) == REFUSED


def test_deployment_refs_are_unchanged_by_a_hold() -> None:
    rollout = started(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    held = act(rollout, "hold")
    ref: DeploymentRef | None = held.region("eastus").deployment
    assert ref == rollout.region("eastus").deployment


def test_a_newer_rollout_going_live_cancels_a_rollback_still_waiting() -> None:
    from shared.domain.rollout import record_replaced

    back = act(all_live(), "rollback", "westus", now=at(10))
    replaced = record_replaced(back, "westus", "newer", at(11))
    west = replaced.region("westus")
    assert (west.state, west.deploy_step, west.restore_to) == (
        RegionState.SUPERSEDED,
        DeployStep.CLEANING_UP,
        None,
    )
    assert not [a for a in next_actions(replaced, at(12), POLICY) if isinstance(a, RestorePrevious)]


def test_a_replaced_region_deletes_what_served_before_it_in_a_stopped_rollout() -> None:
    from shared.domain.rollout import DeletePrevious, record_replaced

    replaced = record_replaced(all_live(), "westus", "newer", at(11))
    assert replaced.superseded_by == "newer"
    deletes = [a for a in next_actions(replaced, at(12), POLICY) if isinstance(a, DeletePrevious)]
    assert [(a.region, a.deployment.name) for a in deletes] == [("westus", "blue")]
