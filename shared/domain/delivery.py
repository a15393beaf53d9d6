"""Progressive delivery: waves, traffic steps, the watch over a deployment taking traffic,
and rolling a wave back. Pure functions on the model, wired into the state machine by
`shared.domain.rollout` (which commits their results and derives the events).

A region of a progressive rule moves, after its smoke request passed, through

    shifting_traffic (to the next step) → holding_step (part of the traffic, watched for
    step_seconds) → ... → 100% → soaking (watched for soak_seconds) → live

and its wave is done when every region of it is `live`; the next wave starts then. A
watched region is checked every `verify.interval_seconds` (`VerifyDeployment`); more than
`verify.max_failures` failed checks roll its whole wave back to the deployments that served
before and stop the rollout: the waves after it never start.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from shared.domain.model import (
    HOLDABLE_REGION_STATES,
    DeployStep,
    RegionProgress,
    RegionState,
    Rollout,
)
from shared.domain.targets import Delivery

# Regions of a rolled-back rollout that had not deployed yet: they stop where they are.
STOPPED_BY_ROLLBACK = (
    "the rollout was rolled back before this region deployed; what served before still serves"
)
ROLLBACK_STEPS = (DeployStep.RESTORING, DeployStep.REDEPLOYING_PREVIOUS)
# How a region of a failed wave says why it goes back (kept, as "rolled back: ...", after).
ROLLING_BACK = "rolling back: "
ROLLED_BACK = "rolled back: "


def delivery_of(rollout: Rollout) -> Delivery:
    return rollout.target.delivery if rollout.target is not None else Delivery()


def wave_of(rollout: Rollout, progress: RegionProgress) -> int:
    return delivery_of(rollout).wave_of(progress.region, progress.primary)


def settled_live(progress: RegionProgress) -> bool:
    """Live and staying so: soaked, not going back (nor asked to)."""
    return (
        progress.state is RegionState.LIVE
        and progress.deploy_step not in ROLLBACK_STEPS
        and not progress.rollback_requested
    )


def wave_may_start(rollout: Rollout, wave: int) -> bool:
    """A wave starts once every region of every earlier wave is live (soaked) and not going
    back."""
    return all(settled_live(r) for r in rollout.regions if wave_of(rollout, r) < wave)


def takes_traffic(progress: RegionProgress) -> bool:
    """Our deployment has a share of the endpoint's traffic and no traffic change is under
    way: the region can be rolled back by a traffic change now."""
    if progress.deploy_step in ROLLBACK_STEPS:
        return False
    if progress.state in (RegionState.LIVE, RegionState.SOAKING):
        return True
    return (
        progress.state is RegionState.DEPLOYING and progress.deploy_step is DeployStep.HOLDING_STEP
    )


def watched(progress: RegionProgress) -> bool:
    """The region is checked on the verify schedule (a traffic step or its wave's soak)."""
    return takes_traffic(progress) and progress.state is not RegionState.LIVE


def verify_due(progress: RegionProgress, now: datetime) -> bool:
    return watched(progress) and (progress.next_verify_at is None or progress.next_verify_at <= now)


def shift_percent(rollout: Rollout, progress: RegionProgress) -> int:
    """The share the next traffic change gives our deployment. Nothing to split with (no
    deployment served before, or only an earlier attempt of this rollout: the same image)
    means all of it at once."""
    if not served_before(rollout, progress):
        return 100
    return delivery_of(rollout).step_after(progress.traffic_percent)


def _watch_from(progress: RegionProgress, now: datetime) -> RegionProgress:
    """A new watch (step or soak): counts from zero, the first check at once."""
    return replace(progress, verify_passes=0, verify_failures=0, next_verify_at=now)


def after_shift(
    rollout: Rollout, progress: RegionProgress, percent: int, now: datetime
) -> RegionProgress:
    """The region once our deployment has `percent` of the traffic: holding a step short of
    100%; at 100% serving, soaking first when the rule asks for a soak."""
    delivery = delivery_of(rollout)
    shifted = replace(progress, traffic_percent=percent, last_error=None, step_started_at=now)
    if percent < 100:
        held = replace(
            shifted,
            deploy_step=DeployStep.HOLDING_STEP,
            step_until=now + timedelta(seconds=delivery.step_s),
        )
        return _watch_from(held, now)
    serving = replace(
        shifted,
        live_at=now,
        step_until=None,
        # The previous deployment stays (0% traffic) for a cheap rollback until the rollout
        # settled and the keep time passed (see keep_previous_until).
        deploy_step=(
            DeployStep.KEEPING_PREVIOUS if progress.previous_deployment else DeployStep.DONE
        ),
    )
    if delivery.soak_s <= 0:
        return replace(serving, state=RegionState.LIVE, next_verify_at=None)
    soaking = replace(
        serving,
        state=RegionState.SOAKING,
        soak_until=now + timedelta(seconds=delivery.soak_s),
    )
    return _watch_from(soaking, now)


def record_check(
    rollout: Rollout, progress: RegionProgress, passed: bool, detail: str, now: datetime
) -> tuple[RegionProgress, str | None]:
    """The region after one check, and the reason to roll its wave back (None: go on)."""
    verify = delivery_of(rollout).verify
    failures = progress.verify_failures + (0 if passed else 1)
    checked = replace(
        progress,
        verify_passes=progress.verify_passes + (1 if passed else 0),
        verify_failures=failures,
        next_verify_at=now + timedelta(seconds=verify.interval_s),
        last_error=(
            None
            if passed
            else f"verification failed ({failures} of at most {verify.max_failures} allowed): "
            f"{detail[:300]}"
        ),
    )
    if failures > verify.max_failures:
        where = (
            "soak" if progress.state is RegionState.SOAKING else f"{progress.traffic_percent}% step"
        )
        return checked, (
            f"verification failed {failures} time(s) in {progress.region} during its {where} "
            f"(max_failures {verify.max_failures}): {detail[:300]}"
        )
    return checked, None


def advance(
    rollout: Rollout, progress: RegionProgress, now: datetime, grace_s: float
) -> tuple[RegionProgress, str | None]:
    """What time decides for a watched region: the next step once the step time passed with
    a passing check; `live` once the soak passed with one; a watch that got no passing check
    within `grace_s` after its end rolls the wave back (the reason is returned)."""
    if not watched(progress):
        return progress, None
    end = progress.step_until if progress.state is RegionState.DEPLOYING else progress.soak_until
    if end is None or now < end:
        return progress, None
    if progress.verify_passes > 0:
        if progress.state is RegionState.SOAKING:
            return replace(progress, state=RegionState.LIVE, next_verify_at=None), None
        if progress.operator_hold:
            return progress, None  # held: the next traffic step waits for the resume
        shifting = replace(
            progress,
            deploy_step=DeployStep.SHIFTING_TRAFFIC,
            step_started_at=now,
            next_verify_at=None,
        )
        return shifting, None
    if now - end >= timedelta(seconds=grace_s):
        what = "soak" if progress.state is RegionState.SOAKING else "traffic step"
        said = progress.last_error or "no check answered"
        return (
            progress,
            f"no passing check in {progress.region} within {int(grace_s)} s after its {what} ended ({said})",
        )
    return progress, None


def start_rollback(progress: RegionProgress, now: datetime) -> RegionProgress:
    """A region taking traffic begins going back to the deployment that served before it."""
    assert progress.deployment is not None and progress.previous_deployment is not None
    return replace(
        progress,
        # A soak ends here: the region serves until the traffic is back (as a live one does).
        state=RegionState.LIVE if progress.state is RegionState.SOAKING else progress.state,
        deploy_step=DeployStep.RESTORING,
        restore_to=replace(progress.deployment, name=progress.previous_deployment, operation=None),
        restore_image=None,
        rollback_requested=False,
        step_started_at=now,
        waiting_for=None,
        last_error=None,
        next_verify_at=None,
    )


def reason_after_restore(progress: RegionProgress) -> str | None:
    """The region's error once its traffic is back: why its wave went back (None after an
    operator's rollback, whose reason is in the history)."""
    error = progress.last_error
    if error and error.startswith(ROLLING_BACK):
        return ROLLED_BACK + error.removeprefix(ROLLING_BACK)
    return None


def served_before(rollout: Rollout, progress: RegionProgress) -> bool:
    """Something served the endpoint before this rollout: a deployment to go back to (an
    earlier attempt of this rollout, the same image, is none)."""
    return progress.previous_deployment is not None and progress.previous_rollout != rollout.id


def stop_for_rollback(
    rollout: Rollout, progress: RegionProgress, now: datetime, *, whole: bool
) -> RegionProgress:
    """A region not going back itself when its rollout is rolled back: one that has not
    deployed stops; one whose traffic is moving finishes and then (`whole`) goes back too."""
    if progress.deploy_step in ROLLBACK_STEPS:
        return progress  # going back already
    if (
        progress.state is RegionState.DEPLOYING
        and progress.deploy_step is DeployStep.SHIFTING_TRAFFIC
    ):
        # With nothing before it there is nothing to go back to: the shift just finishes.
        return replace(progress, rollback_requested=whole and served_before(rollout, progress))
    if progress.state not in HOLDABLE_REGION_STATES or takes_traffic(progress):
        return progress
    step = progress.deploy_step
    discard = step in (DeployStep.REQUESTED, DeployStep.CREATING, DeployStep.VERIFYING)
    return replace(
        progress,
        state=RegionState.ROLLED_BACK,
        next_probe_at=None,
        deploy_step=DeployStep.DISCARDING if discard else step,
        step_started_at=now if discard else progress.step_started_at,
        waiting_for=None,
        last_error=STOPPED_BY_ROLLBACK,
    )


def _back(rollout: Rollout, progress: RegionProgress, reason: str, now: datetime) -> RegionProgress:
    """One region of a failed wave: traffic back to what served before; with nothing before
    it the region fails and keeps serving (removing the only deployment is an outage). An
    earlier attempt of this rollout (same image) is not "before": nothing to go back to."""
    if served_before(rollout, progress) and progress.deployment is not None:
        return replace(start_rollback(progress, now), last_error=ROLLING_BACK + reason)
    return replace(
        progress,
        state=RegionState.FAILED,
        deploy_step=DeployStep.DONE,
        next_verify_at=None,
        last_error=(
            f"{reason}; nothing served this endpoint before this rollout, so the traffic "
            "stays on this deployment"
        ),
    )


def roll_back_wave(rollout: Rollout, wave: int, reason: str, now: datetime) -> Rollout:
    """A wave failed its watch: every region of it goes back (a traffic move under way
    finishes first), every region not yet deploying stops, and the rollout ends rolled back
    with `reason`. Earlier waves keep the new image."""
    regions = []
    for progress in rollout.regions:
        if wave_of(rollout, progress) == wave and takes_traffic(progress):
            progress = _back(rollout, progress, reason, now)
        else:
            progress = stop_for_rollback(
                rollout, progress, now, whole=wave_of(rollout, progress) == wave
            )
        regions.append(progress)
    return replace(rollout, regions=tuple(regions), rolled_back_at=now, rollback_reason=reason)


def settle_stopped(rollout: Rollout, now: datetime) -> Rollout:
    """In a rollout that ended by a decision (superseded, rolled back): a soak ends (the
    region serves; whatever replaces it takes over from there) and a region holding a
    traffic step goes back to what served before, so no endpoint is left split."""
    regions = tuple(
        replace(r, state=RegionState.LIVE, next_verify_at=None)
        if r.state is RegionState.SOAKING and r.deploy_step not in ROLLBACK_STEPS
        else start_rollback(r, now)
        if r.state is RegionState.DEPLOYING
        and r.deploy_step is DeployStep.HOLDING_STEP
        and served_before(rollout, r)
        and r.deployment is not None
        else r
        for r in rollout.regions
    )
    return rollout if regions == rollout.regions else replace(rollout, regions=regions)
