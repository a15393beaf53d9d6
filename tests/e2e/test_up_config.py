"""`make up` with settings the function app cannot work with fails at once, names every
problem and leaves nothing running (rather than saying "up" and answering every push 500).

It runs `python -m devenv up` as `make up` does, on free ports under its own state
directory, so it never collides with a running environment.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.paths import REPO_ROOT
from devenv.process import port_open

pytestmark = pytest.mark.e2e

DEADLINE_S = 60.0
# Two rules with a problem each (one GEOROLLOUT_TARGETS line) and a second bad setting.
BAD_TARGETS = (
    '[{"repository": "models/*", "endpoint": "{repo}"}, {"repository": "*", "instance_count": 0}]'
)


@contextlib.contextmanager
def devenv_up(state_dir: Path, settings: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """`python -m devenv up` in its own session; whatever is left is stopped by its pid."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GEOROLLOUT_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "devenv", "up", "--free-ports", "--state-dir", str(state_dir)],
        cwd=REPO_ROOT,
        env=environ | settings,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            # Only when the test already failed: `up` came up although it must not have.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def session_alive(session_id: int) -> bool:
    """True while any process of the session (`up` and everything it started) is left."""
    try:
        os.killpg(session_id, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_with_invalid_settings_fails_naming_every_problem_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    settings = {"GEOROLLOUT_TARGETS": BAD_TARGETS, "GEOROLLOUT_PROBE_CONCURRENCY": "0"}
    with devenv_up(tmp_path / "state", settings) as process:
        try:
            stdout, stderr = process.communicate(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`devenv up` with invalid settings still runs after {DEADLINE_S:.0f}s")
        output = stdout + stderr
        assert process.returncode != 0, output
        assert "up in" not in stdout, output

        assert "GEOROLLOUT_TARGETS" in stderr, output
        assert "rule 0.endpoint" in stderr and "{repo}" in stderr, output
        assert "rule 1.instance_count" in stderr, output
        assert "GEOROLLOUT_PROBE_CONCURRENCY" in stderr, output

        ports_line = re.search(r"^ports: (.*)$", stdout, re.MULTILINE)
        assert ports_line, output
        ports = [int(port) for port in re.findall(r"=(\d+)", ports_line[1])]
        assert len(ports) >= 6, ports_line[0]
        assert not session_alive(process.pid), "a process `devenv up` started is still running"
        listening = [port for port in ports if port_open("127.0.0.1", port)]
        assert listening == [], f"still listening on {listening}"
