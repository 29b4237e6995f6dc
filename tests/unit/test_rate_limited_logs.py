"""partnerbot/logs.py's RateLimitFilter: one line per kind per interval, with a count."""

from __future__ import annotations

import logging

from partnerbot.logs import RateLimitFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, *args: object, name: str = "asyncio") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_a_burst_of_one_kind_is_one_line_then_one_line_with_its_count() -> None:
    clock = Clock()
    limiter = RateLimitFilter(interval=60, clock=clock)
    passed = [limiter.filter(record("accept failed on %s", i)) for i in range(10_000)]
    assert passed.count(True) == 1 and passed[0]
    clock.now = 61
    later = record("accept failed on %s", "x")
    assert limiter.filter(later)
    assert later.getMessage() == "accept failed on x (9999 more like this in 61 s)"


def test_different_kinds_and_loggers_are_limited_apart() -> None:
    limiter = RateLimitFilter(interval=60, clock=Clock())
    assert limiter.filter(record("reset by %s", 1))
    assert limiter.filter(record("too slow: %s", 1))
    assert limiter.filter(record("reset by %s", 1, name="aiohttp.server"))
    assert not limiter.filter(record("reset by %s", 2))


def test_a_quiet_kind_is_logged_each_time_without_a_count() -> None:
    clock = Clock()
    limiter = RateLimitFilter(interval=60, clock=clock)
    for minute in range(3):
        clock.now = minute * 61.0
        line = record("disk full")
        assert limiter.filter(line)
        assert line.getMessage() == "disk full"
