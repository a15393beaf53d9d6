"""The start-up report: every configuration problem is logged, and nothing raises."""

from __future__ import annotations

import logging
import os

import pytest

from shared.entrypoints.startup import report_configuration


def test_a_misconfiguration_is_reported_line_by_line_without_raising(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in [n for n in os.environ if n.startswith("GEOROLLOUT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GEOROLLOUT_REGIONS", "eastus,eastus")
    with caplog.at_level(logging.ERROR, logger="georollout.startup"):
        assert report_configuration() is False
    text = caplog.text
    assert "misconfigured" in text
    assert "GEOROLLOUT_REGISTRY_LOGIN_SERVER" in text
    assert "GEOROLLOUT_REGIONS" in text
    assert len(caplog.records) >= 3


ACCOUNT_KEY = "c2VjcmV0LWtleS1ub2JvZHktc2hvdWxkLXNlZQ+/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
WORKSPACE_ID = (
    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml"
    "/providers/Microsoft.MachineLearningServices/workspaces/ws-eastus"
)


def azure_settings(**changes: str) -> dict[str, str]:
    """Valid settings as `azd up` writes them, with `changes` ("" removes a setting)."""
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


LOCAL = {
    "GEOROLLOUT_REGISTRY_LOGIN_SERVER": "127.0.0.1:5001",
    "GEOROLLOUT_REGION_EASTUS_REGISTRY_ENDPOINT": "https://127.0.0.1:5001",
    "GEOROLLOUT_ARM_ENDPOINT": "https://127.0.0.1:8443/",
}


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="acr-login-server-and-public-arm"),
        pytest.param(
            {
                "GEOROLLOUT_REGISTRY_LOGIN_SERVER": "127.0.0.1:5001",
                "GEOROLLOUT_REGION_EASTUS_REGISTRY_ENDPOINT": "https://127.0.0.1:5001",
            },
            id="public-arm-only",
        ),
        pytest.param({"GEOROLLOUT_ARM_ENDPOINT": "https://127.0.0.1:8443/"}, id="acr-only"),
    ],
)
def test_an_unset_webhook_token_against_azure_is_a_warning_naming_the_setting_and_the_risk(
    caplog: pytest.LogCaptureFixture, changes: dict[str, str]
) -> None:
    with caplog.at_level(logging.INFO, logger="georollout.startup"):
        assert report_configuration(azure_settings(GEOROLLOUT_ACR_WEBHOOK_TOKEN="", **changes))
    warnings = warnings_of(caplog)
    assert len(warnings) == 1, caplog.text
    assert "GEOROLLOUT_ACR_WEBHOOK_TOKEN" in warnings[0]
    assert "/api/hooks/acr" in warnings[0] and "forged" in warnings[0]


def test_a_set_webhook_token_against_azure_is_not_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="georollout.startup"):
        assert report_configuration(azure_settings())
    assert warnings_of(caplog) == []
    assert "webhook-token-value-0123456789" not in caplog.text


def test_an_unset_webhook_token_locally_is_not_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="georollout.startup"):
        assert report_configuration(azure_settings(GEOROLLOUT_ACR_WEBHOOK_TOKEN="", **LOCAL))
    assert warnings_of(caplog) == []


def test_a_connection_string_pasted_into_the_table_endpoint_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pasted = (
        "DefaultEndpointsProtocol=https;AccountName=contosostore;"
        f"AccountKey={ACCOUNT_KEY};EndpointSuffix=core.windows.net"
    )
    with caplog.at_level(logging.INFO, logger="georollout.startup"):
        assert report_configuration(azure_settings(GEOROLLOUT_TABLE_ENDPOINT=pasted)) is False
    assert "GEOROLLOUT_TABLE_ENDPOINT" in caplog.text
    assert ACCOUNT_KEY not in caplog.text
    assert "<redacted>" in caplog.text


@pytest.mark.parametrize(("setting", "level"), [("", logging.WARNING), ("debug", logging.DEBUG)])
def test_the_azure_sdk_logs_problems_only_unless_asked(
    monkeypatch: pytest.MonkeyPatch, setting: str, level: int
) -> None:
    sdk = logging.getLogger("azure")
    monkeypatch.setattr(sdk, "level", logging.NOTSET)  # restored after the test
    assert report_configuration(azure_settings(GEOROLLOUT_AZURE_SDK_LOG_LEVEL=setting))
    assert sdk.level == level
    # Nothing below the level reaches a handler: the HTTP policy's per-request records.
    policy = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    assert policy.isEnabledFor(logging.INFO) is (level <= logging.INFO)


@pytest.mark.parametrize(("setting", "shown"), [("", False), ("info", True)])
def test_azure_ai_ml_s_own_loggers_follow_the_setting(setting: str, shown: bool) -> None:
    """azure-ai-ml sets INFO on loggers of its own (with a stderr handler) when imported:
    "Check: endpoint ... exists" and the polling dots of every deployment."""
    import azure.ai.ml  # noqa: F401

    own = ["azure.ai.ml", "azure.ai.ml._utils._endpoint_utils"]
    saved = {name: logging.getLogger(name).level for name in ["azure", *own]}
    try:
        for name in own:
            logging.getLogger(name).setLevel(logging.INFO)  # as azure-ai-ml leaves them
        assert report_configuration(azure_settings(GEOROLLOUT_AZURE_SDK_LOG_LEVEL=setting))
        enabled = [logging.getLogger(name).isEnabledFor(logging.INFO) for name in own]
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)  # (setLevel also clears the level cache)
    assert enabled == [shown] * 2


def test_an_unknown_sdk_log_level_is_a_configuration_problem(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="georollout.startup"):
        assert not report_configuration(azure_settings(GEOROLLOUT_AZURE_SDK_LOG_LEVEL="LOUD"))
    assert "GEOROLLOUT_AZURE_SDK_LOG_LEVEL" in caplog.text and "'LOUD'" in caplog.text
