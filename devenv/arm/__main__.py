"""`python -m devenv.arm --config CONFIG --port PORT --cert --key --ca`: run the ARM emulator on loopback."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from aiohttp import web

from devenv.arm.app import build_app
from devenv.arm.config import ArmConfig
from devenv.ports import LOOPBACK
from devenv.tls import TlsFiles


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devenv.arm", description=__doc__)
    parser.add_argument(
        "--config", type=Path, required=True, help="JSON file written by the launcher"
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", type=Path, required=True, help="server certificate chain (PEM)")
    parser.add_argument("--key", type=Path, required=True, help="server private key (PEM)")
    parser.add_argument(
        "--ca", type=Path, required=True, help="local CA, trusted for registry look-ups"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    tls = TlsFiles(ca_pem=args.ca, cert_pem=args.cert, key_pem=args.key)
    app = build_app(ArmConfig.load(args.config), tls)
    web.run_app(app, host=LOOPBACK, port=args.port, ssl_context=tls.server_context(), print=None)


if __name__ == "__main__":
    main()
