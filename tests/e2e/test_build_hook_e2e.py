"""POST /api/hooks/build through the local host: signed notices recorded as hints, every
refusal a 401 or 400 that writes nothing, a replayed message answered as the first time."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from devenv.build_secret import build_webhook_secret
from devenv.stack import Stack
from shared.domain.model import rollout_id
from shared.intake.webhook_signature import sign
from tests.e2e.conftest import Pushed
from tests.e2e.local_api import FunctionApp, poll

pytestmark = pytest.mark.e2e

ROUTE = "/api/hooks/build"
BUILD = {
    "system": "github-actions",
    "id": "7421",
    "url": "https://github.example/org/models/actions/runs/7421",
    "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8",
    "source": "https://github.example/org/models",
}


def signed(
    secret: str, body: bytes, *, message_id: str | None = None, at: int | None = None
) -> dict[str, str]:
    message = message_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if at is None else at
    return {
        "webhook-id": message,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message, timestamp, body),
    }


def notice_body(registry: str, repository: str, digest: str, **extra: Any) -> bytes:
    return json.dumps(
        {"image": f"{registry}/{repository}@{digest}", "tags": ["v1"], "build": BUILD, **extra}
    ).encode()


@pytest.fixture(scope="module")
def secret(stack: Stack) -> str:
    return build_webhook_secret(stack.env.state_dir)


def test_a_signed_notice_is_recorded_with_its_build_and_the_image_goes_live(
    app: FunctionApp, stack: Stack, push: Callable[[str, str], Pushed], secret: str
) -> None:
    pushed = push("builds/announced", "v1")
    registry = stack.env.primary.registry_host
    body = notice_body(registry, pushed.repository, pushed.digest)
    status, answer = app.post_bytes(ROUTE, body, signed(secret, body))
    assert status == 202, answer
    assert answer == {"rollout": rollout_id(registry, pushed.repository, pushed.digest)}
    doc = poll(
        lambda: app.rollout(answer["rollout"]),
        lambda d: d["state"] == "live",
        timeout=120,
        what="the announced image live everywhere",
    )
    assert [{k: b[k] for k in BUILD} for b in doc["builds"]] == [BUILD]
    assert doc["builds"][0]["received_at"]
    assert doc["tags"] == ["v1"]


def test_a_replayed_message_answers_as_the_first_time_and_changes_nothing(
    app: FunctionApp, stack: Stack, push: Callable[[str, str], Pushed], secret: str
) -> None:
    pushed = push("builds/replayed", "v1")
    registry = stack.env.primary.registry_host
    body = notice_body(registry, pushed.repository, pushed.digest)
    headers = signed(secret, body)
    first = app.post_bytes(ROUTE, body, headers)
    assert first[0] == 202, first
    identity = first[1]["rollout"]

    def build_ids(doc: dict[str, Any]) -> list[str]:
        return sorted(b["id"] for b in doc["builds"])

    # The answer waits only for the inbox write: the build is attached right after it.
    poll(
        lambda: app.rollout(identity),
        lambda d: build_ids(d) == ["7421"],
        timeout=30,
        what="the first build attached",
    )
    # The same message again, and the same id with a fresh signature over another build.
    assert app.post_bytes(ROUTE, body, headers) == first
    other = notice_body(registry, pushed.repository, pushed.digest, build={"id": "9999"})
    assert (
        app.post_bytes(ROUTE, other, signed(secret, other, message_id=headers["webhook-id"]))
        == first
    )
    # A new message after the replays: once its build shows, a replay that had been
    # accepted would show too (recording is asynchronous, so an immediate read proves
    # nothing).
    sentinel = notice_body(
        registry, pushed.repository, pushed.digest, build={**BUILD, "id": "8000"}
    )
    assert app.post_bytes(ROUTE, sentinel, signed(secret, sentinel)) == first
    after = poll(
        lambda: app.rollout(identity),
        lambda d: "8000" in build_ids(d),
        timeout=30,
        what="the message after the replays attached",
    )
    assert build_ids(after) == ["7421", "8000"]


@pytest.mark.parametrize(
    "tamper",
    ["wrong_secret", "stale", "future", "tampered_body", "missing_id", "missing_signature"],
)
def test_a_notice_that_is_not_signed_right_is_a_401_and_writes_nothing(
    app: FunctionApp, stack: Stack, secret: str, tamper: str
) -> None:
    repository = f"builds/refused-{tamper.replace('_', '-')}"
    digest = "sha256:" + uuid.uuid4().hex * 2
    body = notice_body(stack.env.primary.registry_host, repository, digest)
    other_secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
    headers = {
        "wrong_secret": lambda: signed(other_secret, body),
        "stale": lambda: signed(secret, body, at=int(time.time()) - 6 * 60),
        "future": lambda: signed(secret, body, at=int(time.time()) + 6 * 60),
        "tampered_body": lambda: signed(secret, body.replace(b"7421", b"7422")),
        "missing_id": lambda: {k: v for k, v in signed(secret, body).items() if k != "webhook-id"},
        "missing_signature": lambda: {
            k: v for k, v in signed(secret, body).items() if k != "webhook-signature"
        },
    }[tamper]()
    status, answer = app.post_bytes(ROUTE, body, headers)
    assert status == 401, answer
    assert answer["error"]["code"] == "unauthorized"
    assert secret not in json.dumps(answer)
    assert app.rollouts(repository=repository) == []


def test_an_image_of_another_registry_is_a_400_naming_image(app: FunctionApp, secret: str) -> None:
    body = notice_body("contoso.azurecr.io", "builds/elsewhere", "sha256:" + "a" * 64)
    status, answer = app.post_bytes(ROUTE, body, signed(secret, body))
    assert status == 400, answer
    assert answer["error"]["field"] == "image"
    assert app.rollouts(repository="builds/elsewhere") == []


def test_a_digest_the_registry_lacks_is_recorded_but_never_confirmed_or_deployed(
    app: FunctionApp, stack: Stack, secret: str
) -> None:
    repository, digest = "builds/ghost", "sha256:" + uuid.uuid4().hex * 2
    body = notice_body(stack.env.primary.registry_host, repository, digest)
    status, answer = app.post_bytes(ROUTE, body, signed(secret, body))
    assert status == 202, answer
    doc = app.rollout(answer["rollout"])
    assert doc["tags"] == [] and doc["confirmed_at"] is None
    assert all(r["deployment"] is None for r in doc["regions"])
