"""Progressive delivery: regions a rule picks, waves, soaks, traffic steps, the watch over a
deployment taking traffic (`VerifyDeployment`), and rolling a failed wave back."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest

from shared.domain.events import EventType
from shared.domain.model import (
    ApprovalGate,
    DeployStep,
    OperatorAction,
    RegionState,
    Rollout,
    RolloutState,
)
from shared.domain.rollout import (
    Action,
    ClaimEndpoint,
    DeletePrevious,
    DiscardDeployment,
    RestorePrevious,
    ShiftTraffic,
    SmokeTest,
    VerifyDeployment,
    keep_previous_until,
    new_rollout,
    next_actions,
    record_deployable,
    record_deployment_discarded,
    record_deployment_failed,
    record_lease_released,
    record_push,
    record_replaced,
    record_smoke_passed,
    record_traffic_restored,
    record_traffic_shifted,
    record_verification,
    supersede,
    tick,
)
from shared.domain.schedule import next_due_at
from shared.domain.serialization import (
    region_to_document,
    rollout_from_record,
    rollout_to_document,
    rollout_to_record,
)
from shared.domain.steering import ACCEPTED, REFUSED, OperatorRequest, apply_request
from shared.domain.targets import (
    ApprovalMode,
    Delivery,
    DeploymentSettings,
    RegionOverride,
    Target,
    VerifyPolicy,
)
from tests.unit.domain.builders import (
    POLICY,
    REGIONS,
    T0,
    at,
    confirmed,
    notice,
    published,
    ref,
    replicated,
    verifying,
)

ENDPOINT = "models-llm"
PREVIOUS = "blue"
SOAK = 300.0
INTERVAL = 30.0
STEP = 120.0
GRACE = POLICY.verify_timeout_s
WAVES = (("westus",), ("northeurope",))
POLL = timedelta(hours=1)

_A = TypeVar("_A")
_ids = itertools.count(1)


# --- builders ---------------------------------------------------------------------------


def target(
    delivery: Delivery | None = None,
    *,
    approval: ApprovalMode = ApprovalMode.NONE,
    settings: DeploymentSettings | None = None,
    overrides: tuple[tuple[str, RegionOverride], ...] = (),
) -> Target:
    return Target(
        endpoint=ENDPOINT,
        settings=settings or DeploymentSettings(),
        region_overrides=overrides,
        approval=approval,
        delivery=delivery or Delivery(),
    )


def start(
    delivery: Delivery | None = None,
    *,
    approval: ApprovalMode = ApprovalMode.NONE,
    regions: tuple[str, ...] = REGIONS,
) -> Rollout:
    """A deployable, confirmed rollout of a rule with `delivery`, every region replicated."""
    rollout = new_rollout(notice(), regions, target(delivery, approval=approval), T0)
    rollout = confirmed(record_deployable(rollout, 1, T0), T0)
    for progress in rollout.regions:
        rollout = replicated(rollout, progress.region, at(1))
    return rollout


def actions(rollout: Rollout, now: datetime, kind: type[_A]) -> list[_A]:
    return [a for a in next_actions(rollout, now, POLICY) if isinstance(a, kind)]


def claims(rollout: Rollout, now: datetime) -> list[str]:
    return [a.region for a in actions(rollout, now, ClaimEndpoint)]


def shift_of(rollout: Rollout, region: str, now: datetime) -> ShiftTraffic:
    (shift,) = [a for a in actions(rollout, now, ShiftTraffic) if a.region == region]
    return shift


def verify_of(rollout: Rollout, region: str, now: datetime) -> list[VerifyDeployment]:
    return [a for a in actions(rollout, now, VerifyDeployment) if a.region == region]


def to_traffic(
    rollout: Rollout, region: str, now: datetime, previous: str | None = PREVIOUS
) -> Rollout:
    """Claimed (asked for by the machine), created, provisioned, smoke-tested: traffic next."""
    assert region in claims(rollout, now), f"{region} was not asked to claim the endpoint"
    rollout = verifying(rollout, region, now, previous)
    return record_smoke_passed(rollout, region, now)


def shifted(rollout: Rollout, region: str, now: datetime) -> Rollout:
    """The traffic change the machine asks for in `region`, carried out."""
    return record_traffic_shifted(rollout, region, now, shift_of(rollout, region, now).percent)


def serving(
    rollout: Rollout, region: str, now: datetime, previous: str | None = PREVIOUS
) -> Rollout:
    """Deployed and given all the traffic (the rule has no traffic steps)."""
    return shifted(to_traffic(rollout, region, now, previous), region, now)


def passed(rollout: Rollout, region: str, now: datetime) -> Rollout:
    return record_verification(rollout, region, True, "200 ok", now)


def failed_check(rollout: Rollout, region: str, now: datetime, detail: str = "500 boom") -> Rollout:
    return record_verification(rollout, region, False, detail, now)


def soaked(rollout: Rollout, region: str, shifted_at: float) -> Rollout:
    """A region that started soaking at `shifted_at`: one passing check, then the soak ends."""
    rollout = passed(rollout, region, at(shifted_at))
    return tick(rollout, at(shifted_at + SOAK), POLICY)


def document(rollout: Rollout, region: str) -> dict[str, Any]:
    return region_to_document(rollout.region(region), rollout)


def event_types(rollout: Rollout, region: str) -> list[EventType]:
    return [e.type for e in rollout.outbox if e.region == region]


def request(action: str, *regions: str) -> OperatorRequest:
    return OperatorRequest(
        action=OperatorAction(action),
        regions=regions or None,
        reason="testing",
        actor="alice",
        actor_verified=False,
        request_id=f"delivery-req-{next(_ids)}",
    )


def soaking_rule(**changes: Any) -> Delivery:
    fields: dict[str, Any] = {"soak_s": SOAK, "verify": VerifyPolicy(interval_s=INTERVAL)}
    return Delivery(**(fields | changes))


def stepped_rule(**changes: Any) -> Delivery:
    fields: dict[str, Any] = {
        "traffic_steps": (10, 50, 100),
        "step_s": STEP,
        "verify": VerifyPolicy(interval_s=INTERVAL),
    }
    return Delivery(**(fields | changes))


# --- defaults -------------------------------------------------------------------------


def test_a_rule_without_delivery_fields_rolls_out_as_before() -> None:
    rollout = start()
    assert rollout.target is not None and rollout.target.delivery == Delivery()
    assert [r.region for r in rollout.regions] == list(REGIONS)
    assert claims(rollout, at(1)) == ["eastus"]  # the primary first

    rollout = to_traffic(rollout, "eastus", at(2))
    assert shift_of(rollout, "eastus", at(2)) == ShiftTraffic("eastus", ref("eastus"), 100, None)
    rollout = record_traffic_shifted(rollout, "eastus", at(3))
    east = rollout.region("eastus")
    assert (east.state, east.deploy_step, east.traffic_percent) == (
        RegionState.LIVE,
        DeployStep.KEEPING_PREVIOUS,
        100,
    )
    assert (east.live_at, east.soak_until, east.step_until, east.next_verify_at) == (
        at(3),
        None,
        None,
        None,
    )
    assert EventType.REGION_LIVE in event_types(rollout, "eastus")
    # Every secondary at once, in one wave.
    assert claims(rollout, at(3)) == ["westus", "northeurope"]
    assert [document(rollout, r)["wave"] for r in REGIONS] == [0, 1, 1]

    seen: list[Action] = []
    for region in ("westus", "northeurope"):
        rollout = to_traffic(rollout, region, at(4))
        seen += next_actions(rollout, at(4), POLICY)
        assert shift_of(rollout, region, at(4)).percent == 100
        rollout = record_traffic_shifted(rollout, region, at(5))
        assert rollout.region(region).state is RegionState.LIVE
    assert rollout.state is RolloutState.LIVE
    for moment in (at(5), at(5 + 600), at(5 + 3600)):
        seen += next_actions(tick(rollout, moment, POLICY), moment, POLICY)
    assert not [a for a in seen if isinstance(a, VerifyDeployment)]
    assert keep_previous_until(rollout, POLICY) == at(5) + timedelta(seconds=POLICY.keep_previous_s)


# --- the rule's fields ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"soak_s": -1.0}, "soak_seconds and step_seconds must be 0 or more"),
        ({"step_s": -0.1}, "soak_seconds and step_seconds must be 0 or more"),
        ({"traffic_steps": (10, 50)}, "ending at 100"),
        ({"traffic_steps": ()}, "ending at 100"),
        ({"traffic_steps": (0, 100)}, "from 1 to 100"),
        ({"traffic_steps": (50, 150, 100)}, "from 1 to 100"),
        ({"traffic_steps": (50, 10, 100)}, "must increase"),
        ({"traffic_steps": (10, 10, 100)}, "must increase"),
        ({"waves": (("westus",), ())}, "non-empty and name each region once"),
        ({"waves": (("westus",), ("westus",))}, "non-empty and name each region once"),
    ],
)
def test_an_invalid_delivery_is_refused(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Delivery(**fields)


@pytest.mark.parametrize(
    ("interval", "failures", "fragment"),
    [
        (0.0, 1, "interval_seconds must be positive"),
        (-1.0, 1, "interval_seconds"),
        (30.0, -1, "max_failures"),
    ],
)
def test_an_invalid_verify_policy_is_refused(interval: float, failures: int, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        VerifyPolicy(interval_s=interval, max_failures=failures)


def test_waves_and_steps_of_a_rule() -> None:
    rule = Delivery(waves=(("northeurope",), ("westus",)), traffic_steps=(10, 50, 100))
    assert rule.wave_of("eastus", True) == 0
    assert (rule.wave_of("northeurope", False), rule.wave_of("westus", False)) == (1, 2)
    assert Delivery().wave_of("westus", False) == Delivery().wave_of("northeurope", False) == 1
    assert [rule.step_after(p) for p in (0, 9, 10, 49, 50, 100)] == [10, 10, 50, 50, 100, 100]
    assert target(rule).wave_of("westus", False) == 2


# --- the rule's regions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("chosen", "covered"),
    [
        (("westus",), ("eastus", "westus")),
        # Configured order, whatever the rule's order; the primary whether named or not.
        (("northeurope", "westus"), REGIONS),
        (("northeurope", "eastus"), ("eastus", "northeurope")),
        ((), ("eastus",)),
        (None, REGIONS),
    ],
)
def test_a_rule_deploys_to_its_regions_and_always_the_primary(
    chosen: tuple[str, ...] | None, covered: tuple[str, ...]
) -> None:
    rollout = new_rollout(notice(), REGIONS, target(Delivery(regions=chosen)), T0)
    assert tuple(r.region for r in rollout.regions) == covered
    assert rollout.primary is not None and rollout.primary.region == "eastus"
    assert [r.region for r in rollout.regions if r.primary] == ["eastus"]


def test_a_target_adopted_later_narrows_the_regions() -> None:
    rollout = new_rollout(notice(), REGIONS, None, T0)
    assert len(rollout.regions) == 3 and rollout.ignored_reason is not None
    adopted = record_push(
        rollout, notice(), at(1), target=target(Delivery(regions=("northeurope",)))
    )
    assert tuple(r.region for r in adopted.regions) == ("eastus", "northeurope")
    assert adopted.ignored_reason is None


def test_only_the_rules_regions_deploy() -> None:
    rollout = serving(start(Delivery(regions=("westus",))), "eastus", at(2))
    assert claims(rollout, at(3)) == ["westus"]
    rollout = serving(rollout, "westus", at(3))
    assert rollout.state is RolloutState.LIVE
    with pytest.raises(KeyError):
        rollout.region("northeurope")


# --- waves ----------------------------------------------------------------------------


def test_a_wave_starts_only_when_every_earlier_wave_is_live_and_soaked() -> None:
    rollout = start(soaking_rule(waves=WAVES))
    assert [document(rollout, r)["wave"] for r in REGIONS] == [0, 1, 2]
    assert claims(rollout, at(1)) == ["eastus"]

    rollout = serving(rollout, "eastus", at(10))
    assert rollout.region("eastus").state is RegionState.SOAKING
    # The primary is wave 0: it soaks before wave 1 starts.
    for moment in (at(10), at(10 + SOAK - 1)):
        rollout = tick(passed(rollout, "eastus", moment), moment, POLICY)
        assert claims(rollout, moment) == []
    assert document(rollout, "eastus")["waiting_for"] == "soak"
    assert document(rollout, "westus")["waiting_for"] == "previous wave"
    assert document(rollout, "northeurope")["waiting_for"] == "previous wave"

    rollout = tick(rollout, at(10 + SOAK), POLICY)
    assert rollout.region("eastus").state is RegionState.LIVE
    assert claims(rollout, at(10 + SOAK)) == ["westus"]
    assert document(rollout, "westus")["waiting_for"] is None
    assert document(rollout, "northeurope")["waiting_for"] == "previous wave"

    t1 = 400.0
    rollout = serving(rollout, "westus", at(t1))
    assert rollout.region("westus").state is RegionState.SOAKING
    rollout = tick(passed(rollout, "westus", at(t1)), at(t1 + SOAK - 1), POLICY)
    assert rollout.region("westus").state is RegionState.SOAKING
    assert claims(rollout, at(t1 + SOAK - 1)) == []
    assert document(rollout, "northeurope")["waiting_for"] == "previous wave"

    rollout = tick(rollout, at(t1 + SOAK), POLICY)
    assert rollout.region("westus").state is RegionState.LIVE
    assert claims(rollout, at(t1 + SOAK)) == ["northeurope"]
    assert document(rollout, "northeurope")["waiting_for"] is None

    rollout = soaked(serving(rollout, "northeurope", at(800)), "northeurope", 800)
    assert rollout.state is RolloutState.LIVE
    assert [document(rollout, r)["wave"] for r in REGIONS] == [0, 1, 2]


def test_a_region_of_a_wave_that_never_deploys_blocks_the_waves_after_it() -> None:
    rollout = serving(start(Delivery(waves=WAVES)), "eastus", at(2))
    assert rollout.region("eastus").state is RegionState.LIVE  # no soak: live at once
    rollout = record_deployment_failed(
        verifying(rollout, "westus", at(3)), "westus", "smoke said 500", at(4)
    )
    assert rollout.region("westus").state is RegionState.FAILED
    assert claims(rollout, at(5)) == []
    assert document(rollout, "northeurope")["waiting_for"] == "previous wave"


# --- soaking and the watch -------------------------------------------------------------


def test_a_soaking_region_is_checked_and_goes_live_once_the_soak_passed() -> None:
    rollout = to_traffic(start(soaking_rule()), "eastus", at(2))
    rollout = shifted(rollout, "eastus", at(10))
    east = rollout.region("eastus")
    assert east.state is RegionState.SOAKING
    assert (east.traffic_percent, east.live_at, east.soak_until) == (100, at(10), at(10 + SOAK))
    assert east.deploy_step is DeployStep.KEEPING_PREVIOUS
    assert (east.next_verify_at, east.verify_passes, east.verify_failures) == (at(10), 0, 0)
    assert rollout.state is RolloutState.DEPLOYING
    # Not live yet: no live event.
    assert EventType.REGION_LIVE not in event_types(rollout, "eastus")
    doc = document(rollout, "eastus")
    assert (doc["state"], doc["soaking"], doc["traffic_percent"]) == ("soaking", True, 100)
    assert doc["soak_until"] == "2025-03-01T12:05:10Z"

    # The first check at once (the target's smoke request), then every interval.
    assert verify_of(rollout, "eastus", at(10)) == [VerifyDeployment("eastus", ref("eastus"), "{}")]
    rollout = passed(rollout, "eastus", at(10))
    east = rollout.region("eastus")
    assert (east.verify_passes, east.next_verify_at) == (1, at(10 + INTERVAL))
    assert verify_of(rollout, "eastus", at(10 + INTERVAL - 1)) == []
    assert len(verify_of(rollout, "eastus", at(10 + INTERVAL))) == 1

    rollout = tick(rollout, at(10 + SOAK - 1), POLICY)
    assert rollout.region("eastus").state is RegionState.SOAKING
    rollout = tick(rollout, at(10 + SOAK), POLICY)
    east = rollout.region("eastus")
    assert (east.state, east.next_verify_at, east.live_at) == (RegionState.LIVE, None, at(10))
    assert event_types(rollout, "eastus").count(EventType.REGION_LIVE) == 1
    assert verify_of(rollout, "eastus", at(10 + SOAK + INTERVAL)) == []
    assert document(rollout, "eastus")["soaking"] is False


def test_a_late_check_of_a_region_no_longer_watched_changes_nothing() -> None:
    rollout = soaked(serving(start(soaking_rule()), "eastus", at(10)), "eastus", 10)
    assert rollout.region("eastus").state is RegionState.LIVE
    assert failed_check(rollout, "eastus", at(10 + SOAK + 1)) is rollout
    assert failed_check(rollout, "westus", at(10 + SOAK + 1)) is rollout  # not deployed


def test_the_check_sends_the_rules_verify_request_or_the_regions_smoke_request() -> None:
    own = Target(
        ENDPOINT,
        settings=DeploymentSettings(smoke_request='{"a":1}'),
        region_overrides=(("westus", RegionOverride(smoke_request='{"w":1}')),),
    )
    assert own.verify_request("eastus") == '{"a":1}'
    assert own.verify_request("westus") == '{"w":1}'
    rule = replace(own, delivery=Delivery(verify=VerifyPolicy(smoke_request='{"v":1}')))
    assert rule.verify_request("eastus") == rule.verify_request("westus") == '{"v":1}'
    none = Target(ENDPOINT, settings=DeploymentSettings(smoke_request=None))
    assert none.verify_request("eastus") is None  # ARM's state only

    rollout = new_rollout(notice(), ("eastus",), replace(rule, delivery=soaking_rule()), T0)
    rollout = confirmed(record_deployable(rollout, 1, T0), T0)
    rollout = replicated(rollout, "eastus", at(1))
    rollout = serving(rollout, "eastus", at(2))
    assert verify_of(rollout, "eastus", at(2)) == [
        VerifyDeployment("eastus", ref("eastus"), '{"a":1}')
    ]


def test_a_soak_without_a_passing_check_stays_then_rolls_the_wave_back_after_the_grace() -> None:
    rollout = serving(start(soaking_rule()), "eastus", at(10))
    end = 10 + SOAK
    rollout = tick(rollout, at(end), POLICY)
    east = rollout.region("eastus")
    assert east.state is RegionState.SOAKING  # no check passed yet: not live
    assert claims(rollout, at(end)) == []
    rollout = tick(rollout, at(end + GRACE - 1), POLICY)
    assert rollout.rolled_back_at is None
    assert rollout.region("eastus").state is RegionState.SOAKING

    rollout = tick(rollout, at(end + GRACE), POLICY)
    east = rollout.region("eastus")
    assert rollout.state is RolloutState.ROLLED_BACK
    assert rollout.rolled_back_at == at(end + GRACE)
    assert rollout.rollback_reason is not None
    assert "no passing check in eastus" in rollout.rollback_reason
    assert "soak" in rollout.rollback_reason
    assert east.deploy_step is DeployStep.RESTORING
    assert east.restore_to == replace(ref("eastus"), name=PREVIOUS)
    assert RestorePrevious("eastus", ENDPOINT, east.restore_to, "older") in next_actions(
        rollout, at(end + GRACE), POLICY
    )
    # Secondaries had not deployed: they stop, nothing to discard.
    for region in ("westus", "northeurope"):
        progress = rollout.region(region)
        assert (progress.state, progress.deploy_step) == (RegionState.ROLLED_BACK, None)


def test_a_late_pass_within_the_grace_lets_the_soak_end() -> None:
    rollout = serving(start(soaking_rule()), "eastus", at(10))
    end = 10 + SOAK
    rollout = tick(rollout, at(end + 5), POLICY)
    rollout = tick(passed(rollout, "eastus", at(end + 10)), at(end + 10), POLICY)
    assert rollout.region("eastus").state is RegionState.LIVE
    assert rollout.rolled_back_at is None
    assert claims(rollout, at(end + 10)) == ["westus", "northeurope"]


# --- failed checks ---------------------------------------------------------------------


def three_regions_with_westus_soaking(max_failures: int = 2) -> Rollout:
    """waves [[westus], [northeurope]]; eastus live (soaked), westus soaking from at(400)."""
    rule = Delivery(
        waves=WAVES,
        soak_s=SOAK,
        verify=VerifyPolicy(interval_s=INTERVAL, max_failures=max_failures),
    )
    rollout = soaked(serving(start(rule), "eastus", at(10)), "eastus", 10)
    rollout = serving(rollout, "westus", at(400))
    assert rollout.region("westus").state is RegionState.SOAKING
    return rollout


def test_failures_up_to_max_failures_keep_the_watch_going() -> None:
    rollout = three_regions_with_westus_soaking(max_failures=2)
    rollout = failed_check(rollout, "westus", at(400))
    west = rollout.region("westus")
    assert (west.state, west.verify_failures) == (RegionState.SOAKING, 1)
    assert west.last_error is not None and "(1 of at most 2 allowed)" in west.last_error
    assert "500 boom" in west.last_error
    rollout = failed_check(rollout, "westus", at(430))
    west = rollout.region("westus")
    assert west.verify_failures == 2 and "(2 of at most 2 allowed)" in (west.last_error or "")
    assert rollout.rolled_back_at is None
    assert len(verify_of(rollout, "westus", at(460))) == 1
    # A pass clears the error, not the count.
    rollout = passed(rollout, "westus", at(460))
    west = rollout.region("westus")
    assert (west.last_error, west.verify_failures, west.verify_passes) == (None, 2, 1)
    rollout = tick(rollout, at(400 + SOAK), POLICY)
    assert rollout.region("westus").state is RegionState.LIVE


def test_one_failure_too_many_rolls_the_wave_back_and_stops_the_later_waves() -> None:
    rollout = three_regions_with_westus_soaking(max_failures=1)
    rollout = failed_check(rollout, "westus", at(400))
    assert rollout.rolled_back_at is None
    rollout = failed_check(rollout, "westus", at(430), detail="503 model crashed")

    assert rollout.state is RolloutState.ROLLED_BACK
    assert rollout.rolled_back_at == at(430)
    reason = rollout.rollback_reason or ""
    assert "verification failed 2 time(s) in westus during its soak" in reason
    assert "503 model crashed" in reason
    west = rollout.region("westus")
    assert west.deploy_step is DeployStep.RESTORING
    # Its soak ended: it serves until the traffic is back, as a live region rolling back.
    assert west.state is RegionState.LIVE
    assert rollout_to_document(rollout)["regions"][1]["soaking"] is False
    assert west.restore_to == replace(ref("westus"), name=PREVIOUS)
    assert west.next_verify_at is None
    # The earlier wave keeps the new image.
    east = rollout.region("eastus")
    assert (east.state, east.deploy_step) == (RegionState.LIVE, DeployStep.KEEPING_PREVIOUS)
    # The later wave never starts: stopped with nothing to discard.
    north = rollout.region("northeurope")
    assert (north.state, north.deploy_step, north.deployment) == (
        RegionState.ROLLED_BACK,
        None,
        None,
    )
    later = [at(430), at(430 + SOAK), at(430 + 3600)]
    for moment in later:
        assert claims(tick(rollout, moment, POLICY), moment) == []
        assert not actions(tick(rollout, moment, POLICY), moment, VerifyDeployment)
    assert RestorePrevious("westus", ENDPOINT, west.restore_to, "older") in next_actions(
        rollout, at(431), POLICY
    )
    doc = rollout_to_document(rollout)
    assert doc["state"] == "rolled_back" and doc["rollback_reason"] == reason
    # Once all traffic is back, the region is rolled back and ours is deleted.
    rollout = record_traffic_restored(rollout, "westus", at(440))
    west = rollout.region("westus")
    assert (west.state, west.traffic_percent, west.deploy_step) == (
        RegionState.ROLLED_BACK,
        0,
        DeployStep.DISCARDING,
    )
    assert EventType.REGION_ROLLED_BACK in event_types(rollout, "westus")
    # The region keeps why its wave went back, and its event says so.
    assert (west.last_error or "").startswith("rolled back: verification failed 2 time(s)")
    [back] = [
        e for e in rollout.outbox if e.type is EventType.REGION_ROLLED_BACK and e.region == "westus"
    ]
    assert back.data["error"] == west.last_error
    assert DiscardDeployment("westus", ref("westus")) in next_actions(rollout, at(441), POLICY)
    rollout = record_deployment_discarded(rollout, "westus", at(442))
    assert rollout.region("westus").deploy_step is DeployStep.DISCARDED
    assert rollout.region("eastus").state is RegionState.LIVE
    assert rollout.state is RolloutState.ROLLED_BACK
    finished = [e for e in rollout.outbox if e.type is EventType.ROLLOUT_FINISHED]
    assert len(finished) == 1 and finished[0].data["state"] == "rolled_back"


def test_a_wave_goes_back_together_and_its_undeployed_regions_stop() -> None:
    rule = soaking_rule(traffic_steps=(10, 100), step_s=STEP)
    rollout = soaked(serving(start(rule), "eastus", at(10), previous=None), "eastus", 10)
    # westus holds its 10% step; northeurope is still provisioning.
    rollout = shifted(to_traffic(rollout, "westus", at(400)), "westus", at(401))
    assert rollout.region("westus").deploy_step is DeployStep.HOLDING_STEP
    rollout = verifying(rollout, "northeurope", at(402), PREVIOUS)
    assert rollout.region("northeurope").deploy_step is DeployStep.VERIFYING
    rollout = failed_check(failed_check(rollout, "westus", at(401)), "westus", at(431))

    assert rollout.state is RolloutState.ROLLED_BACK
    assert "westus during its 10% step" in (rollout.rollback_reason or "")
    west = rollout.region("westus")
    assert (west.state, west.deploy_step) == (RegionState.DEPLOYING, DeployStep.RESTORING)
    north = rollout.region("northeurope")
    # Created, never given traffic: deleted.
    assert (north.state, north.deploy_step) == (RegionState.ROLLED_BACK, DeployStep.DISCARDING)
    assert DiscardDeployment("northeurope", ref("northeurope")) in next_actions(
        rollout, at(432), POLICY
    )
    assert not actions(rollout, at(432), SmokeTest)
    # The primary (first rollout on the endpoint) is wave 0: it keeps serving.
    assert rollout.region("eastus").state is RegionState.LIVE


def test_a_failed_region_without_a_previous_deployment_fails_and_keeps_serving() -> None:
    rule = soaking_rule(waves=WAVES, verify=VerifyPolicy(interval_s=INTERVAL, max_failures=0))
    rolled = soaked(serving(start(rule), "eastus", at(10)), "eastus", 10)
    rolled = serving(rolled, "westus", at(400), previous=None)
    assert rolled.region("westus").previous_deployment is None
    rolled = failed_check(rolled, "westus", at(400))

    assert rolled.state is RolloutState.ROLLED_BACK
    west = rolled.region("westus")
    assert (west.state, west.deploy_step, west.traffic_percent) == (
        RegionState.FAILED,
        DeployStep.DONE,
        100,
    )
    assert west.restore_to is None
    assert "nothing served this endpoint before this rollout" in (west.last_error or "")
    assert EventType.REGION_FAILED in event_types(rolled, "westus")
    later = next_actions(rolled, at(401), POLICY)
    assert not [a for a in later if isinstance(a, RestorePrevious | DiscardDeployment)]
    assert rolled.region("northeurope").state is RegionState.ROLLED_BACK


def test_a_failing_primary_soak_stops_every_secondary() -> None:
    rollout = serving(start(soaking_rule()), "eastus", at(10))
    rollout = failed_check(failed_check(rollout, "eastus", at(10)), "eastus", at(40))
    assert rollout.state is RolloutState.ROLLED_BACK
    assert rollout.region("eastus").deploy_step is DeployStep.RESTORING
    assert {rollout.region(r).state for r in ("westus", "northeurope")} == {RegionState.ROLLED_BACK}
    assert claims(rollout, at(41)) == []
    rollout = record_traffic_restored(rollout, "eastus", at(50))
    assert rollout.region("eastus").state is RegionState.ROLLED_BACK
    assert claims(rollout, at(51)) == []


# --- traffic steps ---------------------------------------------------------------------


def test_traffic_moves_through_the_steps_each_held_and_checked() -> None:
    rollout = to_traffic(start(stepped_rule(regions=())), "eastus", at(2))
    assert shift_of(rollout, "eastus", at(2)) == ShiftTraffic("eastus", ref("eastus"), 10, PREVIOUS)
    rollout = record_traffic_shifted(rollout, "eastus", at(10), percent=10)
    east = rollout.region("eastus")
    assert (east.state, east.deploy_step, east.traffic_percent) == (
        RegionState.DEPLOYING,
        DeployStep.HOLDING_STEP,
        10,
    )
    assert (east.step_until, east.next_verify_at, east.live_at) == (at(10 + STEP), at(10), None)
    assert rollout.state is RolloutState.DEPLOYING
    doc = document(rollout, "eastus")
    assert (doc["traffic_percent"], doc["waiting_for"], doc["soaking"]) == (
        10,
        "traffic step",
        False,
    )
    assert doc["step_until"] == "2025-03-01T12:02:10Z"
    assert not actions(rollout, at(10), ShiftTraffic)
    assert len(verify_of(rollout, "eastus", at(10))) == 1

    rollout = passed(rollout, "eastus", at(10))
    rollout = tick(rollout, at(10 + STEP - 1), POLICY)
    assert rollout.region("eastus").deploy_step is DeployStep.HOLDING_STEP
    assert not actions(rollout, at(10 + STEP - 1), ShiftTraffic)

    rollout = tick(rollout, at(10 + STEP), POLICY)
    east = rollout.region("eastus")
    assert (east.deploy_step, east.traffic_percent) == (DeployStep.SHIFTING_TRAFFIC, 10)
    assert shift_of(rollout, "eastus", at(10 + STEP)) == ShiftTraffic(
        "eastus", ref("eastus"), 50, PREVIOUS
    )
    assert verify_of(rollout, "eastus", at(10 + STEP)) == []  # no check while traffic moves

    t = 10 + STEP + 5
    rollout = record_traffic_shifted(rollout, "eastus", at(t), percent=50)
    east = rollout.region("eastus")
    assert (east.deploy_step, east.traffic_percent, east.step_until) == (
        DeployStep.HOLDING_STEP,
        50,
        at(t + STEP),
    )
    assert (east.verify_passes, east.verify_failures, east.next_verify_at) == (0, 0, at(t))
    rollout = tick(passed(rollout, "eastus", at(t)), at(t + STEP), POLICY)
    assert shift_of(rollout, "eastus", at(t + STEP)) == ShiftTraffic(
        "eastus", ref("eastus"), 100, None
    )
    rollout = record_traffic_shifted(rollout, "eastus", at(t + STEP + 1), percent=100)
    east = rollout.region("eastus")
    assert (east.state, east.deploy_step, east.traffic_percent) == (
        RegionState.LIVE,
        DeployStep.KEEPING_PREVIOUS,
        100,
    )
    assert (east.step_until, east.next_verify_at, east.live_at) == (None, None, at(t + STEP + 1))
    assert rollout.state is RolloutState.LIVE


def test_a_step_moves_on_only_once_a_check_passed() -> None:
    rollout = to_traffic(start(stepped_rule()), "eastus", at(2))
    rollout = record_traffic_shifted(rollout, "eastus", at(10), percent=10)
    rollout = failed_check(rollout, "eastus", at(10))  # within max_failures 1
    rollout = tick(rollout, at(10 + STEP + 30), POLICY)
    east = rollout.region("eastus")
    assert east.deploy_step is DeployStep.HOLDING_STEP
    assert not actions(rollout, at(10 + STEP + 30), ShiftTraffic)
    rollout = tick(passed(rollout, "eastus", at(10 + STEP + 40)), at(10 + STEP + 40), POLICY)
    assert shift_of(rollout, "eastus", at(10 + STEP + 40)).percent == 50


def test_the_last_step_leads_to_a_soak_when_the_rule_has_one() -> None:
    rule = Delivery(
        traffic_steps=(50, 100), step_s=STEP, soak_s=SOAK, verify=VerifyPolicy(interval_s=10)
    )
    rollout = shifted(to_traffic(start(rule), "eastus", at(2)), "eastus", at(10))
    assert rollout.region("eastus").traffic_percent == 50
    rollout = tick(passed(rollout, "eastus", at(10)), at(10 + STEP), POLICY)
    rollout = shifted(rollout, "eastus", at(200))
    east = rollout.region("eastus")
    assert (east.state, east.traffic_percent, east.soak_until) == (
        RegionState.SOAKING,
        100,
        at(200 + SOAK),
    )
    # A new watch: the step's pass does not count for the soak.
    assert (east.verify_passes, east.next_verify_at) == (0, at(200))
    rollout = tick(rollout, at(200 + SOAK), POLICY)
    assert rollout.region("eastus").state is RegionState.SOAKING


def test_without_a_previous_deployment_all_traffic_moves_at_once() -> None:
    rollout = to_traffic(start(stepped_rule()), "eastus", at(2), previous=None)
    assert shift_of(rollout, "eastus", at(2)) == ShiftTraffic("eastus", ref("eastus"), 100, None)
    rollout = record_traffic_shifted(rollout, "eastus", at(3), percent=100)
    east = rollout.region("eastus")
    assert (east.state, east.deploy_step, east.traffic_percent) == (
        RegionState.LIVE,
        DeployStep.DONE,
        100,
    )


def test_an_operator_hold_keeps_a_step_from_moving_but_not_from_being_checked() -> None:
    rollout = shifted(to_traffic(start(stepped_rule()), "eastus", at(2)), "eastus", at(10))
    rollout = apply_request(rollout, request("hold", "eastus"), at(11))
    assert rollout.history[-1].outcome == ACCEPTED
    assert rollout.state is RolloutState.HELD
    assert document(rollout, "eastus")["waiting_for"] == "operator hold"
    assert len(verify_of(rollout, "eastus", at(11))) == 1  # the watch goes on
    rollout = passed(rollout, "eastus", at(11))
    for moment in (at(10 + STEP), at(10 + STEP + 3600)):
        rollout = tick(rollout, moment, POLICY)
        east = rollout.region("eastus")
        assert (east.deploy_step, east.traffic_percent) == (DeployStep.HOLDING_STEP, 10)
        assert not actions(rollout, moment, ShiftTraffic)
        assert len(verify_of(rollout, "eastus", moment)) == 1
    assert rollout.rolled_back_at is None

    resumed_at = 10 + STEP + 3700
    rollout = apply_request(rollout, request("resume", "eastus"), at(resumed_at))
    rollout = tick(rollout, at(resumed_at), POLICY)
    assert shift_of(rollout, "eastus", at(resumed_at)).percent == 50


def test_a_failing_wave_is_rolled_back_even_while_held() -> None:
    rollout = shifted(to_traffic(start(stepped_rule()), "eastus", at(2)), "eastus", at(10))
    rollout = apply_request(rollout, request("hold", "eastus"), at(11))
    rollout = failed_check(failed_check(rollout, "eastus", at(11)), "eastus", at(41))
    assert rollout.rolled_back_at == at(41)
    assert rollout.region("eastus").deploy_step is DeployStep.RESTORING


def test_a_refused_traffic_step_after_some_traffic_rolls_the_wave_back() -> None:
    rollout = shifted(to_traffic(start(stepped_rule()), "eastus", at(2)), "eastus", at(10))
    rollout = tick(passed(rollout, "eastus", at(10)), at(10 + STEP), POLICY)
    assert rollout.region("eastus").deploy_step is DeployStep.SHIFTING_TRAFFIC

    rollout = record_deployment_failed(rollout, "eastus", "ARM refused the traffic", at(140))
    east = rollout.region("eastus")
    assert east.deploy_step is DeployStep.RESTORING  # by traffic, never by a delete
    assert east.restore_to == replace(ref("eastus"), name=PREVIOUS)
    assert rollout.rolled_back_at == at(140)
    assert "ARM refused the traffic" in (rollout.rollback_reason or "")
    assert not actions(rollout, at(141), DiscardDeployment)


def test_a_traffic_step_that_never_lands_rolls_the_wave_back() -> None:
    rollout = shifted(to_traffic(start(stepped_rule()), "eastus", at(2)), "eastus", at(10))
    rollout = tick(passed(rollout, "eastus", at(10)), at(130), POLICY)
    assert rollout.region("eastus").deploy_step is DeployStep.SHIFTING_TRAFFIC
    deadline = 130 + POLICY.traffic_timeout_s
    assert tick(rollout, at(deadline - 1), POLICY).rolled_back_at is None
    rollout = tick(rollout, at(deadline), POLICY)
    assert rollout.region("eastus").deploy_step is DeployStep.RESTORING
    assert "traffic step after 10% not shifted in eastus" in (rollout.rollback_reason or "")


def test_a_failure_before_any_traffic_still_discards() -> None:
    rollout = to_traffic(start(stepped_rule()), "eastus", at(2))
    rollout = record_deployment_failed(rollout, "eastus", "refused", at(3))
    east = rollout.region("eastus")
    assert (east.state, east.deploy_step) == (RegionState.FAILED, DeployStep.SHIFTING_TRAFFIC)
    assert rollout.rolled_back_at is None


# --- ended by a decision ---------------------------------------------------------------


def soaking_and_holding() -> Rollout:
    """eastus live; westus soaking; northeurope holding its 10% step (one wave)."""
    rule = Delivery(
        soak_s=SOAK, traffic_steps=(10, 100), step_s=STEP, verify=VerifyPolicy(interval_s=10)
    )
    rollout = start(rule)
    rollout = shifted(to_traffic(rollout, "eastus", at(2)), "eastus", at(3))
    rollout = tick(passed(rollout, "eastus", at(3)), at(3 + STEP), POLICY)
    rollout = soaked(shifted(rollout, "eastus", at(130)), "eastus", 130)
    assert rollout.region("eastus").state is RegionState.LIVE
    rollout = shifted(to_traffic(rollout, "westus", at(500)), "westus", at(501))
    rollout = tick(passed(rollout, "westus", at(501)), at(501 + STEP), POLICY)
    rollout = shifted(rollout, "westus", at(650))
    rollout = shifted(to_traffic(rollout, "northeurope", at(651)), "northeurope", at(652))
    assert rollout.region("westus").state is RegionState.SOAKING
    assert rollout.region("northeurope").deploy_step is DeployStep.HOLDING_STEP
    return rollout


def test_a_superseded_rollout_sends_a_held_step_back_and_ends_a_soak() -> None:
    rollout = supersede(soaking_and_holding(), by="newer", now=at(700))
    assert rollout.superseded_by == "newer"
    west = rollout.region("westus")
    assert (west.state, west.next_verify_at) == (RegionState.LIVE, None)
    north = rollout.region("northeurope")
    assert north.deploy_step is DeployStep.RESTORING
    assert north.restore_to == replace(ref("northeurope"), name=PREVIOUS)
    assert rollout.region("eastus").state is RegionState.LIVE
    now = at(701)
    assert not actions(rollout, now, VerifyDeployment)
    assert not actions(rollout, now, ShiftTraffic)
    assert [a.region for a in actions(rollout, now, RestorePrevious)] == ["northeurope"]
    rollout = record_traffic_restored(rollout, "northeurope", at(710))
    assert rollout.region("northeurope").state is RegionState.ROLLED_BACK


def test_a_replaced_region_stops_the_rest_of_its_rollout() -> None:
    rollout = record_replaced(soaking_and_holding(), "westus", "newer", at(700))
    assert rollout.superseded_by == "newer"
    west = rollout.region("westus")
    assert (west.state, west.traffic_percent) == (RegionState.SUPERSEDED, 0)
    assert west.deploy_step is DeployStep.CLEANING_UP
    assert rollout.region("northeurope").deploy_step is DeployStep.RESTORING
    assert rollout.region("eastus").state is RegionState.LIVE


def test_a_soaking_region_ends_live_when_superseded() -> None:
    rollout = serving(start(soaking_rule()), "eastus", at(10))
    rollout = supersede(rollout, by="newer", now=at(20))
    east = rollout.region("eastus")
    assert (east.state, east.next_verify_at) == (RegionState.LIVE, None)
    assert not actions(rollout, at(20), VerifyDeployment)


def test_an_operator_can_roll_back_a_soaking_or_step_holding_region() -> None:
    rollout = soaking_and_holding()
    soaking_back = apply_request(rollout, request("rollback", "westus"), at(700))
    assert soaking_back.history[-1].outcome == ACCEPTED
    assert soaking_back.rolled_back_at == at(700)
    assert soaking_back.region("westus").deploy_step is DeployStep.RESTORING
    assert soaking_back.region("westus").restore_to == replace(ref("westus"), name=PREVIOUS)
    # Not named: the held step goes back too (no endpoint left split), eastus stays.
    assert soaking_back.region("northeurope").deploy_step is DeployStep.RESTORING
    assert soaking_back.region("eastus").deploy_step is DeployStep.KEEPING_PREVIOUS

    step_back = apply_request(rollout, request("rollback", "northeurope"), at(700))
    assert step_back.history[-1].outcome == ACCEPTED
    assert step_back.region("northeurope").deploy_step is DeployStep.RESTORING
    # The soak ends with the rollout: westus serves on.
    assert step_back.region("westus").state is RegionState.LIVE

    whole = apply_request(rollout, request("rollback"), at(700))
    assert whole.history[-1].regions == ("eastus", "westus", "northeurope")
    assert {whole.region(r).deploy_step for r in REGIONS} == {DeployStep.RESTORING}


def test_an_operator_rollback_of_a_soaking_region_with_nothing_before_is_refused() -> None:
    rollout = serving(start(soaking_rule()), "eastus", at(10), previous=None)
    refused = apply_request(rollout, request("rollback", "eastus"), at(20))
    assert refused.history[-1].outcome == REFUSED
    assert "nothing served models-llm before this rollout" in (refused.history[-1].message or "")
    assert refused.rolled_back_at is None


# --- approval and waves ----------------------------------------------------------------


def test_before_each_wave_opens_a_gate_only_once_the_wave_before_it_soaked() -> None:
    rollout = start(soaking_rule(waves=WAVES), approval=ApprovalMode.BEFORE_EACH_WAVE)
    assert rollout.gates == ()
    rollout = serving(rollout, "eastus", at(10))
    rollout = tick(passed(rollout, "eastus", at(10)), at(10 + SOAK - 1), POLICY)
    assert rollout.gates == ()  # soaking is not live
    assert rollout.region("westus").state is RegionState.REPLICATED

    opened = 10 + SOAK
    rollout = tick(rollout, at(opened), POLICY)
    assert rollout.gates == (ApprovalGate(wave=1, opened_at=at(opened)),)
    assert rollout.region("westus").state is RegionState.AWAITING_APPROVAL
    assert rollout.region("northeurope").state is RegionState.REPLICATED
    assert document(rollout, "westus")["waiting_for"] == "approval"
    assert document(rollout, "northeurope")["waiting_for"] == "previous wave"
    assert claims(rollout, at(opened)) == []

    rollout = apply_request(rollout, request("approve"), at(opened + 1))
    assert rollout.history[-1].outcome == ACCEPTED
    assert rollout.history[-1].regions == ("westus",)
    assert claims(rollout, at(opened + 1)) == ["westus"]

    rollout = serving(rollout, "westus", at(400))
    rollout = tick(passed(rollout, "westus", at(400)), at(400 + SOAK - 1), POLICY)
    assert [g.wave for g in rollout.gates] == [1]
    assert apply_request(rollout, request("approve"), at(699)).history[-1].outcome == REFUSED

    rollout = tick(rollout, at(400 + SOAK), POLICY)
    assert [(g.wave, g.opened_at) for g in rollout.gates] == [
        (1, at(opened)),
        (2, at(400 + SOAK)),
    ]
    assert rollout.region("northeurope").state is RegionState.AWAITING_APPROVAL
    assert document(rollout, "northeurope")["waiting_for"] == "approval"
    assert claims(rollout, at(400 + SOAK)) == []
    rollout = apply_request(rollout, request("approve", "northeurope"), at(701))
    assert claims(rollout, at(701)) == ["northeurope"]


# --- keeping the previous deployment and scheduling ---------------------------------------


def test_previous_deployments_are_kept_while_any_region_soaks() -> None:
    rollout = serving(start(soaking_rule()), "eastus", at(10))
    assert keep_previous_until(rollout, POLICY) is None
    rollout = soaked(rollout, "eastus", 10)
    for region in ("westus", "northeurope"):
        rollout = serving(rollout, region, at(400))
    assert keep_previous_until(rollout, POLICY) is None  # secondaries soak
    # A soak longer than the keep time: nothing is cleaned up while a region soaks.
    long_soak = SOAK + POLICY.keep_previous_s
    kept = serving(start(Delivery(soak_s=long_soak)), "eastus", at(10))
    kept = tick(passed(kept, "eastus", at(10)), at(10 + long_soak - 1), POLICY)
    assert kept.region("eastus").state is RegionState.SOAKING
    assert kept.region("eastus").deploy_step is DeployStep.KEEPING_PREVIOUS
    assert not actions(kept, at(10 + long_soak - 1), DeletePrevious)
    rollout = passed(passed(rollout, "westus", at(400)), "northeurope", at(400))
    rollout = tick(rollout, at(400 + SOAK), POLICY)
    assert all(r.state is RegionState.LIVE for r in rollout.regions)
    assert keep_previous_until(rollout, POLICY) is not None


def test_the_keep_time_counts_from_when_the_last_wave_soaked() -> None:
    """README: the previous deployment is kept "once the rollout settled" for
    GEOROLLOUT_KEEP_PREVIOUS_MINUTES; a soaking rollout has not settled."""
    rollout = serving(start(soaking_rule(), regions=("eastus",)), "eastus", at(10))
    rollout = soaked(rollout, "eastus", 10)
    settled = at(10 + SOAK)
    assert rollout.region("eastus").state is RegionState.LIVE
    assert keep_previous_until(rollout, POLICY) == settled + timedelta(
        seconds=POLICY.keep_previous_s
    )
    before = tick(rollout, settled + timedelta(seconds=POLICY.keep_previous_s - 1), POLICY)
    assert before.region("eastus").deploy_step is DeployStep.KEEPING_PREVIOUS


def watched_alone(rule: Delivery) -> Rollout:
    """A one-region rollout shifted at at(10): events sent, the lease given back."""
    rollout = new_rollout(notice(), ("eastus",), target(rule), T0)
    rollout = replicated(confirmed(record_deployable(rollout, 1, T0), T0), "eastus", at(1))
    rollout = shifted(to_traffic(rollout, "eastus", at(2)), "eastus", at(10))
    return published(record_lease_released(rollout, "eastus", at(10)))


def test_a_soaking_rollout_is_due_at_its_next_check_or_the_soak_end() -> None:
    rollout = watched_alone(Delivery(soak_s=100, verify=VerifyPolicy(interval_s=30)))
    assert rollout.region("eastus").state is RegionState.SOAKING
    assert next_due_at(rollout, at(10), POLICY, POLL) == at(10)  # the first check
    for checked in (10, 40, 70):
        rollout = published(passed(rollout, "eastus", at(checked)))
        assert next_due_at(rollout, at(checked), POLICY, POLL) == at(checked + 30)
    rollout = published(passed(rollout, "eastus", at(100)))
    # The next check (130) comes after the soak end (110).
    assert next_due_at(rollout, at(100), POLICY, POLL) == at(110)
    rollout = published(tick(rollout, at(110), POLICY))
    assert rollout.region("eastus").state is RegionState.LIVE
    assert next_due_at(rollout, at(110), POLICY, POLL) == keep_previous_until(rollout, POLICY)


def test_a_held_step_is_due_at_its_next_check_or_the_step_end() -> None:
    rollout = watched_alone(
        Delivery(traffic_steps=(25, 100), step_s=50, verify=VerifyPolicy(interval_s=30))
    )
    assert rollout.region("eastus").deploy_step is DeployStep.HOLDING_STEP
    rollout = published(passed(rollout, "eastus", at(10)))
    assert next_due_at(rollout, at(10), POLICY, POLL) == at(40)
    rollout = published(passed(rollout, "eastus", at(40)))
    assert next_due_at(rollout, at(40), POLICY, POLL) == at(60)


def test_a_held_step_past_its_end_is_due_only_for_its_checks() -> None:
    rollout = watched_alone(
        Delivery(traffic_steps=(25, 100), step_s=50, verify=VerifyPolicy(interval_s=30))
    )
    rollout = published(apply_request(rollout, request("hold", "eastus"), at(11)))
    rollout = published(tick(passed(rollout, "eastus", at(70)), at(70), POLICY))
    assert rollout.region("eastus").deploy_step is DeployStep.HOLDING_STEP  # held past at(60)
    # Not the past step end (every timer run while held): the next check.
    assert next_due_at(rollout, at(70), POLICY, POLL) == at(100)


# --- the storage record ----------------------------------------------------------------


def stages() -> list[tuple[str, Rollout]]:
    waved = three_regions_with_westus_soaking(max_failures=0)
    rolled_back = failed_check(waved, "westus", at(400))
    restored = record_traffic_restored(rolled_back, "westus", at(410))
    stepped = shifted(to_traffic(start(stepped_rule()), "eastus", at(2)), "eastus", at(10))
    moving = tick(passed(stepped, "eastus", at(10)), at(10 + STEP), POLICY)
    no_previous = soaking_rule(waves=WAVES, verify=VerifyPolicy(max_failures=0))
    kept_serving = soaked(serving(start(no_previous), "eastus", at(10)), "eastus", 10)
    kept_serving = failed_check(serving(kept_serving, "westus", at(400), None), "westus", at(400))
    gated = start(soaking_rule(waves=WAVES), approval=ApprovalMode.BEFORE_EACH_WAVE)
    gated = soaked(serving(gated, "eastus", at(10)), "eastus", 10)
    full = Delivery(
        regions=("westus", "northeurope"),
        waves=WAVES,
        soak_s=12.5,
        verify=VerifyPolicy(smoke_request='{"v":1}', interval_s=7.5, max_failures=3),
        traffic_steps=(5, 50, 100),
        step_s=60.25,
    )
    return [
        ("soaking", serving(start(soaking_rule()), "eastus", at(10))),
        ("waves, westus soaking", waved),
        ("holding a step", stepped),
        ("checked in a step", passed(stepped, "eastus", at(10))),
        ("shifting to the next step", moving),
        ("wave rolled back", rolled_back),
        ("traffic restored", restored),
        ("failed without a previous deployment", kept_serving),
        ("superseded mid-step", supersede(soaking_and_holding(), by="newer", now=at(700))),
        ("awaiting approval", gated),
        ("every delivery field", start(full)),
    ]


@pytest.mark.parametrize(("name", "rollout"), stages(), ids=[name for name, _ in stages()])
def test_every_stage_round_trips_through_the_storage_record(name: str, rollout: Rollout) -> None:
    record = json.loads(json.dumps(rollout_to_record(rollout)))
    assert rollout_from_record(record) == rollout, name
    json.dumps(rollout_to_document(rollout))


def test_the_record_keeps_the_rules_delivery() -> None:
    full = stages()[-1][1]
    assert full.target is not None
    back = rollout_from_record(json.loads(json.dumps(rollout_to_record(full))))
    assert back.target is not None and back.target.delivery == full.target.delivery
    assert back.target.delivery.verify.smoke_request == '{"v":1}'
    assert back.target.delivery.traffic_steps == (5, 50, 100)


_NEW_REGION_KEYS = (
    "traffic_percent",
    "soaking",
    "soak_until",
    "step_until",
    "next_verify_at",
    "verify_passes",
    "verify_failures",
)


def test_a_record_from_before_progressive_delivery_reads_with_defaults() -> None:
    rollout = new_rollout(notice(), REGIONS, target(), T0)
    rollout = confirmed(record_deployable(rollout, 1, T0), T0)
    for region in REGIONS:
        rollout = replicated(rollout, region, at(1))
    rollout = serving(rollout, "eastus", at(2))
    rollout = to_traffic(rollout, "westus", at(3))  # traffic about to move: none yet
    record = json.loads(json.dumps(rollout_to_record(rollout)))
    del record["target"]["delivery"]
    del record["rollback_reason"]
    for region in record["regions"]:
        for key in _NEW_REGION_KEYS:
            del region[key]
    old = rollout_from_record(record)
    assert old.target is not None and old.target.delivery == Delivery()
    assert old.rollback_reason is None
    east, west, north = (old.region(r) for r in REGIONS)
    assert east.live_at is not None and east.traffic_percent == 100
    assert (west.traffic_percent, north.traffic_percent) == (0, 0)
    for progress in (east, west, north):
        assert (progress.step_until, progress.soak_until, progress.next_verify_at) == (
            None,
            None,
            None,
        )
        assert (progress.verify_passes, progress.verify_failures) == (0, 0)
    assert old == rollout
    # And it goes on as the plain rollout it was.
    assert shift_of(old, "westus", at(4)) == ShiftTraffic("westus", ref("westus"), 100, None)


# --- findings: a wave rolled back while another of its regions moves traffic -------------


def rolled_back_while_westus_shifts() -> Rollout:
    """One wave (westus, northeurope) at 10% each; westus moves to 100% when northeurope
    fails its checks and rolls the wave back."""
    rule = Delivery(traffic_steps=(10, 100), step_s=STEP, verify=VerifyPolicy(interval_s=10))
    rollout = serving(start(rule), "eastus", at(2), previous=None)
    for region in ("westus", "northeurope"):
        rollout = shifted(to_traffic(rollout, region, at(3)), region, at(4))
    rollout = tick(passed(rollout, "westus", at(4)), at(4 + STEP), POLICY)
    west = rollout.region("westus")
    assert (west.deploy_step, west.traffic_percent) == (DeployStep.SHIFTING_TRAFFIC, 10)
    rollout = failed_check(failed_check(rollout, "northeurope", at(130)), "northeurope", at(140))
    assert rollout.rolled_back_at == at(140)
    assert rollout.region("northeurope").deploy_step is DeployStep.RESTORING
    assert rollout.region("westus").rollback_requested
    return rollout


def test_a_rolled_back_wave_region_whose_shift_lands_goes_back_too() -> None:
    rollout = rolled_back_while_westus_shifts()
    # The shift under way finishes (it asks for the step it was moving to) ...
    assert shift_of(rollout, "westus", at(141)).percent == 100
    rollout = record_traffic_shifted(rollout, "westus", at(142), percent=100)
    # ... and then the region goes back with its wave.
    west = rollout.region("westus")
    assert west.deploy_step is DeployStep.RESTORING
    assert west.restore_to == replace(ref("westus"), name=PREVIOUS)


def test_a_rolled_back_wave_never_deletes_a_deployment_that_holds_a_traffic_step() -> None:
    """The shift 10% → 100% never lands after the wave was rolled back: westus's deployment
    still has 10% of the traffic, so it must go back by traffic, not be discarded."""
    rollout = rolled_back_while_westus_shifts()
    rollout = tick(rollout, at(4 + STEP) + timedelta(seconds=POLICY.traffic_timeout_s), POLICY)
    west = rollout.region("westus")
    assert west.deploy_step is not DeployStep.DISCARDING
    assert not [a for a in actions(rollout, at(3000), DiscardDeployment) if a.region == "westus"]
    assert west.deploy_step is DeployStep.RESTORING


def test_a_refused_shift_in_a_rolled_back_wave_goes_back_by_traffic() -> None:
    """The traffic PUT 10% → 100% is refused after the wave was rolled back: the endpoint is
    split 10/90 between westus's deployment and the previous one; it must go back."""
    rollout = rolled_back_while_westus_shifts()
    rollout = record_deployment_failed(rollout, "westus", "ARM refused the traffic", at(150))
    west = rollout.region("westus")
    assert west.deploy_step is DeployStep.RESTORING
    assert west.restore_to == replace(ref("westus"), name=PREVIOUS)


def test_a_retry_after_an_automatic_rollback_clears_its_reason() -> None:
    rollout = failed_check(three_regions_with_westus_soaking(max_failures=0), "westus", at(400))
    rollout = record_traffic_restored(rollout, "westus", at(410))
    assert rollout.rollback_reason is not None
    retried = apply_request(rollout, request("retry"), at(420))
    assert retried.history[-1].outcome == ACCEPTED
    assert retried.rolled_back_at is None
    assert retried.state is not RolloutState.ROLLED_BACK
    # A rollout going forward again must not show why an earlier attempt was rolled back.
    assert retried.rollback_reason is None
    assert rollout_to_document(retried)["rollback_reason"] is None
