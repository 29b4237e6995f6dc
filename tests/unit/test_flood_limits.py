"""bot.limits: the token buckets behind the flood limits, on a clock that moves when told."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.limits import FloodLimiter, FloodLimits, Sender, Verdict
from tests.conftest import FakeClock

LIMITS = FloodLimits(member_per_minute=6, stranger_per_minute=2, group_per_minute=3)


def spend(limiter: FloodLimiter, key: int, sender: Sender, times: int) -> list[Verdict]:
    return [limiter.check(key, sender) for _ in range(times)]


def test_a_burst_up_to_the_allowance_then_one_tell_then_drops() -> None:
    limiter = FloodLimiter(FakeClock(), LIMITS)
    verdicts = spend(limiter, 1, Sender.MEMBER, 9)
    assert verdicts == [Verdict.ADMIT] * 6 + [Verdict.TELL, Verdict.DROP, Verdict.DROP]


def test_the_allowance_refills_at_its_rate_and_tells_again_after_a_minute() -> None:
    clock = FakeClock()
    limiter = FloodLimiter(clock, LIMITS)
    spend(limiter, 1, Sender.MEMBER, 7)
    clock.advance(timedelta(seconds=10))  # 6 a minute: one more
    assert spend(limiter, 1, Sender.MEMBER, 2) == [Verdict.ADMIT, Verdict.DROP]
    clock.advance(timedelta(seconds=50))
    verdicts = spend(limiter, 1, Sender.MEMBER, 7)
    assert verdicts == [Verdict.ADMIT] * 5 + [Verdict.TELL, Verdict.DROP]


def test_unknown_users_count_as_strangers_until_learned_members() -> None:
    limiter = FloodLimiter(FakeClock(), LIMITS)
    assert spend(limiter, 7, Sender.UNKNOWN, 2) == [Verdict.ADMIT] * 2
    assert limiter.known(7) is None
    limiter.learn(7, Sender.MEMBER)  # a member: the rest of a member's allowance
    assert limiter.known(7) is Sender.MEMBER
    assert spend(limiter, 7, Sender.UNKNOWN, 5) == [Verdict.ADMIT] * 4 + [Verdict.TELL]


def test_a_member_learned_a_stranger_keeps_no_more_than_a_strangers_allowance() -> None:
    limiter = FloodLimiter(FakeClock(), LIMITS)
    limiter.check(8, Sender.MEMBER)
    limiter.learn(8, Sender.STRANGER)
    assert spend(limiter, 8, Sender.MEMBER, 2) == [Verdict.ADMIT, Verdict.TELL]


def test_a_clock_set_back_refills_nothing_and_does_not_silence_the_answer() -> None:
    clock = FakeClock()
    limiter = FloodLimiter(clock, LIMITS)
    spend(limiter, 1, Sender.GROUP, 4)
    clock.advance(timedelta(hours=-1))
    assert limiter.check(1, Sender.GROUP) is Verdict.TELL
    assert limiter.check(1, Sender.GROUP) is Verdict.DROP


def test_the_least_recently_used_goes_first_beyond_max_tracked() -> None:
    limiter = FloodLimiter(FakeClock(), LIMITS, max_tracked=3)
    for key in (1, 2, 3):
        limiter.check(key, Sender.UNKNOWN)
    limiter.check(1, Sender.UNKNOWN)  # 1 is used again: 2 is now the oldest
    limiter.check(4, Sender.UNKNOWN)
    assert limiter.tracked == 3
    assert limiter.check(1, Sender.UNKNOWN) is Verdict.TELL  # 1 kept its state
    assert limiter.check(2, Sender.UNKNOWN) is Verdict.ADMIT  # 2 was forgotten: fresh


@pytest.mark.parametrize("field", ["member_per_minute", "stranger_per_minute", "group_per_minute"])
def test_an_allowance_below_one_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        FloodLimits(**{field: 0})
