"""Days at their limits: the last instant a channel may run to, what a refused day count
says, and a zone that cannot tell its offset."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo

import pytest

from core.days import check_days, extended_until, unused_days, utc
from core.errors import InvalidInput

DAY = timedelta(days=1)
T0 = datetime(2030, 1, 14, 9, 30, tzinfo=UTC)
YEAR_9000 = datetime(9000, 1, 1, tzinfo=UTC)


class NoOffset(tzinfo):
    """A tzinfo that does not know its offset: Python treats such a datetime as naive."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


def test_an_instant_in_a_zone_without_an_offset_is_refused_as_naive() -> None:
    vague = datetime(2030, 1, 14, 9, 30, tzinfo=NoOffset())
    with pytest.raises(ValueError, match=r"^naive datetime: pass an aware instant$"):
        utc(vague)
    with pytest.raises(ValueError, match="naive"):
        unused_days(T0 + DAY, vague)


def test_a_channel_may_run_up_to_the_first_instant_of_the_year_9000_and_no_further() -> None:
    start = YEAR_9000 - 10 * DAY
    assert extended_until(start, T0, 10) == YEAR_9000
    with pytest.raises(InvalidInput) as caught:
        extended_until(start + timedelta(microseconds=1), T0, 10)
    assert (caught.value.field, caught.value.reason) == (
        "days", "would run the channel past the year 9000"
    )


@pytest.mark.parametrize(
    ("days", "reason"),
    [
        (0, "must be at least 1"),
        (-1, "must be at least 1"),
        (100_001, "must be at most 100,000"),
        (True, "must be a whole number of days"),
        (2.0, "must be a whole number of days"),
    ],
)
def test_a_refused_day_count_says_why(days: object, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_days(days)  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.reason) == ("days", reason)


def test_a_count_refused_for_another_field_is_named_by_it_whatever_the_reason() -> None:
    for bad in (True, 0, 100_001):
        with pytest.raises(InvalidInput) as caught:
            check_days(bad, field="threshold")
        assert caught.value.field == "threshold"


def test_one_day_is_accepted() -> None:
    assert check_days(1) == 1


@pytest.fixture
def new_york_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's local zone set to New York for the test (POSIX only)."""
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset")
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("new_york_local_time")
def test_an_instant_is_turned_to_utc_whatever_the_machines_zone() -> None:
    berlin = timezone(timedelta(hours=1))
    turned = utc(datetime(2030, 1, 14, 10, 30, tzinfo=berlin))
    assert turned.isoformat() == "2030-01-14T09:30:00+00:00"
    assert turned.tzinfo is UTC
