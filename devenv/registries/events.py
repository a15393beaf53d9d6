"""ACR's event shapes built from CNCF Distribution notifications: pure functions, no I/O.

Shapes follow Microsoft's samples ("Azure Container Registry as an Event Grid source",
and the ACR webhook reference for `push`): the Event Grid schema carries `topic`,
`eventType`, `eventTime`, `dataVersion`, `metadataVersion`; CloudEvents 1.0 carries
`source`, `type`, `time`, `specversion`; both carry the same `data`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from devenv.registries.config import CLOUD_EVENT_SCHEMA, EVENT_GRID_SCHEMA

IMAGE_PUSHED = "Microsoft.ContainerRegistry.ImagePushed"

MANIFEST_MEDIA_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
INDEX_MEDIA_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)

# A fixed namespace so the same Distribution event always yields the same Event Grid id.
_EVENT_ID_NAMESPACE = uuid.UUID("5b0d3c4e-8f0b-4a5e-9a51-6f1f3c7d2a10")


@dataclass(frozen=True)
class ManifestPush:
    """A manifest push as Distribution reported it (the fields ACR's events carry)."""

    event_id: str
    timestamp: str
    media_type: str
    size: int
    digest: str
    repository: str
    tag: str | None
    request_id: str
    request_host: str
    request_method: str
    user_agent: str

    @property
    def subject(self) -> str:
        return f"{self.repository}:{self.tag}" if self.tag else self.repository


@dataclass(frozen=True)
class RegistryDelete:
    """A delete Distribution reported: of a digest (`digest` set) or of a tag (`tag` set).

    Distribution 2.8 (checked against 2.8.2) sends, for `DELETE /v2/<repo>/manifests/<digest>`,
    one event with the repository and digest (no media type), then one event with the repository
    and tag for every tag that pointed at that digest (the registry untags them itself). A blob
    delete (`DELETE /v2/<repo>/blobs/<digest>`) is reported in exactly the same shape as a manifest
    delete, so a digest delete may name a blob. 2.8 has no route that deletes a tag alone
    (`DELETE /v2/<repo>/manifests/<tag>` answers 400), so a tag delete never comes by itself.
    """

    event_id: str
    timestamp: str
    repository: str
    digest: str | None
    tag: str | None


def manifest_push(event: dict[str, Any]) -> ManifestPush | None:
    """The manifest push in one Distribution event, or None for anything else (pulls, blobs, deletes)."""
    target = event.get("target") or {}
    if event.get("action") != "push" or target.get("mediaType") not in MANIFEST_MEDIA_TYPES:
        return None
    request = event.get("request") or {}
    return ManifestPush(
        event_id=str(event.get("id") or uuid.uuid4()),
        timestamp=str(event.get("timestamp") or _now_rfc3339()),
        media_type=str(target["mediaType"]),
        size=int(target.get("size") or target.get("length") or 0),
        digest=str(target["digest"]),
        repository=str(target["repository"]),
        tag=target.get("tag") or None,
        request_id=str(request.get("id", "")),
        request_host=str(request.get("host", "")),
        request_method=str(request.get("method", "PUT")),
        user_agent=str(request.get("useragent", "")),
    )


def registry_delete(event: dict[str, Any]) -> RegistryDelete | None:
    """The delete in one Distribution event (see RegistryDelete), or None for anything else."""
    target = event.get("target") or {}
    if event.get("action") != "delete" or not target.get("repository"):
        return None
    digest = target.get("digest") or None
    tag = target.get("tag") or None
    if digest is None and tag is None:
        return None  # a repository delete: Distribution 2.8 has no HTTP route that causes one
    return RegistryDelete(
        event_id=str(event.get("id") or uuid.uuid4()),
        timestamp=str(event.get("timestamp") or _now_rfc3339()),
        repository=str(target["repository"]),
        digest=str(digest) if digest else None,
        tag=str(tag) if tag else None,
    )


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _event_time(timestamp: str) -> str:
    """Distribution's nanosecond timestamp in the 7-digit form Event Grid's samples show."""
    text = timestamp.rstrip("Z")
    if "." in text:
        seconds, fraction = text.split(".", 1)
        return f"{seconds}.{(fraction + '0000000')[:7]}Z"
    return f"{text}.0000000Z"


def acr_push_payload(push: ManifestPush) -> dict[str, Any]:
    """The `data` of ImagePushed, which is also the body of an ACR `push` webhook."""
    target: dict[str, Any] = {
        "mediaType": push.media_type,
        "size": push.size,
        "digest": push.digest,
        "length": push.size,
        "repository": push.repository,
    }
    if push.tag:
        target["tag"] = push.tag
    return {
        "id": push.event_id,
        "timestamp": push.timestamp,
        "action": "push",
        "target": target,
        "request": {
            "id": push.request_id,
            "host": push.request_host,
            "method": push.request_method,
            "useragent": push.user_agent,
        },
    }


def event_id(item: ManifestPush | RegistryDelete) -> str:
    """A stable id for one Distribution event, so a redelivered event spools no second job."""
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, item.event_id))


def image_pushed_event(push: ManifestPush, *, resource_id: str, schema: str) -> dict[str, Any]:
    """ImagePushed in the given input schema, as a dict the publisher client sends unchanged."""
    data = acr_push_payload(push)
    if schema == EVENT_GRID_SCHEMA:
        return {
            "id": event_id(push),
            "topic": resource_id,
            "subject": push.subject,
            "eventType": IMAGE_PUSHED,
            "eventTime": _event_time(push.timestamp),
            "data": data,
            "dataVersion": "1.0",
            "metadataVersion": "1",
        }
    if schema == CLOUD_EVENT_SCHEMA:
        return {
            "id": event_id(push),
            "source": resource_id,
            "subject": push.subject,
            "type": IMAGE_PUSHED,
            "time": _event_time(push.timestamp),
            "data": data,
            "specversion": "1.0",
        }
    raise ValueError(f"unknown event schema {schema!r}")
