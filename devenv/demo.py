"""`make demo`: start the local environment, push a sample model image, watch it roll out region by region.

The rollout is progressive: the primary first, then one wave per secondary, each wave
watched for a short soak (smoke requests repeated) before the next starts. It ends with a
per-region summary, checks the ARM emulator's audit (no deployment before its replica had
the image, no wave before the previous one soaked), asks each region's endpoint which image
it serves, and stops everything it started, also on Ctrl-C. A `GEOROLLOUT_TARGETS` in the
shell's environment replaces the demo's rule.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from devenv.build_secret import build_webhook_secret
from devenv.config import LocalEnv, default_env
from devenv.images import built_image_file, push_image
from devenv.ports import LOOPBACK
from devenv.process import ProcessFailedError, port_open
from devenv.stack import Stack, start_stack

REPOSITORY = "models/demo-llm"
# One tag for every run: a rollout left unfinished by an interrupted run is superseded by the next.
TAG = "latest"
SMALL_IMAGE_BYTES = 4_000_000
LARGE_IMAGE_BYTES = 200_000_000
SLOW_REGION_EXTRA_DELAY_S = 4.0
DEADLINE_S = 300.0
POLL_S = 0.5
# Rollout states after which waiting longer changes nothing.
FINAL_STATES = frozenset({"live", "failed", "timed_out", "superseded", "ignored"})
ARM_API_VERSION = "2023-04-01-preview"
# The demo's rule: each secondary its own wave, each wave watched this long.
DEMO_SOAK_S = 5.0
DEMO_VERIFY_INTERVAL_S = 2.0
DEPLOYMENT_HEADER = "azureml-model-deployment"


class DemoFailedError(RuntimeError):
    """The demo could not show a complete, correct rollout; the message says what went wrong."""


# -- set-up ----------------------------------------------------------------------------------


def demo_env() -> LocalEnv:
    """The contract's default ports, with the last secondary region replicating a few seconds late."""
    env = default_env()
    if len(env.regions) > 1:
        env = env.with_region(env.regions[-1].name, extra_delay_s=SLOW_REGION_EXTRA_DELAY_S)
    return env


def busy_ports(env: LocalEnv) -> list[tuple[str, int]]:
    """The (part, port) pairs of `env` that something else already holds."""
    wanted = [
        ("function app", env.host_port),
        ("Azurite Table service", env.azurite_port),
        ("ARM emulator", env.arm_port),
        ("Event Grid emulator", env.eventgrid_port),
        ("registry relay", env.relay_port),
        *((f"registry {r.name}", r.registry_port) for r in env.regions),
    ]
    return [(name, port) for name, port in wanted if not _port_free(port)]


def _port_free(port: int) -> bool:
    if port_open(LOOPBACK, port):
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def demo_targets(env: LocalEnv, soak_s: float = DEMO_SOAK_S) -> str:
    """GEOROLLOUT_TARGETS for the demo: one wave per secondary, a short soak, checks every
    couple of seconds (a rule without `endpoint` names it {repository}-{instance})."""
    rule = {
        "repository": "*",
        "tag": "*",
        "waves": [[region.name] for region in env.regions[1:]],
        "soak_seconds": soak_s,
        "verify": {"interval_seconds": DEMO_VERIFY_INTERVAL_S, "max_failures": 1},
    }
    return json.dumps([rule])


def demo_settings(
    env: LocalEnv, environ: Mapping[str, str], soak_s: float = DEMO_SOAK_S
) -> dict[str, str]:
    """The demo's own settings, unless the shell sets them (the shell's win, as for make up)."""
    if "GEOROLLOUT_TARGETS" in environ or len(env.regions) < 2:
        return {}
    return {"GEOROLLOUT_TARGETS": demo_targets(env, soak_s)}


# -- HTTP ------------------------------------------------------------------------------------


def _request_json(
    url: str,
    *,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    all_headers = {"Accept": "application/json", **(headers or {})}
    if data is not None:
        all_headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    try:
        return status, json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return status, raw.decode(errors="replace")


def fetch_rollout(env: LocalEnv, rollout_id: str) -> dict[str, Any] | None:
    """GET /api/rollouts/{id}: the rollout document, or None while it does not exist yet."""
    status, body = _request_json(f"{env.host_url}/api/rollouts/{urllib.parse.quote(rollout_id)}")
    if status == 404:
        return None
    if status != 200 or not isinstance(body, dict):
        raise DemoFailedError(f"GET /api/rollouts/{rollout_id} answered {status}: {body}")
    return body


def find_rollout(env: LocalEnv, repository: str, digest: str) -> dict[str, Any] | None:
    """The rollout of `digest` from GET /api/rollouts?repository=..., or None."""
    query = urllib.parse.urlencode({"repository": repository, "limit": "1000"})
    status, body = _request_json(f"{env.host_url}/api/rollouts?{query}")
    if status != 200 or not isinstance(body, dict):
        raise DemoFailedError(f"GET /api/rollouts answered {status}: {body}")
    for rollout in body.get("rollouts", []):
        if rollout.get("digest") == digest:
            found: dict[str, Any] = rollout
            return found
    return None


# -- time ------------------------------------------------------------------------------------


def _parse_time(value: str | None) -> datetime | None:
    return None if not value else datetime.fromisoformat(value.replace("Z", "+00:00"))


def seconds_after(value: str | None, origin: datetime) -> float | None:
    moment = _parse_time(value)
    return None if moment is None else (moment - origin).total_seconds()


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}s"


# -- display ---------------------------------------------------------------------------------


def _region_step(region: dict[str, Any]) -> str:
    """The step under way, or what the region waits for (soak, previous wave...)."""
    waiting = region.get("waiting_for")
    if region.get("soaking") and region.get("soak_until"):
        return f"soaking until {str(region['soak_until'])[11:19]}"
    step = region.get("deploy_step")
    if step and step not in ("done", "keeping_previous"):
        percent = region.get("traffic_percent")
        return f"{step} ({percent}%)" if step == "holding_step" else str(step)
    if waiting:
        return f"waiting for {waiting}"
    if step:
        return str(step)
    note = region.get("last_error")
    return str(note) if note else ""


def progress_table(
    doc: dict[str, Any] | None, env: LocalEnv, pushed_at: datetime, now: datetime
) -> Table:
    elapsed = (now - pushed_at).total_seconds()
    state = doc["state"] if doc else "waiting for the push to be noticed"
    table = Table(title=f"{REPOSITORY}  {state}  ({elapsed:.1f}s since the push)")
    table.add_column("region", no_wrap=True)
    table.add_column("wave", justify="right")
    table.add_column("state", no_wrap=True)
    table.add_column("deploy step", no_wrap=True, overflow="ellipsis", max_width=48)
    table.add_column("replicated after", justify="right")
    table.add_column("live after", justify="right")
    regions = {r["region"]: r for r in (doc or {}).get("regions", [])}
    for region_env in env.regions:
        name = region_env.name + (" (primary)" if region_env.primary else "")
        region = regions.get(region_env.name)
        if region is None:
            table.add_row(name, "", "—", "", "—", "—")
            continue
        table.add_row(
            name,
            str(region.get("wave", "")),
            region["state"],
            _region_step(region),
            _seconds(seconds_after(region.get("replicated_at"), pushed_at)),
            _seconds(seconds_after(region.get("live_at"), pushed_at)),
        )
    return table


def progress_lines(doc: dict[str, Any]) -> list[str]:
    """One line per region for a plain (non-terminal) log; printed only when it changes."""
    return [
        f"{r['region']}: {r['state']}" + (f" ({_region_step(r)})" if _region_step(r) else "")
        for r in doc.get("regions", [])
    ]


def summary_table(doc: dict[str, Any], pushed_at: datetime) -> Table:
    table = Table(title=f"{doc['repository']}@{doc['digest'][:19]}…  {doc['state']}")
    table.caption = "seconds after the push completed"
    for column in (
        "region",
        "wave",
        "state",
        "replicated after",
        "deploy started after",
        "serving after",
        "soak ended after",
    ):
        table.add_column(column, justify="right" if "after" in column else "left", no_wrap=True)
    table.add_column("deployment (endpoint/name)", no_wrap=True)
    for region in doc["regions"]:
        deployment = region.get("deployment") or {}
        table.add_row(
            region["region"] + (" (primary)" if region.get("primary") else ""),
            str(region.get("wave", "")),
            region["state"],
            _seconds(seconds_after(region.get("replicated_at"), pushed_at)),
            _seconds(seconds_after(region.get("deploy_started_at"), pushed_at)),
            _seconds(seconds_after(region.get("live_at"), pushed_at)),
            _seconds(seconds_after(region.get("soak_until"), pushed_at)),
            f"{deployment.get('endpoint', '—')}/{deployment.get('name', '—')}",
        )
    return table


# -- watching --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushedImage:
    repository: str
    tag: str
    digest: str
    rollout_id: str
    size_bytes: int
    pushed_at: datetime


def _host_log_tail(env: LocalEnv, lines: int = 40) -> str:
    path: Path = env.state_dir / "logs" / "functions-host.log"
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"


def _poll_once(stack: Stack, image: PushedImage) -> dict[str, Any] | None:
    stack.check()  # a dead stand-in is reported at once, not after the deadline
    doc = fetch_rollout(stack.env, image.rollout_id)
    if doc is None:
        doc = find_rollout(stack.env, image.repository, image.digest)
    return doc


def watch_rollout(
    console: Console, stack: Stack, image: PushedImage, *, deadline_s: float = DEADLINE_S
) -> dict[str, Any]:
    """Poll the rollout until it reaches a final state; show it live (or as plain lines without a TTY)."""
    deadline = time.monotonic() + deadline_s
    doc: dict[str, Any] | None = None
    if console.is_terminal:
        with Live(console=console, refresh_per_second=4) as live:
            while True:
                doc = _poll_once(stack, image)
                live.update(progress_table(doc, stack.env, image.pushed_at, datetime.now(UTC)))
                if (doc and doc["state"] in FINAL_STATES) or time.monotonic() >= deadline:
                    break
                time.sleep(POLL_S)
    else:
        shown: list[str] = []
        while True:
            doc = _poll_once(stack, image)
            lines = progress_lines(doc) if doc else ["waiting for the push to be noticed"]
            if lines != shown:
                elapsed = (datetime.now(UTC) - image.pushed_at).total_seconds()
                console.print(f"[{elapsed:6.1f}s] " + "; ".join(lines), highlight=False)
                shown = lines
            if (doc and doc["state"] in FINAL_STATES) or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
    if doc is None or doc["state"] not in FINAL_STATES:
        state = doc["state"] if doc else "never seen by the function app"
        raise DemoFailedError(
            f"the rollout was still {state} after {deadline_s:.0f}s; "
            f"last lines of the function host's log:\n{_host_log_tail(stack.env)}"
        )
    return doc


# -- checks ----------------------------------------------------------------------------------


def audit_records(stack: Stack) -> list[dict[str, Any]]:
    status, body = _request_json(
        f"{stack.env.arm_url}/emulator/audit",
        headers={"Authorization": "Bearer local-demo"},
        context=stack.tls.client_context(),
    )
    if status != 200 or not isinstance(body, dict):
        raise DemoFailedError(f"GET /emulator/audit answered {status}: {body}")
    records: list[dict[str, Any]] = body["records"]
    return records


def audit_problems(records: list[dict[str, Any]], doc: dict[str, Any]) -> list[str]:
    """What the ARM audit says went wrong for this rollout: early deployments, primary not first."""
    problems: list[str] = []
    mine = [r for r in records if r.get("digest") == doc["digest"]]
    created = [r for r in mine if r["action"] in ("deployment_create", "deployment_update")]
    for record in created:
        if not record.get("image_present_at_create"):
            problems.append(
                f"{record['region']}: deployment {record['deployment']} was created before its "
                f"replica had the image ({record.get('registry_answer')})"
            )
    primary = next(r for r in doc["regions"] if r.get("primary"))
    primary_live = _parse_time(primary.get("live_at"))
    if primary_live is None:
        return [*problems, f"the primary region {primary['region']} never went live"]
    for record in created:
        if record["region"] == primary["region"]:
            continue
        created_at = _parse_time(record["timestamp"])
        if created_at is not None and created_at < primary_live:
            problems.append(
                f"{record['region']}: deployment created at {record['timestamp']}, before the "
                f"primary went live at {primary['live_at']}"
            )
    for region in doc["regions"]:
        live = _parse_time(region.get("live_at"))
        if not region.get("primary") and live is not None and live < primary_live:
            problems.append(f"{region['region']} went live before the primary")
    problems += _wave_problems(created, doc)
    if not any(r["region"] == primary["region"] for r in created):
        problems.append(f"the audit has no deployment in the primary region {primary['region']}")
    return problems


def _wave_problems(created: list[dict[str, Any]], doc: dict[str, Any]) -> list[str]:
    """A deployment of a wave created before every earlier wave had served and soaked."""
    problems: list[str] = []
    regions = {r["region"]: r for r in doc["regions"]}
    for record in created:
        wave = regions.get(record["region"], {}).get("wave")
        created_at = _parse_time(record["timestamp"])
        if not wave or created_at is None:
            continue
        for earlier in doc["regions"]:
            if earlier.get("wave") is None or earlier["wave"] >= wave:
                continue
            ended = _parse_time(earlier.get("soak_until") or earlier.get("live_at"))
            if ended is None or created_at < ended:
                problems.append(
                    f"{record['region']} (wave {wave}): deployment created at "
                    f"{record['timestamp']}, before {earlier['region']} (wave {earlier['wave']}) "
                    "had served and soaked"
                )
    return problems


def smoke_region(stack: Stack, region: dict[str, Any], digest: str) -> tuple[bool, str]:
    """Score the region's endpoint as a client would (traffic decides); say which image answered."""
    deployment = region.get("deployment")
    if not deployment:
        return False, f"{region['region']}: no deployment recorded"
    context = stack.tls.client_context()
    arm_auth = {"Authorization": "Bearer local-demo"}
    endpoint_url = (
        f"{stack.env.arm_url}{deployment['workspace']}/onlineEndpoints/{deployment['endpoint']}"
    )
    status, endpoint = _request_json(
        f"{endpoint_url}?api-version={ARM_API_VERSION}", headers=arm_auth, context=context
    )
    if status != 200:
        return False, f"{region['region']}: GET endpoint answered {status}: {endpoint}"
    properties = endpoint["properties"]
    auth_mode = str(properties.get("authMode", "")).lower()
    secret = "local-demo"  # any bearer token for AADToken endpoints
    if auth_mode in ("key", "amltoken"):
        action = "listKeys" if auth_mode == "key" else "token"
        status, keys = _request_json(
            f"{endpoint_url}/{action}?api-version={ARM_API_VERSION}",
            method="POST",
            body={},
            headers=arm_auth,
            context=context,
        )
        if status != 200:
            return False, f"{region['region']}: {action} answered {status}: {keys}"
        secret = keys.get("primaryKey") or keys.get("accessToken")
    status, answer = _request_json(
        properties["scoringUri"],
        method="POST",
        body={"input": "which model are you?"},
        headers={"Authorization": f"Bearer {secret}"},
        context=context,
    )
    if status != 200 or not isinstance(answer, dict):
        return False, f"{region['region']}: scoring answered {status}: {answer}"
    served = f"{region['region']}: {answer['deployment']} serves {answer['digest'][:19]}…"
    ok = answer["digest"] == digest and answer["deployment"] == deployment["name"]
    return ok, served if ok else f"{served}, expected {deployment['name']} with {digest[:19]}…"


# -- the demo --------------------------------------------------------------------------------


def push_demo_image(stack: Stack, *, size_bytes: int, console: Console) -> PushedImage:
    from shared.domain.model import rollout_id  # the product's id; the demo reads only the API

    seed = f"demo-llm-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%f')}"
    console.print(f"building a {size_bytes / 1e6:.0f} MB model image…", highlight=False)
    primary = stack.env.primary
    with built_image_file(
        size_bytes=size_bytes, seed=seed, directory=stack.env.state_dir / "images"
    ) as image:
        console.print(
            f"pushing {REPOSITORY}:{TAG} to {primary.name}'s registry {primary.registry_url}…"
        )
        digest = push_image(primary.registry_url, REPOSITORY, TAG, image, ca_path=stack.tls.ca_pem)
        total_bytes = image.total_bytes
    pushed_at = datetime.now(UTC)
    console.print(f"pushed {digest}", highlight=False)
    announce_build(stack, digest, console)
    return PushedImage(
        repository=REPOSITORY,
        tag=TAG,
        digest=digest,
        rollout_id=rollout_id(primary.registry_host, REPOSITORY, digest),
        size_bytes=total_bytes,
        pushed_at=pushed_at,
    )


DEMO_BUILD = {
    "system": "make-demo",
    "id": "1",
    "url": "https://ci.example/georollout/demo/1",
    "commit": "0" * 40,
    "source": "https://github.example/georollout/demo-llm",
}


def announce_build(stack: Stack, digest: str, console: Console) -> None:
    """Say "I pushed this" as a pipeline would: a signed notice to POST /api/hooks/build."""
    from shared.intake.webhook_signature import sign  # what `georollout notify` signs with

    image = f"{stack.env.primary.registry_host}/{REPOSITORY}@{digest}"
    body = json.dumps({"image": image, "tags": [TAG], "build": DEMO_BUILD}).encode()
    message_id, timestamp = f"msg_{uuid.uuid4().hex}", int(time.time())
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(
            build_webhook_secret(stack.env.state_dir), message_id, timestamp, body
        ),
        "Content-Type": "application/json",
    }
    request = urllib.request.Request(
        f"{stack.env.host_url}/api/hooks/build", data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            console.print(f"announced build {DEMO_BUILD['id']} ({response.status})")
    except urllib.error.HTTPError as error:
        console.print(f"[red]build notice refused[/]: {error.code} {error.read()[:300]!r}")


def build_lines(doc: dict[str, Any]) -> list[str]:
    """The builds that announced the rollout, as the summary shows them."""
    return [
        f"build {b.get('system')} #{b.get('id')} commit {str(b.get('commit'))[:12]} {b.get('url')}"
        for b in doc.get("builds") or []
    ]


def _show_and_check(console: Console, stack: Stack, image: PushedImage) -> bool:
    doc = watch_rollout(console, stack, image)
    console.print(summary_table(doc, image.pushed_at))
    for line in build_lines(doc):
        console.print(line, highlight=False)
    passed = doc["state"] == "live" and all(r["state"] == "live" for r in doc["regions"])
    if not passed:
        for region in doc["regions"]:
            if region["state"] != "live":
                console.print(
                    f"[red]{region['region']} is {region['state']}[/]: {region.get('last_error')}"
                )
        return False
    problems = audit_problems(audit_records(stack), doc)
    for problem in problems:
        console.print(f"[red]audit:[/] {problem}")
    if not problems:
        console.print(
            "[green]audit ok[/]: every deployment was created after its replica had the image, "
            "the primary went live first, and no wave started before the one before it soaked"
        )
    smoke_ok = True
    for region in doc["regions"]:
        ok, line = smoke_region(stack, region, image.digest)
        console.print(("[green]smoke ok[/] " if ok else "[red]smoke failed[/] ") + line)
        smoke_ok = smoke_ok and ok
    return not problems and smoke_ok


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_demo(*, large: bool = False) -> int:
    """Run the whole demo on the contract's default ports; 0 only when every region went live and every check held."""
    # The SDK logs every request at INFO; the live table is the demo's output.
    logging.getLogger("azure").setLevel(logging.WARNING)
    console = Console(force_terminal=None)
    if not console.is_terminal:
        # CI logs are wide enough; 80 columns would fold the summary table.
        console = Console(force_terminal=None, width=140)
    env = demo_env()
    busy = busy_ports(env)
    if busy:
        for name, port in busy:
            console.print(f"[red]port {port} ({name}) is already in use[/]")
        console.print("stop whatever holds it (a running `make up`?) and try again")
        return 2
    return run_demo_in(env, console=console, large=large)


def run_demo_in(
    env: LocalEnv,
    *,
    console: Console,
    large: bool = False,
    extra_settings: dict[str, str] | None = None,
    soak_s: float = DEMO_SOAK_S,
) -> int:
    """The demo in `env`: start, push, watch, summarise, check, stop (always, also on Ctrl-C/SIGTERM)."""
    previous_int = signal.getsignal(signal.SIGINT)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    stack: Stack | None = None
    try:
        console.print("starting the local environment…")
        settings = demo_settings(env, os.environ, soak_s) | dict(extra_settings or {})
        if "GEOROLLOUT_TARGETS" in settings:
            waves = " → ".join(r.name for r in env.regions)
            console.print(
                f"rule: {waves}, one region per wave, each wave soaks {soak_s:g} s "
                f"(a smoke request every {DEMO_VERIFY_INTERVAL_S:g} s)",
                highlight=False,
            )
        stack = start_stack(env, extra_settings=settings)
        console.print(f"local environment up in {stack.started_in_s:.1f}s")
        size = LARGE_IMAGE_BYTES if large else SMALL_IMAGE_BYTES
        image = push_demo_image(stack, size_bytes=size, console=console)
        passed = _show_and_check(console, stack, image)
        console.print("[green]demo passed[/]" if passed else "[red]demo failed[/]")
        return 0 if passed else 1
    except KeyboardInterrupt:
        console.print("\ninterrupted: stopping everything…")
        return 130
    except (DemoFailedError, ProcessFailedError, TimeoutError) as error:
        console.print(f"[red]demo failed:[/] {error}", highlight=False)
        return 1
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave servers behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if stack is not None:
            stack.stop()
            console.print("stopped everything the demo started")
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
