"""Parsing real sample payloads from Event Grid (both schemas), ACR webhooks and Distribution."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.push import DeleteNotice, NoticeSource, PushNotice
from shared.errors import InvalidInputError
from shared.intake.acr_webhook import parse_acr_webhook
from shared.intake.distribution import parse_distribution_envelope
from shared.intake.eventgrid import parse_eventgrid_event
from shared.intake.hooks import parse_hook_payload
from shared.intake.notices import Ignored
from tests.unit.intake import samples


@pytest.mark.parametrize("event", [samples.eventgrid_schema_push(), samples.cloudevent_push()])
def test_image_pushed_in_both_schemas(event: dict[str, object]) -> None:
    notice = parse_eventgrid_event(event)
    assert notice == PushNotice(
        registry="demo.azurecr.io",
        repository="aci-helloworld",
        digest=samples.DIGEST,
        source=NoticeSource.EVENTGRID,
        tag="v1",
        media_type="application/vnd.docker.distribution.manifest.v2+json",
        size=3023,
        pushed_at=datetime(2018, 4, 25, 21, 39, 47, 276585, tzinfo=UTC),
        region_hint=None,
        event_id="31c51664-e5bd-416a-a5df-e5206bc47ed0",
    )


def test_configured_registry_and_region_win() -> None:
    event = samples.cloudevent_push()
    event["data"]["location"] = "eastus"
    notice = parse_eventgrid_event(event, registry="Contoso.azurecr.io")
    assert isinstance(notice, PushNotice)
    assert notice.registry == "contoso.azurecr.io"
    assert notice.region_hint == "eastus"
    assert parse_eventgrid_event(event, region="westus").region_hint == "westus"  # type: ignore[union-attr]


def test_event_time_is_used_when_data_has_no_timestamp() -> None:
    event = samples.eventgrid_schema_push()
    del event["data"]["timestamp"]
    notice = parse_eventgrid_event(event)
    assert isinstance(notice, PushNotice)
    assert notice.pushed_at == datetime(2018, 4, 25, 21, 39, 47, 654961, tzinfo=UTC)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (samples.eventgrid_chart_pushed(), "ChartPushed creates no rollout"),
        (
            {"id": "x", "eventType": "Microsoft.Storage.BlobCreated", "data": {}},
            "unsupported event type",
        ),
        (
            {
                "id": "x",
                "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                "data": {"validationCode": "c"},
            },
            "subscription validation",
        ),
    ],
)
def test_other_event_types_are_ignored(event: dict[str, object], reason: str) -> None:
    result = parse_eventgrid_event(event)
    assert isinstance(result, Ignored)
    assert reason in result.reason


def test_acr_webhook_push_and_regional_hint() -> None:
    notice = parse_acr_webhook(samples.acr_webhook_push(), region="westus")
    assert isinstance(notice, PushNotice)
    assert (notice.registry, notice.repository, notice.tag, notice.size) == (
        "myregistry.azurecr.io",
        "hello-world",
        "v1",
        524,
    )
    assert notice.source is NoticeSource.ACR_WEBHOOK
    assert notice.region_hint == "westus"


@pytest.mark.parametrize(
    "action", ["ping", "delete", "chart_push", "chart_delete", "quarantine", "something_new"]
)
def test_acr_webhook_other_actions_are_ignored(action: str) -> None:
    result = parse_acr_webhook(samples.acr_webhook(action))
    assert isinstance(result, Ignored)
    assert result.kind == action


def test_acr_ping_without_target_is_ignored() -> None:
    assert isinstance(
        parse_acr_webhook({"id": "p", "timestamp": "2024-01-01T00:00:00Z", "action": "ping"}),
        Ignored,
    )


def test_distribution_envelope_keeps_manifest_pushes_only() -> None:
    results = parse_distribution_envelope(samples.distribution_envelope(), region="westus")
    assert [type(r).__name__ for r in results] == ["Ignored", "PushNotice", "Ignored"]
    blob, push, pull = results
    assert isinstance(blob, Ignored) and blob.kind == "blob"
    assert isinstance(pull, Ignored) and pull.kind == "pull"
    assert isinstance(push, PushNotice)
    assert push.registry == "127.0.0.1:5001"
    assert push.repository == "models/llm" and push.tag == "v2"
    assert push.pushed_at == datetime(2025, 3, 1, 12, 0, 1, 500000, tzinfo=UTC)
    assert push.source is NoticeSource.DISTRIBUTION
    assert push.region_hint == "westus"


def test_hook_dispatch_by_shape() -> None:
    assert len(parse_hook_payload(samples.distribution_envelope())) == 3
    (single,) = parse_hook_payload(samples.acr_webhook_push())
    assert isinstance(single, PushNotice)


def test_envelope_strictness() -> None:
    envelope = samples.distribution_envelope()
    envelope["events"][1]["target"]["digest"] = "sha256:XYZ"
    with pytest.raises(InvalidInputError) as caught:
        parse_distribution_envelope(envelope)
    assert caught.value.field == "events[1].target.digest"
    lenient = parse_distribution_envelope(envelope, strict=False)
    assert isinstance(lenient[1], Ignored) and "events[1].target.digest" in lenient[1].reason
    with pytest.raises(InvalidInputError) as caught:
        parse_distribution_envelope({"events": "nope"})
    assert caught.value.field == "events"
    assert parse_distribution_envelope({"events": []}) == []


def test_a_manifest_delete_becomes_a_delete_notice_in_every_schema() -> None:
    from_eventgrid = parse_eventgrid_event(samples.cloudevent_image_deleted())
    assert isinstance(from_eventgrid, DeleteNotice)
    assert (from_eventgrid.registry, from_eventgrid.repository, from_eventgrid.digest) == (
        "demo.azurecr.io",
        "aci-helloworld",
        samples.DIGEST,
    )
    webhook = samples.acr_webhook("delete")
    del webhook["target"]["tag"]
    from_webhook = parse_acr_webhook(webhook, registry="contoso.azurecr.io")
    assert isinstance(from_webhook, DeleteNotice)
    assert from_webhook.registry == "contoso.azurecr.io"
    envelope = {
        "events": [
            {
                "id": "d1",
                "action": "delete",
                "target": {"digest": samples.DIGEST, "repository": "models/llm"},
                "request": {"host": "127.0.0.1:5001"},
            },
            {
                "id": "d2",
                "action": "delete",
                "target": {"repository": "models/llm", "tag": "v1"},
                "request": {"host": "127.0.0.1:5001"},
            },
        ]
    }
    manifest, tag = parse_distribution_envelope(envelope)
    assert isinstance(manifest, DeleteNotice) and manifest.repository == "models/llm"
    assert isinstance(tag, Ignored)


def test_a_tag_delete_and_an_image_deleted_without_digest_create_nothing() -> None:
    assert isinstance(parse_acr_webhook(samples.acr_webhook("delete")), Ignored)
    event = samples.cloudevent_image_deleted()
    event["data"]["target"] = {"repository": "aci-helloworld", "tag": "v1"}
    assert isinstance(parse_eventgrid_event(event), Ignored)
