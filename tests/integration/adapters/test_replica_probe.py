"""The replica probe through the real azure-containerregistry aio client, over HTTPS, against the
local per-region Distribution registries (and, for statuses no registry can be made to answer,
a tiny HTTPS server that only answers those statuses)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from azure.core.credentials import AccessToken

from devenv.config import LocalEnv
from devenv.images import OCI_CONFIG, OCI_MANIFEST, build_image, push_image
from devenv.ports import LOOPBACK, free_port
from devenv.process import wait_until
from devenv.registries import RegistryControl
from devenv.tls import TlsFiles
from shared.adapters.replica_probe import ReplicaProbe
from shared.domain.verdicts import ProbeOutcome, ProbeVerdict

pytestmark = pytest.mark.integration

REPOSITORY = "models/probe-target"
UNKNOWN_DIGEST = "sha256:" + "0" * 64
SECONDARY = "westus"


@dataclass(frozen=True)
class PushedImage:
    repository: str
    digest: str


def _push(env: LocalEnv, tls: TlsFiles, seed: str) -> PushedImage:
    image = build_image(size_bytes=4096, seed=seed)
    digest = push_image(env.primary.registry_url, REPOSITORY, seed, image, ca_path=tls.ca_pem)
    assert digest == image.digest
    return PushedImage(REPOSITORY, digest)


def _endpoints(env: LocalEnv) -> dict[str, str]:
    return {region.name: region.registry_url for region in env.regions}


def _probe_once(
    endpoints: Mapping[str, str], tls: TlsFiles, region: str, repository: str, digest: str
) -> ProbeOutcome:
    """One probe from a fresh probe object (its connection pool belongs to this event loop)."""

    async def run() -> ProbeOutcome:
        async with ReplicaProbe(endpoints, credential=None, ca_bundle=str(tls.ca_pem)) as probe:
            return await probe.probe(region, repository, digest)

    return asyncio.run(run())


@pytest.fixture(scope="module")
def pushed(adapter_env: LocalEnv, tls_files: TlsFiles, registries: RegistryControl) -> PushedImage:
    return _push(adapter_env, tls_files, f"probe-{uuid.uuid4().hex[:8]}")


def test_pushed_digest_is_present_with_its_evidence(
    adapter_env: LocalEnv, tls_files: TlsFiles, pushed: PushedImage
) -> None:
    outcome = _probe_once(
        _endpoints(adapter_env), tls_files, adapter_env.primary.name, REPOSITORY, pushed.digest
    )

    assert outcome.verdict is ProbeVerdict.PRESENT, outcome
    assert outcome.evidence is not None
    assert outcome.evidence.status == 200
    headers = dict(outcome.evidence.headers)
    assert headers["docker-content-digest"] == pushed.digest
    assert outcome.error is None


def test_unknown_digest_and_unknown_repository_are_absent(
    adapter_env: LocalEnv, tls_files: TlsFiles, pushed: PushedImage
) -> None:
    endpoints = _endpoints(adapter_env)
    primary = adapter_env.primary.name

    unknown_digest = _probe_once(endpoints, tls_files, primary, REPOSITORY, UNKNOWN_DIGEST)
    unknown_repository = _probe_once(
        endpoints, tls_files, primary, "models/never-pushed", pushed.digest
    )

    for outcome in (unknown_digest, unknown_repository):
        assert outcome.verdict is ProbeVerdict.ABSENT, outcome
        assert outcome.evidence is not None and outcome.evidence.status == 404


def test_unavailable_region_is_transient_then_present_once_back_and_replicated(
    adapter_env: LocalEnv, tls_files: TlsFiles, registries: RegistryControl
) -> None:
    endpoints = _endpoints(adapter_env)
    registries.set_region(SECONDARY, unavailable=True)
    try:
        image = _push(adapter_env, tls_files, f"outage-{uuid.uuid4().hex[:8]}")
        during_outage = _probe_once(endpoints, tls_files, SECONDARY, REPOSITORY, image.digest)
    finally:
        registries.set_region(SECONDARY, unavailable=False)

    assert during_outage.verdict is ProbeVerdict.TRANSIENT, during_outage
    assert during_outage.evidence is not None and during_outage.evidence.status is None
    assert during_outage.error and "ServiceRequestError" in during_outage.error

    seen: list[ProbeOutcome] = []

    def present() -> bool:
        seen.append(_probe_once(endpoints, tls_files, SECONDARY, REPOSITORY, image.digest))
        return seen[-1].verdict is ProbeVerdict.PRESENT

    wait_until(present, timeout=30, interval=0.2, what=f"{image.digest} to reach {SECONDARY}")
    # Before the copy lands the replica answers 404 or, while restarting, refuses: never a 200.
    assert {o.verdict for o in seen[:-1]} <= {ProbeVerdict.ABSENT, ProbeVerdict.TRANSIENT}
    assert dict(seen[-1].evidence.headers)["docker-content-digest"] == image.digest  # type: ignore[union-attr]


def test_region_without_endpoint_is_a_configuration_error(
    adapter_env: LocalEnv, tls_files: TlsFiles, pushed: PushedImage
) -> None:
    outcome = _probe_once(
        _endpoints(adapter_env), tls_files, "southcentralus", REPOSITORY, pushed.digest
    )

    assert outcome.verdict is ProbeVerdict.CONFIG_ERROR
    assert outcome.error is not None and "southcentralus" in outcome.error


def test_read_manifest_returns_the_image_manifest(
    adapter_env: LocalEnv, tls_files: TlsFiles, pushed: PushedImage
) -> None:
    async def run() -> Any:
        async with ReplicaProbe(
            _endpoints(adapter_env), credential=None, ca_bundle=str(tls_files.ca_pem)
        ) as probe:
            return await probe.read_manifest(adapter_env.primary.name, REPOSITORY, pushed.digest)

    read = asyncio.run(run())

    assert read.outcome.verdict is ProbeVerdict.PRESENT
    assert read.media_type == OCI_MANIFEST
    assert read.manifest is not None
    assert read.manifest["config"]["mediaType"] == OCI_CONFIG
    assert read.manifest["layers"], read.manifest


# --- many probes at once share a bounded pool --------------------------------------------------


def _sockets_to(port: int) -> int:
    """How many of this process's TCP sockets are connected to `port` on loopback (from /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            columns = line.split()
            remote_port = int(columns[2].split(":")[1], 16)
            established = columns[3] == "01"
            if established and remote_port == port and columns[9] in inodes:
                count += 1
    return count


def test_a_hundred_concurrent_probes_share_a_bounded_pool(
    adapter_env: LocalEnv, tls_files: TlsFiles, pushed: PushedImage
) -> None:
    max_connections = 4
    port = adapter_env.primary.registry_port

    async def run() -> tuple[list[ProbeOutcome], int]:
        most = 0
        done = asyncio.Event()

        async def watch() -> None:
            nonlocal most
            while not done.is_set():
                most = max(most, _sockets_to(port))
                await asyncio.sleep(0.005)  # a sampling interval, not a wait for a condition

        async with ReplicaProbe(
            _endpoints(adapter_env),
            credential=None,
            ca_bundle=str(tls_files.ca_pem),
            max_connections=max_connections,
        ) as probe:
            watcher = asyncio.create_task(watch())
            outcomes = await asyncio.gather(
                *(
                    probe.probe(adapter_env.primary.name, REPOSITORY, pushed.digest)
                    for _ in range(100)
                )
            )
            done.set()
            await watcher
            # Kept-alive connections are still open here: the pool's size, not one per probe.
            most = max(most, _sockets_to(port))
        return outcomes, most

    outcomes, most_connections = asyncio.run(run())

    assert [o.verdict for o in outcomes] == [ProbeVerdict.PRESENT] * 100
    assert 1 <= most_connections <= max_connections, most_connections


# --- statuses a local registry never answers ----------------------------------------------------


@dataclass
class StatusServer:
    """Answers `/v2/<repository>/...` with the status the repository names (`answers-429`).

    `challenged` answers 401 with a Bearer challenge, and the token exchange refuses
    the caller: an identity without pull rights.
    """

    tls: TlsFiles
    port: int = field(default_factory=free_port)
    requests: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    async def _answer(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path}")
        if request.path.startswith("/oauth2/"):
            return _registry_error(401, "UNAUTHORIZED", "the identity may not pull")
        repository = request.path.removeprefix("/v2/").split("/manifests/")[0]
        if repository == "challenged":
            challenge = (
                f'Bearer realm="{self.url}/oauth2/token",service="{LOOPBACK}",'
                f'scope="repository:{repository}:pull"'
            )
            return _registry_error(
                401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": challenge}
            )
        status = int(repository.removeprefix("answers-"))
        headers = {"Retry-After": "7"} if status in (429, 503) else {}
        return _registry_error(status, "DENIED" if status < 429 else "TOOMANYREQUESTS", "", headers)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[StatusServer]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(
                runner, LOOPBACK, self.port, ssl_context=self.tls.server_context()
            ).start()
            yield self
        finally:
            await runner.cleanup()


def _registry_error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = {"errors": [{"code": code, "message": message or f"HTTP {status}"}]}
    return web.json_response(body, status=status, headers=dict(headers or {}))


class FixedAsyncTokenCredential:
    """An AAD token stand-in: no local AAD exists, and the status server never checks it."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("aad-token", int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> FixedAsyncTokenCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def status_server(tls_files: TlsFiles) -> Iterator[StatusServer]:
    yield StatusServer(tls_files)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (401, ProbeVerdict.CONFIG_ERROR),
        (403, ProbeVerdict.CONFIG_ERROR),
        (429, ProbeVerdict.TRANSIENT),
        (503, ProbeVerdict.TRANSIENT),
    ],
)
def test_status_maps_to_verdict_without_hidden_retries(
    status_server: StatusServer, tls_files: TlsFiles, status: int, verdict: ProbeVerdict
) -> None:
    async def run() -> ProbeOutcome:
        async with (
            status_server.running() as server,
            ReplicaProbe(
                {"eastus": server.url}, credential=None, ca_bundle=str(tls_files.ca_pem)
            ) as probe,
        ):
            return await probe.probe("eastus", f"answers-{status}", UNKNOWN_DIGEST)

    outcome = asyncio.run(run())

    assert outcome.verdict is verdict, outcome
    assert outcome.evidence is not None and outcome.evidence.status == status
    # The tick paces itself inside its request budget: one probe is one request.
    assert len(status_server.requests) == 1, status_server.requests
    if status in (429, 503):
        assert dict(outcome.evidence.headers)["retry-after"] == "7"


def test_identity_refused_by_the_token_exchange_is_a_configuration_error(
    status_server: StatusServer, tls_files: TlsFiles
) -> None:
    async def run() -> ProbeOutcome:
        async with (
            status_server.running() as server,
            ReplicaProbe(
                {"eastus": server.url},
                credential=FixedAsyncTokenCredential(),
                ca_bundle=str(tls_files.ca_pem),
            ) as probe,
        ):
            return await probe.probe("eastus", "challenged", UNKNOWN_DIGEST)

    outcome = asyncio.run(run())

    assert outcome.verdict is ProbeVerdict.CONFIG_ERROR, outcome
    assert outcome.evidence is not None and outcome.evidence.status == 401
    assert status_server.requests[0] == f"GET /v2/challenged/manifests/{UNKNOWN_DIGEST}"
    assert "POST /oauth2/exchange" in status_server.requests
