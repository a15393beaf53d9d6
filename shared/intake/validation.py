"""Field validation for intake: digests, repositories, tags, registries, with errors naming the field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

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


def check_body_size(size: int) -> None:
    """Raise PayloadTooLargeError (413) for a body over 1 MiB."""
    if size > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"request body of {size} bytes exceeds {MAX_BODY_BYTES} bytes")
