"""HTTP triggers: translate a request into one service call, and errors into the contract's JSON."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import azure.functions as func

from shared.errors import ConfigurationError, GeorolloutError, InvalidInputError, UnauthorizedError
from shared.intake.hooks import parse_hook_payload
from shared.intake.validation import check_body_size
from shared.service import status
from shared.service.intake import check_regions, record_notices
from shared.service.runtime import Services, services

log = logging.getLogger("georollout.http")


def json_response(body: Any, status_code: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status_code, mimetype="application/json")


async def _answer(work: Callable[[], Awaitable[func.HttpResponse]]) -> func.HttpResponse:
    """Run `work`; the project's errors become their status and JSON body, anything else a 500."""
    try:
        return await work()
    except GeorolloutError as error:
        if error.http_status >= 500:
            log.error("%s: %s", error.code, error.message)
        return json_response(error.to_body(), error.http_status)
    except Exception:
        log.exception("unexpected error")
        return json_response(
            {
                "error": {
                    "code": "internal_error",
                    "message": "internal error; see the function log",
                }
            },
            500,
        )


def check_webhook_token(app: Services, req: func.HttpRequest) -> None:
    expected = app.config.acr_webhook_token
    if not expected:
        return
    offered = req.headers.get("Authorization", "")
    scheme, _, token = offered.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise UnauthorizedError("missing or wrong webhook token (Authorization: Bearer <token>)")


def _json_body(req: func.HttpRequest) -> Any:
    body = req.get_body()
    check_body_size(len(body))
    try:
        return json.loads(body)
    except ValueError as error:
        raise InvalidInputError("body", f"not valid JSON: {error}", code="invalid_json") from None


async def acr_hook(req: func.HttpRequest) -> func.HttpResponse:
    async def work() -> func.HttpResponse:
        app = await services()
        check_webhook_token(app, req)
        payload = _json_body(req)
        region = req.params.get("region") or None
        notices = parse_hook_payload(
            payload, registry=app.config.registry_login_server, region=region
        )
        check_regions(app, notices)
        result = await record_notices(app, notices, replication_hints=region is not None)
        return json_response({"rollouts": list(result.recorded), "ignored": list(result.ignored)})

    return await _answer(work)


async def list_rollouts(req: func.HttpRequest) -> func.HttpResponse:
    async def work() -> func.HttpResponse:
        app = await services()
        page = await status.list_rollouts(
            app,
            repository=req.params.get("repository") or None,
            state=req.params.get("state") or None,
            limit=status.parse_limit(req.params.get("limit")),
            continuation=req.params.get("continuation") or None,
        )
        return json_response(page)

    return await _answer(work)


async def get_rollout(req: func.HttpRequest) -> func.HttpResponse:
    async def work() -> func.HttpResponse:
        app = await services()
        return json_response(await status.get_rollout(app, req.route_params.get("id", "")))

    return await _answer(work)


async def health(req: func.HttpRequest) -> func.HttpResponse:
    async def work() -> func.HttpResponse:
        try:
            app = await services()
        except ConfigurationError as error:
            checks = {
                "configuration": {
                    "status": "error",
                    "message": error.message,
                    "problems": list(error.problems),
                }
            }
            return json_response({"status": "degraded", "checks": checks})
        return json_response(await status.health(app))

    return await _answer(work)
