"""Each trigger of the function app on the local host, through its real route: the CloudEvents
form of ImagePushed, invalid events acknowledged, regional hints that only a probe can confirm,
and the status API's errors and paging."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from devenv.config import LOCAL_REGISTRY_RESOURCE_ID
from devenv.stack import Stack
from tests.e2e.local_api import FunctionApp, http_request, poll
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
    doc = app.rollout_of(repository, digest)
    assert doc is not None
    assert doc["tags"] == ["v7"]
    assert doc["state"] == "replicating"
    # The digest is in no replica: probes answered 404, so nothing is replicated.
    assert all(r["replicated_at"] is None for r in doc["regions"]), doc


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
    doc = app.rollout_of(repository, digest)
    assert doc is not None
    westus = next(r for r in doc["regions"] if r["region"] == "westus")
    # Probed during the request (the hint), and the replica said 404: still awaiting.
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
    doc = app.rollout_of(repository, digest)
    assert doc is not None and doc["tags"] == ["v2"]


def test_status_api_errors_and_paging(app: FunctionApp) -> None:
    status, body = app.get("/api/rollouts/no-such-rollout")
    assert status == 404 and body["error"]["code"], (status, body)
    status, body = app.get("/api/rollouts?limit=0")
    assert status == 400 and body["error"]["field"] == "limit", (status, body)
    status, body = app.get("/api/rollouts?state=bogus")
    assert status == 400 and body["error"]["field"] == "state", (status, body)

    for _ in range(2):
        app.post_json("/api/hooks/acr", acr_push_webhook("models/paging", random_digest(), "v1"))
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
