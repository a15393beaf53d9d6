"""What reached each local replica, read from its own log: Distribution writes one
`msg="response completed"` line per request (`... with error` for a 4xx), with the time to the nanosecond, the method,
the path and the client's user agent. Tests and `make bench` count georollout's registry
requests here, where the registry meters them, not inside georollout."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from devenv.config import LocalEnv

# The Azure SDK's user agent: georollout's probes and manifest reads (the local replication
# and the tests' own pushes use other clients or methods).
SDK_AGENT = "azsdk-python-azure-containerregistry"


@dataclass(frozen=True)
class RegistryRequest:
    region: str
    at: datetime
    method: str
    path: str
    user_agent: str
    status: int

    @property
    def manifest_repository(self) -> str | None:
        """The repository of a `/v2/<repository>/manifests/<reference>` request, else None."""
        path = self.path.replace("%2F", "/")
        if not path.startswith("/v2/") or "/manifests/" not in path:
            return None
        return path.removeprefix("/v2/").rpartition("/manifests/")[0]


def log_path(env: LocalEnv, region: str) -> Path:
    return env.state_dir / "logs" / f"registry-{region}.log"


def _fields(line: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for token in shlex.split(line, posix=True):
        key, sep, value = token.partition("=")
        if sep:
            fields[key] = value
    return fields


_NANOS = re.compile(r"(\.\d{6})\d*")


def _time(text: str) -> datetime:
    # Go writes nanoseconds and a Z; Python reads microseconds and an offset.
    return datetime.fromisoformat(_NANOS.sub(r"\1", text).replace("Z", "+00:00"))


def requests_in(region: str, lines: Iterable[str]) -> list[RegistryRequest]:
    found = []
    for line in lines:
        if 'msg="response completed' not in line:
            continue
        fields = _fields(line)
        found.append(
            RegistryRequest(
                region,
                _time(fields["time"]),
                fields.get("http.request.method", ""),
                fields.get("http.request.uri", ""),
                fields.get("http.request.useragent", ""),
                int(fields.get("http.response.status", "0") or 0),
            )
        )
    return found


def registry_requests(env: LocalEnv, regions: Iterable[str]) -> list[RegistryRequest]:
    """Every request the replicas of `regions` answered so far, oldest first."""
    found: list[RegistryRequest] = []
    for region in regions:
        path = log_path(env, region)
        if path.exists():
            with path.open(encoding="utf-8", errors="replace") as log:
                found.extend(requests_in(region, log))
    return sorted(found, key=lambda r: r.at)


def _manifest_under(request: RegistryRequest, prefix: str) -> bool:
    repository = request.manifest_repository
    return repository is not None and repository.startswith(prefix)


def manifest_reads_by_georollout(
    env: LocalEnv, regions: Iterable[str], *, repository_prefix: str = ""
) -> list[RegistryRequest]:
    """georollout's manifest reads (probes) of repositories starting with the prefix."""
    return [
        r
        for r in registry_requests(env, regions)
        if r.method in ("GET", "HEAD")
        and _manifest_under(r, repository_prefix)
        and SDK_AGENT in r.user_agent
    ]


def manifest_writes(
    env: LocalEnv, regions: Iterable[str], *, repository_prefix: str = ""
) -> list[RegistryRequest]:
    """Manifests stored in the replicas of `regions` (PUTs answered 201) of repositories
    starting with the prefix: when each image arrived in each region, as the replica saw it."""
    return [
        r
        for r in registry_requests(env, regions)
        if r.method == "PUT" and r.status == 201 and _manifest_under(r, repository_prefix)
    ]
