"""Intake is bounded: how deep a body may nest and how many events one envelope may carry,
both refused with a precise 4xx before anything is parsed further or recorded."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from shared.errors import InvalidInputError, PayloadTooLargeError
from shared.intake.distribution import parse_distribution_envelope
from shared.intake.hooks import parse_hook_payload
from shared.intake.validation import (
    MAX_BODY_BYTES,
    MAX_EVENTS_PER_ENVELOPE,
    MAX_JSON_DEPTH,
    TooManyEventsError,
    check_nesting_depth,
    json_nesting_depth,
    nesting_depth,
    parse_json_body,
)
from tests.unit.intake import samples


def envelope_of(count: int) -> dict[str, Any]:
    """`count` events, the sample envelope's blob push, manifest push and pull over and over."""
    events = samples.distribution_envelope()["events"]
    return {"events": [copy.deepcopy(events[i % len(events)]) for i in range(count)]}


def test_the_limits_are_what_the_api_documents() -> None:
    assert (MAX_EVENTS_PER_ENVELOPE, MAX_JSON_DEPTH, MAX_BODY_BYTES) == (100, 64, 1024 * 1024)


def test_an_envelope_at_the_limit_is_parsed() -> None:
    parsed = parse_distribution_envelope(envelope_of(MAX_EVENTS_PER_ENVELOPE))
    assert len(parsed) == MAX_EVENTS_PER_ENVELOPE


@pytest.mark.parametrize("strict", [True, False])
def test_an_envelope_over_the_limit_is_refused_whole_with_413(strict: bool) -> None:
    with pytest.raises(TooManyEventsError) as refused:
        parse_hook_payload(envelope_of(MAX_EVENTS_PER_ENVELOPE + 1), strict=strict)
    error = refused.value
    assert isinstance(error, PayloadTooLargeError) and error.http_status == 413
    body = error.to_body()["error"]
    assert (body["code"], body["field"]) == ("too_many_events", "events")
    assert "101 events" in body["message"] and "at most 100" in body["message"]


def test_the_count_is_checked_before_any_event_is_looked_at() -> None:
    # 7,000 malformed events: the answer is about the count, not about events[0].
    with pytest.raises(TooManyEventsError):
        parse_distribution_envelope({"events": [{"action": 42}] * 7000})


def test_deep_nesting_is_a_400_naming_the_depth_not_a_recursion_error() -> None:
    with pytest.raises(InvalidInputError) as refused:
        parse_json_body(b"[" * 100_000 + b"]" * 100_000)
    body = refused.value.to_body()["error"]
    assert (body["code"], body["field"]) == ("invalid_json", "body")
    assert "100000 levels deep" in body["message"] and "at most 64" in body["message"]
    # An unclosed one is refused the same way, without parsing.
    with pytest.raises(InvalidInputError, match="levels deep"):
        parse_json_body(b"[" * 1_000_000)


@pytest.mark.parametrize(("opening", "closing"), [("[", "]"), ('{"a":', "}")])
def test_the_depth_limit_is_exact(opening: str, closing: str) -> None:
    at_limit = opening * MAX_JSON_DEPTH + "1" + closing * MAX_JSON_DEPTH
    assert parse_json_body(at_limit.encode()) is not None
    over = opening * (MAX_JSON_DEPTH + 1) + "1" + closing * (MAX_JSON_DEPTH + 1)
    with pytest.raises(InvalidInputError, match="65 levels deep"):
        parse_json_body(over.encode())


def test_brackets_inside_strings_do_not_nest() -> None:
    text = json.dumps({"a": "[" * 1000, "b": '\\"[[', "c": ['"]]]"', "{{{"]})
    assert json_nesting_depth(text) == 2
    assert parse_json_body(text.encode())["a"] == "[" * 1000
    assert json_nesting_depth(r'["\\", ["\"]]"]]') == 2


def test_the_depth_count_is_linear_on_hostile_strings() -> None:
    # Unterminated strings full of escaped quotes: a naive string pattern backtracks
    # quadratically here; the body is refused as not JSON instead.
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        parse_json_body(b'"' + b'\\"' * 500_000)


def test_other_body_problems_keep_their_answers() -> None:
    with pytest.raises(InvalidInputError, match="not valid JSON") as refused:
        parse_json_body(b"{not json")
    assert refused.value.detail_code == "invalid_json"
    with pytest.raises(PayloadTooLargeError) as too_large:
        parse_json_body(b" " * (MAX_BODY_BYTES + 1))
    assert too_large.value.to_body()["error"]["code"] == "payload_too_large"
    # RFC 8259 encodings other than UTF-8 still parse (json.loads(bytes) did).
    assert parse_json_body(json.dumps({"a": [1]}).encode("utf-16")) == {"a": [1]}
    assert parse_json_body(b"\xef\xbb\xbf[1]") == [1]


def test_parsed_documents_are_measured_without_recursion() -> None:
    deep: Any = "leaf"
    for _ in range(10_000):
        deep = {"x": [deep]}
    assert nesting_depth(deep) == 20_000
    small = {"a": 1, "b": [1, {"c": []}]}
    assert nesting_depth(small) == json_nesting_depth(json.dumps(small)) == 4
    assert nesting_depth("scalar") == 0
    with pytest.raises(InvalidInputError) as refused:
        check_nesting_depth({"data": deep}, "event")
    assert refused.value.field == "event" and refused.value.detail_code == "invalid_json"
    check_nesting_depth(samples.eventgrid_schema_push(), "event")
