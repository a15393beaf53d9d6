"""The two health answers: the anonymous one carries statuses only, the detail (function key)
carries messages, endpoints and ids with every secret redacted."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest

from shared.config import load_config
from shared.entrypoints import http_routes
from shared.service.health import (
    REDACTED,
    Check,
    HealthReport,
    Redactor,
    RegionChecks,
    webhook_token_check,
)

ACCOUNT_KEY = "c2VjcmV0LWtleS1ub2JvZHktc2hvdWxkLXNlZQ+/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
PASTED_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=https;AccountName=contosostore;"
    f"AccountKey={ACCOUNT_KEY};EndpointSuffix=core.windows.net"
)
WORKSPACE_ID = (
    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml"
    "/providers/Microsoft.MachineLearningServices/workspaces/ws-eastus"
)
REGISTRY_ENDPOINT = "https://contoso.eastus.geo.azurecr.io"


def azure_settings(**changes: str) -> dict[str, str]:
    """A valid configuration as in Azure (no CA bundle, public ARM, an ACR login server)."""
    settings = {
        "GEOROLLOUT_TABLE_ENDPOINT": "https://contosostore.table.core.windows.net",
        "GEOROLLOUT_REGISTRY_LOGIN_SERVER": "contoso.azurecr.io",
        "GEOROLLOUT_REGIONS": "eastus",
        "GEOROLLOUT_REGION_EASTUS_WORKSPACE_ID": WORKSPACE_ID,
        "GEOROLLOUT_EVENTS_TOPIC_ENDPOINT": "https://topic.eastus-1.eventgrid.azure.net/api/events",
        "GEOROLLOUT_ACR_WEBHOOK_TOKEN": "webhook-token-value-0123456789",
    }
    settings.update(changes)
    return {k: v for k, v in settings.items() if v}


def report(
    *,
    registry: Check | None = None,
    webhook: Check | None = None,
) -> HealthReport:
    return HealthReport(
        checked_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        configuration=Check(ok=True),
        table=Check(ok=True, facts=(("table", "rollouts"),)),
        regions=(
            (
                "eastus",
                RegionChecks(
                    registry=registry or Check(ok=True, facts=(("endpoint", REGISTRY_ENDPOINT),)),
                    workspace=Check(ok=True, facts=(("id", WORKSPACE_ID),)),
                ),
            ),
        ),
        webhook_token=webhook or Check(ok=True),
    )


def test_the_public_document_has_the_contract_shape_and_statuses_only() -> None:
    failing = Check(
        ok=False,
        message="cannot reach contoso.eastus.geo.azurecr.io: connection refused",
        facts=(("endpoint", REGISTRY_ENDPOINT),),
    )
    document = report(registry=failing).public_document()
    assert document == {
        "status": "degraded",
        "checks": {
            "table": {"status": "ok"},
            "regions": {"eastus": {"registry": {"status": "error"}, "workspace": {"status": "ok"}}},
        },
    }


def test_the_detail_document_carries_messages_endpoints_and_ids() -> None:
    failing = Check(
        ok=False, message="connection refused", facts=(("endpoint", REGISTRY_ENDPOINT),)
    )
    document = report(registry=failing).detail_document()
    assert document["status"] == "degraded"
    assert document["checked_at"] == "2026-01-02T03:04:05Z"
    region = document["checks"]["regions"]["eastus"]
    assert region["registry"] == {
        "status": "error",
        "message": "connection refused",
        "endpoint": REGISTRY_ENDPOINT,
    }
    assert region["workspace"] == {"status": "ok", "id": WORKSPACE_ID}
    assert document["checks"]["configuration"] == {"status": "ok"}


def test_an_unprotected_webhook_against_azure_degrades_and_only_the_detail_says_why() -> None:
    config = load_config(azure_settings(GEOROLLOUT_ACR_WEBHOOK_TOKEN=""))
    check = webhook_token_check(config)
    assert not check.ok
    assert check.message is not None and "GEOROLLOUT_ACR_WEBHOOK_TOKEN" in check.message

    unprotected = report(webhook=check)
    public = unprotected.public_document()
    assert public["status"] == "degraded"
    assert "webhook_token" not in json.dumps(public)
    assert "GEOROLLOUT_ACR_WEBHOOK_TOKEN" not in json.dumps(public)
    detail = unprotected.detail_document()
    assert detail["status"] == "degraded"
    assert detail["checks"]["webhook_token"]["status"] == "error"
    assert "GEOROLLOUT_ACR_WEBHOOK_TOKEN" in detail["checks"]["webhook_token"]["message"]


def test_a_set_webhook_token_keeps_the_status_ok_and_is_never_shown() -> None:
    settings = azure_settings()
    config = load_config(settings)
    protected = report(webhook=webhook_token_check(config))
    assert protected.public_document()["status"] == "ok"
    detail = protected.detail_document()
    assert detail["checks"]["webhook_token"] == {"status": "ok"}
    assert settings["GEOROLLOUT_ACR_WEBHOOK_TOKEN"] not in json.dumps(detail)


def test_locally_an_unset_webhook_token_is_fine() -> None:
    local = azure_settings(
        GEOROLLOUT_ACR_WEBHOOK_TOKEN="",
        GEOROLLOUT_REGISTRY_LOGIN_SERVER="127.0.0.1:5001",
        GEOROLLOUT_REGION_EASTUS_REGISTRY_ENDPOINT="https://127.0.0.1:5001",
        GEOROLLOUT_ARM_ENDPOINT="https://127.0.0.1:8443/",
    )
    assert webhook_token_check(load_config(local)).ok


def test_the_redactor_replaces_secret_settings_and_credentials_however_they_are_quoted() -> None:
    environ = {
        "GEOROLLOUT_ACR_WEBHOOK_TOKEN": "tok'en-with-quote",
        "GEOROLLOUT_EVENTS_TOPIC_KEY": "topic-key-0123456789",
        "GEOROLLOUT_TABLE_ENDPOINT": PASTED_CONNECTION_STRING,
        "GEOROLLOUT_TABLE_NAME": "rollouts",
    }
    redact = Redactor(environ)
    text = (
        f"a: {environ['GEOROLLOUT_ACR_WEBHOOK_TOKEN']!r}; b: topic-key-0123456789; "
        f"c: must be an https URL, got {PASTED_CONNECTION_STRING!r}; "
        "d: https://x.blob.core.windows.net/c?sv=2022&sig=abcDEF%2B123; table rollouts"
    )
    redacted = redact(text)
    for secret in ("tok'en", "topic-key-0123456789", ACCOUNT_KEY, "abcDEF%2B123"):
        assert secret not in redacted, redacted
    assert redacted.count(REDACTED) >= 4
    # A value that is not secret stays readable.
    assert "table rollouts" in redacted


# --- through the HTTP entrypoints -------------------------------------------------------


@pytest.fixture
def fresh_health_cache() -> Iterator[None]:
    http_routes.HEALTH_CACHE.clear()
    yield
    http_routes.HEALTH_CACHE.clear()


def use_settings(monkeypatch: pytest.MonkeyPatch, settings: dict[str, str]) -> None:
    for name in [n for n in os.environ if n.startswith("GEOROLLOUT_")]:
        monkeypatch.delenv(name)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)


def call(route: Any, url: str) -> tuple[int, str]:
    request = func.HttpRequest(method="GET", url=url, body=b"", params={"detail": "true"})
    response: func.HttpResponse = asyncio.run(route(request))
    return response.status_code, response.get_body().decode()


def test_a_connection_string_pasted_into_the_table_endpoint_never_appears_in_either_answer(
    monkeypatch: pytest.MonkeyPatch, fresh_health_cache: None
) -> None:
    use_settings(monkeypatch, azure_settings(GEOROLLOUT_TABLE_ENDPOINT=PASTED_CONNECTION_STRING))

    status, public_text = call(http_routes.health, "/api/health?detail=true")
    assert status == 200, public_text
    assert json.loads(public_text) == {
        "status": "degraded",
        "checks": {"configuration": {"status": "error"}},
    }

    status, detail_text = call(http_routes.health_detail, "/api/health/detail")
    assert status == 200, detail_text
    detail = json.loads(detail_text)
    assert detail["status"] == "degraded"
    problems = detail["checks"]["configuration"]["problems"]
    assert any(p.startswith("GEOROLLOUT_TABLE_ENDPOINT:") for p in problems), problems
    for text in (public_text, detail_text):
        assert ACCOUNT_KEY not in text
        assert "AccountKey=" + ACCOUNT_KEY[:10] not in text
        assert PASTED_CONNECTION_STRING not in text


def test_secret_setting_values_never_reach_the_detail_even_in_problems(
    monkeypatch: pytest.MonkeyPatch, fresh_health_cache: None
) -> None:
    token = "webhook-token-value-0123456789"
    # The token pasted into a setting whose problem message echoes its value.
    use_settings(
        monkeypatch,
        azure_settings(GEOROLLOUT_ACR_WEBHOOK_TOKEN=token, GEOROLLOUT_TABLE_NAME=token),
    )
    status, detail_text = call(http_routes.health_detail, "/api/health/detail")
    assert status == 200, detail_text
    assert "GEOROLLOUT_TABLE_NAME" in detail_text
    assert token not in detail_text
    assert REDACTED in detail_text
