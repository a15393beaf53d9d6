"""Intake: accept push notices with one durable write, then record them as rollouts.

A notice is a hint from any channel (Event Grid, ACR webhook, registry
notification, build system). The answer to a delivery waits for one table write
(`accept_notices`: the inbox page holding its notices, shared with the answers
under way), nothing else; recording them (the rollout, its indexes, the registry
step) happens right after the answers in the function app's process, and the
timer's tick records whatever a stopped process left in the inbox. Recording is
idempotent: the same digest is the same rollout, a tag is claimed once, a
redelivery changes nothing else. Nothing in a payload decides order or deploys
anything: the reconcile step asks the registry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import timedelta

from shared.adapters.rollout_repository import NoticePage, RolloutAlreadyExistsError
from shared.domain import rollout as machine
from shared.domain.model import Rollout, rollout_id
from shared.domain.push import DeleteNotice, PushNotice
from shared.domain.targets import match_target
from shared.errors import InvalidInputError
from shared.intake.notices import Ignored, ParsedDelivery
from shared.service.reconcile import Clock, postpone_after_crash, reconcile, utc_now
from shared.service.runtime import Services

log = logging.getLogger("georollout.intake")


# A notice younger than this may still be being recorded by the process that accepted it;
# the tick leaves it alone until then (recording twice is harmless, only wasted work).
INBOX_GRACE = timedelta(seconds=15)
# Notices the tick records at most per run: the rest wait for the next run.
INBOX_BATCH = 500
# Rollouts one storing step records at once: as many as the storing lane recorded at once
# (by default) when every answer stored its own notice.
RECORDING_CONCURRENCY = 4


@dataclass(frozen=True)
class IntakeResult:
    recorded: tuple[str, ...]  # rollout ids accepted (or created, or updated)
    ignored: tuple[str, ...]  # reasons, for the log and the response


async def accept_notices(
    services: Services, notices: Sequence[ParsedDelivery], *, clock: Clock = utc_now
) -> IntakeResult:
    """The answer path: each push is kept in an inbox page (one write, shared with the
    answers under way), then recorded after the answers (in the function app's process, by
    the first answer each page holds; inline where no follow-ups run, as in tests). Deletes
    are recorded at once: rare, and they only ever mark."""
    pushes = [n for n in notices if isinstance(n, PushNotice)]
    now = clock()
    answering = services.follow_ups.answering() if services.follow_ups else nullcontext()
    with answering:
        accepted = await asyncio.gather(*(services.rollouts.accept(n, now) for n in pushes))
    recorded: list[str] = []
    ignored: list[str] = []
    for notice in notices:
        if isinstance(notice, Ignored):
            ignored.append(notice.reason)
        elif isinstance(notice, DeleteNotice):
            deleted = await _record_delete(services, notice, clock)
            if deleted is not None:
                recorded.append(deleted)
        else:
            identity = rollout_id(notice.registry, notice.repository, notice.digest)
            recorded.append(identity)
            log.info(
                "accepted push %s@%s tag=%s hint=%s via %s: rollout %s",
                notice.repository,
                notice.digest,
                notice.tag or "-",
                notice.region_hint or "-",
                notice.source.value,
                identity,
            )
    # Each inbox page is recorded by one of the answers it holds (the first).
    pages = [page for page in accepted if page is not None]
    if pages:
        if services.follow_ups is not None:
            services.follow_ups.start(
                lambda: record_pages(services, pages, clock=clock),
                "accepted notices",
                storing=True,
            )
        else:
            await record_pages(services, pages, clock=clock)
    return IntakeResult(tuple(dict.fromkeys(recorded)), tuple(ignored))


async def record_pages(
    services: Services, pages: Sequence[NoticePage], *, clock: Clock = utc_now
) -> None:
    """Record the notices `pages` hold (each once, however many pages hold it), then take
    every page whose notices are all recorded out of the inbox (the registry's look follows,
    paced by its request budget: a stored rollout is due, so a process that stops before that
    look leaves it to the tick). A notice that fails keeps its pages in the inbox for the
    tick, which records them again (recording is idempotent); the others go on."""
    notices = dict(pair for page in pages for pair in page.notices)
    # One rollout's notices in the order they came; distinct rollouts side by side, a few
    # at a time (a page holds up to 100 pushes: in turn, the last one's first look would
    # wait for all the others' writes).
    by_rollout: dict[str, list[tuple[str, PushNotice]]] = {}
    for key, notice in notices.items():
        identity = rollout_id(notice.registry, notice.repository, notice.digest)
        by_rollout.setdefault(identity, []).append((key, notice))
    gate = asyncio.Semaphore(RECORDING_CONCURRENCY)
    failed: set[str] = set()

    async def record_in_turn(group: list[tuple[str, PushNotice]]) -> None:
        async with gate:
            for key, notice in group:
                if not await _record_notice(services, notice, clock):
                    failed.add(key)

    await asyncio.gather(*(record_in_turn(group) for group in by_rollout.values()))
    for page in pages:
        if not any(key in failed for key, _ in page.notices):
            await services.rollouts.notices_recorded(page)


async def _record_notice(services: Services, notice: PushNotice, clock: Clock) -> bool:
    """Record one notice and start its rollout's first look; False when recording failed
    (logged: the notice stays in the inbox for the tick)."""
    try:
        rollout = await _record(services, notice, clock)
    except Exception:
        log.exception(
            "recording the push of %s@%s failed; the timer tries again",
            notice.repository,
            notice.digest,
        )
        return False
    if services.follow_ups is not None:
        # A step of its own: one waiting for the registry's request slots must not
        # hold up the storing of the pushes answered after this one.
        services.follow_ups.start(
            _first_look_step(services, rollout.id, notice, clock),
            f"first look at {rollout.id}",
            rollout_id=rollout.id,
        )
    else:
        await _first_look(services, rollout.id, notice, clock)
    return True


async def record_inbox(services: Services, *, clock: Clock = utc_now) -> int:
    """Record the notices a process accepted and did not record (it stopped, or its step
    failed): the tick's first task. Returns how many it found."""
    pages = await services.rollouts.waiting_notices(clock() - INBOX_GRACE, limit=INBOX_BATCH)
    waiting = len({key for page in pages for key, _ in page.notices})
    if waiting:
        log.warning("%d accepted notice(s) were not recorded yet: recording them", waiting)
        await record_pages(services, pages, clock=clock)
    return waiting


def check_regions(
    services: Services, notices: Sequence[ParsedDelivery], *, strict: bool = True
) -> list[ParsedDelivery]:
    """Region hints must name configured regions.

    `strict` (a webhook's `?region=`): an unknown region is a 400, a misrouted webhook is
    not guessed at. Not strict (Event Grid's `data.location`): a push that landed in a
    replica georollout does not deploy to is still a push; only the hint is dropped.
    """
    checked: list[ParsedDelivery] = []
    for notice in notices:
        hint = notice.region_hint if isinstance(notice, PushNotice) else None
        if hint is not None and hint not in services.config.region_names:
            if strict:
                raise InvalidInputError(
                    "region",
                    f"unknown region {hint!r}; configured: "
                    f"{', '.join(services.config.region_names)}",
                    code="unknown_region",
                )
            assert isinstance(notice, PushNotice)
            log.info("push of %s reported from replica %s (not deployed to)", notice.digest, hint)
            notice = replace(notice, region_hint=None)
        checked.append(notice)
    return checked


async def record_notices(
    services: Services,
    notices: Sequence[ParsedDelivery],
    *,
    clock: Clock = utc_now,
) -> IntakeResult:
    """Record every notice, then look at the registry for each touched rollout (a hinted
    region's probe at once); deployments follow through the completion function and the timer."""
    recorded: list[str] = []
    ignored: list[str] = []
    for notice in notices:
        if isinstance(notice, Ignored):
            ignored.append(notice.reason)
            continue
        if isinstance(notice, DeleteNotice):
            deleted = await _record_delete(services, notice, clock)
            if deleted is not None:
                recorded.append(deleted)
            continue
        rollout = await _record(services, notice, clock)
        recorded.append(rollout.id)
        await _first_look(services, rollout.id, notice, clock)
    return IntakeResult(tuple(dict.fromkeys(recorded)), tuple(ignored))


def _first_look_step(
    services: Services, rollout_id: str, notice: PushNotice, clock: Clock
) -> Callable[[], Awaitable[None]]:
    return lambda: _first_look(services, rollout_id, notice, clock)


async def _first_look(
    services: Services, rollout_id: str, notice: PushNotice, clock: Clock
) -> None:
    """The registry-only step right after a push is recorded (a hinted region probed at once)."""
    try:
        await reconcile(
            services, rollout_id, clock=clock, probe_now=notice.region_hint, deploy=False
        )
    except Exception as error:
        # The notice is recorded, which is all the answer promises; the step that looks
        # at the registry comes again with the timer, after a back-off.
        log.exception("first step of %s failed; the timer carries on", rollout_id)
        await postpone_after_crash(services, rollout_id, error, clock=clock)


async def _record(services: Services, notice: PushNotice, clock: Clock) -> Rollout:
    """The rollout after this notice (created on a first sighting)."""
    if notice.pushed_at is not None and not machine.plausible_push_time(notice.pushed_at, clock()):
        log.warning(
            "push of %s@%s carries the time %s, far from now: shown as received now, never used "
            "for ordering",
            notice.repository,
            notice.digest,
            notice.pushed_at.isoformat(),
        )
    target = match_target(services.rules, notice.repository, notice.tag)
    identity = rollout_id(notice.registry, notice.repository, notice.digest)
    for _ in range(3):
        if await services.rollouts.get(identity) is None:
            fresh = machine.new_rollout(notice, services.config.region_names, target, clock())
            try:
                await services.rollouts.add(fresh)
            except RolloutAlreadyExistsError:
                continue  # a concurrent delivery created it first: record onto theirs
            log.debug("new rollout %s (%s)", fresh.id, fresh.state.value)
            return fresh
        updated = await services.rollouts.update(
            identity, lambda current: machine.record_push(current, notice, clock(), target=target)
        )
        if updated is not None:
            return updated
    raise RuntimeError(f"could not record {notice.repository}@{notice.digest}")


async def _record_delete(services: Services, notice: DeleteNotice, clock: Clock) -> str | None:
    """Mark the rollout of a deleted digest, and the endpoints that still serve it."""
    identity = rollout_id(notice.registry, notice.repository, notice.digest)
    updated = await services.rollouts.update(
        identity, lambda current: machine.record_deleted(current, clock())
    )
    if updated is None:
        return None  # a digest georollout never saw (a blob, a chart...): nothing to mark
    serving = await services.rollouts.mark_serving_deleted(identity)
    if serving:
        log.warning(
            "%s@%s was deleted from the registry while %d endpoint(s) still serve it; "
            "a new replica or a scale-out cannot pull it",
            notice.repository,
            notice.digest,
            serving,
        )
    return identity
