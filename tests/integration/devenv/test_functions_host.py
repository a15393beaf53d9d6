"""The local Functions host, run as a process on a free port with the tiny app in host_app/."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from devenv.host.launcher import start_functions_host
from devenv.paths import REPO_ROOT
from devenv.ports import free_port
from devenv.process import ManagedProcess, wait_until

pytestmark = pytest.mark.integration

APP_SOURCE = Path(__file__).parent / "host_app"
TIMEOUT = 10


@dataclass
class RunningHost:
    process: ManagedProcess
    base_url: str
    output_dir: Path
    log_path: Path

    def url(self, path: str) -> str:
        return self.base_url + path

    def webhook(self, function: str = "on_event") -> str:
        return self.url(f"/runtime/webhooks/eventgrid?functionName={function}")

    def records(self, name: str) -> list[dict[str, Any]]:
        path = self.output_dir / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def events(self) -> list[dict[str, Any]]:
        return self.records("events.jsonl")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    root = tmp_path_factory.mktemp("functions-host")
    app_dir = root / "app"
    shutil.copytree(APP_SOURCE, app_dir, ignore=shutil.ignore_patterns("__pycache__"))
    output_dir = root / "output"
    output_dir.mkdir()
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("GREETING", "TICK_SCHEDULE")
    }
    env["HOST_TEST_OUTPUT_DIR"] = str(output_dir)
    env["OVERRIDDEN"] = "from-environment"
    port = free_port()
    log_path = root / "host.log"
    process = start_functions_host(app_dir, port, log_path=log_path, env=env)
    try:
        yield RunningHost(process, f"http://127.0.0.1:{port}", output_dir, log_path)
    finally:
        process.stop()


def test_status_lists_every_function(host: RunningHost) -> None:
    status = requests.get(host.url("/admin/host/status"), timeout=TIMEOUT).json()
    assert status["state"] == "Running"
    assert set(status["functions"]) == {
        "item",
        "files",
        "echo",
        "settings",
        "boom",
        "slow",
        "on_event",
        "tick",
    }


def test_settings_come_from_local_settings_but_the_environment_wins(host: RunningHost) -> None:
    settings = requests.get(host.url("/api/settings"), timeout=TIMEOUT).json()
    assert settings == {"GREETING": "from-local-settings", "OVERRIDDEN": "from-environment"}
    log = host.log()
    assert "GREETING" in log
    assert "from-local-settings" not in log  # names are logged, never values


def test_route_parameters_query_and_method(host: RunningHost) -> None:
    answer = requests.get(host.url("/api/items/42"), timeout=TIMEOUT)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json()["id"] == "42" and answer.json()["label"] is None
    document = requests.get(host.url("/api/items/7/blue?x=1&x=2&y=z"), timeout=TIMEOUT).json()
    assert (document["id"], document["label"], document["method"]) == ("7", "blue", "GET")
    assert document["query"] == {"x": "1,2", "y": "z"}
    put = requests.put(host.url("/API/Items/8"), data=b"payload", timeout=TIMEOUT).json()
    assert (put["method"], put["body"], put["id"]) == ("PUT", "payload", "8")


def test_wrong_method_is_405_and_unknown_routes_are_404(host: RunningHost) -> None:
    refused = requests.post(host.url("/api/items/42"), data=b"x", timeout=TIMEOUT)
    assert refused.status_code == 405
    assert set(refused.headers["Allow"].split(", ")) == {"GET", "PUT"}
    assert requests.get(host.url("/api/items/not-a-number"), timeout=TIMEOUT).status_code == 404
    assert requests.get(host.url("/api/nothing-here"), timeout=TIMEOUT).status_code == 404
    assert (
        requests.get(host.url("/items/42"), timeout=TIMEOUT).status_code == 404
    )  # no route prefix


def test_async_function_runs_on_the_event_loop_with_a_context(host: RunningHost) -> None:
    document = requests.get(host.url("/api/files/a/b/c.txt"), timeout=TIMEOUT).json()
    assert document["path"] == "a/b/c.txt"
    assert document["function"] == "files"
    assert len(document["invocation"]) == 36
    assert document["thread"] == "MainThread"
    assert requests.get(host.url("/api/files"), timeout=TIMEOUT).json()["path"] is None


def test_out_binding_response_and_a_large_body_is_read_whole(host: RunningHost) -> None:
    body = b"x" * (3 * 1024 * 1024)
    answer = requests.post(host.url("/api/echo"), data=body, timeout=TIMEOUT)
    assert answer.status_code == 201
    assert answer.json() == {"length": len(body)}


def test_a_failing_function_answers_500_and_logs_its_traceback(host: RunningHost) -> None:
    assert requests.get(host.url("/api/boom"), timeout=TIMEOUT).status_code == 500
    wait_until(
        lambda: "RuntimeError: boom on purpose" in host.log(), timeout=TIMEOUT, what="the traceback"
    )
    log = host.log()
    assert "[boom " in log and "Executed 'Functions.boom' (Failed" in log
    assert "GET /api/boom 500" in log


def test_a_slow_sync_function_does_not_block_other_requests(host: RunningHost) -> None:
    slow_answer: dict[str, Any] = {}

    def call_slow() -> None:
        slow_answer["response"] = requests.get(host.url("/api/slow"), timeout=30)

    caller = threading.Thread(target=call_slow)
    caller.start()
    try:
        wait_until(
            lambda: "Executing 'Functions.slow'" in host.log(),
            timeout=TIMEOUT,
            what="slow to start",
        )
        quick = requests.get(host.url("/api/items/1"), timeout=TIMEOUT)
        assert quick.status_code == 200
        assert quick.json()["thread"].startswith("function")
        assert caller.is_alive(), "the slow function answered before it was released"
    finally:
        (host.output_dir / "release-slow").touch()
        caller.join(timeout=30)
    assert slow_answer["response"].json() == {"released": True}


def _grid_event(event_id: str, **data: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "topic": "/subscriptions/x/resourceGroups/y/providers/Microsoft.ContainerRegistry/registries/z",
        "subject": "repo:tag",
        "eventType": "Microsoft.ContainerRegistry.ImagePushed",
        "eventTime": "2024-05-01T12:00:00.1234567Z",
        "dataVersion": "1.0",
        "data": data,
    }


def _post_events(
    host: RunningHost, body: Any, event_type: str | None = "Notification", **headers: str
) -> requests.Response:
    if event_type is not None:
        headers["aeg-event-type"] = event_type
    headers.setdefault("Content-Type", "application/json")
    return requests.post(host.webhook(), data=json.dumps(body), headers=headers, timeout=TIMEOUT)


def test_eventgrid_subscription_validation_handshake(host: RunningHost) -> None:
    validation = {
        "id": "v1",
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2024-05-01T12:00:00Z",
        "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6", "validationUrl": None},
        "dataVersion": "1",
        "subject": "",
        "topic": "t",
    }
    answer = _post_events(host, [validation], event_type="SubscriptionValidation")
    assert answer.status_code == 200
    assert answer.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    assert all(event["id"] != "v1" for event in host.events())


def test_eventgrid_notification_single_and_array(host: RunningHost) -> None:
    assert _post_events(host, _grid_event("single-1", repository="models/a")).status_code == 202
    assert _post_events(host, [_grid_event("array-1"), _grid_event("array-2")]).status_code == 202
    events = {event["id"]: event for event in host.events()}
    assert {"single-1", "array-1", "array-2"} <= set(events)
    single = events["single-1"]
    assert single["kind"] == "EventGridEvent"
    assert single["type"] == "Microsoft.ContainerRegistry.ImagePushed"
    assert single["data"] == {"repository": "models/a"}
    assert single["topic"].endswith("/registries/z")
    assert "[on_event " in host.log() and "received event single-1" in host.log()


def test_eventgrid_any_failed_event_answers_500_after_running_all(host: RunningHost) -> None:
    answer = _post_events(host, [_grid_event("fail-1", fail=True), _grid_event("after-fail-1")])
    assert answer.status_code == 500
    ids = [event["id"] for event in host.events()]
    assert "after-fail-1" in ids and "fail-1" not in ids


def test_cloudevents_arrive_as_func_cloudevent(host: RunningHost) -> None:
    cloud_event = {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "/georollout/local",
        "type": "georollout.replica.available",
        "subject": "models/a@sha256:abc",
        "time": "2024-05-01T12:00:00Z",
        "datacontenttype": "application/json",
        "data": {"region": "westus"},
    }
    single = _post_events(
        host, cloud_event, **{"Content-Type": "application/cloudevents+json; charset=utf-8"}
    )
    assert single.status_code == 202
    batch = [dict(cloud_event, id="ce-2"), dict(cloud_event, id="ce-3")]
    assert (
        _post_events(
            host, batch, **{"Content-Type": "application/cloudevents-batch+json"}
        ).status_code
        == 202
    )
    events = {event["id"]: event for event in host.events()}
    assert events["ce-1"] == {
        "kind": "CloudEvent",
        "id": "ce-1",
        "type": "georollout.replica.available",
        "source": "/georollout/local",
        "subject": "models/a@sha256:abc",
        "data": {"region": "westus"},
    }
    assert {"ce-2", "ce-3"} <= set(events)


def test_cloudevents_abuse_protection_options(host: RunningHost) -> None:
    answer = requests.options(
        host.webhook(), headers={"WebHook-Request-Origin": "eventgrid.azure.net"}, timeout=TIMEOUT
    )
    assert answer.status_code == 200
    assert answer.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


def test_eventgrid_header_and_body_errors(host: RunningHost) -> None:
    assert _post_events(host, _grid_event("no-header"), event_type=None).status_code == 400
    assert _post_events(host, _grid_event("bogus"), event_type="Bogus").status_code == 400
    assert _post_events(host, _grid_event("bye"), event_type="Unsubscribe").status_code == 202
    not_json = requests.post(
        host.webhook(),
        data=b"{not json",
        headers={"aeg-event-type": "Notification"},
        timeout=TIMEOUT,
    )
    assert not_json.status_code == 400
    ids = {event["id"] for event in host.events()}
    assert not ids & {"no-header", "bogus", "bye"}


def test_eventgrid_unknown_function_is_404(host: RunningHost) -> None:
    for function in ("no_such_function", "item"):  # item exists but is not an Event Grid function
        answer = requests.post(
            host.webhook(function),
            json=[_grid_event("x")],
            headers={"aeg-event-type": "Notification"},
            timeout=TIMEOUT,
        )
        assert answer.status_code == 404


def test_timer_runs_on_startup_repeats_and_never_overlaps(host: RunningHost) -> None:
    def enough_ticks() -> bool:
        ticks = host.records("ticks.jsonl")
        return len(ticks) >= 3 and any(tick["past_due"] for tick in ticks)

    wait_until(enough_ticks, timeout=30, what="three timer runs, one past due")
    ticks = sorted(host.records("ticks.jsonl"), key=lambda tick: tick["start"])
    startup = ticks[0]
    assert startup["last"] is None and startup["past_due"] is False  # run_on_startup
    for previous, following in itertools.pairwise(ticks):
        assert following["start"] >= previous["end"], f"runs overlap: {previous} and {following}"
    assert "[tick " in host.log()


def test_admin_api_invokes_a_timer_function_now(host: RunningHost) -> None:
    before = len(host.records("ticks.jsonl"))
    assert (
        requests.post(host.url("/admin/functions/tick"), json={}, timeout=TIMEOUT).status_code
        == 202
    )
    assert (
        requests.post(host.url("/admin/functions/nothing"), json={}, timeout=TIMEOUT).status_code
        == 404
    )
    wait_until(
        lambda: "Invoked through the admin API" in host.log(), timeout=30, what="the manual run"
    )
    wait_until(lambda: len(host.records("ticks.jsonl")) > before, timeout=30, what="another tick")


INVALID_APPS = {
    "binding name with underscore": (
        """
        @app.route(route="x", trigger_arg_name="my_req")
        def x(my_req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("x")
        """,
        "the binding name 'my_req' is invalid",
    ),
    "function named host": (
        """
        @app.function_name("host")
        @app.route(route="x")
        def x(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("x")
        """,
        "'host' is not a valid function name",
    ),
    "parameter that is not a binding": (
        """
        @app.route(route="x")
        def x(req: func.HttpRequest, extra: str) -> func.HttpResponse:
            return func.HttpResponse("x")
        """,
        "Python parameters ['extra'] are not bindings",
    ),
    "two functions on one route": (
        """
        @app.route(route="same/{id}", methods=["GET"])
        def first(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("1")

        @app.route(route="same/{other}")
        def second(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("2")
        """,
        "both serve route 'api/same/{other}'",
    ),
    "unresolved schedule setting": (
        """
        @app.timer_trigger(arg_name="timer", schedule="%NOT_SET_ANYWHERE%")
        def t(timer: func.TimerRequest) -> None:
            pass
        """,
        "'%NOT_SET_ANYWHERE%' does not resolve to a value",
    ),
}


@pytest.mark.parametrize("case", list(INVALID_APPS))
def test_the_host_refuses_what_azure_refuses(case: str, tmp_path: Path) -> None:
    source, message = INVALID_APPS[case]
    header = "import azure.functions as func\n\napp = func.FunctionApp()\n"
    (tmp_path / "function_app.py").write_text(header + textwrap.dedent(source))
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "devenv.host",
            "--app-dir",
            str(tmp_path),
            "--port",
            str(free_port()),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode != 0
    assert "The host cannot start" in finished.stdout
    assert message in finished.stdout


def test_no_local_settings_and_an_empty_route_prefix(tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "host.json").write_text(
        json.dumps({"version": "2.0", "extensions": {"http": {"routePrefix": ""}}})
    )
    (app_dir / "function_app.py").write_text(
        textwrap.dedent(
            """
            import azure.functions as func

            app = func.FunctionApp()

            @app.route(route="hello/{name}")
            def hello(req: func.HttpRequest) -> str:
                return "hello " + req.route_params["name"]
            """
        )
    )
    port = free_port()
    process = start_functions_host(app_dir, port, log_path=tmp_path / "host.log")
    try:
        answer = requests.get(f"http://127.0.0.1:{port}/hello/world", timeout=TIMEOUT)
        assert answer.status_code == 200
        assert answer.text == "hello world"
        assert answer.headers["Content-Type"].startswith("text/plain")
        assert (
            requests.get(f"http://127.0.0.1:{port}/api/hello/world", timeout=TIMEOUT).status_code
            == 404
        )
        assert "No local.settings.json" in (tmp_path / "host.log").read_text()
    finally:
        process.stop()
    assert process.exit_code() == 0  # SIGTERM is a clean stop
