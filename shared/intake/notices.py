"""What intake parsing yields: a PushNotice to act on, or Ignored with the reason."""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain.push import DeleteNotice, NoticeSource, PushNotice


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed delivery that creates no rollout (ping, delete, chart, blob, pull...).

    Acknowledged with 2xx; `reason` is for the log.
    """

    reason: str
    kind: str | None = None
    event_id: str | None = None


# What one delivered event turns into.
ParsedDelivery = PushNotice | DeleteNotice | Ignored

__all__ = ["DeleteNotice", "Ignored", "NoticeSource", "ParsedDelivery", "PushNotice"]
