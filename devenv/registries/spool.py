"""A directory of JSON work items that survives a restart: one file per item, written atomically."""

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

    def _path(self, item_id: str) -> Path:
        return self.directory / f"{item_id}.json"

    def put(self, item_id: str, item: dict[str, Any]) -> None:
        temporary = self.directory / f".{item_id}.tmp"
        with temporary.open("w") as handle:
            json.dump(item, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self._path(item_id))

    def remove(self, item_id: str) -> None:
        self._path(item_id).unlink(missing_ok=True)

    def items(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for path in sorted(self.directory.glob("*.json")):
            try:
                found[path.stem] = json.loads(path.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                continue  # removed meanwhile, or a torn write from before os.replace existed
        return found

    def __contains__(self, item_id: str) -> bool:
        return self._path(item_id).exists()
