"""`python -m devenv up|demo`: the entry points behind `make up` and `make demo`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from types import FrameType

from devenv.config import LocalEnv, default_env, isolated_env
from devenv.local_settings import app_settings, write_local_settings
from devenv.paths import REPO_ROOT, STATE_DIR
from devenv.process import ProcessFailedError
from devenv.stack import (
    InvalidSettingsError,
    PortsInUseError,
    check_ports_free,
    check_settings,
    host_settings,
    ports_of,
    start_stack,
)


def _print_invalid_settings(error: InvalidSettingsError) -> None:
    print(f"ERROR: {error}", file=sys.stderr)
    print(
        "nothing was left running. Fix the settings (GEOROLLOUT_* in this shell's environment "
        "win over the local defaults) and start again.",
        file=sys.stderr,
        flush=True,
    )


def _env_for(args: argparse.Namespace) -> LocalEnv:
    """The contract's ports under .georollout/, or free ports under --state-dir (tests)."""
    if args.free_ports:
        return isolated_env(args.state_dir or STATE_DIR)
    env = default_env()
    return replace(env, state_dir=args.state_dir) if args.state_dir else env


def _up(args: argparse.Namespace) -> int:
    env = _env_for(args)
    if args.free_ports:
        # Said before anything else, so a caller (a test) knows which ports to check.
        print("ports: " + ", ".join(f"{n}={p}" for n, p in ports_of(env).items()), flush=True)
    try:
        check_ports_free(env)
    except PortsInUseError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        print(f"\nreceived {signal.Signals(signum).name}: stopping everything…", flush=True)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    from devenv.tls import ensure_tls

    tls = ensure_tls(env.state_dir / "tls")
    try:
        # Checked before local.settings.json is written and before anything starts.
        check_settings(host_settings(env, tls))
    except InvalidSettingsError as error:
        _print_invalid_settings(error)
        return 1
    # local.settings.json describes the default environment; a test's own one stays out of it.
    if not args.free_ports and args.state_dir is None:
        settings_path = REPO_ROOT / "local.settings.json"
        if write_local_settings(settings_path, app_settings(env, tls)):
            print(f"wrote {settings_path.name} for the local environment")
        else:
            print(
                f"kept your own {settings_path.name}; the local environment's values are passed as environment variables"
            )
    try:
        stack = start_stack(env)
    except InvalidSettingsError as error:
        _print_invalid_settings(error)
        return 1
    width = max(len(name) for name, _ in stack.describe())
    print(f"georollout local environment is up in {stack.started_in_s:.1f}s:")
    for name, url in stack.describe():
        print(f"  {name.ljust(width)}  {url}")
    print("push a new image:  .venv/bin/python -m devenv push models/llm v1")
    print(f"follow rollouts:   curl -s {env.host_url}/api/rollouts")
    secret_file = env.state_dir / "build-webhook-secret"
    print(
        "announce a build:  GEOROLLOUT_BUILD_WEBHOOK_SECRET=$(cat "
        f"{secret_file.relative_to(Path.cwd()) if secret_file.is_relative_to(Path.cwd()) else secret_file}) "
        ".venv/bin/georollout notify <registry>/<repo>@sha256:<hex> --tag v1"
    )
    print("Ctrl-C stops everything.", flush=True)
    code = 0
    try:
        while not stop.wait(1.0):
            dead = stack.dead()
            if dead:
                for process in dead:
                    try:
                        process.check_running()
                    except ProcessFailedError as error:
                        print(f"ERROR: {error}", file=sys.stderr, flush=True)
                code = 1
                break
    finally:
        stack.stop()
        print("stopped.", flush=True)
    return code


def _demo(args: argparse.Namespace) -> int:
    from devenv.demo import run_demo

    try:
        return run_demo(large=args.large)
    except InvalidSettingsError as error:
        # start_stack refused before starting anything; the demo has nothing to stop.
        _print_invalid_settings(error)
        return 1


def _push(args: argparse.Namespace) -> int:
    """Build a small real OCI image and push it to the running environment's primary registry."""
    import uuid

    from devenv.images import build_image, push_image
    from devenv.tls import ensure_tls

    env = default_env()
    tls = ensure_tls(env.state_dir / "tls")
    image = build_image(
        size_bytes=int(args.size_mb * 1_000_000), seed=args.seed or str(uuid.uuid4())
    )
    digest = push_image(
        env.primary.registry_url, args.repository, args.tag, image, ca_path=tls.ca_pem
    )
    print(f"pushed {env.primary.registry_host}/{args.repository}:{args.tag} = {digest}")
    print(f"follow it: curl -s '{env.host_url}/api/rollouts?repository={args.repository}'")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(prog="python -m devenv", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "up", help="start the local environment and the function app until Ctrl-C"
    )
    up.add_argument(
        "--state-dir",
        type=Path,
        help="keep the CA, data and logs here instead of .georollout/ (for tests)",
    )
    up.add_argument(
        "--free-ports",
        action="store_true",
        help="listen on free loopback ports instead of the documented ones, so a second "
        "environment never collides with a running `make up` (for tests); "
        "local.settings.json is then left alone",
    )
    demo = commands.add_parser("demo", help="push a sample model image and watch it roll out")
    demo.add_argument("--large", action="store_true", help="push a larger image (about 200 MB)")
    push = commands.add_parser("push", help="push a new sample image to the running environment")
    push.add_argument("repository", help="e.g. models/llm")
    push.add_argument("tag", help="e.g. v2")
    push.add_argument("--size-mb", type=float, default=4.0, help="layer size in MB (default 4)")
    push.add_argument("--seed", help="same seed, same image (and digest); default: a new image")
    args = parser.parse_args(argv)
    handlers = {"up": _up, "demo": _demo, "push": _push}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
