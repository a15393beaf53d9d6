"""How `wait` reads a document: when it has ended, why, and which lines a change prints."""

from __future__ import annotations

import pytest

from georollout_cli.progress import Snapshot, changes, verdict
from tests.unit.cli.fake_api import digest_of, document, region


def test_live_in_every_region_is_the_only_success() -> None:
    ended = verdict(document(digest_of("a"), "live", [region("eastus", "live")]))
    assert ended is not None and ended.live


def test_a_rolled_back_rollout_says_why_first() -> None:
    doc = document(
        digest_of("a"),
        "rolled_back",
        [region("eastus", "live"), region("westus", "rolled_back", last_error="rolled back: x")],
        rollback_reason="verification failed 2 time(s) in westus during its soak (max_failures 1)",
    )
    ended = verdict(doc)
    assert ended is not None and not ended.live
    assert ended.reason == (
        "verification failed 2 time(s) in westus during its soak (max_failures 1); "
        "westus (rolled_back): rolled back: x"
    )


@pytest.mark.parametrize("state", ["replicating", "deploying", "held", "awaiting_approval"])
def test_states_that_still_move_or_wait_for_an_operator_are_no_verdict(state: str) -> None:
    assert verdict(document(digest_of("a"), state)) is None


def test_a_failure_names_each_regions_error() -> None:
    doc = document(
        digest_of("a"),
        "failed",
        [
            region("eastus", "failed", last_error="ImagePullFailure: manifest unknown\n(retry)"),
            region("westus", "held"),
        ],
    )
    ended = verdict(doc)
    assert ended is not None and not ended.live
    assert ended.reason == "eastus (failed): ImagePullFailure: manifest unknown (retry)"


def test_superseded_and_ignored_say_by_what_and_why() -> None:
    newer = "127.0.0.1_5001~models~llm~sha256-" + "b" * 64
    superseded = verdict(document(digest_of("a"), "superseded", superseded_by=newer))
    ignored = verdict(document(digest_of("a"), "ignored", ignored_reason="a signature"))
    assert superseded is not None and f"superseded by {newer}" in superseded.reason
    assert ignored is not None and ignored.reason == "ignored: a signature"


def test_timed_out_names_the_regions_that_timed_out() -> None:
    doc = document(
        digest_of("a"), "timed_out", [region("eastus", "live"), region("westus", "timed_out")]
    )
    ended = verdict(doc)
    assert ended is not None and ended.reason == "westus: timed_out"


def test_the_first_look_shows_the_rollout_and_every_region() -> None:
    doc = document(
        digest_of("a"),
        "deploying",
        [
            region("eastus", "deploying", deploy_step="creating"),
            region("westus", "awaiting_replication", waiting_for="the image"),
        ],
    )
    assert changes(None, Snapshot.of(doc)) == [
        "rollout deploying",
        "eastus: deploying (step creating)",
        "westus: awaiting_replication; waiting for: the image",
    ]


def test_later_looks_show_only_what_changed() -> None:
    before = document(
        digest_of("a"), "deploying", [region("eastus", "deploying"), region("westus", "replicated")]
    )
    after = document(
        digest_of("a"),
        "deploying",
        [region("eastus", "deploying"), region("westus", "deploying", deploy_step="verifying")],
    )
    assert changes(Snapshot.of(before), Snapshot.of(after)) == [
        "westus: deploying (step verifying)"
    ]
    assert changes(Snapshot.of(after), Snapshot.of(after)) == []


def test_a_live_regions_clean_up_steps_print_nothing_new() -> None:
    cleaning = document(
        digest_of("a"), "live", [region("eastus", "live", deploy_step="cleaning_up")]
    )
    done = document(digest_of("a"), "live", [region("eastus", "live", deploy_step="done")])
    assert changes(Snapshot.of(cleaning), Snapshot.of(done)) == []


def test_a_rollout_state_change_is_its_own_line() -> None:
    before = document(digest_of("a"), "deploying", [region("eastus", "deploying")])
    after = document(digest_of("a"), "failed", [region("eastus", "failed", last_error="boom")])
    assert changes(Snapshot.of(before), Snapshot.of(after)) == [
        "rollout deploying -> failed",
        "eastus: failed; error: boom",
    ]
