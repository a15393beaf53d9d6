"""HTTP triggers: translate a request into one service call, and errors into the contract's JSON."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import azure.functions as func

from shared.entrypoints import dashboard as dashboard_page
from shared.errors import GeorolloutError, InvalidInputError, UnauthorizedError
from shared.intake.hooks import parse_hook_payload
from shared.intake.validation import parse_json_body
from shared.service import builds, status, steering
from shared.service import health as health_service
from shared.service.intake import accept_notices, check_regions
from shared.service.runtime import Services, services

log = logging.getLogger("georollout.http")

# GET /api/rollouts reads these; `code` is where Azure Functions takes the function key
# from, so it is accepted (and left to the platform) rather than refused.
LIST_PARAMETERS = ("repository", "state", "limit", "continuation")
_PLATFORM_PARAMETERS = ("code",)
_NAMES_ECHOED = 5
_NAME_ECHO_CHARS = 64
# One round of health checks per process at most every CACHE_SECONDS, for both routes.
HEALTH_CACHE = health_service.HealthCache()


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
    # 413 over 1 MiB; 400 invalid_json when not JSON or nested deeper than the limit
    # (counted before parsing: json.loads of `[[[...` 100,000 deep raises RecursionError).
    return parse_json_body(req.get_body())


async def acr_hook(req: func.HttpRequest) -> func.HttpResponse:
    async def work() -> func.HttpResponse:
        app = await services()
        check_webhook_token(app, req)
        payload = _json_body(req)
        region = req.params.get("region") or None
        notices = parse_hook_payload(
            payload, registry=app.config.registry_login_server, region=region
        )
        notices = check_regions(app, notices)
        result = await accept_notices(app, notices)
        return json_response({"rollouts": list(result.recorded), "ignored": list(result.ignored)})

    return await _answer(work)


def check_list_parameters(params: Mapping[str, str]) -> None:
    """Refuse a filter the API does not know: silently ignoring `?tag=` would list everything."""
    unknown = sorted(set(params) - set(LIST_PARAMETERS) - set(_PLATFORM_PARAMETERS))
    if unknown:
        # Names are the caller's text: a few, cut short, are enough to say what was wrong.
        unknown = [name[:_NAME_ECHO_CHARS] for name in unknown]
        names = ", ".join(repr(name) for name in unknown[:_NAMES_ECHOED])
        if len(unknown) > _NAMES_ECHOED:
            names += f" and {len(unknown) - _NAMES_ECHOED} more"
        raise InvalidInputError(
            unknown[0],
            f"unknown query parameter(s) {names}; GET /api/rollouts takes "
            f"{', '.join(LIST_PARAMETERS)}",
            code="unknown_parameter",
        )


async def build_hook(req: func.HttpRequest) -> func.HttpResponse:
    """Build systems' signed notices (Standard Webhooks): 202 with the rollout's id."""

    async def work() -> func.HttpResponse:
        app = await services()
        answer = await builds.record_build_notice(app, dict(req.headers), req.get_body())
        return json_response(answer, 202)

    return await _answer(work)


async def list_rollouts(req: func.HttpRequest) -> func.HttpResponse:
    async def work() -> func.HttpResponse:
        check_list_parameters(req.params)
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


async def replication_stats(req: func.HttpRequest) -> func.HttpResponse:
    """Each secondary region's replication pace (`GET /api/stats`, docs/api.md)."""

    async def work() -> func.HttpResponse:
        app = await services()
        secondaries = [
            r.name for r in app.config.regions if r.name != app.config.primary_region.name
        ]
        return json_response(await app.replication.document(secondaries))

    return await _answer(work)


async def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    """The operators' page (`shared/entrypoints/dashboard.py`)."""

    async def work() -> func.HttpResponse:
        body, headers = dashboard_page.page()
        return func.HttpResponse(body, status_code=200, mimetype="text/html", headers=headers)

    return await _answer(work)


async def _health_report() -> health_service.HealthReport:
    return await HEALTH_CACHE.get(lambda: health_service.process_health(services))


async def health(req: func.HttpRequest) -> func.HttpResponse:
    """Anonymous in Azure: statuses only, whatever the query says (details need a key)."""

    async def work() -> func.HttpResponse:
        return json_response((await _health_report()).public_document())

    return await _answer(work)


async def health_detail(req: func.HttpRequest) -> func.HttpResponse:
    """Function key in Azure: messages, endpoints and ids, secrets redacted."""

    async def work() -> func.HttpResponse:
        return json_response((await _health_report()).detail_document())

    return await _answer(work)


async def rollout_action(req: func.HttpRequest) -> func.HttpResponse:
    """An operator's action on one rollout: 200 with the document, 409 when it does not fit."""

    async def work() -> func.HttpResponse:
        app = await services()
        raw = req.get_body()
        body = _json_body(req) if raw.strip() else None
        answer = await steering.act(
            app,
            req.route_params.get("id", ""),
            req.route_params.get("action", ""),
            body,
            dict(req.headers),
        )
        return json_response(answer.document)

    return await _answer(work)
