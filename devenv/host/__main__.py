"""Command line: `python -m devenv.host --app-dir DIR --port N` (listens on 127.0.0.1 only)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from devenv.host.console_log import configure_console_logging
from devenv.host.loader import load_function_app
from devenv.host.managed_identity import configure_identity_environment
from devenv.host.server import FunctionsHost
from devenv.host.settings import HostConfigurationError, apply_local_settings, http_route_prefix

log = logging.getLogger("devenv.host")


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devenv.host",
        description="Run a Python v2-model Azure Functions app locally (HTTP, Event Grid, timer triggers).",
    )
    parser.add_argument(
        "--app-dir", type=Path, default=Path.cwd(), help="directory holding function_app.py"
    )
    parser.add_argument("--port", type=int, default=7071, help="port on 127.0.0.1 (default 7071)")
    parser.add_argument("--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument(
        "--local-identity",
        action="store_true",
        help="serve a managed-identity endpoint with local tokens (for the local stand-ins only;"
        " leave off to use your own Azure sign-in)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    configure_console_logging(logging.DEBUG if arguments.verbose else logging.INFO)
    app_dir = arguments.app_dir.resolve()
    log.info("Loading the function app in %s", app_dir)
    try:
        # Settings first: the app reads them at import time, as in Azure.
        apply_local_settings(app_dir)
        if arguments.local_identity:
            # The platform's managed-identity endpoint, served by this host.
            configure_identity_environment(arguments.port)
        route_prefix = http_route_prefix(app_dir)
        host = FunctionsHost(app_dir, load_function_app(app_dir), route_prefix=route_prefix)
    except HostConfigurationError as error:
        log.error("The host cannot start: %s", error)
        return 2
    except Exception:
        log.exception("The host cannot start: function_app.py failed to load")
        return 3
    asyncio.run(host.serve(arguments.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
