"""The `georollout` command as a pipeline runs it: the installed console script, in a
subprocess whose stdout is a pipe (so the plain output, as a CI log gets it), against the
whole local environment.

The command is the one `pip install -e .` put beside this interpreter (`make` does that);
a missing script fails here rather than being skipped: installing it is part of the job.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from devenv.build_secret import build_webhook_secret
from devenv.stack import Stack
from shared.domain.model import rollout_id
from tests.e2e.conftest import REGIONS, SLOW_REGION, Pushed, slow_region_has_history
from tests.e2e.local_api import FunctionApp, poll
from tests.support.terminal import run_in_terminal

pytestmark = pytest.mark.e2e

PushFn = Callable[[str, str], Pushed]
LIVE_TIMEOUT = "3m"
# Any escape sequence: colour (CSI), cursor movement, window titles (OSC); or a bare CR.
ESCAPES = re.compile(r"\x1b|\r")
SCRIPT = Path(sys.executable).with_name("georollout")
# What the pseudo-terminal tests leave behind (screenshots), under the git-ignored state.
ARTIFACTS = Path(__file__).resolve().parents[2] / ".georollout" / "artifacts"
TERMINAL_COLUMNS, TERMINAL_ROWS = 150, 40


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def secret(stack: Stack) -> str:
    return build_webhook_secret(stack.env.state_dir)


@pytest.fixture(scope="module")
def command_env(stack: Stack) -> dict[str, str]:
    """The command's environment: only what it reads from outside (a GEOROLLOUT_* of the
    shell running the tests must not point it elsewhere)."""
    assert SCRIPT.exists(), f"{SCRIPT} is missing: install the project with `pip install -e .`"
    base = {k: v for k, v in os.environ.items() if not k.startswith("GEOROLLOUT_")}
    base["GEOROLLOUT_URL"] = stack.env.host_url
    return base


@pytest.fixture(scope="module")
def georollout(command_env: dict[str, str], secret: str) -> Callable[..., Run]:
    base = command_env

    def run(*args: str, secret_value: str | None = secret, timeout: float = 240) -> Run:
        env = dict(base)
        if secret_value is not None:
            env["GEOROLLOUT_BUILD_WEBHOOK_SECRET"] = secret_value
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
        # Every command, every time: the output is a pipe, so it is plain.
        assert not ESCAPES.search(result.stdout + result.stderr), result
        # The secret is read from the environment and never shown, whatever happened.
        assert secret not in result.stdout + result.stderr
        return result

    return run


def image_of(stack: Stack, pushed: Pushed) -> str:
    return f"{stack.env.primary.registry_host}/{pushed.repository}@{pushed.digest}"


def recorded(app: FunctionApp, pushed: Pushed) -> None:
    poll(
        lambda: app.rollout_of(pushed.repository, pushed.digest),
        lambda doc: doc is not None,
        timeout=30,
        what=f"{pushed.repository} recorded",
    )


def test_notify_records_a_signed_notice_and_wait_follows_it_to_live(
    georollout: Callable[..., Run], app: FunctionApp, stack: Stack, push: PushFn
) -> None:
    pushed = push("cli/notified", "v1")
    build_id = uuid.uuid4().hex[:8]
    notified = georollout(
        "notify",
        image_of(stack, pushed),
        "--tag",
        "v1",
        "--system",
        "e2e",
        "--id",
        build_id,
        "--build-url",
        f"https://ci.example/runs/{build_id}",
        "--commit",
        "9fceb02d0ae598e95dc970b74767f19372d61af8",
        "--source",
        "https://git.example/models",
    )
    expected_id = rollout_id(stack.env.primary.registry_host, pushed.repository, pushed.digest)
    assert (notified.code, notified.stdout) == (0, expected_id + "\n"), notified

    waited = georollout(
        "wait", image_of(stack, pushed), "--timeout", LIVE_TIMEOUT, "--interval", "1s"
    )
    assert waited.code == 0, waited
    lines = waited.stdout.splitlines()
    assert lines[-1] == f"live: {expected_id}"
    # Progress lines as a log shows them: stamped, one event each, each region reaching live.
    assert all(re.match(r"\[\+[0-9.hms]+\] \S", line) for line in lines[:-1]), lines
    for region in REGIONS:
        assert any(line.endswith(f"] {region}: live") for line in lines), (region, lines)

    shown = georollout("status", expected_id)
    assert shown.code == 0, shown
    builds = shown.stdout[shown.stdout.index("builds:") :].splitlines()
    assert builds[2].split()[:4] == [
        "e2e",
        build_id,
        "9fceb02d0ae598e95dc970b74767f19372d61af8",
        f"https://ci.example/runs/{build_id}",
    ]


def test_notify_with_a_wrong_secret_is_refused_with_the_apps_error(
    georollout: Callable[..., Run], app: FunctionApp, stack: Stack
) -> None:
    repository, digest = "cli/refused", "sha256:" + uuid.uuid4().hex * 2
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
    refused = georollout(
        "notify", f"{stack.env.primary.registry_host}/{repository}@{digest}", secret_value=other
    )
    assert refused.code == 3 and refused.stdout == "", refused
    assert "answered 401" in refused.stderr and '"code": "unauthorized"' in refused.stderr
    assert other not in refused.stderr
    assert app.rollouts(repository=repository) == []


def test_status_lists_a_pushed_rollout(
    georollout: Callable[..., Run], app: FunctionApp, push: PushFn
) -> None:
    pushed = push("cli/listed", "v7")
    recorded(app, pushed)
    listed = georollout("status", "--repository", pushed.repository)
    assert listed.code == 0, listed
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "REPOSITORY", "DIGEST", "TAGS", "STATE", "UPDATED"]
    [row] = rows
    assert row.split()[:3] == [
        rollout_id(app.env.primary.registry_host, pushed.repository, pushed.digest)[: -(64 - 12)],
        pushed.repository,
        pushed.digest[: len("sha256:") + 12],
    ]
    assert "v7" in row

    as_json = georollout("status", "--repository", pushed.repository, "--json")
    assert as_json.code == 0 and f'"digest": "{pushed.digest}"' in as_json.stdout


def test_status_shows_one_rollout_region_by_region_with_timings(
    georollout: Callable[..., Run], app: FunctionApp, stack: Stack, push: PushFn
) -> None:
    pushed = push("cli/detailed", "v1")
    # By tag: the newest rollout the tag names, through the listing. In a log, `watch`
    # prints a line per change, then the rollout region by region once it ended.
    watched = georollout(
        "watch",
        f"{stack.env.primary.registry_host}/{pushed.repository}:v1",
        "--timeout",
        LIVE_TIMEOUT,
        "--interval",
        "1s",
    )
    assert watched.code == 0, watched
    expected_id = rollout_id(stack.env.primary.registry_host, pushed.repository, pushed.digest)
    lines = watched.stdout.splitlines()
    assert lines[-1] == f"live: {expected_id}"
    # The status view, as `status ID` shows it, after the progress lines.
    view = lines[[line.split() for line in lines].index(["id", expected_id]) : -1]
    region_rows = [line.split() for line in view if line.split()[:1] in ([r] for r in REGIONS)]
    assert [row[0] for row in region_rows] == list(REGIONS), view
    assert all("live" in row for row in region_rows), view
    shown = georollout("status", image_of(stack, pushed))
    assert shown.code == 0, shown
    rows = {
        line.split()[0]: line.split()
        for line in shown.stdout.splitlines()
        if line.split() and line.split()[0] in REGIONS
    }
    assert list(rows) == list(REGIONS)
    for region, cells in rows.items():
        # REGION [(primary)] WAVE STATE STEP TRAFFIC ...
        wave_at = 2 if region == REGIONS[0] else 1
        assert cells[wave_at] == ("0" if region == REGIONS[0] else "1"), cells
        assert cells[wave_at + 1] == "live", cells
        assert cells[wave_at + 3] == "100%", cells
        # replicated, deploy started and live, each "+<duration>" after the rollout's creation
        timings = [c for c in cells if c.startswith("+")]
        assert len(timings) == 3, cells


def test_wait_for_a_digest_that_never_arrives_times_out_with_124(
    georollout: Callable[..., Run], stack: Stack
) -> None:
    ghost = f"{stack.env.primary.registry_host}/cli/ghost@sha256:{uuid.uuid4().hex * 2}"
    waited = georollout("wait", ghost, "--timeout", "5s", "--interval", "1s", timeout=60)
    assert waited.code == 124, waited
    assert "never recorded after 5s" in waited.stderr
    assert "recorded yet" in waited.stdout  # said once while waiting, as a log line


def test_wait_for_a_notified_digest_the_registry_lacks_times_out_while_it_replicates(
    georollout: Callable[..., Run], stack: Stack
) -> None:
    ghost = f"{stack.env.primary.registry_host}/cli/announced-ghost@sha256:{uuid.uuid4().hex * 2}"
    notified = georollout("notify", ghost, "--tag", "v1")
    assert notified.code == 0, notified
    waited = georollout(
        "wait", notified.stdout.strip(), "--timeout", "5s", "--interval", "1s", timeout=60
    )
    assert waited.code == 124, waited
    assert "still replicating after 5s" in waited.stderr
    assert "] rollout replicating" in waited.stdout


def test_watch_on_a_terminal_redraws_the_rollout_with_the_eta_until_it_is_live(
    command_env: dict[str, str], app: FunctionApp, stack: Stack, push: PushFn
) -> None:
    slow_region_has_history(app, push)
    pushed = push("cli/watched", "v1")
    run = run_in_terminal(
        [str(SCRIPT), "watch", image_of(stack, pushed), "--interval", "0.5s"],
        command_env,
        columns=TERMINAL_COLUMNS,
        rows=TERMINAL_ROWS,
        timeout=240,
    )
    expected_id = rollout_id(stack.env.primary.registry_host, pushed.repository, pushed.digest)
    assert run.code == 0, run.text
    # A live view: coloured, redrawn in place (the cursor moves up over the last frame).
    assert re.search(r"\x1b\[3\dm", run.raw), "no colour"
    assert re.search(r"\x1b\[\d*A", run.raw), "never redrawn in place"
    # While the slow replica lagged, its expected arrival was on screen.
    assert re.search(rf"{SLOW_REGION}: awaiting_replication.*; replica expected \S+Z", run.text)
    # What the person sees at the end: the rollout region by region, every region live.
    screen = run.lines
    shown = "\n".join(screen)
    assert screen[-1] == f"live: {expected_id}", shown
    rows = {
        line.split()[0]: line.split()
        for line in screen
        if line.split()[:1] in ([r] for r in REGIONS)
    }
    assert list(rows) == list(REGIONS), shown
    assert all("live" in cells for cells in rows.values()), shown
    run.save_svg(ARTIFACTS / "georollout-watch.svg", title="georollout watch")
