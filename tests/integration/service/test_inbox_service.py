"""The intake's answer path: one durable write per push (the inbox), recording after the answer,
and nothing lost when the process stops right after answering."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from shared.adapters.http_pool import PooledTransport
from shared.service.intake import INBOX_GRACE, RECORDING_CONCURRENCY, accept_notices
from shared.service.reconcile import Clock, utc_now
from shared.service.runtime import Services
from shared.service.tick import run_tick
from tests.integration.service.driving import is_live, poll_until, stored_until, tick_until
from tests.integration.service.pushing import notice_of, push
from tests.integration.service.service_stack import ServiceStack, new_table_name

pytestmark = pytest.mark.integration


def later(seconds: float) -> Clock:
    """A clock `seconds` ahead of now (the tick's view once the inbox grace has passed)."""
    return lambda: utc_now() + timedelta(seconds=seconds)


async def inbox(services: Services) -> list[str]:
    """The tags of every distinct notice in the inbox, whatever its age (one notice in two
    pages, a redelivery, is one notice)."""
    pages = await services.rollouts.waiting_notices(utc_now() + INBOX_GRACE, limit=100)
    notices = dict(pair for page in pages for pair in page.notices)
    return sorted(notice.tag or "" for notice in notices.values())


def test_a_process_that_stops_right_after_answering_loses_no_push(stack: ServiceStack) -> None:
    pushed = push(stack.env, stack.tls, "service/inbox-crash", "v1", seed="inbox-crash-v1")
    table = new_table_name()

    async def answer_then_stop() -> None:
        async with stack.services(table=table) as services:
            follow_ups = services.follow_up_when_due()
            result = await accept_notices(services, [notice_of(pushed)])
            assert result.recorded == (pushed.rollout_id,)
            # The process stops before its background step records anything.
            await follow_ups.close()
            assert await services.rollouts.get(pushed.rollout_id) is None
            pages = await services.rollouts.waiting_notices(utc_now() + INBOX_GRACE, limit=10)
            assert [notice for page in pages for _, notice in page.notices] == [notice_of(pushed)]
            page, _ = await services.rollouts.list()
            assert page == []  # nothing but the inbox was written on the answer's path

    async def next_process() -> None:
        async with stack.services(table=table) as services:
            # Within the grace the accepting process may still be at it: the tick leaves it.
            await run_tick(services, time_budget_s=20)
            assert await services.rollouts.get(pushed.rollout_id) is None
            clock = later(INBOX_GRACE.total_seconds() + 1)
            await tick_until(
                services,
                [pushed.rollout_id],
                lambda found: is_live(found[pushed.rollout_id]),
                what="the push recorded from the inbox and live",
                clock=clock,
            )
            assert await services.rollouts.waiting_notices(clock(), limit=10) == []

    asyncio.run(answer_then_stop())
    asyncio.run(next_process())


def test_a_redelivered_notice_is_one_notice_in_the_inbox_and_another_tag_one_more(
    stack: ServiceStack,
) -> None:
    pushed = push(stack.env, stack.tls, "service/inbox-dup", "v1", seed="inbox-dup-v1")

    async def scenario() -> None:
        async with stack.services() as services:
            # A process whose follow-ups have stopped answers and records nothing: what
            # the answers left is in the inbox, whatever the timing (closed after the
            # answers, a fast table let the recording of the first win the race).
            await services.follow_up_when_due().close()
            notice = notice_of(pushed)
            retagged = replace(notice, tag="stable")
            for delivery in (notice, notice, retagged, notice):
                await accept_notices(services, [delivery])
            assert await inbox(services) == ["stable", "v1"]

    asyncio.run(scenario())


def test_in_the_app_process_the_push_is_recorded_after_the_answer(stack: ServiceStack) -> None:
    pushed = push(stack.env, stack.tls, "service/inbox-after", "v1", seed="inbox-after-v1")

    async def scenario() -> None:
        async with stack.services() as services:
            services.follow_up_when_due()
            await accept_notices(services, [notice_of(pushed)])
            rollout = await stored_until(
                services, pushed.rollout_id, lambda r: r.tags == ("v1",), what="recorded"
            )
            assert rollout.repository == pushed.repository
            # Recorded, so taken out of the inbox (just after the rollout's write).
            await poll_until(lambda: inbox(services), lambda tags: tags == [], what="inbox empty")

    asyncio.run(scenario())


def test_the_answer_waits_for_one_table_request_and_nothing_else(
    stack: ServiceStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer path's cost, counted where it leaves the process: every Azure client of
    the app sends through a PooledTransport."""
    pushed = push(stack.env, stack.tls, "service/inbox-one-write", "v1", seed="inbox-one-write")
    sent: list[str] = []
    send = PooledTransport.send

    async def counted(self: PooledTransport, request: Any, **kwargs: Any) -> Any:
        sent.append(f"{request.method} {request.url}")
        return await send(self, request, **kwargs)

    monkeypatch.setattr(PooledTransport, "send", counted)

    async def scenario() -> None:
        async with stack.services() as services:
            services.follow_up_when_due()
            sent.clear()
            await accept_notices(services, [notice_of(pushed)])
            answered = list(sent)
            # One write: the notice into the inbox (an upsert of its page, on the page's URL).
            assert len(answered) == 1, answered
            assert "PartitionKey='inbox'" in answered[0], answered
            # The recording happens after the answer, and it does happen.
            await stored_until(
                services, pushed.rollout_id, lambda r: r.tags == ("v1",), what="recorded"
            )
            assert len(sent) > 1

    asyncio.run(scenario())


def test_a_page_of_pushes_records_distinct_rollouts_side_by_side_a_few_at_a_time(
    stack: ServiceStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page holds up to 100 pushes: recorded one after another, the last one's first look
    would wait for every other rollout's writes."""
    pushed = push(stack.env, stack.tls, "service/inbox-side", "v1", seed="inbox-side-v1")
    # Eight rollouts (digests the registry does not have: recording does not ask it), and
    # one of them told twice, under another tag.
    notices = [replace(notice_of(pushed), digest="sha256:" + f"{i:x}" * 64) for i in range(1, 9)]
    notices.append(replace(notices[0], tag="stable"))

    async def scenario() -> None:
        async with stack.services() as services:
            add = services.rollouts.add
            in_flight, most = 0, 0
            two_at_once = asyncio.Event()

            async def add_once_another_is_under_way(rollout: Any) -> Any:
                # Each add holds until a second one is under way: recording in turn would
                # never get there (the wait's deadline fails the add, and the test).
                nonlocal in_flight, most
                in_flight += 1
                most = max(most, in_flight)
                if in_flight >= 2:
                    two_at_once.set()
                try:
                    await asyncio.wait_for(two_at_once.wait(), timeout=10)
                    return await add(rollout)
                finally:
                    in_flight -= 1

            monkeypatch.setattr(services.rollouts, "add", add_once_another_is_under_way)
            # No follow-ups: the answer records its page itself, before it returns.
            result = await accept_notices(services, notices)
            assert len(set(result.recorded)) == 8
            assert 2 <= most <= RECORDING_CONCURRENCY
            for identity in result.recorded:
                assert await services.rollouts.get(identity) is not None, identity
            first = await services.rollouts.get(result.recorded[0])
            assert first is not None
            assert "stable" in (*first.rollout.pending_tags, *first.rollout.tags)
            assert await inbox(services) == []

    asyncio.run(scenario())
