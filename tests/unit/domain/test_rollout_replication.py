"""Replication tracking: probes, backoff, timeouts, giving up, late arrival and the events."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from shared.domain.events import EventType
from shared.domain.model import RegionState, Rollout, RolloutState
from shared.domain.rollout import (
    ProbeRegion,
    ReadPrimary,
    RolloutPolicy,
    expedite_probe,
    give_up_deadline,
    mark_index_child,
    new_rollout,
    next_actions,
    record_deleted,
    record_not_deployable,
    record_probe,
    record_push,
    replication_deadline,
    tick,
)
from shared.domain.schedule import is_active, next_due_at
from shared.domain.verdicts import ProbeOutcome, ProbeVerdict
from tests.unit.domain.builders import (
    ABSENT,
    DIGEST_B,
    POLICY,
    REGIONS,
    T0,
    TARGET,
    at,
    fresh,
    notice,
    published,
    replicated,
)

POLL = timedelta(seconds=30)


def types(rollout: Rollout) -> list[tuple[EventType, str]]:
    return [(e.type, e.region) for e in rollout.outbox]


def probes(rollout: Rollout, now: datetime) -> list[str]:
    return [a.region for a in next_actions(rollout, now, POLICY) if isinstance(a, ProbeRegion)]


def test_new_rollout_starts_replicating_with_primary_first() -> None:
    rollout = new_rollout(notice(), REGIONS, TARGET, T0)
    assert rollout.state is RolloutState.REPLICATING
    assert [r.region for r in rollout.regions] == list(REGIONS)
    assert [r.primary for r in rollout.regions] == [True, False, False]
    # the notice's tag is only claimed: the registry confirms it first
    assert (rollout.tags, rollout.pending_tags, rollout.confirmed_at) == ((), ("v1",), None)
    assert rollout.generation == 1
    assert rollout.deployable is None
    assert next_actions(rollout, T0, POLICY) == [
        ReadPrimary(manifest=True, tags=("v1",)),
        *[ProbeRegion(r) for r in REGIONS],
    ]


def test_no_target_is_ignored_and_never_acts() -> None:
    rollout = new_rollout(notice(), REGIONS, None, T0)
    assert rollout.state is RolloutState.IGNORED
    assert rollout.ignored_reason == "no target rule matches models/llm:v1"
    assert next_actions(rollout, T0, POLICY) == []
    assert not is_active(rollout)


def test_not_deployable_is_ignored_for_good() -> None:
    rollout = record_not_deployable(new_rollout(notice(), REGIONS, TARGET, T0), "helm chart", T0)
    assert rollout.state is RolloutState.IGNORED
    assert rollout.ignored_reason == "helm chart"
    assert rollout.deployable is False
    assert next_actions(rollout, at(1), POLICY) == []
    assert record_not_deployable(rollout, "helm chart", at(2)) is rollout


def test_not_deployable_stops_probes_already_scheduled() -> None:
    rollout = new_rollout(notice(), REGIONS, TARGET, T0)
    for region in REGIONS:
        rollout = record_probe(rollout, region, ABSENT, T0, POLICY, jitter=0.5)
    assert all(r.next_probe_at is not None for r in rollout.regions)
    ignored = published(record_not_deployable(rollout, "a cosign signature", at(1)))
    assert all(r.next_probe_at is None for r in ignored.regions)
    assert probes(ignored, at(10_000)) == []
    assert not is_active(ignored)
    assert next_due_at(ignored, at(2), POLICY, POLL) is None
    # a hint about a region changes nothing for an image that is never deployed
    assert expedite_probe(ignored, "westus", at(3)) is ignored


def test_an_untagged_platform_manifest_of_an_index_is_not_a_rollout() -> None:
    child = new_rollout(notice(DIGEST_B, tag=None), REGIONS, TARGET, T0)
    index = "sha256:" + "1" * 64
    marked = mark_index_child(child, index, at(1))
    assert marked.state is RolloutState.IGNORED
    assert marked.deployable is False
    assert marked.ignored_reason is not None and index in marked.ignored_reason
    assert next_actions(marked, at(2), POLICY) == []
    assert mark_index_child(marked, index, at(3)) is marked


def test_a_platform_manifest_tagged_in_its_own_right_stays_a_rollout() -> None:
    child = fresh(DIGEST_B, tag="amd64-only")
    assert child.confirmed_at is not None and child.tags == ("amd64-only",)
    assert mark_index_child(child, "sha256:" + "1" * 64, at(1)) is child


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


def test_the_next_probe_counts_from_when_the_last_one_went_out() -> None:
    # Asked at T0, answered 3 s later: the 10 s back-off runs from the asking, so a slow
    # answer does not stretch every interval between probes.
    answered = at(3)
    rollout = record_probe(fresh(), "westus", ABSENT, answered, POLICY, jitter=0.5, asked_at=T0)
    region = rollout.region("westus")
    assert region.next_probe_at == T0 + timedelta(seconds=10)
    assert region.absent_at == answered
    # Without the asking time, the answer's time is all there is.
    alone = record_probe(fresh(), "westus", ABSENT, answered, POLICY, jitter=0.5)
    assert alone.region("westus").next_probe_at == answered + timedelta(seconds=10)


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999999, -3.0, 7.0])
def test_probe_delay_never_overflows_nor_exceeds_the_maximum(jitter: float) -> None:
    top = POLICY.probe_max_backoff_s * (1 + POLICY.probe_jitter_ratio)
    bottom = POLICY.probe_initial_backoff_s * (1 - POLICY.probe_jitter_ratio)
    previous = 0.0
    for attempts in [*range(1, 2001), 10**6, 10**9, 10**18]:
        seconds = POLICY.probe_delay(attempts, jitter).total_seconds()
        assert bottom <= seconds <= top, (attempts, seconds)
        assert seconds >= previous  # never shorter after more attempts
        previous = seconds
    assert POLICY.probe_delay(10**9, 0.5) == timedelta(seconds=POLICY.probe_max_backoff_s)
    assert POLICY.probe_delay(0, 0.5) == POLICY.probe_delay(1, 0.5)


@pytest.mark.parametrize(
    "policy",
    [
        RolloutPolicy(probe_backoff_factor=1.0),
        RolloutPolicy(probe_backoff_factor=1.5),
        RolloutPolicy(probe_backoff_factor=10.0),
        RolloutPolicy(probe_initial_backoff_s=600.0),  # initial above the maximum
        RolloutPolicy(probe_initial_backoff_s=0.0),
    ],
)
def test_probe_delay_stays_bounded_for_any_backoff_settings(policy: RolloutPolicy) -> None:
    ceiling = policy.probe_max_backoff_s * (1 + policy.probe_jitter_ratio)
    for attempts in [1, 2, 3, 64, 65, 1000, 1025, 2000, 10**9]:
        assert policy.probe_delay(attempts, 0.999).total_seconds() <= ceiling


def test_a_region_probed_for_a_thousand_hours_keeps_being_probed() -> None:
    rollout = fresh()
    progress = replace(rollout.region("westus"), probe_attempts=1999)
    rollout = replace(rollout, regions=(rollout.regions[0], progress, rollout.regions[2]))
    probed = record_probe(rollout, "westus", ABSENT, at(1), POLICY, jitter=0.5)
    west = probed.region("westus")
    assert west.probe_attempts == 2000
    assert west.next_probe_at == at(1) + timedelta(seconds=POLICY.probe_max_backoff_s)


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


# --- giving up ------------------------------------------------------------------------


def test_give_up_ends_probing_and_makes_the_rollout_inactive() -> None:
    rollout = published(fresh())
    give_up = give_up_deadline(rollout, POLICY)
    assert give_up == T0 + timedelta(seconds=POLICY.give_up_after_s)
    timed_out = published(tick(rollout, replication_deadline(rollout, POLICY), POLICY))
    assert is_active(timed_out)  # late images still count until the give-up time
    assert tick(timed_out, give_up - timedelta(seconds=1), POLICY) is timed_out
    gave_up = published(tick(timed_out, give_up, POLICY))
    for progress in gave_up.regions:
        assert progress.state is RegionState.TIMED_OUT
        assert progress.gave_up
        assert progress.next_probe_at is None
        assert (progress.last_error or "").startswith("gave up")
    assert probes(gave_up, give_up + timedelta(days=30)) == []
    assert not is_active(gave_up)
    assert next_due_at(gave_up, give_up, POLICY, POLL) is None
    assert tick(gave_up, give_up + timedelta(days=1), POLICY) is gave_up


def test_a_probe_answer_after_giving_up_schedules_no_further_probe() -> None:
    gave_up = tick(fresh(), give_up_deadline(fresh(), POLICY), POLICY)
    late = record_probe(gave_up, "westus", ABSENT, at(10**6), POLICY, jitter=0.5)
    assert late.region("westus").gave_up
    assert late.region("westus").next_probe_at is None


def test_a_regional_hint_probes_a_region_that_gave_up_once_more() -> None:
    give_up = give_up_deadline(fresh(), POLICY)
    gave_up = tick(fresh(), give_up, POLICY)
    later = give_up + timedelta(hours=5)
    hinted = expedite_probe(gave_up, "westus", later)
    assert not hinted.region("westus").gave_up
    assert probes(hinted, later) == ["westus"]
    found = replicated(hinted, "westus", later)
    assert found.region("westus").state is RegionState.REPLICATED


def test_a_new_push_probes_regions_that_gave_up_again() -> None:
    give_up = give_up_deadline(fresh(), POLICY)
    gave_up = tick(fresh(), give_up, POLICY)
    later = give_up + timedelta(hours=5)
    pushed = record_push(gave_up, notice(tag="v1"), later)
    assert not any(r.gave_up for r in pushed.regions)
    assert probes(pushed, later) == list(REGIONS)
    assert is_active(pushed)


def test_a_push_that_re_arms_probing_survives_the_tick_that_precedes_the_probe() -> None:
    # The service runs `tick` before `next_actions` on every step (`next_actions` asks for it):
    # a re-armed region must still be probed once, not given up again before its probe.
    give_up = give_up_deadline(fresh(), POLICY)
    gave_up = tick(fresh(), give_up, POLICY)
    later = give_up + timedelta(hours=5)
    pushed = tick(record_push(gave_up, notice(tag="v1"), later), later, POLICY)
    assert probes(pushed, later) == list(REGIONS)
    # and that one probe's answer, when still absent, ends probing again
    west = record_probe(pushed, "westus", ABSENT, later, POLICY, jitter=0.5).region("westus")
    assert west.gave_up and west.next_probe_at is None


# --- duplicates and order -------------------------------------------------------------


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


def test_the_manifest_read_keeps_to_the_primary_probe_backoff() -> None:
    rollout = new_rollout(notice(), REGIONS, TARGET, T0)
    rollout = record_probe(rollout, "eastus", ABSENT, T0, POLICY, jitter=0.5)
    nxt = rollout.region("eastus").next_probe_at
    assert nxt is not None
    assert not any(isinstance(a, ReadPrimary) for a in next_actions(rollout, at(1), POLICY))
    assert ReadPrimary(manifest=True, tags=("v1",)) in next_actions(rollout, nxt, POLICY)


def test_a_deleted_digest_is_shown_and_its_waiting_regions_stop_probing() -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    deleted = record_deleted(rollout, at(2))
    assert deleted.deleted_at == at(2)
    waiting = [r for r in deleted.regions if r.state is RegionState.AWAITING_REPLICATION]
    assert waiting and all(r.gave_up and r.next_probe_at is None for r in waiting)
    assert not any(isinstance(a, ProbeRegion) for a in next_actions(deleted, at(3), POLICY))
    assert record_deleted(deleted, at(4)) is deleted
    # Pushed again: the registry has it, probing resumes.
    again = record_push(deleted, notice(), at(5))
    assert again.deleted_at is None
    assert any(isinstance(a, ProbeRegion) for a in next_actions(again, at(5), POLICY))
