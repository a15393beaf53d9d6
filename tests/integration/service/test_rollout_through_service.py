"""One push to live through the service layer alone: intake, then the timer's ticks, against
the real registries, ARM emulator, Event Grid emulator and Azurite."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from devenv.process import wait_until
from shared.domain.events import EventType, event_id
from shared.domain.model import DeployStep, RegionState
from shared.domain.names import deployment_name
from shared.service.intake import record_notices
from tests.integration.service.arm_audit import deployment_writes
from tests.integration.service.conftest import PRIMARY, REGIONS, SECONDARIES
from tests.integration.service.driving import (
    DEADLINE_S,
    is_live,
    stored,
    stored_until,
    tick_until,
)
from tests.integration.service.pushing import notice_of, push
from tests.integration.service.service_stack import ServiceStack

pytestmark = pytest.mark.integration


def test_a_push_goes_live_primary_first_and_each_region_is_created_once(
    stack: ServiceStack,
) -> None:
    pushed = push(stack.env, stack.tls, "service/happy", "v1", seed="happy-v1")

    async def scenario() -> None:
        async with stack.services() as services:
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
