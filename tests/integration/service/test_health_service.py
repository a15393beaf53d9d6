"""Health through the real adapters against the stand-ins: what each answer shows, and that
calling it often makes one round of registry, ARM and table checks per cache window."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shared.service.health import HealthCache, HealthReport, health
from shared.service.runtime import Services
from tests.integration.service.conftest import REGIONS
from tests.integration.service.service_stack import ServiceStack

pytestmark = pytest.mark.integration

DOWN_REGION = "westus"


class Counted:
    """Counts calls through one method of a real adapter; every call still goes to it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, adapter: object, method: str) -> None:
        self.calls = 0
        real: Callable[..., Awaitable[Any]] = getattr(adapter, method)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await real(*args, **kwargs)

        monkeypatch.setattr(adapter, method, counted)


class ManualClock:
    """A monotonic clock the test moves: the cache window is 30 s, the test takes less."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def checked(stack: ServiceStack, **overrides: str) -> HealthReport:
    async with stack.services(**overrides) as services:
        return await health(services)


def test_every_dependency_answers_and_the_public_answer_names_none_of_them(
    stack: ServiceStack,
) -> None:
    report = asyncio.run(checked(stack))
    public, detail = report.public_document(), report.detail_document()
    assert public["status"] == "ok", detail
    assert public["checks"]["table"] == {"status": "ok"}
    assert sorted(public["checks"]["regions"]) == sorted(REGIONS)
    public_text = json.dumps(public)
    assert "127.0.0.1" not in public_text
    for region in stack.env.regions:
        assert str(region.registry_port) not in public_text
        assert region.workspace_name not in public_text
        checks = detail["checks"]["regions"][region.name]
        assert checks["registry"] == {"status": "ok", "endpoint": region.registry_url}
        assert checks["workspace"] == {"status": "ok", "id": region.workspace_id}
    # Local settings: an unset webhook token is accepted, with the reason in the detail.
    assert detail["checks"]["webhook_token"]["status"] == "ok"


def test_an_unreachable_registry_is_a_bare_error_publicly_and_explained_in_the_detail(
    stack: ServiceStack,
) -> None:
    stack.registries.set_region(DOWN_REGION, unavailable=True)
    try:
        report = asyncio.run(checked(stack))
    finally:
        stack.registries.set_region(DOWN_REGION, unavailable=False)
    public, detail = report.public_document(), report.detail_document()
    assert public["status"] == "degraded"
    assert public["checks"]["regions"][DOWN_REGION]["registry"] == {"status": "error"}
    down = detail["checks"]["regions"][DOWN_REGION]["registry"]
    assert down["status"] == "error" and down["message"], down
    assert down["endpoint"] == stack.env.region(DOWN_REGION).registry_url
    others = [r for r in REGIONS if r != DOWN_REGION]
    assert all(detail["checks"]["regions"][r]["registry"]["status"] == "ok" for r in others)


def test_against_azure_an_unset_webhook_token_makes_health_degraded(stack: ServiceStack) -> None:
    # An ACR login server says "Azure"; the replicas stay the local ones, so only the
    # webhook check can fail.
    azure = {"GEOROLLOUT_REGISTRY_LOGIN_SERVER": "contoso.azurecr.io"}
    unprotected = asyncio.run(checked(stack, **azure))
    assert unprotected.public_document()["status"] == "degraded"
    assert "webhook" not in json.dumps(unprotected.public_document())
    check = unprotected.detail_document()["checks"]["webhook_token"]
    assert check["status"] == "error" and "GEOROLLOUT_ACR_WEBHOOK_TOKEN" in check["message"]

    protected = asyncio.run(checked(stack, **azure, GEOROLLOUT_ACR_WEBHOOK_TOKEN="t0ken-value"))
    assert protected.public_document()["status"] == "ok", protected.detail_document()
    assert "t0ken-value" not in json.dumps(protected.detail_document())


def test_many_calls_within_the_window_make_one_round_of_checks(
    stack: ServiceStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    cache = HealthCache(30.0, clock=clock)

    async def scenario() -> None:
        async with stack.services() as services:
            probes = Counted(monkeypatch, services.probe, "probe")
            workspaces = Counted(monkeypatch, services.deployer, "check_workspace")
            tables = Counted(monkeypatch, services.store, "check_health")

            def rounds() -> tuple[int, int, int]:
                return probes.calls, workspaces.calls, tables.calls

            def run(app: Services = services) -> Awaitable[HealthReport]:
                return health(app)

            one_round = (len(REGIONS), len(REGIONS), 1)
            # Concurrent callers share the round in flight...
            first = await asyncio.gather(*(cache.get(run) for _ in range(20)))
            assert all(report is first[0] for report in first)
            assert rounds() == one_round
            # ...and later callers within the window get its result.
            clock.advance(29.0)
            for _ in range(10):
                assert await cache.get(run) is first[0]
            assert rounds() == one_round

            # Past the window: one new round, again shared.
            clock.advance(2.0)
            second = await asyncio.gather(*(cache.get(run) for _ in range(20)))
            assert second[0] is not first[0]
            assert all(report is second[0] for report in second)
            assert rounds() == tuple(2 * n for n in one_round)

    asyncio.run(scenario())
