"""Azurite's Table service (the npm package, installed into the project by `make setup`)."""

from __future__ import annotations

import signal

from devenv.config import LocalEnv
from devenv.paths import NODE_BIN
from devenv.ports import LOOPBACK
from devenv.process import ManagedProcess


def start_azurite(env: LocalEnv) -> ManagedProcess:
    """Start Azurite's Table service on `env.azurite_port` and wait until it listens."""
    data_dir = env.state_dir / "azurite"
    data_dir.mkdir(parents=True, exist_ok=True)
    process = ManagedProcess(
        name="azurite-table",
        argv=[
            str(NODE_BIN / "azurite-table"),
            "--tableHost",
            LOOPBACK,
            "--tablePort",
            str(env.azurite_port),
            "--location",
            str(data_dir),
            "--disableTelemetry",
            "--skipApiVersionCheck",
        ],
        log_path=env.state_dir / "logs" / "azurite.log",
        # Azurite's table service writes its data to disk every few seconds and on SIGINT;
        # on SIGTERM it exits without saving and the last writes are lost.
        stop_signal=signal.SIGINT,
    ).start()
    try:
        process.wait_for_port(env.azurite_port)
    except BaseException:
        process.stop()
        raise
    return process
