"""What an outside client of the local environment sees: the function app's routes and the ARM audit.

Plain HTTP(S) requests against the contract's routes, trusting only the local CA.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from devenv.config import LocalEnv
from devenv.process import wait_until

T = TypeVar("T")
EVENTGRID_WEBHOOK = "/runtime/webhooks/eventgrid?functionName=on_image_pushed"


def http_request(
    url: str,
    *,
    method: str = "GET",
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    timeout: float = 15.0,
) -> tuple[int, Any]:
    """Send one request; return (status, JSON body or text) whatever the status."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return status, raw.decode(errors="replace")


class FunctionApp:
    """The function app's contract routes on the local host."""

    def __init__(self, env: LocalEnv) -> None:
        self.env = env
        self.base = env.host_url

    def get(self, path: str) -> tuple[int, Any]:
        return http_request(self.base + path)

    def post_json(
        self, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        return self.post_bytes(path, json.dumps(body).encode(), headers)

    def post_bytes(
        self, path: str, data: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        return http_request(
            self.base + path,
            method="POST",
            data=data,
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    def rollouts(self, **query: str) -> list[dict[str, Any]]:
        """Every rollout GET /api/rollouts lists for `query`, following continuations."""
        found: list[dict[str, Any]] = []
        params = {"limit": "1000", **query}
        while True:
            status, body = self.get("/api/rollouts?" + urllib.parse.urlencode(params))
            assert status == 200, f"GET /api/rollouts answered {status}: {body}"
            found += body["rollouts"]
            if not body.get("continuation"):
                return found
            params["continuation"] = body["continuation"]

    def rollout_of(self, repository: str, digest: str) -> dict[str, Any] | None:
        matches = [r for r in self.rollouts(repository=repository) if r["digest"] == digest]
        assert len(matches) <= 1, f"{len(matches)} rollouts for one digest: {matches}"
        return matches[0] if matches else None

    def recorded(
        self,
        repository: str,
        digest: str,
        done: Callable[[dict[str, Any]], bool] = lambda _: True,
        *,
        timeout: float = 15.0,
    ) -> dict[str, Any]:
        """The rollout of `repository@digest` once listed and `done`: intake answers after
        one durable write and records the rollout right after the answer."""
        found = poll(
            lambda: self.rollout_of(repository, digest),
            lambda doc: doc is not None and done(doc),
            timeout=timeout,
            interval=0.05,
            what=f"{repository}@{digest} recorded",
        )
        assert found is not None
        return found

    def rollout(self, rollout_id: str, *, timeout: float = 15.0) -> dict[str, Any]:
        """One rollout; a 404 is asked again until `timeout` (intake answers after one
        durable write and records the rollout right after the answer)."""
        path = f"/api/rollouts/{urllib.parse.quote(rollout_id)}"
        status, body = poll(
            lambda: self.get(path), lambda answer: answer[0] != 404, timeout=timeout, what=path
        )
        assert status == 200, f"GET {path} answered {status}: {body}"
        document: dict[str, Any] = body
        return document

    def health(self) -> tuple[int, Any]:
        return self.get("/api/health")


class ArmAudit:
    """The ARM emulator's append-only audit of deployment changes."""

    def __init__(self, env: LocalEnv, context: ssl.SSLContext) -> None:
        self.url = f"{env.arm_url}/emulator/audit"
        self.context = context

    def records(self, *, digest: str | None = None) -> list[dict[str, Any]]:
        status, body = http_request(
            self.url, headers={"Authorization": "Bearer e2e"}, context=self.context
        )
        assert status == 200, f"GET /emulator/audit answered {status}: {body}"
        records: list[dict[str, Any]] = body["records"]
        return [r for r in records if digest is None or r.get("digest") == digest]


def poll(
    read: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float,
    what: str,
    on_timeout: Callable[[], str] = lambda: "",
    interval: float = 0.25,
) -> T:
    """Read until `done(value)`; at the deadline fail with the last value and `on_timeout()` (a log tail)."""
    last: list[T] = []

    def check() -> bool:
        value = read()
        last[:] = [value]
        return done(value)

    try:
        wait_until(check, timeout=timeout, interval=interval, what=what)
    except TimeoutError as error:
        raise AssertionError(
            f"{error}; last value: {last[0] if last else None}\n{on_timeout()}"
        ) from None
    return last[0]


def parse_time(value: str) -> float:
    """An RFC 3339 timestamp as POSIX seconds."""
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def elapsed_since(start: float) -> float:
    return time.monotonic() - start
