"""A directory of JSON work items that survives a restart: one file per item, written atomically.

The owning process keeps the items in memory too (it is the directory's only
writer), so scanning the spool on every tick costs no disk reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class Spool:
    """Durable work items keyed by id; `put` replaces, `remove` is the acknowledgement."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._items: dict[str, dict[str, Any]] = {}
        for path in sorted(directory.glob("*.json")):
            try:
                self._items[path.stem] = json.loads(path.read_text())
            except json.JSONDecodeError:
                continue  # cannot happen with os.replace; never let one bad file stop the rest

    def _path(self, item_id: str) -> Path:
        return self.directory / f"{item_id}.json"

    def put(self, item_id: str, item: dict[str, Any]) -> None:
        temporary = self.directory / f".{item_id}.tmp"
        with temporary.open("w") as handle:
            json.dump(item, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self._path(item_id))
        self._items[item_id] = item

    def remove(self, item_id: str) -> None:
        self._path(item_id).unlink(missing_ok=True)
        self._items.pop(item_id, None)

    def items(self) -> dict[str, dict[str, Any]]:
        """A snapshot (safe to iterate while items are put or removed)."""
        return dict(self._items)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._items

    def __len__(self) -> int:
        return len(self._items)
