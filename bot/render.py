"""Formatting for people: escaped HTML, dates, days, money; and pages under 4096."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from html import escape

from core import money

MAX_TEXT = 4096
PAGE_BUDGET = 3500  # room left for a page's header and footer
ECHO = 64  # at most this much of what a user typed is quoted back


def esc(text: str) -> str:
    return escape(text, quote=False)


def echo(text: str) -> str:
    """User input quoted back: cut short, then escaped."""
    short = text if len(text) <= ECHO else text[: ECHO - 1] + "…"
    return esc(short)


def days(n: int) -> str:
    return f"{n:,} day" if abs(n) == 1 else f"{n:,} days"


def date(instant: datetime | None, tz: tzinfo) -> str:
    if instant is None:
        return "-"
    day = instant.astimezone(tz).date()
    # isoformat is strftime("%Y-%m-%d") at a fifth of the cost (a page of history shows
    # fifteen dates); they differ only before the year 1000, which strftime leaves unpadded.
    return day.isoformat() if day.year >= 1000 else day.strftime("%Y-%m-%d")


def amount(minor: int, currency: str) -> str:
    return money.format_amount(minor, currency)


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji is two)."""
    if text.isascii():  # one unit per character; no copy to count them
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def paginate(lines: Sequence[str], per_page: int = 20, budget: int = PAGE_BUDGET) -> list[str]:
    """Split lines into pages of at most `per_page` lines and `budget` UTF-16 units.

    Measured on the HTML source, which is never shorter than the text Telegram parses from it.
    """
    pages: list[str] = []
    current: list[str] = []
    size = 0
    for line in lines:
        width = utf16_len(line)
        if width > budget:
            cut = line[: budget // 2 - 1] + "…"
            width = utf16_len(cut)
        else:
            cut = line
        if current and (len(current) >= per_page or size + width + 1 > budget):
            pages.append("\n".join(current))
            current, size = [], 0
        current.append(cut)
        size += width + 1
    if current or not pages:
        pages.append("\n".join(current))
    return pages
