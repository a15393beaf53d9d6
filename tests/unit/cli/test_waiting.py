"""The wait loop on a scripted API and a fake clock: no sleeping, every deadline exact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from georollout_cli.api import ApiError, ApiResponse
from georollout_cli.images import ImageDigest, ImageTag
from georollout_cli.waiting import WaitOutcome, wait_for_rollout
from tests.unit.cli.fake_api import (
    REGISTRY,
    REPOSITORY,
    Answer,
    Exchange,
    FakeApi,
    digest_of,
    document,
    listing,
    region,
    unreachable,
)

DIGEST = digest_of("a")
REF = ImageDigest(REGISTRY, REPOSITORY, DIGEST)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


class Sink:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.notes: list[str] = []

    def changed(self, document: Mapping[str, Any], lines: Sequence[str]) -> None:
        self.lines += lines

    def note(self, text: str) -> None:
        self.notes.append(text)


def scripted(*answers: Answer) -> FakeApi:
    """Each GET answers with the next of `answers`; the last one repeats."""
    remaining = list(answers)

    def answer(exchange: Exchange) -> Answer:
        return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return FakeApi(answer)


def run(
    api: FakeApi, *, ref: Any = REF, timeout: float = 60, interval: float = 5
) -> tuple[Any, Sink, Clock]:
    clock, sink = Clock(), Sink()
    result = wait_for_rollout(
        api,
        ref,
        timeout=timeout,
        interval=interval,
        sink=sink,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
    )
    return result, sink, clock


def test_waits_through_the_states_until_live_and_prints_each_change_once() -> None:
    replicating = document(DIGEST, "replicating", [region("eastus", "awaiting_replication")])
    deploying = document(
        DIGEST, "deploying", [region("eastus", "deploying", deploy_step="creating")]
    )
    live = document(DIGEST, "live", [region("eastus", "live")])
    api = scripted(*(ApiResponse(200, d) for d in (replicating, replicating, deploying, live)))
    result, sink, clock = run(api)
    assert result.outcome is WaitOutcome.LIVE and int(result.outcome) == 0
    assert sink.lines == [
        "rollout replicating",
        "eastus: awaiting_replication",
        "rollout replicating -> deploying",
        "eastus: deploying (step creating)",
        "rollout deploying -> live",
        "eastus: live",
    ]
    assert clock.sleeps == [5, 5, 5]
    assert {e.path for e in api.sent} == {"/api/rollouts/" + REF.rollout_id}


def test_a_rollout_not_recorded_yet_is_waited_for_with_one_note() -> None:
    live = document(DIGEST, "live", [region("eastus", "live")])
    not_found = ApiResponse(404, {"error": {"code": "not_found"}})
    result, sink, _ = run(scripted(not_found, not_found, not_found, ApiResponse(200, live)))
    assert result.outcome is WaitOutcome.LIVE
    assert len(sink.notes) == 1 and "recorded yet" in sink.notes[0]


def test_a_digest_that_never_arrives_times_out_at_the_deadline_exactly() -> None:
    result, _, clock = run(scripted(ApiResponse(404, None)), timeout=12, interval=5)
    assert result.outcome is WaitOutcome.TIMED_OUT and int(result.outcome) == 124
    # Asked at 0, 5, 10 and 12 s: the last sleep is cut to the deadline, never past it.
    assert clock.sleeps == [5, 5, 2]
    assert "never recorded after 12s" in result.reason


def test_a_zero_timeout_still_asks_once() -> None:
    live = document(DIGEST, "live", [region("eastus", "live")])
    result, _, clock = run(scripted(ApiResponse(200, live)), timeout=0)
    assert result.outcome is WaitOutcome.LIVE and clock.sleeps == []


@pytest.mark.parametrize("state", ["failed", "rolled_back", "superseded", "timed_out", "ignored"])
def test_an_ended_rollout_exits_1_with_the_reason(state: str) -> None:
    ended = document(DIGEST, state, [region("eastus", "failed", last_error="ImagePullFailure")])
    result, _, _ = run(scripted(ApiResponse(200, ended)))
    assert result.outcome is WaitOutcome.ENDED and int(result.outcome) == 1
    assert "ImagePullFailure" in result.reason


def test_an_unreachable_or_failing_api_is_asked_again() -> None:
    live = document(DIGEST, "live", [region("eastus", "live")])
    busy = ApiResponse(503, {"error": {"code": "unavailable"}})
    result, sink, _ = run(scripted(unreachable(), unreachable(), busy, ApiResponse(200, live)))
    assert result.outcome is WaitOutcome.LIVE
    assert [n.split(",")[0] for n in sink.notes] == [
        "cannot reach the API",
        "the API is busy or failing",
    ]


def test_a_refusal_that_asking_again_cannot_fix_ends_the_wait() -> None:
    api = scripted(ApiResponse(401, {"error": {"code": "unauthorized", "message": "no key"}}))
    with pytest.raises(ApiError, match="answered 401") as raised:
        run(api)
    assert raised.value.status == 401 and len(api.sent) == 1


def test_a_tag_names_the_newest_rollout_it_or_a_pending_claim_of_it_names() -> None:
    older = document(digest_of("b"), "live", [region("eastus", "live")], tags=["v2"])
    newer = document(digest_of("c"), "live", [region("eastus", "live")], pending_tags=["v2"])
    other_tag = document(digest_of("d"), "failed", [region("eastus", "failed")], tags=["v3"])
    api = FakeApi(listing(other_tag, newer, older))
    result, _, _ = run(api, ref=ImageTag(REGISTRY, REPOSITORY, "v2"))
    assert result.outcome is WaitOutcome.LIVE
    assert result.document is not None and result.document["digest"] == digest_of("c")
    assert {e.query.get("repository") for e in api.sent} == {REPOSITORY}


def test_once_a_tag_named_a_rollout_it_is_followed_by_id() -> None:
    deploying = document(digest_of("c"), "deploying", [region("eastus", "deploying")], tags=["v2"])
    live = dict(deploying, state="live", regions=[region("eastus", "live")])
    answers = iter(
        [ApiResponse(200, {"rollouts": [deploying], "continuation": None}), ApiResponse(200, live)]
    )
    api = FakeApi(lambda exchange: next(answers))
    result, _, _ = run(api, ref=ImageTag(REGISTRY, REPOSITORY, "v2"))
    assert result.outcome is WaitOutcome.LIVE
    assert [e.path for e in api.sent] == ["/api/rollouts", "/api/rollouts/" + deploying["id"]]


def test_a_tag_of_another_registry_is_not_this_rollout() -> None:
    elsewhere = document(
        digest_of("b"), "live", [region("eastus", "live")], tags=["v2"], registry="other.azurecr.io"
    )
    result, _, _ = run(
        FakeApi(listing(elsewhere)), ref=ImageTag(REGISTRY, REPOSITORY, "v2"), timeout=5
    )
    assert result.outcome is WaitOutcome.TIMED_OUT
