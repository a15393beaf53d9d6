"""One push to live through the service layer alone: intake, then the timer's ticks, against
the real registries, ARM emulator, Event Grid emulator and Azurite."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta

import pytest

from devenv.process import wait_until
from shared.domain.events import EventType, event_id
from shared.domain.model import DeployStep, RegionState, Rollout
from shared.domain.names import deployment_name
from shared.service.intake import record_notices
from shared.service.reconcile import RECONCILE_SPAN, ROLLOUT_ATTRIBUTE, utc_now
from shared.service.tick import run_tick
from tests.integration.service.arm_audit import deployment_writes
from tests.integration.service.conftest import PRIMARY, REGIONS, SECONDARIES
from tests.integration.service.driving import (
    DEADLINE_S,
    is_live,
    poll_until,
    stored,
    stored_until,
    tick_until,
)
from tests.integration.service.pushing import notice_of, push
from tests.integration.service.service_stack import ServiceStack
from tests.integration.service.telemetry import RecordedTelemetry

pytestmark = pytest.mark.integration


def test_a_push_goes_live_primary_first_and_each_region_is_created_once(
    stack: ServiceStack,
) -> None:
    pushed = push(stack.env, stack.tls, "service/happy", "v1", seed="happy-v1")

    telemetry = RecordedTelemetry()

    async def scenario() -> None:
        async with stack.services() as services:
            services.telemetry = telemetry.telemetry
            result = await record_notices(services, [notice_of(pushed)])
            assert result.recorded == (pushed.rollout_id,)
            rollouts = await tick_until(
                services,
                [pushed.rollout_id],
                lambda found: is_live(found[pushed.rollout_id]),
                what="every region live",
            )
            rollout = rollouts[pushed.rollout_id]
            primary = rollout.region(PRIMARY)
            assert primary.live_at is not None
            for name in SECONDARIES:
                secondary = rollout.region(name)
                assert secondary.deploy_started_at is not None
                assert primary.live_at < secondary.deploy_started_at, (primary, secondary)
            for region in rollout.regions:
                assert region.state is RegionState.LIVE
                assert region.deploy_step is DeployStep.DONE
                assert region.deployment is not None
                assert region.deployment.name == deployment_name(pushed.digest)
            # Live regions' outbox is sent by the step that wrote it.
            assert (await stored(services, pushed.rollout_id)).outbox == ()
            models = await services.replication.models()
            check_telemetry(telemetry, rollout, {r: len(m.samples) for r, m in models.items()})

    asyncio.run(scenario())

    writes = deployment_writes(stack.env, stack.tls, pushed.digest)
    assert [w["action"] for w in writes] == ["deployment_create"] * len(REGIONS), writes
    assert Counter(w["region"] for w in writes) == Counter(REGIONS), writes
    early = [w for w in writes if not w["image_present_at_create"]]
    assert early == [], f"created before the replica had the image: {early}"

    finished = event_id(pushed.rollout_id, 1, "", EventType.ROLLOUT_FINISHED)
    live = [event_id(pushed.rollout_id, 1, r, EventType.REGION_LIVE) for r in REGIONS]
    wanted = [finished, *live]
    wait_until(
        lambda: {e["id"] for e in stack.receiver.deliveries(wanted)} == set(wanted),
        timeout=DEADLINE_S,
        what="region.live and rollout.finished delivered",
    )
    delivered = {e["id"]: e for e in stack.receiver.deliveries(wanted)}
    assert delivered[finished]["type"] == EventType.ROLLOUT_FINISHED.value
    assert delivered[finished]["subject"] == f"{pushed.repository}@{pushed.digest}"


def check_telemetry(recorded: RecordedTelemetry, rollout: Rollout, samples: dict[str, int]) -> None:
    """What the in-memory reader and exporter hold after one rollout went live."""
    durations = recorded.histogram("georollout.deployment.duration")
    assert sorted(durations) == sorted(REGIONS), durations
    for region in rollout.regions:
        assert region.live_at is not None and region.deploy_started_at is not None
        taken = (region.live_at - region.deploy_started_at).total_seconds()
        assert durations[region.region] == pytest.approx([taken]), region.region
    assert recorded.counter("georollout.rollouts.finished", "outcome") == {"live": 1}
    # The latency histogram counts exactly the arrivals the statistics kept.
    latencies = recorded.histogram("georollout.replication.latency")
    assert {r: len(v) for r, v in latencies.items()} == {r: n for r, n in samples.items() if n}
    lags = recorded.histogram("georollout.replication.detection_lag")
    for region in rollout.regions:
        if region.absent_at is not None:
            assert region.replicated_at is not None
            lag = (region.replicated_at - region.absent_at).total_seconds()
            assert lags[region.region] == pytest.approx([lag]), region.region
    # A trace per reconcile step: its passes, and under them the calls to the outside.
    spans = recorded.spans()
    names = {s.name for s in spans}
    for wanted in (
        "registry.read_manifest",
        "registry.probe",
        "table.get",
        "table.save",
        "table.claim_endpoint",
        "azureml.create_deployment",
        "azureml.check_deployment",
        "azureml.shift_traffic",
        "eventgrid.publish",
    ):
        assert wanted in names, (wanted, sorted(names))
    for span in spans:
        if span.name.split(".")[0] in ("registry", "table", "azureml", "eventgrid"):
            root = recorded.root_of(span)
            assert root.name == RECONCILE_SPAN, (span.name, root.name)
            assert (root.attributes or {}).get(ROLLOUT_ATTRIBUTE) == rollout.id


def test_each_step_wakes_the_next_when_due_without_a_tick(stack: ServiceStack) -> None:
    """In the function app's process a step sets a wake-up for its rollout's next one (a
    deployment's poll, the probe's back-off): from the intake alone, with no timer tick and
    no completion event, every region goes live. Without follow-ups the rollout would sit
    after the intake's registry step until the next tick."""
    pushed = push(stack.env, stack.tls, "service/follow-ups", "v1", seed="follow-ups-v1")

    async def scenario() -> None:
        async with stack.services() as services:
            follow_ups = services.follow_up_when_due()
            await record_notices(services, [notice_of(pushed)])
            assert pushed.rollout_id in follow_ups.pending()
            rollout = await stored_until(
                services, pushed.rollout_id, is_live, what="every region live by follow-ups"
            )
            assert all(r.state is RegionState.LIVE for r in rollout.regions)
            # A settled rollout holds no wake-up: nothing runs until a new push or an action.
            await stored_until(
                services,
                pushed.rollout_id,
                lambda _: pushed.rollout_id not in follow_ups.pending(),
                what="no wake-up left for the settled rollout",
            )

    asyncio.run(scenario())


def test_the_tick_leaves_a_rollout_to_the_step_this_process_is_running(
    stack: ServiceStack,
) -> None:
    """A tick that stepped a rollout while this process's follow-up step of it runs would ask
    its replicas a second time and lose one of the two writes to the ETag: it leaves the
    rollout to that step, and takes it again once the step is over."""
    pushed = push(stack.env, stack.tls, "service/tick-leaves", "v1", seed="tick-leaves-v1")

    async def scenario() -> None:
        async with stack.services() as services:
            await record_notices(services, [notice_of(pushed)])  # recorded inline
            follow_ups = services.follow_up_when_due()
            running, release = asyncio.Event(), asyncio.Event()

            async def held_step() -> None:
                running.set()
                await release.wait()

            follow_ups.start(held_step, "a held step", rollout_id=pushed.rollout_id)
            await asyncio.wait_for(running.wait(), DEADLINE_S)
            before = await stored(services, pushed.rollout_id)

            def later() -> datetime:
                return utc_now() + timedelta(seconds=400)  # past every back-off: due

            report = await run_tick(services, time_budget_s=20, clock=later)
            assert (report.due, report.followed) == (0, 1), report
            assert await stored(services, pushed.rollout_id) == before  # not stepped

            release.set()

            async def stepping() -> bool:
                return follow_ups.takes_care_of(pushed.rollout_id)

            await poll_until(stepping, lambda busy: not busy, what="the held step over")
            report = await run_tick(services, time_budget_s=20, clock=later)
            assert (report.due, report.followed) == (1, 0), report

    asyncio.run(scenario())
