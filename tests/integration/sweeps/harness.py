"""The set-up the sweep scenarios share: a SQLite file behind a `Book` of shortcuts, a
payment gateway that can fail or die, and helpers that kill or interleave runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core import notices
from core.errors import PaymentUnavailable
from core.jobs import InvoiceRun, run_invoices
from core.model import CheckoutLink, CheckoutRequest, SessionState
from core.payments import PaymentService
from core.policy import BillingPolicy
from core.ports import Ledger
from core.service import BillingService
from storage.sqlite import SqliteStore
from tests.conftest import FakeClock

BERLIN = ZoneInfo("Europe/Berlin")
ACTOR = "support:900"
SUPPORT = 900
T0 = datetime(2030, 1, 14, 9, 30, tzinfo=UTC)


class Killed(Exception):
    """Stands for the process dying at that point: nothing after it runs."""


class FakeGateway:
    """core.ports.PaymentGateway: links made instantly; can fail or 'die' for a partner."""

    def __init__(self) -> None:
        self.made: list[int] = []  # order ids, in the order the links were made
        self.kill_for: set[int] = set()  # partner ids whose link request kills the process
        self.down = False

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutLink:
        order = request.order
        if order.partner_id in self.kill_for:
            raise Killed(f"died making the link of order {order.id}")
        if self.down:
            raise PaymentUnavailable("test: Stripe is down")
        self.made.append(order.id)
        return CheckoutLink(f"cs_test_{order.id}", f"https://pay.example/{order.id}")

    async def session_state(self, provider_ref: str) -> SessionState:
        raise PaymentUnavailable("not used here")


@dataclass
class Sent:
    key: str
    partner_id: int | None
    kind: str
    facts: dict[str, Any]  # the stored payload
    notice: notices.AnyNotice  # the payload decoded


class Book:
    """A SQLite file, a FakeClock and the services over them, with set-up shortcuts."""

    def __init__(self, store: SqliteStore, clock: FakeClock, path: Path) -> None:
        self.store, self.clock, self.path = store, clock, path
        self.billing = BillingService(store, clock, BillingPolicy(low_balance_days=10))
        self.gateway = FakeGateway()
        self.payments = PaymentService(store, clock, self.gateway)
        self._keys = 0

    def key(self, prefix: str) -> str:
        self._keys += 1
        return f"{prefix}:{self._keys}"

    async def partner(
        self, name: str, *, days: int = 0, threshold: int | None = None,
        members: tuple[int, ...] = (), billing_day: int | None = None,
    ) -> int:
        made = await self.billing.create_partner(name, ACTOR)
        pid = made.partner.id
        for i, user_id in enumerate(members):
            code = made.invite_code if i == 0 else (
                await self.billing.create_invite(pid, ACTOR)
            ).code
            await self.billing.redeem_invite(code, user_id)
        if days:
            await self.grant(pid, days)
        if threshold is not None:
            await self.billing.set_alert_threshold(pid, threshold, ACTOR)
        if billing_day is not None:
            partner = await self.billing.partner(pid)
            await self.store.write(
                lambda lg: lg.update_partner(replace(partner, billing_day=billing_day))
            )
        return pid

    async def grant(self, pid: int, days: int) -> None:
        await self.billing.grant_days(pid, days, "test", ACTOR, self.key("grant"))

    async def channel(
        self, pid: int, name: str, days: int = 0, *, auto_renew: bool = False,
        granted: bool = True,
    ) -> int:
        made = await self.billing.create_channel(pid, name, ACTOR, self.key("channel"))
        if days:
            if granted:
                await self.grant(pid, days)
            await self.billing.allocate_days(pid, name, days, ACTOR, self.key("allocate"))
        if auto_renew:
            await self.billing.set_auto_renew(pid, name, True, ACTOR)
        return made.channel_id

    async def channels_of(self, pid: int) -> dict[str, Any]:
        found = await self.store.read(lambda lg: lg.list_channels(pid, include_deleted=True))
        return {c.name: c for c in found}

    async def balance(self, pid: int) -> int:
        return (await self.billing.summary(pid)).balance

    async def sent(self, kind: str | None = None) -> list[Sent]:
        rows = await self.store.execute_raw(
            "SELECT key, partner_id, kind, payload FROM notices ORDER BY id"
        )
        return [
            Sent(r[0], r[1], r[2], json.loads(r[3]), notices.decode(r[2], r[3]))
            for r in rows if kind is None or r[2] == kind
        ]

    async def count(self, sql: str, *args: Any) -> int:
        [(n,)] = await self.store.execute_raw(sql, args)
        return int(n)

    async def invoices(self) -> list[tuple[int, str | None]]:
        rows = await self.store.execute_raw(
            "SELECT partner_id, period FROM orders WHERE kind = 'invoice' ORDER BY id"
        )
        return [(r[0], r[1]) for r in rows]

    async def verify(self) -> None:
        report = await self.billing.verify()
        assert report.ok, "\n".join(str(v) for v in report.violations)

    async def run_invoices(self, tz: tzinfo = UTC, period: str | None = None) -> InvoiceRun:
        return await run_invoices(self.store, self.clock, self.payments, tz, period)


class ReadFirst:
    """Store proxies whose writes wait until `n` runs have read: the interleaving where
    runs started at once all work from the same list (otherwise left to timing)."""

    def __init__(self, n: int) -> None:
        self.n, self.reads, self.ready = n, 0, asyncio.Event()

    def __call__(self, store: SqliteStore) -> Any:
        gate = self

        class Gated:
            async def read(self, work: Callable[[Ledger], Any]) -> Any:
                result = await store.read(work)
                gate.reads += 1
                if gate.reads >= gate.n:
                    gate.ready.set()
                return result

            async def write(self, work: Callable[[Ledger], Any]) -> Any:
                await asyncio.wait_for(gate.ready.wait(), 5)
                return await store.write(work)

            async def verify(self, work: Callable[[Any], Any]) -> Any:
                return await store.verify(work)

        return Gated()


def die_on_call(n: int, real: Callable[..., Any]) -> Callable[..., Any]:
    """`real`, except that its n-th call (1-based) raises Killed."""
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n:
            raise Killed(f"died in call {n} of {real.__name__}")
        return real(*args, **kwargs)

    return wrapper
