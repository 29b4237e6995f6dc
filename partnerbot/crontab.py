"""Crontab lines for APScheduler 3, which reads weekday 0 as Monday where crontab means Sunday."""

from __future__ import annotations

from datetime import tzinfo

from apscheduler.triggers.cron import CronTrigger

_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab's 0..6 (and 7)


def _weekday(text: str) -> int:
    name = text.strip().lower()
    if name[:3] in _WEEKDAYS and len(name) == 3:
        return _WEEKDAYS.index(name)
    day = int(name)  # ValueError for anything else
    if not 0 <= day <= 7:
        raise ValueError(f"day of week {text!r} is not 0-7")
    return day


def crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field as APScheduler 3 must be given it.

    In crontab 0 (and 7) is Sunday; APScheduler 3's CronTrigger (from_crontab too) reads
    0 as Monday, so "0 6 * * 1" would run on Tuesdays. Numbers become day names, which
    both read alike.
    """
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        span, _, every = part.partition("/")
        step = int(every) if every else 1
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            a, _, b = span.partition("-")
            first, last = _weekday(a), _weekday(b)
        else:
            first = _weekday(span)
            last = 7 if every else first
        if step < 1 or first > last:
            raise ValueError(f"day of week {part!r} is not a valid crontab range")
        days.update(d % 7 for d in range(first, last + 1, step))
    return ",".join(_WEEKDAYS[d] for d in sorted(days))


def crontab_trigger(expr: str, tz: tzinfo) -> CronTrigger:
    """A crontab line (minute hour day month weekday) in `tz`, weekdays as crontab means them."""
    fields = expr.split()
    if len(fields) != 5:
        return CronTrigger.from_crontab(expr, timezone=tz)  # raises the usual error
    minute, hour, day, month, weekday = fields
    return CronTrigger(
        minute=minute, hour=hour, day=day, month=month,
        day_of_week=crontab_weekdays(weekday), timezone=tz,
    )
