"""The rollout model: one image digest rolled out to one target, tracked region by region.

Values are immutable; the state machine (`shared.domain.rollout`) returns new
values. A rollout's own state is derived from its regions, never stored.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from shared.domain.events import OutgoingEvent
from shared.domain.push import Build
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
    HELD = "held"  # waits for a failed primary (an operator's hold is `operator_hold`)
    ROLLED_BACK = "rolled_back"
    AWAITING_APPROVAL = "awaiting_approval"  # replicated; its wave's approval gate is closed
    # All traffic is on the new deployment and it is watched until the soak time ends; the
    # next wave waits for it. Serving, like `live`, but not settled.
    SOAKING = "soaking"


# States in which a region still moves without outside help.
MOVING_REGION_STATES = frozenset(
    {RegionState.AWAITING_REPLICATION, RegionState.REPLICATED, RegionState.DEPLOYING}
)
# States a supersession stops (TIMED_OUT can still turn up, so it stops too).
UNFINISHED_REGION_STATES = MOVING_REGION_STATES | {
    RegionState.TIMED_OUT,
    RegionState.HELD,
    RegionState.AWAITING_APPROVAL,
}
# States an operator's hold applies to: the region has not finished.
HOLDABLE_REGION_STATES = UNFINISHED_REGION_STATES


class DeployStep(enum.StrEnum):
    """Blue-green sub-steps of a region's deployment."""

    # The endpoint is leased and the deployment's name recorded, before anything is created:
    # a supersession that lands after this point knows which deployment to discard.
    REQUESTED = "requested"
    CREATING = "creating"  # deployment created with 0% traffic; provisioning
    VERIFYING = "verifying"  # provisioned; smoke request pending
    SHIFTING_TRAFFIC = "shifting_traffic"  # verified; traffic to move to it (the next step)
    # A traffic step short of 100%: the deployment takes part of the traffic and is watched
    # for the rule's step time before the next step.
    HOLDING_STEP = "holding_step"
    # Live; the previous deployment is kept (0% traffic) so that a rollback is a traffic
    # change, until the rollout settled and the keep time passed.
    KEEPING_PREVIOUS = "keeping_previous"
    CLEANING_UP = "cleaning_up"  # live; previous deployment to delete
    DONE = "done"
    DISCARDING = "discarding"  # failed, superseded or rolled back; our deployment to delete
    DISCARDED = "discarded"
    # An operator's rollback: traffic goes back to `restore_to` (the previous deployment, or
    # one redeployed from the previous image when that was deleted already).
    RESTORING = "restoring"
    REDEPLOYING_PREVIOUS = "redeploying_previous"


class RolloutState(enum.StrEnum):
    """A rollout's state, derived from its regions."""

    IGNORED = "ignored"
    ROLLED_BACK = "rolled_back"
    SUPERSEDED = "superseded"
    FAILED = "failed"
    HELD = "held"
    AWAITING_APPROVAL = "awaiting_approval"
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
class OperationPace:
    """ARM's Retry-After for a long-running operation a deploy step started: checks of the
    region come this often while it is at that step (never slower than the deploy poll)."""

    step: DeployStep
    every_s: float


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
    # What the region waits for before its next step (an endpoint being created, another
    # rollout's lease...): not an error, so kept apart from `last_error`.
    waiting_for: str | None = None
    # When the current deploy step began: every step has a deadline.
    step_started_at: datetime | None = None
    # The rollout whose deployment served before this one went live (it is then replaced).
    previous_rollout: str | None = None
    # Probing ended for good (the give-up time passed without the image).
    gave_up: bool = False
    # Until when this rollout holds the endpoint's lease in this region (None: it holds none).
    lease_until: datetime | None = None
    smoke_attempts: int = 0
    # Operator steering. `attempt` counts tries (a retry starts the next; it is part of the
    # deployment's name); `attempt_started_at` restarts the replication deadline.
    attempt: int = 1
    attempt_started_at: datetime | None = None
    # An operator's hold: no new deployment step starts here (one in flight finishes).
    operator_hold: bool = False
    # When the last hold was lifted: deadlines of a paused step count from then.
    resumed_at: datetime | None = None
    # A retry asked for while the failed attempt's deployment is still being deleted.
    retry_requested: bool = False
    # A rollback asked for while traffic was moving here: it starts once the region is live.
    rollback_requested: bool = False
    # Where a rollback sends traffic, and the image it redeploys when that deployment is gone.
    restore_to: DeploymentRef | None = None
    restore_image: str | None = None
    # Progressive delivery: the share of the endpoint's traffic our deployment has (as last
    # set), when the current traffic step and the soak end, and the watch's checks so far
    # in the current step or soak.
    traffic_percent: int = 0
    step_until: datetime | None = None
    soak_until: datetime | None = None
    next_verify_at: datetime | None = None
    verify_passes: int = 0
    verify_failures: int = 0
    # How often ARM asked to be polled about the operation this region's step started.
    operation_pace: OperationPace | None = None
    # When the image should reach this replica (set once, from the region's replication
    # statistics; None without history): `shared.domain.replication`.
    expected_at: datetime | None = None
    # When a probe last found the replica without the image: the image turned up after it.
    absent_at: datetime | None = None

    @property
    def eta(self) -> datetime | None:
        """The expected arrival while the region still waits for its replica."""
        return self.expected_at if self.state is RegionState.AWAITING_REPLICATION else None

    @property
    def poll_every_s(self) -> float | None:
        """ARM's pace for the operation in flight (None: the deploy poll alone)."""
        pace = self.operation_pace
        return pace.every_s if pace is not None and pace.step is self.deploy_step else None

    @property
    def shown_state(self) -> RegionState:
        """The state operators see: `held` while an operator's hold applies."""
        if self.operator_hold and self.state in HOLDABLE_REGION_STATES:
            return RegionState.HELD
        return self.state


@dataclass(frozen=True, slots=True)
class Rollout:
    """One (registry, repository, digest) rolled out to one target.

    `pushed_at` is the payload's time, a hint for display only. `confirmed_at` orders
    rollouts on one endpoint: when the primary registry confirmed that a pushed tag points
    at this digest (georollout's clock, never a caller's); None until then, and an
    unconfirmed rollout neither deploys nor supersedes anything. `tags` are the confirmed
    tags, `pending_tags` those a notice claimed and the registry has not confirmed yet.
    `generation` counts re-pushes after the rollout was replaced. `deployable` is None
    until the manifest has been inspected; `platform_digest` is the manifest that runs
    (an index's linux/amd64 child, or the image itself). `outbox` holds events to
    publish, saved with the state change that caused them.
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
    confirmed_at: datetime | None = None
    pending_tags: tuple[str, ...] = ()
    platform_digest: str | None = None
    # Every tag the registry confirmed for this generation, also those that moved on since:
    # it tells a re-push (a tag moved back to this digest) from a redelivered old event.
    tags_seen: tuple[str, ...] = ()
    # Steps that raised in a row (an adapter fault no action handles): the timer backs off
    # this rollout until `retry_after`, so one broken rollout never hogs the due queue.
    step_failures: int = 0
    step_error: str | None = None
    retry_after: datetime | None = None
    # When the registry reported this digest deleted (None: not deleted, or pushed again).
    deleted_at: datetime | None = None
    # The builds that announced this digest (newest last, bounded).
    builds: tuple[Build, ...] = ()
    # Operator steering: approval gates opened so far, every action (accepted or refused,
    # newest last, bounded), and when an operator rolled the rollout back (None: never,
    # or retried since).
    gates: tuple[ApprovalGate, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    rolled_back_at: datetime | None = None
    # Why the rollout was rolled back when georollout did it (a wave failed its verification).
    rollback_reason: str | None = None

    @property
    def state(self) -> RolloutState:
        """The rollout's state, following the brief's precedence."""
        states = [r.shown_state for r in self.regions]
        if self.ignored_reason is not None:
            return RolloutState.IGNORED
        if self.rolled_back_at is not None:
            return RolloutState.ROLLED_BACK
        if RegionState.SUPERSEDED in states:
            return RolloutState.SUPERSEDED
        if any(s in (RegionState.FAILED, RegionState.ROLLED_BACK) for s in states):
            return RolloutState.FAILED
        if any(r.operator_hold and r.state in HOLDABLE_REGION_STATES for r in self.regions):
            return RolloutState.HELD
        if RegionState.AWAITING_APPROVAL in states or any(
            g.approved_at is None for g in self.gates
        ):
            return RolloutState.AWAITING_APPROVAL
        if states and all(s is RegionState.LIVE for s in states):
            return RolloutState.LIVE
        moving = any(s in MOVING_REGION_STATES for s in states)
        if RegionState.TIMED_OUT in states and not moving:
            return RolloutState.TIMED_OUT
        if any(s in (RegionState.DEPLOYING, RegionState.SOAKING, RegionState.LIVE) for s in states):
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


@dataclass(frozen=True, slots=True)
class RolloutSummary:
    """What the endpoint index keeps about each rollout targeting one endpoint: enough to
    order them (the registry's confirmation decides) without reading every document."""

    id: str
    repository: str
    digest: str
    generation: int
    confirmed_at: datetime | None
    tags_seen: tuple[str, ...]
    deployable: bool | None
    ignored: bool


def summarize(rollout: Rollout) -> RolloutSummary:
    """The endpoint index's view of `rollout`."""
    return RolloutSummary(
        id=rollout.id,
        repository=rollout.repository,
        digest=rollout.digest,
        generation=rollout.generation,
        confirmed_at=rollout.confirmed_at,
        tags_seen=rollout.tags_seen,
        deployable=rollout.deployable,
        ignored=rollout.ignored_reason is not None,
    )


@dataclass(frozen=True, slots=True)
class ApprovalGate:
    """The approval a wave waits for: opened when the wave before it is live."""

    wave: int
    opened_at: datetime
    approved_at: datetime | None = None
    approved_by: str | None = None


class OperatorAction(enum.StrEnum):
    APPROVE = "approve"
    HOLD = "hold"
    RESUME = "resume"
    RETRY = "retry"
    ROLLBACK = "rollback"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One operator action, accepted or refused: the rollout's audit trail.

    `actor_verified` is True only when Azure App Service authentication named the caller;
    otherwise `actor` is what the caller claimed. `request_id` makes re-applying the same
    request (a retried write) a no-op."""

    at: datetime
    action: OperatorAction
    actor: str
    actor_verified: bool
    reason: str | None
    regions: tuple[str, ...]
    outcome: str  # "accepted" or "refused"
    message: str | None
    request_id: str


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
