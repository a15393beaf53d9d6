"""Properties of one rollout steered by operators while it deploys.

Hypothesis state machines drive one rollout (three regions: a primary and two
secondaries) through random interleavings of operator requests (`apply_request`),
probe answers, the actions `next_actions` asks for (carried out against a small
world model that keeps what each replica holds, which deployments exist in each
region and which one has the endpoint's traffic) and timer ticks. After every step:

1. no CreateDeployment (RedeployPrevious) is asked for where the replica lacks the
   image (the previous image);
2. traffic is only ever 100% on one existing, provisioned deployment, and no traffic
   change is asked for beside another step that changes the same region's endpoint. (The
   record can be wrong about traffic when a PUT lands after its deadline; the world here
   answers a delete of the serving deployment as the service does: not deleted.)
3. no operator action is lost: one history entry per request id, a replay is a no-op,
   a refused request changes nothing else, accepted actions show in the state (a held
   region starts no new step; holds last until resumed);
4. the history stays bounded, outbox event ids are unique (and never reused);
5. the state is a RolloutState and the storage record round-trips.

Also: every step leaves the derived rules settled, a step under way always gets the action
that carries it out (also in a stopped rollout), and a failed primary holds the
secondaries that would go on next.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from shared.domain.events import operator_event_id
from shared.domain.model import (
    DeployStep,
    HistoryEntry,
    OperatorAction,
    ProbeEvidence,
    RegionState,
    Rollout,
    RolloutState,
)
from shared.domain.rollout import (
    Action,
    CheckDeployment,
    ClaimEndpoint,
    CreateDeployment,
    DeletePrevious,
    DiscardDeployment,
    EndpointClaim,
    ProbeRegion,
    ReadPrimary,
    RedeployPrevious,
    ReleaseLease,
    RenewLease,
    RestorePrevious,
    ShiftTraffic,
    SmokeTest,
    commit,
    mark_published,
    new_rollout,
    next_actions,
    record_action_error,
    record_deployable,
    record_deployment_created,
    record_deployment_discarded,
    record_deployment_failed,
    record_endpoint_claim,
    record_lease_released,
    record_lease_renewed,
    record_lease_taken,
    record_previous_deleted,
    record_previous_gone,
    record_previous_redeployed,
    record_probe,
    record_provisioning_failed,
    record_provisioning_succeeded,
    record_rollback_failed,
    record_smoke_answer,
    record_traffic_restored,
    record_traffic_shifted,
    record_waiting,
    tick,
)
from shared.domain.serialization import rollout_from_record, rollout_to_record
from shared.domain.steering import (
    ACCEPTED,
    MAX_HISTORY,
    REFUSED,
    RETRYABLE_STATES,
    OperatorRequest,
    apply_request,
)
from shared.domain.targets import ApprovalMode, DeploymentSettings, Target
from shared.domain.verdicts import ProbeOutcome, ProbeVerdict
from tests.unit.domain.builders import (
    DIGEST_A,
    DIGEST_B,
    POLICY,
    REGIONS,
    T0,
    WORKSPACE,
    confirmed,
    notice,
)

ENDPOINT = "models-llm"
IMAGE = f"contoso.azurecr.io/models/llm@{DIGEST_A}"
# What served before this rollout where a previous deployment serves.
PREVIOUS = "blue"
PREVIOUS_ROLLOUT = "rollout-blue"
PREVIOUS_IMAGE = f"contoso.azurecr.io/models/llm@{DIGEST_B}"
APPROVAL_TIMEOUT_S = 4 * 3600.0
LEASE = timedelta(hours=2)

PRESENT = ProbeOutcome(ProbeVerdict.PRESENT, ProbeEvidence(200))
ABSENT = ProbeOutcome(ProbeVerdict.ABSENT, ProbeEvidence(404))
TRANSIENT = ProbeOutcome(ProbeVerdict.TRANSIENT, ProbeEvidence(503), error="busy")

# Steps that change what an endpoint runs or serves in a region.
CHANGING = (
    ClaimEndpoint,
    CreateDeployment,
    CheckDeployment,
    SmokeTest,
    ShiftTraffic,
    DeletePrevious,
    DiscardDeployment,
    RestorePrevious,
    RedeployPrevious,
    ReleaseLease,
)
TRAFFIC = (ShiftTraffic, RestorePrevious)
NEW_STEPS = (ClaimEndpoint, CreateDeployment, SmokeTest)
ROLLING_BACK = (DeployStep.RESTORING, DeployStep.REDEPLOYING_PREVIOUS)
READY = (RegionState.REPLICATED, RegionState.AWAITING_APPROVAL)
# The action that carries out each step under way.
IN_FLIGHT: dict[DeployStep, type[Action]] = {
    DeployStep.CREATING: CheckDeployment,
    DeployStep.SHIFTING_TRAFFIC: ShiftTraffic,
    DeployStep.CLEANING_UP: DeletePrevious,
    DeployStep.DISCARDING: DiscardDeployment,
    DeployStep.RESTORING: RestorePrevious,
    DeployStep.REDEPLOYING_PREVIOUS: RedeployPrevious,
}

region_subsets = st.one_of(
    st.none(),
    st.sets(st.sampled_from(REGIONS), min_size=1).map(
        lambda names: tuple(r for r in REGIONS if r in names)
    ),
)
# Small steps, and jumps past the deadlines: verify 600 s, traffic 1800 s, replication
# 4200 s, keep-previous 3600 s, deployment 3600 s, approval 4 h, give-up 24 h.
durations = st.one_of(
    st.integers(1, 120),
    st.integers(1, 120),
    st.integers(1, 120),
    st.sampled_from([601, 1801, 3601, 4201, 7201, APPROVAL_TIMEOUT_S + 1, 86_401]),
)

# Seconds between two reconcile passes.
PAUSES = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 30, 120, 1801, 3601, int(APPROVAL_TIMEOUT_S) + 1)


# --- the world ---------------------------------------------------------------------------


@dataclass
class Deployment:
    image: str
    state: str  # "creating", "succeeded" or "failed"


@dataclass
class RegionWorld:
    """What is true in one region, whatever the rollout records."""

    has_image: bool = False  # the replica holds this rollout's digest
    has_previous_image: bool = False  # it held the previous image when that served
    deployments: dict[str, Deployment] = field(default_factory=dict)
    # The one deployment with 100% of the endpoint's traffic (None: no deployment serves).
    traffic: str | None = None
    serving: tuple[str, str] | None = None  # the serving record: deployment, rollout
    # A traffic change Azure is still carrying out: the endpoint says "updating" until then.
    updating_until: datetime | None = None

    def updating(self, now: datetime) -> bool:
        return self.updating_until is not None and now < self.updating_until

    def send_traffic(self, name: str, now: datetime, outcome: int) -> None:
        """The traffic PUT: 100% to one deployment, at once or (outcome 2-3) after a slow
        update of the endpoint."""
        self.traffic = name
        self.updating_until = now + timedelta(seconds=2400 if outcome in (2, 3) else 30)


def rolling_back(rollout: Rollout) -> bool:
    return any(r.deploy_step in ROLLING_BACK for r in rollout.regions)


class Steering(RuleBasedStateMachine):
    """One rollout, its world, and the operator's requests so far: the rules and invariants
    (the machines below differ in where they start)."""

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.world = {name: RegionWorld() for name in REGIONS}
        self.rollout = self._start(ApprovalMode.NONE, "{}", 0)
        self.requests: list[OperatorRequest] = []
        self.held: set[str] = set()
        self.seen_events: set[str] = set()
        self.serial = 0
        self.stored: Rollout | None = None  # the last value whose record round-tripped

    # --- setup -------------------------------------------------------------------------

    def _start(self, approval: ApprovalMode, smoke: str | None, prefill: int) -> Rollout:
        target = Target(
            endpoint=ENDPOINT,
            settings=DeploymentSettings(smoke_request=smoke),
            approval=approval,
            approval_timeout_s=APPROVAL_TIMEOUT_S,
        )
        rollout = new_rollout(notice(), REGIONS, target, T0)
        rollout = confirmed(record_deployable(rollout, 2_000_000_000, T0), T0)
        # Earlier operator actions (published long ago): the history is near its bound.
        old = tuple(
            HistoryEntry(
                at=T0,
                action=OperatorAction.HOLD,
                actor="earlier",
                actor_verified=False,
                reason=None,
                regions=(),
                outcome=REFUSED,
                message="nothing to hold",
                request_id=f"old-{i}",
            )
            for i in range(prefill)
        )
        return replace(rollout, history=old)

    def _setup(
        self,
        approval: ApprovalMode,
        previous: set[str] | tuple[str, ...],
        smoke: str | None,
        prefill: int,
        head_start: tuple[str, ...],
    ) -> None:
        self.rollout = self._start(approval, smoke, prefill)
        for name in previous:
            world = self.world[name]
            world.has_previous_image = True
            world.deployments[PREVIOUS] = Deployment(PREVIOUS_IMAGE, "succeeded")
            world.traffic = PREVIOUS
            world.serving = (PREVIOUS, PREVIOUS_ROLLOUT)
        self.seen_events = {e.id for e in self.rollout.outbox}
        self._go_live(head_start)

    def _go_live(self, regions: tuple[str, ...]) -> None:
        """A head start: `regions` deployed the ordinary way, every step working at once
        (the approval given when a gate waits), so that runs begin deep in the rollout."""
        for _ in range(30 * len(regions) + 1):
            if all(self.rollout.region(r).state is RegionState.LIVE for r in regions):
                return
            if any(g.approved_at is None for g in self.rollout.gates):
                self._operate(OperatorAction.APPROVE, None, True, False)
            actions = [
                a
                for a in next_actions(self.rollout, self.now, POLICY)
                if not isinstance(a, ReadPrimary) and a.region in regions
            ]
            assert actions, f"head start stuck: {self.rollout.regions}"
            self._set(self._carry_out(actions[0], 9))
            self.time_passes(5)
        raise AssertionError(f"head start did not finish: {self.rollout.regions}")

    def _finish_rollbacks(self) -> None:
        """Another head start: the rollbacks under way carried through, every step working."""
        for _ in range(40):
            if not rolling_back(self.rollout):
                return
            actions = [
                a
                for a in next_actions(self.rollout, self.now, POLICY)
                if isinstance(a, RestorePrevious | RedeployPrevious)
            ]
            if actions:
                self._set(self._carry_out(actions[0], 9))
            self.time_passes(5)
        raise AssertionError(f"rollback did not finish: {self.rollout.regions}")

    # --- stepping ----------------------------------------------------------------------

    def _set(self, after: Rollout) -> None:
        """Adopt the new value; outbox events it adds must have ids never used before."""
        before = {e.id for e in self.rollout.outbox}
        for event in after.outbox:
            if event.id not in before:
                assert event.id not in self.seen_events, f"event id reused: {event}"
                self.seen_events.add(event.id)
        self.rollout = after

    @rule(seconds=durations)
    def time_passes(self, seconds: float) -> None:
        """The timer: time goes on and `tick` applies what it alone decides."""
        self.now += timedelta(seconds=seconds)
        self._set(tick(self.rollout, self.now, POLICY))

    @rule(
        region=st.sampled_from(REGIONS), answer=st.sampled_from(["present", "absent", "transient"])
    )
    def probe(self, region: str, answer: str) -> None:
        world = self.world[region]
        if answer == "present":
            world.has_image = True  # the image arrived in the replica
            outcome = PRESENT
        elif answer == "absent" and not world.has_image:
            outcome = ABSENT
        else:
            outcome = TRANSIENT
        self._set(record_probe(self.rollout, region, outcome, self.now, POLICY, jitter=0.5))

    @rule(data=st.data())
    def publish(self, data: st.DataObject) -> None:
        ids = [e.id for e in self.rollout.outbox]
        if ids:
            sent = data.draw(st.sets(st.sampled_from(ids)), label="published")
            self._set(mark_published(self.rollout, sent))

    @rule(
        steps=st.lists(
            st.tuples(st.integers(0, 31), st.integers(0, 9), st.integers(0, len(PAUSES) - 1)),
            min_size=1,
            max_size=10,
        )
    )
    def reconcile(self, steps: list[tuple[int, int, int]]) -> None:
        """Reconcile passes: carry out actions `next_actions` asks for, each with a random
        outcome consistent with the world (0-3: the troubles, 4-9: it works), the timer
        ticking between passes (mostly not at all, sometimes past a deadline)."""
        for pick, outcome, pause in steps:
            actions = [
                a
                for a in next_actions(self.rollout, self.now, POLICY)
                if not isinstance(a, ReadPrimary)
            ]
            if actions:
                self._set(self._carry_out(actions[pick % len(actions)], outcome))
            if PAUSES[pause]:
                self.time_passes(PAUSES[pause])

    def _carry_out(self, action: Action, outcome: int) -> Rollout:
        assert not isinstance(action, ReadPrimary)
        rollout, now = self.rollout, self.now
        region = action.region
        world = self.world[region]
        match action:
            case ProbeRegion():
                if outcome == 0:
                    answer = TRANSIENT
                elif outcome in (1, 2) and not world.has_image:
                    answer = ABSENT
                else:
                    world.has_image = True  # the image arrived in the replica
                    answer = PRESENT
                return record_probe(rollout, region, answer, now, POLICY, jitter=0.5)
            case ClaimEndpoint():
                if outcome == 0:
                    claim = EndpointClaim(workspace=WORKSPACE, held_by="rollout-other")
                else:
                    serving, by = world.serving or (None, None)
                    claim = EndpointClaim(
                        workspace=WORKSPACE,
                        lease_until=now + LEASE,
                        serving_deployment=serving,
                        serving_rollout=by,
                    )
                return record_endpoint_claim(rollout, region, claim, now)
            case CreateDeployment(deployment=ref):
                if outcome == 0:
                    return record_deployment_failed(rollout, region, "quota exceeded", now)
                if outcome == 1:
                    why = f"endpoint {ENDPOINT} is being created"
                    return record_waiting(rollout, region, why, now)
                if outcome == 2:
                    return record_action_error(rollout, region, "ARM answered 503", now)
                created = Deployment(action.image, "creating")
                assert world.deployments.setdefault(ref.name, created).image == action.image
                return record_deployment_created(rollout, region, f"https://op/{ref.name}", now)
            case CheckDeployment(deployment=ref):
                deployment = world.deployments.get(ref.name)
                assert deployment is not None, f"{ref.name} checked but never created"
                provisioned = self._provision(deployment, outcome)
                if provisioned == "succeeded":
                    return record_provisioning_succeeded(rollout, region, now)
                if provisioned == "failed":
                    return record_provisioning_failed(rollout, region, "image pull failed", now)
                return rollout
            case SmokeTest(deployment=ref):
                deployment = world.deployments.get(ref.name)
                assert deployment is not None and deployment.state == "succeeded"
                status = {0: 400, 1: 503, 2: None}.get(outcome, 200)
                return record_smoke_answer(rollout, region, status, "answer", now)
            case ShiftTraffic():
                return self._shift(action, outcome)
            case DeletePrevious(deployment=ref) | DiscardDeployment(deployment=ref):
                if world.traffic == ref.name:
                    # The record can be wrong about traffic (a PUT that landed after its
                    # deadline): the service looks at the endpoint first and never deletes a
                    # deployment that holds traffic (reconcile._deleted; the service test
                    # test_a_deployment_holding_traffic_is_never_deleted_whatever_the_record_says).
                    why = f"deployment {ref.name} has 100% of the traffic: not deleted"
                    return record_action_error(rollout, region, why, now)
                if outcome == 0:
                    return record_action_error(rollout, region, "delete answered 503", now)
                world.deployments.pop(ref.name, None)
                if isinstance(action, DeletePrevious):
                    return record_previous_deleted(rollout, region, now)
                return record_deployment_discarded(rollout, region, now)
            case RenewLease():
                return record_lease_renewed(rollout, region, now + LEASE, now)
            case ReleaseLease():
                return record_lease_released(rollout, region, now)
            case RestorePrevious():
                return self._restore(action, outcome)
            case RedeployPrevious(deployment=ref):
                deployment = world.deployments.get(ref.name)
                if deployment is None:
                    world.deployments[ref.name] = Deployment(action.image, "creating")
                    return rollout
                provisioned = self._provision(deployment, outcome)
                if provisioned == "succeeded":
                    return record_previous_redeployed(rollout, region, now)
                if provisioned == "failed":
                    why = f"redeploying {action.image} as {ref.name} failed"
                    return record_rollback_failed(rollout, region, why, now)
                return rollout
        raise AssertionError(f"unexpected action {action!r}")

    @staticmethod
    def _provision(deployment: Deployment, outcome: int) -> str:
        """A deployment being created provisions (or fails, or is still at it)."""
        if deployment.state == "creating" and outcome != 1:
            deployment.state = "failed" if outcome == 0 else "succeeded"
        return deployment.state

    def _shift(self, action: ShiftTraffic, outcome: int) -> Rollout:
        """As reconcile does: an endpoint still updating is left alone; 100% already on the
        deployment is recorded; else the traffic PUT is sent, which a later pass sees through."""
        rollout, now, region, name = self.rollout, self.now, action.region, action.deployment.name
        world = self.world[region]
        deployment = world.deployments.get(name)
        assert deployment is not None and deployment.state == "succeeded", (
            f"traffic to {name} in {region}, which is not a provisioned deployment"
        )
        if outcome == 0 or world.updating(now):
            return rollout  # the endpoint is updating (maybe ours): the next pass looks again
        if world.traffic == name:
            world.serving = (name, rollout.id)
            return record_traffic_shifted(rollout, region, now)
        if outcome == 1:
            return record_action_error(rollout, region, "endpoint update answered 503", now)
        world.send_traffic(name, now, outcome)
        return rollout

    def _restore(self, action: RestorePrevious, outcome: int) -> Rollout:
        """As reconcile's `_restore`: the lease, the previous deployment's state, traffic."""
        rollout, now, region = self.rollout, self.now, action.region
        world, name = self.world[region], action.restore_to.name
        if rollout.region(region).lease_until is None:
            if outcome == 0:
                why = f"endpoint {ENDPOINT} is being changed by rollout-other"
                return record_waiting(rollout, region, why, now)
            rollout = record_lease_taken(rollout, region, now + LEASE, now)
        deployment = world.deployments.get(name)
        if deployment is None:
            known = action.previous_rollout is not None and outcome != 1
            image = PREVIOUS_IMAGE if known else None
            return record_previous_gone(rollout, region, image, "its image was deleted", now)
        if deployment.state == "failed":
            return record_rollback_failed(rollout, region, f"{name} is in a failed state", now)
        if deployment.state == "creating":
            return record_waiting(rollout, region, f"deployment {name} is updating", now)
        if outcome == 1 or world.updating(now):
            return record_waiting(rollout, region, f"endpoint {ENDPOINT} is updating", now)
        if world.traffic == name:
            world.serving = (name, action.previous_rollout or "")
            return record_traffic_restored(rollout, region, now)
        world.send_traffic(name, now, outcome)
        return rollout

    # --- operators ---------------------------------------------------------------------

    @rule(
        action=st.sampled_from(OperatorAction),
        regions=region_subsets,
        verified=st.booleans(),
        replay_at_once=st.booleans(),
    )
    def operator(
        self,
        action: OperatorAction,
        regions: tuple[str, ...] | None,
        verified: bool,
        replay_at_once: bool,
    ) -> None:
        self._operate(action, regions, verified, replay_at_once)

    # Gates open and regions go live late in a run: these make sure approve and rollback
    # are also tried when they may fit (with any regions, so they may still be refused).
    @precondition(lambda self: any(g.approved_at is None for g in self.rollout.gates))
    @rule(regions=region_subsets)
    def approve_an_open_gate(self, regions: tuple[str, ...] | None) -> None:
        self._operate(OperatorAction.APPROVE, regions, True, False)

    @precondition(lambda self: any(r.state is RegionState.LIVE for r in self.rollout.regions))
    @rule(regions=region_subsets)
    def roll_back_live_regions(self, regions: tuple[str, ...] | None) -> None:
        self._operate(OperatorAction.ROLLBACK, regions, True, False)

    @precondition(lambda self: any(r.state in RETRYABLE_STATES for r in self.rollout.regions))
    @rule(regions=region_subsets)
    def retry_what_stopped(self, regions: tuple[str, ...] | None) -> None:
        self._operate(OperatorAction.RETRY, regions, False, False)

    def _operate(
        self,
        action: OperatorAction,
        regions: tuple[str, ...] | None,
        verified: bool,
        replay_at_once: bool,
    ) -> None:
        self.serial += 1
        request = OperatorRequest(
            action=action,
            regions=regions,
            reason="because",
            actor="alice",
            actor_verified=verified,
            request_id=f"req-{self.serial}",
        )
        before = self.rollout
        after = apply_request(before, request, self.now)
        self._check_recorded(before, after, request)
        self._set(after)
        self.requests.append(request)
        if replay_at_once:
            assert apply_request(after, request, self.now + timedelta(seconds=1)) is after

    @precondition(lambda self: bool(self.requests))
    @rule(pick=st.integers(0, 1000), other=st.sampled_from(OperatorAction))
    def replay(self, pick: int, other: OperatorAction) -> None:
        """A retried write of an earlier request (even one whose body changed) is a no-op."""
        kept = {e.request_id for e in self.rollout.history}
        earlier = [r for r in self.requests if r.request_id in kept]
        if earlier:
            request = replace(earlier[pick % len(earlier)], action=other, regions=None)
            assert apply_request(self.rollout, request, self.now) is self.rollout

    def _check_recorded(self, before: Rollout, after: Rollout, request: OperatorRequest) -> None:
        mine = [e for e in after.history if e.request_id == request.request_id]
        assert len(mine) == 1, f"{len(mine)} history entries for {request.request_id}"
        entry = mine[0]
        assert after.history[-1] is entry
        assert after.history[:-1] == before.history[-(MAX_HISTORY - 1) :]
        assert (entry.action, entry.at, entry.actor) == (request.action, self.now, "alice")
        assert entry.actor_verified is request.actor_verified
        assert entry.outcome in (ACCEPTED, REFUSED)
        assert (entry.outcome == REFUSED) == (entry.message is not None)
        (event,) = [
            e for e in after.outbox if e.id == operator_event_id(after.id, request.request_id)
        ]
        assert event.data["outcome"] == entry.outcome
        assert event.data["action"] == request.action.value
        if entry.outcome == REFUSED:
            assert after.regions == before.regions
            assert after.gates == before.gates
            assert after.rolled_back_at == before.rolled_back_at
            return
        # Without a region list, the entry names the regions the action applied to.
        named = entry.regions
        assert named, "an accepted action names no region"
        assert request.regions is None or named == request.regions
        now = self.now
        match request.action:
            case OperatorAction.HOLD:
                for name in named:
                    assert after.region(name).operator_hold, f"hold of {name} not applied"
                self.held |= set(named)
            case OperatorAction.RESUME:
                for name in named:
                    region = after.region(name)
                    assert not region.operator_hold and region.resumed_at == now
                self.held -= set(named)
            case OperatorAction.APPROVE:
                assert after.target is not None
                target = after.target
                waves = {target.wave_of(name, after.region(name).primary) for name in named}
                approved = {g.wave for g in after.gates if g.approved_at is not None}
                assert waves <= approved, f"approve of waves {waves} not applied"
                for gate in after.gates:
                    if gate.wave in waves:
                        assert (gate.approved_at, gate.approved_by) == (now, "alice")
                for region in after.regions:
                    wave = target.wave_of(region.region, region.primary)
                    assert not (wave in waves and region.state is RegionState.AWAITING_APPROVAL)
            case OperatorAction.RETRY:
                assert after.rolled_back_at is None
                for name in named:
                    old, new = before.region(name), after.region(name)
                    if old.state is RegionState.HELD:
                        continue  # goes on once the primary is no longer failed
                    assert new.attempt == old.attempt + 1 or new.retry_requested, (
                        f"retry of {name} not applied"
                    )
            case OperatorAction.ROLLBACK:
                assert after.rolled_back_at == now
                assert after.state is RolloutState.ROLLED_BACK
                going_back = request.regions or tuple(
                    r.region
                    for r in before.regions
                    if r.state is RegionState.LIVE and r.deploy_step not in ROLLING_BACK
                )
                for name in going_back:
                    old, new = before.region(name), after.region(name)
                    assert new.deploy_step is DeployStep.RESTORING
                    assert new.restore_to is not None
                    assert new.restore_to.name == old.previous_deployment

    # --- invariants --------------------------------------------------------------------

    @invariant()
    def actions_fit_the_world(self) -> None:
        rollout = self.rollout
        by_region: dict[str, list[Action]] = defaultdict(list)
        for action in next_actions(rollout, self.now, POLICY):
            if isinstance(action, ReadPrimary):
                continue
            by_region[action.region].append(action)
            world = self.world[action.region]
            if isinstance(action, CreateDeployment):
                assert world.has_image, f"CreateDeployment in {action.region}: replica lacks it"
                assert action.image == IMAGE
            if isinstance(action, RedeployPrevious):
                assert action.image == PREVIOUS_IMAGE
                assert world.has_previous_image, f"RedeployPrevious in {action.region}"
            if isinstance(action, NEW_STEPS):
                assert not rollout.region(action.region).operator_hold, (
                    f"{type(action).__name__} for held region {action.region}"
                )
        for region, actions in by_region.items():
            changing = [a for a in actions if isinstance(a, CHANGING)]
            if any(isinstance(a, TRAFFIC) for a in changing):
                assert len(changing) == 1, (
                    f"traffic change beside other steps in {region}: {changing}"
                )

    @invariant()
    def steps_in_flight_are_asked_for(self) -> None:
        """A step under way (deleting, restoring, provisioning, moving traffic) gets the action
        that carries it out, also in a stopped rollout: else its deadline passes untried."""
        asked = {
            (a.region, type(a))
            for a in next_actions(self.rollout, self.now, POLICY)
            if not isinstance(a, ReadPrimary)
        }
        for region in self.rollout.regions:
            step = region.deploy_step
            wanted = IN_FLIGHT.get(step) if step is not None else None
            deploying = region.state is RegionState.DEPLOYING
            if step in (DeployStep.CREATING, DeployStep.SHIFTING_TRAFFIC) and not deploying:
                continue  # failed while moving traffic: kept as it is, by design
            if wanted is not None:
                assert (region.region, wanted) in asked, (
                    f"{region.region} is {region.state.value}/{step} but no {wanted.__name__}"
                )

    @invariant()
    def traffic_is_on_one_provisioned_deployment(self) -> None:
        for region, world in self.world.items():
            if world.traffic is not None:
                deployment = world.deployments.get(world.traffic)
                assert deployment is not None, f"traffic in {region} on deleted {world.traffic}"
                assert deployment.state == "succeeded"

    @invariant()
    def derived_rules_are_settled(self) -> None:
        """Every step settles the derived rules (held secondaries, gates, retries): a step
        that changes nothing, a refused request or a duplicate answer, returns the value."""
        assert commit(self.rollout, self.rollout, self.now) is self.rollout, "not settled"

    @invariant()
    def secondaries_wait_behind_a_failed_primary(self) -> None:
        """A failed (or rolled-back) primary holds every secondary that would go on next:
        none stands replicated or awaiting approval behind it."""
        primary = self.rollout.primary
        if primary is not None and primary.state in (RegionState.FAILED, RegionState.ROLLED_BACK):
            for region in self.rollout.regions:
                assert region.primary or region.state not in READY, (
                    f"{region.region} is {region.state.value} behind a {primary.state.value} "
                    "primary"
                )

    @invariant()
    def holds_last_until_resumed(self) -> None:
        held = {r.region for r in self.rollout.regions if r.operator_hold}
        assert held == self.held

    @invariant()
    def history_and_outbox_bounded_and_unique(self) -> None:
        assert len(self.rollout.history) <= MAX_HISTORY
        ids = [e.id for e in self.rollout.outbox]
        assert len(ids) == len(set(ids)), "duplicate event ids in the outbox"
        requests = [e.request_id for e in self.rollout.history]
        assert len(requests) == len(set(requests))

    @invariant()
    def state_and_record(self) -> None:
        assert isinstance(self.rollout.state, RolloutState)
        if self.rollout is not self.stored:  # values are immutable: checked once each
            assert rollout_from_record(rollout_to_record(self.rollout)) == self.rollout
            self.stored = self.rollout


class SteeringMachine(Steering):
    """From the start: approval or none, a previous deployment in some regions, maybe a
    head start (the primary, or every region, live)."""

    @initialize(
        approval=st.sampled_from([ApprovalMode.NONE, ApprovalMode.BEFORE_SECONDARIES]),
        previous=st.sets(st.sampled_from(REGIONS)),
        smoke=st.sampled_from(["{}", None]),
        prefill=st.sampled_from([0, 0, MAX_HISTORY - 5]),
        head_start=st.sampled_from([(), REGIONS[:1], REGIONS]),
    )
    def setup(
        self,
        approval: ApprovalMode,
        previous: set[str],
        smoke: str | None,
        prefill: int,
        head_start: tuple[str, ...],
    ) -> None:
        self._setup(approval, previous, smoke, prefill, head_start)


class GatedRollbackMachine(Steering):
    """Where approve, rollback and retry meet: approval before the secondaries, a previous
    deployment everywhere, the primary (or every region) live, the secondaries replicated,
    and maybe an operator's rollback accepted (a retry of what it stopped, and the rollback
    carried through)."""

    @rule(
        steps=st.lists(
            st.tuples(st.integers(0, 31), st.integers(0, 9), st.integers(0, len(PAUSES) - 1)),
            min_size=1,
            max_size=4,
        )
    )
    def reconcile(self, steps: list[tuple[int, int, int]]) -> None:
        """Shorter passes here: operators act between the steps of a rollback."""
        super().reconcile(steps)

    # Operators here let a rollback finish before they act again (retrying what it stopped
    # aside, and rollbacks, which are refused meanwhile).
    @precondition(lambda self: not rolling_back(self.rollout))
    @rule(
        action=st.sampled_from(OperatorAction),
        regions=region_subsets,
        verified=st.booleans(),
        replay_at_once=st.booleans(),
    )
    def operator(
        self,
        action: OperatorAction,
        regions: tuple[str, ...] | None,
        verified: bool,
        replay_at_once: bool,
    ) -> None:
        self._operate(action, regions, verified, replay_at_once)

    @precondition(
        lambda self: (
            any(g.approved_at is None for g in self.rollout.gates)
            and not rolling_back(self.rollout)
        )
    )
    @rule(regions=region_subsets)
    def approve_an_open_gate(self, regions: tuple[str, ...] | None) -> None:
        self._operate(OperatorAction.APPROVE, regions, True, False)

    @initialize(
        smoke=st.sampled_from(["{}", None]),
        head_start=st.sampled_from([REGIONS[:1], REGIONS]),
        rollback=st.booleans(),
        rollback_regions=region_subsets,
        retry=st.booleans(),
        restored=st.booleans(),
    )
    def setup(
        self,
        smoke: str | None,
        head_start: tuple[str, ...],
        rollback: bool,
        rollback_regions: tuple[str, ...] | None,
        retry: bool,
        restored: bool,
    ) -> None:
        self._setup(ApprovalMode.BEFORE_SECONDARIES, REGIONS, smoke, 0, head_start)
        for name in REGIONS[1:]:
            self.probe(name, "present")
        if rollback:  # an operator has just rolled (some of) it back, maybe retried what
            # that stopped, and maybe the rollback went through already
            self._operate(OperatorAction.ROLLBACK, rollback_regions, True, False)
            if retry:
                self._operate(OperatorAction.RETRY, None, True, False)
            if restored:
                self._finish_rollbacks()


def machine_settings(examples: int, steps: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=True,
        database=None,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow],
        # No "explain" phase: it replays each step of a shrunk run many times (minutes here).
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
    )


SteeringMachine.TestCase.settings = machine_settings(200, 50)
GatedRollbackMachine.TestCase.settings = machine_settings(200, 60)
TestSteering = SteeringMachine.TestCase
TestGatedRollback = GatedRollbackMachine.TestCase
