"""The ARM emulator driven by the real azure-ai-ml MLClient over HTTPS, against real local registries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from enum import Enum
from pathlib import Path

import pytest
import requests
from azure.ai.ml import MLClient
from azure.ai.ml.entities import Environment, ManagedOnlineDeployment, ManagedOnlineEndpoint
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from devenv.config import LocalEnv
from devenv.ports import free_port
from devenv.process import wait_until
from devenv.tls import TlsFiles

# The shared fixtures (arm_env, registries, emulator, digest) are in conftest.py.
from tests.integration.devenv.conftest import REPOSITORY, Emulator

pytestmark = pytest.mark.integration

# Long enough that an SDK deployment create sent right after the endpoint's operation
# returns surely lands inside the window, even on a busy 2-core machine.
LONG_SETTLE_S = 4.0


def beside(arm_env: LocalEnv, state_dir: Path) -> LocalEnv:
    """The same regions and registries, another port and state: a second emulator alongside."""
    return replace(arm_env, arm_port=free_port(), state_dir=state_dir)


@pytest.fixture(scope="module")
def settling_emulator(
    arm_env: LocalEnv,
    tls_files: TlsFiles,
    registries: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Emulator]:
    """Endpoints stay `Updating` for LONG_SETTLE_S after their operation succeeds."""
    running = Emulator(
        beside(arm_env, tmp_path_factory.mktemp("arm-settling")),
        tls_files,
        endpoint_settle_s=LONG_SETTLE_S,
    )
    yield running
    running.process.stop()


@pytest.fixture(scope="module")
def unsettled_emulator(
    arm_env: LocalEnv,
    tls_files: TlsFiles,
    registries: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Emulator]:
    """The knob at 0: an endpoint is `Succeeded` when its operation is."""
    running = Emulator(
        beside(arm_env, tmp_path_factory.mktemp("arm-no-settle")), tls_files, endpoint_settle_s=0
    )
    yield running
    running.process.stop()


def image_ref(env: LocalEnv, digest: str) -> str:
    # The primary's login server, whatever region deploys it: the emulator asks the region's own replica.
    return f"{env.primary.registry_host}/{REPOSITORY}@{digest}"


def make_deployment(endpoint: str, name: str, image: str) -> ManagedOnlineDeployment:
    return ManagedOnlineDeployment(
        name=name,
        endpoint_name=endpoint,
        environment=Environment(image=image),
        instance_type="Standard_DS3_v2",
        instance_count=1,
    )


def endpoint_states_until_settled(emulator: Emulator, client: MLClient, endpoint: str) -> list[str]:
    """Read the endpoint until it says Succeeded (with a deadline); return every state read."""
    seen: list[str] = []

    def settled() -> bool:
        state = client.online_endpoints.get(endpoint).provisioning_state
        # azure-ai-ml answers an enum (str-valued): keep its value, not its repr.
        seen.append(str(state.value if isinstance(state, Enum) else state))
        return seen[-1] == "Succeeded"

    wait_until(
        settled,
        timeout=emulator.endpoint_settle_s + 15,
        interval=0.1,
        what=f"endpoint {endpoint} to settle",
    )
    return seen


def create_endpoint(
    emulator: Emulator, client: MLClient, name: str, auth_mode: str = "key"
) -> ManagedOnlineEndpoint:
    """Create an endpoint and wait, as Azure needs, until it says Succeeded, not just its operation."""
    client.online_endpoints.begin_create_or_update(
        ManagedOnlineEndpoint(name=name, auth_mode=auth_mode)
    ).result()
    endpoint_states_until_settled(emulator, client, name)
    found: ManagedOnlineEndpoint = client.online_endpoints.get(name)
    return found


def set_traffic(
    emulator: Emulator, client: MLClient, endpoint: str, traffic: dict[str, int]
) -> None:
    found = client.online_endpoints.get(endpoint)
    found.traffic = traffic
    client.online_endpoints.begin_create_or_update(found).result()
    endpoint_states_until_settled(emulator, client, endpoint)


def score(
    emulator: Emulator, client: MLClient, endpoint: str, deployment: str | None, key: str
) -> requests.Response:
    scoring_uri = client.online_endpoints.get(endpoint).scoring_uri
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if deployment:
        headers["azureml-model-deployment"] = deployment
    return requests.post(
        scoring_uri,
        data=b'{"ping": 1}',
        headers=headers,
        verify=str(emulator.tls.ca_pem),
        timeout=10,
    )


def test_every_arm_request_needs_a_bearer_token(emulator: Emulator, arm_env: LocalEnv) -> None:
    path = f"{arm_env.primary.workspace_id}?api-version=2024-10-01-preview"
    response = emulator.arm("GET", path)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthenticationFailed"
    assert emulator.arm("GET", "/emulator/audit").status_code == 401
    authorized = emulator.arm("GET", path, headers={"Authorization": "Bearer whatever"})
    assert authorized.status_code == 200
    assert authorized.json()["location"] == "eastus"


def test_workspaces_answer_their_region_and_unknown_ones_404(
    emulator: Emulator, arm_env: LocalEnv
) -> None:
    bearer = {"Authorization": "Bearer t"}
    westus = emulator.arm(
        "GET", f"{arm_env.region('westus').workspace_id}?api-version=x", headers=bearer
    )
    assert westus.json()["location"] == "westus"
    unknown = arm_env.primary.workspace_id.replace("ws-eastus", "ws-nowhere")
    answer = emulator.arm("GET", f"{unknown}?api-version=x", headers=bearer)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError):
        emulator.ml_client("eastus").online_endpoints.get("does-not-exist")


def test_blue_green_in_a_region_whose_replica_has_the_image(
    emulator: Emulator, arm_env: LocalEnv, digest: str, tmp_path: Path
) -> None:
    client = emulator.ml_client("eastus")
    endpoint = create_endpoint(emulator, client, "ep-blue-green")
    assert endpoint.provisioning_state == "Succeeded"
    assert endpoint.scoring_uri == f"{arm_env.arm_url}/score/ws-eastus/ep-blue-green"

    image = image_ref(arm_env, digest)
    blue = client.online_deployments.begin_create_or_update(
        make_deployment("ep-blue-green", "blue", image)
    ).result()
    assert blue.provisioning_state == "Succeeded"

    set_traffic(emulator, client, "ep-blue-green", {"blue": 100})
    assert client.online_endpoints.get("ep-blue-green").traffic == {"blue": 100}

    key = client.online_endpoints.get_keys("ep-blue-green").primary_key
    for deployment in ("blue", None):  # by header, then by traffic weight
        answer = score(emulator, client, "ep-blue-green", deployment, key)
        assert answer.status_code == 200, answer.text
        assert answer.json()["deployment"] == "blue"
        assert answer.json()["digest"] == digest
        assert answer.json()["region"] == "eastus"
    assert score(emulator, client, "ep-blue-green", "blue", "wrong-key").status_code == 401
    request_file = tmp_path / "request.json"
    request_file.write_text('{"ping": 1}')
    invoked = client.online_endpoints.invoke(
        endpoint_name="ep-blue-green", deployment_name="blue", request_file=str(request_file)
    )
    assert json.loads(invoked)["digest"] == digest

    green = client.online_deployments.begin_create_or_update(
        make_deployment("ep-blue-green", "green", image)
    ).result()
    assert green.provisioning_state == "Succeeded"
    assert sorted(d.name for d in client.online_deployments.list("ep-blue-green")) == [
        "blue",
        "green",
    ]
    assert "ep-blue-green" in [e.name for e in client.online_endpoints.list()]
    assert "Pulled container image" in client.online_deployments.get_logs(
        "green", "ep-blue-green", lines=10
    )

    set_traffic(emulator, client, "ep-blue-green", {"blue": 0, "green": 100})
    assert score(emulator, client, "ep-blue-green", None, key).json()["deployment"] == "green"

    client.online_deployments.begin_delete(name="blue", endpoint_name="ep-blue-green").result()
    assert [d.name for d in client.online_deployments.list("ep-blue-green")] == ["green"]
    client.online_endpoints.begin_delete(name="ep-blue-green").result()
    with pytest.raises(ResourceNotFoundError):
        client.online_endpoints.get("ep-blue-green")

    records = [r for r in emulator.audit() if r.get("endpoint") == "ep-blue-green"]
    creates = [r for r in records if r["action"] == "deployment_create"]
    assert [(r["deployment"], r["image_present_at_create"], r["digest"]) for r in creates] == [
        ("blue", True, digest),
        ("green", True, digest),
    ]
    # The SDK strips zero weights before it sends the map.
    assert [r["traffic"] for r in records if r["action"] == "traffic_changed"] == [
        {"blue": 100},
        {"green": 100},
    ]
    assert {"deployment_deleted", "endpoint_deleted"} <= {r["action"] for r in records}


@pytest.mark.parametrize(
    ("region", "reason"), [("westus", "manifest unknown"), ("westeurope", "unreachable")]
)
def test_deployment_fails_with_image_pull_error_when_region_replica_lacks_image(
    emulator: Emulator, arm_env: LocalEnv, digest: str, region: str, reason: str
) -> None:
    client = emulator.ml_client(region)
    create_endpoint(emulator, client, "ep-early")
    image = image_ref(arm_env, digest)
    with pytest.raises(HttpResponseError) as raised:
        client.online_deployments.begin_create_or_update(
            make_deployment("ep-early", "early", image)
        ).result()
    assert raised.value.error is not None
    assert raised.value.error.code == "ImagePullFailed"
    message = str(raised.value.error.message)
    assert image in message
    assert "could not be pulled" in message
    assert reason in message
    assert client.online_deployments.get("early", "ep-early").provisioning_state == "Failed"

    key = client.online_endpoints.get_keys("ep-early").primary_key
    assert score(emulator, client, "ep-early", "early", key).status_code == 424
    endpoint = client.online_endpoints.get("ep-early")
    endpoint.traffic = {"early": 100}
    with pytest.raises(HttpResponseError) as refused:
        client.online_endpoints.begin_create_or_update(endpoint).result()
    assert refused.value.status_code == 400

    create = [
        r
        for r in emulator.audit()
        if r["action"] == "deployment_create"
        and r["workspace"] == f"ws-{region}"
        and r["endpoint"] == "ep-early"
    ]
    assert [(r["region"], r["image_present_at_create"]) for r in create] == [(region, False)]


def test_traffic_must_add_up_to_100_and_name_existing_deployments(
    emulator: Emulator, arm_env: LocalEnv, digest: str
) -> None:
    client = emulator.ml_client("eastus")
    create_endpoint(emulator, client, "ep-traffic")
    client.online_deployments.begin_create_or_update(
        make_deployment("ep-traffic", "one", image_ref(arm_env, digest))
    ).result()
    for traffic, words in (
        ({"one": 50}, "add up to 50"),
        ({"one": 50, "ghost": 50}, "'ghost', which does not exist"),
    ):
        endpoint = client.online_endpoints.get("ep-traffic")
        endpoint.traffic = traffic
        with pytest.raises(HttpResponseError) as refused:
            client.online_endpoints.begin_create_or_update(endpoint).result()
        assert refused.value.status_code == 400
        assert words in str(refused.value.message)
    assert client.online_endpoints.get("ep-traffic").traffic == {
        "one": 0
    }  # the SDK fills in zeroes


def test_state_and_in_flight_operations_survive_a_restart(
    emulator: Emulator, arm_env: LocalEnv, digest: str
) -> None:
    client = emulator.ml_client("eastus")
    create_endpoint(emulator, client, "ep-restart")
    key = client.online_endpoints.get_keys("ep-restart").primary_key
    # Start a deployment and restart before it completes: it must finish by its recorded due time.
    client.online_deployments.begin_create_or_update(
        make_deployment("ep-restart", "survivor", image_ref(arm_env, digest))
    )
    assert client.online_deployments.get("survivor", "ep-restart").provisioning_state == "Creating"
    emulator.restart()

    client = emulator.ml_client("eastus")
    wait_until(
        lambda: (
            client.online_deployments.get("survivor", "ep-restart").provisioning_state
            == "Succeeded"
        ),
        timeout=15,
        interval=0.2,
        what="the in-flight deployment to complete after the restart",
    )
    assert client.online_endpoints.get_keys("ep-restart").primary_key == key
    answer = score(emulator, client, "ep-restart", "survivor", key)
    assert answer.status_code == 200
    assert answer.json()["digest"] == digest


def test_aml_token_endpoint_scores_with_its_token(
    emulator: Emulator, arm_env: LocalEnv, digest: str
) -> None:
    client = emulator.ml_client("eastus")
    create_endpoint(emulator, client, "ep-token", auth_mode="aml_token")
    client.online_deployments.begin_create_or_update(
        make_deployment("ep-token", "only", image_ref(arm_env, digest))
    ).result()
    token = client.online_endpoints.get_keys("ep-token").access_token
    assert token
    assert score(emulator, client, "ep-token", "only", token).status_code == 200
    assert score(emulator, client, "ep-token", "only", "not-the-token").status_code == 401
    # No traffic yet: without the header nothing can serve.
    assert score(emulator, client, "ep-token", None, token).status_code == 404


# Azure answers a deployment PUT with an error while the endpoint says `Updating`, even just after
# the endpoint's own operation reported success (Azure/azure-sdk-for-net#36961: "Cannot create a
# deployment in endpoint ... because it is in Updating provisioning state."). The status is 409
# Conflict, ARM's answer to a write that meets an operation in progress
# (Azure/azure-resource-manager-rpc, v1.0/Addendum.md); see devenv/arm/errors.py.


def test_deployment_create_right_after_the_endpoint_operation_is_refused_while_it_says_updating(
    settling_emulator: Emulator, arm_env: LocalEnv, digest: str
) -> None:
    client = settling_emulator.ml_client("eastus")
    # result() returns only once the endpoint's operation has reported Succeeded ...
    endpoint = client.online_endpoints.begin_create_or_update(
        ManagedOnlineEndpoint(name="ep-settling", auth_mode="key")
    ).result()
    # ... yet the endpoint itself still says Updating, as in the report.
    assert endpoint.provisioning_state == "Updating"

    with pytest.raises(HttpResponseError) as refused:
        client.online_deployments.begin_create_or_update(
            make_deployment("ep-settling", "blue", image_ref(arm_env, digest))
        )
    assert refused.value.status_code == 409
    assert refused.value.error is not None
    assert refused.value.error.code == "Conflict"
    assert refused.value.error.message == (
        "Cannot create a deployment in endpoint ep-settling because it is in Updating "
        "provisioning state."
    )
    # Refused means nothing was started.
    with pytest.raises(ResourceNotFoundError):
        client.online_deployments.get("blue", "ep-settling")
    assert not [
        r
        for r in settling_emulator.audit()
        if r.get("endpoint") == "ep-settling" and r["action"] == "deployment_create"
    ]
    # A traffic PUT meets the same one-write-at-a-time rule while the endpoint settles.
    with pytest.raises(HttpResponseError) as traffic_refused:
        client.online_endpoints.begin_create_or_update(
            client.online_endpoints.get("ep-settling")
        ).result()
    assert traffic_refused.value.status_code == 409


def test_the_same_deployment_create_succeeds_once_the_endpoint_says_succeeded(
    settling_emulator: Emulator, arm_env: LocalEnv, digest: str
) -> None:
    client = settling_emulator.ml_client("eastus")
    endpoint = client.online_endpoints.begin_create_or_update(
        ManagedOnlineEndpoint(name="ep-settled", auth_mode="key")
    ).result()
    assert endpoint.provisioning_state == "Updating"
    deployment = make_deployment("ep-settled", "blue", image_ref(arm_env, digest))
    with pytest.raises(HttpResponseError) as refused:
        client.online_deployments.begin_create_or_update(deployment)
    assert refused.value.status_code == 409

    # What a client must do: wait for the endpoint itself, not its operation.
    states = endpoint_states_until_settled(settling_emulator, client, "ep-settled")
    assert set(states[:-1]) <= {"Updating"} and states[-1] == "Succeeded", states

    created = client.online_deployments.begin_create_or_update(deployment).result()
    assert created.provisioning_state == "Succeeded"
    creates = [
        r
        for r in settling_emulator.audit()
        if r.get("endpoint") == "ep-settled" and r["action"] == "deployment_create"
    ]
    assert [(r["deployment"], r["image_present_at_create"]) for r in creates] == [("blue", True)]


def test_with_no_settle_time_the_endpoint_is_succeeded_with_its_operation(
    unsettled_emulator: Emulator, arm_env: LocalEnv, digest: str
) -> None:
    client = unsettled_emulator.ml_client("eastus")
    endpoint = client.online_endpoints.begin_create_or_update(
        ManagedOnlineEndpoint(name="ep-instant", auth_mode="key")
    ).result()
    assert endpoint.provisioning_state == "Succeeded"
    created = client.online_deployments.begin_create_or_update(
        make_deployment("ep-instant", "blue", image_ref(arm_env, digest))
    ).result()
    assert created.provisioning_state == "Succeeded"
