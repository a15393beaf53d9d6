"""Default loopback addresses of the local environment (see CONTRACT.md)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"
FUNCTIONS_HOST_PORT = 7071
AZURITE_TABLE_PORT = 10002
REGISTRY_BASE_PORT = 5000  # region N listens on 5000 + N
ARM_PORT = 8443
EVENTGRID_PORT = 8445
REGISTRY_RELAY_PORT = 7090
DEFAULT_REGIONS = ("eastus", "westus", "westeurope")


# Ports handed out for tests and isolated environments come from below the kernel's
# ephemeral range. One picked inside it and released before its server binds can be taken
# meanwhile as the local end of any outgoing connection ("address already in use", seen
# when a stand-in started while the suite's clients were busy); the kernel never hands out
# a port below the range that way.
_LOWEST_PORT = 20_000
_DEFAULT_EPHEMERAL = (32_768, 60_999)  # Linux's default ip_local_port_range
_EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_PICKS = 2_000
# Never the same port twice in one process: the first caller's server may not be up yet.
_handed_out: set[int] = set()


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for the local ends of outgoing connections (inclusive)."""
    try:
        low, high = (int(part) for part in _EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL
    return low, high


def bound(port: int) -> socket.socket | None:
    """A socket bound to loopback `port`, or None when the port is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((LOOPBACK, port))
    except OSError:
        sock.close()
        return None
    return sock


def free_port() -> int:
    """A loopback port free right now (for tests, which never use the defaults)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports, free right now, below the ephemeral range and not
    handed out before by this process. Each is test-bound (and held until all are chosen);
    random picks keep two test processes from walking the same sequence."""
    highest = ephemeral_range()[0] - 1
    if highest - _LOWEST_PORT < 1_000:
        raise OSError(f"no room for test ports between {_LOWEST_PORT} and {highest}")
    held: list[socket.socket] = []
    chosen: list[int] = []
    try:
        for _ in range(_PICKS):
            if len(chosen) == count:
                break
            port = random.randint(_LOWEST_PORT, highest)
            if port in _handed_out or port in chosen:
                continue
            sock = bound(port)
            if sock is None:
                continue  # in use (or lingering): another pick
            held.append(sock)
            chosen.append(port)
    finally:
        for sock in held:
            sock.close()
    if len(chosen) < count:
        raise OSError(f"found {len(chosen)} free loopback ports of {count} in {_PICKS} picks")
    _handed_out.update(chosen)
    return chosen
