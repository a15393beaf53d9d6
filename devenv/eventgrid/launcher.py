"""Starting the Event Grid emulator as a child process, for `make up` and the tests.

process = start_eventgrid(env, tls, [TopicSpec("georollout-events", subscriptions=(...))])
EventGridPublisherClient(topic_endpoint(env, "georollout-events"), AzureKeyCredential(LOCAL_TOPIC_KEY))
"""

from __future__ import annotations

import json
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from devenv.config import LocalEnv
from devenv.eventgrid.config import (
    ChaosSettings,
    DeliverySettings,
    EmulatorConfig,
    InputSchema,
    SubscriptionSpec,
    TopicSpec,
)
from devenv.eventgrid.deadletter import dead_letter_dir
from devenv.paths import REPO_ROOT
from devenv.ports import LOOPBACK
from devenv.process import ManagedProcess, wait_until
from devenv.tls import TlsFiles

__all__ = [
    "ChaosSettings",
    "DeliverySettings",
    "InputSchema",
    "SubscriptionSpec",
    "TopicSpec",
    "config_path",
    "dead_letters",
    "get_subscription",
    "start_eventgrid",
    "subscription_url",
    "topic_endpoint",
    "wait_subscription_active",
]


def config_path(env: LocalEnv) -> Path:
    return eventgrid_state_dir(env) / "config.json"


def eventgrid_state_dir(env: LocalEnv) -> Path:
    return env.state_dir / "eventgrid"


def start_eventgrid(
    env: LocalEnv,
    tls: TlsFiles,
    topics: Sequence[TopicSpec],
    *,
    delivery: DeliverySettings | None = None,
    chaos: ChaosSettings | None = None,
    timeout_s: float = 30,
) -> ManagedProcess:
    """Write the config, start `python -m devenv.eventgrid` on `env.eventgrid_port`, wait until it answers.

    Chaos follows `env.eventgrid_chaos` unless `chaos` is given. State (subscriptions,
    spool, dead letters) lives under `<env.state_dir>/eventgrid/` and survives restarts.
    """
    config = EmulatorConfig(
        port=env.eventgrid_port,
        state_dir=eventgrid_state_dir(env),
        cert_pem=tls.cert_pem,
        key_pem=tls.key_pem,
        ca_pem=tls.ca_pem,
        topics=tuple(topics),
        host=LOOPBACK,
        delivery=delivery or DeliverySettings(),
        chaos=chaos or ChaosSettings(enabled=env.eventgrid_chaos),
    )
    path = config_path(env)
    config.save(path)
    process = ManagedProcess(
        name="eventgrid",
        argv=[sys.executable, "-m", "devenv.eventgrid", "--config", str(path)],
        log_path=env.state_dir / "logs" / "eventgrid.log",
        cwd=REPO_ROOT,
    ).start()
    try:
        process.wait_for_port(env.eventgrid_port, timeout=timeout_s)

        def healthy() -> bool:
            process.check_running()
            return _get_json(env, tls, "/health") is not None

        wait_until(healthy, timeout=timeout_s, what="the Event Grid emulator to answer /health")
    except BaseException:
        process.stop()
        raise
    return process


def topic_endpoint(env: LocalEnv, topic_name: str) -> str:
    """The URL to give EventGridPublisherClient (it adds `?api-version=...` itself)."""
    return f"{env.eventgrid_url}/topics/{topic_name}/api/events"


def subscription_url(env: LocalEnv, topic_name: str, subscription_name: str) -> str:
    """The management API's URL for one subscription (GET/PUT/DELETE)."""
    return f"{env.eventgrid_url}/topics/{topic_name}/subscriptions/{subscription_name}"


def get_subscription(
    env: LocalEnv, tls: TlsFiles, topic_name: str, subscription_name: str
) -> dict[str, Any] | None:
    """The subscription's document from the management API, or None when it does not exist."""
    return _get_json(env, tls, f"/topics/{topic_name}/subscriptions/{subscription_name}")


def wait_subscription_active(
    env: LocalEnv, tls: TlsFiles, topic_name: str, subscription_name: str, *, timeout_s: float = 30
) -> None:
    """Wait until the subscription passed its validation handshake (the emulator retries a failed one)."""

    def active() -> bool:
        document = get_subscription(env, tls, topic_name, subscription_name)
        return document is not None and document["provisioningState"] == "Succeeded"

    wait_until(
        active,
        timeout=timeout_s,
        what=f"Event Grid subscription {topic_name}/{subscription_name} to be validated",
    )


def dead_letters(env: LocalEnv, topic_name: str, subscription_name: str) -> list[dict[str, Any]]:
    """Every dead-lettered event of one subscription, oldest first (each file holds an array, as in Azure)."""
    folder = dead_letter_dir(eventgrid_state_dir(env), topic_name, subscription_name)
    return [
        event for path in sorted(folder.glob("*.json")) for event in json.loads(path.read_text())
    ]


def _get_json(env: LocalEnv, tls: TlsFiles, path: str) -> dict[str, Any] | None:
    context = ssl.create_default_context(cafile=str(tls.ca_pem))
    try:
        with urllib.request.urlopen(
            f"{env.eventgrid_url}{path}", context=context, timeout=5
        ) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
