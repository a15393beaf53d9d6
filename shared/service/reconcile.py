"""The reconcile step: load a rollout, carry out what the state machine asks, save with an ETag.

Every trigger ends here. The domain decides; this module only runs each action
through its adapter and feeds the outcome back to the matching pure `record_*`
function. Actions are idempotent on the world (deterministic deployment names,
PUTs, deletes that tolerate absence), so when a concurrent writer wins the ETag
race the pass simply runs again from a fresh read. A step whose outcome makes
the next one possible (endpoint claimed → create; provisioned → smoke →
traffic) runs in the next pass at once, not on the next timer tick. Changes to
other rollouts (supersession, a tag that moved, an index's children, a
replaced deployment) are applied only after this rollout's write succeeded.
Events are saved in the same write as the state change (the outbox) and sent
afterwards; a crash in between leaves them for the next step.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.adapters.event_publisher import EventToPublish, PublishError
from shared.adapters.foundry_deployer import ProvisioningState, Started
from shared.adapters.replica_probe import ManifestRead
from shared.adapters.rollout_repository import Loaded, ServingRecord, StaleRecordError
from shared.domain import manifests, replication
from shared.domain import rollout as machine
from shared.domain.model import Rollout, RolloutSummary, rollout_id
from shared.domain.observations import observe
from shared.domain.verdicts import ProbeOutcome, ProbeVerdict
from shared.errors import RefusedError, TransientError
from shared.service import verification
from shared.service.runtime import Services

log = logging.getLogger("georollout.reconcile")

Clock = Callable[[], datetime]
_ATTEMPTS = 5
# Passes in one invocation: enough for claim → create → check, or smoke → traffic → clean-up.
_PASSES = 4
# The trace of one reconcile step: a span per pass, the adapter calls as their children.
RECONCILE_SPAN = "georollout.reconcile"
PASS_SPAN = "georollout.reconcile.pass"
ROLLOUT_ATTRIBUTE = "georollout.rollout_id"
# Actions that only touch the table (the endpoint lease); the others call Azure ML.
_TABLE_ACTIONS = (machine.RenewLease, machine.ReleaseLease, machine.ClaimEndpoint)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Pass:
    """One pass's work: the rollout as it goes, and changes to other rollouts for afterwards."""

    rollout: Rollout
    followups: list[Callable[[], Awaitable[object]]] = field(default_factory=list)


async def reconcile(
    services: Services,
    rollout_id: str,
    *,
    clock: Clock = utc_now,
    probe_now: str | None = None,
    deploy: bool = True,
    loaded: Loaded | None = None,
) -> Rollout | None:
    """Move one rollout on as far as the world allows right now; None when it does not exist.

    `probe_now` (a region) makes that region's probe due at once: a regional
    webhook's hint. Only the probe's answer can mark it replicated.
    `deploy=False` limits the step to the registry (manifest, tags, probes):
    intake answers fast and leaves deployments to the completion function and the timer.
    `loaded`: the rollout as the caller has just read it (the tick's check of its due
    entry), so the first pass does not read it again.
    """
    # On the follow-ups' own clock (`clock` may be a test's): the next wake-up counts from here.
    began = services.follow_ups.now() if services.follow_ups is not None else None
    with services.telemetry.span(RECONCILE_SPAN, {ROLLOUT_ATTRIBUTE: rollout_id}):
        rollout = await _passes(services, rollout_id, clock, probe_now, deploy, loaded)
        if rollout is None:
            return None
        with services.telemetry.span("eventgrid.publish"):
            rollout = await publish_outbox(services, rollout)
    if services.follow_ups is not None:
        # Its next step (a poll, a soak's end, a probe's back-off) runs when due, not per tick.
        services.follow_ups.after(
            rollout,
            lambda: reconcile(services, rollout_id),
            began=began,
            probes_from=_refused_retry_at(services),
        )
    return rollout


def _refused_retry_at(services: Services) -> datetime | None:
    """When this process's refused registry requests are to be tried again (the end of the
    budget's line of refused requests), if any are waiting."""
    at = services.budget(services.config.registry_login_server).refused_retry_at
    return None if at is None else datetime.fromtimestamp(at, UTC)


async def _passes(
    services: Services,
    rollout_id: str,
    clock: Clock,
    probe_now: str | None,
    deploy: bool,
    loaded: Loaded | None,
) -> Rollout | None:
    """Pass after pass while each changes something (at most `_PASSES`), each from the
    version the one before saved: its write's ETag stands for a fresh read."""
    rollout: Rollout | None = None
    for number in range(_PASSES):
        with services.telemetry.span(PASS_SPAN, {"georollout.pass": number + 1}):
            result = await _pass(
                services, rollout_id, clock, probe_now if number == 0 else None, deploy, loaded
            )
        if result is None:
            break
        loaded, progressed = result
        rollout = loaded.rollout
        if not progressed:
            break
    return rollout


async def _pass(
    services: Services,
    rollout_id: str,
    clock: Clock,
    probe_now: str | None,
    deploy: bool,
    loaded: Loaded | None,
) -> tuple[Loaded, bool] | None:
    """One decide-act-save round from `loaded` (else a read; a read again after an ETag
    conflict): (the rollout as saved, whether it changed), None when it does not exist."""
    telemetry = services.telemetry
    for attempt in range(_ATTEMPTS):
        if loaded is None or attempt > 0:
            with telemetry.span("table.get"):
                loaded = await services.rollouts.get(rollout_id)
        if loaded is None:
            return None
        now = clock()
        work = _Pass(machine.tick(loaded.rollout, now, services.policy))
        if probe_now is not None:
            work.rollout = machine.expedite_probe(work.rollout, probe_now, now)
        await _act(services, work, clock, deploy=deploy)
        if replication.needs_estimates(work.rollout):
            models = await services.replication.models()
            work.rollout = replication.estimate_arrivals(work.rollout, models, services.policy)
        work.rollout = machine.record_step_completed(work.rollout)
        if work.rollout is loaded.rollout:
            return loaded, False
        try:
            with telemetry.span("table.save"):
                saved = await services.rollouts.save(loaded, work.rollout)
        except StaleRecordError:
            log.info("rollout %s changed under us (attempt %d): again", rollout_id, attempt + 1)
            continue
        observed = observe(loaded.rollout, work.rollout)
        telemetry.record(observed)
        for followup in work.followups:
            await followup()
        if observed.arrivals:
            with telemetry.span("table.replication_stats"):
                await services.replication.record(observed.arrivals)
        return saved, True
    log.warning(
        "rollout %s: gave up after %d ETag conflicts; the next trigger carries on",
        rollout_id,
        _ATTEMPTS,
    )
    return None


async def _act(services: Services, work: _Pass, clock: Clock, *, deploy: bool) -> None:
    """Run the actions `next_actions` asks for, recording each outcome as it comes."""
    actions = machine.next_actions(work.rollout, clock(), services.policy)
    probed: set[str] = set()
    for action in actions:
        if isinstance(action, machine.ReadPrimary):
            probed |= await _read_primary(services, work, action, clock)
    # Probes of different regions go out together; their outcomes are recorded in order.
    regions = [
        a.region
        for a in actions
        if isinstance(a, machine.ProbeRegion)
        and a.region not in probed
        and work.rollout.region(a.region).state in machine.PROBED_STATES
    ]
    outcomes = await asyncio.gather(*(_probe(services, work.rollout, r, clock) for r in regions))
    for region, answer in zip(regions, outcomes, strict=True):
        if answer is not None:
            outcome, asked_at = answer
            work.rollout = machine.record_probe(
                work.rollout,
                region,
                outcome,
                clock(),
                services.policy,
                jitter=random.random(),
                asked_at=asked_at,
            )
    # Decide the rest on what the registry just said (a confirmation may have superseded
    # this rollout): never claim an endpoint on a stale decision.
    for action in machine.next_actions(work.rollout, clock(), services.policy):
        if isinstance(action, machine.ReadPrimary | machine.ProbeRegion):
            continue
        if not deploy and not isinstance(action, machine.ReleaseLease):
            continue
        region = action.region
        try:
            with services.telemetry.span(_span_name(action), {"region": region}):
                await _run(services, work, action, clock)
        except RefusedError as error:
            if isinstance(action, machine.RestorePrevious | machine.RedeployPrevious):
                work.rollout = machine.record_rollback_failed(
                    work.rollout, region, error.message, clock()
                )
                continue
            work.rollout = machine.record_deployment_failed(
                work.rollout, region, error.message, clock()
            )
        except TransientError as error:
            work.rollout = machine.record_action_error(work.rollout, region, error.message, clock())


def _span_name(action: machine.Action) -> str:
    """`azureml.create_deployment`, `table.renew_lease`: the service and the action."""
    name = type(action).__name__
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
    return f"{'table' if isinstance(action, _TABLE_ACTIONS) else 'azureml'}.{snake}"


# --- the registry -----------------------------------------------------------------------


async def _read_primary(
    services: Services, work: _Pass, action: machine.ReadPrimary, clock: Clock
) -> set[str]:
    """Ask the primary what only it can confirm (see `ReadPrimary`); returns the regions
    whose probe this counted as (the manifest read is the primary's probe too)."""
    primary = services.config.primary_region.name
    before = work.rollout
    if action.manifest:
        if not await _spend(services):
            return set()
        asked_at = clock()
        with services.telemetry.span("registry.read_manifest", {"region": primary}):
            read = await services.probe.read_manifest(
                primary, work.rollout.repository, work.rollout.digest
            )
        work.rollout = machine.record_probe(
            work.rollout,
            primary,
            read.outcome,
            clock(),
            services.policy,
            jitter=random.random(),
            asked_at=asked_at,
        )
        if read.outcome.verdict is not ProbeVerdict.PRESENT or read.manifest is None:
            return {primary}  # not there yet: decided on a later read, no tag checked either
        await _classify(services, work, read, clock)
    confirmed: list[str] = []
    peers: list[RolloutSummary] | None = None
    if action.tags and work.rollout.deployable is not False:
        confirmed, peers = await _resolve_tags(services, work, action.tags, clock)
    await _place_on_endpoint(services, work, before, confirmed, peers, clock)
    return {primary} if action.manifest else set()


async def _classify(services: Services, work: _Pass, read: ManifestRead, clock: Clock) -> None:
    """Judge the manifest (the domain decides; this only makes the reads it asks for)."""
    rollout, primary = work.rollout, services.config.primary_region.name
    assert read.manifest is not None
    first = manifests.inspect_manifest(read.manifest, read.media_type)
    verdict: manifests.ManifestVerdict | None
    if isinstance(first, manifests.NotDeployable):
        verdict, runs = first, rollout.digest
    elif isinstance(first, manifests.ReadChild):
        for part in first.parts:
            work.followups.append(_mark_child(services, rollout, part, clock))
        verdict, runs = None, first.digest
        if await _spend(services):
            child = await services.probe.read_manifest(primary, rollout.repository, first.digest)
            if child.manifest is not None:
                verdict = manifests.judge_platform_manifest(child.manifest, child.media_type)
    else:
        verdict, runs = None, rollout.digest
        if await _spend(services):
            blob = await services.probe.read_config(primary, rollout.repository, first.digest)
            if blob is not None:
                verdict = manifests.judge_config(blob, first.image_size_bytes)
    if verdict is None:
        return  # no answer now: a later step reads again
    if isinstance(verdict, manifests.NotDeployable):
        work.rollout = machine.record_not_deployable(work.rollout, verdict.reason, clock())
    else:
        work.rollout = machine.record_deployable(
            work.rollout, verdict.image_size_bytes, clock(), platform_digest=runs
        )


async def _resolve_tags(
    services: Services, work: _Pass, tags: tuple[str, ...], clock: Clock
) -> tuple[list[str], list[RolloutSummary] | None]:
    """Where each claimed tag points in the primary now; returns the tags it confirmed and
    the endpoint's rollouts when it had to read them (None when it did not)."""
    rollout, primary = work.rollout, services.config.primary_region.name
    resolved: dict[str, str | None] = {}
    for tag in tags:
        if not await _spend(services):
            break
        with services.telemetry.span("registry.resolve_tag", {"region": primary}):
            read = await services.probe.resolve_tag(primary, rollout.repository, tag)
        if read.outcome.verdict is ProbeVerdict.PRESENT:
            resolved[tag] = read.digest
        elif read.outcome.verdict is ProbeVerdict.ABSENT:
            resolved[tag] = None
    rejected = [t for t, d in resolved.items() if d != rollout.digest]
    if rejected:
        log.info(
            "rollout %s: tag(s) %s do not point at %s in the registry; not counted",
            rollout.id,
            ", ".join(rejected),
            rollout.digest,
        )
    confirmed = [t for t, d in resolved.items() if d == rollout.digest]
    peers = await _peers(services, rollout) if confirmed else None
    work.rollout = machine.record_tags_resolved(rollout, resolved, peers or [], clock())
    return confirmed, peers


async def _place_on_endpoint(
    services: Services,
    work: _Pass,
    before: Rollout,
    confirmed: list[str],
    peers: list[RolloutSummary] | None,
    clock: Clock,
) -> None:
    """Carry out what the domain decides once the registry placed the rollout (`peers`:
    the endpoint's rollouts if this read already has them; one query otherwise)."""
    placed = machine.needs_placing(before, work.rollout)
    if not confirmed and not placed:
        return
    rollout = work.rollout
    if peers is None:
        peers = await _peers(services, rollout)
    decided = machine.place(rollout, peers, placed=placed, confirmed=confirmed)
    if decided.superseded_by is not None:
        work.rollout = machine.supersede(rollout, by=decided.superseded_by, now=clock())
    for older in decided.supersedes:
        work.followups.append(_supersede(services, older, rollout, clock))
    for other in decided.lost_tags:
        work.followups.append(
            _update(services, other, lambda r: machine.drop_tags(r, confirmed, clock()))
        )


async def _peers(services: Services, rollout: Rollout) -> list[RolloutSummary]:
    if rollout.target is None:
        return []
    peers: list[RolloutSummary] = await services.rollouts.targeting(rollout.target.endpoint)
    return peers


async def _spend(services: Services) -> bool:
    """One request from the registry's budget, whichever replica it goes to (every replica
    is the same registry, metered as one), waiting a few seconds at most for its slot;
    False: none free so soon, a later step tries."""
    with services.telemetry.span("table.reserve_request"):
        return await services.budget(services.config.registry_login_server).take()


async def _probe(
    services: Services, rollout: Rollout, region: str, clock: Clock
) -> tuple[ProbeOutcome, datetime] | None:
    """The replica's answer and when it was asked, or None when the registry's request
    budget is spent for now."""
    if not await _spend(services):
        return None  # the region stays due and a later tick tries
    asked_at = clock()
    with services.telemetry.span("registry.probe", {"region": region}):
        outcome = await services.probe.probe(region, rollout.repository, rollout.digest)
    if outcome.verdict is ProbeVerdict.CONFIG_ERROR:
        log.error("probe of %s in %s: %s", rollout.subject, region, outcome.error)
    return outcome, asked_at


# --- Azure ML -----------------------------------------------------------------------------


async def _run(services: Services, work: _Pass, action: machine.Action, clock: Clock) -> None:
    rollout, deployer = work.rollout, services.deployer
    match action:
        case machine.ClaimEndpoint(region=region, endpoint=endpoint):
            work.rollout = await _claim(services, rollout, region, endpoint, clock)
        case machine.CreateDeployment(region=region, deployment=ref):
            work.rollout = await _create(services, rollout, action, clock)
        case machine.CheckDeployment(region=region, deployment=ref):
            status = await deployer.deployment_status(
                region, ref.endpoint, ref.name, operation_url=ref.operation
            )
            if status.state is ProvisioningState.SUCCEEDED:
                work.rollout = machine.record_provisioning_succeeded(rollout, region, clock())
            elif status.state is ProvisioningState.FAILED:
                work.rollout = machine.record_provisioning_failed(
                    rollout, region, status.error or "provisioning failed", clock()
                )
            elif status.state is ProvisioningState.MISSING:
                work.rollout = machine.record_deployment_failed(
                    rollout,
                    region,
                    f"deployment {ref.name} disappeared from {ref.endpoint}",
                    clock(),
                )
        case machine.SmokeTest(region=region, deployment=ref, request_body=body):
            result = await deployer.smoke_test(
                region, ref.endpoint, ref.name, json.loads(body or "{}")
            )
            work.rollout = machine.record_smoke_answer(
                rollout, region, result.status, result.body, clock()
            )
        case machine.ShiftTraffic(region=region, deployment=ref, percent=percent):
            found = await deployer.endpoint_status(region, ref.endpoint, with_deployments=False)
            if found.state is ProvisioningState.IN_PROGRESS:
                return  # an update (maybe ours) is still running
            weights = _traffic_for(action)
            if any(found.traffic.get(name, 0) != share for name, share in weights.items()):
                started = await deployer.begin_set_traffic(region, ref.endpoint, weights)
                work.rollout = machine.record_check_after(
                    rollout, region, started.retry_after_s, clock()
                )
                return
            if percent < 100:
                work.rollout = machine.record_traffic_shifted(rollout, region, clock(), percent)
                return
            # Recorded before the region says live: the next rollout on this endpoint
            # deletes exactly this deployment as "the previous one", nothing else.
            await services.rollouts.set_serving(
                ServingRecord(region, ref.endpoint, ref.name, rollout.id)
            )
            work.rollout = machine.record_traffic_shifted(rollout, region, clock())
            previous = work.rollout.region(region).previous_rollout
            if previous and previous != rollout.id:
                work.followups.append(
                    _update(
                        services,
                        previous,
                        lambda r: machine.record_replaced(r, region, rollout.id, clock()),
                    )
                )
        case machine.VerifyDeployment(region=region):
            verdict = await verification.verify(verification.checks_for(deployer), action)
            work.rollout = machine.record_verification(
                rollout, region, verdict.passed, verdict.detail, clock()
            )
        case (
            machine.DeletePrevious(region=region, deployment=ref)
            | machine.DiscardDeployment(region=region, deployment=ref)
        ):
            deleting = await _delete(services, region, ref.endpoint, ref.name)
            if deleting is not None:
                pace = deleting.retry_after_s
                work.rollout = machine.record_check_after(rollout, region, pace, clock())
            elif isinstance(action, machine.DeletePrevious):
                work.rollout = machine.record_previous_deleted(rollout, region, clock())
            else:
                work.rollout = machine.record_deployment_discarded(rollout, region, clock())
        case machine.RenewLease(region=region, endpoint=endpoint):
            until, holder = await services.rollouts.take_lease(
                region, endpoint, rollout.id, clock()
            )
            if until is None:
                work.rollout = machine.record_deployment_failed(
                    rollout, region, f"lost the lease on endpoint {endpoint} to {holder}", clock()
                )
            else:
                work.rollout = machine.record_lease_renewed(rollout, region, until, clock())
        case machine.ReleaseLease(region=region, endpoint=endpoint):
            await services.rollouts.release_lease(region, endpoint, rollout.id)
            work.rollout = machine.record_lease_released(rollout, region, clock())
        case machine.RestorePrevious():
            work.rollout = await _restore(services, rollout, action, clock)
        case machine.RedeployPrevious(region=region, deployment=ref):
            status = await deployer.deployment_status(
                region, ref.endpoint, ref.name, operation_url=None
            )
            if status.state is ProvisioningState.MISSING:
                started = await deployer.begin_create_deployment(
                    region,
                    ref.endpoint,
                    ref.name,
                    image=action.image,
                    instance_type=action.settings.instance_type,
                    instance_count=action.settings.instance_count,
                )
                work.rollout = machine.record_check_after(
                    rollout, region, started.retry_after_s, clock()
                )
            elif status.state is ProvisioningState.SUCCEEDED:
                work.rollout = machine.record_previous_redeployed(rollout, region, clock())
            elif status.state is ProvisioningState.FAILED:
                why = f"redeploying {action.image} as {ref.name} failed: {status.error or '?'}"
                work.rollout = machine.record_rollback_failed(rollout, region, why, clock())
        case _:
            raise AssertionError(f"unhandled action {action!r}")


def _traffic_for(action: machine.ShiftTraffic) -> dict[str, int]:
    """The endpoint's weights for a traffic step: ours, and below 100% the rest on the
    deployment that served before (every other deployment gets 0, as at 100%)."""
    if action.percent >= 100 or action.previous is None:
        return {action.deployment.name: 100}
    return {action.deployment.name: action.percent, action.previous: 100 - action.percent}


async def _claim(
    services: Services, rollout: Rollout, region: str, endpoint: str, clock: Clock
) -> Rollout:
    workspace = services.config.region(region).workspace.resource_id
    newer = machine.newest_above(rollout, await services.rollouts.targeting(endpoint))
    if newer is not None:
        # Intake supersedes at once; this check makes it hold even if that step was lost.
        log.info(
            "rollout %s: %s is newer on endpoint %s; not deploying", rollout.id, newer.id, endpoint
        )
        claim = machine.EndpointClaim(workspace=workspace, newer=newer)
        return machine.record_endpoint_claim(rollout, region, claim, clock())
    until, holder = await services.rollouts.take_lease(region, endpoint, rollout.id, clock())
    if until is None and holder and await _abandoned(services, holder, region, endpoint, clock):
        log.warning("lease on %s in %s taken over from %s", endpoint, region, holder)
        until = await services.rollouts.take_over_lease(
            region, endpoint, holder, rollout.id, clock()
        )
    if until is None:
        claim = machine.EndpointClaim(workspace=workspace, held_by=holder)
        return machine.record_endpoint_claim(rollout, region, claim, clock())
    serving = await services.rollouts.serving(region, endpoint)
    claim = machine.EndpointClaim(
        workspace=workspace,
        lease_until=until,
        serving_deployment=serving.deployment if serving else None,
        serving_rollout=serving.rollout_id if serving else None,
    )
    return machine.record_endpoint_claim(rollout, region, claim, clock())


async def _restore(
    services: Services, rollout: Rollout, action: machine.RestorePrevious, clock: Clock
) -> Rollout:
    """One step of an operator's rollback in a region: the lease first (one rollout changes
    an endpoint at a time), then traffic back to the deployment that served before; when
    that is gone, the image it ran is looked up to redeploy it."""
    region, ref, deployer = action.region, action.restore_to, services.deployer
    if rollout.region(region).lease_until is None:
        until, holder = await services.rollouts.take_lease(
            region, action.endpoint, rollout.id, clock()
        )
        if until is None:
            why = f"endpoint {action.endpoint} is being changed by {holder or 'another rollout'}"
            return machine.record_waiting(rollout, region, why, clock())
        rollout = machine.record_lease_taken(rollout, region, until, clock())
    status = await deployer.deployment_status(region, ref.endpoint, ref.name, operation_url=None)
    if status.state is ProvisioningState.MISSING:
        image, why = await _previous_image(services, action.previous_rollout)
        return machine.record_previous_gone(rollout, region, image, why, clock())
    if status.state is ProvisioningState.FAILED:
        why = f"deployment {ref.name} is in a failed state: {status.error or '?'}"
        return machine.record_rollback_failed(rollout, region, why, clock())
    if status.state is ProvisioningState.IN_PROGRESS:
        return machine.record_waiting(
            rollout, region, f"deployment {ref.name} is updating", clock()
        )
    found = await deployer.endpoint_status(region, ref.endpoint, with_deployments=False)
    if found.state is ProvisioningState.IN_PROGRESS:
        return machine.record_waiting(
            rollout, region, f"endpoint {ref.endpoint} is updating", clock()
        )
    if found.traffic.get(ref.name) == 100:
        # Recorded before the region says rolled back: the next rollout on this endpoint
        # replaces (and later deletes) exactly the restored deployment.
        await services.rollouts.set_serving(
            ServingRecord(region, ref.endpoint, ref.name, action.previous_rollout or "")
        )
        return machine.record_traffic_restored(rollout, region, clock())
    started = await deployer.begin_set_traffic(region, ref.endpoint, {ref.name: 100})
    return machine.record_check_after(rollout, region, started.retry_after_s, clock())


async def _previous_image(
    services: Services, previous_rollout: str | None
) -> tuple[str | None, str]:
    """The image the rollout that served before ran (by digest), or None and why not."""
    if not previous_rollout:
        return None, "the previous deployment is gone and georollout did not deploy it"
    loaded = await services.rollouts.get(previous_rollout)
    if loaded is None:
        return (
            None,
            f"the previous deployment is gone and its rollout {previous_rollout} is unknown",
        )
    previous = loaded.rollout
    if previous.deleted_at is not None:
        return None, f"the previous deployment is gone and its image {previous.subject} was deleted"
    digest = previous.platform_digest or previous.digest
    return f"{previous.registry}/{previous.repository}@{digest}", ""


async def _abandoned(
    services: Services, holder: str, region: str, endpoint: str, clock: Clock
) -> bool:
    """Whether `holder`'s lease is one no step will ever give back: its rollout does not
    record it (a pass took the lease, then lost its save to a concurrent writer)."""
    lease = await services.rollouts.lease(region, endpoint)
    if lease is None or lease.holder_rollout_id != holder:
        return False
    loaded = await services.rollouts.get(holder)
    return machine.lease_abandoned(
        loaded.rollout if loaded else None, region, lease.taken_at, clock()
    )


async def _create(
    services: Services, rollout: Rollout, action: machine.CreateDeployment, clock: Clock
) -> Rollout:
    """Make the recorded deployment exist: the endpoint first, then the deployment (adopted
    when an earlier attempt created it already, never created twice)."""
    region, ref, deployer = action.region, action.deployment, services.deployer
    endpoint = ref.endpoint
    status = await deployer.endpoint_status(region, endpoint, with_deployments=False)
    step = machine.endpoint_step(endpoint, region, status.state.value)
    if status.state in (ProvisioningState.FAILED, ProvisioningState.SUCCEEDED):
        # Kept beside the rollouts so that health can name a failed endpoint in one query.
        await services.rollouts.set_endpoint_failed(
            region,
            endpoint,
            failed=status.state is ProvisioningState.FAILED,
            rollout_id=rollout.id,
            now=clock(),
        )
    pace: float | None = None
    if step.apply_endpoint:
        started = await deployer.begin_create_endpoint(
            region, endpoint, auth_mode=services.config.endpoint_auth_mode
        )
        pace = started.retry_after_s
    if step.waiting_for is not None:
        waiting = machine.record_waiting(rollout, region, step.waiting_for, clock())
        return machine.record_check_after(waiting, region, pace, clock())
    existing = await deployer.deployment_status(region, endpoint, ref.name, operation_url=None)
    if existing.state is not ProvisioningState.MISSING:
        return machine.record_deployment_created(rollout, region, None, clock())
    started = await deployer.begin_create_deployment(
        region,
        endpoint,
        ref.name,
        image=action.image,
        instance_type=action.settings.instance_type,
        instance_count=action.settings.instance_count,
    )
    created = machine.record_deployment_created(rollout, region, started.operation_url, clock())
    # After the step changed: ARM's pace belongs to the provisioning it just started.
    return machine.record_check_after(created, region, started.retry_after_s, clock())


async def _delete(services: Services, region: str, endpoint: str, name: str) -> Started | None:
    """Delete `name` if it is still there: None once it is gone, else the delete under way
    (with ARM's pace when this call started it)."""
    status = await services.deployer.deployment_status(region, endpoint, name, operation_url=None)
    if status.state is ProvisioningState.MISSING:
        return None
    if status.state is ProvisioningState.IN_PROGRESS:
        return Started()
    # Never on a guess: a deployment that (still, or after all) holds traffic is not deleted,
    # whatever the record says (a traffic PUT may have landed after its deadline).
    endpoint_now = await services.deployer.endpoint_status(region, endpoint, with_deployments=False)
    share = endpoint_now.traffic.get(name, 0)
    if share > 0:
        raise TransientError(
            f"deployment {name} has {share}% of endpoint {endpoint}'s traffic: not deleted"
        )
    return await services.deployer.begin_delete_deployment(region, endpoint, name)


# --- other rollouts -----------------------------------------------------------------------


def _update(
    services: Services, other: str, change: Callable[[Rollout], Rollout]
) -> Callable[[], Awaitable[object]]:
    async def apply() -> object:
        updated = await services.rollouts.update(other, change)
        if updated is not None:
            # Let it give up leases, discard deployments and send its events now.
            await reconcile(services, other, deploy=False)
        return updated

    return apply


def _supersede(
    services: Services, older: str, newer: Rollout, clock: Clock
) -> Callable[[], Awaitable[object]]:
    log.info("rollout %s supersedes %s", newer.id, older)
    return _update(services, older, lambda r: machine.supersede_if_older(r, newer, clock()))


def _mark_child(
    services: Services, index: Rollout, child: str, clock: Clock
) -> Callable[[], Awaitable[object]]:
    child_id = rollout_id(index.registry, index.repository, child)
    return _update(services, child_id, lambda r: machine.mark_index_child(r, index.digest, clock()))


async def postpone_after_crash(
    services: Services, rollout_id: str, error: BaseException, *, clock: Clock = utc_now
) -> None:
    """A step of `rollout_id` raised: record it and try the rollout again later, later each
    time, so it never holds the head of the due queue. Never raises."""
    text = f"{type(error).__name__}: {error}"
    try:
        await services.rollouts.update(
            rollout_id, lambda r: machine.record_step_crashed(r, text, clock(), services.policy)
        )
    except Exception:
        log.exception("could not postpone %s; the next tick tries it again", rollout_id)


# --- events -------------------------------------------------------------------------------


async def publish_outbox(services: Services, rollout: Rollout) -> Rollout:
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
    saved = await services.rollouts.update(rollout.id, lambda r: machine.mark_published(r, sent))
    return saved or rollout
