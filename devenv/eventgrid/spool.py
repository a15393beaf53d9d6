"""Undelivered events on disk, one file per (event, subscription), so a restart loses nothing.

An entry is written before the publisher gets its 200 and removed only after the
subscriber acknowledged it (or it was dead-lettered): delivery is at least once.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from devenv.eventgrid.config import write_json_atomically


@dataclass
class PendingDelivery:
    seq: int  # unique and increasing, also across restarts: the spool's order
    topic: str
    subscription: str
    event: dict[str, Any]
    published_at: float  # wall clock, so the time-to-live survives a restart
    due_at: float
    attempts: int = 0
    last_outcome: str | None = None
    last_http_status: int | None = None
    last_attempt_at: float | None = None


class DeliverySpool:
    def __init__(self, root: Path) -> None:
        self._root = root
        self._last_seq = 0

    def next_seq(self) -> int:
        self._last_seq = max(self._last_seq + 1, time.time_ns())
        return self._last_seq

    def save(self, item: PendingDelivery) -> None:
        write_json_atomically(self._path(item), asdict(item))

    def remove(self, item: PendingDelivery) -> None:
        self._path(item).unlink(missing_ok=True)

    def drop_subscription(self, topic: str, subscription: str) -> None:
        shutil.rmtree(self._root / topic.lower() / subscription.lower(), ignore_errors=True)

    def load_all(self) -> list[PendingDelivery]:
        items = []
        for path in sorted(self._root.glob("*/*/*.json")):
            items.append(PendingDelivery(**json.loads(path.read_text())))
        if items:
            self._last_seq = max(self._last_seq, max(i.seq for i in items))
        return sorted(items, key=lambda i: i.seq)

    def _path(self, item: PendingDelivery) -> Path:
        return self._root / item.topic.lower() / item.subscription.lower() / f"{item.seq:020d}.json"
