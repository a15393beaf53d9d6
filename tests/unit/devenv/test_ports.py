"""Ports for tests: below the kernel's ephemeral range, distinct, and free when handed out."""

from __future__ import annotations

import random
import socket

import pytest

from devenv import ports
from devenv.ports import bound, ephemeral_range, free_port, free_ports


def test_ports_come_from_below_the_ephemeral_range() -> None:
    # An outgoing connection's local end is taken from the ephemeral range: a port handed
    # out there could be gone before the test's server binds it.
    low, _ = ephemeral_range()
    ports = free_ports(40) + [free_port() for _ in range(10)]
    assert all(1024 < port < low for port in ports)


def test_no_port_is_handed_out_twice_in_one_process() -> None:
    ports = [port for _ in range(20) for port in free_ports(5)]
    assert len(set(ports)) == len(ports) == 100


def test_a_port_in_use_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    low, _ = ephemeral_range()
    busy = _listening_below(low)
    try:
        busy_port = busy.getsockname()[1]
        spare = _listening_below(low, avoid=frozenset({busy_port}))
        spare_port = spare.getsockname()[1]
        spare.close()
        # The random picks land on the busy port twice before a free one.
        picks = iter([busy_port, busy_port, spare_port])
        monkeypatch.setattr(random, "randint", lambda _low, _high: next(picks))
        monkeypatch.setattr(ports, "_handed_out", set())  # what earlier tests were given
        assert free_ports(1) == [spare_port]
    finally:
        busy.close()


def _listening_below(limit: int, avoid: frozenset[int] = frozenset()) -> socket.socket:
    """A socket listening on a loopback port below `limit`, not one of `avoid`."""
    for port in range(limit - 1, 20_000, -1):
        sock = bound(port) if port not in avoid else None
        if sock is not None:
            sock.listen()
            return sock
    raise OSError("no free port below the ephemeral range")
