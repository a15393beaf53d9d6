"""Seconds georollout adds after ARM reports a deployment `Succeeded`, with the production schedule.

The whole local environment runs with Azure's timings for georollout (timer every
30 s, deployment poll 10 s); ARM provisions in a few seconds. For each region the
ARM emulator's audit says when the deployment turned `Succeeded`; the rollout says
when georollout recorded the region live (traffic moved and confirmed). The
difference is what georollout adds: its polling, the smoke request, the traffic PUT
and the wait for ARM to apply it.

`BENCH_APP_DIR` points the host at another checkout of the app (an older commit) to
measure the same way before a change. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.figures import machine, percentile, stop_cleanly_on_sigterm
from devenv.arm.config import DEFAULT_ENDPOINT_SETTLE_S
from devenv.config import isolated_env
from devenv.images import build_image, push_image
from devenv.paths import REPO_ROOT
from devenv.stack import start_stack
from tests.e2e.local_api import ArmAudit, FunctionApp

REGIONS = ("eastus", "westus", "westeurope")
ROLLOUTS = int(os.environ.get("BENCH_ROLLOUTS", "3"))
PRODUCTION = {"GEOROLLOUT_PROBE_SCHEDULE": "*/30 * * * * *", "GEOROLLOUT_DEPLOY_POLL_SECONDS": "10"}
ARM_PROVISIONING_S = 3.0
DEADLINE_S = 600.0


def _live_rollout(app: FunctionApp, repository: str, digest: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        for found in app.rollouts(repository=repository):
            if found["digest"] == digest and found["state"] == "live":
                status, document = app.get(f"/api/rollouts/{found['id']}")
                assert status == 200, document
                return dict(document)
        time.sleep(0.5)  # a benchmark waits on the host; no test asserts on this timing
    raise TimeoutError(f"{repository}@{digest} did not go live in {DEADLINE_S:.0f} s")


def _overheads(document: dict[str, Any], audit: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Per region: (ARM's Succeeded -> georollout's traffic PUT, that PUT -> recorded live)."""
    digest = document["digest"]
    provisioned = {
        r["region"]: datetime.fromisoformat(r["timestamp"])
        for r in audit
        if r.get("action") == "deployment_provisioned" and r.get("digest") == digest
    }
    shifted = {
        r["region"]: datetime.fromisoformat(r["timestamp"])
        for r in audit
        if r.get("action") == "traffic_changed"
        and any(d.get("digest") == digest for d in r.get("deployments", {}).values())
    }
    found = []
    for region in document["regions"]:
        name, live = region["region"], datetime.fromisoformat(region["live_at"])
        found.append(
            (
                (shifted[name] - provisioned[name]).total_seconds(),
                (live - shifted[name]).total_seconds(),
            )
        )
    return found


def main() -> None:
    app_dir = Path(os.environ.get("BENCH_APP_DIR") or REPO_ROOT)
    samples: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as state:
        env = isolated_env(Path(state), region_names=REGIONS)
        env = replace(env, replication_base_s=1.0, arm_provisioning_s=ARM_PROVISIONING_S)
        stack = start_stack(env, app_dir=app_dir, extra_settings=PRODUCTION)
        try:
            app = FunctionApp(env)
            audit = ArmAudit(env, stack.tls.client_context())
            for number in range(ROLLOUTS):
                repository = f"bench/steps-{number}"
                image = build_image(size_bytes=200_000, seed=f"steps-{uuid.uuid4()}")
                digest = push_image(
                    env.primary.registry_url, repository, "v1", image, ca_path=stack.tls.ca_pem
                )
                document = _live_rollout(app, repository, digest)
                samples += _overheads(document, audit.records())
        finally:
            stack.stop()
    to_put = [a for a, _ in samples]
    to_live = [b for _, b in samples]
    # The emulator's endpoint update: a quarter of the provisioning time, then the endpoint
    # stays `Updating` for the settle time (as Azure does): ARM's own part of the second leg.
    arm_update_s = ARM_PROVISIONING_S / 4 + DEFAULT_ENDPOINT_SETTLE_S
    added = [a + max(b - arm_update_s, 0.0) for a, b in samples]
    print(f"machine: {machine()}")
    print(
        f"after ARM says Succeeded -> region live, timer 30 s, deploy poll 10 s, "
        f"{ROLLOUTS} rollouts x {len(REGIONS)} regions, app {app_dir}"
    )
    print(
        f"  Succeeded -> traffic PUT: median {statistics.median(to_put):5.2f} s, "
        f"p95 {percentile(to_put, 0.95):5.2f} s (polling, smoke request)"
    )
    print(
        f"  traffic PUT -> live:      median {statistics.median(to_live):5.2f} s, "
        f"p95 {percentile(to_live, 0.95):5.2f} s (ARM's update takes {arm_update_s:.2f} s of it)"
    )
    print(
        f"  added by georollout:      median {statistics.median(added):5.2f} s, "
        f"p95 {percentile(added, 0.95):5.2f} s (goal: p95 <= 2 s)"
    )


if __name__ == "__main__":
    stop_cleanly_on_sigterm()
    main()
