"""A tiny function app for the local Functions host's tests: every trigger kind once.

It records what it receives under the directory named by the HOST_TEST_OUTPUT_DIR
setting, in files whose names come from local.settings.json.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from pathlib import Path

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _output(setting: str) -> Path:
    return Path(os.environ["HOST_TEST_OUTPUT_DIR"]) / os.environ[setting]


def _append(setting: str, record: dict[str, object]) -> None:
    with _output(setting).open("a", encoding="utf-8") as stream:
        stream.write(json.dumps(record) + "\n")


def _json(document: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(document), status_code=status, mimetype="application/json")


@app.route(route="items/{id:int}/{label?}", methods=["GET", "PUT"])
def item(req: func.HttpRequest) -> func.HttpResponse:
    return _json(
        {
            "id": req.route_params.get("id"),
            "label": req.route_params.get("label"),
            "query": dict(req.params),
            "method": req.method,
            "body": req.get_body().decode(),
            "thread": threading.current_thread().name,
        }
    )


@app.route(route="files/{*path}", methods=["GET"])
async def files(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    await asyncio.sleep(0)
    return _json(
        {
            "path": req.route_params.get("path"),
            "function": context.function_name,
            "invocation": context.invocation_id,
            "thread": threading.current_thread().name,
        }
    )


@app.route(route="echo", methods=["POST"], binding_arg_name="res")
def echo(req: func.HttpRequest, res: func.Out[func.HttpResponse]) -> None:
    res.set(_json({"length": len(req.get_body())}, status=201))


@app.route(route="settings", methods=["GET"])
def settings(req: func.HttpRequest) -> func.HttpResponse:
    return _json({name: os.environ.get(name) for name in ("GREETING", "OVERRIDDEN")})


@app.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom on purpose")


@app.route(route="slow", methods=["GET"])
def slow(req: func.HttpRequest) -> func.HttpResponse:
    # Blocks its thread until the test releases it, so the test can prove the host
    # keeps serving while a sync function is busy.
    release = _output("RELEASE_FILE_NAME")
    deadline = time.monotonic() + 20
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return _json({"released": release.exists()})


@app.event_grid_trigger(arg_name="event")
def on_event(event: func.EventGridEvent) -> None:
    logging.info("received event %s", event.id)
    if isinstance(event, func.CloudEvent):
        record = {
            "kind": "CloudEvent",
            "id": event.id,
            "type": event.type,
            "source": event.source,
            "subject": event.subject,
            "data": event.get_json(),
        }
    else:
        record = {
            "kind": "EventGridEvent",
            "id": event.id,
            "type": event.event_type,
            "topic": event.topic,
            "subject": event.subject,
            "data": event.get_json(),
        }
    data = record["data"]
    if isinstance(data, dict) and data.get("fail"):
        raise ValueError(f"event {event.id} asked to fail")
    _append("EVENTS_FILE_NAME", record)


@app.timer_trigger(arg_name="timer", schedule="%TICK_SCHEDULE%", run_on_startup=True)
def tick(timer: func.TimerRequest) -> None:
    started = time.time()
    # Slower than the one-second schedule on purpose: runs must never overlap.
    time.sleep(1.6)
    _append(
        "TICKS_FILE_NAME",
        {
            "start": started,
            "end": time.time(),
            "past_due": timer.past_due,
            "last": getattr(timer, "schedule_status", {}).get("Last"),
        },
    )
