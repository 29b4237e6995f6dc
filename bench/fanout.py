"""Notices fanned out through the outbox against Telegram's flood limit.

    .venv/bin/python bench/fanout.py [--quick] [--messages N] [--dir DIR]

N notices (default 1,000; --quick: 300), each to a partner with one linked member, so N
messages to N different private chats, are queued in a SQLite file; then the outbox
(bot/outbox.py's Dispatcher, with the bot python-telegram-bot builds for `partnerbot run`:
bot.app.build_application, AIORateLimiter included) delivers them to a Bot API server on
loopback (tests/fakes/telegram_api/) that enforces 30 messages/s overall and 1 message/s
per chat and answers 429 `retry_after` beyond that, like Telegram.

Prints the achieved rate (messages accepted by the server per second, from the
dispatcher's start to the last acceptance), the 429s received, messages lost (a chat
that got nothing) and duplicated (a chat that got more than one), and as the last line
`fanout_vs_limit: <achieved rate / 30>`. Target: 0.9 or better, nothing lost.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fakes is not installed

from bot.app import build_application, start_up
from bot.outbox import Dispatcher
from core import notices
from core.model import Member, Role
from core.policy import BillingPolicy
from core.ports import Ledger
from core.service import BillingService
from storage.sqlite import SqliteStore
from tests.fakes.telegram_api import FakeTelegram, RateLimits

LIMIT = 30  # messages per second, overall
FIRST_USER = 500_000


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def queue(ledger: Ledger, n: int, at: datetime) -> None:
    """n partners, one member each, one low-balance notice each."""
    for i in range(n):
        partner = ledger.add_partner(f"Fan {i}", "usd", 1000, 30, 1, at)
        ledger.save_member(Member(FIRST_USER + i, partner.id, Role.OWNER, at))
        notices.notify(ledger, at, f"bench:{i}", partner.id, notices.LowBalanceCrossed(
            balance=12, threshold=30, running=3, runway=datetime(2030, 2, 1, tzinfo=UTC),
        ))


async def run(n: int, workdir: Path, deadline: float) -> dict[str, float]:
    async with FakeTelegram() as tg:
        tg.enforce_rate_limits(RateLimits(global_per_second=LIMIT, private_chat_per_second=1))
        users = [tg.user(FIRST_USER + i, f"U{i}", started=True) for i in range(n)]
        store = await SqliteStore.open(workdir / "fanout.db")  # synchronous=FULL, as shipped
        clock = SystemClock()
        try:
            await store.write(lambda lg: queue(lg, n, clock.now()))
            app = build_application(
                token=tg.token, api_base_url=tg.base_url,
                billing=BillingService(store, clock, BillingPolicy()),
                support_ids=frozenset(), tz=UTC,
            )
            await app.initialize()  # getMe, then the default menu: as `partnerbot run` starts
            await start_up(app)
            dispatcher = Dispatcher(app.bot, store, clock, UTC, [])
            before = tg.status_counts.copy()
            started = time.perf_counter()
            last = started
            dispatcher.start()
            try:
                got = 0
                while got < n and time.perf_counter() - started < deadline:
                    await asyncio.sleep(0.02)
                    now_got = sum(1 for u in users if u.replies)
                    if now_got != got:
                        got, last = now_got, time.perf_counter()
                    [(open_,)] = await store.execute_raw(
                        "SELECT count(*) FROM deliveries WHERE status = 'pending'"
                    )
                    if got < n and open_ == 0 and got == sum(1 for u in users if u.replies):
                        [(total,)] = await store.execute_raw("SELECT count(*) FROM deliveries")
                        if total >= n:
                            break  # nothing left to try: the rest failed for good
            finally:
                await dispatcher.stop()
                await app.shutdown()
            statuses = dict(await store.execute_raw(
                "SELECT status, count(*) FROM deliveries GROUP BY status"
            ))
        finally:
            await store.close()
        received = [len(u.replies) for u in users]
        after = tg.status_counts
        return {
            "seconds": last - started,
            "delivered": sum(1 for r in received if r),
            "duplicated": sum(r - 1 for r in received if r > 1),
            "lost": sum(1 for r in received if not r),
            "429": after[429] - before[429],
            "5xx": sum(v for k, v in after.items() if k >= 500),
            "failed": statuses.get("failed", 0),
            "pending": statuses.get("pending", 0),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 messages")
    parser.add_argument("--messages", type=int, help="messages to send (default 1000)")
    parser.add_argument("--dir", type=Path, help="where the database goes (default: temp)")
    args = parser.parse_args(argv)
    n = args.messages or (300 if args.quick else 1000)
    deadline = max(20.0, n / LIMIT * 2.4)
    with tempfile.TemporaryDirectory(prefix="partnerbot-fanout-", dir=args.dir) as tmp:
        r = asyncio.run(run(n, Path(tmp), deadline))
    rate = r["delivered"] / r["seconds"] if r["seconds"] > 0 else 0.0
    print(f"{n:,} notices to {n:,} private chats; server limit {LIMIT}/s overall, 1/s per chat")
    print(f"delivered {r['delivered']:,.0f} in {r['seconds']:.1f} s: {rate:.1f} messages/s")
    print(f"429s received: {r['429']:,.0f}; 5xx: {r['5xx']:,.0f}")
    print(f"messages lost: {r['lost']:,.0f} (deliveries failed {r['failed']:,.0f}, still pending "
          f"{r['pending']:,.0f}); duplicated: {r['duplicated']:,.0f}")
    print(f"fanout_vs_limit: {rate / LIMIT:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
