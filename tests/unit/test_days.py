"""Days and instants: allocation (rule 4), deletion refunds (rule 5), the runway (rule 7).

A day is exactly 24 hours of UTC time, whatever zone the instants were given in.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest

from core.days import (
    MAX_DAYS_PER_OPERATION,
    check_days,
    extended_until,
    runway_until,
    unused_days,
)
from core.errors import InvalidInput

DAY = timedelta(days=1)
T0 = datetime(2030, 1, 14, 9, 30, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local(
    zone: tzinfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0,
    *, fold: int = 0,
) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=zone, fold=fold)


# --- rule 4: allocation extends from max(now, active_until) --------------------------


@pytest.mark.parametrize(
    ("active_until", "now", "days", "until"),
    [
        # a live channel: the days are added to what it already has
        (T0 + 10 * DAY, T0, 30, T0 + 40 * DAY),
        (T0 + timedelta(seconds=1), T0, 1, T0 + DAY + timedelta(seconds=1)),
        # an expired channel restarts from now, the lapsed time is not paid for
        (T0 - 5 * DAY, T0, 30, T0 + 30 * DAY),
        (T0, T0, 30, T0 + 30 * DAY),  # expiring this very instant
        # a channel that never had days starts now
        (None, T0, 30, T0 + 30 * DAY),
        (None, T0, 1, T0 + DAY),
        # month ends and leap days
        (None, utc(2027, 1, 31, 12), 1, utc(2027, 2, 1, 12)),
        (None, utc(2027, 1, 31, 12), 30, utc(2027, 3, 2, 12)),
        (None, utc(2028, 1, 31, 12), 30, utc(2028, 3, 1, 12)),
        (utc(2028, 2, 28, 12), utc(2028, 2, 1), 1, utc(2028, 2, 29, 12)),
        (utc(2028, 2, 28, 12), utc(2028, 2, 1), 2, utc(2028, 3, 1, 12)),
        (utc(2027, 2, 28, 12), utc(2027, 2, 1), 1, utc(2027, 3, 1, 12)),
        (utc(2028, 12, 31, 23, 59), utc(2028, 12, 1), 1, utc(2029, 1, 1, 23, 59)),
        (None, T0, MAX_DAYS_PER_OPERATION, T0 + MAX_DAYS_PER_OPERATION * DAY),
    ],
)
def test_allocation_extends_a_live_channel_and_restarts_an_expired_one(
    active_until: datetime | None, now: datetime, days: int, until: datetime
) -> None:
    result = extended_until(active_until, now, days)
    assert result == until
    assert result.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("active_until", "now", "days", "until_utc", "wall_clock_until_utc"),
    [
        # Berlin springs forward on 2026-03-29 (02:00 CET -> 03:00 CEST): one day after
        # noon CET is 13:00 CEST; noon CEST on the wall would be only 23 hours later.
        (local(BERLIN, 2026, 3, 28, 12), local(BERLIN, 2026, 3, 1), 1,
         utc(2026, 3, 29, 11), utc(2026, 3, 29, 10)),
        (None, local(BERLIN, 2026, 3, 28, 12), 1, utc(2026, 3, 29, 11), utc(2026, 3, 29, 10)),
        # Berlin falls back on 2026-10-25 (03:00 CEST -> 02:00 CET): 25 wall hours.
        (local(BERLIN, 2026, 10, 24, 12), local(BERLIN, 2026, 10, 1), 1,
         utc(2026, 10, 25, 10), utc(2026, 10, 25, 11)),
        # 02:30 happens twice that night; fold=0 is the first (CEST), fold=1 an hour later.
        (local(BERLIN, 2026, 10, 25, 2, 30, fold=0), local(BERLIN, 2026, 10, 1), 1,
         utc(2026, 10, 26, 0, 30), utc(2026, 10, 26, 1, 30)),
        (local(BERLIN, 2026, 10, 25, 2, 30, fold=1), local(BERLIN, 2026, 10, 1), 1,
         utc(2026, 10, 26, 1, 30), utc(2026, 10, 26, 1, 30)),
        # New York springs forward on 2026-03-08 and falls back on 2026-11-01.
        (local(NEW_YORK, 2026, 3, 7, 12), local(NEW_YORK, 2026, 3, 1), 1,
         utc(2026, 3, 8, 17), utc(2026, 3, 8, 16)),
        (local(NEW_YORK, 2026, 10, 31, 12), local(NEW_YORK, 2026, 10, 1), 1,
         utc(2026, 11, 1, 16), utc(2026, 11, 1, 17)),
        (None, local(NEW_YORK, 2026, 10, 31, 12), 30,
         utc(2026, 11, 30, 16), utc(2026, 11, 30, 17)),
        # `now` given in a zone decides restart or extension by the instant it is
        (utc(2026, 3, 29, 0, 30), local(BERLIN, 2026, 3, 29, 1, 0), 1,
         utc(2026, 3, 30, 0, 30), utc(2026, 3, 30, 0, 30)),
        (utc(2026, 3, 29, 0, 30), local(BERLIN, 2026, 3, 29, 1, 45), 1,
         utc(2026, 3, 30, 0, 45), utc(2026, 3, 29, 23, 45)),
    ],
)
def test_allocation_across_a_dst_change_adds_whole_24_hour_days(
    active_until: datetime | None,
    now: datetime,
    days: int,
    until_utc: datetime,
    wall_clock_until_utc: datetime,
) -> None:
    start = now if active_until is None else max(active_until, now)
    assert start + days * DAY == wall_clock_until_utc  # what aware arithmetic would give
    result = extended_until(active_until, now, days)
    assert result == until_utc
    assert result.utcoffset() == timedelta(0)


# --- rule 5: deletion returns whole unused days; a started day counts as used ---------

ALLOCATED_AT = T0
UNTIL = T0 + 30 * DAY  # 30 days allocated at T0


@pytest.mark.parametrize(
    ("now", "returned"),
    [
        (ALLOCATED_AT, 30),  # deleted at the very instant of allocation: all days back
        (ALLOCATED_AT + timedelta(microseconds=1), 29),  # the first day has started
        (ALLOCATED_AT + timedelta(seconds=1), 29),
        (ALLOCATED_AT + timedelta(hours=12), 29),  # mid-day
        (ALLOCATED_AT + DAY - timedelta(microseconds=1), 29),
        (ALLOCATED_AT + DAY, 29),  # exactly on a day boundary
        (ALLOCATED_AT + 10 * DAY, 20),
        (ALLOCATED_AT + 10 * DAY + timedelta(hours=18), 19),
        (UNTIL - DAY, 1),
        (UNTIL - timedelta(seconds=1), 0),
        (UNTIL - timedelta(microseconds=1), 0),  # one microsecond before expiry
        (UNTIL, 0),  # at expiry
        (UNTIL + timedelta(seconds=1), 0),  # after expiry
        (UNTIL + 400 * DAY, 0),
        (ALLOCATED_AT - DAY, 31),  # a clock behind the allocation still floors
    ],
)
def test_deletion_returns_the_whole_days_left(now: datetime, returned: int) -> None:
    assert unused_days(UNTIL, now) == returned


def test_a_channel_that_never_had_days_returns_none() -> None:
    assert unused_days(None, T0) == 0


@pytest.mark.parametrize(
    ("active_until", "now", "returned"),
    [
        (utc(2027, 2, 1, 12), utc(2027, 1, 31, 12), 1),  # Jan 31 -> Feb 1
        (utc(2027, 3, 1), utc(2027, 1, 31), 29),
        (utc(2028, 3, 1), utc(2028, 1, 31), 30),
        (utc(2028, 3, 1), utc(2028, 2, 28), 2),  # 2028 has a Feb 29
        (utc(2028, 3, 1), utc(2028, 2, 29), 1),
        (utc(2028, 3, 1), utc(2028, 2, 29, 0, 0, 1), 0),
        (utc(2027, 3, 1), utc(2027, 2, 28), 1),  # 2027 does not
        (utc(2029, 1, 1), utc(2028, 1, 1), 366),
        (utc(2028, 1, 1), utc(2027, 1, 1), 365),
    ],
)
def test_unused_days_count_calendar_days_across_month_ends_and_leap_days(
    active_until: datetime, now: datetime, returned: int
) -> None:
    assert unused_days(active_until, now) == returned


# The same instants, given in UTC, and what each zone's wall clock would wrongly say.
# Python subtracts two datetimes that share a tzinfo by wall clock, which is 23 or 25
# hours to the day across a DST change; every case with a differing `wall` answer would
# fail if the code fell for that.
DST_CASES = [
    # zone, active_until, now, unused days, wall-clock answer
    # Berlin, spring: 03-28 12:00 CET to 03-30 12:00 CEST is 47 h (48 on the wall).
    ("Europe/Berlin", utc(2026, 3, 30, 10), utc(2026, 3, 28, 11), 1, 2),
    ("Europe/Berlin", utc(2026, 3, 30, 11), utc(2026, 3, 28, 11), 2, 2),
    # Berlin, autumn: 10-24 12:00 CEST to 10-26 11:00 CET is 48 h (47 on the wall).
    ("Europe/Berlin", utc(2026, 10, 26, 10), utc(2026, 10, 24, 10), 2, 1),
    ("Europe/Berlin", utc(2026, 10, 26, 9, 59), utc(2026, 10, 24, 10), 1, 1),
    # New York, spring: 03-07 12:00 EST to 03-09 12:00 EDT is 47 h.
    ("America/New_York", utc(2026, 3, 9, 16), utc(2026, 3, 7, 17), 1, 2),
    ("America/New_York", utc(2026, 3, 9, 17), utc(2026, 3, 7, 17), 2, 2),
    # New York, autumn: 10-31 12:00 EDT to 11-02 11:00 EST is 48 h.
    ("America/New_York", utc(2026, 11, 2, 16), utc(2026, 10, 31, 16), 2, 1),
    # From 01:30 EDT, the first of the two 01:30s, to 01:00 EST next day: 24.5 h.
    ("America/New_York", utc(2026, 11, 2, 6), utc(2026, 11, 1, 5, 30), 1, 0),
    ("America/New_York", utc(2026, 11, 1, 6, 30), utc(2026, 11, 1, 5, 30), 0, 0),
]


@pytest.mark.parametrize(("zone", "active_until", "now", "returned", "wall"), DST_CASES)
def test_unused_days_in_a_dst_zone_are_the_same_as_in_utc(
    zone: str, active_until: datetime, now: datetime, returned: int, wall: int
) -> None:
    tz = ZoneInfo(zone)
    zoned_until, zoned_now = active_until.astimezone(tz), now.astimezone(tz)
    assert max(zoned_until - zoned_now, timedelta(0)) // DAY == wall  # the trap
    assert unused_days(active_until, now) == returned
    assert unused_days(zoned_until, zoned_now) == returned
    assert unused_days(zoned_until, now) == returned
    assert unused_days(active_until, zoned_now) == returned


@pytest.mark.parametrize(("zone", "active_until", "now", "returned", "wall"), DST_CASES)
def test_an_extension_in_a_dst_zone_is_the_same_instant_as_in_utc(
    zone: str, active_until: datetime, now: datetime, returned: int, wall: int
) -> None:
    tz = ZoneInfo(zone)
    expected = max(active_until, now) + 7 * DAY
    assert extended_until(active_until, now, 7) == expected
    assert extended_until(active_until.astimezone(tz), now.astimezone(tz), 7) == expected
    assert extended_until(None, now.astimezone(tz), 7) == now + 7 * DAY


def test_a_fixed_offset_zone_gives_the_same_answers_as_utc() -> None:
    plus5 = timezone(timedelta(hours=5, minutes=30))
    until, now = (T0 + 3 * DAY).astimezone(plus5), (T0 + timedelta(hours=1)).astimezone(plus5)
    assert unused_days(until, now) == 2
    assert extended_until(until, now, 1) == T0 + 4 * DAY


NAIVE = datetime(2030, 1, 14, 9, 30)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: extended_until(None, NAIVE, 1), id="extend-naive-now"),
        pytest.param(lambda: extended_until(NAIVE, T0, 1), id="extend-naive-until"),
        pytest.param(lambda: extended_until(T0, NAIVE, 1), id="extend-live-naive-now"),
        pytest.param(lambda: unused_days(NAIVE, T0), id="unused-naive-until"),
        pytest.param(lambda: unused_days(T0, NAIVE), id="unused-naive-now"),
        pytest.param(lambda: runway_until(10, [NAIVE], T0), id="runway-naive-until"),
        pytest.param(lambda: runway_until(10, [T0 + DAY], NAIVE), id="runway-naive-now"),
        pytest.param(
            lambda: unused_days(None, NAIVE),
            id="unused-never-activated-naive-now",
        ),
        pytest.param(
            lambda: runway_until(10, [], NAIVE),
            id="runway-no-channels-naive-now",
        ),
    ],
)
def test_a_naive_datetime_is_refused(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="naive"):
        call()


def test_an_extension_past_the_year_9000_is_refused() -> None:
    with pytest.raises(InvalidInput):
        extended_until(utc(8999, 12, 1), T0, 100)


# --- how many days one operation may move ----------------------------------------


@pytest.mark.parametrize(
    ("days", "accepted"),
    [
        (1, True),
        (30, True),
        (MAX_DAYS_PER_OPERATION, True),
        (100_000, True),
        (100_001, False),
        (0, False),
        (-1, False),
        (-30, False),
        (True, False),  # a bool is an int to Python, not a number of days
        (False, False),
        (1.5, False),
        (30.0, False),
        ("30", False),
        (None, False),
    ],
)
def test_an_operation_moves_between_1_and_100_000_whole_days(days: object, accepted: bool) -> None:
    if accepted:
        assert check_days(days) == days  # type: ignore[arg-type]
    else:
        with pytest.raises(InvalidInput) as caught:
            check_days(days)  # type: ignore[arg-type]
        assert caught.value.field == "days"


def test_check_days_names_the_field_it_checks() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_days(0, field="threshold")
    assert caught.value.field == "threshold"


# --- rule 7: the runway, when the balance can no longer keep the channels running ----


@pytest.mark.parametrize(
    ("balance", "running_until", "runway"),
    [
        (30, [], None),  # nothing runs, nothing draws on the balance
        (30, [T0 - DAY], None),  # an expired channel is not running
        (30, [T0], None),  # expiring right now is not running either
        (30, [T0 + 10 * DAY], T0 + 40 * DAY),
        (0, [T0 + 10 * DAY], T0 + 10 * DAY),  # nothing to renew with: the expiry itself
        (-5, [T0 + 10 * DAY], T0 + 10 * DAY),  # a negative balance counts as 0
        (10, [T0 + 10 * DAY, T0 + 20 * DAY], T0 + 20 * DAY),
        (0, [T0 + 20 * DAY, T0 + 10 * DAY], T0 + 10 * DAY),  # the earliest expiry
        (-100, [T0 + 20 * DAY, T0 + 10 * DAY], T0 + 10 * DAY),
        (30, [T0 + 10 * DAY, T0 + 20 * DAY], T0 + 30 * DAY),  # 10 alone, then 20 shared
        (20, [T0 + 10 * DAY, T0 + 10 * DAY], T0 + 20 * DAY),  # two drawing together
        (60, [T0 + DAY, T0 + DAY, T0 + DAY], T0 + 21 * DAY),
        (20, [T0 - DAY, T0 + 10 * DAY], T0 + 30 * DAY),  # the expired one draws nothing
    ],
)
def test_the_runway_is_when_the_balance_stops_covering_the_running_channels(
    balance: int, running_until: list[datetime], runway: datetime | None
) -> None:
    assert runway_until(balance, running_until, T0) == runway


@pytest.mark.parametrize(("zone"), ["Europe/Berlin", "America/New_York"])
def test_the_runway_is_the_same_instant_whatever_the_zone(zone: str) -> None:
    tz = ZoneInfo(zone)
    now = utc(2026, 3, 1, 12)
    until = [utc(2026, 3, 20, 12), utc(2026, 11, 10, 12)]
    # 235 days of one channel alone, then the other 65 shared by two: 32.5 days more.
    expected = utc(2026, 12, 13, 0)
    assert runway_until(300, until, now) == expected
    assert runway_until(300, [u.astimezone(tz) for u in until], now.astimezone(tz)) == expected
