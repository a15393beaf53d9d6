"""The Foundry deployer through the real azure-ai-ml MLClient over HTTPS, against the ARM emulator,
whose deployments pull (look up) their image in their own region's local registry replica."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from azure.core.credentials import AccessToken

from devenv.config import LOCAL_RESOURCE_GROUP, LOCAL_SUBSCRIPTION, LocalEnv
from devenv.images import build_image, push_image
from devenv.process import wait_until
from devenv.registries import RegistryControl
from devenv.tls import TlsFiles
from shared.adapters.foundry_deployer import (
    DeploymentStatus,
    EndpointStatus,
    FoundryDeployer,
    ProvisioningState,
    WorkspaceRef,
)
from tests.integration.adapters.conftest import REGION_WITHOUT_IMAGES

pytestmark = pytest.mark.integration

REPOSITORY = "models/deployer-target"
UNKNOWN_REGION = "northpole"
SMOKE_REQUEST = {"input": "ping"}
DEADLINE_S = 30
T = TypeVar("T")


class FixedTokenCredential:
    """The one stand-in: no local AAD exists, and the ARM emulator accepts any bearer token."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("local-test-token", int(time.time()) + 3600)


@dataclass(frozen=True)
class PushedImage:
    reference: str  # <primary registry host>/<repository>@<digest>, as a deployment names it
    digest: str


def _push(env: LocalEnv, tls: TlsFiles, seed: str) -> PushedImage:
    image = build_image(size_bytes=2048, seed=seed)
    digest = push_image(env.primary.registry_url, REPOSITORY, seed, image, ca_path=tls.ca_pem)
    return PushedImage(f"{env.primary.registry_host}/{REPOSITORY}@{digest}", digest)


def _observe(read: Callable[[], T], done: Callable[[T], bool], what: str) -> list[T]:
    """Read until `done` holds (with a deadline); return everything read, in order."""
    seen: list[T] = []

    def check() -> bool:
        seen.append(read())
        return done(seen[-1])

    wait_until(check, timeout=DEADLINE_S, interval=0.1, what=what)
    return seen


def _workspace(name: str) -> WorkspaceRef:
    return WorkspaceRef(
        resource_id=(
            f"/subscriptions/{LOCAL_SUBSCRIPTION}/resourceGroups/{LOCAL_RESOURCE_GROUP}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{name}"
        ),
        subscription_id=LOCAL_SUBSCRIPTION,
        resource_group=LOCAL_RESOURCE_GROUP,
        name=name,
    )


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def deployer(
    adapter_env: LocalEnv, arm_emulator: str, tls_files: TlsFiles, registries: RegistryControl
) -> Iterator[FoundryDeployer]:
    workspaces = {region.name: _workspace(region.workspace_name) for region in adapter_env.regions}
    workspaces[UNKNOWN_REGION] = _workspace(f"ws-{UNKNOWN_REGION}")
    deployer = FoundryDeployer(
        workspaces,
        credential=FixedTokenCredential(),
        arm_endpoint=arm_emulator,
        ca_bundle=str(tls_files.ca_pem),
    )
    yield deployer
    deployer.close()


def _endpoint_status(deployer: FoundryDeployer, region: str, endpoint: str) -> EndpointStatus:
    return asyncio.run(deployer.endpoint_status(region, endpoint))


def _deployment_status(
    deployer: FoundryDeployer, region: str, endpoint: str, name: str, operation_url: str | None
) -> DeploymentStatus:
    return asyncio.run(
        deployer.deployment_status(
            region, endpoint, name, operation_url=operation_url, with_image=True
        )
    )


def _create_ready_endpoint(deployer: FoundryDeployer, region: str, endpoint: str) -> EndpointStatus:
    assert _endpoint_status(deployer, region, endpoint).state is ProvisioningState.MISSING
    asyncio.run(deployer.begin_create_endpoint(region, endpoint, auth_mode="key"))
    seen = _observe(
        lambda: _endpoint_status(deployer, region, endpoint),
        lambda s: s.state is not ProvisioningState.IN_PROGRESS,
        f"endpoint {endpoint} in {region} to finish provisioning",
    )
    assert seen[-1].state is ProvisioningState.SUCCEEDED, seen[-1]
    return seen[-1]


def _deploy(
    deployer: FoundryDeployer, region: str, endpoint: str, name: str, image: PushedImage
) -> tuple[str | None, list[DeploymentStatus]]:
    started = asyncio.run(
        deployer.begin_create_deployment(
            region,
            endpoint,
            name,
            image=image.reference,
            instance_type="Standard_DS3_v2",
            instance_count=1,
        )
    )
    # ARM's pace for the next poll reaches the caller (the emulator sends retry-after-ms).
    assert started.retry_after_s is not None and 0 < started.retry_after_s <= 1, started
    operation_url = started.operation_url
    seen = _observe(
        lambda: _deployment_status(deployer, region, endpoint, name, operation_url),
        lambda s: s.state not in (ProvisioningState.IN_PROGRESS, ProvisioningState.MISSING),
        f"deployment {name} in {region} to finish provisioning",
    )
    return operation_url, seen


def _serving(status: EndpointStatus) -> dict[str, int]:
    """The traffic split without its 0% entries (ARM may list every deployment, at 0)."""
    return {name: share for name, share in status.traffic.items() if share}


def _wait_traffic(
    deployer: FoundryDeployer, region: str, endpoint: str, traffic: dict[str, int]
) -> EndpointStatus:
    seen = _observe(
        lambda: _endpoint_status(deployer, region, endpoint),
        lambda s: s.state is ProvisioningState.SUCCEEDED and _serving(s) == traffic,
        f"endpoint {endpoint} traffic to become {traffic}",
    )
    return seen[-1]


def test_blue_green_on_a_new_endpoint(
    adapter_env: LocalEnv, tls_files: TlsFiles, deployer: FoundryDeployer
) -> None:
    region = adapter_env.primary.name
    endpoint = _unique("ep-bluegreen")
    blue_image = _push(adapter_env, tls_files, _unique("blue"))
    green_image = _push(adapter_env, tls_files, _unique("green"))

    ready = _create_ready_endpoint(deployer, region, endpoint)
    assert ready.scoring_uri and ready.deployments == ()

    # Blue: provisions in the background, then answers its smoke request and takes all traffic.
    operation_url, blue_states = _deploy(deployer, region, endpoint, "blue", blue_image)
    assert operation_url is not None and "/mfeOperationsStatus/" in operation_url
    assert blue_states[0].state is ProvisioningState.IN_PROGRESS, blue_states
    assert blue_states[-1].state is ProvisioningState.SUCCEEDED, blue_states[-1]
    assert blue_states[-1].image == blue_image.reference

    blue_smoke = asyncio.run(deployer.smoke_test(region, endpoint, "blue", SMOKE_REQUEST))
    assert blue_smoke.ok and blue_smoke.status == 200, blue_smoke
    answer = json.loads(blue_smoke.body)
    assert answer["deployment"] == "blue" and answer["digest"] == blue_image.digest

    asyncio.run(deployer.begin_set_traffic(region, endpoint, {"blue": 100}))
    after_blue = _wait_traffic(deployer, region, endpoint, {"blue": 100})
    assert after_blue.deployments == ("blue",)

    # Green beside it at 0%: the header pins the smoke request to green whatever the split.
    _, green_states = _deploy(deployer, region, endpoint, "green", green_image)
    assert green_states[-1].state is ProvisioningState.SUCCEEDED, green_states[-1]
    green_smoke = asyncio.run(deployer.smoke_test(region, endpoint, "green", SMOKE_REQUEST))
    assert green_smoke.ok, green_smoke
    assert json.loads(green_smoke.body)["digest"] == green_image.digest
    assert _serving(_endpoint_status(deployer, region, endpoint)) == {"blue": 100}

    asyncio.run(deployer.begin_set_traffic(region, endpoint, {"green": 100}))
    _wait_traffic(deployer, region, endpoint, {"green": 100})
    asyncio.run(deployer.begin_delete_deployment(region, endpoint, "blue"))
    _observe(
        lambda: _deployment_status(deployer, region, endpoint, "blue", None),
        lambda s: s.state is ProvisioningState.MISSING,
        "deployment blue to be deleted",
    )
    final = _endpoint_status(deployer, region, endpoint)
    assert final.deployments == ("green",) and _serving(final) == {"green": 100}
    # Deleting what is already gone is not an error: a retried tick may do it twice.
    asyncio.run(deployer.begin_delete_deployment(region, endpoint, "blue"))


def test_deployment_in_a_region_without_the_image_fails_with_the_pull_error(
    adapter_env: LocalEnv, tls_files: TlsFiles, deployer: FoundryDeployer
) -> None:
    region = REGION_WITHOUT_IMAGES
    endpoint = _unique("ep-nopull")
    image = _push(adapter_env, tls_files, _unique("unreplicated"))
    _create_ready_endpoint(deployer, region, endpoint)

    operation_url, states = _deploy(deployer, region, endpoint, "blue", image)

    failed = states[-1]
    assert failed.state is ProvisioningState.FAILED, failed
    assert operation_url is not None
    assert failed.error is not None
    assert failed.error.startswith("ImagePullFailed:"), failed.error
    assert image.reference in failed.error and region in failed.error
    # Without the operation the resource only says "Failed": the reason came from the operation.
    bare = _deployment_status(deployer, region, endpoint, "blue", None)
    assert bare.state is ProvisioningState.FAILED and "ImagePullFailed" not in (bare.error or "")
    created = [
        r
        for r in _audit(adapter_env, tls_files)
        if r["action"] == "deployment_create" and r["endpoint"] == endpoint
    ]
    assert [r["image_present_at_create"] for r in created] == [False]


def test_no_sdk_poller_reads_an_operation_georollout_started(
    adapter_env: LocalEnv,
    tls_files: TlsFiles,
    deployer: FoundryDeployer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """georollout reads each operation again when its step is due. azure-core's poller
    would read it too, from a thread of its own, until it ended, and azure-ai-ml's
    polling class would print a dot to stdout at each read."""
    region = adapter_env.primary.name
    endpoint = _unique("ep-unpolled")
    image = _push(adapter_env, tls_files, _unique("unpolled"))
    capfd.readouterr()

    # Each operation is followed here by reading its resource, never the operation.
    created = asyncio.run(deployer.begin_create_endpoint(region, endpoint, auth_mode="key"))
    _observe(
        lambda: _endpoint_status(deployer, region, endpoint),
        lambda s: s.state is ProvisioningState.SUCCEEDED,
        f"endpoint {endpoint} provisioned",
    )
    deployed = asyncio.run(
        deployer.begin_create_deployment(
            region,
            endpoint,
            "blue",
            image=image.reference,
            instance_type="Standard_DS3_v2",
            instance_count=1,
        )
    )
    _observe(
        lambda: _deployment_status(deployer, region, endpoint, "blue", None),
        lambda s: s.state is ProvisioningState.SUCCEEDED,
        "deployment blue provisioned",
    )
    shifted = asyncio.run(deployer.begin_set_traffic(region, endpoint, {"blue": 100}))
    _wait_traffic(deployer, region, endpoint, {"blue": 100})

    urls = [started.operation_url for started in (created, deployed, shifted)]
    assert all(urls), urls
    assert [_operation_reads(adapter_env, tls_files, str(url)) for url in urls] == [0, 0, 0]
    assert capfd.readouterr().out == ""
    # A read of the operation counts (so the zeros above mean no read).
    with urllib.request.urlopen(
        urllib.request.Request(str(urls[1]), headers={"Authorization": "Bearer any"}),
        context=tls_files.client_context(),
        timeout=10,
    ) as response:
        assert json.loads(response.read())["status"] == "Succeeded"
    assert _operation_reads(adapter_env, tls_files, str(urls[1])) == 1


def test_check_workspace_names_what_is_wrong(
    adapter_env: LocalEnv, deployer: FoundryDeployer
) -> None:
    assert asyncio.run(deployer.check_workspace(adapter_env.primary.name)) is None
    problem = asyncio.run(deployer.check_workspace(UNKNOWN_REGION))
    assert problem is not None and f"ws-{UNKNOWN_REGION}" in problem, problem


def _audit(env: LocalEnv, tls: TlsFiles) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        f"{env.arm_url}/emulator/audit", headers={"Authorization": "Bearer any"}
    )
    with urllib.request.urlopen(request, context=tls.client_context(), timeout=10) as response:
        return list(json.loads(response.read())["records"])


def _operation_reads(env: LocalEnv, tls: TlsFiles, operation_url: str) -> int:
    """How often the ARM emulator answered a status read of the operation at `operation_url`."""
    operation_id = operation_url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    request = urllib.request.Request(
        f"{env.arm_url}/emulator/operations/{operation_id}",
        headers={"Authorization": "Bearer any"},
    )
    with urllib.request.urlopen(request, context=tls.client_context(), timeout=10) as response:
        return int(json.loads(response.read())["reads"])
