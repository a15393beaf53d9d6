"""An ApiClient whose HTTP exchange is scripted: the real client code above `request` runs
(routes, paging, error handling) without a server."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from georollout_cli.api import ApiClient, ApiResponse, ApiUnreachable

REGISTRY = "127.0.0.1:5001"
REPOSITORY = "models/llm"
CREATED = "2026-11-24T07:10:00.000000Z"


def digest_of(char: str) -> str:
    return "sha256:" + char * 64


def region(name: str, state: str, **extra: Any) -> dict[str, Any]:
    return {
        "region": name,
        "primary": name == "eastus",
        "state": state,
        "replicated_at": None,
        "deploy_started_at": None,
        "live_at": None,
        "probe_attempts": 1,
        "last_error": None,
        "deployment": None,
        "deploy_step": None,
        "waiting_for": None,
        **extra,
    }


def document(
    digest: str, state: str, regions: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    from shared.domain.model import rollout_id

    return {
        "id": rollout_id(REGISTRY, REPOSITORY, digest),
        "registry": REGISTRY,
        "repository": REPOSITORY,
        "digest": digest,
        "tags": [],
        "pending_tags": [],
        "state": state,
        "created_at": CREATED,
        "updated_at": CREATED,
        "regions": regions if regions is not None else [region("eastus", "awaiting_replication")],
        **extra,
    }


Answer = ApiResponse | Exception


@dataclass
class Exchange:
    method: str
    path: str
    query: dict[str, str]
    data: bytes | None
    headers: dict[str, str]


class FakeApi(ApiClient):
    """Answers each request with `answer(exchange)`; every exchange is kept in `sent`."""

    def __init__(self, answer: Callable[[Exchange], Answer]) -> None:
        super().__init__("http://127.0.0.1:7071")
        self.answer = answer
        self.sent: list[Exchange] = []

    def request(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ApiResponse:
        route, _, query = path.partition("?")
        exchange = Exchange(
            method, route, dict(urllib.parse.parse_qsl(query)), data, dict(headers or {})
        )
        self.sent.append(exchange)
        answer = self.answer(exchange)
        if isinstance(answer, Exception):
            raise answer
        return answer


def unreachable() -> ApiUnreachable:
    return ApiUnreachable("GET http://127.0.0.1:7071/api/rollouts: [Errno 111] Connection refused")


def listing(*documents: dict[str, Any]) -> Callable[[Exchange], Answer]:
    """GET /api/rollouts (newest first, one rollout per page so paging is exercised) and
    GET /api/rollouts/{id} over `documents`."""
    by_id = {d["id"]: d for d in documents}

    def answer(exchange: Exchange) -> Answer:
        if exchange.path == "/api/rollouts":
            chosen = [
                d
                for d in documents
                if d["repository"] == exchange.query.get("repository", d["repository"])
            ]
            start = int(exchange.query.get("continuation", "0"))
            more = start + 1 < len(chosen)
            return ApiResponse(
                200,
                {
                    "rollouts": chosen[start : start + 1],
                    "continuation": str(start + 1) if more else None,
                },
            )
        rollout = urllib.parse.unquote(exchange.path.removeprefix("/api/rollouts/"))
        found = by_id.get(rollout)
        return (
            ApiResponse(200, found) if found else ApiResponse(404, {"error": {"code": "not_found"}})
        )

    return answer
