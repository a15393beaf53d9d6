"""The commands as a user runs them (click's runner), on a scripted API: arguments, exit
statuses, what goes to stdout and to stderr, and that the secret never shows."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result

from georollout_cli import app
from georollout_cli.api import ApiClient, ApiResponse
from georollout_cli.notice import SECRET_ENV
from shared.intake.webhook_signature import secret_key, verify
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
)

SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
IMAGE = f"{REGISTRY}/{REPOSITORY}@{digest_of('a')}"


def invoke(
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    answer: Answer | None = None,
    *,
    api: FakeApi | None = None,
    env: dict[str, str] | None = None,
) -> Result:
    if api is None and answer is not None:
        fixed = answer
        api = FakeApi(lambda exchange: fixed)
    if api is not None:
        chosen: ApiClient = api
        monkeypatch.setattr(app, "_client", lambda environ=None: chosen)
    runner = CliRunner(env={SECRET_ENV: SECRET, **(env or {})})
    return runner.invoke(app.cli, args, prog_name="georollout")


def test_notify_prints_the_rollout_id_of_a_signed_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[Exchange] = []

    def accept(exchange: Exchange) -> Answer:
        sent.append(exchange)
        return ApiResponse(202, {"rollout": "the-id"})

    result = invoke(
        monkeypatch,
        [
            "notify",
            IMAGE,
            "--tag",
            "v2",
            "--tag",
            "stable",
            "--system",
            "jenkins",
            "--id",
            "12",
            "--build-url",
            "https://ci/12",
            "--commit",
            "abc",
            "--source",
            "https://git/x",
        ],
        api=FakeApi(accept),
    )
    assert (result.exit_code, result.stdout, result.stderr) == (0, "the-id\n", "")
    [exchange] = sent
    assert json.loads(exchange.data or b"") == {
        "image": IMAGE,
        "tags": ["v2", "stable"],
        "build": {
            "system": "jenkins",
            "id": "12",
            "url": "https://ci/12",
            "commit": "abc",
            "source": "https://git/x",
        },
    }
    at = int(exchange.headers["webhook-timestamp"])
    verify([secret_key(SECRET)], exchange.headers, exchange.data or b"", now=at)


def test_notify_shows_the_apps_json_error_on_stderr_and_exits_3(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    error = {"error": {"code": "wrong_registry", "message": "names registry x", "field": "image"}}
    result = invoke(monkeypatch, ["notify", IMAGE], ApiResponse(400, error))
    assert result.exit_code == 3 and result.stdout == ""
    assert "answered 400" in result.stderr
    assert json.dumps(error, separators=(", ", ": ")) in result.stderr


def test_notify_without_the_secret_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = invoke(monkeypatch, ["notify", IMAGE], env={SECRET_ENV: ""})
    assert result.exit_code == 2 and f"{SECRET_ENV} is not set" in result.stderr


def test_a_malformed_secret_is_refused_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = "whsec_c2VjcmV0LXZhbHVlLXNob3J0!"  # the "!" makes it no base64
    result = invoke(monkeypatch, ["notify", IMAGE], env={SECRET_ENV: bad})
    assert result.exit_code == 2 and SECRET_ENV in result.stderr
    assert "c2VjcmV0" not in result.output + result.stderr


def test_the_secret_is_no_option(monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke(monkeypatch, ["notify", IMAGE, "--secret", SECRET])
    assert result.exit_code == 2 and "No such option" in result.stderr
    assert SECRET not in result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["notify", f"{REGISTRY}/{REPOSITORY}:v2"], "has no digest"),
        (["notify", IMAGE, "--tag", "-bad"], "not a tag"),
        (["wait", IMAGE, "--timeout", "soon"], "not a duration"),
        (["wait", IMAGE, "--interval", "0s"], "shorter than 0.1s"),
        (["wait", "not-an-id"], "neither a rollout id"),
        (["status", IMAGE, "--state", "live"], "filter the list"),
    ],
)
def test_usage_errors_exit_2_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, args: list[str], says: str
) -> None:
    result = invoke(monkeypatch, args)
    assert result.exit_code == 2 and says in result.stderr


def test_a_function_key_is_never_sent_in_clear_text_to_a_remote_host() -> None:
    env = {"GEOROLLOUT_URL": "http://georollout.example.com", "GEOROLLOUT_FUNCTION_KEY": "key-123"}
    result = CliRunner(env=env).invoke(app.cli, ["status"])
    assert result.exit_code == 2 and "use https" in result.stderr
    assert "key-123" not in result.stderr + result.stdout


@pytest.mark.parametrize(("state", "code"), [("live", 0), ("failed", 1), ("superseded", 1)])
def test_wait_exits_with_the_outcome(
    monkeypatch: pytest.MonkeyPatch, state: str, code: int
) -> None:
    doc = document(digest_of("a"), state, [region("eastus", state)])
    result = invoke(monkeypatch, ["wait", IMAGE, "--timeout", "1s"], ApiResponse(200, doc))
    assert result.exit_code == code
    assert f"rollout {state}" in result.stdout and "eastus: " in result.stdout


def test_wait_timing_out_exits_124(monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke(monkeypatch, ["wait", IMAGE, "--timeout", "0s"], ApiResponse(404, None))
    assert result.exit_code == 124 and "timed out:" in result.stderr


def test_wait_on_a_refusal_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke(
        monkeypatch, ["wait", IMAGE], ApiResponse(403, {"error": {"code": "forbidden"}})
    )
    assert result.exit_code == 3 and "answered 403" in result.stderr


def test_watch_follows_the_rollout_with_the_eta_and_ends_with_its_status_view(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    eta = "2026-11-24T07:11:30Z"
    waiting = document(
        digest_of("a"),
        "replicating",
        [region("eastus", "live"), region("westus", "awaiting_replication", eta=eta)],
    )
    live = document(digest_of("a"), "live", [region("eastus", "live"), region("westus", "live")])
    answers = iter([waiting, waiting, live])
    api = FakeApi(lambda exchange: ApiResponse(200, next(answers)))
    result = invoke(monkeypatch, ["watch", IMAGE, "--interval", "0.1s"], api=api)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # A line per change (the ETA with it), then the status view, then the outcome.
    assert any(
        line.endswith(f"westus: awaiting_replication; replica expected {eta}") for line in lines
    )
    assert sum("westus: awaiting_replication" in line for line in lines) == 1  # said once
    assert ["westus", "-", "live"] in [line.split()[:3] for line in lines]  # its table row
    assert lines[-1] == f"live: {live['id']}"
    assert len(api.sent) == 3


def test_watch_without_a_timeout_watches_until_the_rollout_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failed = document(digest_of("a"), "failed", [region("eastus", "failed", last_error="boom")])
    result = invoke(monkeypatch, ["watch", IMAGE], ApiResponse(200, failed))
    assert result.exit_code == 1
    assert "failed: eastus (failed): boom" in result.stderr


def test_status_lists_and_shows_one_and_prints_json(monkeypatch: pytest.MonkeyPatch) -> None:
    newer = document(digest_of("b"), "deploying", [region("eastus", "deploying")], tags=["v2"])
    older = document(digest_of("a"), "live", [region("eastus", "live")], tags=["v1"])
    api = FakeApi(listing(newer, older))
    listed = invoke(monkeypatch, ["status", "--limit", "5"], api=api)
    assert listed.exit_code == 0
    assert [line.split()[-3] for line in listed.stdout.splitlines()[1:]] == ["deploying", "live"]
    one = invoke(monkeypatch, ["status", f"{REGISTRY}/{REPOSITORY}:v1", "--json"], api=api)
    assert one.exit_code == 0 and json.loads(one.stdout) == older
    short = older["id"][: -(64 - 12)]
    by_short_id = invoke(monkeypatch, ["status", short], api=api)
    assert by_short_id.exit_code == 0 and older["id"] in by_short_id.stdout


def test_status_of_an_unknown_rollout_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke(monkeypatch, ["status", IMAGE], api=FakeApi(listing()))
    assert result.exit_code == 3 and "no rollout of" in result.stderr


def test_status_list_stops_at_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = [document(digest_of(c), "live", [region("eastus", "live")]) for c in "abcdef"]
    api = FakeApi(listing(*docs))
    result = invoke(monkeypatch, ["status", "-n", "2", "--json"], api=api)
    assert result.exit_code == 0 and len(json.loads(result.stdout)["rollouts"]) == 2
    assert len(api.sent) == 2  # one rollout per scripted page: no page asked beyond the limit
