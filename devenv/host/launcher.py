"""Start the local Functions host as a managed child process and wait until it is ready."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from devenv.paths import REPO_ROOT
from devenv.ports import LOOPBACK
from devenv.process import ManagedProcess, wait_until

READY_TIMEOUT_S = 60.0


def host_status(port: int) -> dict[str, object] | None:
    """The host's /admin/host/status document, or None while it does not answer."""
    url = f"http://{LOOPBACK}:{port}/admin/host/status"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            document = json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def start_functions_host(
    app_dir: Path,
    port: int,
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    local_identity: bool = True,
) -> ManagedProcess:
    """Run `python -m devenv.host` for `app_dir` on 127.0.0.1:`port`; return once it is Running.

    `env` replaces the inherited environment when given (PYTHONUNBUFFERED and a
    PYTHONPATH that finds `devenv` are added either way). `local_identity` makes
    the host serve local managed-identity tokens, which only the stand-ins accept.
    """
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONUNBUFFERED"] = "1"
    child_env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO_ROOT), child_env.get("PYTHONPATH", "")) if part
    )
    process = ManagedProcess(
        name=f"functions-host:{port}",
        argv=[
            sys.executable,
            "-m",
            "devenv.host",
            "--app-dir",
            str(app_dir),
            "--port",
            str(port),
            *(["--local-identity"] if local_identity else []),
        ],
        log_path=log_path,
        env=child_env,
        cwd=REPO_ROOT,
    ).start()

    def running() -> bool:
        process.check_running()
        status = host_status(port)
        return status is not None and status.get("state") == "Running"

    try:
        wait_until(running, timeout=READY_TIMEOUT_S, what=f"the Functions host on port {port}")
    except BaseException:
        process.stop()
        raise
    return process
