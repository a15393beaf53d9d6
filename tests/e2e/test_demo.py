"""`make demo`'s code path on free ports, and its audit verdicts on records that break the rules."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from devenv.config import isolated_env
from devenv.demo import SLOW_REGION_EXTRA_DELAY_S, audit_problems, run_demo_in
from devenv.process import port_open
from tests.e2e.conftest import PROBE_SCHEDULE

pytestmark = pytest.mark.e2e

DIGEST = "sha256:" + "a" * 64


def test_the_demo_rolls_out_everywhere_and_stops_what_it_started(tmp_path: Path) -> None:
    env = replace(isolated_env(tmp_path), replication_base_s=1.0, arm_provisioning_s=1.0)
    env = env.with_region(env.regions[-1].name, extra_delay_s=SLOW_REGION_EXTRA_DELAY_S)
    output = io.StringIO()
    code = run_demo_in(
        env,
        console=Console(file=output, width=160, force_terminal=False),
        extra_settings={"GEOROLLOUT_PROBE_SCHEDULE": PROBE_SCHEDULE},
        soak_s=2.0,  # `make demo` soaks 5 s; the same code path, shorter
    )
    text = output.getvalue()
    print(text)
    assert code == 0, text
    assert "demo passed" in text
    assert "audit ok" in text
    # Its push was announced through the signed build webhook, and the summary shows it.
    assert "announced build 1 (202)" in text
    assert "build make-demo #1 commit 000000000000 https://ci.example/georollout/demo/1" in text
    for region in env.regions:
        assert f"smoke ok {region.name}:" in text
    # Progressive: one wave per secondary, each watched for a soak before the next starts.
    assert "each wave soaks 2 s" in text
    assert "waiting for previous wave" in text and "soaking until" in text
    assert "no wave started before the one before it soaked" in text
    # Everything the demo started is stopped: none of its ports still answers.
    ports = [env.host_port, env.arm_port, env.azurite_port, env.eventgrid_port, env.relay_port]
    ports += [r.registry_port for r in env.regions]
    assert [p for p in ports if port_open("127.0.0.1", p)] == []


def _rollout(primary_live: str, secondary_live: str) -> dict[str, Any]:
    return {
        "digest": DIGEST,
        "regions": [
            {"region": "eastus", "primary": True, "live_at": primary_live},
            {"region": "westus", "primary": False, "live_at": secondary_live},
        ],
    }


def _create(region: str, timestamp: str, present: bool = True) -> dict[str, Any]:
    return {
        "action": "deployment_create",
        "region": region,
        "deployment": "d1",
        "digest": DIGEST,
        "timestamp": timestamp,
        "image_present_at_create": present,
        "registry_answer": "404" if not present else "200",
    }


def test_the_demo_audit_accepts_a_correct_rollout() -> None:
    records = [
        _create("eastus", "2025-01-01T00:00:01+00:00"),
        _create("westus", "2025-01-01T00:00:11+00:00"),
    ]
    doc = _rollout("2025-01-01T00:00:10Z", "2025-01-01T00:00:20Z")
    assert audit_problems(records, doc) == []


def test_the_demo_audit_flags_an_early_deployment_and_a_secondary_before_the_primary() -> None:
    records = [
        _create("eastus", "2025-01-01T00:00:01+00:00"),
        _create("westus", "2025-01-01T00:00:05+00:00", present=False),
    ]
    doc = _rollout("2025-01-01T00:00:10Z", "2025-01-01T00:00:08Z")
    problems = audit_problems(records, doc)
    assert any("before its replica had the image" in p for p in problems), problems
    assert any("before the primary went live" in p for p in problems), problems
    assert any("westus went live before the primary" in p for p in problems), problems


def test_the_demo_audit_flags_a_wave_that_started_before_the_previous_one_soaked() -> None:
    records = [
        _create("eastus", "2025-01-01T00:00:01+00:00"),
        _create("westus", "2025-01-01T00:00:16+00:00"),
        _create("westeurope", "2025-01-01T00:00:20+00:00"),
    ]
    doc = {
        "digest": DIGEST,
        "regions": [
            {
                "region": "eastus",
                "primary": True,
                "wave": 0,
                "live_at": "2025-01-01T00:00:10Z",
                "soak_until": "2025-01-01T00:00:15Z",
            },
            {
                "region": "westus",
                "primary": False,
                "wave": 1,
                "live_at": "2025-01-01T00:00:25Z",
                "soak_until": "2025-01-01T00:00:30Z",
            },
            {
                "region": "westeurope",
                "primary": False,
                "wave": 2,
                "live_at": "2025-01-01T00:00:35Z",
                "soak_until": "2025-01-01T00:00:40Z",
            },
        ],
    }
    problems = audit_problems(records, doc)
    # westus started after the primary soaked; westeurope before westus had even served.
    assert [p for p in problems if "soaked" in p] == [
        "westeurope (wave 2): deployment created at 2025-01-01T00:00:20+00:00, before westus "
        "(wave 1) had served and soaked"
    ], problems
