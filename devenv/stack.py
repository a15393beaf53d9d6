"""Starts the whole local environment in dependency order and stops it again, by pid."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from devenv.arm.launcher import start_arm_emulator
from devenv.azurite import start_azurite
from devenv.config import LOCAL_TOPIC_KEY, LocalEnv
from devenv.eventgrid.launcher import (
    InputSchema,
    SubscriptionSpec,
    TopicSpec,
    start_eventgrid,
    topic_endpoint,
)
from devenv.host.launcher import start_functions_host
from devenv.local_settings import ACR_TOPIC, EVENTS_TOPIC, app_settings
from devenv.paths import REPO_ROOT
from devenv.process import ManagedProcess, ProcessFailedError, port_open
from devenv.registries.launcher import start_registries
from devenv.tls import TlsFiles, ensure_tls

log = logging.getLogger("devenv")


@dataclass
class Stack:
    env: LocalEnv
    tls: TlsFiles
    processes: list[ManagedProcess] = field(default_factory=list)
    started_in_s: float = 0.0

    def check(self) -> None:
        """Raise ProcessFailedError if any process has died (a dead stand-in is reported, not hidden)."""
        for process in self.processes:
            process.check_running()

    def dead(self) -> list[ManagedProcess]:
        return [p for p in self.processes if p.exit_code() is not None]

    def stop(self) -> None:
        # Reverse order: producers of events go first, their consumers last.
        for process in reversed(self.processes):
            process.stop()

    def describe(self) -> list[tuple[str, str]]:
        env = self.env
        rows = [
            ("function app", env.host_url),
            ("Azurite Table service", f"http://127.0.0.1:{env.azurite_port}/devstoreaccount1"),
        ]
        rows += [
            (f"registry {r.name}{' (primary)' if r.primary else ''}", r.registry_url)
            for r in env.regions
        ]
        rows += [
            ("Foundry / Azure ML ARM emulator", env.arm_url),
            ("Event Grid emulator", env.eventgrid_url),
            ("registry notifications relay / knobs", env.relay_url),
            ("local CA", str(self.tls.ca_pem)),
            ("logs", str(env.state_dir / "logs")),
        ]
        return rows


def topics(env: LocalEnv) -> list[TopicSpec]:
    """The two topics of the deployed system: ACR's system topic and georollout's own."""
    eventgrid_hook = f"{env.host_url}/runtime/webhooks/eventgrid?functionName="
    return [
        TopicSpec(
            name=ACR_TOPIC,
            input_schema=InputSchema.EVENT_GRID,
            key=LOCAL_TOPIC_KEY,
            subscriptions=(
                SubscriptionSpec(
                    name="on-image-pushed",
                    endpoint=eventgrid_hook + "on_image_pushed",
                    included_event_types=("Microsoft.ContainerRegistry.ImagePushed",),
                ),
            ),
        ),
        TopicSpec(
            name=EVENTS_TOPIC,
            input_schema=InputSchema.CLOUD_EVENTS,
            key=LOCAL_TOPIC_KEY,
            subscriptions=(
                SubscriptionSpec(
                    name="on-rollout-event", endpoint=eventgrid_hook + "on_rollout_event"
                ),
            ),
        ),
    ]


def _inherited_environment() -> dict[str, str]:
    """This process's environment for the host, less what azure-ai-ml sets process-wide:
    AZUREML_CURRENT_CLOUD names a cloud registered only in the process that set it, and
    the host's import of azure-ai-ml fails on an unknown one."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AZUREML_")}


class PortsInUseError(RuntimeError):
    """Another process (often another `make up`) already listens on the environment's ports."""


def ports_of(env: LocalEnv) -> dict[str, int]:
    ports = {
        "function app": env.host_port,
        "Azurite": env.azurite_port,
        "ARM emulator": env.arm_port,
        "Event Grid emulator": env.eventgrid_port,
        "registry relay": env.relay_port,
    }
    ports.update({f"registry {r.name}": r.registry_port for r in env.regions})
    return ports


def check_ports_free(env: LocalEnv) -> None:
    """Refuse to start over a running environment: a busy port would pass a readiness check."""
    busy = [
        f"{name} ({port})" for name, port in ports_of(env).items() if port_open("127.0.0.1", port)
    ]
    if busy:
        raise PortsInUseError(
            "these ports are already in use (is another `make up` or `make demo` running?): "
            + ", ".join(busy)
        )


def start_stack(
    env: LocalEnv, *, app_dir: Path = REPO_ROOT, extra_settings: dict[str, str] | None = None
) -> Stack:
    """Start every stand-in and the function app; on any failure stop what was started and raise."""
    check_ports_free(env)
    began = time.monotonic()
    tls = ensure_tls(env.state_dir / "tls")
    stack = Stack(env=env, tls=tls)
    logs = env.state_dir / "logs"
    try:
        stack.processes.append(start_azurite(env))
        stack.processes.append(start_arm_emulator(env, tls))
        settings = _inherited_environment() | app_settings(env, tls) | (extra_settings or {})
        stack.processes.append(
            start_functions_host(
                app_dir, env.host_port, log_path=logs / "functions-host.log", env=settings
            )
        )
        stack.processes.append(start_eventgrid(env, tls, topics(env)))
        stack.processes.append(
            start_registries(env, tls, eventgrid_topic_endpoint=topic_endpoint(env, ACR_TOPIC))
        )
    except BaseException:
        stack.stop()
        raise
    stack.started_in_s = time.monotonic() - began
    return stack


__all__ = [
    "PortsInUseError",
    "ProcessFailedError",
    "Stack",
    "check_ports_free",
    "start_stack",
    "topics",
]
