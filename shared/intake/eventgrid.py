"""ACR events delivered by Event Grid, in the Event Grid schema or CloudEvents 1.0."""

from __future__ import annotations

from typing import Any

from shared.domain.push import DeleteNotice, NoticeSource, PushNotice
from shared.intake.notices import Ignored
from shared.intake.push_record import parse_delete_record, parse_push_record
from shared.intake.validation import optional_str, optional_timestamp, require_mapping, require_str

IMAGE_PUSHED = "Microsoft.ContainerRegistry.ImagePushed"
IMAGE_DELETED = "Microsoft.ContainerRegistry.ImageDeleted"
_ACR_PREFIX = "Microsoft.ContainerRegistry."
_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"


def is_cloud_event(obj: Any) -> bool:
    """True for a CloudEvents 1.0 envelope (it carries `specversion`)."""
    return isinstance(obj, dict) and "specversion" in obj


def parse_eventgrid_event(
    obj: Any, *, registry: str | None = None, region: str | None = None
) -> PushNotice | DeleteNotice | Ignored:
    """One Event Grid event (either schema) -> PushNotice for ImagePushed, DeleteNotice for
    the ImageDeleted of a manifest, Ignored otherwise.

    Raises InvalidInputError naming the field (e.g. `data.target.digest`) for a malformed
    ImagePushed event. `registry` (the configured login server) wins over `data.request.host`;
    `region` (or else `data.location`) becomes the notice's region hint.
    """
    event = require_mapping(obj, "event")
    cloud = is_cloud_event(event)
    type_field, time_field = ("type", "time") if cloud else ("eventType", "eventTime")
    event_type = require_str(event, type_field, type_field)
    event_id = optional_str(event, "id", "id")
    if event_type == IMAGE_DELETED:
        deleted = parse_delete_record(
            require_mapping(event.get("data"), "data"),
            prefix="data.",
            source=NoticeSource.EVENTGRID,
            registry=registry,
        )
        if deleted is not None:
            return deleted
        return Ignored(
            f"{event_type} of a tag creates no rollout", kind=event_type, event_id=event_id
        )
    if event_type != IMAGE_PUSHED:
        if event_type == _VALIDATION:
            reason = "subscription validation (answered by the host)"
        elif event_type.startswith(_ACR_PREFIX):
            reason = f"{event_type} creates no rollout"
        else:
            reason = f"unsupported event type {event_type}"
        return Ignored(reason, kind=event_type, event_id=event_id)
    data = require_mapping(event.get("data"), "data")
    location = optional_str(data, "location", "data.location")
    notice = parse_push_record(
        data,
        prefix="data.",
        source=NoticeSource.EVENTGRID,
        registry=registry,
        region=region or location,
        fallback_time=optional_timestamp(event, time_field, time_field),
    )
    return notice
