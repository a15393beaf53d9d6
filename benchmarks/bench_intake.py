"""Intake at the storage's speed: ACR webhook pushes answered per second by the function app,
against raw `create_entity` calls on the same Azurite at the same concurrency, side by side in
one run; log lines per intake and the host's memory as it serves pushes and listings.

The pushes name digests no replica has (so nothing deploys): what is measured is the answer
path and the recording right behind it. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from azure.data.tables.aio import TableClient

from benchmarks.figures import SentRequests, machine, stop_cleanly_on_sigterm
from devenv.config import isolated_env
from devenv.local_settings import app_settings
from devenv.paths import REPO_ROOT
from devenv.stack import start_stack
from shared.adapters.http_pool import PooledTransport
from shared.config import load_config
from shared.domain.push import NoticeSource, PushNotice
from shared.service.intake import accept_notices
from shared.service.runtime import build_services
from tests.e2e.test_rollout_e2e import acr_push_webhook
from tests.integration.service.service_stack import FixedTokenCredential

PUSHES = int(os.environ.get("BENCH_PUSHES", "300"))
CONCURRENCY = 16
TABLE = "rollouts"  # the app's table (GEOROLLOUT_TABLE_NAME's default)
LISTING_ROUNDS = 20
REPOSITORIES = 30  # pushes spread over this many repositories (one busy repository: set 1)
# Only the intake and what follows it run: no timer tick, and after its first look at the
# primary a rollout is not probed again during the bench (its image is never pushed), so one
# measure does not share the machine with the probes of the rollouts the last one made.
QUIET_AFTER_FIRST_LOOK = {
    "GEOROLLOUT_PROBE_SCHEDULE": "0 0 0 1 1 *",
    "GEOROLLOUT_PROBE_BACKOFF_INITIAL_SECONDS": "600",
    "GEOROLLOUT_PROBE_BACKOFF_MAX_SECONDS": "600",
}
# The host is idle when it used less than this share of one core over `IDLE_WINDOW_S`.
IDLE_SHARE = 0.05
IDLE_WINDOW_S = 0.5


def _new_digest() -> str:
    """A digest no replica has: nothing deploys, the intake alone is measured."""
    return "sha256:" + uuid.uuid4().hex * 2


async def _intake_rate(url: str, repositories: int) -> float:
    gate = asyncio.Semaphore(CONCURRENCY)
    bodies = [
        acr_push_webhook(f"bench/intake-{i % repositories}", _new_digest(), "v1")
        for i in range(PUSHES)
    ]
    async with aiohttp.ClientSession() as session:

        async def one(body: dict[str, object]) -> None:
            async with gate, session.post(url, json=body) as response:
                assert response.status == 200, await response.text()

        started = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        return PUSHES / (time.perf_counter() - started)


async def _raw_rate(connection_string: str) -> tuple[float, float]:
    """Raw writes per second, and the writer's CPU milliseconds per write."""
    name = "raw" + uuid.uuid4().hex[:12]
    gate = asyncio.Semaphore(CONCURRENCY)
    async with TableClient.from_connection_string(
        connection_string, table_name=name, transport=PooledTransport()
    ) as table:
        await table.create_table()

        async def one(i: int) -> None:
            async with gate:
                await table.create_entity(
                    {"PartitionKey": "raw", "RowKey": f"{i:08d}", "Notice": json.dumps({"i": i})}
                )

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(i) for i in range(PUSHES)))
        rate = PUSHES / (time.perf_counter() - started)
        cpu_ms = 1000 * (time.process_time() - cpu) / PUSHES
        await table.delete_table()
    return rate, cpu_ms


async def _recorded(connection_string: str, table: str) -> None:
    """Wait until the app recorded every push it accepted (its inbox is empty), so that the
    next measure does not share the machine with that work."""
    deadline = time.monotonic() + 300
    async with TableClient.from_connection_string(connection_string, table_name=table) as client:
        while time.monotonic() < deadline:
            waiting = client.query_entities("PartitionKey eq 'inbox'", results_per_page=1)
            if not [entity async for entity in waiting]:
                return
            await asyncio.sleep(0.5)
    raise TimeoutError("the app did not record its inbox within 300 s")


async def _answer_requests(settings: dict[str, str]) -> tuple[float, float]:
    """Table requests an answer waits for, counted where they leave the process (every Azure
    client of the app sends through a PooledTransport), with the app's own services
    in-process on the bench's Azurite: (a lone push's, per push of a burst of CONCURRENCY).
    What follows the answer (storing, the first look) is not counted."""

    def push(i: int) -> PushNotice:
        return PushNotice(
            registry=settings["GEOROLLOUT_REGISTRY_LOGIN_SERVER"],
            repository=f"bench/answer-{i % REPOSITORIES}",
            digest=_new_digest(),
            source=NoticeSource.ACR_WEBHOOK,
            tag="v1",
        )

    services = build_services(load_config(settings), credential=FixedTokenCredential())
    # Follow-ups on but stopped: the answers go as in the app, and nothing after them runs.
    await services.follow_up_when_due().close()
    await services.ensure_table()
    try:
        counts = []
        for burst in (1, CONCURRENCY):
            notices = [push(i) for i in range(burst)]
            with SentRequests() as sent:
                await asyncio.gather(*(accept_notices(services, [n]) for n in notices))
            counts.append(sent.count / burst)
    finally:
        await services.close()
    return counts[0], counts[1]


def _cpu_s(pid: int) -> float:
    """CPU seconds `pid` used so far (user and system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _idle(pid: int) -> None:
    """Wait until the host is idle: what the last measure left behind (the first looks at
    its rollouts) is done before the next one starts."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        before = _cpu_s(pid)
        time.sleep(IDLE_WINDOW_S)  # the window the share is measured over
        if _cpu_s(pid) - before < IDLE_SHARE * IDLE_WINDOW_S:
            return
    raise TimeoutError("the host did not settle within 300 s")


async def _list_everything(host_url: str, rounds: int) -> int:
    """Page through every rollout `rounds` times, as the dashboard and `georollout status`
    do; how many listing requests the host served."""
    served = 0
    async with aiohttp.ClientSession() as session:
        for _ in range(rounds):
            continuation: str | None = None
            while True:
                params = {"limit": "50"} | ({"continuation": continuation} if continuation else {})
                async with session.get(f"{host_url}/api/rollouts", params=params) as response:
                    assert response.status == 200, await response.text()
                    page = await response.json()
                served += 1
                continuation = page.get("continuation")
                if not continuation:
                    break
    return served


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _lines(path: Path) -> tuple[int, int]:
    """(every line of the host's log, lines of georollout's and the Azure SDK's loggers);
    the rest are the host's own per-invocation lines (Executing/Executed, access log),
    as Azure's Functions host writes them too."""
    if not path.exists():
        return 0, 0
    lines = path.read_text(errors="replace").splitlines()
    ours = [line for line in lines if re.search(r"\] (georollout|azure)[\w.]*: ", line)]
    return len(lines), len(ours)


def main() -> None:
    app_dir = Path(os.environ.get("BENCH_APP_DIR") or REPO_ROOT)
    with tempfile.TemporaryDirectory() as state:
        env = isolated_env(Path(state), region_names=("eastus", "westus"))
        stack = start_stack(env, app_dir=app_dir, extra_settings=QUIET_AFTER_FIRST_LOOK)
        try:
            host = next(p for p in stack.processes if p.name.startswith("functions-host"))
            assert host.popen is not None
            log = env.state_dir / "logs" / "functions-host.log"
            url = f"{env.host_url}/api/hooks/acr"
            asyncio.run(_intake_rate(url, REPOSITORIES))  # warm-up: imports, first clients
            asyncio.run(_recorded(env.table_connection_string, TABLE))
            _idle(host.popen.pid)
            idle_mb, lines_before = _rss_mb(host.popen.pid), _lines(log)
            results = []
            for repositories in (REPOSITORIES, 1):
                raw, raw_cpu_ms = asyncio.run(_raw_rate(env.table_connection_string))
                host_cpu = _cpu_s(host.popen.pid)
                intake = asyncio.run(_intake_rate(url, repositories))
                host_cpu_ms = 1000 * (_cpu_s(host.popen.pid) - host_cpu) / PUSHES
                asyncio.run(_recorded(env.table_connection_string, TABLE))
                _idle(host.popen.pid)
                results.append((repositories, intake, raw, host_cpu_ms, raw_cpu_ms))
            lines_after = _lines(log)
            intakes = PUSHES * len(results)
            lines = (lines_after[0] - lines_before[0]) / intakes
            app_lines = (lines_after[1] - lines_before[1]) / intakes
            busy_mb = _rss_mb(host.popen.pid)
            # Flat in requests served: list everything (the intakes' rollouts), a few times.
            first_pages = asyncio.run(_list_everything(env.host_url, rounds=1))
            listed_once_mb = _rss_mb(host.popen.pid)
            more_pages = asyncio.run(_list_everything(env.host_url, rounds=LISTING_ROUNDS))
            listed_mb = _rss_mb(host.popen.pid)
            settings = app_settings(env, stack.tls) | {"GEOROLLOUT_TABLE_NAME": "benchanswers"}
            lone, in_burst = asyncio.run(_answer_requests(settings))
        finally:
            stack.stop()
    print(f"machine: {machine()}")
    print(f"ACR webhook intake, {PUSHES} pushes, {CONCURRENCY} at a time, app {app_dir}")
    for repositories, intake, raw, host_cpu_ms, raw_cpu_ms in results:
        print(
            f"  {repositories:3d} repositories: {intake:7.1f} pushes/s vs raw create_entity "
            f"{raw:7.1f}/s: {100 * intake / raw:5.1f} % (goal >= 80 %); the host's CPU per "
            f"answer {host_cpu_ms:.2f} ms while answering vs the raw writer's "
            f"{raw_cpu_ms:.2f} ms per write"
        )
    print(
        f"  table requests an answer waits for (in-process, counted as they leave): a lone "
        f"push {lone:.2f}, a burst of {CONCURRENCY} {in_burst:.2f} per push (goal <= 2)"
    )
    print(
        f"  log lines per intake (answer and recording): georollout and Azure SDK "
        f"{app_lines:.1f} (goal <= 2), with the host's own {lines:.1f}"
    )
    print(
        f"  host memory: {idle_mb:.0f} MB after warm-up, {busy_mb:.0f} MB after "
        f"{intakes} more pushes, {listed_once_mb:.0f} MB after listing all "
        f"{PUSHES * (len(results) + 1)} rollouts ({first_pages} pages of 50), {listed_mb:.0f} MB "
        f"after {more_pages} more pages (goal: flat in requests served)"
    )


if __name__ == "__main__":
    stop_cleanly_on_sigterm()
    main()
