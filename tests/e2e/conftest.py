"""One whole local environment for the end-to-end tests: every stand-in and the function app, on free ports."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace

import pytest

from devenv.config import LocalEnv, isolated_env
from devenv.images import ImageBlobs, build_image, push_image
from devenv.registries import RegistryControl
from devenv.stack import Stack, start_stack
from tests.e2e.local_api import ArmAudit, FunctionApp, poll

# Primary, a fast secondary, a slow one and one the scenario takes offline for a while.
REGIONS = ("eastus", "westus", "westeurope", "northeurope")
FAST_REGION = "westus"
SLOW_REGION = "westeurope"
FLAKY_REGION = "northeurope"
SLOW_EXTRA_DELAY_S = 4.0
PROBE_SCHEDULE = "*/1 * * * * *"  # NCRONTAB, seconds first: every second
IMAGE_BYTES = 300_000

# The steered environment (tests/e2e/test_operator_e2e.py and test_progressive_e2e.py share
# it): target rules that gate or stage some repositories, which the session's environment
# above does not configure. First match wins: every special rule comes before the catch-all.
STEERED_REGIONS = ("eastus", "westus", "westeurope")
WAVES_SOAK_S = 4
STEPS_HOLD_S = 8
STEERED_TARGETS: list[dict[str, object]] = [
    # Waits for an approval before the secondaries deploy.
    {"repository": "ops/gated-*", "approval": "before_secondaries"},
    # What served before a progressive rollout, set up quickly: prog/* images tagged base*
    # roll out plainly, on the endpoint their progressive successors use (the same template).
    {"repository": "prog/*", "tag": "base*"},
    # westus, then westeurope; each region soaks (watched every second, no failure allowed).
    {
        "repository": "prog/waves-*",
        "waves": [["westus"], ["westeurope"]],
        "soak_seconds": WAVES_SOAK_S,
        "verify": {"interval_seconds": 1, "max_failures": 0},
    },
    # Traffic moves 10% -> 50% -> 100%, each step held (and watched); only in the primary,
    # which keeps the test short (the secondaries would step the same way, after it).
    {
        "repository": "prog/steps-*",
        "regions": [STEERED_REGIONS[0]],
        "traffic_steps": [10, 50, 100],
        "step_seconds": STEPS_HOLD_S,
        "verify": {"interval_seconds": 1},
    },
    # Every other repository rolls out on its own (the default rule's endpoint template).
    {"repository": "*", "tag": "*"},
]


@pytest.fixture(scope="package")
def e2e_env(tmp_path_factory: pytest.TempPathFactory) -> LocalEnv:
    env = isolated_env(tmp_path_factory.mktemp("e2e"), region_names=REGIONS)
    env = replace(env, replication_base_s=1.0, arm_provisioning_s=1.0)
    return env.with_region(SLOW_REGION, extra_delay_s=SLOW_EXTRA_DELAY_S)


@pytest.fixture(scope="package")
def stack(e2e_env: LocalEnv) -> Iterator[Stack]:
    running = start_stack(e2e_env, extra_settings={"GEOROLLOUT_PROBE_SCHEDULE": PROBE_SCHEDULE})
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="package")
def app(stack: Stack) -> FunctionApp:
    return FunctionApp(stack.env)


@pytest.fixture(scope="package")
def audit(stack: Stack) -> ArmAudit:
    return ArmAudit(stack.env, stack.tls.client_context())


@pytest.fixture(scope="package")
def registry_control(stack: Stack) -> RegistryControl:
    return RegistryControl(stack.env.relay_url)


@pytest.fixture(scope="package")
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


@pytest.fixture(scope="package")
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


# --- the steered environment --------------------------------------------------------------


class _SteeredStack:
    """The steered stack while it runs. It is stopped once: right after the last test of the
    run that uses it (so it does not idle beside the rest of the suite), or at the session's
    end, whichever comes first."""

    def __init__(self) -> None:
        self.running: Stack | None = None
        self.last_user: str | None = None

    def stop(self) -> None:
        running, self.running = self.running, None
        if running is not None:
            running.stop()


_steered = _SteeredStack()


@pytest.fixture(scope="package")
def steered_env(tmp_path_factory: pytest.TempPathFactory) -> LocalEnv:
    env = isolated_env(tmp_path_factory.mktemp("steered-e2e"), region_names=STEERED_REGIONS)
    return replace(env, replication_base_s=1.0, arm_provisioning_s=1.0)


@pytest.fixture(scope="package")
def steered_stack(steered_env: LocalEnv, request: pytest.FixtureRequest) -> Iterator[Stack]:
    users = [
        i.nodeid for i in request.session.items if "steered_stack" in getattr(i, "fixturenames", ())
    ]
    running = start_stack(
        steered_env,
        extra_settings={
            "GEOROLLOUT_PROBE_SCHEDULE": PROBE_SCHEDULE,
            "GEOROLLOUT_TARGETS": json.dumps(STEERED_TARGETS),
            # The previous deployment is kept well past the tests: a rollback is a traffic change.
            "GEOROLLOUT_KEEP_PREVIOUS_MINUTES": "60",
            # App Service authentication is off: a caller's principal header proves nothing.
            "WEBSITE_AUTH_ENABLED": "false",
        },
    )
    _steered.running, _steered.last_user = running, users[-1] if users else None
    try:
        yield running
    finally:
        _steered.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    """After the last test of the run that uses the steered stack, stop it (by pid)."""
    try:
        return (yield)
    finally:
        if _steered.running is not None and item.nodeid == _steered.last_user:
            _steered.stop()


@pytest.fixture(scope="package")
def steered_app(steered_stack: Stack) -> FunctionApp:
    return FunctionApp(steered_stack.env)


@pytest.fixture(scope="package")
def steered_audit(steered_stack: Stack) -> ArmAudit:
    return ArmAudit(steered_stack.env, steered_stack.tls.client_context())


@pytest.fixture(scope="package")
def steered_log_tail(steered_stack: Stack) -> Callable[[], str]:
    """The steered function host's last log lines, for failure messages."""

    def tail() -> str:
        path = steered_stack.env.state_dir / "logs" / "functions-host.log"
        lines = path.read_text(errors="replace").splitlines()[-80:] if path.exists() else []
        return "function host log (tail):\n" + "\n".join(lines)

    return tail


@pytest.fixture(scope="package")
def steered_push(steered_stack: Stack) -> Callable[[str, str], Pushed]:
    """A new small image pushed to the steered primary registry through the SDK."""

    def push_new(repository: str, tag: str) -> Pushed:
        image = build_image(size_bytes=IMAGE_BYTES, seed=f"{repository}-{uuid.uuid4()}")
        digest = push_image(
            steered_stack.env.primary.registry_url,
            repository,
            tag,
            image,
            ca_path=steered_stack.tls.ca_pem,
        )
        assert digest == image.digest
        return Pushed(repository=repository, tag=tag, digest=digest, image=image)

    return push_new


def slow_region_has_history(app: FunctionApp, push: Callable[[str, str], Pushed]) -> None:
    """One arrival on record in the slow region (other tests may have left one), so the
    next push gets an ETA there."""

    def samples() -> int:
        status, stats = app.get("/api/stats")
        assert status == 200, stats
        return int(next(r for r in stats["regions"] if r["region"] == SLOW_REGION)["samples"])

    if samples() > 0:
        return
    earlier = push("e2e/slow-region-history", "v1")
    poll(
        samples,
        lambda count: count > 0,
        timeout=120,
        what=f"an arrival of {earlier.repository} in {SLOW_REGION} on record",
    )
