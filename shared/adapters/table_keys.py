"""PartitionKey/RowKey text for Table Storage: reversible escaping and fixed-width time keys.

Table Storage forbids `/ \\ # ?` and the control characters U+0000-U+001F and
U+007F-U+009F in keys, and keys are at most 1 KiB. Values are escaped as `%XX`
(so `%` itself is escaped too), plus `|` (our separator between key parts) and `~`
(the marker of a hashed key), which keeps every composite key unambiguous.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

# 1 KiB of UTF-16, the storage encoding: 512 characters is safe on Azure and Azurite alike.
MAX_KEY_CHARS = 512
SEPARATOR = "|"
_HASH_MARK = "~"
_ESCAPED = frozenset("/\\#?%|~") | frozenset(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0)))
_ESCAPE_SEQUENCE = re.compile(r"%([0-9A-F]{2})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIME_DIGITS = 17  # microseconds since 1970 stay below 10**17 until the year 5138
_TIME_LIMIT = 10**_TIME_DIGITS


def escape_key_part(value: str) -> str:
    """`value` with every character Table Storage forbids (and `%`, `|`, `~`) as `%XX`."""
    return "".join(f"%{ord(ch):02X}" if ch in _ESCAPED else ch for ch in value)


def unescape_key_part(escaped: str) -> str:
    """The inverse of `escape_key_part`."""
    return _ESCAPE_SEQUENCE.sub(lambda match: chr(int(match.group(1), 16)), escaped)


def compose_key(*parts: str) -> str:
    """Escaped `parts` joined by `|`; a key too long for Table Storage keeps a readable
    prefix and ends in `~` + a SHA-256 of the parts, so it stays unique and deterministic."""
    key = SEPARATOR.join(escape_key_part(part) for part in parts)
    if len(key) <= MAX_KEY_CHARS:
        return key
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()
    return key[: MAX_KEY_CHARS - len(digest) - 1] + _HASH_MARK + digest


def split_key(key: str) -> list[str]:
    """The parts of a key built by `compose_key` (not of a hashed one)."""
    if _HASH_MARK in key:
        raise ValueError(f"key {key!r} was hashed and cannot be split")
    return [unescape_key_part(part) for part in key.split(SEPARATOR)]


def _microseconds(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass an aware UTC time")
    delta = moment - _EPOCH
    value = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if not 0 <= value < _TIME_LIMIT:
        raise ValueError(f"{moment!r} is outside the range keys can hold")
    return value


def ascending_time(moment: datetime) -> str:
    """Fixed-width text that sorts like `moment` (oldest first)."""
    return f"{_microseconds(moment):0{_TIME_DIGITS}d}"


def descending_time(moment: datetime) -> str:
    """Fixed-width text that sorts opposite to `moment` (newest first)."""
    return f"{_TIME_LIMIT - 1 - _microseconds(moment):0{_TIME_DIGITS}d}"


def time_from_ascending(text: str) -> datetime:
    """The moment an `ascending_time` key part stands for."""
    return _EPOCH + timedelta(microseconds=int(text))
