"""Builders and readers the store contract scenarios share (plain functions, no fixtures)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from core.model import Member, NewTransfer, OrderKind, TransferKind
from core.outcomes import DaysGranted, OrderCredited
from core.ports import Ledger, LedgerSnapshot, Store
from core.service import BillingService
from tests.conftest import START

SUPPORT = "support:1"
STRIPE = "stripe:evt_1"
DAY = timedelta(days=1)
_serial = itertools.count(1)


def fresh_key(prefix: str = "key") -> str:
    return f"{prefix}:{next(_serial)}"


async def new_partner(billing: BillingService, name: str = "Acme") -> int:
    return (await billing.create_partner(name, SUPPORT)).partner.id


async def grant(billing: BillingService, partner_id: int, days: int) -> DaysGranted:
    return await billing.grant_days(partner_id, days, "goodwill", SUPPORT, fresh_key("grant"))


async def buy(billing: BillingService, partner_id: int, days: int) -> OrderCredited:
    order = await billing.open_order(partner_id, OrderKind.TOPUP, days, SUPPORT)
    return await billing.credit_paid_order(order.id, order.amount, order.currency, STRIPE)


async def balance(store: Store, account: str) -> int:
    return await store.read(lambda lg: lg.balance(account))


async def everything(store: Store) -> tuple[Any, ...]:
    """What a change would show in: balances, transfers, channels, orders, partners."""

    def take(s: LedgerSnapshot) -> tuple[Any, ...]:
        return (s.account_balances(), list(s.transfers()), s.channels(), s.orders(), s.partners())

    return await store.verify(take)


def raw_partner(lg: Ledger, name: str = "Acme") -> int:
    return lg.add_partner(name, "usd", 1000, 30, 1, START).id


def save_members(lg: Ledger, members: list[Member]) -> None:
    for member in members:
        lg.save_member(member)


def raw_transfer(
    key: str, debit: str, credit: str, days: int, kind: TransferKind = TransferKind.GRANT,
    *, order_id: int | None = None,
) -> NewTransfer:
    return NewTransfer(key, debit, credit, days, kind, SUPPORT, "by hand", START, order_id)
