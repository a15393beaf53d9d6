"""A small client for the relay's control API: read region state, turn region knobs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class RegistryControlError(RuntimeError):
    """The control API refused a request (the message carries its JSON error)."""


class RegistryControl:
    """`RegistryControl(relay_url).set_region("westus", unavailable=True)`."""

    def __init__(self, relay_url: str, *, timeout: float = 60.0) -> None:
        self.relay_url = relay_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.relay_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise RegistryControlError(
                f"{method} {path}: {error.code} {error.read().decode()}"
            ) from error

    def state(self) -> dict[str, Any]:
        """Everything: regions, pending events, pending pushes."""
        result: dict[str, Any] = self._call("GET", "/regions")
        return result

    def regions(self) -> dict[str, dict[str, Any]]:
        """Each region's knobs, process and pending replications, by name."""
        return {r["name"]: r for r in self.state()["regions"]}

    def set_region(
        self,
        name: str,
        *,
        unavailable: bool | None = None,
        extra_delay_s: float | None = None,
        never_replicates: bool | None = None,
    ) -> dict[str, Any]:
        """Change the given knobs of one region; returns its new state (after a restart, if any)."""
        knobs = {
            key: value
            for key, value in (
                ("unavailable", unavailable),
                ("extra_delay_s", extra_delay_s),
                ("never_replicates", never_replicates),
            )
            if value is not None
        }
        result: dict[str, Any] = self._call("PATCH", f"/regions/{name}", knobs)
        return result
