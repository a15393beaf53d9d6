"""The topic's publish endpoint: `POST /topics/<topic>/api/events?api-version=...`.

It accepts what azure-eventgrid's EventGridPublisherClient sends (key in `aeg-sas-key`,
a JSON array, the schema's content type), refuses the rest as Event Grid would, and
answers 200 only once every event is spooled for every subscription that wants it.
"""

from __future__ import annotations

import hmac
import json
import logging

from aiohttp import web

from devenv.eventgrid.config import InputSchema, topic_by_name
from devenv.eventgrid.emulator_state import EMULATOR
from devenv.eventgrid.event_schemas import InvalidEventError, validate_events
from devenv.eventgrid.http_io import MAX_REQUEST_BYTES, json_error, read_body_within

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    InputSchema.EVENT_GRID: {"application/json"},
    InputSchema.CLOUD_EVENTS: {
        "application/cloudevents-batch+json",
        "application/cloudevents+json",
    },
}


async def publish_events(request: web.Request) -> web.Response:
    state = request.app[EMULATOR]
    topic = topic_by_name(state.config.topics, request.match_info["topic"])
    # Answer only after reading the body: a client still sending would otherwise see a reset.
    body = await read_body_within(request, MAX_REQUEST_BYTES)
    if topic is None:
        return json_error(404, "NotFound", f"topic '{request.match_info['topic']}' does not exist")
    if not request.query.get("api-version"):
        return json_error(400, "BadRequest", "the api-version query parameter is required")
    key = request.headers.get("aeg-sas-key")
    if key is None:
        other = "aeg-sas-token" if "aeg-sas-token" in request.headers else None
        other = other or ("Authorization" if "Authorization" in request.headers else None)
        detail = f" ({other} is not supported by the local emulator)" if other else ""
        return json_error(401, "Unauthorized", f"the aeg-sas-key header is missing{detail}")
    if not hmac.compare_digest(key.encode(), topic.key.encode()):
        return json_error(
            401, "Unauthorized", f"the key is not authorized for topic '{topic.name}'"
        )
    if body is None:
        return json_error(
            413,
            "RequestEntityTooLarge",
            f"the request body is larger than {MAX_REQUEST_BYTES} bytes",
        )
    accepted_types = CONTENT_TYPES[topic.input_schema]
    if (
        request.content_type not in accepted_types
        or (request.charset or "utf-8").lower() != "utf-8"
    ):
        # Event Grid answers every malformed publish request with 400, wrong content type included.
        return json_error(
            400,
            "BadRequest",
            f"topic '{topic.name}' ({topic.input_schema.value}) accepts Content-Type "
            f"{' or '.join(sorted(accepted_types))} in UTF-8, got {request.headers.get('Content-Type')!r}",
        )
    try:
        parsed = json.loads(body)
    except ValueError as error:
        return json_error(400, "BadRequest", f"the request body is not valid JSON: {error}")
    if request.content_type == "application/cloudevents+json":
        # Structured mode carries exactly one event, as an object.
        if not isinstance(parsed, dict):
            return json_error(
                400, "BadRequest", "application/cloudevents+json carries one event as a JSON object"
            )
        parsed = [parsed]
    try:
        events = validate_events(topic, parsed)
    except InvalidEventError as error:
        return json_error(400, "BadRequest", str(error))
    spooled = state.dispatcher.enqueue(topic, events)
    log.info(
        "topic %s: accepted %d event(s), %d delivery(ies) spooled", topic.name, len(events), spooled
    )
    return web.Response(status=200)
