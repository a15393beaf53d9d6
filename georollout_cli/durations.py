"""Durations on the command line (`90s`, `30m`, `1h30m`, `500ms`, or bare seconds), parsed here
rather than by a library: the grammar is small and its errors should name the option."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Largest unit first; each unit at most once ("1h30m", never "30m1h" or "1m1m").
_UNIT_ORDER = ("d", "h", "m", "s", "ms")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_BARE_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parse_duration(text: str) -> float:
    """Seconds in `text`: `90s`, `30m`, `1h30m`, `2.5s`, `500ms`, `1d`, or a bare number of
    seconds (as GNU timeout reads it). ValueError, with the accepted forms, otherwise."""
    raw = text.strip().lower()
    if _BARE_NUMBER.fullmatch(raw):
        return float(raw)
    total, position, last_unit = 0.0, 0, -1
    for match in _PART.finditer(raw):
        unit = _UNIT_ORDER.index(match.group(2))
        if match.start() != position or unit <= last_unit:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position, last_unit = match.end(), unit
    else:
        if raw and position == len(raw):
            return total
    raise ValueError(
        f"{text!r} is not a duration: use e.g. 90s, 30m, 1h30m, 500ms or a number of seconds"
    )


def format_duration(seconds: float) -> str:
    """A short human form: `850ms`, `4.2s`, `5s`, `59s`, `1m05s`, `2h03m`."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 9.95:
        tenths = f"{seconds:.1f}"
        return tenths.removesuffix(".0") + "s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
