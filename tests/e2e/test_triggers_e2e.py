"""Each trigger of the function app on the local host, through its real route: the CloudEvents
form of ImagePushed, invalid events acknowledged, regional hints that only a probe can confirm,
the status API's errors and paging, unknown list filters refused, and the two health routes."""

from __future__ import annotations

import hashlib
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from devenv.config import LOCAL_REGISTRY_RESOURCE_ID
from devenv.stack import Stack
from tests.e2e.local_api import FunctionApp, http_request, parse_time, poll
from tests.e2e.test_rollout_e2e import acr_push_webhook

EVENTGRID_WEBHOOK = "/runtime/webhooks/eventgrid?functionName=on_image_pushed"
NOTIFICATION = {"aeg-event-type": "Notification"}


def random_digest() -> str:
    return "sha256:" + hashlib.sha256(uuid.uuid4().bytes).hexdigest()


def cloud_image_pushed(
    registry_host: str, repository: str, digest: str, tag: str
) -> dict[str, Any]:
    """ImagePushed in the CloudEvents 1.0 schema, as Event Grid delivers it."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": LOCAL_REGISTRY_RESOURCE_ID,
        "type": "Microsoft.ContainerRegistry.ImagePushed",
        "subject": f"{repository}:{tag}",
        "time": now,
        "data": {
            "id": str(uuid.uuid4()),
            "timestamp": now,
            "action": "push",
            "target": {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "size": 500,
                "digest": digest,
                "length": 500,
                "repository": repository,
                "tag": tag,
            },
            "request": {"id": str(uuid.uuid4()), "host": registry_host, "method": "PUT"},
        },
    }


def test_a_cloudevents_image_pushed_records_a_rollout(app: FunctionApp, stack: Stack) -> None:
    repository, digest = "models/cloudevents-intake", random_digest()
    event = cloud_image_pushed(stack.env.primary.registry_host, repository, digest, "v7")
    status, body = app.post_json(
        EVENTGRID_WEBHOOK,
        event,
        headers={**NOTIFICATION, "Content-Type": "application/cloudevents+json; charset=utf-8"},
    )
    assert status == 202, (status, body)
    doc = app.recorded(repository, digest)
    # The tag is only claimed: no registry holds the digest, so none confirms it.
    assert doc["tags"] == [] and doc["pending_tags"] == ["v7"], doc
    assert doc["state"] == "replicating"
    # The digest is in no replica: probes answered 404, so nothing is replicated.
    assert all(r["replicated_at"] is None for r in doc["regions"]), doc


def test_an_image_pushed_from_a_replica_outside_the_regions_is_still_recorded(
    app: FunctionApp, stack: Stack
) -> None:
    repository, digest = "models/other-replica", random_digest()
    event = cloud_image_pushed(stack.env.primary.registry_host, repository, digest, "v1")
    # ACR says which replica took the push; georollout deploys to none in brazilsouth.
    event["data"]["location"] = "brazilsouth"
    status, body = app.post_json(EVENTGRID_WEBHOOK, event, headers=NOTIFICATION)
    assert status == 202, (status, body)
    doc = app.recorded(repository, digest)
    assert [r["region"] for r in doc["regions"]] == [r.name for r in stack.env.regions]


def test_an_invalid_event_is_acknowledged_and_writes_nothing(
    app: FunctionApp, stack: Stack
) -> None:
    repository = "models/invalid-event"
    event = cloud_image_pushed(stack.env.primary.registry_host, repository, "sha256:short", "v1")
    status, body = app.post_json(EVENTGRID_WEBHOOK, event, headers=NOTIFICATION)
    # Event Grid would retry a 5xx for a day: a bad event is logged and acknowledged.
    assert status == 202, (status, body)
    assert app.rollouts(repository=repository) == []


def test_the_eventgrid_route_answers_the_cloudevents_abuse_protection_request(
    app: FunctionApp,
) -> None:
    status, _ = http_request(
        app.base + EVENTGRID_WEBHOOK,
        method="OPTIONS",
        headers={"WebHook-Request-Origin": "eventgrid.azure.net"},
    )
    assert status == 200


def test_a_regional_hint_is_probed_at_once_and_cannot_mark_a_region_replicated(
    app: FunctionApp,
) -> None:
    repository, digest = "models/forged-hint", random_digest()
    status, body = app.post_json(
        "/api/hooks/acr?region=westus", acr_push_webhook(repository, digest, "v1")
    )
    assert status == 200, (status, body)

    def westus_of(doc: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = next(r for r in doc["regions"] if r["region"] == "westus")
        return found

    doc = app.recorded(repository, digest, lambda d: westus_of(d)["probe_attempts"] >= 1)
    westus = westus_of(doc)
    # Probed at once (the hint), and the replica said 404: still awaiting.
    assert westus["probe_attempts"] >= 1, westus
    assert westus["state"] == "awaiting_replication"
    assert westus["replicated_at"] is None


def test_a_hint_for_an_unknown_region_is_refused(app: FunctionApp) -> None:
    repository = "models/unknown-region"
    status, body = app.post_json(
        "/api/hooks/acr?region=mars", acr_push_webhook(repository, random_digest(), "v1")
    )
    assert status == 400, (status, body)
    assert body["error"]["field"] == "region", body
    assert app.rollouts(repository=repository) == []


def test_a_distribution_envelope_records_its_push(app: FunctionApp, stack: Stack) -> None:
    repository, digest = "models/envelope", random_digest()
    envelope = {
        "events": [
            {
                "id": str(uuid.uuid4()),
                "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "action": "push",
                "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "size": 400,
                    "digest": digest,
                    "length": 400,
                    "repository": repository,
                    "tag": "v2",
                },
                "request": {
                    "id": str(uuid.uuid4()),
                    "host": stack.env.primary.registry_host,
                    "method": "PUT",
                },
            },
            {
                "id": str(uuid.uuid4()),
                "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "action": "pull",
                "target": {
                    "mediaType": "application/octet-stream",
                    "digest": digest,
                    "repository": repository,
                },
            },
        ]
    }
    status, body = app.post_json(
        "/api/hooks/acr",
        envelope,
        headers={"Content-Type": "application/vnd.docker.distribution.events.v1+json"},
    )
    assert status == 200, (status, body)
    doc = app.recorded(repository, digest)
    assert doc["pending_tags"] == ["v2"] and doc["tags"] == [], doc


def test_status_api_errors_and_paging(app: FunctionApp) -> None:
    status, body = app.get("/api/rollouts/no-such-rollout")
    assert status == 404 and body["error"]["code"], (status, body)
    status, body = app.get("/api/rollouts?limit=0")
    assert status == 400 and body["error"]["field"] == "limit", (status, body)
    status, body = app.get("/api/rollouts?state=bogus")
    assert status == 400 and body["error"]["field"] == "state", (status, body)

    digests = [random_digest() for _ in range(2)]
    for digest in digests:
        app.post_json("/api/hooks/acr", acr_push_webhook("models/paging", digest, "v1"))
    for digest in digests:
        app.recorded("models/paging", digest)
    status, first = app.get("/api/rollouts?repository=models/paging&limit=1")
    assert status == 200 and len(first["rollouts"]) == 1 and first["continuation"], first
    status, second = app.get(
        "/api/rollouts?repository=models/paging&limit=1&continuation=" + first["continuation"]
    )
    assert status == 200 and len(second["rollouts"]) == 1, second
    assert second["rollouts"][0]["id"] != first["rollouts"][0]["id"]
    # Newest first.
    assert first["rollouts"][0]["created_at"] >= second["rollouts"][0]["created_at"]


def test_the_probe_timer_runs(app: FunctionApp) -> None:
    """The timer trigger fires on its schedule: a rollout's probe attempts keep growing."""
    repository, digest = "models/timer-driven", random_digest()
    app.post_json("/api/hooks/acr", acr_push_webhook(repository, digest, "v1"))

    def attempts() -> int:
        doc = app.rollout_of(repository, digest)
        return sum(r["probe_attempts"] for r in doc["regions"]) if doc else 0

    first = attempts()
    poll(attempts, lambda n: n > first, timeout=30, what="a timer tick to probe again")


def test_a_list_filter_the_api_does_not_know_is_refused(app: FunctionApp) -> None:
    supported = ("repository", "state", "limit", "continuation")
    for query, field in (
        ("tag=v2", "tag"),
        ("repository=models/paging&digest=" + random_digest(), "digest"),
        ("Repository=models/paging", "Repository"),  # names are exact: this filter was never read
    ):
        status, body = app.get("/api/rollouts?" + query)
        assert status == 400, (query, status, body)
        error = body["error"]
        assert error["code"] == "unknown_parameter", body
        assert error["field"] == field, body
        assert all(name in error["message"] for name in supported), body
    # Azure Functions takes the function key from `code`: accepted, and filters nothing.
    status, body = app.get("/api/rollouts?code=some-function-key&limit=1")
    assert status == 200, (status, body)
    assert "some-function-key" not in json.dumps(body)


def leaves(document: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every (path, value) at the bottom of a JSON document."""
    if isinstance(document, dict):
        return [pair for key, value in document.items() for pair in leaves(value, f"{path}.{key}")]
    return [(path, document)]


def test_the_anonymous_health_shows_statuses_only(app: FunctionApp, stack: Stack) -> None:
    for path in ("/api/health", "/api/health?detail=true"):
        status, body = app.get(path)
        assert status == 200, (path, status, body)
        assert set(body) == {"status", "checks"}, body
        assert body["status"] in ("ok", "degraded"), body
        assert sorted(body["checks"]["regions"]) == sorted(r.name for r in stack.env.regions)
        # Nothing but statuses: no endpoint, id, host name, key or error text.
        for where, value in leaves(body):
            assert where.endswith("status") and value in ("ok", "degraded", "error"), (where, body)


def test_the_health_detail_route_explains_each_check(app: FunctionApp, stack: Stack) -> None:
    status, body = app.get("/api/health/detail")
    assert status == 200, (status, body)
    regions = body["checks"]["regions"]
    for region in stack.env.regions:
        assert regions[region.name]["registry"]["endpoint"] == region.registry_url, regions
        assert regions[region.name]["workspace"]["id"] == region.workspace_id, regions
    assert body["checks"]["configuration"]["status"] == "ok", body
    # The local environment leaves the webhook token unset on purpose: not a problem here.
    assert body["checks"]["webhook_token"]["status"] == "ok", body
    assert "checked_at" in body


def test_concurrent_health_calls_share_one_round_of_checks(app: FunctionApp) -> None:
    def checked_at() -> str:
        status, body = app.get("/api/health/detail")
        assert status == 200, (status, body)
        return str(body["checked_at"])

    # Start from a round younger than 2 s, so the 10 s window cannot end mid-test.
    poll(
        checked_at,
        lambda at: datetime.now(UTC).timestamp() - parse_time(at) < 2.0,
        timeout=20,
        what="a fresh round of health checks",
    )
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: checked_at(), range(20)))
    assert len(set(answers)) == 1, answers
