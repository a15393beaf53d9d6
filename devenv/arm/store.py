"""The emulator's resources and operations, kept in one JSON file that is replaced atomically on every change."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

Record = dict[str, Any]


def endpoint_key(workspace: str, endpoint: str) -> str:
    return f"{workspace.lower()}/{endpoint.lower()}"


def deployment_key(workspace: str, endpoint: str, deployment: str) -> str:
    return f"{workspace.lower()}/{endpoint.lower()}/{deployment.lower()}"


def environment_key(workspace: str, name: str, version: str) -> str:
    return f"{workspace.lower()}/{name}/{version}"


class ArmStore:
    """Endpoints, deployments, environment versions and operations, by key; `save()` persists them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.endpoints: dict[str, Record] = {}
        self.deployments: dict[str, Record] = {}
        self.environments: dict[str, Record] = {}
        self.operations: dict[str, Record] = {}
        if path.exists():
            data = json.loads(path.read_text())
            self.endpoints = data.get("endpoints", {})
            self.deployments = data.get("deployments", {})
            self.environments = data.get("environments", {})
            self.operations = data.get("operations", {})

    def save(self) -> None:
        data = {
            "endpoints": self.endpoints,
            "deployments": self.deployments,
            "environments": self.environments,
            "operations": self.operations,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename over it, so a crash never leaves half a file.
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".json", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def deployments_of(self, workspace: str, endpoint: str) -> list[Record]:
        prefix = endpoint_key(workspace, endpoint) + "/"
        return [d for key, d in sorted(self.deployments.items()) if key.startswith(prefix)]

    def endpoints_of(self, workspace: str) -> list[Record]:
        prefix = workspace.lower() + "/"
        return [e for key, e in sorted(self.endpoints.items()) if key.startswith(prefix)]
