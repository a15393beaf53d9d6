"""Supersession, generations, tags and the outbox: order of deliveries never matters."""

from __future__ import annotations

import itertools
from datetime import timedelta

from shared.domain.events import EventType, event_id
from shared.domain.model import DeployStep, RegionState, Rollout, RolloutState
from shared.domain.rollout import (
    ClaimEndpoint,
    DiscardDeployment,
    ReleaseLease,
    mark_published,
    new_rollout,
    next_actions,
    record_push,
    record_tags_resolved,
    supersede,
    supersedes,
)
from tests.unit.domain.builders import (
    DIGEST_A,
    DIGEST_B,
    POLICY,
    REGIONS,
    T0,
    TARGET,
    at,
    claimed,
    fresh,
    live,
    notice,
    ref,
    replicated,
    started,
    summary,
)

DIGEST_C = "sha256:" + "c" * 64


def test_second_tag_is_added_once_and_repeat_delivery_changes_nothing() -> None:
    rollout = fresh()
    assert record_push(rollout, notice(tag="v1"), at(5)) is rollout
    claimed_tag = record_push(rollout, notice(tag="latest", pushed_at=at(2)), at(5))
    assert claimed_tag.pending_tags == ("latest",)
    assert claimed_tag.tags == ("v1",)
    assert record_push(claimed_tag, notice(tag="latest", pushed_at=at(2)), at(6)) is claimed_tag
    assert record_push(claimed_tag, notice(tag=None, pushed_at=T0), at(6)) is claimed_tag
    tagged = record_tags_resolved(claimed_tag, {"latest": DIGEST_A}, (), at(7))
    assert tagged.tags == ("v1", "latest")
    assert tagged.generation == 1
    assert tagged.regions == rollout.regions
    assert record_push(tagged, notice(tag="latest", pushed_at=at(2)), at(8)) is tagged


def test_push_for_another_digest_is_refused() -> None:
    try:
        record_push(fresh(), notice(digest=DIGEST_B), T0)
    except ValueError as error:
        assert "is not rollout" in str(error)
    else:
        raise AssertionError("expected ValueError")


def test_newer_digest_supersedes_unfinished_older() -> None:
    older = replicated(fresh(), "eastus", at(1))
    older = started(older, "eastus", at(2))
    newer = fresh(DIGEST_B, tag="v2", at_=at(61))
    assert supersedes(newer, older)
    assert not supersedes(older, newer)
    stopped = supersede(older, by=newer.id, now=at(62))
    assert stopped.state is RolloutState.SUPERSEDED
    assert stopped.superseded_by == newer.id
    assert {r.state for r in stopped.regions} == {RegionState.SUPERSEDED}
    assert stopped.region("eastus").deploy_step is DeployStep.DISCARDING
    # the lease stays while our deployment is deleted, so it is the only thing to do
    assert next_actions(stopped, at(63), POLICY) == [DiscardDeployment("eastus", ref("eastus"))]
    assert supersede(stopped, by=newer.id, now=at(64)) is stopped


def test_late_arrival_of_an_older_push_does_not_supersede_the_newer() -> None:
    newer = fresh(DIGEST_A, at_=T0)
    # the older image's notice arrives late and its tag was confirmed before: it ranks lower
    late_old = fresh(DIGEST_B, tag="v0", at_=T0 - timedelta(minutes=5))
    assert not supersedes(late_old, newer)
    assert supersedes(newer, late_old)
    # a late notice whose registry check has not run yet cannot supersede anything either
    unconfirmed = new_rollout(notice(DIGEST_C), REGIONS, TARGET, at(30))
    assert not supersedes(unconfirmed, newer)


def test_equal_confirmation_times_break_ties_by_digest_deterministically() -> None:
    a = fresh(DIGEST_A, at_=T0)
    b = fresh(DIGEST_B, tag="v2", at_=T0)
    assert supersedes(b, a) != supersedes(a, b)
    assert supersedes(b, a)
    assert supersedes(summary(b), summary(a)) and not supersedes(summary(a), summary(b))


def test_ignored_never_supersedes() -> None:
    older = fresh()
    ignored = new_rollout(notice(DIGEST_B, pushed_at=at(9)), REGIONS, None, at(9))
    assert not supersedes(ignored, older)
    assert not supersedes(summary(ignored), summary(older))


def test_a_superseded_rollout_claims_no_endpoint() -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    stopped = supersede(rollout, by="newer", now=at(2))
    assert not any(isinstance(a, ClaimEndpoint) for a in next_actions(stopped, at(3), POLICY))
    assert claimed(stopped, "eastus", at(3)) is stopped


def test_live_regions_stay_live_when_superseded() -> None:
    rollout = fresh()
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
    rollout = live(rollout, "eastus", at(2))
    stopped = supersede(rollout, by="newer", now=at(3))
    assert stopped.region("eastus").state is RegionState.LIVE
    assert stopped.region("westus").state is RegionState.SUPERSEDED
    assert next_actions(stopped, at(4), POLICY) == [ReleaseLease("eastus", TARGET.endpoint)]


def test_finished_and_replaced_rollout_retagged_starts_a_new_generation() -> None:
    rollout = fresh()
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
        rollout = live(rollout, region, at(2))
    b = fresh(DIGEST_B, tag="v1", at_=at(50))  # v1 moved on to b
    replaced = supersede(rollout, by=b.id, now=at(100))
    assert replaced.state is RolloutState.LIVE and replaced.superseded_by == b.id
    # redelivery of the original event: only a claim, which the registry then refuses
    redelivered = record_push(replaced, notice(pushed_at=T0), at(200))
    assert redelivered.pending_tags == ("v1",)
    refused = record_tags_resolved(redelivered, {"v1": DIGEST_B}, (summary(b),), at(200))
    assert refused.generation == 1 and refused.superseded_by == b.id
    # a rollback by re-tagging: the registry says v1 names this digest again
    pushed = record_push(refused, notice(tag="v1", pushed_at=at(300)), at(301))
    again = record_tags_resolved(pushed, {"v1": DIGEST_A}, (summary(b),), at(302))
    assert again.generation == 2
    assert again.superseded_by is None
    assert again.tags == ("v1",)
    assert again.pushed_at == rollout.pushed_at  # the payload's time moves nothing
    assert {r.state for r in again.regions} == {RegionState.AWAITING_REPLICATION}
    assert again.state is RolloutState.REPLICATING
    assert next_actions(again, at(302), POLICY)  # probes again
    # events of generation 2 get new ids
    again = replicated(again, "eastus", at(303))
    gen2 = [
        e for e in again.outbox if e.type is EventType.REPLICA_AVAILABLE and e.region == "eastus"
    ]
    assert {e.id for e in gen2} == {
        event_id(rollout.id, 1, "eastus", EventType.REPLICA_AVAILABLE),
        event_id(rollout.id, 2, "eastus", EventType.REPLICA_AVAILABLE),
    }
    # and the generation shows in the deployment name
    assert ClaimEndpoint("eastus", TARGET.endpoint) in next_actions(again, at(304), POLICY)
    requested = claimed(again, "eastus", at(304))
    deployment = requested.region("eastus").deployment
    assert deployment is not None and deployment.name.endswith("-g2")


def test_event_ids_are_deterministic_and_outbox_deduplicates() -> None:
    one = replicated(fresh(), "eastus", at(1))
    two = replicated(fresh(), "eastus", at(9))
    assert [e.id for e in one.outbox] == [e.id for e in two.outbox]
    assert one.outbox[0].id == event_id(one.id, 1, "eastus", EventType.REPLICA_AVAILABLE)
    published = mark_published(one, [one.outbox[0].id])
    assert published.outbox == ()
    assert published.updated_at == one.updated_at
    assert mark_published(published, ["unknown"]) is published
    # the same change cannot produce the event twice
    assert replicated(published, "eastus", at(2)) is published


def test_supersession_outcome_is_independent_of_arrival_order() -> None:
    confirmations = {DIGEST_A: T0, DIGEST_B: at(60), DIGEST_C: at(30)}
    outcomes = set()
    for order in itertools.permutations(confirmations):
        known: dict[str, Rollout] = {}
        for number, digest in enumerate(order):
            r = fresh(digest, tag=f"t{number}", at_=confirmations[digest])
            for other_id, other in list(known.items()):
                if supersedes(r, other):
                    known[other_id] = supersede(other, by=r.id, now=at(100))
                elif supersedes(other, r):
                    r = supersede(r, by=other.id, now=at(100))
            known[r.id] = r
        outcomes.add(tuple(sorted((r.digest, r.state.value) for r in known.values())))
    assert len(outcomes) == 1
    (outcome,) = outcomes
    assert dict(outcome) == {
        DIGEST_A: "superseded",
        DIGEST_B: "replicating",
        DIGEST_C: "superseded",
    }


def test_a_re_tag_while_the_old_generation_still_discards_forgets_no_deployment() -> None:
    rollout = fresh()
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
    rollout = live(rollout, "eastus", at(2))
    rollout = started(rollout, "westus", at(3))
    b = fresh(DIGEST_B, tag="v1", at_=at(50))
    stopped = supersede(rollout, by=b.id, now=at(51))
    assert DiscardDeployment("westus", ref("westus")) in next_actions(stopped, at(52), POLICY)
    # v1 moves back before the discard finished
    pushed = record_push(stopped, notice(tag="v1", pushed_at=at(60)), at(60))
    again = record_tags_resolved(pushed, {"v1": DIGEST_A}, (summary(b),), at(61))
    # generation 1's deployment in westus must still be deleted (now or before generation 2)
    assert DiscardDeployment("westus", ref("westus")) in next_actions(again, at(62), POLICY)
