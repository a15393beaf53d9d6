"""The emulator's HTTPS server: wires the registry, the spool, delivery and the two APIs into one aiohttp app."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from devenv.eventgrid import management_api, publish_api
from devenv.eventgrid.chaos import ChaosPlanner
from devenv.eventgrid.config import EmulatorConfig
from devenv.eventgrid.delivery import DeliveryDispatcher
from devenv.eventgrid.emulator_state import EMULATOR, EmulatorState
from devenv.eventgrid.provisioning import SubscriptionProvisioner
from devenv.eventgrid.spool import DeliverySpool
from devenv.eventgrid.subscriptions import SubscriptionRegistry
from devenv.tls import TlsFiles

log = logging.getLogger(__name__)


def tls_files(config: EmulatorConfig) -> TlsFiles:
    return TlsFiles(ca_pem=config.ca_pem, cert_pem=config.cert_pem, key_pem=config.key_pem)


def build_app(config: EmulatorConfig) -> web.Application:
    topics = {t.name: t for t in config.topics}
    registry = SubscriptionRegistry.load(config.state_dir / "subscriptions.json", config.topics)
    dispatcher = DeliveryDispatcher(
        topics=topics,
        registry=registry,
        spool=DeliverySpool(config.state_dir / "spool"),
        state_dir=config.state_dir,
        settings=config.delivery,
        chaos=ChaosPlanner(config.chaos),
        client_ssl=tls_files(config).client_context(),
    )
    provisioner = SubscriptionProvisioner(
        topics=topics, registry=registry, dispatcher=dispatcher, settings=config.delivery
    )
    app = web.Application()
    app[EMULATOR] = EmulatorState(
        config=config, registry=registry, dispatcher=dispatcher, provisioner=provisioner
    )
    app.router.add_get("/health", _health)
    app.router.add_post("/topics/{topic}/api/events", publish_api.publish_events)
    app.router.add_get("/topics", management_api.list_topics)
    app.router.add_get("/topics/{topic}/subscriptions", management_api.list_subscriptions)
    app.router.add_get("/topics/{topic}/subscriptions/{name}", management_api.get_subscription)
    app.router.add_put("/topics/{topic}/subscriptions/{name}", management_api.put_subscription)
    app.router.add_delete(
        "/topics/{topic}/subscriptions/{name}", management_api.delete_subscription
    )
    app.cleanup_ctx.append(_background_work)
    return app


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _background_work(app: web.Application) -> AsyncIterator[None]:
    state = app[EMULATOR]
    await state.dispatcher.start()
    validator = asyncio.create_task(state.provisioner.keep_validating())
    yield
    validator.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await validator
    await state.dispatcher.close()


async def serve(config: EmulatorConfig) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly (spooled events stay on disk)."""
    if not ipaddress.ip_address(config.host).is_loopback:
        raise ValueError(f"the emulator listens on loopback only, not {config.host}")
    runner = web.AppRunner(build_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(
        runner, config.host, config.port, ssl_context=tls_files(config).server_context()
    )
    await site.start()
    log.info(
        "Event Grid emulator on https://%s:%s, topics: %s",
        config.host,
        config.port,
        ", ".join(t.name for t in config.topics) or "none",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
