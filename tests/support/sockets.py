"""How many TCP connections this process holds open to a local port (Linux /proc).

A client that pools its connections keeps one or a few open to a server; one that
opens a connection per request leaves one per request behind (kept alive, idle).
"""

from __future__ import annotations

import os
from pathlib import Path

_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def open_connections(port: int) -> int:
    """Sockets owned by this process whose remote end is `port` (any state but LISTEN)."""
    owned = _socket_inodes()
    count = 0
    for table in _TABLES:
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            listening = fields[3] == "0A"
            if remote_port == port and not listening and fields[9] in owned:
                count += 1
    return count


def _socket_inodes() -> set[str]:
    inodes: set[str] = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes
