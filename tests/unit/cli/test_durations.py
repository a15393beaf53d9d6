"""Durations as `--timeout` and `--interval` take them."""

from __future__ import annotations

import re

import pytest

from georollout_cli.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("30m", 1800.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("2h0m5s", 7205.0),
        ("1d", 86400.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("0s", 0.0),
        ("45", 45.0),
        (" 5S ", 5.0),
        ("1m30s250ms", 90.25),
    ],
)
def test_accepted_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "s", "m30", "30x", "30 m", "-5s", "1h30", "30m1h", "1m1m", "1.5.5s", "5sec", "1e3s"],
)
def test_refused_durations_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape("not a duration: use e.g. 90s, 30m")):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.25, "250ms"),
        (4.2, "4.2s"),
        (59.4, "59s"),
        (65, "1m05s"),
        (3723, "1h02m"),
        (-3, "-3s"),
        (5.0, "5s"),
        (9.96, "10s"),
    ],
)
def test_durations_are_shown_short(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
