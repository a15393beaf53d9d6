"""Table Storage key text: reversible escaping, length bound, and time keys that sort right."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.table_keys import (
    MAX_KEY_CHARS,
    ascending_time,
    compose_key,
    descending_time,
    escape_key_part,
    split_key,
    time_from_ascending,
    unescape_key_part,
)

# What Table Storage refuses in PartitionKey/RowKey.
FORBIDDEN = re.compile(r"[\u0000-\u001f\u007f-\u009f/\\#?]")
HOSTILE = [
    "models/llm",
    "a\\b#c?d",
    "100%25 literal",
    "pipes|and~tildes",
    "ctrl\x00\x01\x1f\x7f\x80\x9f",
    "ünïcødé/名前/😀",
    "",
    "%",
    "%2F",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_escape_round_trips_and_leaves_nothing_forbidden(value: str) -> None:
    escaped = escape_key_part(value)
    assert not FORBIDDEN.search(escaped)
    assert "|" not in escaped and "~" not in escaped
    assert unescape_key_part(escaped) == value


def test_escaping_is_injective_on_lookalikes() -> None:
    values = ["a/b", "a%2Fb", "a%252Fb", "a|b", "a%7Cb"]
    assert len({escape_key_part(v) for v in values}) == len(values)


def test_compose_and_split_keep_parts_apart() -> None:
    key = compose_key("repo|x", "a/b", "")
    assert split_key(key) == ["repo|x", "a/b", ""]
    assert compose_key("a", "b|c") != compose_key("a|b", "c")


def test_over_long_keys_are_hashed_deterministically_and_stay_distinct() -> None:
    long_a = "x/" * 400 + "a"
    long_b = "x/" * 400 + "b"
    key_a = compose_key("repo", long_a)
    assert len(key_a) == MAX_KEY_CHARS
    assert not FORBIDDEN.search(key_a)
    assert key_a == compose_key("repo", long_a)
    assert key_a != compose_key("repo", long_b)
    with pytest.raises(ValueError, match="hashed"):
        split_key(key_a)


def test_time_keys_sort_like_time() -> None:
    base = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    moments = [base + timedelta(microseconds=n) for n in (0, 1, 999_999, 10**9)]
    ascending = [ascending_time(m) for m in moments]
    descending = [descending_time(m) for m in moments]
    assert ascending == sorted(ascending)
    assert descending == sorted(descending, reverse=True)
    assert len({len(k) for k in ascending + descending}) == 1
    assert [time_from_ascending(k) for k in ascending] == moments


def test_time_keys_refuse_naive_times() -> None:
    with pytest.raises(ValueError, match="naive"):
        ascending_time(datetime(2025, 1, 1))
