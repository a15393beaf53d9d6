"""The registry event record shared by ACR webhooks, Event Grid `data` and Distribution
notifications: `{id, timestamp, action, target: {mediaType, size, digest, repository, tag}, request: {host}}`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.domain.push import DeleteNotice, NoticeSource, PushNotice
from shared.errors import InvalidInputError
from shared.intake.validation import (
    optional_size,
    optional_str,
    optional_timestamp,
    require_mapping,
    require_str,
    validate_digest,
    validate_registry,
    validate_repository,
    validate_tag,
)


def parse_push_record(
    record: Mapping[str, Any],
    *,
    prefix: str,
    source: NoticeSource,
    registry: str | None,
    region: str | None,
    fallback_time: datetime | None = None,
) -> PushNotice:
    """Validate a push record; field names in errors start with `prefix` (e.g. `data.`).

    `registry`, when given (the configured login server), wins over `request.host`.
    """
    target = require_mapping(record.get("target"), f"{prefix}target")
    repository = validate_repository(
        require_str(target, "repository", f"{prefix}target.repository"),
        f"{prefix}target.repository",
    )
    digest = validate_digest(
        require_str(target, "digest", f"{prefix}target.digest"), f"{prefix}target.digest"
    )
    tag = optional_str(target, "tag", f"{prefix}target.tag")
    if tag is not None:
        validate_tag(tag, f"{prefix}target.tag")
    size = optional_size(target, "size", f"{prefix}target.size")
    if size is None:
        size = optional_size(target, "length", f"{prefix}target.length")
    host: str | None = registry
    if host is None:
        request = record.get("request")
        if request is None:
            raise InvalidInputError(
                f"{prefix}request.host", "is required (no registry configured)", "missing_field"
            )
        host = require_str(
            require_mapping(request, f"{prefix}request"), "host", f"{prefix}request.host"
        )
    field = f"{prefix}request.host" if registry is None else "registry"
    return PushNotice(
        registry=validate_registry(host, field),
        repository=repository,
        digest=digest,
        source=source,
        tag=tag,
        media_type=optional_str(target, "mediaType", f"{prefix}target.mediaType"),
        size=size,
        pushed_at=optional_timestamp(record, "timestamp", f"{prefix}timestamp") or fallback_time,
        region_hint=region,
        event_id=optional_str(record, "id", f"{prefix}id"),
    )


def parse_delete_record(
    record: Mapping[str, Any], *, prefix: str, source: NoticeSource, registry: str | None
) -> DeleteNotice | None:
    """A manifest delete (`target.digest`), or None for a delete that names no digest
    (a tag delete, or a repository delete, which ACR reports per manifest anyway)."""
    target = require_mapping(record.get("target"), f"{prefix}target")
    digest = optional_str(target, "digest", f"{prefix}target.digest")
    if digest is None or optional_str(target, "tag", f"{prefix}target.tag") is not None:
        return None
    repository = validate_repository(
        require_str(target, "repository", f"{prefix}target.repository"),
        f"{prefix}target.repository",
    )
    host: str | None = registry
    if host is None:
        request = require_mapping(record.get("request"), f"{prefix}request")
        host = require_str(request, "host", f"{prefix}request.host")
    return DeleteNotice(
        registry=validate_registry(host, "registry" if registry else f"{prefix}request.host"),
        repository=repository,
        digest=validate_digest(digest, f"{prefix}target.digest"),
        source=source,
        event_id=optional_str(record, "id", f"{prefix}id"),
    )
