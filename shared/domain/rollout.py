"""The rollout state machine: pure functions from (rollout, observation, now) to a new rollout.

Level-triggered: `next_actions` reads only the recorded state and the time, so
any trigger can call it; every `record_*` function ignores an observation that
no longer fits the region's state (a duplicate, a late answer, a stale action),
and returns the very same value when nothing changes. Events for the outbox
are derived in one place (`_commit`) from the difference between the old and
the new value, so every state change and its event land in the same write.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from shared.domain import delivery
from shared.domain.delivery import ROLLBACK_STEPS as _ROLLBACK_STEPS
from shared.domain.delivery import start_rollback, takes_traffic
from shared.domain.events import EventType, OutgoingEvent, event_id
from shared.domain.model import (
    UNFINISHED_REGION_STATES,
    ApprovalGate,
    DeploymentRef,
    DeployStep,
    OperationPace,
    RegionProgress,
    RegionState,
    Rollout,
    RolloutState,
    RolloutSummary,
    rollout_id,
)
from shared.domain.names import deployment_name
from shared.domain.push import Build, PushNotice
from shared.domain.targets import ApprovalMode, DeploymentSettings, Target
from shared.domain.timestamps import format_timestamp
from shared.domain.verdicts import ProbeOutcome, ProbeVerdict

_GB = 1_000_000_000


# Initial back-offs either side of a replica's expected arrival during which it is probed at
# the initial pace: the estimate is a fit, and an image a little early or late is common.
ARRIVAL_GRACE = 4


@dataclass(frozen=True, slots=True)
class RolloutPolicy:
    """Timing knobs of the state machine (seconds)."""

    probe_initial_backoff_s: float = 10.0
    probe_max_backoff_s: float = 300.0
    probe_backoff_factor: float = 2.0
    probe_jitter_ratio: float = 0.2
    replication_timeout_base_s: float = 3600.0
    replication_timeout_per_gb_s: float = 300.0
    timed_out_probe_interval_s: float = 300.0
    # A region still without the image this long after the push stops being probed.
    give_up_after_s: float = 86_400.0
    deployment_timeout_s: float = 3600.0
    verify_timeout_s: float = 600.0
    traffic_timeout_s: float = 1800.0
    cleanup_timeout_s: float = 3600.0
    # Longer than any one step's deadline; renewed while the region still works.
    lease_ttl_s: float = 7200.0
    # How long the previous deployment is kept (0% traffic) after the rollout settled, so
    # that an operator's rollback is a traffic change rather than a redeploy.
    keep_previous_s: float = 3600.0

    def probe_delay(self, attempts: int, jitter: float) -> timedelta:
        """Exponential backoff after `attempts` probes, spread by `jitter` in [0, 1)."""
        exponent = max(attempts - 1, 0)
        # Cap the exponent where the delay reaches its maximum: `factor ** attempts` overflows
        # a float after about a thousand probes, and a rollout must never stop for that.
        factor, initial, cap = (
            self.probe_backoff_factor,
            self.probe_initial_backoff_s,
            self.probe_max_backoff_s,
        )
        if factor > 1.0 and 0.0 < initial < cap:
            exponent = min(exponent, math.ceil(math.log(cap / initial, factor)))
        elif factor > 1.0:
            exponent = 0
        base = min(cap, initial * factor ** min(exponent, 64))
        spread = 1.0 + self.probe_jitter_ratio * (2.0 * min(max(jitter, 0.0), 1.0) - 1.0)
        return timedelta(seconds=base * spread)

    @property
    def arrival_window(self) -> timedelta:
        """How far either side of an expected arrival a replica is probed at the initial pace."""
        return timedelta(seconds=self.probe_initial_backoff_s) * ARRIVAL_GRACE

    def paced_by_arrival(
        self, delay: timedelta, now: datetime, expected_at: datetime | None
    ) -> timedelta:
        """`delay` held to what the expected arrival justifies. Within `ARRIVAL_GRACE`
        initial back-offs either side of the arrival, the initial back-off (the image is due:
        look often); before that window, no later than its start; after it, no longer than
        the image is already late (so probes close in on a late image instead of backing
        off to the maximum). Never below the initial back-off; without an expected arrival,
        `delay` as it is."""
        initial = timedelta(seconds=self.probe_initial_backoff_s)
        if expected_at is None or delay <= initial:
            return delay
        window = self.arrival_window
        if now < expected_at - window:
            return max(min(delay, expected_at - window - now), initial)
        late = now - expected_at
        if late <= window:
            return initial
        return max(min(delay, late), initial)

    def replication_timeout(self, image_size_bytes: int | None) -> timedelta:
        """Size-aware: a base plus a share per GB (unknown size: the base alone)."""
        extra = self.replication_timeout_per_gb_s * (image_size_bytes or 0) / _GB
        return timedelta(seconds=self.replication_timeout_base_s + extra)


# --- actions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadPrimary:
    """Read from the primary registry what only it can confirm: the manifest (is it a
    deployable image, for linux/amd64?) when not yet known, and where each claimed tag
    points now."""

    manifest: bool
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProbeRegion:
    """Ask `region`'s replica for the manifest by digest."""

    region: str


@dataclass(frozen=True, slots=True)
class ClaimEndpoint:
    """Before deploying in `region`: look for a newer rollout on `endpoint`, take the
    endpoint's lease there, and learn which deployment serves it now."""

    region: str
    endpoint: str


@dataclass(frozen=True, slots=True)
class CreateDeployment:
    """Create the recorded deployment on its endpoint with 0% traffic (creating the endpoint
    first when it does not exist; adopting the deployment when it exists already)."""

    region: str
    deployment: DeploymentRef
    image: str
    settings: DeploymentSettings


@dataclass(frozen=True, slots=True)
class CheckDeployment:
    """Read the provisioning state of a deployment being created."""

    region: str
    deployment: DeploymentRef


@dataclass(frozen=True, slots=True)
class SmokeTest:
    """POST `request_body` to the scoring URI with `azureml-model-deployment: <name>`."""

    region: str
    deployment: DeploymentRef
    request_body: str


@dataclass(frozen=True, slots=True)
class ShiftTraffic:
    """Give the deployment `percent` of the endpoint's traffic: the rest stays on `previous`
    (the deployment that served before) below 100%; at 100% every other weight is 0."""

    region: str
    deployment: DeploymentRef
    percent: int = 100
    previous: str | None = None


@dataclass(frozen=True, slots=True)
class VerifyDeployment:
    """Check a deployment that takes traffic (a traffic step, a soak): its state as ARM
    reports it and, when `request_body` is set, a smoke request to it. The service runs its
    checks (`shared.service.verification`) and records pass or fail with a reason."""

    region: str
    deployment: DeploymentRef
    request_body: str | None


@dataclass(frozen=True, slots=True)
class DeletePrevious:
    """Delete the deployment that served before this one went live (one georollout recorded)."""

    region: str
    deployment: DeploymentRef


@dataclass(frozen=True, slots=True)
class DiscardDeployment:
    """Delete our own deployment that failed or was superseded before taking traffic."""

    region: str
    deployment: DeploymentRef


@dataclass(frozen=True, slots=True)
class RestorePrevious:
    """An operator's rollback in `region`: take the endpoint's lease, then send the traffic
    back to `restore_to` (the deployment that served before), learning whether it still
    exists; `previous_rollout` knows the image to redeploy when it does not."""

    region: str
    endpoint: str
    restore_to: DeploymentRef
    previous_rollout: str | None


@dataclass(frozen=True, slots=True)
class RedeployPrevious:
    """The previous deployment was gone: create it again from the image it ran (0% traffic,
    adopting one that exists), then traffic goes back to it."""

    region: str
    deployment: DeploymentRef
    image: str
    settings: DeploymentSettings


@dataclass(frozen=True, slots=True)
class RenewLease:
    """Extend this rollout's lease on the endpoint in `region`: the region still works."""

    region: str
    endpoint: str


@dataclass(frozen=True, slots=True)
class ReleaseLease:
    """Give up the endpoint's lease in `region`: the region is done changing it."""

    region: str
    endpoint: str


Action = (
    ReadPrimary
    | ProbeRegion
    | ClaimEndpoint
    | CreateDeployment
    | CheckDeployment
    | SmokeTest
    | ShiftTraffic
    | VerifyDeployment
    | DeletePrevious
    | DiscardDeployment
    | RenewLease
    | ReleaseLease
    | RestorePrevious
    | RedeployPrevious
)


# --- observations ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndpointClaim:
    """What `ClaimEndpoint` found: a newer rollout on the endpoint (it wins), another
    rollout holding the lease (wait), or the lease is ours until `lease_until`, with the
    deployment (and its rollout) that serves the endpoint in that region now, as recorded."""

    workspace: str
    newer: RolloutSummary | None = None
    held_by: str | None = None
    lease_until: datetime | None = None
    serving_deployment: str | None = None
    serving_rollout: str | None = None


# How many tags one rollout keeps (the newest win): a digest tagged on every build must not
# grow its document, and its events, without bound.
MAX_TAGS = 32
MAX_PENDING_TAGS = 16
# Builds kept per rollout (the newest win): a digest announced by every retry of a pipeline
# must not grow its document without bound.
MAX_BUILDS = 16
UNTAGGED_REASON = (
    "no tag in the registry points at this digest (pushed by digest, or its tags moved on): "
    "georollout deploys an image only when a tag names it; push a tag to roll it out"
)
# How far a payload's time may lie from georollout's clock and still be shown.
PLAUSIBLE_CLOCK_SKEW = timedelta(days=1)


def plausible_push_time(pushed_at: datetime | None, now: datetime) -> bool:
    """A payload time within a day of now; anything else is a forgery or a broken clock."""
    return pushed_at is not None and abs(pushed_at - now) <= PLAUSIBLE_CLOCK_SKEW


# --- creation and pushes --------------------------------------------------------------


def new_rollout(
    notice: PushNotice, regions: Sequence[str], target: Target | None, now: datetime
) -> Rollout:
    """A rollout for a first sighting of `notice`; `regions` in configured order, primary first
    (the target's rule may deploy to fewer of them).

    With no target the rollout is recorded ignored and never deployed. The notice's tag is
    only claimed: the registry confirms it (`record_tags_resolved`) before it counts.
    """
    if not regions:
        raise ValueError("a rollout needs at least one region")
    if len(set(regions)) != len(regions):
        raise ValueError(f"regions repeat: {list(regions)}")
    if target is not None:
        regions = target.delivery.select(regions)
    pushed_at = notice.pushed_at if plausible_push_time(notice.pushed_at, now) else now
    return Rollout(
        id=rollout_id(notice.registry, notice.repository, notice.digest),
        registry=notice.registry.lower(),
        repository=notice.repository,
        digest=notice.digest,
        tags=(),
        pending_tags=(notice.tag,) if notice.tag else (),
        generation=1,
        pushed_at=pushed_at or now,
        created_at=now,
        updated_at=now,
        generation_started_at=now,
        target=target,
        regions=_fresh_regions(regions),
        ignored_reason=None if target else _no_target_reason(notice),
        builds=_with_build((), notice, now),
    )


def record_push(
    rollout: Rollout, notice: PushNotice, now: datetime, *, target: Target | None = None
) -> Rollout:
    """Record another delivery of a push of this rollout's digest.

    Its tag is claimed (the registry confirms it later); nothing else of the payload
    counts: its time is a hint for display, and order comes from the registry. `target`
    (matched for the notice's tag) is adopted when the rollout had none. A region that
    gave up probing is probed again: someone says the image exists.
    """
    if rollout.id != rollout_id(notice.registry, notice.repository, notice.digest):
        raise ValueError(
            f"notice for {notice.repository}@{notice.digest} is not rollout {rollout.id}"
        )
    updated = rollout
    tag = notice.tag
    if (
        tag
        and tag not in rollout.pending_tags
        and (tag not in rollout.tags or rollout.superseded_by)
    ):
        updated = replace(updated, pending_tags=(*rollout.pending_tags, tag)[-MAX_PENDING_TAGS:])
        if updated.ignored_reason == UNTAGGED_REASON:
            updated = replace(updated, ignored_reason=None)
    if rollout.target is None and target is not None:
        # Never deployed (it had no target): the rule's regions are all it covers from now.
        chosen = target.delivery.select([r.region for r in rollout.regions])
        updated = replace(
            updated,
            target=target,
            ignored_reason=None if rollout.deployable is not False else rollout.ignored_reason,
            regions=tuple(r for r in rollout.regions if r.region in chosen),
        )
    regions = tuple(
        replace(r, gave_up=False, next_probe_at=now) if r.gave_up else r for r in updated.regions
    )
    if regions != updated.regions:
        updated = replace(updated, regions=regions)
    if updated.deleted_at is not None:
        updated = replace(updated, deleted_at=None)  # pushed again: the registry has it
    builds = _with_build(updated.builds, notice, now)
    if builds != updated.builds:
        updated = replace(updated, builds=builds)
    return _commit(rollout, updated, now)


def record_deleted(rollout: Rollout, now: datetime) -> Rollout:
    """The registry deleted this digest: shown on the rollout; regions still waiting for it
    stop being probed (it cannot arrive any more). Deployments keep running what they
    pulled; health says which endpoints still serve a deleted digest."""
    if rollout.deleted_at is not None:
        return rollout
    stopped = tuple(
        replace(
            r,
            next_probe_at=None,
            gave_up=True,
            last_error="the image was deleted from the registry",
        )
        if r.state in PROBED_STATES
        else r
        for r in rollout.regions
    )
    return _commit(rollout, replace(rollout, deleted_at=now, regions=stopped), now)


def record_deployable(
    rollout: Rollout,
    image_size_bytes: int | None,
    now: datetime,
    *,
    platform_digest: str | None = None,
) -> Rollout:
    """The manifest is a deployable image for the endpoints' platform (size: config plus
    layers, None when unknown; `platform_digest`: the manifest that runs, for an index)."""
    if rollout.deployable is not None:
        return rollout
    return _commit(
        rollout,
        replace(
            rollout,
            deployable=True,
            image_size_bytes=image_size_bytes,
            platform_digest=platform_digest or rollout.digest,
        ),
        now,
    )


def record_not_deployable(rollout: Rollout, reason: str, now: datetime) -> Rollout:
    """Not a deployable image (a chart, signature, SBOM, referrer, index child, wrong
    platform...): ignored for good, with the reason."""
    if rollout.deployable is False and rollout.ignored_reason == reason:
        return rollout
    stopped = tuple(
        replace(r, next_probe_at=None) if r.state in PROBED_STATES else r for r in rollout.regions
    )
    return _commit(
        rollout, replace(rollout, deployable=False, ignored_reason=reason, regions=stopped), now
    )


def record_tags_resolved(
    rollout: Rollout,
    resolved: dict[str, str | None],
    peers: Sequence[RolloutSummary],
    now: datetime,
) -> Rollout:
    """Record where the primary registry says each claimed tag points now (None: no such tag).

    A tag pointing at this digest is confirmed: the first confirmation of a generation
    orders the rollout on its endpoint (`confirmed_at`, georollout's clock). A tag
    pointing elsewhere is dropped: a forged, stale or redelivered claim changes nothing.
    A replaced rollout starts a new generation only when a confirmed tag had moved to a
    newer rollout on the endpoint (`peers`) and now points back here: a rollback by
    re-tagging, never a redelivered old event.
    """
    if not resolved:
        return rollout
    mine = [t for t, digest in resolved.items() if digest == rollout.digest]
    moved = {t for t, digest in resolved.items() if digest != rollout.digest}
    pending = tuple(t for t in rollout.pending_tags if t not in resolved)
    tags = _capped((*(t for t in rollout.tags if t not in moved), *mine))
    updated = replace(rollout, pending_tags=pending, tags=tags)
    if mine:
        seen = _capped((*rollout.tags_seen, *mine))
        if _replaced(rollout) and (
            rollout.confirmed_at is None
            or _moved_back(rollout, mine, peers)
            or any(t not in rollout.tags_seen for t in mine)
        ):
            if any(
                r.deploy_step in (DeployStep.DISCARDING, DeployStep.CLEANING_UP)
                for r in rollout.regions
            ):
                keep = tuple(dict.fromkeys((*pending, *mine)))
                return _commit(rollout, replace(rollout, pending_tags=keep), now)
            updated = replace(
                updated,
                generation=rollout.generation + 1,
                generation_started_at=now,
                confirmed_at=now,
                superseded_by=None,
                tags=_capped(mine),
                tags_seen=_capped(mine),
                regions=_fresh_regions([r.region for r in rollout.regions]),
            )
        elif rollout.confirmed_at is None:
            updated = replace(updated, confirmed_at=now, tags_seen=seen)
        else:
            updated = replace(updated, tags_seen=seen)
    elsewhere = [d for d in resolved.values() if d is not None and d != rollout.digest]
    if elsewhere and updated.confirmed_at is None and not updated.pending_tags:
        # Every tag it claimed already names another image: the registry says that one is
        # current, so this (older, or forged) push is superseded by it and never deploys.
        newer = rollout_id(rollout.registry, rollout.repository, elsewhere[-1])
        stopped = tuple(_stop(progress, now) for progress in updated.regions)
        updated = replace(updated, superseded_by=newer, regions=stopped)
    return _commit(rollout, updated, now)


def drop_tags(rollout: Rollout, moved: Iterable[str], now: datetime) -> Rollout:
    """These tags now point at another digest (confirmed by the registry for another rollout)."""
    gone = set(moved)
    tags = tuple(t for t in rollout.tags if t not in gone)
    if tags == rollout.tags:
        return rollout
    return _commit(rollout, replace(rollout, tags=tags), now)


def mark_index_child(rollout: Rollout, index_digest: str, now: datetime) -> Rollout:
    """This manifest is one platform of index `index_digest`: part of it, not a rollout."""
    if rollout.confirmed_at is not None and rollout.tags:
        return rollout  # tagged in its own right: a rollout of its own
    reason = (
        f"a platform manifest of the multi-platform image {index_digest}, not a rollout of its own"
    )
    return record_not_deployable(rollout, reason, now)


# --- replication ----------------------------------------------------------------------


def expedite_probe(rollout: Rollout, region: str, now: datetime) -> Rollout:
    """A hint (regional webhook) that `region` may have the image: probe it now.

    Only a probe's PRESENT marks the region replicated.
    """
    progress = _find(rollout, region)
    if progress is None or progress.state not in PROBED_STATES or rollout.deployable is False:
        return rollout
    if not progress.gave_up and (progress.next_probe_at is None or progress.next_probe_at <= now):
        return rollout
    ready = replace(progress, next_probe_at=now, gave_up=False)
    return _commit(rollout, _with_region(rollout, ready), now)


def record_probe(
    rollout: Rollout,
    region: str,
    outcome: ProbeOutcome,
    now: datetime,
    policy: RolloutPolicy,
    *,
    jitter: float,
    asked_at: datetime | None = None,
) -> Rollout:
    """Record what `region`'s replica answered at `now`.

    PRESENT marks it replicated (also after a timeout: late arrival is accepted).
    ABSENT, CONFIG_ERROR and TRANSIENT schedule the next probe with backoff
    (`jitter` in [0, 1) spreads it) from `asked_at`, when the probe went out (default:
    `now`): counted from the answer, every interval would also hold the probe's own
    latency and the pass's work, and a replica would be seen that much later each time.
    The replication timeout is applied here too.
    """
    progress = _find(rollout, region)
    if progress is None or progress.state not in PROBED_STATES:
        return rollout
    attempts = progress.probe_attempts + 1
    if outcome.verdict is ProbeVerdict.PRESENT:
        progress = replace(
            progress,
            state=RegionState.REPLICATED,
            replicated_at=now,
            probe_attempts=attempts,
            next_probe_at=None,
            last_error=None,
            gave_up=False,
            evidence=outcome.evidence,
        )
    else:
        sent = asked_at or now
        delay = policy.probe_delay(attempts, jitter)
        if outcome.verdict is ProbeVerdict.ABSENT:
            delay = policy.paced_by_arrival(delay, sent, progress.expected_at)
        if outcome.verdict is ProbeVerdict.CONFIG_ERROR:
            # Misconfiguration rarely fixes itself quickly: do not hammer the registry.
            delay = max(delay, timedelta(seconds=policy.probe_max_backoff_s))
        if progress.state is RegionState.TIMED_OUT:
            delay = max(delay, timedelta(seconds=policy.timed_out_probe_interval_s))
        progress = replace(
            progress,
            probe_attempts=attempts,
            next_probe_at=None if progress.gave_up else sent + delay,
            last_error=_probe_error(outcome, progress.last_error),
            evidence=outcome.evidence,
            # Only a 404 says the image was not there (no answer says nothing).
            absent_at=now if outcome.verdict is ProbeVerdict.ABSENT else progress.absent_at,
        )
    updated = _with_region(rollout, progress)
    return _commit(rollout, _apply_timeouts(updated, now, policy), now)


def tick(rollout: Rollout, now: datetime, policy: RolloutPolicy) -> Rollout:
    """Apply what time alone decides: replication timeouts, give-up and step deadlines."""
    return _commit(rollout, _apply_timeouts(rollout, now, policy), now)


def _waiting_since(rollout: Rollout, progress: RegionProgress | None) -> datetime:
    """Since when `progress` waits for the image: this generation, or its latest retry."""
    started = rollout.generation_started_at
    if progress is not None and progress.attempt_started_at is not None:
        return max(started, progress.attempt_started_at)
    return started


def replication_deadline(
    rollout: Rollout, policy: RolloutPolicy, progress: RegionProgress | None = None
) -> datetime:
    """When a region still without the image times out (for this generation, or from the
    region's latest retry)."""
    return _waiting_since(rollout, progress) + policy.replication_timeout(rollout.image_size_bytes)


def give_up_deadline(
    rollout: Rollout, policy: RolloutPolicy, progress: RegionProgress | None = None
) -> datetime:
    """When a region still without the image stops being probed."""
    return max(
        replication_deadline(rollout, policy, progress),
        _waiting_since(rollout, progress) + timedelta(seconds=policy.give_up_after_s),
    )


# --- deployment -----------------------------------------------------------------------


def record_endpoint_claim(
    rollout: Rollout, region: str, claim: EndpointClaim, now: datetime
) -> Rollout:
    """What `ClaimEndpoint` found. A newer rollout on the endpoint supersedes this one; a
    lease held by another rollout makes the region wait; otherwise the deployment is
    requested: its name and the deployment it replaces are recorded before anything is
    created, so a supersession from now on knows what to discard."""
    progress = _find(rollout, region)
    if progress is None or progress.state is not RegionState.REPLICATED:
        return rollout
    if rollout.target is None or rollout.superseded_by is not None:
        return rollout
    if claim.newer is not None:
        return supersede(rollout, by=claim.newer.id, now=now)
    endpoint = rollout.target.endpoint
    if claim.held_by is not None or claim.lease_until is None:
        holder = claim.held_by or "another rollout"
        waiting = replace(progress, waiting_for=f"endpoint {endpoint} is being changed by {holder}")
        return _commit(rollout, _with_region(rollout, waiting), now)
    name = deployment_name(rollout.digest, generation=rollout.generation, attempt=progress.attempt)
    previous = claim.serving_deployment if claim.serving_deployment != name else None
    requested = replace(
        progress,
        state=RegionState.DEPLOYING,
        deploy_step=DeployStep.REQUESTED,
        deploy_started_at=now,
        step_started_at=now,
        deployment=DeploymentRef(workspace=claim.workspace, endpoint=endpoint, name=name),
        previous_deployment=previous,
        previous_rollout=claim.serving_rollout if previous else None,
        lease_until=claim.lease_until,
        waiting_for=None,
        last_error=None,
        smoke_attempts=0,
    )
    return _commit(rollout, _with_region(rollout, requested), now)


# A lease younger than this may belong to a pass that has not saved yet: never taken over.
LEASE_SAVE_GRACE = timedelta(minutes=1)


def lease_abandoned(
    holder: Rollout | None,
    region: str,
    taken_at: datetime,
    now: datetime,
) -> bool:
    """Whether another rollout's lease will never be given back: its rollout is gone or does
    not record holding it (its pass took the lease, then lost its save to a concurrent
    writer, e.g. a supersession). Such a lease would otherwise block the endpoint until
    it expires."""
    if now - taken_at < LEASE_SAVE_GRACE:
        return False
    if holder is None:
        return True
    progress = _find(holder, region)
    return progress is None or progress.lease_until is None


def record_waiting(rollout: Rollout, region: str, why: str, now: datetime) -> Rollout:
    """The region cannot take its next step yet (an endpoint being created or updating...)."""
    progress = _find(rollout, region)
    if progress is None or progress.waiting_for == why:
        return rollout
    return _commit(rollout, _with_region(rollout, replace(progress, waiting_for=why)), now)


@dataclass(frozen=True, slots=True)
class EndpointStep:
    """What to do about the endpoint before creating a deployment on it: (re)apply its
    settings, and what the region waits for meanwhile (None: go on and create)."""

    apply_endpoint: bool
    waiting_for: str | None


def endpoint_step(endpoint: str, region: str, state: str) -> EndpointStep:
    """`state`: the endpoint's provisioning state, `missing`, `in_progress`, `failed` or
    `succeeded`. A failed endpoint is not a failed region: Azure ML recovers one when its
    settings are applied again, so that is tried, and the region fails only when its
    deployment deadline passes, with this reason."""
    if state == "missing":
        return EndpointStep(True, f"endpoint {endpoint} is being created")
    if state == "in_progress":
        return EndpointStep(False, f"endpoint {endpoint} is updating")
    if state == "failed":
        return EndpointStep(
            True,
            f"endpoint {endpoint} is in a failed state in {region}; georollout re-applied "
            "its settings (fix or delete the endpoint if this persists)",
        )
    return EndpointStep(False, None)


def record_deployment_created(
    rollout: Rollout, region: str, operation: str | None, now: datetime
) -> Rollout:
    """The deployment exists (created now, or found from an earlier attempt): provisioning."""
    progress = _at_step(rollout, region, DeployStep.REQUESTED)
    if progress is None or progress.deployment is None:
        return rollout
    created = replace(
        progress,
        deploy_step=DeployStep.CREATING,
        step_started_at=now,
        deployment=replace(progress.deployment, operation=operation),
        waiting_for=None,
        last_error=None,
    )
    return _commit(rollout, _with_region(rollout, created), now)


# ARM may ask for the next poll at once (Retry-After: 0) or in milliseconds; one read a
# second per region is as fast as anyone needs to see an operation end.
MIN_CHECK_INTERVAL_S = 1.0


def record_check_after(
    rollout: Rollout, region: str, retry_after_s: float | None, now: datetime
) -> Rollout:
    """ARM accepted an operation in `region` and asked to be polled every `retry_after_s`
    (its Retry-After): checks come at that pace while the region stays at this step (or at
    the deploy poll, if sooner). Without a wish (None) nothing changes: a pace given
    earlier at this step still holds, and with none the deploy poll alone paces checks."""
    progress = _find(rollout, region)
    if progress is None or retry_after_s is None or progress.deploy_step is None:
        return rollout
    pace = OperationPace(progress.deploy_step, max(retry_after_s, MIN_CHECK_INTERVAL_S))
    if progress.operation_pace == pace:
        return rollout
    return _with_region(rollout, replace(progress, operation_pace=pace))


def record_lease_renewed(rollout: Rollout, region: str, until: datetime, now: datetime) -> Rollout:
    progress = _find(rollout, region)
    if progress is None or progress.lease_until is None or progress.lease_until >= until:
        return rollout
    return _commit(rollout, _with_region(rollout, replace(progress, lease_until=until)), now)


def record_lease_released(rollout: Rollout, region: str, now: datetime) -> Rollout:
    progress = _find(rollout, region)
    if progress is None or progress.lease_until is None:
        return rollout
    return _commit(rollout, _with_region(rollout, replace(progress, lease_until=None)), now)


def record_provisioning_succeeded(rollout: Rollout, region: str, now: datetime) -> Rollout:
    """Provisioning succeeded: next the smoke request (or straight to traffic when none is set)."""
    progress = _at_step(rollout, region, DeployStep.CREATING)
    if progress is None:
        return rollout
    smoke = _settings(rollout, region).smoke_request
    step = DeployStep.VERIFYING if smoke is not None else DeployStep.SHIFTING_TRAFFIC
    moved = replace(progress, deploy_step=step, step_started_at=now, waiting_for=None)
    return _commit(rollout, _with_region(rollout, moved), now)


def record_provisioning_failed(rollout: Rollout, region: str, error: str, now: datetime) -> Rollout:
    """Provisioning failed (Azure's error text in `error`): the region failed, traffic stays."""
    if _at_step(rollout, region, DeployStep.CREATING) is None:
        return rollout
    return record_deployment_failed(rollout, region, error, now)


# Answers that say "not now" rather than "broken": retried until the verification deadline.
RETRIED_SMOKE_STATUSES = frozenset({408, 429, 502, 503, 504})


def record_smoke_answer(
    rollout: Rollout, region: str, status: int | None, body: str, now: datetime
) -> Rollout:
    """The smoke request's answer: 2xx passes; no answer, 408, 429 and 5xx-for-now are tried
    again (until the verification deadline); anything else fails the region."""
    progress = _at_step(rollout, region, DeployStep.VERIFYING)
    if progress is None:
        return rollout
    if status is not None and 200 <= status < 300:
        shifted = replace(
            progress,
            deploy_step=DeployStep.SHIFTING_TRAFFIC,
            step_started_at=now,
            last_error=None,
            smoke_attempts=progress.smoke_attempts + 1,
        )
        return _commit(rollout, _with_region(rollout, shifted), now)
    if status is None or status in RETRIED_SMOKE_STATUSES:
        said = "got no answer" if status is None else f"answered {status}"
        again = replace(
            progress,
            smoke_attempts=progress.smoke_attempts + 1,
            last_error=f"smoke request {said} (tried again until the verification deadline): {body[:200]}",
        )
        return _commit(rollout, _with_region(rollout, again), now)
    return record_deployment_failed(
        rollout, region, f"smoke request answered {status}: {body[:300]}", now
    )


def record_smoke_passed(rollout: Rollout, region: str, now: datetime) -> Rollout:
    """The smoke request answered 2xx: shift traffic next."""
    return record_smoke_answer(rollout, region, 200, "", now)


def record_smoke_failed(rollout: Rollout, region: str, error: str, now: datetime) -> Rollout:
    """The smoke request failed for good: the region failed, traffic stays on the old deployment."""
    if _at_step(rollout, region, DeployStep.VERIFYING) is None:
        return rollout
    return record_deployment_failed(rollout, region, error, now)


def record_deployment_failed(rollout: Rollout, region: str, error: str, now: datetime) -> Rollout:
    """Any failure before the region went live (including a refused create or a deadline)."""
    progress = _find(rollout, region)
    if progress is None or progress.state not in (RegionState.REPLICATED, RegionState.DEPLOYING):
        return rollout
    if progress.traffic_percent > 0:
        # Our deployment holds a traffic step: the wave goes back by traffic, never by a
        # delete of a deployment that serves.
        held = replace(progress, deploy_step=DeployStep.HOLDING_STEP)
        if stopped(rollout):
            # The rollout ended already: delivery.settle_stopped (in the commit) sends
            # this region back to what served before.
            return _commit(rollout, _with_region(rollout, held), now)
        wave = delivery.wave_of(rollout, progress)
        backed = delivery.roll_back_wave(_with_region(rollout, held), wave, error, now)
        return _commit(rollout, backed, now)
    if progress.deploy_step is DeployStep.SHIFTING_TRAFFIC:
        # Traffic may already have moved: keep our deployment, do not discard it.
        step: DeployStep | None = progress.deploy_step
    else:
        step = DeployStep.DISCARDING if progress.deployment is not None else None
    failed = replace(
        progress,
        state=RegionState.FAILED,
        last_error=error,
        deploy_step=step,
        step_started_at=now,
        waiting_for=None,
        rollback_requested=False,  # it never went live: there is nothing to roll back
    )
    return _commit(rollout, _with_region(rollout, failed), now)


def record_traffic_shifted(
    rollout: Rollout, region: str, now: datetime, percent: int = 100
) -> Rollout:
    """Our deployment has `percent` of the traffic. Below 100% it holds that step, watched;
    at 100% the region serves (soaking first where the rule asks); the deployment it replaced
    (recorded when the endpoint was claimed, never guessed) is kept, then deleted."""
    progress = _at_step(rollout, region, DeployStep.SHIFTING_TRAFFIC)
    if progress is None or progress.deployment is None:
        return rollout
    shifted = delivery.after_shift(rollout, progress, percent, now)
    return _commit(rollout, _with_region(rollout, shifted), now)


def record_verification(
    rollout: Rollout, region: str, passed: bool, detail: str, now: datetime
) -> Rollout:
    """One check of a watched region (`VerifyDeployment`): more failures than the rule
    allows roll the region's wave back and stop the rollout, with the reason."""
    progress = _find(rollout, region)
    if progress is None or not delivery.watched(progress) or stopped(rollout):
        return rollout
    checked, failed_because = delivery.record_check(rollout, progress, passed, detail, now)
    updated = _with_region(rollout, checked)
    if failed_because is not None:
        wave = delivery.wave_of(rollout, progress)
        updated = delivery.roll_back_wave(updated, wave, failed_because, now)
    return _commit(rollout, updated, now)


def record_previous_deleted(rollout: Rollout, region: str, now: datetime) -> Rollout:
    """The previous deployment is gone (or was already gone)."""
    progress = _find(rollout, region)
    if progress is None or progress.deploy_step is not DeployStep.CLEANING_UP:
        return rollout
    return _commit(
        rollout, _with_region(rollout, replace(progress, deploy_step=DeployStep.DONE)), now
    )


def record_deployment_discarded(rollout: Rollout, region: str, now: datetime) -> Rollout:
    """Our failed or superseded deployment is deleted; a failed region is then rolled back."""
    progress = _find(rollout, region)
    if progress is None or progress.deploy_step is not DeployStep.DISCARDING:
        return rollout
    state = RegionState.ROLLED_BACK if progress.state is RegionState.FAILED else progress.state
    discarded = replace(progress, state=state, deploy_step=DeployStep.DISCARDED)
    return _commit(rollout, _with_region(rollout, discarded), now)


def record_action_error(rollout: Rollout, region: str, error: str, now: datetime) -> Rollout:
    """A transient failure of an action: keep the state, show the error, retry next step."""
    progress = _find(rollout, region)
    if progress is None or progress.last_error == error:
        return rollout
    return _commit(rollout, _with_region(rollout, replace(progress, last_error=error)), now)


def record_replaced(rollout: Rollout, region: str, by: str, now: datetime) -> Rollout:
    """Rollout `by` went live in `region` on this rollout's endpoint: this one no longer
    serves there, so it no longer says live."""
    progress = _find(rollout, region)
    if progress is None or progress.state not in (RegionState.LIVE, RegionState.SOAKING):
        return rollout
    replaced = replace(
        progress,
        state=RegionState.SUPERSEDED,
        last_error=f"replaced by {by}",
        traffic_percent=0,
        waiting_for=None,
        rollback_requested=False,
    )
    if replaced.deploy_step in (DeployStep.KEEPING_PREVIOUS, *_ROLLBACK_STEPS):
        # Nothing can roll back to it through this rollout any more: delete it now. A
        # rollback still under way stops: the newer rollout's traffic must stay.
        replaced = replace(
            replaced,
            deploy_step=DeployStep.CLEANING_UP if replaced.previous_deployment else DeployStep.DONE,
            step_started_at=now,
            restore_to=None,
            restore_image=None,
        )
    updated = _with_region(rollout, replaced)
    if updated.superseded_by is None:
        stopped = tuple(_stop(r, now) for r in updated.regions)
        updated = replace(updated, superseded_by=by, regions=stopped)
    return _commit(rollout, updated, now)


# --- an operator's rollback ------------------------------------------------------------


def _at_rollback_step(rollout: Rollout, region: str, step: DeployStep) -> RegionProgress | None:
    progress = _find(rollout, region)
    if progress is None or progress.deploy_step is not step or progress.restore_to is None:
        return None
    return progress


def record_lease_taken(rollout: Rollout, region: str, until: datetime, now: datetime) -> Rollout:
    """The endpoint's lease is ours until `until` (taken for a rollback)."""
    progress = _find(rollout, region)
    if progress is None or progress.lease_until == until:
        return rollout
    taken = replace(progress, lease_until=until, waiting_for=None)
    return _commit(rollout, _with_region(rollout, taken), now)


def record_traffic_restored(rollout: Rollout, region: str, now: datetime) -> Rollout:
    """All traffic is back on the deployment that served before: the region is rolled back;
    this rollout's deployment is deleted next (the restored one is never touched)."""
    progress = _at_rollback_step(rollout, region, DeployStep.RESTORING)
    if progress is None:
        return rollout
    rolled_back = replace(
        progress,
        state=RegionState.ROLLED_BACK,
        traffic_percent=0,
        deploy_step=DeployStep.DISCARDING if progress.deployment else DeployStep.DISCARDED,
        step_started_at=now,
        previous_deployment=None,
        restore_to=None,
        restore_image=None,
        waiting_for=None,
        last_error=delivery.reason_after_restore(progress),
    )
    return _commit(rollout, _with_region(rollout, rolled_back), now)


def record_previous_gone(
    rollout: Rollout, region: str, image: str | None, why: str, now: datetime
) -> Rollout:
    """The deployment a rollback returns to no longer exists: it is created again from the
    image it ran (`image`); None when that image is unknown or deleted (`why`): then the
    rollback fails and traffic stays where it is."""
    progress = _at_rollback_step(rollout, region, DeployStep.RESTORING)
    if progress is None:
        return rollout
    if image is None:
        return _rollback_failed(rollout, progress, why, now, previous_exists=False)
    redeploying = replace(
        progress,
        deploy_step=DeployStep.REDEPLOYING_PREVIOUS,
        restore_image=image,
        step_started_at=now,
        waiting_for=None,
        last_error=None,
    )
    return _commit(rollout, _with_region(rollout, redeploying), now)


def record_previous_redeployed(rollout: Rollout, region: str, now: datetime) -> Rollout:
    """The previous image runs again (provisioned, 0% traffic): traffic goes back to it next."""
    progress = _at_rollback_step(rollout, region, DeployStep.REDEPLOYING_PREVIOUS)
    if progress is None:
        return rollout
    restoring = replace(progress, deploy_step=DeployStep.RESTORING, step_started_at=now)
    return _commit(rollout, _with_region(rollout, restoring), now)


def record_rollback_failed(rollout: Rollout, region: str, why: str, now: datetime) -> Rollout:
    """The rollback cannot finish (the previous image failed to provision...): traffic stays
    on this rollout's deployment, which keeps serving; the reason is shown."""
    progress = _find(rollout, region)
    if progress is None or progress.deploy_step not in _ROLLBACK_STEPS:
        return rollout
    return _commit(rollout, _with_region(rollout, _rollback_stopped(progress, why, now)), now)


def _rollback_failed(
    rollout: Rollout, progress: RegionProgress, why: str, now: datetime, *, previous_exists: bool
) -> Rollout:
    stopped_here = _rollback_stopped(progress, why, now, previous_exists=previous_exists)
    return _commit(rollout, _with_region(rollout, stopped_here), now)


def _rollback_stopped(
    progress: RegionProgress, why: str, now: datetime, *, previous_exists: bool = True
) -> RegionProgress:
    """A rollback that cannot finish. Nothing is deleted on a guess: a traffic PUT to the
    previous deployment may have gone through before the failure, so that deployment is
    left in place (and never deleted by this rollout) and the message says what to check."""
    ours = _name(progress.deployment)
    target = progress.restore_to.name if progress.restore_to else progress.previous_deployment
    if not previous_exists or target is None:
        said = f"traffic stays on {ours}"
    elif progress.deploy_step is DeployStep.REDEPLOYING_PREVIOUS:
        said = f"traffic stays on {ours}; {target} is left in place: delete it if unused"
    else:
        said = (
            f"{target} is left in place and the traffic may be on it or on {ours}: check the "
            "endpoint's traffic and delete the deployment that serves nothing"
        )
    # A region whose wave failed its watch, or that held a traffic step, did not pass: it
    # is failed (retry or a new push goes on), never `live` for the next wave to follow.
    failed = progress.state is RegionState.DEPLOYING or (progress.last_error or "").startswith(
        delivery.ROLLING_BACK
    )
    return replace(
        progress,
        state=RegionState.FAILED if failed else progress.state,
        deploy_step=DeployStep.DONE,
        previous_deployment=None,
        restore_to=None,
        restore_image=None,
        step_started_at=now,
        waiting_for=None,
        last_error=f"rollback failed: {why}; {said}",
    )


def _name(ref: DeploymentRef | None) -> str:
    return ref.name if ref is not None else "this rollout's deployment"


# --- supersession ---------------------------------------------------------------------


def order_key(rollout: Rollout | RolloutSummary) -> tuple[datetime, str] | None:
    """Where a rollout stands on its endpoint: when the registry confirmed it (digest
    breaks a tie, so every process agrees); None before any confirmation."""
    if rollout.confirmed_at is None:
        return None
    return (rollout.confirmed_at, rollout.digest)


def supersedes(newer: Rollout | RolloutSummary, older: Rollout | RolloutSummary) -> bool:
    """Whether `newer` takes `older`'s endpoint (the caller knows they share it): only a
    deployable image the registry confirmed, and confirmed after `older`."""
    if newer.id == older.id or newer.deployable is not True:
        return False
    if isinstance(newer, Rollout):
        if newer.ignored_reason is not None:
            return False
    elif newer.ignored:
        return False
    new_key, old_key = order_key(newer), order_key(older)
    if new_key is None:
        return False
    return old_key is None or new_key > old_key


def newest_above(rollout: Rollout, peers: Iterable[RolloutSummary]) -> RolloutSummary | None:
    """The newest rollout among `peers` (same endpoint) that supersedes `rollout`, if any."""
    newer = [p for p in peers if supersedes(p, rollout)]
    return max(newer, key=lambda p: order_key(p) or (p.confirmed_at, p.digest), default=None)


def needs_placing(before: Rollout, after: Rollout) -> bool:
    """Whether a step placed `after` on its endpoint anew (it became deployable and
    confirmed, or was confirmed for a new generation): then the endpoint's other rollouts
    must be looked at."""
    placed = after.deployable is True and after.confirmed_at is not None
    return placed and (order_key(before) != order_key(after) or before.deployable is not True)


@dataclass(frozen=True, slots=True)
class Placement:
    """What placing a rollout on its endpoint means for the others there: the newer one
    that supersedes it (if any), the older ones it supersedes, and those that had one of
    the tags it just took (the registry says those tags moved)."""

    superseded_by: str | None = None
    supersedes: tuple[str, ...] = ()
    lost_tags: tuple[str, ...] = ()


def place(
    rollout: Rollout,
    peers: Iterable[RolloutSummary],
    *,
    placed: bool,
    confirmed: Sequence[str],
) -> Placement:
    """Decide the consequences of a placement (`placed`) and of tags just `confirmed`."""
    peers = [p for p in peers if p.id != rollout.id]
    newer = newest_above(rollout, peers) if placed else None
    older = tuple(p.id for p in peers if placed and supersedes(rollout, p))
    lost = tuple(
        p.id
        for p in peers
        if p.repository == rollout.repository and any(t in p.tags_seen for t in confirmed)
    )
    return Placement(newer.id if newer else None, older, lost)


def supersede_if_older(older: Rollout, newer: Rollout, now: datetime) -> Rollout:
    """Supersede `older` by `newer` unless something else already did, or it is not older
    after all (read fresh: the index that named it may have been behind)."""
    if older.superseded_by is not None or not supersedes(newer, older):
        return older
    return supersede(older, by=newer.id, now=now)


def supersede(older: Rollout, *, by: str, now: datetime) -> Rollout:
    """`by` took this rollout's endpoint: unfinished regions stop (superseded); live ones stay
    live until `by` replaces them there, and the rollout is marked replaced, so a later
    re-push starts a new generation."""
    if older.superseded_by == by:
        return older
    regions = tuple(_stop(progress, now) for progress in older.regions)
    return _commit(older, replace(older, superseded_by=by, regions=regions), now)


# --- faults -----------------------------------------------------------------------------


def record_step_crashed(
    rollout: Rollout, error: str, now: datetime, policy: RolloutPolicy
) -> Rollout:
    """A reconcile step raised: try this rollout again later, later each time in a row."""
    failures = rollout.step_failures + 1
    return replace(
        rollout,
        step_failures=failures,
        step_error=error[:500],
        retry_after=now + policy.probe_delay(failures, 0.5),
        updated_at=now,
    )


def record_step_completed(rollout: Rollout) -> Rollout:
    """A step ran through: forget earlier crashes."""
    if rollout.step_failures == 0 and rollout.retry_after is None:
        return rollout
    return replace(rollout, step_failures=0, step_error=None, retry_after=None)


# --- outbox ---------------------------------------------------------------------------


def mark_published(rollout: Rollout, event_ids: Iterable[str]) -> Rollout:
    """Drop published events from the outbox (unknown ids are ignored)."""
    published = set(event_ids)
    remaining = tuple(e for e in rollout.outbox if e.id not in published)
    if len(remaining) == len(rollout.outbox):
        return rollout
    return replace(rollout, outbox=remaining)


# --- deciding -------------------------------------------------------------------------


def next_actions(rollout: Rollout, now: datetime, policy: RolloutPolicy) -> list[Action]:
    """What to do now, from the recorded state alone (call `tick` first to apply timeouts)."""
    actions: list[Action] = []
    endpoint = rollout.target.endpoint if rollout.target else None
    for progress in rollout.regions:
        if progress.deploy_step is DeployStep.DISCARDING and progress.deployment is not None:
            actions.append(DiscardDeployment(progress.region, progress.deployment))
        if progress.lease_until is not None and endpoint is not None:
            if not _changing(progress):
                actions.append(ReleaseLease(progress.region, endpoint))
            elif progress.lease_until - now <= timedelta(seconds=policy.lease_ttl_s / 2):
                actions.append(RenewLease(progress.region, endpoint))
    tags = tuple(rollout.pending_tags)
    reading = rollout.ignored_reason is None and rollout.deployable is not False
    # A replaced rollout still checks new claims: a tag moved back to it is a re-push.
    if reading and (tags or (rollout.deployable is None and rollout.superseded_by is None)):
        # The manifest read is the primary's probe too: it keeps to the probe's backoff.
        primary = rollout.primary
        due = primary is None or primary.state not in PROBED_STATES or _probe_due(primary, now)
        if due or rollout.superseded_by is not None:
            actions.insert(0, ReadPrimary(manifest=rollout.deployable is None, tags=tags))
    if stopped(rollout):
        # Only what must finish: a traffic shift under way, and an operator's rollback.
        for progress in rollout.regions:
            if (
                progress.state is RegionState.DEPLOYING
                and progress.deploy_step is DeployStep.SHIFTING_TRAFFIC
                and progress.deployment is not None
            ):
                actions.append(_shift(rollout, progress, progress.deployment))
            rollback = _rollback_action(rollout, progress)
            if rollback is not None:
                actions.append(rollback)
            cleanup = _cleanup_action(progress)
            if cleanup is not None:
                actions.append(cleanup)
        return actions
    primary = rollout.primary
    primary_live = primary is not None and delivery.settled_live(primary)
    for progress in rollout.regions:
        action = _region_action(rollout, progress, primary_live, now)
        if action is not None:
            actions.append(action)
    return actions


def stopped(rollout: Rollout) -> bool:
    """Whether the rollout ended by a decision (ignored, superseded, rolled back): no new
    deployment starts, only what must finish does."""
    return (
        rollout.ignored_reason is not None
        or rollout.superseded_by is not None
        or rollout.rolled_back_at is not None
    )


def _rollback_action(rollout: Rollout, progress: RegionProgress) -> Action | None:
    ref = progress.restore_to
    if ref is None or rollout.target is None:
        return None
    if progress.deploy_step is DeployStep.RESTORING:
        return RestorePrevious(progress.region, ref.endpoint, ref, progress.previous_rollout)
    if progress.deploy_step is DeployStep.REDEPLOYING_PREVIOUS and progress.restore_image:
        return RedeployPrevious(
            progress.region, ref, progress.restore_image, _settings(rollout, progress.region)
        )
    return None


def _probe_due(progress: RegionProgress, now: datetime) -> bool:
    if progress.gave_up:
        return False
    return progress.next_probe_at is None or progress.next_probe_at <= now


def _changing(progress: RegionProgress) -> bool:
    """Whether the region may still change its endpoint (and so needs the lease). A region
    waiting to deploy has none to keep: a lease left from a failed attempt is given back."""
    if progress.state is RegionState.DEPLOYING:
        return True
    return progress.deploy_step in (
        DeployStep.CLEANING_UP,
        DeployStep.DISCARDING,
        *_ROLLBACK_STEPS,
    )


def _region_action(
    rollout: Rollout, progress: RegionProgress, primary_live: bool, now: datetime
) -> Action | None:
    state, step, ref = progress.state, progress.deploy_step, progress.deployment
    if state in PROBED_STATES:
        if rollout.deployable is False:
            return None
        return ProbeRegion(progress.region) if _probe_due(progress, now) else None
    rollback = _rollback_action(rollout, progress)
    if rollback is not None:
        return rollback
    if delivery.verify_due(progress, now) and ref is not None and rollout.target is not None:
        # Watching goes on under an operator's hold: it starts nothing, it only looks.
        return VerifyDeployment(
            progress.region, ref, rollout.target.verify_request(progress.region)
        )
    if paused_by_hold(progress):
        return None  # held: no new step starts; one in flight (below) finishes
    if state is RegionState.REPLICATED:
        if rollout.deployable is not True or rollout.target is None:
            return None
        if rollout.confirmed_at is None:
            return None  # the registry has not confirmed a tag yet
        if not (progress.primary or primary_live):
            return None
        if not delivery.wave_may_start(rollout, delivery.wave_of(rollout, progress)):
            return None  # an earlier wave is not live (and soaked) yet
        return ClaimEndpoint(progress.region, rollout.target.endpoint)
    if ref is None:
        return None
    if state is RegionState.DEPLOYING and step is DeployStep.REQUESTED:
        # By digest, never by tag: the tag may move while regions are still rolling out.
        digest = rollout.platform_digest or rollout.digest
        return CreateDeployment(
            progress.region,
            ref,
            image=f"{rollout.registry}/{rollout.repository}@{digest}",
            settings=_settings(rollout, progress.region),
        )
    if state is RegionState.DEPLOYING and step is DeployStep.CREATING:
        return CheckDeployment(progress.region, ref)
    if state is RegionState.DEPLOYING and step is DeployStep.VERIFYING:
        body = _settings(rollout, progress.region).smoke_request or "{}"
        return SmokeTest(progress.region, ref, body)
    if state is RegionState.DEPLOYING and step is DeployStep.SHIFTING_TRAFFIC:
        return _shift(rollout, progress, ref)
    return _cleanup_action(progress)


def _shift(rollout: Rollout, progress: RegionProgress, ref: DeploymentRef) -> ShiftTraffic:
    percent = delivery.shift_percent(rollout, progress)
    # Below 100% the rest of the traffic stays on the deployment that served before.
    previous = progress.previous_deployment if percent < 100 else None
    return ShiftTraffic(progress.region, ref, percent, previous)


def _cleanup_action(progress: RegionProgress) -> Action | None:
    """Delete the previous deployment once the region no longer keeps it (also in a stopped
    rollout: a replaced region deletes what served before it)."""
    ref = progress.deployment
    if ref is None or progress.deploy_step is not DeployStep.CLEANING_UP:
        return None
    if not progress.previous_deployment:
        return None
    return DeletePrevious(progress.region, replace(ref, name=progress.previous_deployment))


# --- internals ------------------------------------------------------------------------

PROBED_STATES = frozenset({RegionState.AWAITING_REPLICATION, RegionState.TIMED_OUT})
_TERMINAL_ROLLOUT_STATES = frozenset(
    {RolloutState.LIVE, RolloutState.FAILED, RolloutState.ROLLED_BACK}
)
# Steps an operator's hold lets finish: Azure is already carrying them out (provisioning, a
# traffic change that must never stop half-way), or they only delete what serves nothing.
_FINISHING_STEPS = frozenset(
    {
        DeployStep.CREATING,
        DeployStep.SHIFTING_TRAFFIC,
        DeployStep.CLEANING_UP,
        DeployStep.DISCARDING,
    }
)


def paused_by_hold(progress: RegionProgress) -> bool:
    """An operator's hold keeps the region from starting any step; a step in flight (a
    deployment being created, traffic moving, a clean-up) still finishes."""
    return progress.operator_hold and progress.deploy_step not in _FINISHING_STEPS


def _with_build(builds: tuple[Build, ...], notice: PushNotice, now: datetime) -> tuple[Build, ...]:
    """`builds` with the notice's build added once (stamped when received), newest kept."""
    if notice.build is None or any(b.identity == notice.build.identity for b in builds):
        return builds
    return (*builds, replace(notice.build, received_at=now))[-MAX_BUILDS:]


def _capped(tags: Iterable[str]) -> tuple[str, ...]:
    """Unique tags in order, the newest `MAX_TAGS` kept."""
    return tuple(dict.fromkeys(reversed(tuple(tags))))[:MAX_TAGS][::-1]


def _replaced(rollout: Rollout) -> bool:
    return rollout.superseded_by is not None or any(
        r.state is RegionState.SUPERSEDED for r in rollout.regions
    )


def _moved_back(rollout: Rollout, tags: Sequence[str], peers: Iterable[RolloutSummary]) -> bool:
    """A tag confirmed here now was confirmed by a newer rollout in between: it moved back."""
    own = order_key(rollout)
    for peer in peers:
        key = order_key(peer)
        if peer.id == rollout.id or peer.repository != rollout.repository or key is None:
            continue
        if (own is None or key > own) and any(t in peer.tags_seen for t in tags):
            return True
    return False


def _fresh_regions(regions: Sequence[str]) -> tuple[RegionProgress, ...]:
    return tuple(RegionProgress(region=name, primary=i == 0) for i, name in enumerate(regions))


def _no_target_reason(notice: PushNotice) -> str:
    tag = f":{notice.tag}" if notice.tag else ""
    return f"no target rule matches {notice.repository}{tag}"


def _find(rollout: Rollout, region: str) -> RegionProgress | None:
    return next((r for r in rollout.regions if r.region == region), None)


def _at_step(rollout: Rollout, region: str, step: DeployStep) -> RegionProgress | None:
    progress = _find(rollout, region)
    if progress is None or progress.state is not RegionState.DEPLOYING:
        return None
    return progress if progress.deploy_step is step else None


def _settings(rollout: Rollout, region: str) -> DeploymentSettings:
    return rollout.target.settings_for(region) if rollout.target else DeploymentSettings()


def _with_region(rollout: Rollout, progress: RegionProgress) -> Rollout:
    regions = tuple(progress if r.region == progress.region else r for r in rollout.regions)
    return replace(rollout, regions=regions)


def _with_regions(rollout: Rollout, regions: Iterable[RegionProgress]) -> Rollout:
    """`rollout` with `regions`; the very same object when no region changed. The rules
    `_commit` settles after every step mostly change nothing: copying the rollout for
    each of them made copying most of the state machine's time."""
    regions = tuple(regions)
    if all(new is old for new, old in zip(regions, rollout.regions, strict=True)):
        return rollout
    return replace(rollout, regions=regions)


def _probe_error(outcome: ProbeOutcome, previous: str | None) -> str | None:
    if outcome.verdict is ProbeVerdict.ABSENT:
        return previous if previous and previous.startswith("replication timed out") else None
    status = outcome.evidence.status if outcome.evidence else None
    text = outcome.error or (
        "registry refused access"
        if outcome.verdict is ProbeVerdict.CONFIG_ERROR
        else "probe failed"
    )
    return f"{text} (status {status})" if status is not None else text


def _stop(progress: RegionProgress, now: datetime) -> RegionProgress:
    if progress.state not in UNFINISHED_REGION_STATES:
        return progress
    if progress.state is RegionState.DEPLOYING and progress.deploy_step in (
        DeployStep.SHIFTING_TRAFFIC,
        DeployStep.HOLDING_STEP,
    ):
        # Traffic may be moving to it: the shift finishes, and the newer rollout replaces
        # it as the serving deployment (deleting it then), so nothing is left behind. A
        # traffic step held goes back to what served before (delivery.settle_stopped).
        return progress
    step = progress.deploy_step
    if step in (DeployStep.REQUESTED, DeployStep.CREATING, DeployStep.VERIFYING):
        # Requested counts too: its create may have reached Azure before this write.
        step = DeployStep.DISCARDING
    return replace(
        progress,
        state=RegionState.SUPERSEDED,
        next_probe_at=None,
        deploy_step=step,
        step_started_at=now if step is DeployStep.DISCARDING else None,
        waiting_for=None,
    )


def _step_deadline(step: DeployStep | None, policy: RolloutPolicy) -> float | None:
    return (
        {
            DeployStep.VERIFYING: policy.verify_timeout_s,
            DeployStep.SHIFTING_TRAFFIC: policy.traffic_timeout_s,
            DeployStep.CLEANING_UP: policy.cleanup_timeout_s,
            DeployStep.DISCARDING: policy.cleanup_timeout_s,
            DeployStep.RESTORING: policy.traffic_timeout_s,
            DeployStep.REDEPLOYING_PREVIOUS: policy.deployment_timeout_s,
        }.get(step)
        if step is not None
        else None
    )


def _since(moment: datetime | None, progress: RegionProgress) -> datetime | None:
    """A deadline's start: `moment`, or when an operator's hold was lifted, if later."""
    if moment is None or progress.resumed_at is None:
        return moment
    return max(moment, progress.resumed_at)


# Deploy steps whose deadlines still run in a stopped rollout (they finish regardless).
_STOPPED_STEPS = frozenset(
    {
        DeployStep.DISCARDING,
        DeployStep.CLEANING_UP,
        DeployStep.SHIFTING_TRAFFIC,
        DeployStep.KEEPING_PREVIOUS,
        *_ROLLBACK_STEPS,
    }
)


def _apply_timeouts(rollout: Rollout, now: datetime, policy: RolloutPolicy) -> Rollout:
    deploy_limit = timedelta(seconds=policy.deployment_timeout_s)
    ended = stopped(rollout)
    rollout = _apply_approval_timeouts(rollout, now)
    cleanup_from = keep_previous_until(rollout, policy)
    regions = []
    # Waves whose watch failed (a check never passed, a traffic step never moved), with why.
    failed_waves: list[tuple[int, str]] = []
    for progress in rollout.regions:
        deadline = replication_deadline(rollout, policy, progress)
        give_up = give_up_deadline(rollout, policy, progress)
        step_limit = _step_deadline(progress.deploy_step, policy)
        # A held region's paused step has no deadline; it starts again on resume.
        paused = paused_by_hold(progress)
        step_since = _since(progress.step_started_at, progress)
        overdue = (
            not paused
            and step_limit is not None
            and step_since is not None
            and now - step_since >= timedelta(seconds=step_limit)
        )
        if ended and progress.deploy_step not in _STOPPED_STEPS:
            regions.append(progress)
            continue
        if not ended:
            progress, watch_failed = delivery.advance(
                rollout, progress, now, policy.verify_timeout_s
            )
            if watch_failed is not None:
                failed_waves.append((delivery.wave_of(rollout, progress), watch_failed))
        if (
            progress.deploy_step is DeployStep.KEEPING_PREVIOUS
            and cleanup_from is not None
            and now >= cleanup_from
        ):
            progress = replace(progress, deploy_step=DeployStep.CLEANING_UP, step_started_at=now)
            regions.append(progress)
            continue
        if overdue and progress.deploy_step in _ROLLBACK_STEPS:
            limit = int(step_limit or 0)
            regions.append(_rollback_timed_out(progress, limit, now))
            continue
        if progress.state is RegionState.AWAITING_REPLICATION and now >= deadline:
            waited = int((now - rollout.generation_started_at).total_seconds())
            progress = replace(
                progress,
                state=RegionState.TIMED_OUT,
                timed_out_at=now,
                last_error=f"replication timed out: image not in this replica after {waited} s",
                next_probe_at=max(
                    progress.next_probe_at or now,
                    now + timedelta(seconds=policy.timed_out_probe_interval_s),
                ),
            )
        last_probe_due = (
            progress.next_probe_at is not None and give_up <= progress.next_probe_at <= now
        )
        if (
            progress.state is RegionState.TIMED_OUT
            and not progress.gave_up
            and now >= give_up
            and not last_probe_due
        ):
            hours = policy.give_up_after_s / 3600
            progress = replace(
                progress,
                gave_up=True,
                next_probe_at=None,
                last_error=(
                    f"gave up: image not in this replica {hours:g} h after the push; "
                    "a new push or regional webhook probes again"
                ),
            )
        elif (
            progress.state is RegionState.DEPLOYING
            and progress.deploy_step in (DeployStep.REQUESTED, DeployStep.CREATING)
            and not paused
            and (started := _since(progress.deploy_started_at, progress)) is not None
            and now - started >= deploy_limit
        ):
            why = f" (waiting for: {progress.waiting_for})" if progress.waiting_for else ""
            progress = replace(
                progress,
                state=RegionState.FAILED,
                deploy_step=DeployStep.DISCARDING,
                step_started_at=now,
                waiting_for=None,
                last_error=f"deployment not provisioned within {int(policy.deployment_timeout_s)} s{why}",
            )
        elif overdue and progress.deploy_step is DeployStep.VERIFYING:
            progress = replace(
                progress,
                state=RegionState.FAILED,
                deploy_step=DeployStep.DISCARDING,
                step_started_at=now,
                last_error=(
                    f"not verified within {int(policy.verify_timeout_s)} s: "
                    f"{progress.last_error or 'no passing smoke answer'}"
                ),
            )
        elif (
            overdue
            and progress.deploy_step is DeployStep.SHIFTING_TRAFFIC
            and progress.traffic_percent > 0
        ):
            # A later traffic step never landed: our deployment holds the share of the last
            # one, so it goes back by traffic rather than by a delete: with its wave (below),
            # or, in a rollout that ended already, by itself (delivery.settle_stopped).
            progress = replace(progress, deploy_step=DeployStep.HOLDING_STEP)
            if not ended:
                failed_waves.append(
                    (
                        delivery.wave_of(rollout, progress),
                        f"traffic step after {progress.traffic_percent}% not shifted in "
                        f"{progress.region} within {int(policy.traffic_timeout_s)} s: "
                        f"{progress.last_error or 'the endpoint update never finished'}",
                    )
                )
        elif overdue and progress.deploy_step is DeployStep.SHIFTING_TRAFFIC:
            # The traffic PUT kept failing: traffic never reached us, so ours is discarded.
            progress = replace(
                progress,
                state=RegionState.FAILED,
                deploy_step=DeployStep.DISCARDING,
                step_started_at=now,
                rollback_requested=False,  # it never went live: nothing to roll back
                last_error=(
                    f"traffic not shifted within {int(policy.traffic_timeout_s)} s: "
                    f"{progress.last_error or 'the endpoint update never finished'}"
                ),
            )
        elif overdue and progress.deploy_step in (DeployStep.CLEANING_UP, DeployStep.DISCARDING):
            name = (
                progress.previous_deployment
                if progress.deploy_step is DeployStep.CLEANING_UP
                else (progress.deployment.name if progress.deployment else "?")
            )
            progress = replace(
                progress,
                deploy_step=(
                    DeployStep.DONE
                    if progress.deploy_step is DeployStep.CLEANING_UP
                    else DeployStep.DISCARDED
                ),
                last_error=(
                    f"could not delete deployment {name} within {int(policy.cleanup_timeout_s)} s "
                    f"({progress.last_error or 'no answer'}); it is still billed: delete it by hand"
                ),
            )
        regions.append(progress)
    updated = _with_regions(rollout, regions)
    if failed_waves:
        wave, reason = min(failed_waves)
        updated = delivery.roll_back_wave(updated, wave, reason, now)
    return updated


def _rollback_timed_out(progress: RegionProgress, limit: int, now: datetime) -> RegionProgress:
    waited = progress.waiting_for or progress.last_error or "no answer"
    return _rollback_stopped(progress, f"not finished within {limit} s ({waited})", now)


def keep_previous_until(rollout: Rollout, policy: RolloutPolicy) -> datetime | None:
    """When the previous deployments this rollout keeps may go: the keep time after the
    rollout settled (no region still moving, waiting or rolling back); None: not settled."""
    waiting = UNFINISHED_REGION_STATES - {RegionState.TIMED_OUT}
    for progress in rollout.regions:
        if progress.state in waiting and not stopped(rollout):
            return None
        if progress.state is RegionState.SOAKING:
            return None  # the previous deployment is kept until the last wave has soaked
        if progress.deploy_step in _ROLLBACK_STEPS or progress.rollback_requested:
            return None
    # A region that soaked settled when its soak ended, not when it took the traffic.
    lives = [
        max(r.live_at, r.soak_until) if r.soak_until is not None else r.live_at
        for r in rollout.regions
        if r.live_at is not None
    ]
    if not lives:
        return None
    return max(lives) + timedelta(seconds=policy.keep_previous_s)


def _apply_approval_timeouts(rollout: Rollout, now: datetime) -> Rollout:
    """An approval gate left closed past the rule's time fails the wave it holds back."""
    target = rollout.target
    if target is None or stopped(rollout):
        return rollout
    expired = {
        gate.wave
        for gate in rollout.gates
        if gate.approved_at is None
        and now - gate.opened_at >= timedelta(seconds=target.approval_timeout_s)
    }
    if not expired:
        return rollout
    hours = target.approval_timeout_s / 3600
    regions = tuple(
        replace(
            r,
            state=RegionState.FAILED,
            next_probe_at=None,
            last_error=f"approval not given within {hours:g} h",
        )
        if target.wave_of(r.region, r.primary) in expired and r.state in _NOT_YET_DEPLOYING
        else r
        for r in rollout.regions
    )
    return replace(rollout, regions=regions)


def waiting_gates(rollout: Rollout) -> list[ApprovalGate]:
    """Approval gates open and not approved whose wave still has a region waiting (one that
    has not started deploying, failed or stopped)."""
    target = rollout.target
    if target is None or stopped(rollout):
        return []
    return [
        gate
        for gate in rollout.gates
        if gate.approved_at is None
        and any(
            target.wave_of(r.region, r.primary) == gate.wave and r.state in _NOT_YET_DEPLOYING
            for r in rollout.regions
        )
    ]


_NOT_YET_DEPLOYING = frozenset(
    {
        RegionState.AWAITING_REPLICATION,
        RegionState.REPLICATED,
        RegionState.TIMED_OUT,
        RegionState.AWAITING_APPROVAL,
    }
)


# Secondaries that would deploy next (a failed primary holds them).
_READY_TO_DEPLOY = frozenset({RegionState.REPLICATED, RegionState.AWAITING_APPROVAL})


def _hold_secondaries(rollout: Rollout) -> Rollout:
    """A failed primary holds every secondary ready to deploy; a primary that is no longer
    failed (an operator retried it) lets them go on."""
    primary = rollout.primary
    if primary is None:
        return rollout
    failed = primary.state in (RegionState.FAILED, RegionState.ROLLED_BACK)
    regions = tuple(
        replace(r, state=RegionState.HELD, last_error="held: the primary region failed")
        if failed and not r.primary and r.state in _READY_TO_DEPLOY
        else replace(r, state=RegionState.REPLICATED, last_error=None)
        if not failed and r.state is RegionState.HELD
        else r
        for r in rollout.regions
    )
    return _with_regions(rollout, regions)


def _gate_waves(rollout: Rollout, now: datetime) -> Rollout:
    """Approval gates: a gated wave's gate opens once every earlier wave is live; its
    replicated regions wait in `awaiting_approval` until it is approved."""
    target = rollout.target
    if target is None or target.approval is ApprovalMode.NONE or stopped(rollout):
        return rollout
    gates = {g.wave: g for g in rollout.gates}
    waves = {r.region: target.wave_of(r.region, r.primary) for r in rollout.regions}
    regions = []
    for progress in rollout.regions:
        wave = waves[progress.region]
        gate = gates.get(wave)
        if target.gated(wave) and (gate is None or gate.approved_at is None):
            earlier_live = all(
                r.state is RegionState.LIVE for r in rollout.regions if waves[r.region] < wave
            )
            if earlier_live and progress.state in UNFINISHED_REGION_STATES and gate is None:
                gate = gates[wave] = ApprovalGate(wave=wave, opened_at=now)
            if gate is not None and progress.state is RegionState.REPLICATED:
                progress = replace(progress, state=RegionState.AWAITING_APPROVAL)
        elif progress.state is RegionState.AWAITING_APPROVAL:
            progress = replace(progress, state=RegionState.REPLICATED)
        regions.append(progress)
    opened = tuple(sorted(gates.values(), key=lambda g: g.wave))
    if opened != rollout.gates:
        rollout = replace(rollout, gates=opened)
    return _with_regions(rollout, regions)


def _start_retries(rollout: Rollout, now: datetime) -> Rollout:
    """A retry asked for while the failed attempt's deployment was being deleted starts
    once it is gone."""
    if not any(r.retry_requested for r in rollout.regions):
        return rollout
    regions = tuple(
        next_attempt(r, now)
        if r.retry_requested and r.deploy_step is not DeployStep.DISCARDING
        else r
        for r in rollout.regions
    )
    return replace(rollout, regions=regions)


def next_attempt(progress: RegionProgress, now: datetime) -> RegionProgress:
    """A fresh attempt in the region: replicated still (the replica had the image) or
    probed again; a new deployment name follows from `attempt`."""
    replicated = progress.replicated_at is not None
    return replace(
        progress,
        state=RegionState.REPLICATED if replicated else RegionState.AWAITING_REPLICATION,
        attempt=progress.attempt + 1,
        attempt_started_at=now,
        deploy_started_at=None,
        live_at=None,
        deployment=None,
        deploy_step=None,
        previous_deployment=None,
        previous_rollout=None,
        step_started_at=None,
        timed_out_at=None,
        next_probe_at=None if replicated else now,
        gave_up=False,
        last_error=None,
        waiting_for=None,
        smoke_attempts=0,
        retry_requested=False,
        rollback_requested=False,
        restore_to=None,
        restore_image=None,
        traffic_percent=0,
        step_until=None,
        soak_until=None,
        next_verify_at=None,
        verify_passes=0,
        verify_failures=0,
    )


def _start_requested_rollbacks(rollout: Rollout, now: datetime) -> Rollout:
    """A rollback asked for while traffic was moving to a region starts once it is live."""
    regions = tuple(
        start_rollback(r, now)
        if r.rollback_requested and takes_traffic(r) and delivery.served_before(rollout, r)
        else r
        for r in rollout.regions
    )
    return _with_regions(rollout, regions)


def _settle_untagged(rollout: Rollout) -> Rollout:
    """A deployable image no confirmed tag names, with no claim left to check, is ignored
    (until a tagged push names it): only a tag makes an image current for an endpoint."""
    if (
        rollout.deployable is True
        and rollout.ignored_reason is None
        and rollout.superseded_by is None
        and rollout.confirmed_at is None
        and not rollout.pending_tags
        and not rollout.tags
    ):
        stopped = tuple(
            replace(r, next_probe_at=None) if r.state in PROBED_STATES else r
            for r in rollout.regions
        )
        return replace(rollout, ignored_reason=UNTAGGED_REASON, regions=stopped)
    return rollout


def _commit(old: Rollout, new: Rollout, now: datetime) -> Rollout:
    """Settle derived rules, append the events the change implies, stamp `updated_at`."""
    new = _settle_untagged(_hold_secondaries(_start_retries(new, now)))
    if stopped(new):
        new = delivery.settle_stopped(new, now)
    new = _start_requested_rollbacks(_gate_waves(new, now), now)
    if new is old or new == old:
        return old
    events = [e for e in _events_for(old, new, now) if e.id not in {o.id for o in new.outbox}]
    return replace(new, outbox=(*new.outbox, *events), updated_at=now)


def _events_for(old: Rollout, new: Rollout, now: datetime) -> list[OutgoingEvent]:
    if old.generation != new.generation:
        return []
    events: list[OutgoingEvent] = []
    before = {r.region: r for r in old.regions}
    for progress in new.regions:
        prior = before.get(progress.region)
        if prior is None:
            continue
        if prior.replicated_at is None and progress.replicated_at is not None:
            events.append(_event(new, EventType.REPLICA_AVAILABLE, progress, now))
        event_type = _REGION_EVENTS.get(progress.state)
        if event_type is not None and prior.state is not progress.state:
            events.append(_event(new, event_type, progress, now))
    if all(r.replicated_at for r in new.regions) and not all(r.replicated_at for r in old.regions):
        events.append(_event(new, EventType.REPLICATION_COMPLETED, None, now))
    if new.state in _TERMINAL_ROLLOUT_STATES and old.state not in _TERMINAL_ROLLOUT_STATES:
        events.append(_event(new, EventType.ROLLOUT_FINISHED, None, now))
    return events


_REGION_EVENTS = {
    RegionState.TIMED_OUT: EventType.REPLICATION_TIMED_OUT,
    RegionState.LIVE: EventType.REGION_LIVE,
    RegionState.FAILED: EventType.REGION_FAILED,
    RegionState.ROLLED_BACK: EventType.REGION_ROLLED_BACK,
}


def _event(
    rollout: Rollout, event_type: EventType, progress: RegionProgress | None, now: datetime
) -> OutgoingEvent:
    region = progress.region if progress else ""
    data: dict[str, Any] = {
        "rollout_id": rollout.id,
        "registry": rollout.registry,
        "repository": rollout.repository,
        "digest": rollout.digest,
        "tags": list(rollout.tags),
        "generation": rollout.generation,
        "endpoint": rollout.target.endpoint if rollout.target else None,
        # Which pipeline runs and commits announced what this region now serves.
        "builds": [build_to_document(b) for b in rollout.builds],
    }
    if progress is None:
        data["state"] = rollout.state.value
        data["regions"] = {r.region: r.state.value for r in rollout.regions}
    else:
        data["region"] = progress.region
        data["primary"] = progress.primary
        data["state"] = progress.state.value
        data["replicated_at"] = _iso(progress.replicated_at)
        data["live_at"] = _iso(progress.live_at)
        data["error"] = progress.last_error
        data["deployment"] = progress.deployment.name if progress.deployment else None
        data["attempt"] = progress.attempt
        if progress.evidence is not None:
            data["probe_status"] = progress.evidence.status
    # After an operator's retry the same region (or rollout) may fail or go live again:
    # those are new events, so the attempt is part of their id.
    attempt = progress.attempt if progress else sum(r.attempt - 1 for r in rollout.regions) + 1
    # A rollout may finish twice in one attempt (failed, superseded, then rolled back by an
    # operator): a rolled-back finish has an id of its own, apart from the first one's.
    rolled_back = rollout.state is RolloutState.ROLLED_BACK
    scope = "~rolled_back" if event_type is EventType.ROLLOUT_FINISHED and rolled_back else region
    return OutgoingEvent(
        id=event_id(rollout.id, rollout.generation, scope, event_type, attempt),
        type=event_type,
        subject=rollout.subject,
        time=now,
        region=region,
        data=data,
    )


def build_to_document(build: Build) -> dict[str, str | None]:
    """A build as the rollout document and the events show it."""
    return {
        "system": build.system,
        "id": build.id,
        "url": build.url,
        "commit": build.commit,
        "source": build.source,
        "received_at": _iso(build.received_at),
    }


def _iso(value: datetime | None) -> str | None:
    return format_timestamp(value) if value else None


def commit(old: Rollout, new: Rollout, now: datetime) -> Rollout:
    """`new` as a step of the machine: derived rules settled, events added, `updated_at`
    stamped (for transitions defined beside this module, e.g. operator actions)."""
    return _commit(old, new, now)
