"""Replication tracking: probes, backoff, timeouts, late arrival and the events they cause."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from shared.domain.events import EventType
from shared.domain.model import RegionState, Rollout, RolloutState
from shared.domain.rollout import (
    InspectManifest,
    ProbeRegion,
    expedite_probe,
    new_rollout,
    next_actions,
    record_not_deployable,
    record_probe,
    replication_deadline,
    tick,
)
from shared.domain.verdicts import ProbeOutcome, ProbeVerdict
from tests.unit.domain.builders import (
    ABSENT,
    POLICY,
    REGIONS,
    T0,
    TARGET,
    at,
    fresh,
    notice,
    replicated,
)


def types(rollout: Rollout) -> list[tuple[EventType, str]]:
    return [(e.type, e.region) for e in rollout.outbox]


def test_new_rollout_starts_replicating_with_primary_first() -> None:
    rollout = new_rollout(notice(), REGIONS, TARGET, T0)
    assert rollout.state is RolloutState.REPLICATING
    assert [r.region for r in rollout.regions] == list(REGIONS)
    assert [r.primary for r in rollout.regions] == [True, False, False]
    assert rollout.tags == ("v1",)
    assert rollout.generation == 1
    assert rollout.deployable is None
    assert next_actions(rollout, T0, POLICY) == [
        InspectManifest(),
        *[ProbeRegion(r) for r in REGIONS],
    ]


def test_no_target_is_ignored_and_never_acts() -> None:
    rollout = new_rollout(notice(), REGIONS, None, T0)
    assert rollout.state is RolloutState.IGNORED
    assert rollout.ignored_reason == "no target rule matches models/llm:v1"
    assert next_actions(rollout, T0, POLICY) == []


def test_not_deployable_is_ignored_for_good() -> None:
    rollout = record_not_deployable(new_rollout(notice(), REGIONS, TARGET, T0), "helm chart", T0)
    assert rollout.state is RolloutState.IGNORED
    assert rollout.ignored_reason == "helm chart"
    assert next_actions(rollout, at(1), POLICY) == []


def test_present_marks_replicated_with_event_and_evidence() -> None:
    rollout = replicated(fresh(), "eastus", at(5))
    east = rollout.region("eastus")
    assert east.state is RegionState.REPLICATED
    assert east.replicated_at == at(5)
    assert east.probe_attempts == 1
    assert east.evidence is not None and east.evidence.status == 200
    assert types(rollout) == [(EventType.REPLICA_AVAILABLE, "eastus")]
    assert rollout.outbox[0].subject == "models/llm@" + rollout.digest


def test_absent_backs_off_exponentially_with_jitter_inside_bounds() -> None:
    rollout = fresh()
    delays = []
    now = T0
    for _ in range(8):
        rollout = record_probe(rollout, "westus", ABSENT, now, POLICY, jitter=0.5)
        nxt = rollout.region("westus").next_probe_at
        assert nxt is not None
        delays.append((nxt - now).total_seconds())
        assert ProbeRegion("westus") not in next_actions(rollout, now, POLICY)
        assert ProbeRegion("westus") in next_actions(rollout, nxt, POLICY)
        now = nxt
    assert delays[:4] == [10, 20, 40, 80]
    assert delays[-1] == POLICY.probe_max_backoff_s
    low = record_probe(fresh(), "westus", ABSENT, T0, POLICY, jitter=0.0)
    high = record_probe(fresh(), "westus", ABSENT, T0, POLICY, jitter=0.999)
    assert low.region("westus").next_probe_at == T0 + timedelta(seconds=8)
    assert high.region("westus").next_probe_at > T0 + timedelta(seconds=11.9)  # type: ignore[operator]
    assert low.region("westus").state is RegionState.AWAITING_REPLICATION
    assert low.outbox == ()


def test_transient_and_config_errors_are_not_verdicts() -> None:
    throttled = ProbeOutcome(ProbeVerdict.TRANSIENT, error="throttled")
    refused = ProbeOutcome(ProbeVerdict.CONFIG_ERROR, evidence=None, error="403 from replica")
    rollout = record_probe(fresh(), "westus", throttled, T0, POLICY, jitter=0.5)
    assert rollout.region("westus").state is RegionState.AWAITING_REPLICATION
    assert rollout.region("westus").last_error == "throttled"
    rollout = record_probe(rollout, "eastus", refused, T0, POLICY, jitter=0.5)
    east = rollout.region("eastus")
    assert east.state is RegionState.AWAITING_REPLICATION
    assert east.last_error == "403 from replica"
    assert east.next_probe_at == T0 + timedelta(seconds=POLICY.probe_max_backoff_s)


def test_replication_completed_once_every_region_replicated() -> None:
    rollout = fresh()
    for i, region in enumerate(REGIONS):
        rollout = replicated(rollout, region, at(i))
    completed = [e for e in rollout.outbox if e.type is EventType.REPLICATION_COMPLETED]
    assert len(completed) == 1
    assert completed[0].region == ""


def test_timeout_is_size_aware_and_emits_event() -> None:
    rollout = fresh()  # 2 GB image
    deadline = replication_deadline(rollout, POLICY)
    assert deadline == T0 + timedelta(seconds=3600 + 600)
    small = replace(rollout, image_size_bytes=None)
    assert replication_deadline(small, POLICY) == T0 + timedelta(seconds=3600)
    just_before = tick(rollout, deadline - timedelta(seconds=1), POLICY)
    assert just_before is rollout
    after = tick(rollout, deadline, POLICY)
    assert {r.state for r in after.regions} == {RegionState.TIMED_OUT}
    assert after.state is RolloutState.TIMED_OUT
    assert [t for t, _ in types(after)] == [EventType.REPLICATION_TIMED_OUT] * 3
    assert "replication timed out" in (after.region("westus").last_error or "")
    assert tick(after, deadline + timedelta(hours=1), POLICY) is after


def test_timeout_applied_by_a_probe_past_the_deadline() -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    deadline = replication_deadline(rollout, POLICY)
    rollout = record_probe(rollout, "westus", ABSENT, deadline, POLICY, jitter=0.5)
    assert rollout.region("westus").state is RegionState.TIMED_OUT
    # eastus replicated, westus timed out, northeurope still awaiting -> still moving
    assert rollout.state is RolloutState.REPLICATING


def test_timed_out_region_turning_up_later_is_accepted() -> None:
    deadline = replication_deadline(fresh(), POLICY)
    rollout = tick(fresh(), deadline, POLICY)
    later = deadline + timedelta(minutes=30)
    # still probed, slowly
    probe_at = rollout.region("westus").next_probe_at
    assert probe_at is not None and probe_at <= deadline + timedelta(seconds=300)
    assert ProbeRegion("westus") in next_actions(rollout, later, POLICY)
    rollout = replicated(rollout, "westus", later)
    west = rollout.region("westus")
    assert west.state is RegionState.REPLICATED
    assert west.last_error is None
    assert west.timed_out_at == deadline
    assert (EventType.REPLICA_AVAILABLE, "westus") in types(rollout)


def test_duplicate_and_stale_probe_answers_change_nothing() -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    assert replicated(rollout, "eastus", at(2)) is rollout
    assert record_probe(rollout, "eastus", ABSENT, at(3), POLICY, jitter=0.1) is rollout
    assert record_probe(rollout, "nowhere", ABSENT, at(3), POLICY, jitter=0.1) is rollout


def test_probe_order_does_not_matter() -> None:
    orders = [REGIONS, tuple(reversed(REGIONS)), (REGIONS[1], REGIONS[0], REGIONS[2])]
    results = []
    for order in orders:
        rollout = fresh()
        for region in order:
            rollout = replicated(rollout, region, at(10))
            rollout = replicated(rollout, region, at(10))  # duplicate delivery
        results.append(rollout)
    first = results[0]
    for other in results[1:]:
        assert other.regions == first.regions
        assert other.state == first.state
        assert sorted(e.id for e in other.outbox) == sorted(e.id for e in first.outbox)


def test_expedite_probe_only_moves_a_waiting_probe_forward() -> None:
    rollout = record_probe(fresh(), "westus", ABSENT, T0, POLICY, jitter=0.5)
    hurried = expedite_probe(rollout, "westus", at(1))
    assert hurried.region("westus").next_probe_at == at(1)
    assert hurried.region("westus").state is RegionState.AWAITING_REPLICATION
    assert ProbeRegion("westus") in next_actions(hurried, at(1), POLICY)
    done = replicated(rollout, "westus", at(2))
    assert expedite_probe(done, "westus", at(3)) is done
    assert expedite_probe(hurried, "westus", at(1)) is hurried
