"""The rollout model: one image digest rolled out to one target, tracked region by region.

Values are immutable; the state machine (`shared.domain.rollout`) returns new
values. A rollout's own state is derived from its regions, never stored.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from shared.domain.events import OutgoingEvent
from shared.domain.targets import Target


class RegionState(enum.StrEnum):
    """Where one region stands for one rollout."""

    AWAITING_REPLICATION = "awaiting_replication"
    REPLICATED = "replicated"
    DEPLOYING = "deploying"
    LIVE = "live"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SUPERSEDED = "superseded"
    HELD = "held"
    ROLLED_BACK = "rolled_back"


# States in which a region still moves without outside help.
MOVING_REGION_STATES = frozenset(
    {RegionState.AWAITING_REPLICATION, RegionState.REPLICATED, RegionState.DEPLOYING}
)
# States a supersession stops (TIMED_OUT can still turn up, so it stops too).
UNFINISHED_REGION_STATES = MOVING_REGION_STATES | {RegionState.TIMED_OUT, RegionState.HELD}


class DeployStep(enum.StrEnum):
    """Blue-green sub-steps of a region's deployment."""

    CREATING = "creating"  # deployment created with 0% traffic; provisioning
    VERIFYING = "verifying"  # provisioned; smoke request pending
    SHIFTING_TRAFFIC = "shifting_traffic"  # verified; traffic to move to it
    CLEANING_UP = "cleaning_up"  # live; previous deployment to delete
    DONE = "done"
    DISCARDING = "discarding"  # failed or superseded before live; our deployment to delete
    DISCARDED = "discarded"


class RolloutState(enum.StrEnum):
    """A rollout's state, derived from its regions."""

    IGNORED = "ignored"
    SUPERSEDED = "superseded"
    FAILED = "failed"
    LIVE = "live"
    TIMED_OUT = "timed_out"
    DEPLOYING = "deploying"
    REPLICATING = "replicating"


@dataclass(frozen=True, slots=True)
class ProbeEvidence:
    """What the replica answered for a verdict: status and selected headers.

    Kept so a 200 that means "pullable through a proxy" can later be told from "local".
    """

    status: int | None
    headers: tuple[tuple[str, str], ...] = ()
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class DeploymentRef:
    """An online deployment: the workspace's full ARM id, the endpoint and the deployment name."""

    workspace: str
    endpoint: str
    name: str
    # The create operation's status URL: where Azure keeps the reason of a failure.
    operation: str | None = None


@dataclass(frozen=True, slots=True)
class RegionProgress:
    """One region's progress for one rollout generation."""

    region: str
    primary: bool
    state: RegionState = RegionState.AWAITING_REPLICATION
    replicated_at: datetime | None = None
    deploy_started_at: datetime | None = None
    live_at: datetime | None = None
    probe_attempts: int = 0
    next_probe_at: datetime | None = None
    last_error: str | None = None
    evidence: ProbeEvidence | None = None
    deployment: DeploymentRef | None = None
    deploy_step: DeployStep | None = None
    previous_deployment: str | None = None
    timed_out_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Rollout:
    """One (registry, repository, digest) rolled out to one target.

    `pushed_at` orders rollouts for supersession (registry timestamp, or first
    sighting). `generation` counts re-pushes after the rollout was replaced.
    `deployable` is None until the manifest has been inspected. `outbox` holds
    events to publish, saved with the state change that caused them.
    """

    id: str
    registry: str
    repository: str
    digest: str
    tags: tuple[str, ...]
    generation: int
    pushed_at: datetime
    created_at: datetime
    updated_at: datetime
    generation_started_at: datetime
    target: Target | None
    regions: tuple[RegionProgress, ...]
    deployable: bool | None = None
    image_size_bytes: int | None = None
    ignored_reason: str | None = None
    superseded_by: str | None = None
    outbox: tuple[OutgoingEvent, ...] = ()

    @property
    def state(self) -> RolloutState:
        """The rollout's state, following the brief's precedence."""
        states = [r.state for r in self.regions]
        if self.ignored_reason is not None:
            return RolloutState.IGNORED
        if RegionState.SUPERSEDED in states:
            return RolloutState.SUPERSEDED
        if any(s in (RegionState.FAILED, RegionState.ROLLED_BACK) for s in states):
            return RolloutState.FAILED
        if states and all(s is RegionState.LIVE for s in states):
            return RolloutState.LIVE
        moving = any(s in MOVING_REGION_STATES for s in states)
        if RegionState.TIMED_OUT in states and not moving:
            return RolloutState.TIMED_OUT
        if any(s in (RegionState.DEPLOYING, RegionState.LIVE) for s in states):
            return RolloutState.DEPLOYING
        return RolloutState.REPLICATING

    @property
    def subject(self) -> str:
        """`<repository>@<digest>`, the subject of every event about this rollout."""
        return f"{self.repository}@{self.digest}"

    @property
    def primary(self) -> RegionProgress | None:
        return next((r for r in self.regions if r.primary), None)

    def region(self, name: str) -> RegionProgress:
        """The progress of region `name`; KeyError when the rollout does not cover it."""
        for progress in self.regions:
            if progress.region == name:
                return progress
        raise KeyError(name)

    @property
    def finished(self) -> bool:
        """True when nothing will change without a new push: live, failed, superseded or ignored."""
        return self.state in (
            RolloutState.LIVE,
            RolloutState.FAILED,
            RolloutState.SUPERSEDED,
            RolloutState.IGNORED,
        )


# --- identity -------------------------------------------------------------------------

_ID_SEPARATOR = "~"


def rollout_id(registry: str, repository: str, digest: str) -> str:
    """Deterministic, URL- and Table-key-safe id, reversible with `parse_rollout_id`.

    `<registry>~<repository with / as ~>~<algorithm>-<hex>`; the registry's port
    colon becomes `_` (never valid in a host name, and the registry part ends at
    the first `~`). Example: `127.0.0.1_5001~models~llm~sha256-213bbc...`.
    The registry is lower-cased (host names are case-insensitive).
    """
    algorithm, _, hexpart = digest.partition(":")
    return _ID_SEPARATOR.join(
        (
            registry.lower().replace(":", "_"),
            repository.replace("/", _ID_SEPARATOR),
            f"{algorithm}-{hexpart}",
        )
    )


def parse_rollout_id(value: str) -> tuple[str, str, str]:
    """(registry, repository, digest) from a rollout id; ValueError when it is not one."""
    parts = value.split(_ID_SEPARATOR)
    if len(parts) < 3 or not all(parts):
        raise ValueError(f"not a rollout id: {value!r}")
    algorithm, dash, hexpart = parts[-1].partition("-")
    if not dash or not hexpart:
        raise ValueError(f"not a rollout id: {value!r}")
    return parts[0].replace("_", ":"), "/".join(parts[1:-1]), f"{algorithm}:{hexpart}"
