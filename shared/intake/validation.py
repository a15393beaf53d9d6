"""Field validation for intake: digests, repositories, tags, registries, with errors naming the field."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from itertools import accumulate
from typing import Any, ClassVar

from shared.domain.timestamps import parse_timestamp
from shared.errors import InvalidInputError, PayloadTooLargeError

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
REPOSITORY_MAX_LENGTH = 255
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
# A login server: host name or IPv4 with an optional port (lower case).
REGISTRY = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?(?::[0-9]{1,5})?")


def require_mapping(value: Any, field: str) -> Mapping[str, Any]:
    """`value` as a JSON object, or InvalidInputError naming `field`."""
    if not isinstance(value, Mapping):
        raise InvalidInputError(field, "must be a JSON object", "invalid_type")
    return value


def require_str(container: Mapping[str, Any], key: str, field: str) -> str:
    """A required, non-empty string member."""
    value = container.get(key)
    if value is None or value == "":
        raise InvalidInputError(field, "is required", "missing_field")
    if not isinstance(value, str):
        raise InvalidInputError(field, "must be a string", "invalid_type")
    return value


def optional_str(container: Mapping[str, Any], key: str, field: str) -> str | None:
    """An optional string member (absent, null or empty -> None)."""
    value = container.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInputError(field, "must be a string", "invalid_type")
    return value


def optional_size(container: Mapping[str, Any], key: str, field: str) -> int | None:
    """An optional non-negative integer member."""
    value = container.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(field, "must be a non-negative integer", "invalid_size")
    return value


def optional_timestamp(container: Mapping[str, Any], key: str, field: str) -> datetime | None:
    """An optional RFC 3339 timestamp member, as aware UTC."""
    text = optional_str(container, key, field)
    if text is None:
        return None
    try:
        return parse_timestamp(text)
    except ValueError as error:
        raise InvalidInputError(
            field, "must be an RFC 3339 timestamp", "invalid_timestamp"
        ) from error


def validate_digest(value: str, field: str) -> str:
    """`sha256:` + 64 lowercase hex."""
    if not DIGEST.fullmatch(value):
        raise InvalidInputError(
            field, "must be sha256: followed by 64 lowercase hex digits", "invalid_digest"
        )
    return value


def validate_repository(value: str, field: str) -> str:
    """The OCI distribution name grammar, at most 255 characters."""
    if len(value) > REPOSITORY_MAX_LENGTH:
        raise InvalidInputError(
            field, f"must be at most {REPOSITORY_MAX_LENGTH} characters", "invalid_repository"
        )
    if not REPOSITORY.fullmatch(value):
        raise InvalidInputError(
            field,
            "must be lowercase path components ([a-z0-9] separated by '.', '_', '__' or '-') joined by single '/'",
            "invalid_repository",
        )
    return value


def validate_tag(value: str, field: str) -> str:
    """The OCI tag grammar: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}."""
    if not TAG.fullmatch(value):
        raise InvalidInputError(
            field, "must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}", "invalid_tag"
        )
    return value


def validate_registry(value: str, field: str) -> str:
    """A login server (host[:port]); returned lower-cased."""
    lowered = value.lower()
    if not REGISTRY.fullmatch(lowered):
        raise InvalidInputError(
            field, "must be a registry host name, optionally with :port", "invalid_registry"
        )
    return lowered


MAX_BODY_BYTES = 1024 * 1024
# The deepest nesting of arrays and objects a body may have. Real payloads (ACR webhooks,
# Event Grid events, Distribution envelopes) nest about 5 deep; json.loads recurses once
# per level and raises RecursionError near 1000, so the depth is counted before parsing.
MAX_JSON_DEPTH = 64
# Most events one Distribution envelope may carry. Distribution posts one event per
# envelope (notifications/http.go wraps each event in its own Envelope) and an ACR webhook
# is a single event, so this only bounds the work one request can cause.
MAX_EVENTS_PER_ENVELOPE = 100

# Brackets inside strings do not nest: escapes go first (so every quote left delimits a
# string), then strings, then everything but brackets. Each pass is linear, even for a
# body of unterminated strings.
_ESCAPE = re.compile(r"\\.", re.DOTALL)
_JSON_STRING = re.compile(r'"[^"]*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class TooManyEventsError(PayloadTooLargeError):
    """An envelope carried more events than one request may (413, field `events`)."""

    code: ClassVar[str] = "too_many_events"

    def to_body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message, "field": "events"}}


def check_body_size(size: int) -> None:
    """Raise PayloadTooLargeError (413) for a body over 1 MiB."""
    if size > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"request body of {size} bytes exceeds {MAX_BODY_BYTES} bytes")


def check_event_count(count: int) -> None:
    """Raise TooManyEventsError (413) for an envelope of more than MAX_EVENTS_PER_ENVELOPE."""
    if count > MAX_EVENTS_PER_ENVELOPE:
        raise TooManyEventsError(
            f"events: {count} events in one envelope; at most {MAX_EVENTS_PER_ENVELOPE} "
            "are accepted per request"
        )


def json_nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in `text`, counted without recursion.

    Brackets inside strings do not count; for text that is not JSON the answer is only an
    estimate (json.loads rejects it anyway).
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", _ESCAPE.sub("", text)))
    return max(0, max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0))


def nesting_depth(value: Any) -> int:
    """The deepest nesting of lists and mappings in an already parsed document, walked
    without recursion (a parsed document may still be nested too deep to serialise)."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def check_nesting_depth(value: Any, field: str) -> None:
    """InvalidInputError (`invalid_json`) when `value` nests deeper than MAX_JSON_DEPTH."""
    depth = nesting_depth(value)
    if depth > MAX_JSON_DEPTH:
        raise InvalidInputError(field, _too_deep(depth), "invalid_json")


def _too_deep(depth: int) -> str:
    return (
        f"not accepted: arrays and objects nest {depth} levels deep, "
        f"at most {MAX_JSON_DEPTH} are allowed"
    )


def parse_json_body(body: bytes) -> Any:
    """A request body as JSON: 413 over MAX_BODY_BYTES, 400 `invalid_json` (field `body`)
    when it is not JSON or nests deeper than MAX_JSON_DEPTH."""
    check_body_size(len(body))
    try:
        # The encodings RFC 8259 allows (json.loads(bytes) detects the same ones).
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    except UnicodeDecodeError as error:
        raise InvalidInputError("body", f"not valid JSON: {error}", "invalid_json") from None
    depth = json_nesting_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise InvalidInputError("body", _too_deep(depth), "invalid_json")
    try:
        return json.loads(text)
    except RecursionError:
        # Not reachable below MAX_JSON_DEPTH; kept so a deep body can never become a 500.
        raise InvalidInputError(
            "body", "not accepted: arrays and objects nest too deeply", "invalid_json"
        ) from None
    except ValueError as error:
        raise InvalidInputError("body", f"not valid JSON: {error}", "invalid_json") from None
