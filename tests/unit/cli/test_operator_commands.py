"""`georollout approve|hold|resume|retry|rollback` against a real HTTP server on loopback: the
request each sends (route, quoted id, JSON body, function key), what it prints and how it
exits for the API's 200, 409, 404 and 400, and IMAGE resolved as `status` resolves it."""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner, Result

from georollout_cli import app
from georollout_cli.api import (
    ACCESS_TOKEN_ENV,
    FUNCTION_KEY_ENV,
    ROLLOUT_ACTIONS,
    URL_ENV,
    ApiClient,
    ApiError,
    error_text,
)
from tests.unit.cli.fake_api import REGISTRY, REPOSITORY, digest_of, document, region

KEY = "function-key-123"
DIGEST = digest_of("a")
IMAGE = f"{REGISTRY}/{REPOSITORY}@{DIGEST}"
ROLLOUT = document(
    DIGEST,
    "deploying",
    [region("eastus", "live", deploy_step="done"), region("westus", "failed", last_error="boom")],
    tags=["v1"],
)
ID = str(ROLLOUT["id"])


@dataclass(frozen=True)
class Received:
    method: str
    target: str  # the request target exactly as sent (quoted path and query)
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def route(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.target.partition("?")[2]))

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ApiServer:
    """An HTTP server on 127.0.0.1 (ephemeral port) that records every request and answers
    `answers[(method, route)]` as (status, JSON body); 404 with a note for anything else."""

    received: list[Received] = field(default_factory=list)
    answers: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                got = Received(
                    self.command,
                    self.path,
                    {name.lower(): value for name, value in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                server.received.append(got)
                status, body = server.answers.get(
                    (got.method, got.route), (404, {"note": "no canned answer"})
                )
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def answer(self, method: str, route: str, status: int, body: Any) -> None:
        self.answers[(method, route)] = (status, body)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def api_server(request: pytest.FixtureRequest) -> ApiServer:
    server = ApiServer()
    request.addfinalizer(server.stop)
    return server


@pytest.fixture
def api(api_server: ApiServer) -> ApiServer:
    """The module's server with nothing received and no answers yet."""
    api_server.received.clear()
    api_server.answers.clear()
    return api_server


def run(url: str, args: list[str], env: dict[str, str | None] | None = None) -> Result:
    base: dict[str, str | None] = {
        URL_ENV: url,
        FUNCTION_KEY_ENV: KEY,
        app.ACTOR_ENV: "ops-bot",
        "no_proxy": "127.0.0.1",
    }
    runner = CliRunner(env={**base, **(env or {})})
    return runner.invoke(app.cli, args, prog_name="georollout")


def action_route(rollout_id: str, action: str) -> str:
    return f"/api/rollouts/{urllib.parse.quote(rollout_id, safe='')}/{action}"


def accepted(action: str, rollout: dict[str, Any], **entry: Any) -> dict[str, Any]:
    """The 200 body: the rollout with its history ending in this action."""
    last = {
        "at": "2026-11-24T07:12:00.000000Z",
        "action": action,
        "actor": "ops-bot",
        "actor_verified": False,
        "reason": None,
        "regions": [],
        "outcome": "accepted",
        **entry,
    }
    return {**rollout, "state": "held" if action == "hold" else rollout["state"], "history": [last]}


def error(code: str, message: str, **extra: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


@pytest.mark.parametrize("action", ROLLOUT_ACTIONS)
def test_each_action_posts_to_its_route_and_shows_the_rollout_as_status_does(
    api: ApiServer, action: str
) -> None:
    answered = accepted(action, ROLLOUT)
    api.answer("POST", action_route(ID, action), 200, answered)
    api.answer("GET", f"/api/rollouts/{ID}", 200, answered)

    result = run(api.url, [action, ID])

    assert (result.exit_code, result.stderr) == (0, "")
    [sent] = api.received
    assert (sent.method, sent.target) == ("POST", f"/api/rollouts/{ID}/{action}")
    assert sent.json() == {"actor": "ops-bot"}  # no regions, no reason: not sent at all
    assert sent.headers["x-functions-key"] == KEY
    assert sent.headers["content-type"] == "application/json"
    shown = run(api.url, ["status", ID])
    assert shown.exit_code == 0
    assert result.stdout == f"{action} accepted for {ID}\n" + shown.stdout
    assert "eastus (primary)" in result.stdout and "westus" in result.stdout


def test_regions_reason_and_actor_are_sent_as_given(api: ApiServer) -> None:
    route = action_route(ID, "retry")
    api.answer("POST", route, 200, accepted("retry", ROLLOUT, actor="alice"))

    result = run(
        api.url,
        [
            "retry",
            ID,
            "--region",
            "westus",
            "--region",
            "northeurope",
            "--reason",
            "quota raised",
            "--actor",
            "alice",
        ],
    )

    assert result.exit_code == 0, result.stderr
    [sent] = api.received
    assert sent.route == route
    assert sent.json() == {
        "reason": "quota raised",
        "regions": ["westus", "northeurope"],
        "actor": "alice",  # --actor wins over GEOROLLOUT_ACTOR (ops-bot)
    }


@pytest.mark.parametrize("actor_env", [None, "", "  "])
def test_without_actor_or_its_variable_the_login_name_acts(
    api: ApiServer, actor_env: str | None
) -> None:
    api.answer("POST", action_route(ID, "hold"), 200, accepted("hold", ROLLOUT, actor="carol"))

    result = run(
        api.url,
        ["hold", ID, "--reason", "paging storm"],
        env={app.ACTOR_ENV: actor_env, "LOGNAME": "carol"},  # getpass asks LOGNAME first
    )

    assert result.exit_code == 0, result.stderr
    assert api.received[0].json() == {"reason": "paging storm", "actor": "carol"}


def test_without_a_function_key_no_key_header_is_sent(api: ApiServer) -> None:
    api.answer("POST", action_route(ID, "approve"), 200, accepted("approve", ROLLOUT))

    result = run(api.url, ["approve", ID], env={FUNCTION_KEY_ENV: None})

    assert result.exit_code == 0, result.stderr
    assert "x-functions-key" not in api.received[0].headers


def test_an_access_token_goes_in_the_authorization_header(api: ApiServer) -> None:
    # Behind App Service authentication (Entra ID) the app wants a bearer token too.
    api.answer("POST", action_route(ID, "hold"), 200, accepted("hold", ROLLOUT))

    result = run(api.url, ["hold", ID], env={ACCESS_TOKEN_ENV: " eyJ0eXAi.token "})

    assert result.exit_code == 0, result.stderr
    headers = api.received[0].headers
    assert headers["authorization"] == "Bearer eyJ0eXAi.token"
    assert headers["x-functions-key"] == KEY
    assert "eyJ0eXAi" not in result.stdout + result.stderr


def test_an_access_token_is_refused_over_plain_http_to_a_remote_host() -> None:
    env = {ACCESS_TOKEN_ENV: "t", FUNCTION_KEY_ENV: None}
    result = run("http://georollout.example", ["hold", ID], env=env)

    assert result.exit_code == 2
    assert "GEOROLLOUT_ACCESS_TOKEN is set but GEOROLLOUT_URL is plain http" in result.stderr


def test_an_action_that_does_not_fit_the_state_is_refused_with_exit_1(api: ApiServer) -> None:
    message = "cannot resume: the rollout is live, not held"
    api.answer("POST", action_route(ID, "resume"), 409, error("invalid_transition", message))

    result = run(api.url, ["resume", ID])

    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"refused: {message}\n")
    assert [r.method for r in api.received] == ["POST"]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, error("not_found", f"no rollout {ID}")),
        (400, error("unknown_region", "'mars' is no region of this rollout", field="regions")),
    ],
)
def test_not_found_and_bad_request_take_the_api_error_path_with_exit_3(
    api: ApiServer, status: int, body: dict[str, Any]
) -> None:
    api.answer("POST", action_route(ID, "rollback"), status, body)

    result = run(api.url, ["rollback", ID, "--region", "mars"])

    assert (result.exit_code, result.stdout) == (3, "")
    assert f"POST /api/rollouts/{ID}/rollback answered {status}: " in result.stderr
    assert error_text(body) in result.stderr


def test_an_unreachable_api_exits_3() -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        result = run(url, ["approve", ID])

    assert (result.exit_code, result.stdout) == (3, "")
    assert f"POST {url}/api/rollouts/{ID}/approve: " in result.stderr


def test_an_image_by_digest_is_its_rollout_id_without_a_lookup(api: ApiServer) -> None:
    api.answer("POST", action_route(ID, "approve"), 200, accepted("approve", ROLLOUT))

    result = run(api.url, ["approve", IMAGE])

    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"approve accepted for {ID}\n")
    assert [(r.method, r.route) for r in api.received] == [("POST", action_route(ID, "approve"))]


def test_an_image_by_tag_acts_on_the_newest_rollout_it_names(api: ApiServer) -> None:
    newer = document(digest_of("b"), "deploying", [region("eastus", "deploying")], tags=["v2"])
    older = document(digest_of("c"), "live", [region("eastus", "live")], tags=["v1"])
    older_id = str(older["id"])
    api.answer("GET", "/api/rollouts", 200, {"rollouts": [newer, older], "continuation": None})
    api.answer("POST", action_route(older_id, "rollback"), 200, accepted("rollback", older))

    result = run(api.url, ["rollback", f"{REGISTRY}/{REPOSITORY}:v1"])

    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"rollback accepted for {older_id}\n")
    listed, acted = api.received
    assert (listed.method, listed.route, listed.query["repository"]) == (
        "GET",
        "/api/rollouts",
        REPOSITORY,
    )
    assert (acted.method, acted.route) == ("POST", action_route(older_id, "rollback"))


def test_a_tag_naming_no_rollout_exits_3_without_acting(api: ApiServer) -> None:
    api.answer("GET", "/api/rollouts", 200, {"rollouts": [], "continuation": None})

    result = run(api.url, ["hold", f"{REGISTRY}/{REPOSITORY}:v9"])

    assert result.exit_code == 3
    assert f"no rollout of {REGISTRY}/{REPOSITORY}:v9" in result.stderr
    assert [r.method for r in api.received] == ["GET"]


def test_a_cut_short_id_matching_two_rollouts_is_a_usage_error(api: ApiServer) -> None:
    one = document("sha256:" + "d" * 64, "live")
    other = document("sha256:" + "d" * 12 + "e" * 52, "live")
    api.answer("GET", "/api/rollouts", 200, {"rollouts": [one, other], "continuation": None})

    result = run(api.url, ["approve", str(one["id"])[: -(64 - 12)]])

    assert result.exit_code == 2 and "matches more than one rollout" in result.stderr
    assert [r.method for r in api.received] == ["GET"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["approve", "not-an-id"], "neither a rollout id"),
        (["hold", ID, "--region", " "], "must not be blank"),
        (["retry", ID, "--actor", ""], "must not be blank"),
        (["rollback", ID, "--reason", ""], "must not be blank"),
        (["resume"], "Missing argument 'ID'"),
    ],
)
def test_usage_errors_exit_2_without_asking(api: ApiServer, args: list[str], says: str) -> None:
    result = run(api.url, args)

    assert result.exit_code == 2 and says in result.stderr
    assert api.received == []


def test_the_help_names_every_action_and_its_options() -> None:
    listed = CliRunner().invoke(app.cli, ["--help"], prog_name="georollout")
    commands = listed.stdout.partition("Commands:")[2].split()
    assert set(ROLLOUT_ACTIONS) <= set(commands)
    one = CliRunner().invoke(app.cli, ["retry", "--help"], prog_name="georollout")
    assert one.exit_code == 0
    assert "Usage: georollout retry [OPTIONS] ID" in one.stdout
    for option in ("--region R", "--reason TEXT", "--actor NAME"):
        assert option in one.stdout


def test_the_client_quotes_the_id_as_one_path_segment(api: ApiServer) -> None:
    odd = "a/b c?d"
    route = action_route(odd, "hold")
    assert route == "/api/rollouts/a%2Fb%20c%3Fd/hold"
    api.answer("POST", route, 200, {"id": odd})
    client = ApiClient(api.url, function_key=KEY)

    assert client.act_on_rollout(odd, "hold") == {"id": odd}
    assert api.received[0].target == route and api.received[0].json() == {}


def test_the_client_raises_api_error_with_the_servers_message(api: ApiServer) -> None:
    api.answer("POST", action_route(ID, "approve"), 409, error("invalid_transition", "live"))
    client = ApiClient(api.url)

    with pytest.raises(ApiError) as raised:
        client.act_on_rollout(ID, "approve")
    assert (raised.value.status, raised.value.message) == (409, "live")
    with pytest.raises(ValueError, match="'delete' is not one of approve"):
        client.act_on_rollout(ID, "delete")
    assert len(api.received) == 1
