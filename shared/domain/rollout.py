"""The rollout state machine: pure functions from (rollout, observation, now) to a new rollout.

Level-triggered: `next_actions` reads only the recorded state and the time, so
any trigger can call it; every `record_*` function ignores an observation that
no longer fits the region's state (a duplicate, a late answer, a stale action),
and returns the very same value when nothing changes. Events for the outbox
are derived in one place (`_commit`) from the difference between the old and
the new value, so every state change and its event land in the same write.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from shared.domain.events import EventType, OutgoingEvent, event_id
from shared.domain.model import (
    UNFINISHED_REGION_STATES,
    DeploymentRef,
    DeployStep,
    RegionProgress,
    RegionState,
    Rollout,
    RolloutState,
    rollout_id,
)
from shared.domain.names import deployment_name
from shared.domain.push import PushNotice
from shared.domain.targets import DeploymentSettings, Target
from shared.domain.timestamps import format_timestamp
from shared.domain.verdicts import ProbeOutcome, ProbeVerdict

_GB = 1_000_000_000


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
    deployment_timeout_s: float = 3600.0

    def probe_delay(self, attempts: int, jitter: float) -> timedelta:
        """Exponential backoff after `attempts` probes, spread by `jitter` in [0, 1)."""
        exponent = max(attempts - 1, 0)
        base = min(
            self.probe_max_backoff_s,
            self.probe_initial_backoff_s * self.probe_backoff_factor**exponent,
        )
        spread = 1.0 + self.probe_jitter_ratio * (2.0 * min(max(jitter, 0.0), 1.0) - 1.0)
        return timedelta(seconds=base * spread)

    def replication_timeout(self, image_size_bytes: int | None) -> timedelta:
        """Size-aware: a base plus a share per GB (unknown size: the base alone)."""
        extra = self.replication_timeout_per_gb_s * (image_size_bytes or 0) / _GB
        return timedelta(seconds=self.replication_timeout_base_s + extra)


# --- actions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InspectManifest:
    """Read the manifest (from the primary replica) to decide whether it is deployable."""


@dataclass(frozen=True, slots=True)
class ProbeRegion:
    """Ask `region`'s replica for the manifest by digest."""

    region: str


@dataclass(frozen=True, slots=True)
class StartDeployment:
    """Create deployment `deployment_name` on `endpoint` in `region` with 0% traffic
    (creating the endpoint when it does not exist)."""

    region: str
    endpoint: str
    deployment_name: str
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
    """Send 100% of the endpoint's traffic to the deployment."""

    region: str
    deployment: DeploymentRef


@dataclass(frozen=True, slots=True)
class DeletePrevious:
    """Delete the deployment that served before this one went live."""

    region: str
    deployment: DeploymentRef


@dataclass(frozen=True, slots=True)
class DiscardDeployment:
    """Delete our own deployment that failed or was superseded before taking traffic."""

    region: str
    deployment: DeploymentRef


Action = (
    InspectManifest
    | ProbeRegion
    | StartDeployment
    | CheckDeployment
    | SmokeTest
    | ShiftTraffic
    | DeletePrevious
    | DiscardDeployment
)


# --- creation and pushes --------------------------------------------------------------


def new_rollout(
    notice: PushNotice, regions: Sequence[str], target: Target | None, now: datetime
) -> Rollout:
    """A rollout for a first sighting of `notice`; `regions` in configured order, primary first.

    With no target the rollout is recorded ignored and never deployed.
    """
    if not regions:
        raise ValueError("a rollout needs at least one region")
    if len(set(regions)) != len(regions):
        raise ValueError(f"regions repeat: {list(regions)}")
    pushed_at = notice.pushed_at or now
    return Rollout(
        id=rollout_id(notice.registry, notice.repository, notice.digest),
        registry=notice.registry.lower(),
        repository=notice.repository,
        digest=notice.digest,
        tags=(notice.tag,) if notice.tag else (),
        generation=1,
        pushed_at=pushed_at,
        created_at=now,
        updated_at=now,
        generation_started_at=now,
        target=target,
        regions=_fresh_regions(regions),
        ignored_reason=None if target else _no_target_reason(notice),
    )


def record_push(
    rollout: Rollout, notice: PushNotice, now: datetime, *, target: Target | None = None
) -> Rollout:
    """Record another delivery of a push of this rollout's digest.

    Adds the tag once. A push later than the recorded one, of a rollout that was
    superseded or replaced, starts a new generation (a rollback by re-tagging); a
    redelivery of an old event does not. `target` (matched for the notice's tag)
    is adopted when the rollout had none.
    """
    if rollout.id != rollout_id(notice.registry, notice.repository, notice.digest):
        raise ValueError(
            f"notice for {notice.repository}@{notice.digest} is not rollout {rollout.id}"
        )
    pushed_at = notice.pushed_at or now
    tags = rollout.tags
    if notice.tag and notice.tag not in tags:
        tags = (*tags, notice.tag)
    updated = replace(rollout, tags=tags, pushed_at=max(rollout.pushed_at, pushed_at))
    if rollout.target is None and target is not None:
        updated = replace(
            updated,
            target=target,
            ignored_reason=None if rollout.deployable is not False else rollout.ignored_reason,
        )
    if rollout.superseded_by is not None and pushed_at > rollout.pushed_at:
        updated = replace(
            updated,
            generation=rollout.generation + 1,
            generation_started_at=now,
            superseded_by=None,
            target=target or updated.target,
            regions=_fresh_regions([r.region for r in rollout.regions]),
        )
    return _commit(rollout, updated, now)


def record_deployable(rollout: Rollout, image_size_bytes: int | None, now: datetime) -> Rollout:
    """The manifest is a deployable image (size: config plus layers, None when unknown)."""
    if rollout.deployable is not None:
        return rollout
    return _commit(
        rollout, replace(rollout, deployable=True, image_size_bytes=image_size_bytes), now
    )


def record_not_deployable(rollout: Rollout, reason: str, now: datetime) -> Rollout:
    """The manifest is not a deployable image (a chart, signature, SBOM...): ignored for good."""
    if rollout.deployable is False:
        return rollout
    return _commit(rollout, replace(rollout, deployable=False, ignored_reason=reason), now)


# --- replication ----------------------------------------------------------------------


def expedite_probe(rollout: Rollout, region: str, now: datetime) -> Rollout:
    """A hint (regional webhook) that `region` may have the image: probe it now.

    Only a probe's PRESENT marks the region replicated.
    """
    progress = _find(rollout, region)
    if progress is None or progress.state not in _PROBED_STATES:
        return rollout
    if progress.next_probe_at is None or progress.next_probe_at <= now:
        return rollout
    return _commit(rollout, _with_region(rollout, replace(progress, next_probe_at=now)), now)


def record_probe(
    rollout: Rollout,
    region: str,
    outcome: ProbeOutcome,
    now: datetime,
    policy: RolloutPolicy,
    *,
    jitter: float,
) -> Rollout:
    """Record what `region`'s replica answered.

    PRESENT marks it replicated (also after a timeout: late arrival is accepted).
    ABSENT, CONFIG_ERROR and TRANSIENT schedule the next probe with backoff
    (`jitter` in [0, 1) spreads it); the replication timeout is applied here too.
    """
    progress = _find(rollout, region)
    if progress is None or progress.state not in _PROBED_STATES:
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
            evidence=outcome.evidence,
        )
    else:
        delay = policy.probe_delay(attempts, jitter)
        if outcome.verdict is ProbeVerdict.CONFIG_ERROR:
            # Misconfiguration rarely fixes itself quickly: do not hammer the registry.
            delay = max(delay, timedelta(seconds=policy.probe_max_backoff_s))
        if progress.state is RegionState.TIMED_OUT:
            delay = max(delay, timedelta(seconds=policy.timed_out_probe_interval_s))
        progress = replace(
            progress,
            probe_attempts=attempts,
            next_probe_at=now + delay,
            last_error=_probe_error(outcome, progress.last_error),
            evidence=outcome.evidence,
        )
    updated = _with_region(rollout, progress)
    return _commit(rollout, _apply_timeouts(updated, now, policy), now)


def tick(rollout: Rollout, now: datetime, policy: RolloutPolicy) -> Rollout:
    """Apply what time alone decides: replication timeouts and deployment timeouts."""
    return _commit(rollout, _apply_timeouts(rollout, now, policy), now)


def replication_deadline(rollout: Rollout, policy: RolloutPolicy) -> datetime:
    """When a region still without the image times out (for this generation)."""
    return rollout.generation_started_at + policy.replication_timeout(rollout.image_size_bytes)


# --- deployment -----------------------------------------------------------------------


def record_deployment_started(
    rollout: Rollout, region: str, deployment: DeploymentRef, now: datetime
) -> Rollout:
    """The deployment was created (0% traffic); provisioning runs on."""
    progress = _find(rollout, region)
    if progress is None or progress.state is not RegionState.REPLICATED:
        return rollout
    if rollout.superseded_by is not None:
        return rollout
    started = replace(
        progress,
        state=RegionState.DEPLOYING,
        deploy_step=DeployStep.CREATING,
        deploy_started_at=now,
        deployment=deployment,
        last_error=None,
    )
    return _commit(rollout, _with_region(rollout, started), now)


def record_provisioning_succeeded(rollout: Rollout, region: str, now: datetime) -> Rollout:
    """Provisioning succeeded: next the smoke request (or straight to traffic when none is set)."""
    progress = _at_step(rollout, region, DeployStep.CREATING)
    if progress is None:
        return rollout
    smoke = _settings(rollout, region).smoke_request
    step = DeployStep.VERIFYING if smoke is not None else DeployStep.SHIFTING_TRAFFIC
    return _commit(rollout, _with_region(rollout, replace(progress, deploy_step=step)), now)


def record_provisioning_failed(rollout: Rollout, region: str, error: str, now: datetime) -> Rollout:
    """Provisioning failed (Azure's error text in `error`): the region failed, traffic stays."""
    if _at_step(rollout, region, DeployStep.CREATING) is None:
        return rollout
    return record_deployment_failed(rollout, region, error, now)


def record_smoke_passed(rollout: Rollout, region: str, now: datetime) -> Rollout:
    """The smoke request answered 2xx: shift traffic next."""
    progress = _at_step(rollout, region, DeployStep.VERIFYING)
    if progress is None:
        return rollout
    shifted = replace(progress, deploy_step=DeployStep.SHIFTING_TRAFFIC, last_error=None)
    return _commit(rollout, _with_region(rollout, shifted), now)


def record_smoke_failed(rollout: Rollout, region: str, error: str, now: datetime) -> Rollout:
    """The smoke request failed: the region failed, traffic stays on the old deployment."""
    if _at_step(rollout, region, DeployStep.VERIFYING) is None:
        return rollout
    return record_deployment_failed(rollout, region, error, now)


def record_deployment_failed(rollout: Rollout, region: str, error: str, now: datetime) -> Rollout:
    """Any failure before the region went live (including a refused create or a timeout)."""
    progress = _find(rollout, region)
    if progress is None or progress.state not in (RegionState.REPLICATED, RegionState.DEPLOYING):
        return rollout
    if progress.deploy_step is DeployStep.SHIFTING_TRAFFIC:
        # Traffic may already have moved: keep our deployment, do not discard it.
        step: DeployStep | None = progress.deploy_step
    else:
        step = DeployStep.DISCARDING if progress.deployment is not None else None
    failed = replace(progress, state=RegionState.FAILED, last_error=error, deploy_step=step)
    return _commit(rollout, _with_region(rollout, failed), now)


def record_traffic_shifted(
    rollout: Rollout, region: str, previous_deployment: str | None, now: datetime
) -> Rollout:
    """All traffic is on the new deployment: the region is live; the previous one is deleted next."""
    progress = _at_step(rollout, region, DeployStep.SHIFTING_TRAFFIC)
    if progress is None or progress.deployment is None:
        return rollout
    own = progress.deployment.name
    cleanup = previous_deployment is not None and previous_deployment != own
    live = replace(
        progress,
        state=RegionState.LIVE,
        live_at=now,
        last_error=None,
        previous_deployment=previous_deployment if cleanup else None,
        deploy_step=DeployStep.CLEANING_UP if cleanup else DeployStep.DONE,
    )
    return _commit(rollout, _with_region(rollout, live), now)


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
    """A transient failure of an action: keep the state, show the error, retry next tick."""
    progress = _find(rollout, region)
    if progress is None or progress.last_error == error:
        return rollout
    return _commit(rollout, _with_region(rollout, replace(progress, last_error=error)), now)


# --- supersession ---------------------------------------------------------------------


def is_newer(a_pushed_at: datetime, b_pushed_at: datetime) -> bool:
    """True when a push at `a_pushed_at` is later than one at `b_pushed_at` (arrival order is irrelevant)."""
    return a_pushed_at > b_pushed_at


def supersedes(newer: Rollout, older: Rollout) -> bool:
    """Whether `newer` takes `older`'s endpoint: same registry and endpoint, pushed later.

    The same repository and tag always match the same rule and hence the same
    endpoint, so this covers "a newer digest for the same repository and tag".
    Equal timestamps are broken by digest so the answer never depends on order.
    """
    if newer.id == older.id or newer.registry != older.registry:
        return False
    if newer.target is None or older.target is None or newer.ignored_reason is not None:
        return False
    if newer.target.endpoint != older.target.endpoint:
        return False
    if newer.pushed_at == older.pushed_at:
        return newer.digest > older.digest
    return is_newer(newer.pushed_at, older.pushed_at)


def supersede(older: Rollout, *, by: str, now: datetime) -> Rollout:
    """`by` took this rollout's endpoint: unfinished regions stop (superseded); live ones stay
    live and the rollout is marked replaced, so a later re-push starts a new generation."""
    if older.superseded_by == by:
        return older
    regions = tuple(_stop(progress) for progress in older.regions)
    return _commit(older, replace(older, superseded_by=by, regions=regions), now)


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
    for progress in rollout.regions:
        if progress.deploy_step is DeployStep.DISCARDING and progress.deployment is not None:
            actions.append(DiscardDeployment(progress.region, progress.deployment))
    if rollout.ignored_reason is not None or rollout.superseded_by is not None:
        return actions
    if rollout.deployable is None:
        actions.insert(0, InspectManifest())
    primary = rollout.primary
    primary_live = primary is not None and primary.state is RegionState.LIVE
    for progress in rollout.regions:
        action = _region_action(rollout, progress, primary_live, now)
        if action is not None:
            actions.append(action)
    return actions


def _region_action(
    rollout: Rollout, progress: RegionProgress, primary_live: bool, now: datetime
) -> Action | None:
    state, step, ref = progress.state, progress.deploy_step, progress.deployment
    if state in _PROBED_STATES:
        due = progress.next_probe_at is None or progress.next_probe_at <= now
        return ProbeRegion(progress.region) if due else None
    if state is RegionState.REPLICATED:
        if rollout.deployable is not True or rollout.target is None:
            return None
        if not (progress.primary or primary_live):
            return None
        return StartDeployment(
            region=progress.region,
            endpoint=rollout.target.endpoint,
            deployment_name=deployment_name(rollout.digest, generation=rollout.generation),
            settings=rollout.target.settings_for(progress.region),
        )
    if ref is None:
        return None
    if state is RegionState.DEPLOYING and step is DeployStep.CREATING:
        return CheckDeployment(progress.region, ref)
    if state is RegionState.DEPLOYING and step is DeployStep.VERIFYING:
        body = _settings(rollout, progress.region).smoke_request or "{}"
        return SmokeTest(progress.region, ref, body)
    if state is RegionState.DEPLOYING and step is DeployStep.SHIFTING_TRAFFIC:
        return ShiftTraffic(progress.region, ref)
    if (
        state is RegionState.LIVE
        and step is DeployStep.CLEANING_UP
        and progress.previous_deployment
    ):
        return DeletePrevious(progress.region, replace(ref, name=progress.previous_deployment))
    return None


# --- internals ------------------------------------------------------------------------

_PROBED_STATES = frozenset({RegionState.AWAITING_REPLICATION, RegionState.TIMED_OUT})
_TERMINAL_ROLLOUT_STATES = frozenset({RolloutState.LIVE, RolloutState.FAILED})


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


def _stop(progress: RegionProgress) -> RegionProgress:
    if progress.state not in UNFINISHED_REGION_STATES:
        return progress
    step = progress.deploy_step
    if step in (DeployStep.CREATING, DeployStep.VERIFYING):
        step = DeployStep.DISCARDING
    return replace(progress, state=RegionState.SUPERSEDED, next_probe_at=None, deploy_step=step)


def _apply_timeouts(rollout: Rollout, now: datetime, policy: RolloutPolicy) -> Rollout:
    if rollout.ignored_reason is not None or rollout.superseded_by is not None:
        return rollout
    deadline = replication_deadline(rollout, policy)
    deploy_limit = timedelta(seconds=policy.deployment_timeout_s)
    regions = []
    for progress in rollout.regions:
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
        elif (
            progress.state is RegionState.DEPLOYING
            and progress.deploy_step is DeployStep.CREATING
            and progress.deploy_started_at is not None
            and now - progress.deploy_started_at >= deploy_limit
        ):
            progress = replace(
                progress,
                state=RegionState.FAILED,
                deploy_step=DeployStep.DISCARDING,
                last_error=f"deployment not provisioned within {int(policy.deployment_timeout_s)} s",
            )
        regions.append(progress)
    return replace(rollout, regions=tuple(regions))


def _hold_secondaries(rollout: Rollout) -> Rollout:
    primary = rollout.primary
    if primary is None or primary.state not in (RegionState.FAILED, RegionState.ROLLED_BACK):
        return rollout
    regions = tuple(
        replace(r, state=RegionState.HELD, last_error="held: the primary region failed")
        if not r.primary and r.state is RegionState.REPLICATED
        else r
        for r in rollout.regions
    )
    return replace(rollout, regions=regions)


def _commit(old: Rollout, new: Rollout, now: datetime) -> Rollout:
    """Settle derived rules, append the events the change implies, stamp `updated_at`."""
    new = _hold_secondaries(new)
    if new == old:
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
        if progress.evidence is not None:
            data["probe_status"] = progress.evidence.status
    return OutgoingEvent(
        id=event_id(rollout.id, rollout.generation, region, event_type),
        type=event_type,
        subject=rollout.subject,
        time=now,
        region=region,
        data=data,
    )


def _iso(value: datetime | None) -> str | None:
    return format_timestamp(value) if value else None
