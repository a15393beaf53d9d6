"""A CloudEvents webhook subscriber on its own thread (for tests): answers the abuse-protection OPTIONS
handshake and records every event the Event Grid emulator delivers, by id."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from devenv.ports import LOOPBACK, free_port
from devenv.tls import TlsFiles


class EventReceiver:
    """HTTPS on a free loopback port; `deliveries(ids)` lists what arrived for those ids."""

    def __init__(self, tls: TlsFiles) -> None:
        self._tls = tls
        self.port = free_port()
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}/events"

    async def _handshake(self, request: web.Request) -> web.Response:
        origin = request.headers.get("WebHook-Request-Origin", "")
        return web.Response(status=200, headers={"WebHook-Allowed-Origin": origin})

    async def _deliver(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        with self._lock:
            self._events.extend(body if isinstance(body, list) else [body])
        return web.Response(status=200)

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("OPTIONS", "/events", self._handshake)
        app.router.add_post("/events", self._deliver)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, LOOPBACK, self.port, ssl_context=self._tls.server_context()
        )
        await site.start()

    def start(self) -> EventReceiver:
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()

    def deliveries(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        wanted = set(ids)
        with self._lock:
            return [event for event in self._events if event.get("id") in wanted]
