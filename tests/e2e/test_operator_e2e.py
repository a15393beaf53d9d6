"""Operators steer rollouts through the real stack: `POST /api/rollouts/{id}/{action}` over
HTTP on the local Functions host, and the `georollout` command as a subprocess.

The module runs on the steered environment (tests/e2e/conftest.py, shared with
test_progressive_e2e.py): its target rules gate repositories under ops/gated-* behind an
approval (`GEOROLLOUT_TARGETS`), which the session's main environment does not configure.
Everything is read back through the contract's routes, the ARM emulator's endpoints and
its audit, never through internals.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devenv.stack import Stack
from shared.domain.model import rollout_id
from tests.e2e.conftest import STEERED_REGIONS, Pushed
from tests.e2e.local_api import ArmAudit, FunctionApp, http_request, parse_time, poll

pytestmark = pytest.mark.e2e

REGIONS = STEERED_REGIONS
PRIMARY = REGIONS[0]
SECONDARIES = REGIONS[1:]
# Repositories under ops/gated-* wait for an approval before the secondaries deploy;
# the ops/* ones used here match no other special rule and roll out on their own
# (the steered environment's rules: tests/e2e/conftest.py, STEERED_TARGETS).
LIVE_TIMEOUT_S = 90.0
SCRIPT = Path(sys.executable).with_name("georollout")
ESCAPES = re.compile(r"\x1b|\r")
PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL-NAME"

Doc = dict[str, Any]
PushFn = Callable[[str, str], Pushed]
LogTail = Callable[[], str]


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


# --- the steered environment (shared with test_progressive_e2e.py) ------------------------


@pytest.fixture(scope="module")
def ops_stack(steered_stack: Stack) -> Stack:
    return steered_stack


@pytest.fixture(scope="module")
def api(steered_app: FunctionApp) -> FunctionApp:
    return steered_app


@pytest.fixture(scope="module")
def audit(steered_audit: ArmAudit) -> ArmAudit:
    return steered_audit


@pytest.fixture(scope="module")
def log_tail(steered_log_tail: LogTail) -> LogTail:
    return steered_log_tail


@pytest.fixture(scope="module")
def push(steered_push: PushFn) -> PushFn:
    return steered_push


@pytest.fixture(scope="module")
def georollout(ops_stack: Stack) -> Callable[..., Run]:
    """The installed console script against this module's host, output piped (plain)."""
    assert SCRIPT.exists(), f"{SCRIPT} is missing: install the project with `pip install -e .`"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOROLLOUT_")}
    env["GEOROLLOUT_URL"] = ops_stack.env.host_url

    def run(*args: str, timeout: float = 120) -> Run:
        done = subprocess.run(
            [str(SCRIPT), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        result = Run(done.returncode, done.stdout, done.stderr)
        assert not ESCAPES.search(result.stdout + result.stderr), result
        return result

    return run


# --- helpers ------------------------------------------------------------------------------


def action_path(rid: str, action: str) -> str:
    return f"/api/rollouts/{urllib.parse.quote(rid)}/{action}"


def act(
    api: FunctionApp,
    rid: str,
    action: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """POST one action; no body at all when `body` is None."""
    if body is None:
        return api.post_bytes(action_path(rid, action), b"", headers)
    return api.post_json(action_path(rid, action), body, headers)


def region_of(doc: Doc, name: str) -> Doc:
    [region] = [r for r in doc["regions"] if r["region"] == name]
    found: Doc = region
    return found


def states(doc: Doc) -> dict[str, str]:
    return {r["region"]: r["state"] for r in doc["regions"]}


def recorded_id(api: FunctionApp, pushed: Pushed, log_tail: LogTail) -> str:
    doc = poll(
        lambda: api.rollout_of(pushed.repository, pushed.digest),
        lambda d: d is not None,
        timeout=30,
        what=f"{pushed.repository}:{pushed.tag} recorded",
        on_timeout=log_tail,
    )
    assert doc is not None
    rid: str = doc["id"]
    return rid


def wait_for(
    api: FunctionApp,
    rid: str,
    done: Callable[[Doc], bool],
    *,
    what: str,
    log_tail: LogTail,
    timeout: float = LIVE_TIMEOUT_S,
) -> Doc:
    return poll(
        lambda: api.rollout(rid),
        done,
        timeout=timeout,
        what=f"{rid} {what}",
        on_timeout=log_tail,
        interval=0.5,
    )


def is_live(doc: Doc) -> bool:
    return doc["state"] == "live" and all(s == "live" for s in states(doc).values())


def awaits_approval(doc: Doc) -> bool:
    shown = states(doc)
    return (
        doc["state"] == "awaiting_approval"
        and shown[PRIMARY] == "live"
        and all(shown[r] == "awaiting_approval" for r in SECONDARIES)
    )


def gated_and_waiting(api: FunctionApp, push: PushFn, repository: str, log_tail: LogTail) -> Doc:
    """Push to a gated repository; the rollout once the primary is live and every
    secondary waits for the approval."""
    pushed = push(repository, "v1")
    rid = recorded_id(api, pushed, log_tail)
    doc = wait_for(api, rid, awaits_approval, what="awaiting approval", log_tail=log_tail)
    assert doc["approval"] == "before_secondaries", doc
    [gate] = doc["approvals"]
    assert gate["wave"] == 1 and gate["opened_at"] and gate["approved_at"] is None, gate
    return doc


def error_of(status: int, body: Any, expected_status: int, code: str) -> Doc:
    assert status == expected_status, (status, body)
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    error: Doc = body["error"]
    assert error["code"] == code, body
    assert isinstance(error.get("message"), str) and error["message"], body
    return error


def entry_fields(entry: Doc) -> Doc:
    keys = ("action", "actor", "actor_verified", "reason", "regions", "outcome", "message")
    return {k: entry[k] for k in keys}


def arm_get(stack: Stack, path: str) -> tuple[int, Any]:
    return http_request(
        f"{stack.env.arm_url}{path}?api-version=2024-04-01",
        headers={"Authorization": "Bearer e2e"},
        context=stack.tls.client_context(),
    )


def endpoint_traffic(stack: Stack, deployment: Doc) -> dict[str, int]:
    """The traffic split of the endpoint `deployment` (a document's region deployment) is on."""
    status, body = arm_get(
        stack, f"{deployment['workspace']}/onlineEndpoints/{deployment['endpoint']}"
    )
    assert status == 200, (status, body)
    traffic: dict[str, int] = body["properties"]["traffic"]
    return traffic


def deployment_names(stack: Stack, deployment: Doc) -> set[str]:
    status, body = arm_get(
        stack, f"{deployment['workspace']}/onlineEndpoints/{deployment['endpoint']}/deployments"
    )
    assert status == 200, (status, body)
    return {d["name"] for d in body["value"]}


def wait_deleted(stack: Stack, deployment: Doc, log_tail: LogTail) -> set[str]:
    """The endpoint's deployments once `deployment` is gone from it."""
    return poll(
        lambda: deployment_names(stack, deployment),
        lambda found: deployment["name"] not in found,
        timeout=60,
        what=f"{deployment['name']} deleted from {deployment['endpoint']}",
        on_timeout=log_tail,
        interval=0.5,
    )


# --- 1. the route and its errors, over HTTP -----------------------------------------------


def test_hold_and_resume_over_http_record_who_and_why_and_bad_requests_write_nothing(
    api: FunctionApp, push: PushFn, ops_stack: Stack, log_tail: LogTail
) -> None:
    doc = gated_and_waiting(api, push, "ops/gated-http", log_tail)
    rid: str = doc["id"]
    secondary, other = SECONDARIES

    # Requests the route refuses (400/404) write nothing at all.
    before = api.rollout(rid)
    error = error_of(*act(api, rid, "frobnicate", {"reason": "x"}), 400, "unknown_action")
    assert error["field"] == "action", error
    error = error_of(*act(api, rid, "hold", {"regions": ["mars"]}), 400, "unknown_region")
    assert error["field"] == "regions" and "mars" in error["message"], error
    error_of(*api.post_bytes(action_path(rid, "hold"), b"{not json"), 400, "invalid_json")
    error = error_of(*act(api, rid, "hold", {"because": "x"}), 400, "unknown_field")
    assert error["field"] == "because", error
    ghost = rollout_id(
        ops_stack.env.primary.registry_host, "ops/ghost", "sha256:" + uuid.uuid4().hex * 2
    )
    error_of(*act(api, ghost, "hold", {"reason": "x"}), 404, "not_found")
    error_of(*act(api, "not-a-rollout-id", "resume"), 404, "not_found")
    after = api.rollout(rid)
    assert after["updated_at"] == before["updated_at"], (before["updated_at"], after["updated_at"])
    assert len(after["history"]) == len(before["history"]) == 0, after["history"]
    assert states(after) == states(before)

    # hold one secondary; the principal header is not trusted without App Service auth.
    status, held = act(
        api,
        rid,
        "hold",
        {"reason": "check the canary first", "regions": [secondary], "actor": "alice"},
        headers={PRINCIPAL_HEADER: "mallory"},
    )
    assert status == 200, held
    assert held["id"] == rid
    assert held["state"] == "held", held["state"]
    region = region_of(held, secondary)
    assert (region["state"], region["held"], region["held_in"]) == (
        "held",
        True,
        "awaiting_approval",
    ), region
    assert region_of(held, other)["state"] == "awaiting_approval"
    assert entry_fields(held["history"][-1]) == {
        "action": "hold",
        "actor": "alice",
        "actor_verified": False,
        "reason": "check the canary first",
        "regions": [secondary],
        "outcome": "accepted",
        "message": None,
    }, held["history"]
    stored = api.rollout(rid)
    assert region_of(stored, secondary)["state"] == "held"
    assert stored["history"] == held["history"]

    # resume (no body): every held region; the actor is "unknown", the header proves nothing.
    status, resumed = act(api, rid, "resume", headers={PRINCIPAL_HEADER: "mallory"})
    assert status == 200, resumed
    region = region_of(resumed, secondary)
    assert (region["state"], region["held"]) == ("awaiting_approval", False), region
    assert resumed["state"] == "awaiting_approval"
    assert entry_fields(resumed["history"][-1]) == {
        "action": "resume",
        "actor": "unknown",
        "actor_verified": False,
        "reason": None,
        "regions": [secondary],
        "outcome": "accepted",
        "message": None,
    }, resumed["history"]

    # resume again: nothing is held, 409, and the refusal is in the history all the same.
    status, body = act(
        api, rid, "resume", {"actor": "alice"}, headers={PRINCIPAL_HEADER: "mallory"}
    )
    refusal = error_of(status, body, 409, "invalid_transition")
    refused = api.rollout(rid)
    assert len(refused["history"]) == 3, refused["history"]
    last = refused["history"][-1]
    assert entry_fields(last) == {
        "action": "resume",
        "actor": "alice",
        "actor_verified": False,
        "reason": None,
        "regions": [],
        "outcome": "refused",
        "message": refusal["message"],
    }, refused["history"]
    assert [e["outcome"] for e in refused["history"]] == ["accepted", "accepted", "refused"]
    assert len({e["request_id"] for e in refused["history"]}) == 3
    assert states(refused) == states(resumed)


def test_actions_that_do_not_fit_a_live_first_rollout_are_refused_and_recorded(
    api: FunctionApp, push: PushFn, log_tail: LogTail
) -> None:
    pushed = push("ops/first", "v1")
    rid = recorded_id(api, pushed, log_tail)
    live = wait_for(api, rid, is_live, what="live everywhere", log_tail=log_tail)
    assert live["approval"] == "none" and live["approvals"] == [], live

    approve = error_of(*act(api, rid, "approve", {"reason": "ship it"}), 409, "invalid_transition")
    assert "no approval gate" in approve["message"], approve
    retry = error_of(*act(api, rid, "retry"), 409, "invalid_transition")
    assert "nothing to retry" in retry["message"], retry
    rollback = error_of(
        *act(api, rid, "rollback", {"reason": "bad", "actor": "carol"}), 409, "invalid_transition"
    )
    assert "nothing served" in rollback["message"], rollback
    for region in REGIONS:
        assert region in rollback["message"], rollback

    after = api.rollout(rid)
    assert after["state"] == "live" and after["rolled_back_at"] is None, after
    assert [(e["action"], e["outcome"], e["message"]) for e in after["history"]] == [
        ("approve", "refused", approve["message"]),
        ("retry", "refused", retry["message"]),
        ("rollback", "refused", rollback["message"]),
    ]
    assert after["history"][-1]["actor"] == "carol"
    assert all(r["state"] == "live" and r["held"] is False for r in after["regions"])


# --- 2. an approval gate, approved with the command ---------------------------------------


def test_approval_gate_keeps_secondaries_back_until_approved_with_the_command(
    api: FunctionApp,
    push: PushFn,
    audit: ArmAudit,
    georollout: Callable[..., Run],
    log_tail: LogTail,
) -> None:
    doc = gated_and_waiting(api, push, "ops/gated-approve", log_tail)
    rid: str = doc["id"]
    digest: str = doc["digest"]
    created = {
        r["region"] for r in audit.records(digest=digest) if r["action"] == "deployment_create"
    }
    assert created == {PRIMARY}, f"deployments before the approval: {created}"
    assert all(region_of(doc, r)["deployment"] is None for r in SECONDARIES), doc["regions"]

    approved = georollout("approve", rid, "--reason", "ok", "--actor", "dana")
    assert approved.code == 0, approved
    assert approved.stdout.splitlines()[0] == f"approve accepted for {rid}", approved.stdout

    live = wait_for(api, rid, is_live, what="live after the approval", log_tail=log_tail)
    [gate] = live["approvals"]
    assert gate["approved_at"] and gate["approved_by"] == "dana", gate
    approvals = [e for e in live["history"] if e["action"] == "approve"]
    assert [entry_fields(e) for e in approvals] == [
        {
            "action": "approve",
            "actor": "dana",
            "actor_verified": False,
            "reason": "ok",
            "regions": list(SECONDARIES),
            "outcome": "accepted",
            "message": None,
        }
    ]
    approved_at = parse_time(gate["approved_at"])
    creates = [r for r in audit.records(digest=digest) if r["action"] == "deployment_create"]
    assert {r["region"] for r in creates} == set(REGIONS), creates
    for record in creates:
        if record["region"] != PRIMARY:
            assert parse_time(record["timestamp"]) >= approved_at - 0.001, (record, gate)


# --- 3. hold, resume and rollback with the command ----------------------------------------


def test_hold_and_resume_with_the_command(
    api: FunctionApp, push: PushFn, georollout: Callable[..., Run], log_tail: LogTail
) -> None:
    doc = gated_and_waiting(api, push, "ops/gated-hold", log_tail)
    rid: str = doc["id"]
    secondary = SECONDARIES[0]

    held = georollout("hold", rid, "--region", secondary, "--reason", "x", "--actor", "erin")
    assert held.code == 0, held
    assert f"hold accepted for {rid}" in held.stdout, held.stdout
    shown = api.rollout(rid)
    assert region_of(shown, secondary)["state"] == "held", shown["regions"]
    assert entry_fields(shown["history"][-1]) == {
        "action": "hold",
        "actor": "erin",
        "actor_verified": False,
        "reason": "x",
        "regions": [secondary],
        "outcome": "accepted",
        "message": None,
    }

    resumed = georollout("resume", rid)
    assert resumed.code == 0, resumed
    assert f"resume accepted for {rid}" in resumed.stdout, resumed.stdout
    assert region_of(api.rollout(rid), secondary)["state"] == "awaiting_approval"

    again = georollout("resume", rid)
    assert again.code == 1, again
    assert again.stdout == "", again
    assert again.stderr.startswith("refused: "), again.stderr
    assert "nothing to resume" in again.stderr, again.stderr
    last = api.rollout(rid)["history"][-1]
    assert (last["action"], last["outcome"]) == ("resume", "refused"), last


def test_rollback_with_the_command_returns_traffic_to_the_previous_deployment(
    api: FunctionApp,
    push: PushFn,
    ops_stack: Stack,
    georollout: Callable[..., Run],
    log_tail: LogTail,
) -> None:
    v1 = push("ops/rollback", "v1")
    v1_id = recorded_id(api, v1, log_tail)
    v1_live = wait_for(api, v1_id, is_live, what="v1 live", log_tail=log_tail)
    v2 = push("ops/rollback", "v2")
    v2_id = recorded_id(api, v2, log_tail)
    v2_live = wait_for(api, v2_id, is_live, what="v2 live", log_tail=log_tail)

    v1_deployments = {r["region"]: r["deployment"] for r in v1_live["regions"]}
    v2_deployments = {r["region"]: r["deployment"] for r in v2_live["regions"]}
    for region in REGIONS:
        assert v1_deployments[region]["endpoint"] == v2_deployments[region]["endpoint"]
        assert v1_deployments[region]["name"] != v2_deployments[region]["name"]
        traffic = endpoint_traffic(ops_stack, v2_deployments[region])
        assert traffic == {v2_deployments[region]["name"]: 100}, (region, traffic)
    assert api.rollout(v1_id)["state"] == "superseded"

    rolled = georollout("rollback", v2_id, "--reason", "bad model", "--actor", "frank")
    assert rolled.code == 0, rolled
    assert f"rollback accepted for {v2_id}" in rolled.stdout, rolled.stdout

    def back_everywhere(doc: Doc) -> bool:
        return doc["state"] == "rolled_back" and all(
            s == "rolled_back" for s in states(doc).values()
        )

    done = wait_for(api, v2_id, back_everywhere, what="rolled back", log_tail=log_tail)
    assert done["rolled_back_at"], done
    assert entry_fields(done["history"][-1]) == {
        "action": "rollback",
        "actor": "frank",
        "actor_verified": False,
        "reason": "bad model",
        "regions": list(REGIONS),
        "outcome": "accepted",
        "message": None,
    }
    for region in REGIONS:
        previous, ours = v1_deployments[region], v2_deployments[region]
        assert endpoint_traffic(ops_stack, ours) == {previous["name"]: 100}, region
        # Our deployment is discarded once traffic left it; the previous one stays.
        names = wait_deleted(ops_stack, ours, log_tail)
        assert previous["name"] in names, (region, names)
