"""When a rollout needs the timer again: `is_active` and `next_due_at` from its recorded state."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from shared.domain.model import RegionState, Rollout
from shared.domain.rollout import (
    MIN_CHECK_INTERVAL_S,
    give_up_deadline,
    new_rollout,
    record_check_after,
    record_deployable,
    record_deployment_discarded,
    record_lease_released,
    record_not_deployable,
    record_probe,
    record_provisioning_failed,
    record_provisioning_succeeded,
    record_push,
    record_step_completed,
    record_step_crashed,
    replication_deadline,
    supersede,
    tick,
)
from shared.domain.schedule import is_active, next_due_at
from shared.domain.serialization import region_to_document, rollout_from_record, rollout_to_record
from shared.domain.targets import ApprovalMode
from tests.unit.domain.builders import (
    ABSENT,
    POLICY,
    REGIONS,
    T0,
    TARGET,
    at,
    confirmed,
    fresh,
    live,
    notice,
    published,
    replicated,
    started,
)

POLL = timedelta(seconds=30)


def test_a_new_sighting_is_due_at_once() -> None:
    rollout = new_rollout(notice(), REGIONS, TARGET, T0)
    assert is_active(rollout)
    assert next_due_at(rollout, T0, POLICY, POLL) == T0


def test_an_ignored_rollout_is_never_due() -> None:
    rollout = new_rollout(notice(), REGIONS, None, T0)
    assert not is_active(rollout)
    assert next_due_at(rollout, T0, POLICY, POLL) is None
    chart = published(
        record_not_deployable(new_rollout(notice(), REGIONS, TARGET, T0), "chart", T0)
    )
    assert not is_active(chart)
    assert next_due_at(chart, at(1), POLICY, POLL) is None


def test_unsent_events_keep_even_an_ignored_rollout_due_on_the_poll() -> None:
    rollout = replicated(new_rollout(notice(), REGIONS, TARGET, T0), "eastus", at(1))
    ignored = record_not_deployable(rollout, "chart", at(2))
    assert ignored.outbox
    assert is_active(ignored)
    due = next_due_at(ignored, at(2), POLICY, POLL)
    assert due is not None and due <= at(2) + POLL
    assert not is_active(published(ignored))


def test_probing_is_due_at_the_earliest_next_probe() -> None:
    rollout = fresh()
    rollout = record_probe(rollout, "eastus", ABSENT, T0, POLICY, jitter=0.5)
    rollout = record_probe(rollout, "westus", ABSENT, T0, POLICY, jitter=0.5)
    rollout = record_probe(rollout, "westus", ABSENT, at(10), POLICY, jitter=0.5)
    rollout = record_probe(rollout, "northeurope", ABSENT, T0, POLICY, jitter=0.0)
    rollout = published(rollout)
    moments = [r.next_probe_at for r in rollout.regions]
    assert None not in moments
    assert next_due_at(rollout, T0, POLICY, POLL) == min(m for m in moments if m is not None)
    assert next_due_at(rollout, T0, POLICY, POLL) == T0 + timedelta(seconds=8)


def test_a_probe_far_off_is_still_due_by_the_replication_deadline() -> None:
    rollout = fresh()
    far = T0 + timedelta(days=3)
    rollout = published(rollout)
    regions = tuple(replace(r, next_probe_at=far) for r in rollout.regions)
    rollout = replace(rollout, regions=regions)
    assert next_due_at(rollout, T0, POLICY, POLL) == replication_deadline(rollout, POLICY)


def test_timed_out_regions_are_due_for_slow_probes_and_for_giving_up() -> None:
    rollout = published(tick(fresh(), replication_deadline(fresh(), POLICY), POLICY))
    assert is_active(rollout)
    due = next_due_at(rollout, replication_deadline(rollout, POLICY), POLICY, POLL)
    slow = [r.next_probe_at for r in rollout.regions]
    assert due == min(m for m in slow if m is not None)
    assert due is not None and due <= give_up_deadline(rollout, POLICY)


def test_a_rollout_that_gave_up_everywhere_is_never_due_again() -> None:
    gave_up = published(tick(fresh(), give_up_deadline(fresh(), POLICY), POLICY))
    assert not is_active(gave_up)
    assert next_due_at(gave_up, at(10**6), POLICY, POLL) is None
    # a new push for it makes it due at once
    pushed = published(record_push(gave_up, notice(), at(10**6)))
    assert is_active(pushed)
    due = next_due_at(pushed, at(10**6), POLICY, POLL)
    assert due is not None and due <= at(10**6)


def test_a_deploying_region_is_due_on_the_poll() -> None:
    rollout = fresh()
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
    rollout = published(started(rollout, "eastus", at(2)))
    assert is_active(rollout)
    assert next_due_at(rollout, at(3), POLICY, POLL) == at(3) + POLL


def test_a_finished_rollout_is_due_until_its_leases_are_given_back() -> None:
    rollout = fresh()
    for region in REGIONS:
        rollout = live(replicated(rollout, region, at(1)), region, at(2))
    rollout = published(rollout)
    assert is_active(rollout)  # leases to give back
    assert next_due_at(rollout, at(3), POLICY, POLL) == at(3) + POLL
    for region in REGIONS:
        rollout = record_lease_released(rollout, region, at(4))
    assert not is_active(rollout)
    assert next_due_at(rollout, at(5), POLICY, POLL) is None


def test_a_previous_deployment_to_delete_keeps_a_live_rollout_due() -> None:
    rollout = fresh()
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
        rollout = live(rollout, region, at(2), previous="blue")
        rollout = record_lease_released(rollout, region, at(2))  # as if given back early
    rollout = published(rollout)
    assert is_active(rollout)
    # kept for a rollback until the keep time after the last region went live: due then
    kept_until = at(2) + timedelta(seconds=POLICY.keep_previous_s)
    assert next_due_at(rollout, at(3), POLICY, POLL) == kept_until
    cleaning = tick(rollout, kept_until, POLICY)
    assert next_due_at(cleaning, kept_until, POLICY, POLL) == kept_until + POLL


def test_an_open_approval_gate_keeps_the_rollout_due_for_its_timeout() -> None:
    target = replace(TARGET, approval=ApprovalMode.BEFORE_SECONDARIES, approval_timeout_s=3600)
    rollout = confirmed(record_deployable(new_rollout(notice(), REGIONS, target, T0), 1, T0), T0)
    rollout = live(replicated(rollout, "eastus", at(1)), "eastus", at(2))
    for region in ("westus", "northeurope"):
        rollout = replicated(rollout, region, at(2))
    rollout = published(record_lease_released(rollout, "eastus", at(2)))
    assert is_active(rollout)
    assert next_due_at(rollout, at(3), POLICY, POLL) == at(2) + timedelta(hours=1)
    failed = published(tick(rollout, at(2) + timedelta(hours=1), POLICY))
    assert failed.region("westus").state is RegionState.FAILED
    assert next_due_at(failed, at(2) + timedelta(hours=1), POLICY, POLL) is None


def test_a_superseded_rollout_is_due_only_while_it_discards_its_deployment() -> None:
    rollout = started(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    stopped = published(supersede(rollout, by="newer", now=at(3)))
    assert is_active(stopped)
    assert next_due_at(stopped, at(4), POLICY, POLL) == at(4) + POLL
    discarded = record_deployment_discarded(stopped, "eastus", at(5))
    assert is_active(discarded)  # the lease is still to give back
    done = published(record_lease_released(discarded, "eastus", at(6)))
    assert not is_active(done)
    assert next_due_at(done, at(7), POLICY, POLL) is None


def test_a_replaced_rollout_with_a_claimed_tag_is_due_for_the_registry_check() -> None:
    rollout = fresh()
    for region in REGIONS:
        rollout = live(replicated(rollout, region, at(1)), region, at(2))
        rollout = record_lease_released(rollout, region, at(2))
    replaced = published(supersede(rollout, by="newer", now=at(3)))
    assert not is_active(replaced)
    claimed_again = published(record_push(replaced, notice(tag="v1"), at(4)))
    assert is_active(claimed_again)
    assert next_due_at(claimed_again, at(4), POLICY, POLL) is not None


def test_a_failed_rollout_is_due_until_its_deployment_is_discarded() -> None:
    rollout = fresh()
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
    rollout = started(rollout, "eastus", at(2))
    failed = published(record_provisioning_failed(rollout, "eastus", "quota", at(3)))
    assert is_active(failed)
    discarded = record_deployment_discarded(failed, "eastus", at(4))
    done = published(record_lease_released(discarded, "eastus", at(5)))
    # the primary failed: the secondaries are held, nothing moves without an operator
    assert not is_active(done)


def test_a_rollout_whose_image_never_appeared_stops_being_due_once_probing_gave_up() -> None:
    # The manifest was never read (the digest is not in the registry: deleted, or a forged
    # notice): once the primary gave up, nothing is left to do, so the timer must stop.
    rollout = new_rollout(notice(), REGIONS, TARGET, T0)
    gave_up = published(tick(rollout, give_up_deadline(rollout, POLICY), POLICY))
    assert all(r.gave_up for r in gave_up.regions)
    assert not is_active(gave_up)
    assert next_due_at(gave_up, at(10**6), POLICY, POLL) is None


def test_a_secondary_waiting_for_a_primary_that_gave_up_is_not_due() -> None:
    # Only the primary going live lets a replicated secondary deploy: once the primary gave up,
    # the timer would look at this rollout every poll for ever with nothing to do.
    rollout = replicated(fresh(), "westus", at(1))
    gave_up = published(tick(rollout, give_up_deadline(rollout, POLICY), POLICY))
    assert gave_up.region("eastus").gave_up
    assert not is_active(gave_up)


def test_a_rollout_whose_steps_crashed_is_not_due_before_its_retry_time() -> None:
    rollout = published(new_rollout(notice(), REGIONS, TARGET, T0))
    crashed = record_step_crashed(rollout, "adapter blew up", T0, POLICY)
    assert crashed.retry_after is not None and crashed.retry_after > T0
    assert next_due_at(crashed, T0, POLICY, POLL) == crashed.retry_after
    again = record_step_crashed(crashed, "adapter blew up", crashed.retry_after, POLICY)
    assert again.step_failures == 2
    assert again.retry_after is not None
    assert again.retry_after - crashed.retry_after > crashed.retry_after - T0  # backs off
    recovered = record_step_completed(again)
    assert (recovered.step_failures, recovered.step_error, recovered.retry_after) == (0, None, None)
    assert next_due_at(recovered, T0, POLICY, POLL) == T0
    assert record_step_completed(recovered) is recovered


def test_a_deploying_region_is_due_at_arms_pace_while_at_that_step() -> None:
    rollout = fresh()
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
    rollout = published(started(rollout, "eastus", at(2)))
    paced = record_check_after(rollout, "eastus", 4.0, at(2))
    assert paced.region("eastus").poll_every_s == 4.0
    # Every check while provisioning, 4 s after the last one, not the 30 s poll.
    assert next_due_at(paced, at(3), POLICY, POLL) == at(7)
    assert next_due_at(paced, at(7), POLICY, POLL) == at(11)
    # No wish: the pace given earlier at this step holds.
    assert record_check_after(paced, "eastus", None, at(3)) == paced
    # ARM asking for "now" or slower than the poll: at most once a second, at least each poll.
    assert next_due_at(record_check_after(rollout, "eastus", 0, at(2)), at(3), POLICY, POLL) == (
        at(3) + timedelta(seconds=MIN_CHECK_INTERVAL_S)
    )
    slow = record_check_after(rollout, "eastus", 120, at(2))
    assert next_due_at(slow, at(3), POLICY, POLL) == at(3) + POLL
    # The pace belongs to the step that started the operation: the next step has none yet.
    smoking = record_provisioning_succeeded(paced, "eastus", at(8))
    assert smoking.region("eastus").poll_every_s is None
    assert next_due_at(smoking, at(9), POLICY, POLL) == at(9) + POLL


def test_arms_pace_survives_the_stored_record() -> None:
    rollout = fresh()
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
    paced = record_check_after(published(started(rollout, "eastus", at(2))), "eastus", 4, at(2))
    again = rollout_from_record(rollout_to_record(paced))
    assert again.region("eastus").operation_pace == paced.region("eastus").operation_pace
    assert region_to_document(again.region("eastus"))["poll_every_s"] == 4.0


def test_a_probe_waits_for_the_registrys_budget_and_no_other_step_does() -> None:
    """While the registry's request budget refuses (until `probes_from`), a probe due
    earlier counts as due then: waking the rollout sooner could only be refused again. A
    deployment's poll keeps its time."""
    rollout = replicated(fresh(), "eastus", at(1))
    for region in REGIONS[1:]:
        rollout = record_probe(rollout, region, ABSENT, at(1), POLICY, jitter=0.0)
    probing = published(rollout)
    due = next_due_at(probing, at(2), POLICY, POLL)
    assert due is not None and due < at(20)
    assert next_due_at(probing, at(2), POLICY, POLL, probes_from=at(20)) == at(20)
    # The primary deploys meanwhile: its poll, not the refused probes, wakes the rollout.
    deploying = published(started(rollout, "eastus", at(2)))
    due = next_due_at(deploying, at(3), POLICY, POLL)
    assert due is not None and due < at(3) + POLL  # a probe first
    assert next_due_at(deploying, at(3), POLICY, POLL, probes_from=at(60)) == at(3) + POLL


def _held(rollout: Rollout) -> Rollout:
    return replace(rollout, regions=tuple(replace(r, operator_hold=True) for r in rollout.regions))


def test_a_held_region_waiting_to_deploy_is_not_looked_at_on_the_poll() -> None:
    """A hold starts no step, so a held region with none in flight needs no look on the
    poll: the rollout is due for its probes only. (In `bench_budget`, 120 held rollouts
    whose probes the budget refused were each read every poll, 24 reads per request.)"""
    rollout = replicated(fresh(), "eastus", at(1))
    for region in REGIONS[1:]:
        rollout = record_probe(rollout, region, ABSENT, at(1), POLICY, jitter=0.0)
    held = published(_held(rollout))
    assert next_due_at(held, at(2), POLICY, POLL, probes_from=at(60)) == at(60)
    # Not held, the primary waiting to deploy is looked at on the poll.
    assert next_due_at(published(rollout), at(2), POLICY, POLL, probes_from=at(60)) == at(32)


def test_a_held_region_with_a_deployment_in_flight_is_still_polled() -> None:
    rollout = replicated(fresh(), "eastus", at(1))
    for region in REGIONS[1:]:
        rollout = record_probe(rollout, region, ABSENT, at(1), POLICY, jitter=0.0)
    creating = published(_held(started(rollout, "eastus", at(2))))
    assert next_due_at(creating, at(3), POLICY, POLL, probes_from=at(60)) == at(3) + POLL


def test_a_rollout_held_everywhere_with_nothing_in_flight_is_not_due_by_itself() -> None:
    """Every region replicated and held, none with a step in flight: nothing can start
    until the resume (which steps the rollout itself), so no poll reads it meanwhile."""
    rollout = fresh()
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
    held = published(_held(rollout))
    assert is_active(held)  # it still has work: deploying, once resumed
    assert next_due_at(held, at(2), POLICY, POLL) is None
    # A claimed tag the registry has not confirmed yet still needs a look on the poll.
    claiming = published(record_push(held, notice(tag="v2"), at(2)))
    assert claiming.pending_tags == ("v2",)
    assert next_due_at(claiming, at(3), POLICY, POLL) == at(3) + POLL
