"""RFC 3339 UTC timestamps: the one text form of time in documents, records and events."""

from __future__ import annotations

import re
from datetime import UTC, datetime

# Registries send up to nanoseconds ("2018-04-25T21:39:47.276585742Z"); Python keeps microseconds.
_FRACTION = re.compile(r"\.(\d+)")


def format_timestamp(value: datetime) -> str:
    """`2024-05-01T12:00:00.123456Z` (UTC; naive datetimes are refused)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: georollout keeps every time zone-aware")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_timestamp(text: str) -> datetime:
    """Parse RFC 3339 (any offset, `Z`, up to nanoseconds) into an aware UTC datetime."""
    if not isinstance(text, str) or "T" not in text.upper():
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    normalised = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text.strip(), count=1)
    if normalised.endswith(("Z", "z")):
        normalised = normalised[:-1] + "+00:00"
    parsed = datetime.fromisoformat(normalised)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without offset: {text!r}")
    return parsed.astimezone(UTC)
