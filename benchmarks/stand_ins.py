"""The local stand-ins a benchmark of the whole app runs against: Azurite, the ARM emulator,
the Event Grid emulator and the registries, started together and stopped by pid."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from devenv.arm.launcher import start_arm_emulator
from devenv.azurite import start_azurite
from devenv.config import LocalEnv
from devenv.eventgrid.config import TopicSpec
from devenv.eventgrid.launcher import start_eventgrid
from devenv.local_settings import EVENTS_TOPIC
from devenv.registries import start_registries
from devenv.tls import TlsFiles


@contextmanager
def running_stand_ins(env: LocalEnv, tls: TlsFiles) -> Iterator[None]:
    """No registry sends events: a benchmark hands georollout its notices itself. One that
    fails to start stops those started before it."""
    processes = []
    try:
        processes.append(start_azurite(env))
        processes.append(start_arm_emulator(env, tls))
        processes.append(start_eventgrid(env, tls, [TopicSpec(EVENTS_TOPIC)]))
        processes.append(start_registries(env, tls, eventgrid_topic_endpoint=None))
        yield
    finally:
        for process in reversed(processes):
            process.stop()
