"""The build notice `notify` sends: its body, its signature, and its retries."""

from __future__ import annotations

import json

import pytest

from georollout_cli.api import ApiResponse, ApiUnreachable
from georollout_cli.images import ImageDigest
from georollout_cli.notice import BUILD_HOOK_PATH, BuildInfo, RetryPolicy, notice_body, send_notice
from shared.intake.webhook_signature import secret_key, verify
from tests.unit.cli.fake_api import (
    REGISTRY,
    REPOSITORY,
    Answer,
    Exchange,
    FakeApi,
    digest_of,
    unreachable,
)

SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
IMAGE = ImageDigest(REGISTRY, REPOSITORY, digest_of("a"))
BODY = notice_body(IMAGE, ["v2"], BuildInfo(system="jenkins"))


def test_the_body_carries_only_what_was_given() -> None:
    assert json.loads(notice_body(IMAGE, [], BuildInfo())) == {"image": IMAGE.reference}
    full = BuildInfo(
        system="github-actions",
        id="7421",
        url="https://ci/runs/7421",
        commit="9fceb02",
        source="https://git/org/models",
    )
    assert json.loads(notice_body(IMAGE, ["v2", "stable", "v2"], full)) == {
        "image": f"{REGISTRY}/{REPOSITORY}@{digest_of('a')}",
        "tags": ["v2", "stable"],
        "build": {
            "system": "github-actions",
            "id": "7421",
            "url": "https://ci/runs/7421",
            "commit": "9fceb02",
            "source": "https://git/org/models",
        },
    }


def test_a_tag_written_in_the_image_joins_the_tags() -> None:
    tagged = ImageDigest(REGISTRY, REPOSITORY, digest_of("a"), tag="v2")
    assert json.loads(notice_body(tagged, ["stable"], BuildInfo()))["tags"] == ["stable", "v2"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def deliver(
    *answers: Answer, policy: RetryPolicy | None = None
) -> tuple[Answer | None, FakeApi, Clock]:
    remaining = list(answers)
    api = FakeApi(lambda exchange: remaining.pop(0))
    clock = Clock()
    try:
        result: Answer | None = send_notice(
            api, SECRET, BODY, policy=policy, clock=clock.time, sleep=clock.sleep
        )
    except ApiUnreachable as error:
        result = error
    return result, api, clock


def assert_signed(exchange: Exchange) -> None:
    """The request verifies as the app verifies it, at the time it was signed."""
    at = int(exchange.headers["webhook-timestamp"])
    verify([secret_key(SECRET)], exchange.headers, exchange.data or b"", now=at)


def test_one_signed_post_when_the_app_accepts() -> None:
    result, api, clock = deliver(ApiResponse(202, {"rollout": "x"}))
    assert isinstance(result, ApiResponse) and result.status == 202
    [sent] = api.sent
    assert (sent.method, sent.path, sent.data) == ("POST", BUILD_HOOK_PATH, BODY)
    assert sent.headers["Content-Type"] == "application/json"
    assert_signed(sent)
    assert clock.sleeps == []


def test_retries_keep_the_message_id_and_sign_a_fresh_timestamp() -> None:
    result, api, clock = deliver(
        unreachable(),
        ApiResponse(503, None),
        ApiResponse(429, None),
        ApiResponse(202, {"rollout": "x"}),
    )
    assert isinstance(result, ApiResponse) and result.status == 202
    assert len({e.headers["webhook-id"] for e in api.sent}) == 1
    timestamps = [int(e.headers["webhook-timestamp"]) for e in api.sent]
    assert timestamps == sorted(set(timestamps))  # each attempt later than the one before
    assert len({e.headers["webhook-signature"] for e in api.sent}) == 4
    for exchange in api.sent:
        assert_signed(exchange)
    assert clock.sleeps == [1.0, 2.0, 4.0]


@pytest.mark.parametrize("status", [400, 401, 404, 413])
def test_a_refusal_is_not_retried(status: int) -> None:
    result, api, _ = deliver(ApiResponse(status, {"error": {"code": "x"}}))
    assert isinstance(result, ApiResponse) and result.status == status
    assert len(api.sent) == 1


def test_the_last_failing_answer_is_returned_when_attempts_run_out() -> None:
    result, api, clock = deliver(*[ApiResponse(500, None)] * 3, policy=RetryPolicy(attempts=3))
    assert isinstance(result, ApiResponse) and result.status == 500
    assert len(api.sent) == 3 and clock.sleeps == [1.0, 2.0]


def test_no_answer_at_all_raises_after_the_last_attempt() -> None:
    result, api, _ = deliver(*[unreachable()] * 4)
    assert isinstance(result, ApiUnreachable) and len(api.sent) == 4


def test_retry_after_is_honoured_within_the_bound() -> None:
    policy = RetryPolicy(attempts=3, first_delay_s=1, max_delay_s=10)
    busy = ApiResponse(429, None, {"Retry-After": "7"})
    too_long = ApiResponse(503, None, {"retry-after": "3600"})
    _, _, clock = deliver(busy, too_long, ApiResponse(202, {}), policy=policy)
    assert clock.sleeps == [7.0, 10.0]


def test_a_policy_tries_at_least_once() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
