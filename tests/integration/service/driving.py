"""Driving the service layer the way its triggers do, polling the stored state with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from shared.domain.model import Rollout, RolloutState
from shared.service.reconcile import Clock, reconcile, utc_now
from shared.service.runtime import Services
from shared.service.tick import run_tick

T = TypeVar("T")

DEADLINE_S = 45.0
POLL_S = 0.2


async def stored(services: Services, rollout_id: str) -> Rollout:
    loaded = await services.rollouts.get(rollout_id)
    assert loaded is not None, f"rollout {rollout_id} is not stored"
    return loaded.rollout


def is_live(rollout: Rollout) -> bool:
    return rollout.state is RolloutState.LIVE


def describe(rollout: Rollout) -> str:
    regions = ", ".join(
        f"{r.region}={r.state.value}/{r.deploy_step.value if r.deploy_step else '-'}"
        f" ({r.last_error})"
        for r in rollout.regions
    )
    return f"{rollout.state.value}: {regions}"


async def reconcile_until(
    services: Services,
    rollout_id: str,
    done: Callable[[Rollout], bool],
    *,
    what: str,
    clock: Clock = utc_now,
    timeout: float = DEADLINE_S,
) -> Rollout:
    """Reconcile (as the completion function does) until the stored rollout satisfies `done`."""

    async def step() -> Rollout:
        await reconcile(services, rollout_id, clock=clock)
        return await stored(services, rollout_id)

    return await poll_until(step, done, what=what, timeout=timeout, show=describe)


async def tick_until(
    services: Services,
    rollout_ids: Sequence[str],
    done: Callable[[dict[str, Rollout]], bool],
    *,
    what: str,
    clock: Clock = utc_now,
    timeout: float = DEADLINE_S,
) -> dict[str, Rollout]:
    """Run timer ticks until the stored rollouts (by id) satisfy `done`."""
    deadline = time.monotonic() + timeout
    while True:
        await run_tick(services, time_budget_s=20, clock=clock)
        current = {rid: await stored(services, rid) for rid in rollout_ids}
        if done(current):
            return current
        if time.monotonic() >= deadline:
            states = "; ".join(f"{rid}: {describe(r)}" for rid, r in current.items())
            raise AssertionError(f"timed out waiting for {what}; last: {states}")
        await asyncio.sleep(POLL_S)


async def stored_until(
    services: Services,
    rollout_id: str,
    done: Callable[[Rollout], bool],
    *,
    what: str,
    timeout: float = DEADLINE_S,
) -> Rollout:
    """Read (never reconcile) until the rollout is stored and satisfies `done`: for steps
    that something else (the process's follow-ups, the host) carries out."""

    async def read() -> Rollout | None:
        loaded = await services.rollouts.get(rollout_id)
        return loaded.rollout if loaded else None

    found = await poll_until(
        read, lambda r: r is not None and done(r), what=what, timeout=timeout, show=_shown
    )
    assert found is not None
    return found


def _shown(rollout: Rollout | None) -> str:
    return describe(rollout) if rollout is not None else "not stored"


async def poll_until(
    read: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    what: str,
    timeout: float = DEADLINE_S,
    show: Callable[[T], str] = repr,
) -> T:
    """Read until `done(value)`; at the deadline fail with the last value (`show` says it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await read()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {show(value)}")
        await asyncio.sleep(POLL_S)
