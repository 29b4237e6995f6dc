"""Webhook-mode instances in this process: each one the bot's real Application, its own
store on a shared database (a SQLite file, or a PostgreSQL URL), the claims
(bot/claims.py), the webhook handler (bot/webhook.py) on the real HTTP server
(partnerbot/http.py) on loopback. The fake Bot API (tests/fakes/telegram_api) posts
updates to them as Telegram would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bot.app import build_application, deps_of_app, start_up
from bot.claims import ClaimedUpdates
from bot.limits import FloodLimits
from bot.webhook import SECRET_HEADER, TelegramWebhook
from core.errors import StorageError
from core.policy import BillingPolicy
from core.ports import Clock, Ledger, LedgerSnapshot, Store
from core.service import BillingService
from partnerbot.http import Check, HttpServer, build_http_app
from storage.base import OperatedStore
from storage.postgres import PostgresStore
from storage.sqlite import SqliteStore
from tests.fakes.telegram_api import FakeTelegram
from tests.integration.bot_harness import SUPPORT_ID, UNLIMITED

T = TypeVar("T")
SECRET = "wh_secret-For_tests_0123456789"
PATH = "/telegram/webhook"


class Breakable:
    """A Store that delegates to a real one, counting writes; `broken` makes them fail
    as a full disk does."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.writes = 0
        self.broken = False

    async def write(self, work: Callable[[Ledger], T]) -> T:
        if self.broken:
            raise StorageError("database: disk full")
        self.writes += 1
        return await self.store.write(work)

    async def read(self, work: Callable[[Ledger], T]) -> T:
        return await self.store.read(work)

    async def lookup(self, work: Callable[[Ledger], T]) -> T:
        return await self.store.lookup(work)

    async def verify(self, work: Callable[[LedgerSnapshot], T]) -> T:
        return await self.store.verify(work)


@dataclass
class Instance:
    store: OperatedStore
    inbox: Breakable  # what the claims write through
    billing: BillingService
    claims: ClaimedUpdates
    results: Counter[str]  # partnerbot_telegram_webhook_total, by result
    server: HttpServer

    @property
    def url(self) -> str:
        host, port = self.server.addresses[0][:2]
        return f"http://{host}:{port}{PATH}"

    async def post(
        self, body: bytes | dict[str, Any], secret: str | None = SECRET
    ) -> tuple[int, str]:
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[SECRET_HEADER] = secret
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with aiohttp.ClientSession() as s, s.post(self.url, data=data, headers=headers) as r:
            return r.status, await r.text()

    async def inbox_rows(self) -> list[tuple[Any, ...]]:
        return await self.store.execute_raw(
            "SELECT update_id, sender, CASE WHEN handled_at IS NULL THEN 0 ELSE 1 END,"
            " claimed_by FROM inbox ORDER BY update_id"
        )


@contextlib.asynccontextmanager
async def webhook_instance(
    tg: FakeTelegram,
    db: Path | str,
    clock: Clock,
    *,
    lease: float = 10.0,
    limits: FloodLimits = UNLIMITED,
    name: str | None = None,
) -> AsyncIterator[Instance]:
    """One instance, started as `partnerbot run` starts it in webhook mode. `db`: a
    SQLite file, or a postgresql:// URL."""
    store: OperatedStore
    if isinstance(db, str):
        store = await PostgresStore.open(db, chain_key=None)
    else:
        store = await SqliteStore.open(db, synchronous="NORMAL")
    try:
        billing = BillingService(store, clock, BillingPolicy())
        app = build_application(
            token=tg.token, api_base_url=tg.base_url, billing=billing,
            support_ids=frozenset({SUPPORT_ID}), tz=UTC, limits=limits,
        )
        inbox = Breakable(store)
        gate = deps_of_app(app).gate
        claims = ClaimedUpdates(app, inbox, clock, lease=lease, gate=gate, instance=name)
        results: Counter[str] = Counter()
        webhook = TelegramWebhook(
            claims, SECRET, app.bot, gate, on_result=lambda r: results.update([r.value])
        )

        async def healthy() -> dict[str, Check]:
            return {"bot": Check(claims.running)}

        server = HttpServer(build_http_app(None, healthy, telegram=webhook.handle), "127.0.0.1", 0)
        await app.initialize()
        try:
            await start_up(app)
            await server.start()
            await app.start()
            await claims.start()
            for _ in range(500):  # the first sweep, so tests count only their own writes
                if inbox.writes:
                    break
                await asyncio.sleep(0.01)
            try:
                yield Instance(store, inbox, billing, claims, results, server)
            finally:
                await claims.stop()
                await app.stop()
                await claims.close()
                await server.stop()
        finally:
            await app.shutdown()
    finally:
        await store.close()
