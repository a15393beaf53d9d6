"""Starts the whole local environment in dependency order and stops it again, by pid."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
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
from devenv.host.settings import HostConfigurationError, apply_local_settings
from devenv.local_settings import (
    ACR_TOPIC,
    EVENTS_TOPIC,
    app_settings,
    environment_overrides,
    is_stand_in_setting,
)
from devenv.paths import REPO_ROOT
from devenv.process import ManagedProcess, ProcessFailedError, port_open
from devenv.registries.launcher import start_registries
from devenv.tls import TlsFiles, ensure_tls
from shared.config import Config, load_config
from shared.errors import ConfigurationError
from shared.service.health import Redactor

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


def _inherited_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """This process's environment for the host, less what azure-ai-ml sets process-wide
    (AZUREML_CURRENT_CLOUD names a cloud registered only in the process that set it, and
    the host's import of azure-ai-ml fails on an unknown one) and less the shell's own
    addresses for the stand-ins (the local environment's apply)."""
    return {
        k: v
        for k, v in environ.items()
        if not k.startswith("AZUREML_") and not is_stand_in_setting(k)
    }


def host_settings(
    env: LocalEnv,
    tls: TlsFiles,
    extra_settings: Mapping[str, str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment the function app's host gets: the local environment's settings,
    then the shell's GEOROLLOUT_* settings (they win, the stand-ins' addresses excepted),
    then `extra_settings` (tests)."""
    source = os.environ if environ is None else environ
    return (
        _inherited_environment(source)
        | app_settings(env, tls)
        | environment_overrides(source)
        | dict(extra_settings or {})
    )


class InvalidSettingsError(RuntimeError):
    """The function app would start with settings it cannot work with; every problem listed."""

    def __init__(self, problems: tuple[str, ...]) -> None:
        super().__init__(
            "the function app's settings are invalid:\n"
            + "\n".join(f"  - {problem}" for problem in problems)
        )
        self.problems = problems


@contextlib.contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """Hush `logger`'s info lines: a dry run of the host's settings is not the host starting."""
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_settings(settings: Mapping[str, str], *, app_dir: Path = REPO_ROOT) -> Config:
    """Validate `settings` as the host will see them (plus app_dir's local.settings.json for
    names they do not set, the Core Tools rule) with the app's own `load_config`.

    Raises InvalidSettingsError with every problem, secret values redacted: without this
    the environment would come up and answer every push with a 500.
    """
    seen = dict(settings)
    try:
        with _quiet(logging.getLogger("devenv.host")):
            apply_local_settings(app_dir, seen)
    except HostConfigurationError as error:
        raise InvalidSettingsError((str(error),)) from None
    try:
        return load_config(seen)
    except ConfigurationError as error:
        redact = Redactor(seen)
        raise InvalidSettingsError(
            tuple(redact(problem) for problem in error.problems or (error.message,))
        ) from None


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
    """Start every stand-in and the function app; on any failure stop what was started and raise.

    InvalidSettingsError when the function app's settings are invalid (nothing started).
    """
    check_ports_free(env)
    began = time.monotonic()
    tls = ensure_tls(env.state_dir / "tls")
    # Before anything starts: settings the app cannot work with fail here, loudly, with
    # nothing left running, rather than as a 500 on every push once "up".
    settings = host_settings(env, tls, extra_settings)
    check_settings(settings, app_dir=app_dir)
    stack = Stack(env=env, tls=tls)
    logs = env.state_dir / "logs"
    try:
        stack.processes.append(start_azurite(env))
        stack.processes.append(start_arm_emulator(env, tls))
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
    "InvalidSettingsError",
    "PortsInUseError",
    "ProcessFailedError",
    "Stack",
    "check_ports_free",
    "check_settings",
    "host_settings",
    "ports_of",
    "start_stack",
    "topics",
]
