"""The ACR webhook token: checked (in constant time) only when the setting is set."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import azure.functions as func
import pytest

from shared.entrypoints.http_routes import check_webhook_token
from shared.errors import UnauthorizedError


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
