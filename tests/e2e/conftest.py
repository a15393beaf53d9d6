"""One whole local environment for the end-to-end tests: every stand-in and the function app, on free ports."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pytest

from devenv.config import LocalEnv, isolated_env
from devenv.images import ImageBlobs, build_image, push_image
from devenv.registries import RegistryControl
from devenv.stack import Stack, start_stack
from tests.e2e.local_api import ArmAudit, FunctionApp

# Primary, a fast secondary, a slow one and one the scenario takes offline for a while.
REGIONS = ("eastus", "westus", "westeurope", "northeurope")
FAST_REGION = "westus"
SLOW_REGION = "westeurope"
FLAKY_REGION = "northeurope"
SLOW_EXTRA_DELAY_S = 4.0
PROBE_SCHEDULE = "*/2 * * * * *"  # NCRONTAB, seconds first: every 2 s
IMAGE_BYTES = 300_000


@pytest.fixture(scope="session")
def e2e_env(tmp_path_factory: pytest.TempPathFactory) -> LocalEnv:
    env = isolated_env(tmp_path_factory.mktemp("e2e"), region_names=REGIONS)
    env = replace(env, replication_base_s=1.0, arm_provisioning_s=2.0)
    return env.with_region(SLOW_REGION, extra_delay_s=SLOW_EXTRA_DELAY_S)


@pytest.fixture(scope="session")
def stack(e2e_env: LocalEnv) -> Iterator[Stack]:
    running = start_stack(e2e_env, extra_settings={"GEOROLLOUT_PROBE_SCHEDULE": PROBE_SCHEDULE})
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def app(stack: Stack) -> FunctionApp:
    return FunctionApp(stack.env)


@pytest.fixture(scope="session")
def audit(stack: Stack) -> ArmAudit:
    return ArmAudit(stack.env, stack.tls.client_context())


@pytest.fixture(scope="session")
def registry_control(stack: Stack) -> RegistryControl:
    return RegistryControl(stack.env.relay_url)


@pytest.fixture(scope="session")
def host_log_tail(stack: Stack) -> Callable[[], str]:
    """The function host's last log lines, for failure messages."""

    def tail() -> str:
        path = stack.env.state_dir / "logs" / "functions-host.log"
        lines = path.read_text(errors="replace").splitlines()[-60:] if path.exists() else []
        return "function host log (tail):\n" + "\n".join(lines)

    return tail


@dataclass(frozen=True)
class Pushed:
    repository: str
    tag: str
    digest: str
    image: ImageBlobs


@pytest.fixture(scope="session")
def push(stack: Stack) -> Callable[[str, str], Pushed]:
    """Build a new (unique) small image and push it to the primary registry through the SDK."""

    def push_new(repository: str, tag: str) -> Pushed:
        image = build_image(size_bytes=IMAGE_BYTES, seed=f"{repository}-{uuid.uuid4()}")
        digest = push_image(
            stack.env.primary.registry_url, repository, tag, image, ca_path=stack.tls.ca_pem
        )
        assert digest == image.digest
        return Pushed(repository=repository, tag=tag, digest=digest, image=image)

    return push_new
