"""The local Functions host: one aiohttp server for HTTP triggers, the Event Grid
webhook and the admin API, plus one task per timer trigger.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from devenv.host.eventgrid_webhook import WEBHOOK_PATH, serve_eventgrid_webhook
from devenv.host.http_trigger import read_whole_body, serve_http_function
from devenv.host.invocation import FunctionInvoker
from devenv.host.loader import EVENT_GRID_TRIGGER, HTTP_TRIGGER, TIMER_TRIGGER, IndexedFunction
from devenv.host.managed_identity import TOKEN_PATH, serve_token
from devenv.host.ncrontab import InvalidScheduleError, parse_schedule
from devenv.host.routing import MethodNotAllowed, RouteTable, compile_route
from devenv.host.settings import HostConfigurationError, resolve_setting_references
from devenv.host.timer_trigger import TimerRunner, utc_now

log = logging.getLogger("devenv.host")
access_log = logging.getLogger("devenv.host.access")

LOOPBACK = "127.0.0.1"
STATUS_PATH = "/admin/host/status"
ADMIN_FUNCTIONS_PATH = "/admin/functions/"


def _methods(function: IndexedFunction) -> list[str] | None:
    methods = function.trigger_setting("methods")
    if not methods:
        return None
    return [str(getattr(method, "value", method)) for method in methods]


class FunctionsHost:
    """Serves an indexed function app; raises HostConfigurationError for bad routes/schedules."""

    def __init__(
        self, app_dir: Path, functions: list[IndexedFunction], *, route_prefix: str
    ) -> None:
        self.app_dir = app_dir
        self.functions = functions
        self.route_prefix = route_prefix
        self._by_name = {function.name.lower(): function for function in functions}
        self._executor = ThreadPoolExecutor(thread_name_prefix="function")
        self._invoker = FunctionInvoker(self._executor, function_directory=str(app_dir))
        self._routes = RouteTable(
            [
                compile_route(
                    function.name,
                    str(function.trigger_setting("route")),
                    _methods(function),
                    prefix=route_prefix,
                )
                for function in functions
                if function.trigger_type == HTTP_TRIGGER
            ]
        )
        started = utc_now()
        self._timers: dict[str, TimerRunner] = {}
        for function in functions:
            if function.trigger_type != TIMER_TRIGGER:
                continue
            written = str(function.trigger_setting("schedule"))
            try:
                schedule = parse_schedule(resolve_setting_references(written), origin=started)
            except InvalidScheduleError as error:
                raise HostConfigurationError(
                    f"function {function.name!r}: invalid schedule: {error}"
                ) from None
            self._timers[function.name.lower()] = TimerRunner(function, schedule, self._invoker)
        self._tasks: list[asyncio.Task[None]] = []

    def describe(self, port: int) -> list[str]:
        """One line per function, like Core Tools prints at start-up."""
        lines = []
        base = f"http://{LOOPBACK}:{port}"
        for function in self.functions:
            if function.trigger_type == HTTP_TRIGGER:
                route = next(
                    route for route in self._routes.routes if route.function_name == function.name
                )
                methods = ",".join(sorted(route.methods)) if route.methods else "ALL"
                lines.append(f"{function.name}: [{methods}] {base}/{route.template}")
            elif function.trigger_type == EVENT_GRID_TRIGGER:
                lines.append(
                    f"{function.name}: eventGridTrigger {base}{WEBHOOK_PATH}?functionName={function.name}"
                )
            else:
                runner = self._timers[function.name.lower()]
                lines.append(f"{function.name}: timerTrigger {runner.schedule.expression!r}")
        return lines

    def web_app(self) -> web.Application:
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        return app

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        target = "host"
        try:
            response, target = await self._route(request)
        except Exception:
            log.exception("Unhandled error serving %s %s", request.method, request.path_qs)
            response = web.Response(status=500)
        access_log.info(
            "%s %s %d %.1fms (%s)",
            request.method,
            request.path_qs,
            response.status,
            (time.monotonic() - started) * 1000,
            target,
        )
        return response

    async def _route(self, request: web.Request) -> tuple[web.StreamResponse, str]:
        path = request.path.lower()
        if path == TOKEN_PATH and request.method == "GET":
            return serve_token(request), "identity"
        if path == STATUS_PATH:
            await read_whole_body(request)
            return self._status(), "admin"
        if path.startswith(ADMIN_FUNCTIONS_PATH) and request.method == "POST":
            await read_whole_body(request)
            return self._invoke_timer_now(path.removeprefix(ADMIN_FUNCTIONS_PATH)), "admin"
        if path.rstrip("/") == WEBHOOK_PATH:
            name = request.query.get("functionName", "?")
            return await serve_eventgrid_webhook(request, self._by_name, self._invoker), name
        try:
            resolved = self._routes.resolve(request.path, request.method)
        except MethodNotAllowed as refusal:
            await read_whole_body(request)
            return web.Response(status=405, headers={"Allow": ", ".join(refusal.allowed)}), "host"
        if resolved is None:
            await read_whole_body(request)
            return web.Response(status=404), "host"
        route, route_params = resolved
        function = self._by_name[route.function_name.lower()]
        return await serve_http_function(
            request, function, route_params, self._invoker
        ), function.name

    def _status(self) -> web.Response:
        return web.json_response(
            {
                "state": "Running",
                "version": "georollout-local",
                "functions": [function.name for function in self.functions],
            }
        )

    def _invoke_timer_now(self, name: str) -> web.Response:
        """Run a timer function once now (POST /admin/functions/<name>), as the real admin API does."""
        runner = self._timers.get(name.strip("/"))
        if runner is None:
            return web.Response(
                status=404, text=json.dumps({"error": f"no timer function {name!r}"})
            )
        task = asyncio.create_task(
            runner.fire(scheduled=None, reason="Invoked through the admin API")
        )
        task.add_done_callback(self._tasks_done)
        return web.Response(status=202)

    @staticmethod
    def _tasks_done(task: asyncio.Task[object]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("Background invocation failed", exc_info=task.exception())

    async def serve(self, port: int) -> None:
        """Listen on 127.0.0.1:`port`, run the timers, and return after SIGTERM/SIGINT."""
        runner = web.AppRunner(self.web_app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, port)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        log.info("Functions:")
        for line in self.describe(port):
            log.info("    %s", line)
        for timer in self._timers.values():
            task = asyncio.create_task(timer.run(), name=f"timer:{timer.function.name}")
            task.add_done_callback(self._tasks_done)
            self._tasks.append(task)
        log.info("Host started on http://%s:%d (%d functions)", LOOPBACK, port, len(self.functions))
        try:
            await stop.wait()
        finally:
            log.info("Host stopping")
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await runner.cleanup()
            self._executor.shutdown(wait=False, cancel_futures=True)
