"""PushNotice: one sighting of an image push, whatever channel reported it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class NoticeSource(enum.StrEnum):
    """The channel a push was reported through."""

    EVENTGRID = "eventgrid"
    ACR_WEBHOOK = "acr_webhook"
    DISTRIBUTION = "distribution"
    BUILD_WEBHOOK = "build_webhook"


@dataclass(frozen=True, slots=True)
class Build:
    """A build system's word that it built and pushed the image: which pipeline run, from
    which commit. Shown with the rollout and carried in its events; never trusted for
    anything the registry can say."""

    system: str | None = None
    id: str | None = None
    url: str | None = None
    commit: str | None = None
    source: str | None = None
    received_at: datetime | None = None

    @property
    def identity(self) -> tuple[str | None, ...]:
        """The same build announced twice (a retried notify) counts once."""
        return (self.system, self.id, self.url, self.commit, self.source)


@dataclass(frozen=True, slots=True)
class PushNotice:
    """A validated push of `repository@digest` to `registry` (the login server).

    `pushed_at` is the registry's event timestamp when the payload has one.
    `region_hint` names the replica a regional webhook says the image reached;
    it only makes a probe happen sooner, it never counts as replicated.
    """

    registry: str
    repository: str
    digest: str
    source: NoticeSource
    tag: str | None = None
    media_type: str | None = None
    size: int | None = None
    pushed_at: datetime | None = None
    region_hint: str | None = None
    event_id: str | None = None
    build: Build | None = None


@dataclass(frozen=True, slots=True)
class DeleteNotice:
    """The registry says `repository@digest` was deleted (a manifest delete, not a tag's).

    Like a push it is a hint, but one that only ever marks: a rollout whose digest is
    gone shows it, and so does health while that digest still serves an endpoint.
    """

    registry: str
    repository: str
    digest: str
    source: NoticeSource
    event_id: str | None = None
