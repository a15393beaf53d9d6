"""The append-only audit record of deployment changes: one JSON object per line, fsynced as written."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class AuditLog:
    """Appends records (stamped with the time) and reads them back in order."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, action: str, **fields: Any) -> dict[str, Any]:
        record: dict[str, Any] = {"timestamp": datetime.now(UTC).isoformat(), "action": action}
        record.update(fields)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return record

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text().splitlines()
        # A line cut short by a crash mid-write is skipped rather than failing every read.
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records
