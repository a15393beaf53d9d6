"""The replica probe: asks one region's registry endpoint whether a manifest digest is there.

It uses the OCI route (`GET /v2/<repo>/manifests/<digest>`) through
azure-containerregistry, which works the same against ACR's regional endpoints
and the local Distribution registries. The ACR-only `/acr/v1/...` routes would
answer 404 locally and look exactly like "not replicated yet".
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from azure.containerregistry.aio import ContainerRegistryClient
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import AioHttpTransport

from shared.adapters.http_pool import tls_context
from shared.domain.model import ProbeEvidence
from shared.domain.verdicts import ProbeOutcome, ProbeVerdict

# Headers worth keeping as evidence: they tell a local copy from a proxied one
# once ACR's geo sync proxy ships, and help when a verdict is disputed.
EVIDENCE_HEADERS = (
    "docker-content-digest",
    "content-type",
    "content-length",
    "x-ms-request-id",
    "x-ms-correlation-request-id",
    "x-ms-client-request-id",
    "retry-after",
    "via",
    "x-cache",
    "date",
)
ACR_AUDIENCE = "https://containerregistry.azure.net"


@dataclass(frozen=True)
class ManifestRead:
    """A manifest as one replica served it (for deciding whether it is a deployable image);
    `digest` is the manifest's digest (what a tag points at, when read by tag)."""

    outcome: ProbeOutcome
    manifest: Mapping[str, Any] | None = None
    media_type: str | None = None
    digest: str | None = None


# Failures that give no verdict at all (ValueError: a digest mismatch or a malformed answer).
_NO_ANSWER = (
    ServiceRequestError,
    ServiceResponseError,
    TimeoutError,
    aiohttp.ClientError,
    OSError,
    ValueError,
)
# An image config is a few KiB; anything far larger is not one worth parsing.
_MAX_CONFIG_BYTES = 1024 * 1024


class ReplicaProbe:
    """Probes regional registry endpoints; one async client per region, sharing one connection pool."""

    def __init__(
        self,
        endpoints: Mapping[str, str],
        *,
        credential: AsyncTokenCredential | None,
        ca_bundle: str | None = None,
        max_connections: int = 16,
        timeout_s: float = 10.0,
        audience: str = ACR_AUDIENCE,
    ) -> None:
        self._endpoints = dict(endpoints)
        self._credential = credential
        self._audience = audience
        self._timeout_s = timeout_s
        # One SSL context for the pool shared by every region's client (see http_pool).
        self._ssl = tls_context(ca_bundle)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[str, ContainerRegistryClient] = {}

    def _client(self, region: str) -> ContainerRegistryClient:
        client = self._clients.get(region)
        if client is None:
            if self._session is None:
                connector = aiohttp.TCPConnector(ssl=self._ssl, limit=self._max_connections)
                self._session = aiohttp.ClientSession(connector=connector)
            transport = AioHttpTransport(session=self._session, session_owner=False)
            client = ContainerRegistryClient(
                self._endpoints[region],
                self._credential,
                audience=self._audience,
                transport=transport,
                # The tick does its own backoff inside a request budget: no hidden retries.
                retry_total=0,
                connection_timeout=self._timeout_s,
                read_timeout=self._timeout_s,
            )
            self._clients[region] = client
        return client

    async def probe(self, region: str, repository: str, digest: str) -> ProbeOutcome:
        """Ask `region`'s replica for `repository@digest`: 200 present, 404 absent,
        401/403 configuration error, anything else transient (no verdict)."""
        return (await self.read_manifest(region, repository, digest)).outcome

    async def resolve_tag(self, region: str, repository: str, tag: str) -> ManifestRead:
        """Where `tag` points in `region`'s replica now: PRESENT with `digest`, or ABSENT
        (no such tag), or no verdict. Read by tag, the client checks the body against the
        registry's Docker-Content-Digest, so the digest is the registry's word."""
        return await self.read_manifest(region, repository, tag)

    async def read_config(
        self, region: str, repository: str, digest: str
    ) -> Mapping[str, Any] | None:
        """The image config blob `digest` as JSON, or None when it cannot be read now."""
        if region not in self._endpoints:
            return None
        try:
            async with asyncio.timeout(self._timeout_s * 2):
                stream = await self._client(region).download_blob(repository, digest)
                data = b""
                async for chunk in stream:
                    data += chunk
                    if len(data) > _MAX_CONFIG_BYTES:
                        return None
        except (HttpResponseError, *_NO_ANSWER):
            return None  # no verdict: the inspection is tried again on a later step
        try:
            document = json.loads(data)
        except ValueError:
            return None
        return document if isinstance(document, dict) else None

    async def read_manifest(self, region: str, repository: str, digest: str) -> ManifestRead:
        """Like `probe`, and keep the manifest document when the replica has it
        (`digest` may also be a tag: see `resolve_tag`)."""
        if region not in self._endpoints:
            return ManifestRead(
                _outcome(
                    ProbeVerdict.CONFIG_ERROR,
                    None,
                    {},
                    f"no registry endpoint configured for region {region!r}",
                )
            )
        seen: dict[str, Any] = {}

        def keep_response(pipeline_response: Any) -> None:
            response = pipeline_response.http_response
            seen["status"] = response.status_code
            seen["headers"] = {
                k.lower(): v for k, v in response.headers.items() if k.lower() in EVIDENCE_HEADERS
            }

        try:
            async with asyncio.timeout(self._timeout_s * 2):
                result = await self._client(region).get_manifest(
                    repository, digest, raw_response_hook=keep_response
                )
        except ResourceNotFoundError:
            return ManifestRead(_outcome(ProbeVerdict.ABSENT, 404, seen.get("headers", {}), None))
        except ClientAuthenticationError as error:
            return ManifestRead(
                _outcome(
                    ProbeVerdict.CONFIG_ERROR,
                    _status(error, 401),
                    seen.get("headers", {}),
                    _message(error),
                )
            )
        except HttpResponseError as error:
            status = _status(error, None)
            verdict = ProbeVerdict.CONFIG_ERROR if status == 403 else ProbeVerdict.TRANSIENT
            return ManifestRead(_outcome(verdict, status, seen.get("headers", {}), _message(error)))
        except _NO_ANSWER as error:
            # ValueError: a digest mismatch or a malformed answer; no verdict either way.
            return ManifestRead(
                _outcome(ProbeVerdict.TRANSIENT, None, {}, f"{type(error).__name__}: {error}")
            )
        outcome = _outcome(
            ProbeVerdict.PRESENT, seen.get("status", 200), seen.get("headers", {}), None
        )
        manifest = result.manifest if isinstance(result.manifest, dict) else None
        return ManifestRead(outcome, manifest, result.media_type, result.digest)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> ReplicaProbe:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _outcome(
    verdict: ProbeVerdict, status: int | None, headers: Mapping[str, str], error: str | None
) -> ProbeOutcome:
    evidence = ProbeEvidence(status=status, headers=tuple(sorted(headers.items())), detail=error)
    return ProbeOutcome(verdict=verdict, evidence=evidence, error=error)


def _status(error: HttpResponseError, default: int | None) -> int | None:
    return error.status_code if error.status_code is not None else default


def _message(error: HttpResponseError) -> str:
    text = str(error.message or error)
    return text.splitlines()[0][:500] if text else type(error).__name__
