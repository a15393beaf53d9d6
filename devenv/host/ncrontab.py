"""Timer schedules as Azure Functions reads them: NCRONTAB (seconds first) or a TimeSpan.

NCRONTAB has six fields, `second minute hour day month day-of-week`; five-field
expressions (no seconds) are accepted too, as the WebJobs timer extension does.
Times are UTC, the Azure default when WEBSITE_TIME_ZONE is unset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# NCrontab stops looking for an occurrence after a bounded horizon; so do we.
_SEARCH_HORIZON = timedelta(days=366 * 5)
_TIMESPAN = re.compile(r"^(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2})(?::(?P<s>\d{1,2}))?$")


class InvalidScheduleError(ValueError):
    """A schedule string that is neither a valid NCRONTAB expression nor a TimeSpan."""


class Schedule(Protocol):
    @property
    def expression(self) -> str:
        """The schedule as written (after `%NAME%` resolution)."""
        ...

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment` (aware datetime, UTC)."""
        ...


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    names_start: int = 0


_FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day", 1, 31),
    _Field("month", 1, 12, _MONTH_NAMES, 1),
    _Field("day-of-week", 0, 6, _DAY_NAMES, 0),
)


def _parse_value(text: str, spec: _Field, expression: str) -> int:
    lowered = text.lower()
    if spec.names and lowered[:3] in spec.names and lowered.isalpha():
        return spec.names.index(lowered[:3]) + spec.names_start
    if not text.isdigit():
        raise InvalidScheduleError(f"{expression!r}: {spec.name} value {text!r} is not a number")
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise InvalidScheduleError(
            f"{expression!r}: {spec.name} value {value} is outside {spec.low}-{spec.high}"
        )
    return value


def _parse_field(text: str, spec: _Field, expression: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        range_text, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise InvalidScheduleError(f"{expression!r}: bad step {step_text!r} in {spec.name}")
            step = int(step_text)
        if range_text == "*":
            low, high = spec.low, spec.high
        elif "-" in range_text:
            first, _, last = range_text.partition("-")
            low = _parse_value(first, spec, expression)
            high = _parse_value(last, spec, expression)
            if low > high:
                raise InvalidScheduleError(f"{expression!r}: empty range {range_text!r}")
        else:
            low = _parse_value(range_text, spec, expression)
            # "5/15" means from 5 to the end in steps of 15, as in NCrontab.
            high = spec.high if step_text else low
        values.update(range(low, high + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed NCRONTAB expression; day-of-month and day-of-week must both match."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    def next_after(self, moment: datetime) -> datetime:
        candidate = moment.replace(microsecond=0) + timedelta(seconds=1)
        limit = moment + _SEARCH_HORIZON
        # Jump a whole unit whenever a coarser field does not match: at most a few
        # thousand steps even for sparse schedules.
        while candidate <= limit:
            if candidate.month not in self.months:
                candidate = _start_of_next_month(candidate)
            elif candidate.day not in self.days or _weekday(candidate) not in self.weekdays:
                candidate = candidate.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            elif candidate.hour not in self.hours:
                candidate = candidate.replace(minute=0, second=0) + timedelta(hours=1)
            elif candidate.minute not in self.minutes:
                candidate = candidate.replace(second=0) + timedelta(minutes=1)
            elif candidate.second not in self.seconds:
                candidate += timedelta(seconds=1)
            else:
                return candidate
        raise InvalidScheduleError(f"{self.expression!r} has no occurrence within five years")


@dataclass(frozen=True)
class IntervalSchedule:
    """A TimeSpan schedule (`hh:mm:ss`): every interval, counted from `origin`."""

    expression: str
    interval: timedelta
    origin: datetime

    def next_after(self, moment: datetime) -> datetime:
        elapsed = moment - self.origin
        periods = max(0, elapsed // self.interval + 1)
        return self.origin + periods * self.interval


def _weekday(moment: datetime) -> int:
    # Python: Monday=0; NCRONTAB: Sunday=0.
    return (moment.weekday() + 1) % 7


def _start_of_next_month(moment: datetime) -> datetime:
    if moment.month == 12:
        return moment.replace(year=moment.year + 1, month=1, day=1, hour=0, minute=0, second=0)
    return moment.replace(month=moment.month + 1, day=1, hour=0, minute=0, second=0)


def parse_cron(expression: str) -> CronSchedule:
    """Parse a six-field (seconds first) or five-field NCRONTAB expression."""
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise InvalidScheduleError(
            f"{expression!r}: NCRONTAB needs six fields (second minute hour day month "
            f"day-of-week), got {len(fields)}"
        )
    parsed = [
        _parse_field(text, spec, expression) for text, spec in zip(fields, _FIELDS, strict=True)
    ]
    return CronSchedule(expression, *parsed)


def parse_schedule(expression: str, *, origin: datetime) -> Schedule:
    """A cron or TimeSpan schedule; `origin` anchors TimeSpan intervals (the host's start)."""
    text = expression.strip()
    match = _TIMESPAN.match(text)
    if match:
        interval = timedelta(
            days=int(match["days"] or 0),
            hours=int(match["h"]),
            minutes=int(match["m"]),
            seconds=int(match["s"] or 0),
        )
        if interval <= timedelta(0):
            raise InvalidScheduleError(f"{expression!r}: a TimeSpan schedule must be positive")
        return IntervalSchedule(text, interval, origin)
    return parse_cron(text)
