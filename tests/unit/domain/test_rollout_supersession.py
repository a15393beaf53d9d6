"""Supersession, generations, tags and the outbox: order of deliveries never matters."""

from __future__ import annotations

import itertools
from datetime import timedelta

from shared.domain.events import EventType, event_id
from shared.domain.model import DeployStep, RegionState, Rollout, RolloutState
from shared.domain.rollout import (
    DiscardDeployment,
    is_newer,
    mark_published,
    new_rollout,
    next_actions,
    record_deployable,
    record_deployment_started,
    record_push,
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
    fresh,
    live,
    notice,
    ref,
    replicated,
)


def test_second_tag_is_added_once_and_repeat_delivery_changes_nothing() -> None:
    rollout = fresh()
    assert record_push(rollout, notice(tag="v1"), at(5)) is rollout
    tagged = record_push(rollout, notice(tag="latest", pushed_at=at(2)), at(5))
    assert tagged.tags == ("v1", "latest")
    assert tagged.generation == 1
    assert tagged.regions == rollout.regions
    assert record_push(tagged, notice(tag="latest", pushed_at=at(2)), at(6)) is tagged
    assert record_push(tagged, notice(tag=None, pushed_at=T0), at(6)) is tagged


def test_push_for_another_digest_is_refused() -> None:
    try:
        record_push(fresh(), notice(digest=DIGEST_B), T0)
    except ValueError as error:
        assert "is not rollout" in str(error)
    else:
        raise AssertionError("expected ValueError")


def test_newer_digest_supersedes_unfinished_older() -> None:
    older = replicated(fresh(), "eastus", at(1))
    older = record_deployment_started(older, "eastus", ref("eastus"), at(2))
    newer = record_deployable(
        new_rollout(notice(DIGEST_B, pushed_at=at(60)), REGIONS, TARGET, at(61)), None, at(61)
    )
    assert supersedes(newer, older)
    assert not supersedes(older, newer)
    stopped = supersede(older, by=newer.id, now=at(62))
    assert stopped.state is RolloutState.SUPERSEDED
    assert stopped.superseded_by == newer.id
    assert {r.state for r in stopped.regions} == {RegionState.SUPERSEDED}
    assert stopped.region("eastus").deploy_step is DeployStep.DISCARDING
    assert next_actions(stopped, at(63), POLICY) == [DiscardDeployment("eastus", ref("eastus"))]
    assert supersede(stopped, by=newer.id, now=at(64)) is stopped


def test_late_arrival_of_an_older_push_does_not_supersede_the_newer() -> None:
    newer = fresh()  # pushed at T0
    late_old = new_rollout(
        notice(DIGEST_B, pushed_at=T0 - timedelta(minutes=5)), REGIONS, TARGET, at(30)
    )
    assert not supersedes(late_old, newer)
    assert supersedes(newer, late_old)
    assert is_newer(at(1), T0) and not is_newer(T0, T0)


def test_equal_timestamps_break_ties_by_digest_deterministically() -> None:
    a = new_rollout(notice(DIGEST_A), REGIONS, TARGET, T0)
    b = new_rollout(notice(DIGEST_B), REGIONS, TARGET, T0)
    assert supersedes(b, a) != supersedes(a, b)


def test_ignored_or_other_endpoint_never_supersedes() -> None:
    older = fresh()
    ignored = new_rollout(notice(DIGEST_B, pushed_at=at(9)), REGIONS, None, at(9))
    assert not supersedes(ignored, older)
    elsewhere = new_rollout(
        notice(DIGEST_B, pushed_at=at(9)), REGIONS, TARGET.__class__("other-ep"), at(9)
    )
    assert not supersedes(elsewhere, older)


def test_live_regions_stay_live_when_superseded() -> None:
    rollout = fresh()
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
    rollout = live(rollout, "eastus", at(2))
    stopped = supersede(rollout, by="newer", now=at(3))
    assert stopped.region("eastus").state is RegionState.LIVE
    assert stopped.region("westus").state is RegionState.SUPERSEDED


def test_finished_and_replaced_rollout_repushed_starts_a_new_generation() -> None:
    rollout = fresh()
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
        rollout = live(rollout, region, at(2))
    replaced = supersede(rollout, by="b", now=at(100))
    assert replaced.state is RolloutState.LIVE and replaced.superseded_by == "b"
    # redelivery of the original event: nothing happens
    assert record_push(replaced, notice(pushed_at=T0), at(200)) is replaced
    # a rollback by re-tagging: a later push of the same digest
    again = record_push(replaced, notice(tag="stable", pushed_at=at(300)), at(301))
    assert again.generation == 2
    assert again.superseded_by is None
    assert again.tags == ("v1", "stable")
    assert again.pushed_at == at(300)
    assert {r.state for r in again.regions} == {RegionState.AWAITING_REPLICATION}
    assert again.state is RolloutState.REPLICATING
    assert next_actions(again, at(301), POLICY)  # probes again
    # events of generation 2 get new ids
    again = replicated(again, "eastus", at(302))
    gen2 = [
        e for e in again.outbox if e.type is EventType.REPLICA_AVAILABLE and e.region == "eastus"
    ]
    assert {e.id for e in gen2} == {
        event_id(rollout.id, 1, "eastus", EventType.REPLICA_AVAILABLE),
        event_id(rollout.id, 2, "eastus", EventType.REPLICA_AVAILABLE),
    }
    # and the generation shows in the deployment name
    from shared.domain.rollout import StartDeployment

    start = next(a for a in next_actions(again, at(303), POLICY) if isinstance(a, StartDeployment))
    assert start.deployment_name.endswith("-g2")


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
    pushes = {DIGEST_A: T0, DIGEST_B: at(60), "sha256:" + "c" * 64: at(30)}
    outcomes = set()
    for order in itertools.permutations(pushes):
        known: dict[str, Rollout] = {}
        for digest in order:
            r = new_rollout(notice(digest, pushed_at=pushes[digest]), REGIONS, TARGET, at(100))
            for other_id, other in list(known.items()):
                if supersedes(r, other):
                    known[other_id] = supersede(other, by=r.id, now=at(100))
                elif supersedes(other, r):
                    r = supersede(r, by=other.id, now=at(100))
            known[r.id] = r
        outcomes.add(tuple(sorted((r.digest, r.state.value) for r in known.values())))
    assert len(outcomes) == 1
    (outcome,) = outcomes
    assert dict(outcome)[DIGEST_B] == "replicating"
    assert dict(outcome)[DIGEST_A] == "superseded"
