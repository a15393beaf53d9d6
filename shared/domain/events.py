"""The catalogue of events georollout publishes (CloudEvents 1.0) and their deterministic ids."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Fixed namespace so an event's id is the same in every process and release.
_EVENT_ID_NAMESPACE = uuid.UUID("6f1d0c52-3a5e-4c1b-9a4f-2f7e8a0b9c31")


class EventType(enum.StrEnum):
    """CloudEvents `type` values of the events georollout publishes."""

    REPLICA_AVAILABLE = "georollout.replica.available"
    REPLICATION_COMPLETED = "georollout.replication.completed"
    REPLICATION_TIMED_OUT = "georollout.replication.timedout"
    REGION_LIVE = "georollout.region.live"
    REGION_FAILED = "georollout.region.failed"
    REGION_ROLLED_BACK = "georollout.region.rolledback"
    ROLLOUT_FINISHED = "georollout.rollout.finished"
    # An operator's action, accepted or refused (data.outcome says which).
    OPERATOR_APPROVE = "georollout.operator.approve"
    OPERATOR_HOLD = "georollout.operator.hold"
    OPERATOR_RESUME = "georollout.operator.resume"
    OPERATOR_RETRY = "georollout.operator.retry"
    OPERATOR_ROLLBACK = "georollout.operator.rollback"


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """An event waiting in a rollout's outbox until the publisher confirms it.

    `data` is JSON-safe. `region` is empty for rollout-wide events.
    """

    id: str
    type: EventType
    subject: str
    time: datetime
    region: str
    data: dict[str, Any]


def event_id(
    rollout_id: str, generation: int, region: str, event_type: EventType, attempt: int = 1
) -> str:
    """Deterministic id: a republished event keeps its id, so subscribers can drop duplicates.
    An operator's retry counts as a new `attempt`: its events are new events."""
    name = f"{rollout_id}/{generation}/{region}/{event_type.value}"
    if attempt > 1:
        name += f"/a{attempt}"
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, name))


def operator_event_id(rollout_id: str, request_id: str) -> str:
    """The id of the event that records one operator request."""
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, f"{rollout_id}/operator/{request_id}"))


def event_subject(repository: str, digest: str) -> str:
    """The CloudEvents `subject`: `<repository>@<digest>`."""
    return f"{repository}@{digest}"
