"""bot.render's fast paths give what the plain formulas give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from bot.render import date, paginate, utf16_len

ZONES = [UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("Pacific/Kiritimati"),
         timezone(timedelta(hours=-9, minutes=-30))]


@pytest.mark.parametrize("tz", ZONES, ids=str)
@pytest.mark.parametrize(
    "instant",
    [
        datetime(2026, 12, 31, 23, 30, tzinfo=UTC),  # another day in most zones
        datetime(2027, 3, 28, 0, 59, 59, 999999, tzinfo=UTC),
        datetime(1000, 1, 2, tzinfo=UTC),
        datetime(9999, 12, 30, tzinfo=UTC),
    ],
)
def test_a_date_reads_as_strftime_writes_it(instant: datetime, tz: ZoneInfo) -> None:
    assert date(instant, tz) == instant.astimezone(tz).strftime("%Y-%m-%d")


def test_a_date_before_the_year_1000_keeps_strftime_s_unpadded_year() -> None:
    instant = datetime(999, 5, 6, 12, tzinfo=UTC)
    assert date(instant, UTC) == instant.strftime("%Y-%m-%d")
    assert date(None, UTC) == "-"


@pytest.mark.parametrize(
    ("text", "units"),
    [("", 0), ("plain ascii <b>x</b>", 20), ("Café", 4), ("🚀", 2), ("a🚀b客", 5),
     ("\x7f", 1), ("\x80", 1)],
)
def test_utf16_length_counts_code_units(text: str, units: int) -> None:
    assert utf16_len(text) == units == len(text.encode("utf-16-le")) // 2


def test_pages_cut_an_overlong_line_by_its_utf16_width() -> None:
    long_ascii, long_emoji = "x" * 40, "🚀" * 15  # 40 and 30 units
    pages = paginate(["a", long_ascii, long_emoji, "b"], per_page=10, budget=32)
    cut_ascii = "x" * 15 + "…"  # budget // 2 - 1 characters and the ellipsis
    assert pages == ["a\n" + cut_ascii, long_emoji, "b"]
