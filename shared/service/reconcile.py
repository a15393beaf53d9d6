"""The reconcile step: load a rollout, do what the state machine asks, save with an ETag check.

Every trigger ends here. Actions are idempotent on the world (deterministic
deployment names, PUTs, deletes that tolerate absence), so when a concurrent
writer wins the ETag race the step simply runs again from a fresh read.
Events are saved in the same write as the state change (the outbox) and sent
afterwards; a crash in between leaves them for the next tick.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from shared.adapters.event_publisher import EventToPublish, PublishError
from shared.adapters.foundry_deployer import DeployerError, ProvisioningState
from shared.adapters.table_store import StaleRecordError, StoredRollout
from shared.domain import rollout as machine
from shared.domain.model import DeploymentRef, RegionState, Rollout
from shared.domain.rollout import Action
from shared.domain.verdicts import ProbeOutcome, ProbeVerdict
from shared.intake.media_types import Deployable, is_deployable_manifest
from shared.service.records import PENDING_STEPS, from_stored, to_stored
from shared.service.runtime import Services

log = logging.getLogger("georollout.reconcile")

Clock = Callable[[], datetime]
# Long enough to outlive any deployment (the state machine fails one after an hour).
LEASE_TTL = timedelta(hours=2)
_ATTEMPTS = 5


def utc_now() -> datetime:
    return datetime.now(UTC)


async def reconcile(
    services: Services,
    rollout_id: str,
    *,
    clock: Clock = utc_now,
    probe_now: str | None = None,
    deploy: bool = True,
) -> Rollout | None:
    """Move one rollout on as far as the world allows right now; None when it does not exist.

    `probe_now` (a region) makes that region's probe due at once: a regional
    webhook's hint. Only the probe's answer can mark it replicated.
    `deploy=False` limits the step to inspection and probes: intake answers
    fast and leaves deployments to the completion function and the timer.
    """
    for attempt in range(_ATTEMPTS):
        stored = await services.store.get(rollout_id)
        if stored is None:
            return None
        before = from_stored(stored)
        now = clock()
        rollout = machine.tick(before, now, services.policy)
        if probe_now is not None:
            rollout = machine.expedite_probe(rollout, probe_now, now)
        rollout = await _act(services, rollout, clock, deploy=deploy)
        if rollout is before:
            break
        try:
            await services.store.replace(
                to_stored(rollout, clock(), services.policy, services.deploy_poll, stored)
            )
        except StaleRecordError:
            log.info(
                "rollout %s changed under us (attempt %d): running the step again",
                rollout_id,
                attempt + 1,
            )
            continue
        break
    else:
        log.warning(
            "rollout %s: gave up after %d ETag conflicts; the next trigger carries on",
            rollout_id,
            _ATTEMPTS,
        )
        return None
    await _release_finished_leases(services, rollout)
    return await publish_outbox(services, rollout, clock=clock)


_REPLICATION_ACTIONS = (machine.InspectManifest, machine.ProbeRegion)


async def _act(services: Services, rollout: Rollout, clock: Clock, *, deploy: bool) -> Rollout:
    """Run the actions `next_actions` asks for, recording each outcome as it comes."""
    actions = machine.next_actions(rollout, clock(), services.policy)
    if not deploy:
        actions = [a for a in actions if isinstance(a, _REPLICATION_ACTIONS)]
    probed: set[str] = set()
    if any(isinstance(a, machine.InspectManifest) for a in actions) and _inspection_due(
        rollout, clock()
    ):
        # The inspection reads the primary's manifest: it is the primary's probe too.
        rollout, probed = await _inspect_manifest(services, rollout, clock)
    # Probes of different regions go out together; their outcomes are recorded in order.
    regions = [
        a.region
        for a in actions
        if isinstance(a, machine.ProbeRegion)
        and a.region not in probed
        and _still_probed(rollout, a.region)
    ]
    outcomes = await asyncio.gather(
        *(_probe_outcome(services, rollout, region) for region in regions)
    )
    for region, outcome in zip(regions, outcomes, strict=True):
        if outcome is not None:
            rollout = machine.record_probe(
                rollout, region, outcome, clock(), services.policy, jitter=random.random()
            )
    for action in actions:
        if isinstance(action, _REPLICATION_ACTIONS):
            continue
        try:
            rollout = await _run(services, rollout, action, clock)
        except DeployerError as error:
            where: str | None = getattr(action, "region", None)
            if where is None:
                raise
            if error.permanent:
                rollout = machine.record_deployment_failed(rollout, where, str(error), clock())
            else:
                rollout = machine.record_action_error(rollout, where, str(error), clock())
    return rollout


async def _run(services: Services, rollout: Rollout, action: Action, clock: Clock) -> Rollout:
    match action:
        case machine.StartDeployment():
            return await _start_deployment(services, rollout, action, clock)
        case machine.CheckDeployment(region=region, deployment=ref):
            status = await services.deployer.deployment_status(
                region, ref.endpoint, ref.name, operation_url=ref.operation
            )
            if status.state is ProvisioningState.SUCCEEDED:
                return machine.record_provisioning_succeeded(rollout, region, clock())
            if status.state is ProvisioningState.FAILED:
                return machine.record_provisioning_failed(
                    rollout, region, status.error or "provisioning failed", clock()
                )
            if status.state is ProvisioningState.MISSING:
                return machine.record_deployment_failed(
                    rollout,
                    region,
                    f"deployment {ref.name} disappeared from {ref.endpoint}",
                    clock(),
                )
            return rollout
        case machine.SmokeTest(region=region, deployment=ref, request_body=body):
            result = await services.deployer.smoke_test(
                region, ref.endpoint, ref.name, json.loads(body or "{}")
            )
            if result.ok:
                return machine.record_smoke_passed(rollout, region, clock())
            if result.status is None:
                # No answer at all: the network, not the model. Try again next tick.
                return machine.record_action_error(
                    rollout, region, f"smoke request got no answer: {result.body}", clock()
                )
            return machine.record_smoke_failed(
                rollout,
                region,
                f"smoke request answered {result.status}: {result.body[:300]}",
                clock(),
            )
        case machine.ShiftTraffic(region=region, deployment=ref):
            return await _shift_traffic(services, rollout, region, ref, clock)
        case machine.DeletePrevious(region=region, deployment=ref):
            if await _deleted(services, region, ref):
                return machine.record_previous_deleted(rollout, region, clock())
            return rollout
        case machine.DiscardDeployment(region=region, deployment=ref):
            if await _deleted(services, region, ref):
                return machine.record_deployment_discarded(rollout, region, clock())
            return rollout
    raise AssertionError(f"unhandled action {action!r}")


async def _inspect_manifest(
    services: Services, rollout: Rollout, clock: Clock
) -> tuple[Rollout, set[str]]:
    """Read the manifest from the primary replica: an image (or index of images) is deployable.

    The read is the primary's probe too, whatever it answers; the regions it
    probed come back with the rollout so they are not asked twice.
    """
    primary = services.config.primary_region
    if not services.budget(primary.registry_endpoint).take(time.monotonic()):
        return rollout, set()
    read = await services.probe.read_manifest(primary.name, rollout.repository, rollout.digest)
    now = clock()
    rollout = machine.record_probe(
        rollout, primary.name, read.outcome, now, services.policy, jitter=random.random()
    )
    if read.outcome.verdict is not ProbeVerdict.PRESENT or read.manifest is None:
        return rollout, {primary.name}  # not there yet: decided on a later read
    verdict = is_deployable_manifest(read.manifest, read.media_type)
    if isinstance(verdict, Deployable) and verdict.kind == "index" and verdict.platform_manifests:
        child = await services.probe.read_manifest(
            primary.name, rollout.repository, verdict.platform_manifests[0]
        )
        if child.manifest is None:
            return rollout, {primary.name}
        verdict = is_deployable_manifest(child.manifest, child.media_type)
    if isinstance(verdict, Deployable):
        return machine.record_deployable(rollout, verdict.image_size_bytes, now), {primary.name}
    return machine.record_not_deployable(rollout, verdict.reason, now), {primary.name}


async def newer_rollout(services: Services, rollout: Rollout) -> str | None:
    """The id of a rollout pushed later to the same endpoint (registry time decides), if any."""
    page, _ = await services.store.list(repository=rollout.repository, limit=100)
    for stored in page:
        other = from_stored(stored)
        if machine.supersedes(other, rollout):
            return other.id
    return None


def _inspection_due(rollout: Rollout, now: datetime) -> bool:
    """Read the manifest once the primary has it, or when the primary's probe is due anyway:
    the inspection must not bypass the probe's backoff."""
    primary = rollout.primary
    if primary is None or primary.state not in (
        RegionState.AWAITING_REPLICATION,
        RegionState.TIMED_OUT,
    ):
        return True
    return primary.next_probe_at is None or primary.next_probe_at <= now


def _still_probed(rollout: Rollout, region: str) -> bool:
    return rollout.region(region).state in (RegionState.AWAITING_REPLICATION, RegionState.TIMED_OUT)


async def _probe_outcome(services: Services, rollout: Rollout, region: str) -> ProbeOutcome | None:
    """The replica's answer, or None when the registry's request budget is spent for now."""
    endpoint = services.config.region(region).registry_endpoint
    if not services.budget(endpoint).take(time.monotonic()):
        return None  # the region stays due and a later tick tries
    outcome = await services.probe.probe(region, rollout.repository, rollout.digest)
    if outcome.verdict is ProbeVerdict.CONFIG_ERROR:
        log.error("probe of %s in %s: %s", rollout.subject, region, outcome.error)
    return outcome


async def _start_deployment(
    services: Services, rollout: Rollout, action: machine.StartDeployment, clock: Clock
) -> Rollout:
    region, endpoint = action.region, action.endpoint
    now = clock()
    newer = await newer_rollout(services, rollout)
    if newer is not None:
        # Intake supersedes at once; this check makes it hold even if that step was lost.
        log.info(
            "rollout %s: %s is newer for endpoint %s; not deploying", rollout.id, newer, endpoint
        )
        return machine.supersede(rollout, by=newer, now=now)
    if not await services.store.acquire_endpoint_lease(
        region, endpoint, rollout.id, now, LEASE_TTL
    ):
        lease = await services.store.get_endpoint_lease(region, endpoint)
        holder = lease.holder_rollout_id if lease else "another rollout"
        return machine.record_action_error(
            rollout, region, f"waiting: endpoint {endpoint} is being changed by {holder}", now
        )
    status = await services.deployer.endpoint_status(region, endpoint, with_deployments=False)
    if status.state is ProvisioningState.MISSING:
        await services.deployer.begin_create_endpoint(
            region, endpoint, auth_mode=services.config.endpoint_auth_mode
        )
        return machine.record_action_error(
            rollout, region, f"waiting: creating endpoint {endpoint}", clock()
        )
    if status.state is ProvisioningState.IN_PROGRESS:
        return machine.record_action_error(
            rollout, region, f"waiting: endpoint {endpoint} is provisioning", clock()
        )
    if status.state is ProvisioningState.FAILED:
        return machine.record_deployment_failed(
            rollout, region, f"endpoint {endpoint} is in a failed state", clock()
        )
    workspace = services.config.region(region).workspace.resource_id
    existing = await services.deployer.deployment_status(
        region, endpoint, action.deployment_name, operation_url=None
    )
    if existing.state is not ProvisioningState.MISSING:
        # A concurrent step (timer and event at once) created it first: adopt it, don't PUT again.
        ref = DeploymentRef(workspace=workspace, endpoint=endpoint, name=action.deployment_name)
        return machine.record_deployment_started(rollout, region, ref, clock())
    # By digest, never by tag: the tag may move while regions are still rolling out.
    image = f"{rollout.registry}/{rollout.repository}@{rollout.digest}"
    operation = await services.deployer.begin_create_deployment(
        region,
        endpoint,
        action.deployment_name,
        image=image,
        instance_type=action.settings.instance_type,
        instance_count=action.settings.instance_count,
    )
    ref = DeploymentRef(
        workspace=workspace, endpoint=endpoint, name=action.deployment_name, operation=operation
    )
    return machine.record_deployment_started(rollout, region, ref, clock())


async def _shift_traffic(
    services: Services, rollout: Rollout, region: str, ref: DeploymentRef, clock: Clock
) -> Rollout:
    status = await services.deployer.endpoint_status(region, ref.endpoint)
    if status.state is ProvisioningState.IN_PROGRESS:
        return rollout  # an update (maybe ours) is still running
    if dict(status.traffic) == {ref.name: 100} or (status.traffic.get(ref.name) == 100):
        others = sorted(name for name in status.deployments if name != ref.name)
        # The endpoint is leased to this rollout, so any other deployment is the one we replace.
        previous = others[0] if others else None
        return machine.record_traffic_shifted(rollout, region, previous, clock())
    await services.deployer.begin_set_traffic(region, ref.endpoint, {ref.name: 100})
    return rollout


async def _deleted(services: Services, region: str, ref: DeploymentRef) -> bool:
    """Delete `ref` if it is still there; True once it is gone."""
    status = await services.deployer.deployment_status(
        region, ref.endpoint, ref.name, operation_url=None
    )
    if status.state is ProvisioningState.MISSING:
        return True
    if status.state is not ProvisioningState.IN_PROGRESS:
        await services.deployer.begin_delete_deployment(region, ref.endpoint, ref.name)
    return False


# A region needs its endpoint lease while it may still change the endpoint.
_CHANGING_STATES = frozenset({RegionState.REPLICATED, RegionState.DEPLOYING})
# States in which a region never took a lease.
_NEVER_LEASED = frozenset({RegionState.AWAITING_REPLICATION, RegionState.TIMED_OUT})


async def _release_finished_leases(services: Services, rollout: Rollout) -> None:
    """Give up the endpoint lease of every region that is done changing its endpoint.

    Done on every step, not only on the change, so a crash between saving and
    releasing costs one step's delay, not the lease's whole TTL.
    """
    if rollout.target is None:
        return
    for region in rollout.regions:
        if region.state in _NEVER_LEASED:
            continue
        if region.state in _CHANGING_STATES or region.deploy_step in PENDING_STEPS:
            continue
        await services.store.release_endpoint_lease(
            region.region, rollout.target.endpoint, rollout.id
        )


async def publish_outbox(
    services: Services, rollout: Rollout, *, clock: Clock = utc_now
) -> Rollout:
    """Send the outbox; on success drop the sent events in a write of their own."""
    if not rollout.outbox:
        return rollout
    events = [EventToPublish(e.id, e.type.value, e.subject, e.time, e.data) for e in rollout.outbox]
    try:
        await services.publisher.publish(events)
    except PublishError as error:
        log.warning(
            "rollout %s: %d event(s) stay in the outbox: %s", rollout.id, len(events), error
        )
        return rollout
    sent = [e.id for e in rollout.outbox]

    def drop_sent(stored: StoredRollout) -> StoredRollout | None:
        current = from_stored(stored)
        cleaned = machine.mark_published(current, sent)
        if cleaned is current:
            return None
        return to_stored(cleaned, clock(), services.policy, services.deploy_poll, stored)

    saved = await services.store.update_with_retry(rollout.id, drop_sent)
    return from_stored(saved)
