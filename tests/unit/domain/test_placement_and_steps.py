"""Decisions moved out of the service: placing a rollout on its endpoint, what to do about
the endpoint before a create, and backing off a rollout whose steps keep raising."""

from __future__ import annotations

from datetime import timedelta

from shared.domain.model import RolloutSummary
from shared.domain.rollout import (
    endpoint_step,
    needs_placing,
    new_rollout,
    place,
    record_deployable,
    record_not_deployable,
    record_push,
    record_step_completed,
    record_step_crashed,
    record_tags_resolved,
    supersede_if_older,
)
from shared.domain.schedule import next_due_at
from tests.unit.domain.builders import (
    DIGEST_B,
    POLICY,
    REGIONS,
    T0,
    TARGET,
    at,
    confirmed,
    fresh,
    notice,
    summary,
)


def _peer(
    rollout_digest: str,
    confirmed_s: float,
    *,
    repository: str = "models/llm",
    tags: tuple[str, ...] = ("v1",),
) -> RolloutSummary:
    base = summary(fresh(digest=rollout_digest, at_=at(confirmed_s)))
    return RolloutSummary(
        id=base.id,
        repository=repository,
        digest=base.digest,
        generation=1,
        confirmed_at=at(confirmed_s),
        tags_seen=tags,
        deployable=True,
        ignored=False,
    )


def test_placing_supersedes_older_peers_and_yields_to_a_newer_one() -> None:
    rollout = fresh(at_=at(10))
    older = _peer("1", 5, repository="models-llm")
    newer = _peer("2", 20, repository="other/repo")
    decided = place(rollout, [older, newer, summary(rollout)], placed=True, confirmed=["v1"])
    assert decided.superseded_by == newer.id
    assert decided.supersedes == (older.id,)
    # Only the same repository can have lost the tag.
    assert decided.lost_tags == ()


def test_a_confirmed_tag_is_taken_from_whoever_had_it_in_the_repository() -> None:
    rollout = fresh(at_=at(10))
    had_it = _peer("3", 5, tags=("v1", "stable"))
    other_tag = _peer("4", 6, tags=("v0",))
    decided = place(rollout, [had_it, other_tag], placed=False, confirmed=["stable"])
    assert decided.lost_tags == (had_it.id,)
    assert decided.supersedes == () and decided.superseded_by is None


def test_only_a_new_placement_needs_the_endpoint_looked_at() -> None:
    unconfirmed = record_deployable(new_rollout(notice(), REGIONS, TARGET, T0), 1_000, T0)
    placed = confirmed(unconfirmed, at(1))
    assert needs_placing(unconfirmed, placed)
    assert not needs_placing(placed, placed)
    # The same tag confirmed again later changes nothing about its place.
    again = record_tags_resolved(
        record_push(placed, notice(tag="v1"), at(2)), {"v1": placed.digest}, (), at(3)
    )
    assert again.confirmed_at == placed.confirmed_at
    assert not needs_placing(placed, again)
    # Not deployable: never placed, whatever the registry confirms.
    ignored = record_not_deployable(unconfirmed, "a signature", at(1))
    assert not needs_placing(ignored, confirmed(ignored, at(2)))


def test_supersede_if_older_reads_the_rollout_fresh() -> None:
    older, newer = fresh(at_=at(5)), fresh(digest=DIGEST_B, at_=at(10))
    stopped = supersede_if_older(older, newer, at(11))
    assert stopped.superseded_by == newer.id
    # The index said older, but the rollout itself is newer: nothing happens.
    assert supersede_if_older(newer, older, at(11)) is newer
    # Already superseded by someone else: left alone.
    assert (
        supersede_if_older(stopped, fresh(digest="sha256:" + "c" * 64, at_=at(20)), at(21))
        is stopped
    )


def test_the_endpoint_step_for_each_provisioning_state() -> None:
    missing = endpoint_step("ep", "westus", "missing")
    assert missing.apply_endpoint and missing.waiting_for == "endpoint ep is being created"
    updating = endpoint_step("ep", "westus", "in_progress")
    assert not updating.apply_endpoint and updating.waiting_for == "endpoint ep is updating"
    failed = endpoint_step("ep", "westus", "failed")
    assert failed.apply_endpoint
    assert failed.waiting_for is not None and "failed state in westus" in failed.waiting_for
    ready = endpoint_step("ep", "westus", "succeeded")
    assert not ready.apply_endpoint and ready.waiting_for is None


def test_a_rollout_whose_steps_keep_raising_is_due_later_each_time() -> None:
    rollout = fresh()
    poll = timedelta(seconds=10)
    first = record_step_crashed(rollout, "RuntimeError: boom", at(1), POLICY)
    second = record_step_crashed(first, "RuntimeError: boom", at(2), POLICY)
    assert (first.step_failures, second.step_failures) == (1, 2)
    assert first.retry_after is not None and second.retry_after is not None
    assert second.retry_after - at(2) > first.retry_after - at(1)
    due = next_due_at(second, at(2), POLICY, poll)
    assert due is not None and due >= second.retry_after
    recovered = record_step_completed(second)
    assert recovered.step_failures == 0 and recovered.retry_after is None
    assert record_step_completed(recovered) is recovered
    assert next_due_at(recovered, at(2), POLICY, poll) == at(2)  # its probes are due now
