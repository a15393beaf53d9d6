"""What every benchmark prints with its figures: the machine, and percentiles of samples."""

from __future__ import annotations

import os
import platform
import signal
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType

from shared.adapters.http_pool import PooledTransport


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile: the smallest sample at or above `fraction` of them."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))]


def cpu_jiffies() -> tuple[int, int]:
    """(stolen, total) CPU time of the whole machine so far, in clock ticks (/proc/stat):
    on a VM the hypervisor may run other guests on our cores ("steal"), which slows a
    run without any change in the code. (0, 0) where /proc/stat is missing."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return 0, 0
    values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return values[7], sum(values)


def stolen_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of the machine's CPU time the hypervisor took between two `cpu_jiffies`."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def stop_cleanly_on_sigterm() -> None:
    """SIGTERM (`timeout`, a CI job being stopped) unwinds a bench as Ctrl-C does, so its
    `finally` stops the servers it started. By default Python dies at once and leaves
    them running: three whole local environments outlived a `timeout` that way, and took
    most of a core from the measures that followed."""
    signal.signal(signal.SIGTERM, _interrupt)


class SentRequests:
    """Counts the requests the app's Azure clients send while it is entered (every one of
    them sends through a PooledTransport): `count` so far."""

    def __init__(self) -> None:
        self.count = 0
        self._send = PooledTransport.send

    def __enter__(self) -> SentRequests:
        send = self._send

        async def counted(transport: PooledTransport, request: object, **kwargs: object) -> object:
            self.count += 1
            return await send(transport, request, **kwargs)

        PooledTransport.send = counted
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        PooledTransport.send = self._send
