"""The Event Grid webhook of the Functions host: `/runtime/webhooks/eventgrid?functionName=`.

Behaves like the real extension: validation handshake, CloudEvents abuse
protection (OPTIONS), one invocation per event of a notification, 202 when
all succeed and 500 when any fails (so Event Grid retries).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from azure.functions.meta import Datum

from devenv.host.http_trigger import read_whole_body
from devenv.host.invocation import FunctionInvoker
from devenv.host.loader import EVENT_GRID_TRIGGER, IndexedFunction

log = logging.getLogger("devenv.host")

WEBHOOK_PATH = "/runtime/webhooks/eventgrid"
EVENT_TYPE_HEADER = "aeg-event-type"
REQUEST_ORIGIN_HEADER = "WebHook-Request-Origin"
ALLOWED_ORIGIN_HEADER = "WebHook-Allowed-Origin"


def _bad_request(message: str) -> web.Response:
    log.warning("Event Grid webhook: %s", message)
    return web.Response(status=400, text=message)


def _events_of(document: Any) -> list[Any]:
    return document if isinstance(document, list) else [document]


def _validation_code(events: list[Any]) -> str | None:
    for event in events:
        data = event.get("data") if isinstance(event, dict) else None
        if isinstance(data, dict) and isinstance(data.get("validationCode"), str):
            return str(data["validationCode"])
    return None


async def serve_eventgrid_webhook(
    request: web.Request,
    functions: Mapping[str, IndexedFunction],
    invoker: FunctionInvoker,
) -> web.Response:
    """Answer one delivery; `functions` maps lower-cased names to indexed functions."""
    name = request.query.get("functionName", "")
    function = functions.get(name.lower())
    if function is None or function.trigger_type != EVENT_GRID_TRIGGER:
        await read_whole_body(request)
        return web.Response(status=404, text=f"cannot find function: '{name}'")
    if request.method == "OPTIONS":
        headers = {}
        origin = request.headers.get(REQUEST_ORIGIN_HEADER)
        if origin is not None:
            headers[ALLOWED_ORIGIN_HEADER] = origin
        return web.Response(status=200, headers=headers)
    body = await read_whole_body(request)
    if request.method != "POST":
        return web.Response(status=405, headers={"Allow": "POST, OPTIONS"})
    if body is None:
        return web.Response(status=413, text="request body too large")
    event_type = request.headers.get(EVENT_TYPE_HEADER)
    if event_type is None:
        return _bad_request(f"missing {EVENT_TYPE_HEADER} header")
    if event_type == "Unsubscribe":
        return web.Response(status=202)
    if event_type not in ("SubscriptionValidation", "Notification"):
        return _bad_request(f"unexpected {EVENT_TYPE_HEADER}: {event_type!r}")
    try:
        document = json.loads(body)
    except RecursionError:
        # Deeply nested JSON: refused like any other malformed body, never a 500.
        return _bad_request("the body is nested too deeply to parse")
    except ValueError as error:
        return _bad_request(f"the body is not JSON: {error}")
    events = _events_of(document)
    if event_type == "SubscriptionValidation":
        code = _validation_code(events)
        if code is None:
            return _bad_request("a SubscriptionValidation event without data.validationCode")
        log.info("Event Grid subscription validated for function %s", function.name)
        return web.json_response({"validationResponse": code})
    if not all(isinstance(event, dict) for event in events):
        return _bad_request("every event must be a JSON object")
    results = await asyncio.gather(
        *(
            invoker.invoke(
                function,
                Datum(type="json", value=json.dumps(event)),
                reason="EventGrid trigger fired",
            )
            for event in events
        )
    )
    failed = sum(not result.succeeded for result in results)
    if failed:
        log.warning(
            "Event Grid delivery to %s: %d of %d events failed", function.name, failed, len(events)
        )
        return web.Response(status=500, text=f"{failed} of {len(events)} invocations failed")
    return web.Response(status=202)
