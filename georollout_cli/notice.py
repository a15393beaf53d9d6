"""A build notice: the body of `POST /api/hooks/build`, signed with the Standard Webhooks scheme
(`shared.intake.webhook_signature`, the function app's own module) and delivered with retries.

A retry keeps the message's `webhook-id` (the app answers a repeated id as it answered the
first delivery, so a notice that did land is never recorded twice) but signs a fresh
timestamp, as the spec asks: the app refuses a timestamp more than 5 minutes old.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from georollout_cli.api import ApiClient, ApiResponse, ApiUnreachable, is_transient
from georollout_cli.images import ImageDigest
from shared.intake.webhook_signature import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    secret_key,
    sign,
)

SECRET_ENV = "GEOROLLOUT_BUILD_WEBHOOK_SECRET"
BUILD_HOOK_PATH = "/api/hooks/build"


@dataclass(frozen=True, slots=True)
class BuildInfo:
    """What the pipeline says about the build; a field left None is left out of the body."""

    system: str | None = None
    id: str | None = None
    url: str | None = None
    commit: str | None = None
    source: str | None = None

    def fields(self) -> dict[str, str]:
        values = {
            "system": self.system,
            "id": self.id,
            "url": self.url,
            "commit": self.commit,
            "source": self.source,
        }
        return {name: value for name, value in values.items() if value is not None}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a notice is tried: `attempts` in all, waiting `first_delay_s`, then twice
    as long each time, at most `max_delay_s` (a Retry-After within that bound wins)."""

    attempts: int = 4
    first_delay_s: float = 1.0
    max_delay_s: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("a notice is tried at least once")

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """The wait after failed attempt number `attempt` (1-based)."""
        backoff = min(self.first_delay_s * 2.0 ** (attempt - 1), self.max_delay_s)
        if retry_after is not None:
            return min(max(backoff, retry_after), self.max_delay_s)
        return backoff


def notice_body(image: ImageDigest, tags: Sequence[str], build: BuildInfo) -> bytes:
    """The JSON body: `image`, then `tags` and `build` only when there is something to say."""
    document: dict[str, object] = {"image": image.reference}
    wanted = [*tags, *([image.tag] if image.tag else [])]
    unique = list(dict.fromkeys(wanted))
    if unique:
        document["tags"] = unique
    if build.fields():
        document["build"] = build.fields()
    return json.dumps(document, separators=(",", ":")).encode()


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def signed_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for `body`."""
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, message_id, timestamp, body),
    }


def check_secret(secret: str) -> None:
    """InvalidSecretError (whose message never repeats the secret) unless it is a whsec_ one."""
    secret_key(secret)


def send_notice(
    client: ApiClient,
    secret: str,
    body: bytes,
    *,
    message_id: str | None = None,
    policy: RetryPolicy | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, float, str], None] = lambda attempt, delay, why: None,
) -> ApiResponse:
    """POST the notice until it gets an answer that is not worth retrying, or the attempts
    run out; returns the last answer (the caller decides what 202 or anything else means).
    ApiUnreachable when the last attempt got no answer at all."""
    policy = policy or RetryPolicy()
    message_id = message_id or new_message_id()
    for attempt in range(1, policy.attempts + 1):
        headers = signed_headers(secret, message_id, int(clock()), body)
        try:
            response = client.post_json_bytes(BUILD_HOOK_PATH, body, headers=headers)
        except ApiUnreachable as error:
            if attempt == policy.attempts:
                raise
            why, retry_after = str(error), None
        else:
            if not is_transient(response.status) or attempt == policy.attempts:
                return response
            why, retry_after = f"HTTP {response.status}", _retry_after(response)
        delay = policy.delay(attempt, retry_after)
        on_retry(attempt, delay, why)
        sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _retry_after(response: ApiResponse) -> float | None:
    """A Retry-After given in seconds (the HTTP-date form is rare from Azure; ignored)."""
    for name, value in response.headers.items():
        if name.lower() == "retry-after":
            try:
                return max(float(value), 0.0)
            except ValueError:
                return None
    return None
