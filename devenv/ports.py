"""Default loopback addresses of the local environment (see CONTRACT.md)."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"
FUNCTIONS_HOST_PORT = 7071
AZURITE_TABLE_PORT = 10002
REGISTRY_BASE_PORT = 5000  # region N listens on 5000 + N
ARM_PORT = 8443
EVENTGRID_PORT = 8445
REGISTRY_RELAY_PORT = 7090
DEFAULT_REGIONS = ("eastus", "westus", "westeurope")


def free_port() -> int:
    """A loopback port free right now (for tests, which never use the defaults)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports free right now: all are held open until all are chosen,
    so the kernel cannot hand the same one out twice."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
