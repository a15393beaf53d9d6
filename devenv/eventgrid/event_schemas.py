"""Checks published events the way Event Grid does before accepting them, and stamps what it adds.

A malformed event rejects the whole request with 400 and a message naming the event's
index and field, so nothing of a bad batch is delivered.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Any

from devenv.eventgrid.config import InputSchema, TopicSpec

MAX_EVENT_BYTES = 1024 * 1024
# RFC 3339 date-time; Python's parser then checks the calendar.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
CLOUD_EVENT_ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]{1,20}$")
CLOUD_EVENT_CONTEXT_ATTRIBUTES = frozenset(
    {"id", "source", "specversion", "type", "datacontenttype", "dataschema", "subject", "time"}
)
EVENT_GRID_FIELDS = frozenset(
    {"id", "topic", "subject", "data", "eventType", "eventTime", "metadataVersion", "dataVersion"}
)


class InvalidEventError(ValueError):
    """A published event Event Grid would refuse; the message says which and why."""


def validate_events(topic: TopicSpec, body: Any) -> list[dict[str, Any]]:
    """Return the events ready for delivery (Event Grid schema events get `topic` and `metadataVersion`)."""
    if not isinstance(body, list):
        raise InvalidEventError("the request body must be a JSON array of events")
    if not body:
        raise InvalidEventError("the request body is an empty array; send at least one event")
    check = (
        _validate_event_grid_event
        if topic.input_schema is InputSchema.EVENT_GRID
        else _validate_cloud_event
    )
    accepted = []
    for index, event in enumerate(body):
        if not isinstance(event, dict):
            raise InvalidEventError(f"event [{index}] must be a JSON object")
        if len(json.dumps(event).encode()) > MAX_EVENT_BYTES:
            raise InvalidEventError(f"event [{index}] is larger than 1 MB")
        accepted.append(check(topic, index, event))
    return accepted


def _validate_event_grid_event(
    topic: TopicSpec, index: int, event: dict[str, Any]
) -> dict[str, Any]:
    if "specversion" in event:
        raise InvalidEventError(
            f"event [{index}] is a CloudEvent but topic '{topic.name}' expects the Event Grid schema"
        )
    for name in ("id", "subject", "eventType"):
        _require_string(index, event, name)
    _require_time(index, event, "eventTime")
    for name in ("dataVersion", "topic"):
        if name in event and not isinstance(event[name], str):
            raise InvalidEventError(f"event [{index}]: '{name}' must be a string")
    if event.get("metadataVersion", "1") != "1":
        raise InvalidEventError(f"event [{index}]: 'metadataVersion' must be \"1\" when given")
    # Event Grid keeps only its schema's properties and fills in what the publisher left out.
    delivered = {name: value for name, value in event.items() if name in EVENT_GRID_FIELDS}
    delivered.setdefault("topic", topic.resource_id)
    delivered.setdefault("dataVersion", "")
    delivered["metadataVersion"] = "1"
    return delivered


def _validate_cloud_event(topic: TopicSpec, index: int, event: dict[str, Any]) -> dict[str, Any]:
    if "eventType" in event and "specversion" not in event:
        raise InvalidEventError(
            f"event [{index}] is an Event Grid schema event but topic '{topic.name}' "
            "expects CloudEvents 1.0"
        )
    if event.get("specversion") != "1.0":
        raise InvalidEventError(f"event [{index}]: 'specversion' must be \"1.0\"")
    for name in ("id", "source", "type"):
        _require_string(index, event, name)
    if "time" in event:
        _require_time(index, event, "time")
    for name in ("subject", "datacontenttype", "dataschema"):
        if name in event and not isinstance(event[name], str):
            raise InvalidEventError(f"event [{index}]: '{name}' must be a string")
    if "data" in event and "data_base64" in event:
        raise InvalidEventError(f"event [{index}] has both 'data' and 'data_base64'")
    if "data_base64" in event:
        encoded = event["data_base64"]
        try:
            if not isinstance(encoded, str):
                raise TypeError
            base64.b64decode(encoded, validate=True)
        except (TypeError, binascii.Error):
            raise InvalidEventError(
                f"event [{index}]: 'data_base64' must be a base64 string"
            ) from None
    for name, value in event.items():
        if name in CLOUD_EVENT_CONTEXT_ATTRIBUTES or name in ("data", "data_base64"):
            continue
        if not CLOUD_EVENT_ATTRIBUTE_NAME.match(name):
            raise InvalidEventError(
                f"event [{index}]: extension attribute '{name}' must be 1-20 lowercase letters or digits"
            )
        if value is None or isinstance(value, (dict, list)):
            raise InvalidEventError(
                f"event [{index}]: extension attribute '{name}' must be a string, number or boolean"
            )
    return dict(event)


def _require_string(index: int, event: dict[str, Any], name: str) -> None:
    value = event.get(name)
    if value is None:
        raise InvalidEventError(f"event [{index}]: required property '{name}' is missing")
    if not isinstance(value, str) or not value.strip():
        raise InvalidEventError(f"event [{index}]: '{name}' must be a non-empty string")


def _require_time(index: int, event: dict[str, Any], name: str) -> None:
    value = event.get(name)
    if value is None:
        raise InvalidEventError(f"event [{index}]: required property '{name}' is missing")
    if not isinstance(value, str) or not RFC3339.match(value):
        raise InvalidEventError(
            f"event [{index}]: '{name}' must be an RFC 3339 date-time, got {value!r}"
        )
    # The pattern checks the shape; the parser catches impossible dates such as month 13.
    try:
        datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise InvalidEventError(
            f"event [{index}]: '{name}' is not a valid date-time: {value!r}"
        ) from None


def event_type(schema: InputSchema, event: dict[str, Any]) -> str:
    return str(event["eventType"] if schema is InputSchema.EVENT_GRID else event["type"])


def event_subject(schema: InputSchema, event: dict[str, Any]) -> str:
    return str(event.get("subject") or "")
