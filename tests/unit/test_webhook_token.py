"""The ACR webhook token: checked (in constant time) only when the setting is set, and its
absence called a risk when georollout runs against Azure."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import azure.functions as func
import pytest

from shared.config import Config, load_config
from shared.entrypoints.http_routes import check_webhook_token
from shared.errors import UnauthorizedError
from shared.service.health import against_azure, unprotected_webhook


def request(headers: dict[str, str]) -> func.HttpRequest:
    return func.HttpRequest(method="POST", url="/api/hooks/acr", headers=headers, body=b"{}")


def app_with(token: str | None) -> Any:
    return SimpleNamespace(config=SimpleNamespace(acr_webhook_token=token))


def test_no_token_configured_accepts_any_request() -> None:
    check_webhook_token(app_with(None), request({}))


def test_the_configured_token_as_a_bearer_is_accepted() -> None:
    check_webhook_token(app_with("s3cret"), request({"Authorization": "Bearer s3cret"}))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "s3cret"},
        {"Authorization": "Basic s3cret"},
        {"Authorization": "Bearer s3cret-and-more"},
    ],
)
def test_a_missing_or_wrong_token_is_refused_with_401(headers: dict[str, str]) -> None:
    with pytest.raises(UnauthorizedError) as refused:
        check_webhook_token(app_with("s3cret"), request(headers))
    assert refused.value.http_status == 401
    assert "s3cret" not in refused.value.message


# --- is the webhook route unprotected against Azure? ------------------------------------

WORKSPACE_ID = (
    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml"
    "/providers/Microsoft.MachineLearningServices/workspaces/ws-eastus"
)


def config_with(login_server: str, arm_endpoint: str | None, token: str | None) -> Config:
    settings = {
        "GEOROLLOUT_TABLE_ENDPOINT": "https://contosostore.table.core.windows.net",
        "GEOROLLOUT_REGISTRY_LOGIN_SERVER": login_server,
        "GEOROLLOUT_REGIONS": "eastus",
        "GEOROLLOUT_REGION_EASTUS_REGISTRY_ENDPOINT": "https://replica.example.net",
        "GEOROLLOUT_REGION_EASTUS_WORKSPACE_ID": WORKSPACE_ID,
        "GEOROLLOUT_EVENTS_TOPIC_ENDPOINT": "https://topic.example.net/api/events",
    }
    if arm_endpoint:
        settings["GEOROLLOUT_ARM_ENDPOINT"] = arm_endpoint
    if token:
        settings["GEOROLLOUT_ACR_WEBHOOK_TOKEN"] = token
    return load_config(settings)


@pytest.mark.parametrize(
    ("login_server", "arm_endpoint", "azure"),
    [
        ("contoso.azurecr.io", None, True),
        ("Contoso.AzureCR.io", "https://127.0.0.1:8443/", True),
        ("contoso.azurecr.cn", "https://127.0.0.1:8443/", True),
        ("127.0.0.1:5001", None, True),  # unset ARM endpoint: the public cloud's
        ("127.0.0.1:5001", "https://management.usgovcloudapi.net/", True),
        ("127.0.0.1:5001", "https://127.0.0.1:8443/", False),
        ("registry.example.net", "https://arm.example.net/", False),
    ],
)
def test_against_azure_is_told_from_the_login_server_or_the_arm_endpoint(
    login_server: str, arm_endpoint: str | None, azure: bool
) -> None:
    config = config_with(login_server, arm_endpoint, token=None)
    assert against_azure(config) is azure
    assert (unprotected_webhook(config) is not None) is azure


def test_a_set_token_is_never_a_risk() -> None:
    assert unprotected_webhook(config_with("contoso.azurecr.io", None, token="s3cret")) is None
