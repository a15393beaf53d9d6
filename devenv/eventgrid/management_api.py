"""A small management API for subscriptions at run time (the local stand-in for ARM's eventSubscriptions).

    GET    /topics                                   topics and their publish endpoints
    GET    /topics/<topic>/subscriptions             {"value": [subscription, ...]}
    GET    /topics/<topic>/subscriptions/<name>      one subscription, with provisioningState
    PUT    /topics/<topic>/subscriptions/<name>      create/replace; runs the validation handshake
    DELETE /topics/<topic>/subscriptions/<name>      delete; its undelivered events are dropped

A PUT answers 201 (created) or 200 (replaced or unchanged) with the subscription, whose
`provisioningState` is `Succeeded` or `Failed` (with `lastValidationError`).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from devenv.eventgrid.config import ConfigError, SubscriptionSpec, TopicSpec, topic_by_name
from devenv.eventgrid.deadletter import dead_letter_dir
from devenv.eventgrid.emulator_state import EMULATOR, EmulatorState
from devenv.eventgrid.http_io import json_error, read_body_within
from devenv.eventgrid.subscriptions import SubscriptionRecord


async def list_topics(request: web.Request) -> web.Response:
    state = request.app[EMULATOR]
    base = f"{request.scheme}://{request.host}"
    return web.json_response(
        {
            "value": [
                {
                    "name": t.name,
                    "id": t.resource_id,
                    "inputSchema": t.input_schema.value,
                    "endpoint": f"{base}/topics/{t.name}/api/events",
                }
                for t in state.config.topics
            ]
        }
    )


async def list_subscriptions(request: web.Request) -> web.Response:
    state, topic = _state_and_topic(request)
    if topic is None:
        return _no_topic(request)
    records = state.registry.for_topic(topic.name)
    return web.json_response({"value": [_document(state, r) for r in records]})


async def get_subscription(request: web.Request) -> web.Response:
    state, topic = _state_and_topic(request)
    if topic is None:
        return _no_topic(request)
    record = state.registry.get(topic.name, request.match_info["name"])
    if record is None:
        return _no_subscription(request)
    return web.json_response(_document(state, record))


async def put_subscription(request: web.Request) -> web.Response:
    state, topic = _state_and_topic(request)
    body = await read_body_within(request)
    if topic is None:
        return _no_topic(request)
    if body is None:
        return json_error(413, "RequestEntityTooLarge", "the request body is too large")
    try:
        raw = json.loads(body)
        spec = SubscriptionSpec.from_json(request.match_info["name"], raw)
    except ValueError as error:  # ConfigError is a ValueError, and so is bad JSON
        code = "InvalidSubscription" if isinstance(error, ConfigError) else "InvalidJson"
        return json_error(400, code, str(error))
    record, created = state.registry.put(topic.name, spec)
    if not record.active:
        record = await state.provisioner.provision(topic.name, spec) or record
    return web.json_response(_document(state, record), status=201 if created else 200)


async def delete_subscription(request: web.Request) -> web.Response:
    state, topic = _state_and_topic(request)
    if topic is None:
        return _no_topic(request)
    name = request.match_info["name"]
    if not state.registry.delete(topic.name, name):
        return web.Response(status=204)
    state.dispatcher.forget(topic.name, name)
    return web.json_response({"deleted": name})


def _document(state: EmulatorState, record: SubscriptionRecord) -> dict[str, Any]:
    return {
        **record.to_json(),
        "eventDeliverySchema": _topic(state, record.topic).input_schema.value,
        "pendingDeliveries": state.dispatcher.pending(record.topic, record.spec.name),
        "deadLetterDirectory": str(
            dead_letter_dir(state.config.state_dir, record.topic, record.spec.name)
        ),
    }


def _topic(state: EmulatorState, name: str) -> TopicSpec:
    topic = topic_by_name(state.config.topics, name)
    assert topic is not None
    return topic


def _state_and_topic(request: web.Request) -> tuple[EmulatorState, TopicSpec | None]:
    state = request.app[EMULATOR]
    return state, topic_by_name(state.config.topics, request.match_info["topic"])


def _no_topic(request: web.Request) -> web.Response:
    return json_error(404, "NotFound", f"topic '{request.match_info['topic']}' does not exist")


def _no_subscription(request: web.Request) -> web.Response:
    return json_error(
        404, "NotFound", f"subscription '{request.match_info['name']}' does not exist"
    )
