"""Dead-lettered events as files, shaped like Azure's dead-letter blobs.

Azure writes a JSON array of events, each with `deadLetterReason`, `deliveryAttempts`,
`lastDeliveryOutcome`, `lastHttpStatusCode`, `publishTime` and `lastDeliveryAttemptTime`
added; here one file holds one event, under `deadletter/<topic>/<subscription>/`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devenv.eventgrid.config import write_json_atomically
from devenv.eventgrid.spool import PendingDelivery

MAX_DELIVERY_ATTEMPTS_EXCEEDED = "MaxDeliveryAttemptsExceeded"
TIME_TO_LIVE_EXCEEDED = "TimeToLiveExceeded"
# Azure dead-letters at once, without retrying, on these webhook answers.
UNDELIVERABLE_STATUS_REASONS = {
    400: "UndeliverableDueToHttpBadRequest",
    401: "UndeliverableDueToHttpUnauthorized",
    403: "UndeliverableDueToHttpForbidden",
    413: "UndeliverableDueToHttpRequestEntityTooLarge",
}
UNSAFE_FILE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]")


def dead_letter_dir(state_dir: Path, topic: str, subscription: str) -> Path:
    return state_dir / "deadletter" / topic.lower() / subscription.lower()


def write_dead_letter(state_dir: Path, item: PendingDelivery, reason: str) -> Path:
    """Write the event with Azure's dead-letter properties; returns the file written."""
    record: dict[str, Any] = {
        **item.event,
        "deadLetterReason": reason,
        "deliveryAttempts": item.attempts,
        "lastDeliveryOutcome": item.last_outcome or "NotAttempted",
        "lastHttpStatusCode": item.last_http_status or 0,
        "publishTime": _rfc3339(item.published_at),
        "lastDeliveryAttemptTime": (
            _rfc3339(item.last_attempt_at) if item.last_attempt_at is not None else None
        ),
    }
    event_id = UNSAFE_FILE_CHARACTERS.sub("_", str(item.event.get("id", "")))[:100]
    path = (
        dead_letter_dir(state_dir, item.topic, item.subscription)
        / f"{item.seq:020d}-{event_id}.json"
    )
    write_json_atomically(path, [record])
    return path


def _rfc3339(epoch_s: float) -> str:
    return (
        datetime.fromtimestamp(epoch_s, UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )
