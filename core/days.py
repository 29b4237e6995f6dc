"""Rules about days and instants (rules 4, 5 and the runway of rule 7).

A day is exactly 24 hours of UTC time. Instants are aware datetimes; they are turned to
UTC before any arithmetic, because Python subtracts two datetimes that share a tzinfo
by wall clock, which is off by an hour across a DST change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.errors import InvalidInput

DAY = timedelta(days=1)
# One operation moves at most this many days: about 270 years, well short of overflow.
MAX_DAYS_PER_OPERATION = 100_000
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def utc(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("naive datetime: pass an aware instant")
    return instant.astimezone(UTC)


def check_days(days: int, *, field: str = "days") -> int:
    if isinstance(days, bool) or not isinstance(days, int):
        raise InvalidInput(field, "must be a whole number of days")
    if days <= 0:
        raise InvalidInput(field, "must be at least 1")
    if days > MAX_DAYS_PER_OPERATION:
        raise InvalidInput(field, f"must be at most {MAX_DAYS_PER_OPERATION:,}")
    return days


def extended_until(active_until: datetime | None, now: datetime, days: int) -> datetime:
    """Rule 4: max(now, active_until) + D days; an expired channel restarts from now."""
    start = utc(now) if active_until is None else max(utc(now), utc(active_until))
    if _LATEST - start < days * DAY:
        raise InvalidInput("days", "would run the channel past the year 9000")
    return start + days * DAY


def unused_days(active_until: datetime | None, now: datetime) -> int:
    """Rule 5: whole days left; a started day counts as used, an expired channel has 0."""
    current = utc(now)
    if active_until is None:
        return 0
    left = utc(active_until) - current
    if left <= timedelta(0):
        return 0
    return left // DAY


def runway_until(
    balance: int, running_until: list[datetime], now: datetime
) -> datetime | None:
    """Rule 7: the instant the balance can no longer keep the running channels running.

    Each running channel first uses its own days up to its active_until; from then on
    it draws one day per day from the balance. The answer is the T at which what the
    channels have drawn, the sum of max(0, T - until), equals the balance. None when no
    channel is running (nothing draws on the balance).
    """
    current = utc(now)
    ends = sorted(u for u in map(utc, running_until) if u > current)
    if not ends:
        return None
    budget = max(balance, 0) * DAY
    drawn_from = timedelta(0)  # sum of the ends of the channels already drawing
    for k, end in enumerate(ends, start=1):
        drawn_from += end - ends[0]
        nxt = ends[k] if k < len(ends) else None
        # With k channels drawing, the balance lasts until ends[0] + (budget + drawn) / k.
        candidate = ends[0] + (budget + drawn_from) / k
        if nxt is None or candidate <= nxt:
            return candidate
    raise AssertionError("unreachable")  # pragma: no cover
