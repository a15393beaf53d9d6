"""`python -m devenv.registries --config <json>`: the regions' registries, the relay and the replicator."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from aiohttp import web

from devenv.ports import LOOPBACK
from devenv.registries.config import SupervisorSettings
from devenv.registries.relay import relay_app
from devenv.registries.supervisor import RegistrySupervisor


async def serve(settings: SupervisorSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    supervisor = RegistrySupervisor(settings)
    runner = web.AppRunner(relay_app(supervisor), access_log=None)
    await runner.setup()
    try:
        # The relay listens first so the registries' first notifications find it.
        await web.TCPSite(runner, LOOPBACK, settings.relay_port).start()
        await supervisor.start()
        logging.info("registries up: relay %s", settings.relay_url)
        await stop.wait()
    finally:
        await supervisor.stop()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devenv.registries", description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="supervisor settings (JSON)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = SupervisorSettings.from_json(args.config.read_text())
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
