"""NCRONTAB as Azure reads it: seconds first, six fields; TimeSpan schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devenv.host.ncrontab import InvalidScheduleError, Schedule, parse_cron, parse_schedule

START = datetime(2024, 3, 15, 10, 7, 42, 250_000, tzinfo=UTC)  # a Friday


def occurrences(schedule: Schedule, count: int, start: datetime = START) -> list[datetime]:
    found, moment = [], start
    for _ in range(count):
        moment = schedule.next_after(moment)
        found.append(moment)
    return found


def at(hour: int, minute: int, second: int = 0, day: int = 15) -> datetime:
    return datetime(2024, 3, day, hour, minute, second, tzinfo=UTC)


def test_every_five_minutes_fires_on_the_minute_not_every_second() -> None:
    assert occurrences(parse_cron("0 */5 * * * *"), 3) == [at(10, 10), at(10, 15), at(10, 20)]


def test_every_ten_seconds() -> None:
    assert occurrences(parse_cron("*/10 * * * * *"), 3) == [
        at(10, 7, 50),
        at(10, 8, 0),
        at(10, 8, 10),
    ]


def test_every_second() -> None:
    assert occurrences(parse_cron("* * * * * *"), 2) == [at(10, 7, 43), at(10, 7, 44)]


def test_next_is_strictly_after_an_exact_occurrence() -> None:
    assert parse_cron("0 */5 * * * *").next_after(at(10, 10)) == at(10, 15)


def test_lists_and_ranges() -> None:
    schedule = parse_cron("30 0,15 9-10 * * *")
    assert occurrences(schedule, 3) == [at(10, 15, 30), at(9, 0, 30, day=16), at(9, 15, 30, day=16)]


def test_weekday_names_and_day_of_week_must_match_too() -> None:
    # Every Monday at 09:30:00; 15 March 2024 is a Friday.
    assert parse_cron("0 30 9 * * Mon").next_after(START) == at(9, 30, day=18)
    # Day-of-month and day-of-week both apply (NCrontab semantics): the 1st that is a Monday.
    assert parse_cron("0 0 0 1 * 1").next_after(START) == datetime(2024, 4, 1, tzinfo=UTC)


def test_month_names_roll_over_the_year() -> None:
    assert parse_cron("0 0 12 1 jan *").next_after(START) == datetime(2025, 1, 1, 12, tzinfo=UTC)


def test_february_29_is_found_in_a_leap_year() -> None:
    assert parse_cron("0 0 0 29 2 *").next_after(START) == datetime(2028, 2, 29, tzinfo=UTC)


def test_five_fields_mean_second_zero() -> None:
    assert parse_cron("*/5 * * * *").next_after(START) == at(10, 10)


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "* * * *",
        "60 * * * * *",
        "* * 24 * * *",
        "*/0 * * * * *",
        "x * * * * *",
        "5-1 * * * * *",
        "* * * * * * *",
        "0 0 0 31 2 *",
    ],
)
def test_invalid_expressions_are_refused(expression: str) -> None:
    with pytest.raises(InvalidScheduleError):
        parse_cron(expression).next_after(START)


def test_timespan_schedule_counts_from_its_origin() -> None:
    schedule = parse_schedule("00:00:30", origin=START)
    assert occurrences(schedule, 2) == [
        START + timedelta(seconds=30),
        START + timedelta(seconds=60),
    ]
    assert parse_schedule("1.02:00:00", origin=START).next_after(START) == START + timedelta(
        days=1, hours=2
    )


def test_parse_schedule_reads_cron_too() -> None:
    assert parse_schedule("0 */5 * * * *", origin=START).next_after(START) == at(10, 10)
