"""Per-sender flood limits: token buckets, checked before any database work or Bot API call.

Each user (each group chat, for updates from groups) has a bucket holding up to its
per-minute allowance, refilled continuously at that rate: a person's bursts fit, a flood
is cut to the allowance. Who a user is (member or stranger) costs a database read, so the
bucket remembers it once a handler has read it; until then a user counts as a stranger
(the strictest allowance), and learning that they are a member tops their bucket up.

Memory is bounded: buckets live in least-recently-used order; one idle long enough to be
full again carries nothing worth keeping and is dropped, and beyond `max_tracked` the least
recently used goes first (a stream of distinct strangers cannot grow the table).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

from core.ports import Clock

MINUTE = 60.0
# A bucket untouched this long is full again and its "told" minute is over: forgetting it
# changes nothing but the learned kind (one database read the next time).
IDLE_SECONDS = 10 * MINUTE
MAX_TRACKED = 50_000  # about 10 MB at most; far more senders than are active in ten minutes


class Sender(Enum):
    """Who an update comes from, as far as the limits care."""

    SUPPORT = "support"  # not limited
    MEMBER = "member"
    STRANGER = "stranger"  # a user linked to no partner
    GROUP = "group"  # a group chat (one bucket per chat)
    UNKNOWN = "unknown"  # a user whose membership was not read lately: limited as a stranger


class Verdict(Enum):
    ADMIT = "admit"
    DROP = "drop"  # over the allowance; already told within the minute
    TELL = "tell"  # over the allowance: drop it, and say so (at most once a minute)


@dataclass(frozen=True)
class FloodLimits:
    """Allowances per minute (also the largest burst). Defaults a person does not reach."""

    member_per_minute: int = 30
    stranger_per_minute: int = 10
    # Telegram lets a bot send 20 messages a minute to a group (AIORateLimiter holds the
    # 21st back for up to a minute): room is left for the "too many" answer and notices.
    group_per_minute: int = 15

    def __post_init__(self) -> None:
        for name in ("member_per_minute", "stranger_per_minute", "group_per_minute"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    def per_minute(self, sender: Sender) -> int:
        match sender:
            case Sender.MEMBER | Sender.SUPPORT:
                return self.member_per_minute
            case Sender.GROUP:
                return self.group_per_minute
            case Sender.STRANGER | Sender.UNKNOWN:
                return self.stranger_per_minute


class _Bucket:
    __slots__ = ("at", "sender", "tokens", "told")

    def __init__(self, sender: Sender, tokens: float, at: float) -> None:
        self.sender = sender
        self.tokens = tokens
        self.at = at  # when tokens was last brought up to date
        self.told: float | None = None  # when the sender was last told "too many"


class FloodLimiter:
    """Token buckets keyed by a user id or, for groups, a chat id (negative in Telegram)."""

    def __init__(
        self, clock: Clock, limits: FloodLimits, *, max_tracked: int = MAX_TRACKED
    ) -> None:
        self.clock = clock
        self.limits = limits
        self.max_tracked = max_tracked
        self._buckets: OrderedDict[int, _Bucket] = OrderedDict()

    @property
    def tracked(self) -> int:
        """How many senders have state (bounded by max_tracked)."""
        return len(self._buckets)

    def known(self, key: int) -> Sender | None:
        """What a handler learned about this user lately (None: ask the database)."""
        bucket = self._buckets.get(key)
        if bucket is None or bucket.sender is Sender.UNKNOWN:
            return None
        return bucket.sender

    def check(self, key: int, sender: Sender) -> Verdict:
        """Spend one update of the sender's allowance. `sender` is used for a new bucket;
        an existing one keeps what was learned."""
        now = self.clock.now().timestamp()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._add(key, sender, now)
        else:
            self._buckets.move_to_end(key)
            self._refill(bucket, now)
        self._forget_idle(now)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return Verdict.ADMIT
        # (A clock set back must not silence the answer for as long as it went back.)
        if bucket.told is None or not 0 <= now - bucket.told < MINUTE:
            bucket.told = now
            return Verdict.TELL
        return Verdict.DROP

    def introduce(self, key: int, sender: Sender) -> None:
        """Who a user is, read before their update meets the limit (webhook mode): a
        new bucket starts full at that allowance; a known one changes as `learn` does."""
        if key not in self._buckets:
            self._add(key, sender, self.clock.now().timestamp())
            return
        self.learn(key, sender)

    def learn(self, key: int, sender: Sender) -> None:
        """A handler read who this user is: their allowance follows from now on."""
        bucket = self._buckets.get(key)
        if bucket is None:
            now = self.clock.now().timestamp()
            # Evicted meanwhile: the update that taught us this was one of its allowance.
            self._add(key, sender, now).tokens -= 1
            return
        if bucket.sender is sender:
            return
        self._refill(bucket, self.clock.now().timestamp())
        old, new = self.limits.per_minute(bucket.sender), self.limits.per_minute(sender)
        bucket.sender = sender
        bucket.tokens = max(0.0, min(float(new), bucket.tokens + new - old))

    def _add(self, key: int, sender: Sender, now: float) -> _Bucket:
        bucket = _Bucket(sender, float(self.limits.per_minute(sender)), now)
        self._buckets[key] = bucket
        if len(self._buckets) > self.max_tracked:
            self._buckets.popitem(last=False)
        return bucket

    def _refill(self, bucket: _Bucket, now: float) -> None:
        rate = self.limits.per_minute(bucket.sender)
        elapsed = max(0.0, now - bucket.at)  # a clock set back refills nothing
        bucket.tokens = min(float(rate), bucket.tokens + elapsed * rate / MINUTE)
        bucket.at = now

    def _forget_idle(self, now: float) -> None:
        # The front of the order is the least recently used: stop at the first one in use.
        # Each bucket is dropped once, so this costs O(1) per call on average.
        while self._buckets:
            key, oldest = next(iter(self._buckets.items()))
            if now - oldest.at < IDLE_SECONDS:
                return
            del self._buckets[key]
