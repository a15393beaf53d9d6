"""Intake through the service layer: duplicated, concurrent and reordered notices, supersession
as the registry orders it, and pushes that are not images."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from devenv.images import build_helm_chart, build_image
from shared.adapters.foundry_deployer import ProvisioningState
from shared.domain.model import DeployStep, RegionState, RolloutState
from shared.domain.rollout import new_rollout
from shared.service.intake import record_notices
from shared.service.reconcile import reconcile, utc_now
from shared.service.tick import run_tick
from tests.integration.service.arm_audit import records_for
from tests.integration.service.conftest import PRIMARY
from tests.integration.service.driving import is_live, reconcile_until, stored, tick_until
from tests.integration.service.pushing import notice_of, push
from tests.integration.service.service_stack import ServiceStack

pytestmark = pytest.mark.integration


def test_the_same_notice_recorded_three_times_at_once_makes_one_rollout_tagged_once(
    stack: ServiceStack,
) -> None:
    pushed = push(stack.env, stack.tls, "service/dup", "v1", seed="dup-v1")

    async def scenario() -> None:
        async with stack.services() as services:
            notice = notice_of(pushed)
            results = await asyncio.gather(*(record_notices(services, [notice]) for _ in range(3)))
            assert [r.recorded for r in results] == [(pushed.rollout_id,)] * 3
            page, _ = await services.rollouts.list(repository=pushed.repository)
            assert [r["id"] for r in page] == [pushed.rollout_id]
            rollout = await stored(services, pushed.rollout_id)
            assert rollout.tags == ("v1",)
            assert rollout.generation == 1

    asyncio.run(scenario())


def test_two_tags_of_one_digest_recorded_at_once_make_one_rollout_with_both_tags(
    stack: ServiceStack,
) -> None:
    image = build_image(size_bytes=4096, seed="two-tags")
    first = push(stack.env, stack.tls, "service/two-tags", "stable", seed="", artifact=image)
    second = push(stack.env, stack.tls, "service/two-tags", "2.0", seed="", artifact=image)
    assert first.digest == second.digest

    async def scenario() -> None:
        async with stack.services() as services:
            await asyncio.gather(
                record_notices(services, [notice_of(second)]),
                record_notices(services, [notice_of(first)]),
                record_notices(services, [notice_of(second)]),
            )
            page, _ = await services.rollouts.list(repository=first.repository)
            assert [r["id"] for r in page] == [first.rollout_id]
            rollout = await stored(services, first.rollout_id)
            assert sorted(rollout.tags) == ["2.0", "stable"]
            assert rollout.generation == 1

    asyncio.run(scenario())


def test_an_older_push_recorded_after_a_newer_one_is_superseded_and_never_deployed(
    stack: ServiceStack,
) -> None:
    older = push(stack.env, stack.tls, "service/supersede", "v1", seed="supersede-a")
    newer = push(stack.env, stack.tls, "service/supersede", "v1", seed="supersede-b")
    assert newer.pushed_at > older.pushed_at

    async def scenario() -> None:
        async with stack.services() as services:
            # Arrival order means nothing: the newer push's notice comes first.
            await record_notices(services, [notice_of(newer)])
            await record_notices(services, [notice_of(older)])
            found = await tick_until(
                services,
                [older.rollout_id, newer.rollout_id],
                lambda r: is_live(r[newer.rollout_id]),
                what="the newer push live",
            )
            superseded = found[older.rollout_id]
            assert superseded.state is RolloutState.SUPERSEDED
            assert superseded.superseded_by == newer.rollout_id
            assert {r.state for r in superseded.regions} == {RegionState.SUPERSEDED}
            assert all(r.deployment is None for r in superseded.regions)
            # Nothing left to do for it: the timer never picks it up again.
            later = await services.rollouts.due(utc_now() + timedelta(hours=3), limit=100)
            assert older.rollout_id not in later

    asyncio.run(scenario())

    assert records_for(stack.env, stack.tls, older.digest) == []
    assert records_for(stack.env, stack.tls, newer.digest) != []


def test_a_helm_chart_push_is_ignored_with_a_reason_and_never_deployed(
    stack: ServiceStack,
) -> None:
    chart = build_helm_chart(name="svc-chart", version="0.1.0", seed="helm-chart")
    pushed = push(stack.env, stack.tls, "charts/svc-chart", "0.1.0", seed="", artifact=chart)

    async def scenario() -> None:
        async with stack.services() as services:
            await record_notices(services, [notice_of(pushed)])
            rollout = await stored(services, pushed.rollout_id)
            assert rollout.state is RolloutState.IGNORED
            assert rollout.deployable is False
            assert rollout.ignored_reason == "a Helm chart, not an image"
            # Neither the timer nor the completion function takes it any further.
            report = await run_tick(services, time_budget_s=10)
            assert report.due == 0
            await reconcile(services, pushed.rollout_id)
            again = await stored(services, pushed.rollout_id)
            assert again.state is RolloutState.IGNORED
            assert all(r.deployment is None for r in again.regions)
            endpoint = stack.endpoint_for(services, pushed.repository)
            status = await services.deployer.endpoint_status(PRIMARY, endpoint)
            assert status.state is ProvisioningState.MISSING

    asyncio.run(scenario())

    assert records_for(stack.env, stack.tls, pushed.digest) == []


def test_a_newer_push_during_the_primary_deployment_discards_it_and_takes_the_endpoint(
    stack: ServiceStack,
) -> None:
    older = push(stack.env, stack.tls, "service/mid-deploy", "v1", seed="mid-deploy-a")

    async def scenario() -> None:
        async with stack.services() as services:
            await record_notices(services, [notice_of(older)])
            # The older rollout holds the primary's endpoint lease and has a deployment creating.
            await reconcile_until(
                services,
                older.rollout_id,
                lambda r: r.region(PRIMARY).deploy_step is DeployStep.CREATING,
                what="the older push's primary deployment to start",
            )
            # Only now does the tag move on in the registry.
            newer = push(stack.env, stack.tls, "service/mid-deploy", "v1", seed="mid-deploy-b")
            await record_notices(services, [notice_of(newer)])
            found = await tick_until(
                services,
                [older.rollout_id, newer.rollout_id],
                lambda r: (
                    is_live(r[newer.rollout_id])
                    and r[older.rollout_id].region(PRIMARY).deploy_step is DeployStep.DISCARDED
                ),
                what="the newer push live and the older deployment discarded",
            )
            superseded = found[older.rollout_id]
            assert superseded.state is RolloutState.SUPERSEDED
            assert superseded.region(PRIMARY).state is RegionState.SUPERSEDED
            # The lease went with the discard: nobody holds the endpoint any more.
            endpoint = stack.endpoint_for(services, older.repository)
            for region in found[newer.rollout_id].regions:
                assert await services.store.get_endpoint_lease(region.region, endpoint) is None
            status = await services.deployer.endpoint_status(PRIMARY, endpoint)
            discarded = superseded.region(PRIMARY).deployment
            assert discarded is not None
            assert discarded.name not in status.deployments

    asyncio.run(scenario())

    actions = [r["action"] for r in records_for(stack.env, stack.tls, older.digest)]
    assert "deployment_create" in actions and "deployment_deleted" in actions, actions


def test_a_late_replication_hint_for_an_older_push_does_not_make_it_newer(
    stack: ServiceStack,
) -> None:
    older = push(stack.env, stack.tls, "service/late-hint", "v1", seed="late-hint-a")
    newer = push(stack.env, stack.tls, "service/late-hint", "v1", seed="late-hint-b")

    async def scenario() -> None:
        async with stack.services() as services:
            await record_notices(services, [notice_of(older)])
            await record_notices(services, [notice_of(newer)])
            # The older image reaches westus after the newer push: the regional webhook
            # carries the replica's (later) time. It is a hint, not a push.
            hint = replace(
                notice_of(older),
                region_hint="westus",
                pushed_at=newer.pushed_at + timedelta(minutes=5),
            )
            await record_notices(services, [hint])
            found = await tick_until(
                services,
                [older.rollout_id, newer.rollout_id],
                lambda r: is_live(r[newer.rollout_id]),
                what="the newer push live",
            )
            assert found[newer.rollout_id].superseded_by is None
            assert found[older.rollout_id].superseded_by == newer.rollout_id
            assert found[older.rollout_id].pushed_at == older.pushed_at

    asyncio.run(scenario())

    assert records_for(stack.env, stack.tls, older.digest) == []


def test_a_rollout_whose_supersession_was_lost_does_not_deploy_over_a_newer_one(
    stack: ServiceStack,
) -> None:
    older = push(stack.env, stack.tls, "service/lost-supersede", "v1", seed="lost-a")
    newer = push(stack.env, stack.tls, "service/lost-supersede", "v1", seed="lost-b")

    async def scenario() -> None:
        async with stack.services() as services:
            await record_notices(services, [notice_of(newer)])
            # As if the process died after recording the older push and before
            # superseding it: insert it directly, untouched by intake.
            target = (await stored(services, newer.rollout_id)).target
            fresh = new_rollout(notice_of(older), services.config.region_names, target, utc_now())
            await services.rollouts.add(fresh)
            found = await tick_until(
                services,
                [older.rollout_id, newer.rollout_id],
                lambda r: (
                    is_live(r[newer.rollout_id]) and r[older.rollout_id].superseded_by is not None
                ),
                what="the newer push live and the older one superseded",
            )
            assert found[older.rollout_id].superseded_by == newer.rollout_id

    asyncio.run(scenario())

    assert records_for(stack.env, stack.tls, older.digest) == []
