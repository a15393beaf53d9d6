"""From push to live through the real parts: registries, Event Grid emulator, the function app, the ARM emulator.

Pushes go through azure-containerregistry; everything is read back through the
contract's HTTP routes and the ARM emulator's audit, never through internals.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from devenv.config import LOCAL_REGISTRY_RESOURCE_ID
from devenv.images import OCI_MANIFEST, build_helm_chart, push_image
from devenv.registries import RegistryControl
from devenv.stack import Stack
from tests.e2e.conftest import FAST_REGION, FLAKY_REGION, REGIONS, SLOW_REGION, Pushed
from tests.e2e.local_api import EVENTGRID_WEBHOOK, ArmAudit, FunctionApp, parse_time, poll

pytestmark = pytest.mark.e2e

PRIMARY = REGIONS[0]
LIVE_TIMEOUT_S = 90.0
VISIBLE_WITHIN_S = 2.0
ONE_MIB = 1024 * 1024

PushFn = Callable[[str, str], Pushed]
LogTail = Callable[[], str]


def region_of(doc: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [r for r in doc["regions"] if r["region"] == name]
    assert len(matches) == 1, f"region {name} appears {len(matches)} times in {doc['regions']}"
    region: dict[str, Any] = matches[0]
    return region


def wait_for_rollout(
    app: FunctionApp,
    pushed: Pushed,
    done: Callable[[dict[str, Any]], bool],
    *,
    what: str,
    log_tail: LogTail,
    timeout: float = LIVE_TIMEOUT_S,
) -> dict[str, Any]:
    doc = poll(
        lambda: app.rollout_of(pushed.repository, pushed.digest),
        lambda d: d is not None and done(d),
        timeout=timeout,
        what=f"{pushed.repository}@{pushed.digest[:19]} {what}",
        on_timeout=log_tail,
    )
    assert doc is not None
    return doc


def is_live(doc: dict[str, Any]) -> bool:
    return bool(doc["state"] == "live")


def is_ok(check: Any) -> bool:
    """A health check passes when it says `ok` (as a string or as its `status`)."""
    if isinstance(check, str):
        return check == "ok"
    return isinstance(check, dict) and (check.get("status") == "ok" or check.get("ok") is True)


def creates_of(audit: ArmAudit, digest: str) -> list[dict[str, Any]]:
    return [
        r
        for r in audit.records(digest=digest)
        if r["action"] in ("deployment_create", "deployment_update")
    ]


def image_pushed_event(pushed: Pushed, registry_host: str) -> dict[str, Any]:
    """The ImagePushed event ACR's system topic would deliver for `pushed` (Event Grid schema)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    size = len(pushed.image.manifest)
    return {
        "id": str(uuid.uuid4()),
        "topic": LOCAL_REGISTRY_RESOURCE_ID,
        "subject": f"{pushed.repository}:{pushed.tag}",
        "eventType": "Microsoft.ContainerRegistry.ImagePushed",
        "eventTime": now,
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "data": {
            "id": str(uuid.uuid4()),
            "timestamp": now,
            "action": "push",
            "target": {
                "mediaType": OCI_MANIFEST,
                "size": size,
                "digest": pushed.digest,
                "length": size,
                "repository": pushed.repository,
                "tag": pushed.tag,
            },
            "request": {
                "id": str(uuid.uuid4()),
                "host": registry_host,
                "method": "PUT",
                "useragent": "georollout-e2e",
            },
        },
    }


def acr_push_webhook(repository: str, digest: str, tag: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "action": "push",
        "target": {
            "mediaType": OCI_MANIFEST,
            "size": 1000,
            "digest": digest,
            "length": 1000,
            "repository": repository,
            "tag": tag,
        },
        "request": {"id": str(uuid.uuid4()), "host": "127.0.0.1", "method": "PUT"},
    }


def test_rollout_waits_for_each_replica_and_deploys_the_primary_first(
    app: FunctionApp,
    audit: ArmAudit,
    registry_control: RegistryControl,
    push: PushFn,
    host_log_tail: LogTail,
) -> None:
    registry_control.set_region(FLAKY_REGION, unavailable=True)
    try:
        pushed = push("models/scenario", "v1")
        doc = wait_for_rollout(
            app,
            pushed,
            lambda d: region_of(d, PRIMARY)["state"] == "live",
            what="live in the primary",
            log_tail=host_log_tail,
        )
        flaky = region_of(doc, FLAKY_REGION)
        assert flaky["state"] == "awaiting_replication", flaky
        assert flaky["deployment"] is None, flaky
        assert doc["state"] in ("replicating", "deploying"), doc["state"]
    finally:
        registry_control.set_region(FLAKY_REGION, unavailable=False)

    doc = wait_for_rollout(app, pushed, is_live, what="live everywhere", log_tail=host_log_tail)
    assert [r["region"] for r in doc["regions"]] == list(REGIONS)
    assert all(r["state"] == "live" and r["live_at"] for r in doc["regions"]), doc["regions"]
    assert doc["tags"] == ["v1"]

    primary = region_of(doc, PRIMARY)
    assert primary["primary"] is True
    primary_live = parse_time(primary["live_at"])
    # The slow replica really did get the image later than the fast one, and each was seen.
    fast, slow = region_of(doc, FAST_REGION), region_of(doc, SLOW_REGION)
    assert parse_time(slow["replicated_at"]) > parse_time(fast["replicated_at"]), (fast, slow)

    creates = creates_of(audit, pushed.digest)
    by_region = {r["region"]: r for r in creates}
    assert sorted(by_region) == sorted(REGIONS), creates
    early = [r for r in creates if not r["image_present_at_create"]]
    assert early == [], f"deployments created before their replica had the image: {early}"
    primary_traffic = [
        r
        for r in audit.records()
        if r["action"] == "traffic_changed"
        and r["region"] == PRIMARY
        and any(d["digest"] == pushed.digest for d in r["deployments"].values())
    ]
    assert primary_traffic, "the audit shows no traffic shift to the new primary deployment"
    primary_serving = parse_time(primary_traffic[0]["timestamp"])
    for record in creates:
        if record["region"] == PRIMARY:
            continue
        created = parse_time(record["timestamp"])
        assert created > primary_serving, (record, primary_traffic[0])
        assert created >= primary_live - 0.001, (record, primary["live_at"])
    for region in doc["regions"]:
        assert region["deployment"]["name"] == by_region[region["region"]]["deployment"]
        assert parse_time(region["deploy_started_at"]) >= parse_time(region["replicated_at"])
        assert region["eta"] is None  # nothing waits any more

    # The arrivals it saw became replication statistics: the flaky region's is one of them.
    status, stats = app.get("/api/stats")
    assert status == 200, stats
    assert [r["region"] for r in stats["regions"]] == list(REGIONS[1:])
    flaky_stats = next(r for r in stats["regions"] if r["region"] == FLAKY_REGION)
    assert doc["id"] in [s["rollout_id"] for s in flaky_stats["recent"]], flaky_stats
    assert flaky_stats["typical_latency_s"] > 0, flaky_stats


def test_a_push_is_listed_within_two_seconds(
    app: FunctionApp, push: PushFn, host_log_tail: LogTail
) -> None:
    pushed = push("models/visible-fast", "v1")
    pushed_at = time.monotonic()
    doc = poll(
        lambda: app.rollout_of(pushed.repository, pushed.digest),
        lambda d: d is not None,
        timeout=10,
        interval=0.05,
        what="the push to show up in GET /api/rollouts",
        on_timeout=host_log_tail,
    )
    visible_after = time.monotonic() - pushed_at
    print(f"push visible at GET /api/rollouts after {visible_after:.2f}s")
    assert visible_after < VISIBLE_WITHIN_S, f"visible only after {visible_after:.2f}s"
    # Listed as soon as it is recorded: the tag is claimed, then confirmed by the registry.
    assert doc is not None and doc["tags"] + doc["pending_tags"] == ["v1"], doc
    assert doc["state"] in ("replicating", "deploying", "live")


def test_the_same_event_delivered_three_times_yields_one_rollout_and_one_deployment_per_region(
    app: FunctionApp, audit: ArmAudit, stack: Stack, push: PushFn, host_log_tail: LogTail
) -> None:
    pushed = push("models/redelivered", "v1")
    event = image_pushed_event(pushed, stack.env.primary.registry_host)
    for _ in range(3):
        status, body = app.post_json(
            EVENTGRID_WEBHOOK, [event], headers={"aeg-event-type": "Notification"}
        )
        assert status == 202, (status, body)

    doc = wait_for_rollout(app, pushed, is_live, what="live everywhere", log_tail=host_log_tail)
    same_digest = [r for r in app.rollouts(repository=pushed.repository)]
    assert [r["digest"] for r in same_digest] == [pushed.digest]
    assert doc["tags"] == ["v1"]
    creates = [r for r in audit.records(digest=pushed.digest) if r["action"] == "deployment_create"]
    per_region = {name: sum(1 for r in creates if r["region"] == name) for name in REGIONS}
    assert per_region == dict.fromkeys(REGIONS, 1), creates


def test_bad_input_is_refused_and_writes_nothing(app: FunctionApp) -> None:
    before = {r["id"] for r in app.rollouts()}

    bad = acr_push_webhook("models/bad-input", "sha256:not-a-digest", "v1")
    status, body = app.post_json("/api/hooks/acr", bad)
    assert status == 400, (status, body)
    assert isinstance(body, dict) and set(body["error"]) >= {"code", "message"}, body
    assert "digest" in json.dumps(body["error"]).lower(), body

    ping = {"id": str(uuid.uuid4()), "timestamp": "2025-01-01T00:00:00Z", "action": "ping"}
    status, body = app.post_json("/api/hooks/acr", ping)
    assert status == 200, (status, body)

    oversized = b'{"events": [' + b" " * (ONE_MIB + 1) + b"]}"
    status, body = app.post_bytes("/api/hooks/acr", oversized)
    assert status == 413, (status, body)

    assert app.rollouts(repository="models/bad-input") == []
    assert {r["id"] for r in app.rollouts()} == before


def test_a_helm_chart_is_recorded_ignored_and_never_deployed(
    app: FunctionApp, audit: ArmAudit, stack: Stack, push: PushFn, host_log_tail: LogTail
) -> None:
    chart = build_helm_chart(name="demo-chart", version="1.0.0", seed=str(uuid.uuid4()))
    chart_digest = push_image(
        stack.env.primary.registry_url, "charts/demo", "1.0.0", chart, ca_path=stack.tls.ca_pem
    )
    chart_doc = poll(
        lambda: app.rollout_of("charts/demo", chart_digest),
        lambda d: d is not None and d["state"] == "ignored",
        timeout=30,
        what="the chart to be recorded ignored",
        on_timeout=host_log_tail,
    )
    assert chart_doc is not None
    # An image pushed after the chart going live proves probe ticks and deploys ran since.
    image = push("models/after-chart", "v1")
    wait_for_rollout(
        app,
        image,
        lambda d: region_of(d, PRIMARY)["state"] == "live",
        what="live in the primary",
        log_tail=host_log_tail,
    )
    chart_doc = app.rollout_of("charts/demo", chart_digest)
    assert chart_doc is not None and chart_doc["state"] == "ignored", chart_doc
    assert all(r["deployment"] is None for r in chart_doc["regions"]), chart_doc["regions"]
    assert audit.records(digest=chart_digest) == []


def test_health_names_an_unavailable_regional_registry(
    app: FunctionApp, registry_control: RegistryControl, host_log_tail: LogTail
) -> None:
    status, body = app.health()
    assert status == 200, (status, body)
    assert body["status"] == "ok", body
    assert is_ok(body["checks"]["table"]), body
    assert sorted(body["checks"]["regions"]) == sorted(REGIONS), body
    for name in REGIONS:
        checks = body["checks"]["regions"][name]
        assert is_ok(checks["registry"]) and is_ok(checks["workspace"]), (name, checks)

    registry_control.set_region(FAST_REGION, unavailable=True)
    try:
        status, body = poll(
            app.health,
            lambda answer: isinstance(answer[1], dict) and answer[1].get("status") == "degraded",
            timeout=30,
            what=f"health to be degraded with {FAST_REGION}'s registry down",
            on_timeout=host_log_tail,
        )
        assert status == 200, (status, body)
        regions = body["checks"]["regions"]
        assert not is_ok(regions[FAST_REGION]["registry"]), regions[FAST_REGION]
        assert is_ok(regions[FAST_REGION]["workspace"]), regions[FAST_REGION]
        assert all(is_ok(regions[n]["registry"]) for n in REGIONS if n != FAST_REGION), regions
        assert is_ok(body["checks"]["table"]), body
    finally:
        registry_control.set_region(FAST_REGION, unavailable=False)
    poll(
        app.health,
        lambda answer: isinstance(answer[1], dict) and answer[1].get("status") == "ok",
        timeout=30,
        what="health to be ok again",
        on_timeout=host_log_tail,
    )
