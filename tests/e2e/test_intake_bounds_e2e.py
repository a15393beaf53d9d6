"""Intake bounds through the real routes on the local host: too many events in one envelope,
and JSON nested too deep, are refused with a precise 4xx (or, for Event Grid, acknowledged
as invalid) and record nothing."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from devenv.stack import Stack
from shared.intake.validation import MAX_EVENTS_PER_ENVELOPE, MAX_JSON_DEPTH
from tests.e2e.local_api import EVENTGRID_WEBHOOK, FunctionApp
from tests.e2e.test_rollout_e2e import acr_push_webhook

NOTIFICATION = {"aeg-event-type": "Notification"}


def random_digest() -> str:
    return "sha256:" + hashlib.sha256(uuid.uuid4().bytes).hexdigest()


def nested(depth: int) -> Any:
    """`depth` arrays inside one another, built without recursion."""
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def distribution_event(action: str, repository: str, registry_host: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "action": action,
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": 400,
            "digest": random_digest(),
            "length": 400,
            "repository": repository,
            "tag": "v1",
        },
        "request": {"id": str(uuid.uuid4()), "host": registry_host, "method": "PUT"},
    }


def test_an_envelope_over_the_event_limit_is_refused_whole_and_records_nothing(
    app: FunctionApp, stack: Stack
) -> None:
    repository = "bounds/too-many-events"
    host = stack.env.primary.registry_host
    envelope = {
        "events": [
            distribution_event("push", repository, host) for _ in range(MAX_EVENTS_PER_ENVELOPE + 1)
        ]
    }
    status, body = app.post_json("/api/hooks/acr", envelope)
    assert status == 413, (status, body)
    assert body["error"]["code"] == "too_many_events", body
    assert body["error"]["field"] == "events", body
    assert f"at most {MAX_EVENTS_PER_ENVELOPE}" in body["error"]["message"], body
    assert app.rollouts(repository=repository) == []


def test_an_envelope_at_the_event_limit_is_accepted(app: FunctionApp, stack: Stack) -> None:
    # Pulls: well-formed events that record nothing, so the limit is all this measures.
    host = stack.env.primary.registry_host
    envelope = {
        "events": [
            distribution_event("pull", "bounds/at-the-limit", host)
            for _ in range(MAX_EVENTS_PER_ENVELOPE)
        ]
    }
    status, body = app.post_json("/api/hooks/acr", envelope)
    assert status == 200, (status, body)
    assert body["rollouts"] == [] and len(body["ignored"]) == MAX_EVENTS_PER_ENVELOPE, body


def test_json_nested_100000_deep_is_a_400_naming_the_nesting(app: FunctionApp) -> None:
    status, body = app.post_bytes("/api/hooks/acr", b"[" * 100_000 + b"]" * 100_000)
    assert status == 400, (status, body)
    assert body["error"]["code"] == "invalid_json", body
    assert body["error"]["field"] == "body", body
    assert "100000 levels deep" in body["error"]["message"], body


def test_a_webhook_nested_past_the_limit_is_refused_and_records_nothing(
    app: FunctionApp,
) -> None:
    repository = "bounds/deep-webhook"
    webhook = acr_push_webhook(repository, random_digest(), "v1")
    webhook["target"]["annotations"] = nested(MAX_JSON_DEPTH)  # the body nests 66 deep
    status, body = app.post_json("/api/hooks/acr", webhook)
    assert status == 400, (status, body)
    assert body["error"]["code"] == "invalid_json", body
    assert "at most 64" in body["error"]["message"], body
    assert app.rollouts(repository=repository) == []


def test_an_event_grid_event_nested_past_the_limit_is_acknowledged_and_records_nothing(
    app: FunctionApp, stack: Stack
) -> None:
    repository = "bounds/deep-event"
    data = acr_push_webhook(repository, random_digest(), "v1")
    data["request"]["host"] = stack.env.primary.registry_host
    data["target"]["annotations"] = nested(MAX_JSON_DEPTH)
    event = {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/x/resourceGroups/y/providers/Microsoft.ContainerRegistry/registries/z",
        "subject": f"{repository}:v1",
        "eventType": "Microsoft.ContainerRegistry.ImagePushed",
        "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "data": data,
        "dataVersion": "1.0",
        "metadataVersion": "1",
    }
    status, body = app.post_bytes(
        EVENTGRID_WEBHOOK, json.dumps([event]).encode(), headers=NOTIFICATION
    )
    # Invalid events are logged and acknowledged: a 5xx would make Event Grid retry for a day.
    assert status == 202, (status, body)
    assert app.rollouts(repository=repository) == []
