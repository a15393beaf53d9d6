"""Starts the registries supervisor as a ManagedProcess and waits until every part answers."""

from __future__ import annotations

import ssl
import sys
import urllib.error
import urllib.request

from devenv.config import LocalEnv
from devenv.paths import REPO_ROOT
from devenv.process import ManagedProcess, wait_until
from devenv.registries.config import EVENT_GRID_SCHEMA, supervisor_settings
from devenv.tls import TlsFiles


def _answers(url: str, context: ssl.SSLContext | None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_registries(
    env: LocalEnv,
    tls: TlsFiles,
    *,
    eventgrid_topic_endpoint: str | None,
    event_schema: str = EVENT_GRID_SCHEMA,
) -> ManagedProcess:
    """Start every region's registry and the relay; return once each available one answers.

    Stopping the returned process (SIGTERM) stops the registries it started too.
    """
    settings = supervisor_settings(
        env, tls, eventgrid_topic_endpoint=eventgrid_topic_endpoint, event_schema=event_schema
    )
    config_path = settings.write(settings.state_dir / "supervisor.json")
    process = ManagedProcess(
        name="registries",
        argv=[sys.executable, "-m", "devenv.registries", "--config", str(config_path)],
        log_path=settings.log_dir / "registries.log",
        cwd=REPO_ROOT,
    ).start()
    context = tls.client_context()
    try:
        process.wait_for_port(env.relay_port, timeout=30)

        def ready() -> bool:
            process.check_running()
            return _answers(f"{env.relay_url}/regions", None) and all(
                _answers(f"{region.url}/v2/", context)
                for region in settings.regions
                if not region.unavailable
            )

        wait_until(ready, timeout=30, interval=0.1, what="the registries and the relay to answer")
    except BaseException:
        process.stop()
        raise
    return process
