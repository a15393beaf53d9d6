"""Trust the registry, not the payload: a notice's tag is only a claim, order on an endpoint
comes from the registry's confirmation, and only a tagged, deployable image rolls out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shared.domain.model import RegionState, Rollout, RolloutState, rollout_id
from shared.domain.push import Build
from shared.domain.rollout import (
    MAX_BUILDS,
    MAX_PENDING_TAGS,
    MAX_TAGS,
    UNTAGGED_REASON,
    ClaimEndpoint,
    ReadPrimary,
    new_rollout,
    newest_above,
    next_actions,
    order_key,
    plausible_push_time,
    record_deployable,
    record_not_deployable,
    record_push,
    record_tags_resolved,
    supersede,
    supersedes,
)
from shared.domain.schedule import is_active
from tests.unit.domain.builders import (
    DIGEST_A,
    DIGEST_B,
    POLICY,
    REGIONS,
    T0,
    TARGET,
    at,
    confirmed,
    fresh,
    live,
    notice,
    published,
    replicated,
    summary,
)

DIGEST_C = "sha256:" + "c" * 64
FAR_FUTURE = datetime(2099, 1, 1, tzinfo=UTC)


def claims(rollout: Rollout, now: datetime) -> list[str]:
    return [a.region for a in next_actions(rollout, now, POLICY) if isinstance(a, ClaimEndpoint)]


def everywhere_replicated(rollout: Rollout, now: datetime) -> Rollout:
    for region in REGIONS:
        rollout = replicated(rollout, region, now)
    return rollout


# --- a tag is a claim until the registry confirms it ----------------------------------


def test_the_registry_confirming_a_tag_orders_the_rollout_by_georollouts_clock() -> None:
    rollout = new_rollout(notice(pushed_at=T0), REGIONS, TARGET, at(5))
    rollout = record_tags_resolved(rollout, {"v1": DIGEST_A}, (), at(20))
    assert rollout.tags == ("v1",) and rollout.tags_seen == ("v1",)
    assert rollout.pending_tags == ()
    assert rollout.confirmed_at == at(20)  # not the payload's T0, not the sighting at(5)
    assert order_key(rollout) == (at(20), DIGEST_A)
    # a later confirmation of another tag does not move it on its endpoint
    tagged = record_push(rollout, notice(tag="latest"), at(30))
    tagged = record_tags_resolved(tagged, {"latest": DIGEST_A}, (), at(40))
    assert tagged.tags == ("v1", "latest")
    assert tagged.confirmed_at == at(20)


def test_a_claim_the_registry_has_not_answered_stays_pending() -> None:
    rollout = new_rollout(notice(), REGIONS, TARGET, T0)
    assert record_tags_resolved(rollout, {}, (), at(1)) is rollout
    read = next(a for a in next_actions(rollout, T0, POLICY) if isinstance(a, ReadPrimary))
    assert read == ReadPrimary(manifest=True, tags=("v1",))


def test_a_tag_the_registry_says_points_elsewhere_is_dropped() -> None:
    forged = new_rollout(notice(DIGEST_B, tag="v1"), REGIONS, TARGET, at(10))
    dropped = record_tags_resolved(forged, {"v1": DIGEST_A}, (), at(11))
    assert dropped.pending_tags == ()
    assert dropped.tags == ()
    assert dropped.confirmed_at is None
    assert order_key(dropped) is None
    # the image the tag does name is the current one: this claim stops here, never deployed
    assert dropped.superseded_by == rollout_id("contoso.azurecr.io", "models/llm", DIGEST_A)
    assert dropped.state is RolloutState.SUPERSEDED
    inspected = record_deployable(dropped, 1, at(12))
    assert claims(everywhere_replicated(inspected, at(13)), at(13)) == []
    assert next_actions(inspected, at(13), POLICY) == []
    assert not is_active(published(inspected))
    assert not supersedes(inspected, fresh())
    assert not supersedes(summary(inspected), summary(fresh()))


def test_a_tag_the_registry_does_not_know_is_dropped() -> None:
    rollout = record_deployable(new_rollout(notice(tag="nope"), REGIONS, TARGET, T0), 1, T0)
    dropped = record_tags_resolved(rollout, {"nope": None}, (), at(1))
    assert dropped.confirmed_at is None and dropped.pending_tags == ()
    assert dropped.ignored_reason == UNTAGGED_REASON


def test_a_tag_that_moved_on_leaves_a_confirmed_rollout_in_place() -> None:
    rollout = fresh()
    moved = record_tags_resolved(
        record_push(rollout, notice(tag="latest"), at(1)),
        {"v1": DIGEST_B, "latest": DIGEST_A},
        (),
        at(2),
    )
    assert moved.tags == ("latest",)
    assert moved.tags_seen == ("v1", "latest")
    assert moved.confirmed_at == T0


# --- untagged images and referrers ----------------------------------------------------


def test_an_untagged_image_is_ignored_and_never_claims_nor_supersedes() -> None:
    rollout = new_rollout(notice(DIGEST_B, tag=None), REGIONS, TARGET, at(100))
    rollout = record_deployable(rollout, 1, at(101))
    assert rollout.state is RolloutState.IGNORED
    assert rollout.ignored_reason == UNTAGGED_REASON
    assert rollout.confirmed_at is None
    assert next_actions(rollout, at(102), POLICY) == []
    assert claims(everywhere_replicated(rollout, at(103)), at(103)) == []
    older = fresh()
    assert not supersedes(rollout, older)
    assert not supersedes(summary(rollout), older)
    assert newest_above(older, [summary(rollout)]) is None
    assert not is_active(published(rollout))


def test_a_later_tagged_push_brings_an_untagged_image_back() -> None:
    rollout = record_deployable(new_rollout(notice(tag=None), REGIONS, TARGET, T0), 1, T0)
    rollout = replicated(rollout, "eastus", at(1))
    assert rollout.ignored_reason == UNTAGGED_REASON
    tagged = record_push(rollout, notice(tag="v2", pushed_at=at(50)), at(50))
    assert tagged.ignored_reason is None
    assert tagged.pending_tags == ("v2",)
    assert tagged.state is not RolloutState.IGNORED
    actions = next_actions(tagged, at(50), POLICY)
    assert ReadPrimary(manifest=False, tags=("v2",)) in actions
    assert not any(isinstance(a, ClaimEndpoint) for a in actions)  # not confirmed yet
    placed = confirmed(tagged, at(51))
    assert placed.confirmed_at == at(51) and placed.tags == ("v2",)
    assert claims(placed, at(51)) == ["eastus"]


def test_a_cosign_signature_tagged_later_never_claims_an_endpoint_nor_supersedes() -> None:
    image = fresh()
    signature_tag = "sha256-" + DIGEST_A.removeprefix("sha256:") + ".sig"
    signature = new_rollout(notice(DIGEST_C, tag=signature_tag), REGIONS, TARGET, at(60))
    # the registry does confirm the tag: it points at the signature manifest
    signature = record_tags_resolved(signature, {signature_tag: DIGEST_C}, (), at(61))
    assert signature.confirmed_at == at(61)
    # until its manifest is read it supersedes nothing, however late it was confirmed
    assert not supersedes(signature, image)
    assert not supersedes(summary(signature), image)
    signature = record_not_deployable(signature, "a cosign signature, not an image", at(62))
    assert signature.state is RolloutState.IGNORED
    assert not supersedes(signature, image)
    assert newest_above(image, [summary(signature)]) is None
    assert claims(everywhere_replicated(signature, at(63)), at(63)) == []
    assert next_actions(signature, at(64), POLICY) == []


# --- payload times are hints ----------------------------------------------------------


def test_a_notice_stamped_2099_for_an_older_digest_reorders_nothing() -> None:
    older = fresh(DIGEST_A, at_=T0)
    newer = fresh(DIGEST_B, tag="v2", at_=at(60))
    assert supersedes(newer, older)
    forged = record_push(older, notice(DIGEST_A, tag="v1", pushed_at=FAR_FUTURE), at(120))
    assert forged.pushed_at == older.pushed_at
    assert order_key(forged) == order_key(older)
    assert forged.confirmed_at == T0
    assert not supersedes(forged, newer)
    assert supersedes(newer, forged)
    assert newest_above(forged, [summary(newer)]) == summary(newer)
    assert newest_above(newer, [summary(forged)]) is None


def test_a_first_sighting_stamped_in_the_future_is_ordered_by_its_confirmation() -> None:
    newer = fresh(DIGEST_B, tag="v2", at_=at(60))
    forged = new_rollout(notice(DIGEST_A, pushed_at=FAR_FUTURE), REGIONS, TARGET, at(30))
    assert forged.pushed_at == at(30)  # an implausible payload time is not even shown
    forged = confirmed(record_deployable(forged, 1, at(30)), at(30))
    assert order_key(forged) == (at(30), DIGEST_A)
    assert supersedes(newer, forged) and not supersedes(forged, newer)


def test_a_plausible_payload_time_is_kept_for_display() -> None:
    assert plausible_push_time(T0 - timedelta(hours=23), T0)
    assert not plausible_push_time(T0 - timedelta(days=2), T0)
    assert not plausible_push_time(FAR_FUTURE, T0)
    assert not plausible_push_time(None, T0)
    rollout = new_rollout(notice(pushed_at=T0 - timedelta(minutes=3)), REGIONS, TARGET, T0)
    assert rollout.pushed_at == T0 - timedelta(minutes=3)


# --- ordering on an endpoint ----------------------------------------------------------


def test_only_a_deployable_confirmed_rollout_supersedes_and_only_an_older_one() -> None:
    older = fresh(DIGEST_A, at_=T0)
    newer = fresh(DIGEST_B, tag="v2", at_=at(60))
    unconfirmed = record_deployable(
        new_rollout(notice(DIGEST_C), REGIONS, TARGET, at(90)), 1, at(90)
    )
    unread = new_rollout(notice(DIGEST_C), REGIONS, TARGET, at(90))
    assert supersedes(newer, older) and supersedes(summary(newer), summary(older))
    assert not supersedes(older, newer)
    assert not supersedes(unconfirmed, older)
    assert not supersedes(confirmed(unread, at(91)), older)  # manifest not read yet
    assert supersedes(older, unconfirmed)  # an unconfirmed rollout has no place yet
    assert not supersedes(older, older)


def test_newest_above_picks_the_newest_superseding_peer() -> None:
    a = fresh(DIGEST_A, at_=T0)
    b = fresh(DIGEST_B, tag="v2", at_=at(60))
    c = fresh(DIGEST_C, tag="v3", at_=at(30))
    peers = [summary(a), summary(b), summary(c)]
    assert newest_above(a, peers) == summary(b)
    assert newest_above(c, peers) == summary(b)
    assert newest_above(b, peers) is None


def test_rollouts_of_different_repositories_on_one_endpoint_order_by_confirmation() -> None:
    team_a = fresh(DIGEST_A, at_=at(100), repository="team-a/llm")
    team_b = fresh(DIGEST_B, at_=at(40), repository="team-b/llm")
    assert team_a.target == team_b.target  # one endpoint, two repositories
    # team-b's payload may say anything: confirmation decides
    assert supersedes(team_a, team_b) and not supersedes(team_b, team_a)
    assert newest_above(team_b, [summary(team_a)]) == summary(team_a)
    assert newest_above(team_a, [summary(team_b)]) is None


def test_a_tag_of_the_same_name_in_another_repository_is_not_a_re_tag() -> None:
    mine = fresh(DIGEST_A, at_=T0, repository="team-a/llm")
    for region in REGIONS:
        mine = live(replicated(mine, region, at(1)), region, at(2))
    theirs = fresh(DIGEST_B, tag="v1", at_=at(60), repository="team-b/llm")
    replaced = supersede(mine, by=theirs.id, now=at(61))
    redelivered = record_push(replaced, notice(DIGEST_A, repository="team-a/llm"), at(70))
    again = record_tags_resolved(redelivered, {"v1": DIGEST_A}, (summary(theirs),), at(71))
    assert again.generation == 1
    assert again.superseded_by == theirs.id


# --- generations: a re-tag, never a redelivery ----------------------------------------


def _live_then_replaced() -> tuple[Rollout, Rollout]:
    """A (v1, live everywhere) replaced by B, which took tag v1 later."""
    a = fresh(DIGEST_A, tag="v1", at_=T0)
    for region in REGIONS:
        a = live(replicated(a, region, at(1)), region, at(2))
    b = fresh(DIGEST_B, tag="v1", at_=at(100))
    return supersede(a, by=b.id, now=at(101)), b


def test_a_redelivered_old_event_after_supersession_starts_no_new_generation() -> None:
    a, b = _live_then_replaced()
    # the old event again: the registry says v1 names B now
    redelivered = record_push(a, notice(DIGEST_A, tag="v1", pushed_at=T0), at(200))
    assert ReadPrimary(manifest=False, tags=("v1",)) in next_actions(redelivered, at(200), POLICY)
    after = record_tags_resolved(redelivered, {"v1": DIGEST_B}, (summary(b),), at(201))
    assert after.generation == 1
    assert after.superseded_by == b.id
    assert after.pending_tags == ()
    assert after.regions == a.regions


def test_a_redelivered_event_for_a_tag_no_newer_rollout_took_starts_no_new_generation() -> None:
    a = fresh(DIGEST_A, tag="v1", at_=T0)
    for region in REGIONS:
        a = live(replicated(a, region, at(1)), region, at(2))
    b = fresh(DIGEST_B, tag="v2", at_=at(100))  # B came with its own tag; v1 still names A
    a = supersede(a, by=b.id, now=at(101))
    redelivered = record_push(a, notice(DIGEST_A, tag="v1", pushed_at=T0), at(200))
    after = record_tags_resolved(redelivered, {"v1": DIGEST_A}, (summary(b),), at(201))
    assert after.generation == 1
    assert after.superseded_by == b.id
    assert after.confirmed_at == T0


def test_a_re_tag_back_to_a_replaced_digest_starts_a_new_generation() -> None:
    a, b = _live_then_replaced()
    retagged = record_push(a, notice(DIGEST_A, tag="v1", pushed_at=at(300)), at(300))
    assert retagged.generation == 1  # a claim only, until the registry confirms it
    assert is_active(published(retagged))
    again = record_tags_resolved(retagged, {"v1": DIGEST_A}, (summary(b),), at(301))
    assert again.generation == 2
    assert again.superseded_by is None
    assert again.confirmed_at == at(301)
    assert again.generation_started_at == at(301)
    assert again.tags == ("v1",)
    assert {r.state for r in again.regions} == {RegionState.AWAITING_REPLICATION}
    assert again.state is RolloutState.REPLICATING
    # now the newest on its endpoint
    assert supersedes(again, b) and not supersedes(b, again)


def test_a_replaced_rollout_pushed_again_under_a_new_tag_starts_a_new_generation() -> None:
    # A rollback by pushing the old digest under a fresh tag (`stable`, `v1-rollback`): the tag
    # never named this digest before, so it cannot come from a redelivered old event.
    a, b = _live_then_replaced()
    pushed = record_push(a, notice(DIGEST_A, tag="stable", pushed_at=at(300)), at(300))
    again = record_tags_resolved(pushed, {"stable": DIGEST_A}, (summary(b),), at(301))
    assert again.generation == 2
    assert again.superseded_by is None
    assert again.tags == ("stable",)
    assert supersedes(again, b)


# --- caps -----------------------------------------------------------------------------


def test_confirmed_tags_are_capped_keeping_the_newest() -> None:
    rollout = fresh()
    names = [f"build-{i}" for i in range(MAX_TAGS + 20)]
    for i, name in enumerate(names):
        rollout = record_push(rollout, notice(tag=name), at(i))
        rollout = record_tags_resolved(rollout, {name: DIGEST_A}, (), at(i))
    assert len(rollout.tags) == MAX_TAGS
    assert rollout.tags == tuple(names[-MAX_TAGS:])
    assert len(rollout.tags_seen) == MAX_TAGS
    assert rollout.confirmed_at == T0


def test_pending_claims_are_capped_keeping_the_newest() -> None:
    rollout = new_rollout(notice(tag=None), REGIONS, TARGET, T0)
    names = [f"claim-{i}" for i in range(MAX_PENDING_TAGS * 3)]
    for i, name in enumerate(names):
        rollout = record_push(rollout, notice(tag=name), at(i))
    assert rollout.pending_tags == tuple(names[-MAX_PENDING_TAGS:])
    read = next(a for a in next_actions(rollout, at(10**4), POLICY) if isinstance(a, ReadPrimary))
    assert len(read.tags) == MAX_PENDING_TAGS


def test_a_repeated_claim_is_recorded_once() -> None:
    rollout = new_rollout(notice(), REGIONS, TARGET, T0)
    assert record_push(rollout, notice(tag="v1"), at(1)) is rollout
    assert record_push(rollout, notice(tag=None), at(1)) is rollout
    confirmed_once = confirmed(rollout, at(2))
    assert record_push(confirmed_once, notice(tag="v1"), at(3)) is confirmed_once


def test_the_same_tag_confirmed_twice_is_kept_once() -> None:
    rollout = record_push(fresh(), notice(tag="latest"), at(1))
    again = record_tags_resolved(rollout, {"latest": DIGEST_A, "v1": DIGEST_A}, (), at(2))
    assert sorted(again.tags) == ["latest", "v1"]
    assert sorted(again.tags_seen) == ["latest", "v1"]
    assert again.confirmed_at == T0


def test_each_build_that_announced_a_digest_is_kept_once_and_travels_with_its_events() -> None:
    first = Build(system="github-actions", id="1", commit="abc")
    announced = new_rollout(replace(notice(), build=first), REGIONS, TARGET, at(0))
    assert announced.builds == (replace(first, received_at=at(0)),)
    again = record_push(announced, replace(notice(), build=first), at(5))
    assert again.builds == announced.builds  # a retried notify counts once
    second = record_push(again, replace(notice(), build=Build(system="jenkins", id="2")), at(6))
    assert [b.id for b in second.builds] == ["1", "2"]
    many = second
    for i in range(3, 3 + MAX_BUILDS):
        many = record_push(many, replace(notice(), build=Build(id=str(i))), at(i))
    assert len(many.builds) == MAX_BUILDS and many.builds[-1].id == str(2 + MAX_BUILDS)
    live_everywhere = many
    for region in REGIONS:
        live_everywhere = live(replicated(live_everywhere, region, at(100)), region, at(101))
    events = [e for e in live_everywhere.outbox if e.region == "eastus"]
    assert events and all(e.data["builds"][-1]["id"] == str(2 + MAX_BUILDS) for e in events)
