"""Pushing real artifacts into the primary replica and describing the push as intake would see it."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime

from devenv.config import LocalEnv
from devenv.images import OCI_MANIFEST, ImageBlobs, build_image, push_image
from devenv.tls import TlsFiles
from shared.domain.model import rollout_id
from shared.domain.push import NoticeSource, PushNotice


@dataclass(frozen=True)
class Pushed:
    """One push into the primary registry; `pushed_at` plays the registry's event timestamp."""

    registry: str
    repository: str
    tag: str
    digest: str
    size: int
    pushed_at: datetime

    @property
    def rollout_id(self) -> str:
        return rollout_id(self.registry, self.repository, self.digest)


def push(
    env: LocalEnv,
    tls: TlsFiles,
    repository: str,
    tag: str,
    *,
    seed: str,
    artifact: ImageBlobs | None = None,
) -> Pushed:
    """Push `artifact` (default: a small image made from `seed`) under `tag` to the primary."""
    blobs = artifact or build_image(size_bytes=4096, seed=seed)
    digest = push_image(env.primary.registry_url, repository, tag, blobs, ca_path=tls.ca_pem)
    return Pushed(
        registry=env.primary.registry_host,
        repository=repository,
        tag=tag,
        digest=digest,
        size=len(blobs.manifest),
        pushed_at=datetime.now(UTC),
    )


def notice_of(pushed: Pushed, *, tag: str | None = None) -> PushNotice:
    """The PushNotice an ImagePushed event for `pushed` turns into (optionally another tag)."""
    return PushNotice(
        registry=pushed.registry,
        repository=pushed.repository,
        digest=pushed.digest,
        source=NoticeSource.EVENTGRID,
        tag=tag or pushed.tag,
        media_type=OCI_MANIFEST,
        size=pushed.size,
        pushed_at=pushed.pushed_at,
    )


def delete_manifest(
    env: LocalEnv, tls: TlsFiles, region: str, repository: str, digest: str
) -> None:
    """Delete `repository@digest` from one region's registry (storage delete is enabled)."""
    request = urllib.request.Request(
        f"{env.region(region).registry_url}/v2/{repository}/manifests/{digest}", method="DELETE"
    )
    with urllib.request.urlopen(request, context=tls.client_context(), timeout=10) as response:
        assert response.status == 202, response.status


def replica_has(env: LocalEnv, tls: TlsFiles, region: str, repository: str, digest: str) -> bool:
    """Whether one region's registry serves the manifest right now."""
    request = urllib.request.Request(
        f"{env.region(region).registry_url}/v2/{repository}/manifests/{digest}",
        method="HEAD",
        headers={"Accept": OCI_MANIFEST},
    )
    try:
        with urllib.request.urlopen(request, context=tls.client_context(), timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False
