"""CNCF Distribution notification envelopes (`{"events": [...]}`): manifest pushes become notices.

Distribution sends an endpoint's events serially and retries a refused one
forever, so everything well-formed that is not a manifest push (blobs, pulls,
deletes, mounts) is Ignored, never an error. An envelope of more than
MAX_EVENTS_PER_ENVELOPE events is refused whole (413) before any is looked at:
Distribution itself posts one event per envelope, so only another sender can hit it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.domain.manifests import is_manifest_media_type
from shared.domain.push import DeleteNotice, NoticeSource, PushNotice
from shared.errors import InvalidInputError
from shared.intake.notices import Ignored
from shared.intake.push_record import parse_delete_record, parse_push_record
from shared.intake.validation import (
    check_event_count,
    optional_str,
    require_mapping,
    require_str,
)

ENVELOPE_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"


def is_distribution_envelope(obj: Any) -> bool:
    """True for `{"events": [...]}`."""
    return isinstance(obj, dict) and "events" in obj


def parse_distribution_envelope(
    obj: Any, *, registry: str | None = None, region: str | None = None, strict: bool = True
) -> list[PushNotice | DeleteNotice | Ignored]:
    """Every event of the envelope, in order.

    With `strict`, a malformed push raises InvalidInputError naming it
    (`events[2].target.digest`) and nothing of the envelope counts; with
    `strict=False` it becomes Ignored with that reason instead. Either way more than
    MAX_EVENTS_PER_ENVELOPE events raise TooManyEventsError (413).
    """
    envelope = require_mapping(obj, "body")
    events = envelope.get("events")
    if not isinstance(events, Sequence) or isinstance(events, str | bytes):
        raise InvalidInputError("events", "must be a JSON array", "invalid_type")
    check_event_count(len(events))
    parsed: list[PushNotice | DeleteNotice | Ignored] = []
    for index, raw in enumerate(events):
        prefix = f"events[{index}]."
        try:
            parsed.append(_parse_event(raw, prefix, registry, region))
        except InvalidInputError as error:
            if strict:
                raise
            parsed.append(Ignored(f"invalid event: {error.message}", kind="invalid"))
    return parsed


def _parse_event(
    raw: Any, prefix: str, registry: str | None, region: str | None
) -> PushNotice | DeleteNotice | Ignored:
    event = require_mapping(raw, prefix.rstrip("."))
    action = require_str(event, "action", f"{prefix}action")
    event_id = optional_str(event, "id", f"{prefix}id")
    if action == "delete" and isinstance(event.get("target"), dict):
        # Distribution reports blob deletes in the same shape; a blob digest names no
        # rollout, so marking it finds nothing.
        deleted = parse_delete_record(
            event, prefix=prefix, source=NoticeSource.DISTRIBUTION, registry=registry
        )
        if deleted is not None:
            return deleted
    if action != "push":
        return Ignored(f"{action} events create no rollout", kind=action, event_id=event_id)
    target = require_mapping(event.get("target"), f"{prefix}target")
    media_type = optional_str(target, "mediaType", f"{prefix}target.mediaType")
    url = optional_str(target, "url", f"{prefix}target.url") or ""
    if "/blobs/" in url or (media_type is not None and not is_manifest_media_type(media_type)):
        return Ignored("blob event", kind="blob", event_id=event_id)
    return parse_push_record(
        event, prefix=prefix, source=NoticeSource.DISTRIBUTION, registry=registry, region=region
    )
