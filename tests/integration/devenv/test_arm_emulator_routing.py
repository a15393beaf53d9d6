"""The ARM emulator's traffic routing and per-deployment fault knobs, over real HTTPS.

Endpoints, deployments and traffic go through the real azure-ai-ml SDK; scoring calls and
knobs go through httpx, verifying the emulator's certificate against the local CA.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

import httpx
import pytest
from azure.ai.ml import MLClient
from azure.core.exceptions import HttpResponseError

from devenv.config import LocalEnv
from devenv.tls import TlsFiles
from tests.integration.devenv.conftest import Emulator
from tests.integration.devenv.test_arm_emulator import (
    create_endpoint,
    image_ref,
    make_deployment,
    set_traffic,
)

pytestmark = pytest.mark.integration

WORKSPACE = "ws-eastus"  # eastus's replica has the image (see the `digest` fixture)
BEARER = {"Authorization": "Bearer local-test-token"}
DEPLOYMENT_HEADER = "azureml-model-deployment"


@dataclass(frozen=True)
class Split:
    """One endpoint with two Succeeded deployments, `new` and `old`, to split traffic between."""

    emulator: Emulator
    client: MLClient
    endpoint: str
    key: str
    scoring_uri: str


@pytest.fixture(scope="module")
def http(tls_files: TlsFiles) -> Iterator[httpx.Client]:
    with httpx.Client(verify=tls_files.client_context(), timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def split(emulator: Emulator, arm_env: LocalEnv, digest: str) -> Split:
    client = emulator.ml_client("eastus")
    create_endpoint(emulator, client, "ep-split")
    for name in ("old", "new"):
        created = client.online_deployments.begin_create_or_update(
            make_deployment("ep-split", name, image_ref(arm_env, digest))
        ).result()
        assert created.provisioning_state == "Succeeded"
    found = client.online_endpoints.get("ep-split")
    return Split(
        emulator=emulator,
        client=client,
        endpoint="ep-split",
        key=client.online_endpoints.get_keys("ep-split").primary_key,
        scoring_uri=found.scoring_uri,
    )


def start_rotation(split: Split, traffic: dict[str, int]) -> None:
    """Set `traffic` so that it is a change, which starts the round-robin over."""
    current = split.client.online_endpoints.get(split.endpoint).traffic
    if {name: weight for name, weight in current.items() if weight} == traffic:
        detour = {"old": 100} if traffic != {"old": 100} else {"new": 100}
        set_traffic(split.emulator, split.client, split.endpoint, detour)
    set_traffic(split.emulator, split.client, split.endpoint, traffic)


def call(
    http: httpx.Client, scoring_uri: str, key: str, deployment: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if deployment:
        headers[DEPLOYMENT_HEADER] = deployment
    return http.post(scoring_uri, json={"ping": 1}, headers=headers)


def served_by(http: httpx.Client, split: Split, calls: int) -> list[str]:
    """Score `calls` times by weight; every call must succeed. The deployments, in order."""
    names = []
    for _ in range(calls):
        answer = call(http, split.scoring_uri, split.key)
        assert answer.status_code == 200, answer.text
        assert answer.headers[DEPLOYMENT_HEADER] == answer.json()["deployment"]
        names.append(answer.json()["deployment"])
    return names


def knob(
    http: httpx.Client,
    emulator: Emulator,
    path: str,
    body: Any = None,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST `/emulator/deployments/{path}` with a JSON `body` (or raw `content`)."""
    url = f"{emulator.env.arm_url}/emulator/deployments/{path}"
    sent = BEARER if headers is None else headers
    if content is not None:
        return http.post(url, content=content, headers=sent)
    return http.post(url, json=body, headers=sent)


def state_of(client: MLClient, endpoint: str, deployment: str) -> str:
    """The deployment's provisioningState as `ml_client.online_deployments.get` reports it."""
    state = client.online_deployments.get(deployment, endpoint_name=endpoint).provisioning_state
    # azure-ai-ml may answer an enum (str-valued): keep its value, not its repr.
    return str(state.value if isinstance(state, Enum) else state)


# -- routing by the traffic split --------------------------------------------------


def test_a_10_90_split_sends_exactly_one_call_in_ten_to_new(
    split: Split, http: httpx.Client, digest: str
) -> None:
    start_rotation(split, {"new": 10, "old": 90})

    first = served_by(http, split, 10)
    assert first.count("new") == 1 and first.count("old") == 9, first
    more = served_by(http, split, 50)
    assert more.count("new") == 5, more
    # Not just in total: every 10 consecutive calls hold exactly one.
    calls = first + more
    assert all(calls[i : i + 10].count("new") == 1 for i in range(len(calls) - 9)), calls

    answer = call(http, split.scoring_uri, split.key)
    assert answer.status_code == 200
    body = answer.json()
    assert body["deployment"] == answer.headers[DEPLOYMENT_HEADER]
    assert body["digest"] == digest
    assert body["image"].endswith(f"@{digest}")
    assert (body["endpoint"], body["workspace"], body["region"]) == (
        "ep-split",
        WORKSPACE,
        "eastus",
    )


def test_a_50_50_split_alternates_starting_with_the_name_that_sorts_first(
    split: Split, http: httpx.Client
) -> None:
    start_rotation(split, {"new": 50, "old": 50})
    assert served_by(http, split, 8) == ["new", "old"] * 4


def test_changing_the_traffic_starts_the_rotation_over(split: Split, http: httpx.Client) -> None:
    start_rotation(split, {"new": 50, "old": 50})
    assert served_by(http, split, 1) == ["new"]  # the rotation would go to `old` next ...
    set_traffic(split.emulator, split.client, split.endpoint, {"new": 10, "old": 90})
    set_traffic(split.emulator, split.client, split.endpoint, {"new": 50, "old": 50})
    # ... but the map changed twice (back to the same weights), so it starts over.
    assert served_by(http, split, 3) == ["new", "old", "new"]
    records = [r for r in split.emulator.audit() if r.get("endpoint") == "ep-split"]
    assert [r["traffic"] for r in records if r["action"] == "traffic_changed"][-2:] == [
        {"new": 10, "old": 90},
        {"new": 50, "old": 50},
    ]


def test_the_header_picks_a_deployment_without_moving_the_rotation(
    split: Split, http: httpx.Client
) -> None:
    start_rotation(split, {"new": 50, "old": 50})
    assert served_by(http, split, 1) == ["new"]
    for wanted in ("old", "OLD", "new", "new"):
        answer = call(http, split.scoring_uri, split.key, wanted)
        assert answer.status_code == 200, answer.text
        assert answer.json()["deployment"] == wanted.lower()
        assert answer.headers[DEPLOYMENT_HEADER] == wanted.lower()
    # The header calls took no turn: by weight, it is `old`'s turn still.
    assert served_by(http, split, 2) == ["old", "new"]
    # A deployment without traffic is still reachable by header.
    start_rotation(split, {"old": 100})
    assert call(http, split.scoring_uri, split.key, "new").json()["deployment"] == "new"
    assert set(served_by(http, split, 4)) == {"old"}


# -- the scoring fault knob --------------------------------------------------------


def test_a_scoring_fault_fails_one_deployment_by_header_and_by_weight_until_cleared(
    split: Split, http: httpx.Client
) -> None:
    start_rotation(split, {"new": 50, "old": 50})
    audit_before = len(split.emulator.audit())

    set_answer = knob(
        http,
        split.emulator,
        f"{WORKSPACE}/ep-split/new/scoring",
        {"status": 503, "message": "model server overloaded"},
    )
    assert set_answer.status_code == 200, set_answer.text
    assert set_answer.json() == {
        "deployment": "new",
        "scoringFault": {"status": 503, "message": "model server overloaded"},
    }

    by_header = call(http, split.scoring_uri, split.key, "new")
    assert by_header.status_code == 503
    assert by_header.json() == {"error": {"code": "503", "message": "model server overloaded"}}
    assert by_header.headers[DEPLOYMENT_HEADER] == "new"
    assert call(http, split.scoring_uri, split.key, "old").status_code == 200

    # By weight the faulty deployment keeps its turns: every other call fails, and says who failed.
    by_weight = [call(http, split.scoring_uri, split.key) for _ in range(10)]
    assert [(a.status_code, a.headers[DEPLOYMENT_HEADER]) for a in by_weight] == [
        (503, "new"),
        (200, "old"),
    ] * 5
    # A scoring fault is not a provisioning state: ARM still reports the deployment healthy.
    assert state_of(split.client, "ep-split", "new") == "Succeeded"

    cleared = knob(http, split.emulator, f"{WORKSPACE}/ep-split/new/scoring", {"status": None})
    assert cleared.status_code == 200
    assert cleared.json() == {"deployment": "new", "scoringFault": None}
    assert call(http, split.scoring_uri, split.key, "new").status_code == 200
    assert sorted(served_by(http, split, 4)) == ["new", "new", "old", "old"]

    records = split.emulator.audit()[audit_before:]
    assert [
        (r["action"], r["workspace"], r["endpoint"], r["deployment"], r["status"]) for r in records
    ] == [
        ("scoring_fault_set", WORKSPACE, "ep-split", "new", 503),
        ("scoring_fault_set", WORKSPACE, "ep-split", "new", None),
    ]


def test_a_scoring_fault_without_a_message_names_the_deployment(
    split: Split, http: httpx.Client
) -> None:
    path = f"{WORKSPACE}/ep-split/old/scoring"
    assert knob(http, split.emulator, path, {"status": 500}).status_code == 200
    try:
        answer = call(http, split.scoring_uri, split.key, "old")
        assert answer.status_code == 500
        assert answer.json()["error"]["code"] == "500"
        assert "'old'" in answer.json()["error"]["message"]
    finally:
        assert knob(http, split.emulator, path, {"status": None}).status_code == 200
    assert call(http, split.scoring_uri, split.key, "old").status_code == 200


def test_a_deployment_deleted_and_created_again_starts_without_its_scoring_fault(
    split: Split, http: httpx.Client, arm_env: LocalEnv, digest: str
) -> None:
    client = split.client
    spare = make_deployment("ep-split", "spare", image_ref(arm_env, digest))
    client.online_deployments.begin_create_or_update(spare).result()
    path = f"{WORKSPACE}/ep-split/spare/scoring"
    assert knob(http, split.emulator, path, {"status": 502}).status_code == 200
    assert call(http, split.scoring_uri, split.key, "spare").status_code == 502

    client.online_deployments.begin_delete(name="spare", endpoint_name="ep-split").result()
    assert knob(http, split.emulator, path, {"status": 502}).status_code == 404
    client.online_deployments.begin_create_or_update(spare).result()
    assert call(http, split.scoring_uri, split.key, "spare").status_code == 200
    client.online_deployments.begin_delete(name="spare", endpoint_name="ep-split").result()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[500]",
        b"{}",
        b'{"status": 399}',
        b'{"status": 600}',
        b'{"status": "500"}',
        b'{"status": 500.0}',
        b'{"status": true}',
        b'{"status": 500, "message": 5}',
        b'{"status": 500, "message": " "}',
        b'{"status": 500, "code": "Boom"}',
        b'{"status": null, "message": "which status?"}',
    ],
)
def test_a_bad_scoring_knob_body_is_refused_and_changes_nothing(
    split: Split, http: httpx.Client, content: bytes
) -> None:
    audit_before = split.emulator.audit()
    answer = knob(http, split.emulator, f"{WORKSPACE}/ep-split/new/scoring", content=content)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "BadArgument"
    assert "status" in answer.json()["error"]["message"]
    assert split.emulator.audit() == audit_before
    assert call(http, split.scoring_uri, split.key, "new").status_code == 200


@pytest.mark.parametrize("action", ["scoring", "fail"])
@pytest.mark.parametrize(
    "target",
    [f"{WORKSPACE}/ep-split/ghost", f"{WORKSPACE}/ep-ghost/new", "ws-nowhere/ep-split/new"],
)
def test_a_knob_on_an_unknown_target_answers_404(
    split: Split, http: httpx.Client, action: str, target: str
) -> None:
    audit_before = split.emulator.audit()
    answer = knob(http, split.emulator, f"{target}/{action}", {"status": 500})
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["code"] == "ResourceNotFound"
    assert split.emulator.audit() == audit_before


@pytest.mark.parametrize("action", ["scoring", "fail"])
@pytest.mark.parametrize("headers", [{}, {"Authorization": f"Basic {'x' * 8}"}])
def test_a_knob_without_a_bearer_token_answers_401_and_changes_nothing(
    split: Split, http: httpx.Client, action: str, headers: dict[str, str]
) -> None:
    audit_before = split.emulator.audit()
    answer = knob(
        http,
        split.emulator,
        f"{WORKSPACE}/ep-split/new/{action}",
        {"status": 500},
        headers=headers,
    )
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "AuthenticationFailed"
    assert split.emulator.audit() == audit_before
    assert call(http, split.scoring_uri, split.key, "new").status_code == 200
    assert state_of(split.client, "ep-split", "new") == "Succeeded"


# -- the fail knob -----------------------------------------------------------------


def test_a_failed_deployment_reads_failed_through_the_sdk_and_stops_serving(
    emulator: Emulator, http: httpx.Client, arm_env: LocalEnv, digest: str
) -> None:
    client = emulator.ml_client("eastus")
    create_endpoint(emulator, client, "ep-unhealthy")
    image = image_ref(arm_env, digest)
    for name in ("blue", "green"):
        client.online_deployments.begin_create_or_update(
            make_deployment("ep-unhealthy", name, image)
        ).result()
    set_traffic(emulator, client, "ep-unhealthy", {"blue": 10, "green": 90})
    found = client.online_endpoints.get("ep-unhealthy")
    key = client.online_endpoints.get_keys("ep-unhealthy").primary_key
    audit_before = len(emulator.audit())

    failed = knob(http, emulator, f"{WORKSPACE}/ep-unhealthy/blue/fail")
    assert failed.status_code == 200, failed.text
    assert failed.json() == {"provisioningState": "Failed"}
    assert state_of(client, "ep-unhealthy", "blue") == "Failed"
    assert state_of(client, "ep-unhealthy", "green") == "Succeeded"
    assert call(http, found.scoring_uri, key, "blue").status_code == 424
    # By weight the failed deployment is skipped: its 10% goes nowhere, green serves everything.
    by_weight = [call(http, found.scoring_uri, key) for _ in range(20)]
    assert {(a.status_code, a.json()["deployment"]) for a in by_weight} == {(200, "green")}
    # Traffic can be taken from it, not given to it.
    endpoint = client.online_endpoints.get("ep-unhealthy")
    endpoint.traffic = {"blue": 50, "green": 50}
    with pytest.raises(HttpResponseError) as refused:
        client.online_endpoints.begin_create_or_update(endpoint).result()
    assert refused.value.status_code == 400

    assert knob(http, emulator, f"{WORKSPACE}/ep-unhealthy/green/fail").status_code == 200
    assert state_of(client, "ep-unhealthy", "green") == "Failed"
    nothing_live = call(http, found.scoring_uri, key)
    assert nothing_live.status_code == 404
    assert "positive weight" in nothing_live.json()["error"]["message"]

    records = emulator.audit()[audit_before:]
    assert [
        (r["action"], r["workspace"], r["endpoint"], r["deployment"], r["previous_state"])
        for r in records
    ] == [
        ("deployment_unhealthy", WORKSPACE, "ep-unhealthy", "blue", "Succeeded"),
        ("deployment_unhealthy", WORKSPACE, "ep-unhealthy", "green", "Succeeded"),
    ]
    assert records[0]["digest"] == digest
    assert "DeploymentUnhealthy" in client.online_deployments.get_logs(
        "blue", "ep-unhealthy", lines=5
    )

    # A PUT of the deployment provisions it again; while that runs the knob is refused.
    poller = client.online_deployments.begin_create_or_update(
        make_deployment("ep-unhealthy", "green", image)
    )
    refused_while_updating = knob(http, emulator, f"{WORKSPACE}/ep-unhealthy/green/fail")
    assert refused_while_updating.status_code == 409
    assert refused_while_updating.json()["error"]["code"] == "Conflict"
    assert poller.result().provisioning_state == "Succeeded"
    assert {call(http, found.scoring_uri, key).json()["deployment"] for _ in range(10)} == {"green"}
    assert [r["action"] for r in emulator.audit()[audit_before:]].count("deployment_unhealthy") == 2
