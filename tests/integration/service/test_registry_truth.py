"""The registry decides, never a payload: signatures, index children, platforms, forged
times, endpoints shared across repositories, and a supersession racing a deployment."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devenv.images import (
    build_cosign_signature,
    build_image,
    build_index,
    cosign_signature_tag,
    push_image,
)
from shared.adapters.foundry_deployer import ProvisioningState, Started
from shared.domain.model import DeployStep, RegionState, RolloutState, rollout_id
from shared.domain.push import DeleteNotice, NoticeSource, PushNotice
from shared.domain.rollout import UNTAGGED_REASON
from shared.service.health import Check, health
from shared.service.intake import record_notices
from shared.service.reconcile import reconcile, utc_now
from shared.service.runtime import Services
from tests.integration.service.arm_audit import records_for
from tests.integration.service.conftest import PRIMARY
from tests.integration.service.driving import (
    DEADLINE_S,
    POLL_S,
    is_live,
    reconcile_until,
    stored,
    tick_until,
)
from tests.integration.service.pushing import Pushed, delete_manifest, notice_of, push
from tests.integration.service.service_stack import ServiceStack

pytestmark = pytest.mark.integration


def _untagged(pushed: Pushed, digest: str) -> PushNotice:
    return replace(notice_of(pushed), digest=digest, tag=None)


def test_a_cosign_signature_pushed_after_its_image_is_ignored_and_the_image_goes_live(
    stack: ServiceStack,
) -> None:
    image = push(stack.env, stack.tls, "truth/signed", "v1", seed="signed-v1")
    signature = build_cosign_signature(image.digest, repository="truth/signed")
    tag = cosign_signature_tag(image.digest)
    signed = push(stack.env, stack.tls, "truth/signed", tag, seed="", artifact=signature)

    async def scenario() -> None:
        async with stack.services() as services:
            await record_notices(services, [notice_of(image)])
            await record_notices(services, [notice_of(signed)])
            found = await tick_until(
                services,
                [image.rollout_id, signed.rollout_id],
                lambda r: is_live(r[image.rollout_id]),
                what="the signed image live",
            )
            sig = found[signed.rollout_id]
            assert sig.state is RolloutState.IGNORED
            assert sig.ignored_reason is not None and "signature" in sig.ignored_reason
            assert found[image.rollout_id].superseded_by is None

    asyncio.run(scenario())
    assert records_for(stack.env, stack.tls, signed.digest) == []


def test_a_multi_platform_push_deploys_its_amd64_image_and_its_children_are_no_rollouts(
    stack: ServiceStack,
) -> None:
    repository = "truth/multi"
    previous = push(stack.env, stack.tls, repository, "stable", seed="multi-prev")
    amd64 = build_image(size_bytes=4096, seed="multi-amd64")
    arm64 = build_image(size_bytes=4096, seed="multi-arm64", architecture="arm64")
    index = build_index((arm64, amd64))

    async def scenario() -> None:
        async with stack.services() as services:
            await record_notices(services, [notice_of(previous)])
            await tick_until(
                services,
                [previous.rollout_id],
                lambda r: is_live(r[previous.rollout_id]),
                what="the previous version live",
            )
            # As `skopeo copy --all` does: each platform untagged first, then the tagged index.
            digest = push_image(
                stack.env.primary.registry_url,
                repository,
                "stable",
                index,
                ca_path=stack.tls.ca_pem,
            )
            pushed = replace(previous, digest=digest, pushed_at=datetime.now(UTC))
            for child in (arm64, amd64):
                await record_notices(services, [_untagged(pushed, child.digest)])
            children = [rollout_id(pushed.registry, repository, c.digest) for c in (arm64, amd64)]
            for child_id in children:
                await reconcile(services, child_id)
            # The previous version is untouched by the children.
            assert (await stored(services, previous.rollout_id)).state is RolloutState.LIVE
            await record_notices(services, [notice_of(pushed)])
            found = await tick_until(
                services,
                [pushed.rollout_id, *children],
                lambda r: is_live(r[pushed.rollout_id]),
                what="the index live",
            )
            assert found[pushed.rollout_id].platform_digest == amd64.digest
            for child_id in children:
                part = found[child_id]
                assert part.state is RolloutState.IGNORED
                assert part.ignored_reason is not None
                assert "platform manifest" in part.ignored_reason or (
                    part.ignored_reason == UNTAGGED_REASON
                )
            replaced = await stored(services, previous.rollout_id)
            assert replaced.state is RolloutState.SUPERSEDED
            assert {r.state for r in replaced.regions} == {RegionState.SUPERSEDED}

    asyncio.run(scenario())
    # What Azure ML was asked to run is the amd64 manifest, by digest; no child got its own.
    assert records_for(stack.env, stack.tls, amd64.digest) != []
    assert records_for(stack.env, stack.tls, arm64.digest) == []


def test_an_arm64_only_image_is_refused_with_the_reason(stack: ServiceStack) -> None:
    image = build_image(size_bytes=4096, seed="arm-only", architecture="arm64")
    pushed = push(stack.env, stack.tls, "truth/arm", "v1", seed="", artifact=image)

    async def scenario() -> None:
        async with stack.services() as services:
            await record_notices(services, [notice_of(pushed)])
            rollout = await reconcile_until(
                services,
                pushed.rollout_id,
                lambda r: r.deployable is not None,
                what="the manifest inspected",
            )
            assert rollout.state is RolloutState.IGNORED
            assert rollout.ignored_reason is not None
            assert "linux/arm64" in rollout.ignored_reason
            assert "linux/amd64" in rollout.ignored_reason

    asyncio.run(scenario())
    assert records_for(stack.env, stack.tls, pushed.digest) == []


def test_a_forged_future_time_for_an_older_digest_rolls_nothing_back(stack: ServiceStack) -> None:
    older = push(stack.env, stack.tls, "truth/forged", "v1", seed="forged-a")

    async def scenario() -> None:
        async with stack.services() as services:
            await record_notices(services, [notice_of(older)])
            await tick_until(
                services, [older.rollout_id], lambda r: is_live(r[older.rollout_id]), what="v1 live"
            )
            newer = push(stack.env, stack.tls, "truth/forged", "v1", seed="forged-b")
            await record_notices(services, [notice_of(newer)])
            await tick_until(
                services, [newer.rollout_id], lambda r: is_live(r[newer.rollout_id]), what="v2 live"
            )
            # A delivery for the older digest stamped 2099, and a push notice for a digest no
            # registry holds, stamped now: neither moves anything.
            forged = replace(notice_of(older), pushed_at=datetime(2099, 1, 1, tzinfo=UTC))
            ghost = replace(notice_of(newer), digest="sha256:" + "e" * 64)
            await record_notices(services, [forged, ghost])
            found = await tick_until(
                services,
                [older.rollout_id, newer.rollout_id],
                lambda r: not r[older.rollout_id].pending_tags,
                what="the forged claim checked against the registry",
            )
            assert is_live(found[newer.rollout_id])
            assert found[newer.rollout_id].superseded_by is None
            assert found[older.rollout_id].generation == 1
            assert found[older.rollout_id].state is RolloutState.SUPERSEDED
            ghost_rollout = await stored(
                services, rollout_id(newer.registry, newer.repository, ghost.digest)
            )
            assert ghost_rollout.confirmed_at is None
            assert all(r.deployment is None for r in ghost_rollout.regions)
            return None

    asyncio.run(scenario())
    creates = [
        r
        for r in records_for(stack.env, stack.tls, older.digest)
        if r["action"] == "deployment_create"
    ]
    assert len(creates) == 3, creates  # its own rollout, once per region, never again


def test_rollouts_of_two_repositories_on_one_endpoint_are_ordered_together(
    stack: ServiceStack,
) -> None:
    rules = json.dumps(
        [{"repository": "truth/shared-*", "tag": "*", "endpoint": "shared-{instance}"}]
    )
    first = push(stack.env, stack.tls, "truth/shared-a", "v1", seed="shared-a")

    async def scenario() -> None:
        async with stack.services(GEOROLLOUT_TARGETS=rules) as services:
            await record_notices(services, [notice_of(first)])
            await reconcile_until(
                services,
                first.rollout_id,
                lambda r: r.confirmed_at is not None,
                what="the first push confirmed",
            )
            second = push(stack.env, stack.tls, "truth/shared-b", "v1", seed="shared-b")
            await record_notices(services, [notice_of(second)])
            found = await tick_until(
                services,
                [first.rollout_id, second.rollout_id],
                lambda r: is_live(r[second.rollout_id]),
                what="the second repository's push live",
            )
            assert found[first.rollout_id].superseded_by == second.rollout_id
            assert found[first.rollout_id].target == found[second.rollout_id].target

    asyncio.run(scenario())


def test_a_supersession_between_the_deployment_put_and_its_save_leaves_no_orphan(
    stack: ServiceStack,
) -> None:
    older = push(stack.env, stack.tls, "truth/orphan", "v1", seed="orphan-a")

    async def scenario() -> None:
        async with stack.services() as services:
            state: dict[str, Pushed] = {}
            real_create = services.deployer.begin_create_deployment

            async def newer_push() -> None:
                state["newer"] = push(stack.env, stack.tls, "truth/orphan", "v1", seed="orphan-b")
                await record_notices(services, [notice_of(state["newer"])])

            pending: list[Callable[[], Awaitable[None]]] = [newer_push]

            async def create_then_newer_push(*args: Any, **kwargs: Any) -> Started:
                # The real create reaches Azure; before its step can save, a newer push lands.
                operation = await real_create(*args, **kwargs)
                while pending:
                    await pending.pop()()
                return operation

            services.deployer.begin_create_deployment = create_then_newer_push  # type: ignore[method-assign]
            await record_notices(services, [notice_of(older)])
            await reconcile_until(
                services,
                older.rollout_id,
                lambda r: r.region(PRIMARY).deploy_step is DeployStep.DISCARDED,
                what="the older deployment discarded",
            )
            newer = state["newer"]
            found = await tick_until(
                services,
                [newer.rollout_id],
                lambda r: is_live(r[newer.rollout_id]),
                what="the newer push live",
            )
            live = found[newer.rollout_id]
            deployment = live.region(PRIMARY).deployment
            assert live.target is not None and deployment is not None
            status = await services.deployer.endpoint_status(PRIMARY, live.target.endpoint)
            assert list(status.deployments) == [deployment.name]

    asyncio.run(scenario())
    actions = [r["action"] for r in records_for(stack.env, stack.tls, older.digest)]
    assert "deployment_create" in actions and "deployment_deleted" in actions, actions


def test_a_serving_digest_deleted_from_the_registry_shows_in_the_rollout_and_in_health(
    stack: ServiceStack,
) -> None:
    pushed = push(stack.env, stack.tls, "truth/deleted", "v1", seed="deleted-v1")

    async def scenario() -> None:
        async with stack.services() as services:
            await record_notices(services, [notice_of(pushed)])
            await tick_until(
                services, [pushed.rollout_id], lambda r: is_live(r[pushed.rollout_id]), what="live"
            )
            before = await health(services)
            assert before.images is not None and before.images.ok
            delete_manifest(stack.env, stack.tls, PRIMARY, pushed.repository, pushed.digest)
            # What ACR's ImageDeleted (or Distribution's delete) turns into.
            deleted = DeleteNotice(
                pushed.registry, pushed.repository, pushed.digest, NoticeSource.EVENTGRID
            )
            result = await record_notices(services, [deleted])
            assert result.recorded == (pushed.rollout_id,)
            rollout = await stored(services, pushed.rollout_id)
            assert rollout.deleted_at is not None
            assert rollout.state is RolloutState.LIVE  # still serving what it pulled
            report = await health(services)
            assert report.status == "degraded"
            assert report.public_document()["checks"]["images"] == {"status": "error"}
            detail = report.detail_document()["checks"]["images"]
            assert detail["status"] == "error" and "deleted from the registry" in detail["message"]

    asyncio.run(scenario())


def test_a_deployment_georollout_did_not_create_is_never_deleted(stack: ServiceStack) -> None:
    pushed = push(stack.env, stack.tls, "truth/foreign", "v1", seed="foreign-v1")
    foreign = push(stack.env, stack.tls, "truth/foreign-manual", "x", seed="foreign-manual")

    async def scenario() -> None:
        async with stack.services() as services:
            endpoint = stack.endpoint_for(services, pushed.repository)
            deployer = services.deployer
            # Someone created the endpoint and a deployment of their own by hand.
            await deployer.begin_create_endpoint(PRIMARY, endpoint, auth_mode="key")
            await _until_endpoint_ready(services, endpoint)
            image = f"{foreign.registry}/{foreign.repository}@{foreign.digest}"
            await deployer.begin_create_deployment(
                PRIMARY,
                endpoint,
                "manual",
                image=image,
                instance_type="Standard_DS3_v2",
                instance_count=1,
            )
            await record_notices(services, [notice_of(pushed)])
            found = await tick_until(
                services, [pushed.rollout_id], lambda r: is_live(r[pushed.rollout_id]), what="live"
            )
            primary = found[pushed.rollout_id].region(PRIMARY)
            assert primary.previous_deployment is None
            assert primary.deploy_step is DeployStep.DONE
            status = await deployer.endpoint_status(PRIMARY, endpoint)
            assert "manual" in status.deployments
            assert status.traffic.get(primary.deployment.name if primary.deployment else "") == 100

    asyncio.run(scenario())


async def _until_endpoint_ready(services: Services, endpoint: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        status = await services.deployer.endpoint_status(PRIMARY, endpoint, with_deployments=False)
        if status.state is ProvisioningState.SUCCEEDED:
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"endpoint {endpoint} never provisioned")


def test_a_lease_taken_by_a_step_that_lost_its_save_does_not_block_the_endpoint(
    stack: ServiceStack,
) -> None:
    pushed = push(stack.env, stack.tls, "truth/lost-lease", "v1", seed="lost-lease")

    async def scenario() -> None:
        async with stack.services() as services:
            endpoint = stack.endpoint_for(services, pushed.repository)
            # A pass of another rollout took the lease two minutes ago, then lost its save
            # (e.g. to a supersession): no rollout records holding it.
            taken = utc_now() - timedelta(minutes=2)
            ttl = timedelta(seconds=services.policy.lease_ttl_s)
            abandoned = rollout_id(pushed.registry, pushed.repository, "sha256:" + "f" * 64)
            assert await services.store.acquire_endpoint_lease(
                PRIMARY, endpoint, abandoned, taken, ttl
            )
            await record_notices(services, [notice_of(pushed)])
            await tick_until(
                services, [pushed.rollout_id], lambda r: is_live(r[pushed.rollout_id]), what="live"
            )

    asyncio.run(scenario())


def test_a_rollout_whose_steps_keep_raising_never_holds_up_the_others(
    stack: ServiceStack,
) -> None:
    poison = push(stack.env, stack.tls, "truth/poison", "v1", seed="poison")
    healthy = push(stack.env, stack.tls, "truth/healthy", "v1", seed="healthy")

    async def scenario() -> None:
        async with stack.services() as services:
            real_probe = services.probe.probe

            async def probe_that_breaks_on_poison(region: str, repository: str, digest: str) -> Any:
                # A fault no action handles (a bug, a malformed answer): the step raises.
                if repository == poison.repository:
                    raise RuntimeError("the replica's answer broke the parser")
                return await real_probe(region, repository, digest)

            services.probe.probe = probe_that_breaks_on_poison  # type: ignore[method-assign]
            # One delivery carries both: the poison one's failing step loses the other nothing.
            result = await record_notices(services, [notice_of(poison), notice_of(healthy)])
            assert result.recorded == (poison.rollout_id, healthy.rollout_id)
            await tick_until(
                services,
                [healthy.rollout_id],
                lambda r: is_live(r[healthy.rollout_id]),
                what="the healthy push live despite the poison one",
            )
            broken = await stored(services, poison.rollout_id)
            assert broken.step_failures >= 1
            assert broken.step_error is not None and "broke the parser" in broken.step_error
            assert broken.retry_after is not None and broken.retry_after > utc_now()
            assert poison.rollout_id not in await services.rollouts.due(utc_now(), limit=100)

    asyncio.run(scenario())


def test_a_failed_endpoint_is_waited_on_shown_in_health_and_recovered(
    stack: ServiceStack,
) -> None:
    pushed = push(stack.env, stack.tls, "truth/failed-endpoint", "v1", seed="failed-ep")

    async def scenario() -> None:
        async with stack.services() as services:
            endpoint = stack.endpoint_for(services, pushed.repository)
            await services.deployer.begin_create_endpoint(PRIMARY, endpoint, auth_mode="key")
            await _until_endpoint_ready(services, endpoint)
            workspace = services.config.region(PRIMARY).workspace.name
            _fail_endpoint(stack, workspace, endpoint)
            await record_notices(services, [notice_of(pushed)])
            # The step that would create the deployment finds the endpoint failed: it
            # re-applies the endpoint's settings and waits; the region does not fail.
            deadline = time.monotonic() + DEADLINE_S
            while not await services.rollouts.failed_endpoints():
                assert time.monotonic() < deadline, "the failed endpoint was never noticed"
                await reconcile(services, pushed.rollout_id)
                await asyncio.sleep(POLL_S)
            waiting = await stored(services, pushed.rollout_id)
            assert waiting.region(PRIMARY).state is RegionState.DEPLOYING
            assert waiting.region(PRIMARY).waiting_for is not None
            report = await health(services)
            assert report.public_document()["checks"]["endpoints"] == {"status": "error"}
            detail = report.detail_document()["checks"]["endpoints"]
            assert f"{PRIMARY}/{endpoint}" in detail["message"]
            # georollout re-applied the endpoint's settings: it recovers and the push goes live.
            await tick_until(
                services, [pushed.rollout_id], lambda r: is_live(r[pushed.rollout_id]), what="live"
            )
            assert (await health(services)).endpoints == Check(ok=True)

    asyncio.run(scenario())


def _fail_endpoint(stack: ServiceStack, workspace: str, endpoint: str) -> None:
    request = urllib.request.Request(
        f"{stack.env.arm_url}/emulator/endpoints/{workspace}/{endpoint}/fail",
        method="POST",
        headers={"Authorization": "Bearer local-test-token"},
    )
    with urllib.request.urlopen(request, context=stack.tls.client_context(), timeout=10) as answer:
        assert answer.status == 200
