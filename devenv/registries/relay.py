"""The relay's HTTP routes: Distribution notifications in, and the control API for region knobs.

Notifications are always answered 200 at once: Distribution 2.8 retries a failed
endpoint forever and holds every later event behind it, so slow work is spooled
for the supervisor's loop, never done in the request.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from devenv.registries.supervisor import RegistrySupervisor

log = logging.getLogger(__name__)

SUPERVISOR_KEY = web.AppKey("supervisor", RegistrySupervisor)
KNOB_TYPES: dict[str, tuple[type, ...]] = {
    "unavailable": (bool,),
    "extra_delay_s": (int, float),
    "never_replicates": (bool,),
}


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def notifications(request: web.Request) -> web.Response:
    supervisor = request.app[SUPERVISOR_KEY]
    region = request.match_info["region"]
    try:
        envelope = json.loads(await request.read())
        events = envelope.get("events", []) if isinstance(envelope, dict) else []
    except (ValueError, UnicodeDecodeError) as error:
        # Answered 200 all the same: a non-2xx would make Distribution resend it forever.
        log.warning("unreadable notification for %s: %s", region, error)
        return web.json_response({"accepted": 0, "ignored": 0, "error": "unreadable body"})
    accepted = 0
    for event in events:
        if isinstance(event, dict) and supervisor.accept(region, event):
            accepted += 1
    return web.json_response({"accepted": accepted, "ignored": len(events) - accepted})


async def list_regions(request: web.Request) -> web.Response:
    return web.json_response(request.app[SUPERVISOR_KEY].state())


async def patch_region(request: web.Request) -> web.Response:
    supervisor = request.app[SUPERVISOR_KEY]
    name = request.match_info["region"]
    if name not in supervisor.regions:
        return _error(404, "unknown_region", f"no region named {name!r}")
    try:
        body: Any = await request.json()
    except ValueError:
        return _error(400, "invalid_json", "the body must be a JSON object")
    if not isinstance(body, dict):
        return _error(400, "invalid_json", "the body must be a JSON object")
    knob_values: dict[str, Any] = body
    for key, value in knob_values.items():
        if key not in KNOB_TYPES:
            return _error(400, "unknown_knob", f"{key!r} is not one of {sorted(KNOB_TYPES)}")
        allowed = KNOB_TYPES[key]
        # bool is an int in Python; a delay of `true` is a mistake, not 1 second.
        if not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool)):
            return _error(400, "invalid_knob", f"{key!r} has the wrong type")
        if key == "extra_delay_s" and isinstance(value, int | float) and value < 0:
            return _error(400, "invalid_knob", "'extra_delay_s' must be >= 0")
    knobs = {k: float(v) if k == "extra_delay_s" else v for k, v in body.items()}
    await supervisor.set_knobs(name, knobs)
    return web.json_response(supervisor.region_state(name))


def relay_app(supervisor: RegistrySupervisor) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[SUPERVISOR_KEY] = supervisor
    app.router.add_post("/notifications/{region}", notifications)
    app.router.add_get("/regions", list_regions)
    app.router.add_patch("/regions/{region}", patch_region)
    return app
