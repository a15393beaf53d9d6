"""`python -m devenv.eventgrid --config <file>`: run the local Event Grid emulator."""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import replace
from pathlib import Path

from devenv.eventgrid.config import EmulatorConfig
from devenv.eventgrid.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devenv.eventgrid", description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="the JSON config file")
    parser.add_argument(
        "--chaos",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="deliver some events twice and out of order (overrides the config)",
    )
    parser.add_argument("--chaos-seed", type=int, default=None, help="seed for chaos decisions")
    args = parser.parse_args(argv)
    config = EmulatorConfig.load(args.config)
    chaos = config.chaos
    if args.chaos is not None:
        chaos = replace(chaos, enabled=args.chaos)
    if args.chaos_seed is not None:
        chaos = replace(chaos, seed=args.chaos_seed)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(replace(config, chaos=chaos)))


if __name__ == "__main__":
    main()
