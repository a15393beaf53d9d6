"""Copies one manifest (its blobs, and an index's child manifests first) between two local registries,
and deletes one from a registry, as ACR's geo-replication carries pushes and deletes to every replica.

Plain OCI distribution routes over HTTPS with the local CA, streaming blobs, so
what arrives in the target is byte-for-byte what the primary holds.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp

from devenv.registries.events import INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES

MANIFEST_ACCEPT = ", ".join(sorted(MANIFEST_MEDIA_TYPES))
_CHUNK = 256 * 1024


class ReplicationError(RuntimeError):
    """A registry refused or failed a step of the copy."""


class ManifestGoneError(ReplicationError):
    """The source no longer has the manifest (deleted since the push): nothing left to copy."""


@dataclass(frozen=True)
class ManifestNode:
    """A manifest with what it references: blobs and, for an index, child manifests."""

    digest: str
    media_type: str
    body: bytes
    blobs: tuple[tuple[str, int], ...]  # (digest, size)
    children: tuple[ManifestNode, ...] = field(default=())

    @property
    def total_bytes(self) -> int:
        return (
            len(self.body)
            + sum(size for _, size in self.blobs)
            + sum(c.total_bytes for c in self.children)
        )


def _blob_descriptors(document: dict[str, object]) -> tuple[tuple[str, int], ...]:
    found: list[tuple[str, int]] = []
    config = document.get("config")
    if isinstance(config, dict):
        found.append((str(config["digest"]), int(config.get("size", 0))))
    layers = document.get("layers")
    for layer in layers if isinstance(layers, list) else []:
        found.append((str(layer["digest"]), int(layer.get("size", 0))))
    return tuple(found)


class RegistryCopier:
    """Reads manifests from a source registry and writes them, with their content, to targets."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    @staticmethod
    def new_session(ca_context: ssl.SSLContext) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ca_context, limit=16),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=3, sock_read=30),
        )

    async def describe(self, registry: str, repository: str, digest: str) -> ManifestNode:
        """Fetch a manifest by digest and, for an index, its children, recursively."""
        url = f"{registry}/v2/{repository}/manifests/{digest}"
        async with self.session.get(url, headers={"Accept": MANIFEST_ACCEPT}) as response:
            if response.status == 404:
                raise ManifestGoneError(f"GET {url}: 404")
            if response.status != 200:
                raise ReplicationError(f"GET {url}: {response.status}")
            body = await response.read()
            media_type = response.headers.get("Content-Type", "").split(";")[0]
        document = json.loads(body)
        media_type = document.get("mediaType") or media_type
        children: tuple[ManifestNode, ...] = ()
        if media_type in INDEX_MEDIA_TYPES:
            children = tuple(
                [
                    await self.describe(registry, repository, str(entry["digest"]))
                    for entry in document.get("manifests", [])
                ]
            )
        return ManifestNode(digest, media_type, body, _blob_descriptors(document), children)

    async def copy(
        self, node: ManifestNode, *, source: str, target: str, repository: str, tag: str | None
    ) -> None:
        """Write `node` into `target` (children and blobs first, then the manifest, then the tag)."""
        for child in node.children:
            await self.copy(child, source=source, target=target, repository=repository, tag=None)
        for digest, size in node.blobs:
            await self._copy_blob(source, target, repository, digest, size)
        await self._put_manifest(target, repository, node.digest, node)
        if tag:
            await self._put_manifest(target, repository, tag, node)

    async def has_manifest(self, registry: str, repository: str, reference: str) -> bool:
        """Whether `registry` serves the manifest; any answer but 200 or 404 is an error, not a no."""
        url = f"{registry}/v2/{repository}/manifests/{reference}"
        async with self.session.head(url, headers={"Accept": MANIFEST_ACCEPT}) as response:
            if response.status in (200, 404):
                return bool(response.status == 200)
            raise ReplicationError(f"HEAD {url}: {response.status}")

    async def delete_manifest(self, registry: str, repository: str, digest: str) -> bool:
        """Delete a manifest by digest (the registry untags it too); False if it was not there.

        404 counts as done: the copy never landed, or an earlier attempt already deleted it.
        """
        url = f"{registry}/v2/{repository}/manifests/{digest}"
        async with self.session.delete(url) as response:
            if response.status == 202:
                return True
            if response.status == 404:
                return False
            raise ReplicationError(f"DELETE {url}: {response.status} {await response.text()}")

    async def _put_manifest(
        self, registry: str, repository: str, reference: str, node: ManifestNode
    ) -> None:
        url = f"{registry}/v2/{repository}/manifests/{reference}"
        headers = {"Content-Type": node.media_type}
        async with self.session.put(url, data=node.body, headers=headers) as response:
            if response.status != 201:
                raise ReplicationError(f"PUT {url}: {response.status} {await response.text()}")

    async def _copy_blob(
        self, source: str, target: str, repository: str, digest: str, size: int
    ) -> None:
        blob_path = f"/v2/{repository}/blobs/{digest}"
        async with self.session.head(target + blob_path) as present:
            if present.status == 200:
                return
        async with self.session.post(f"{target}/v2/{repository}/blobs/uploads/") as started:
            if started.status != 202:
                raise ReplicationError(f"POST upload to {target}: {started.status}")
            location = started.headers["Location"]
        upload_url = location if location.startswith("http") else target + location
        separator = "&" if "?" in upload_url else "?"
        async with self.session.get(source + blob_path) as download:
            if download.status != 200:
                raise ReplicationError(f"GET {source}{blob_path}: {download.status}")
            length = download.headers.get("Content-Length", str(size))

            async def chunks() -> AsyncIterator[bytes]:
                async for chunk in download.content.iter_chunked(_CHUNK):
                    yield chunk

            async with self.session.put(
                f"{upload_url}{separator}digest={digest}",
                data=chunks(),
                headers={"Content-Type": "application/octet-stream", "Content-Length": length},
            ) as finished:
                if finished.status != 201:
                    raise ReplicationError(
                        f"PUT blob {digest} to {target}: {finished.status} {await finished.text()}"
                    )
