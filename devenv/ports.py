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
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])
