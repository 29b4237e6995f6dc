"""Read models: what /balance, /channels, /account and the CLI show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.days import runway_until, unused_days, utc
from core.model import (
    Channel,
    Member,
    OrderKind,
    OrderStatus,
    Partner,
    PaymentOrder,
    Transfer,
    partner_account,
)
from core.money import DAYS_PER_MONTH
from core.partners import get_partner
from core.ports import Ledger


@dataclass(frozen=True, slots=True)
class ChannelView:
    channel: Channel
    days_left: int
    running: bool


@dataclass(frozen=True, slots=True)
class AccountSummary:
    partner: Partner
    balance: int
    channels: list[ChannelView]  # live channels, by name
    members: list[Member]
    open_invoices: list[PaymentOrder]
    runway: datetime | None

    @property
    def running(self) -> int:
        return sum(1 for c in self.channels if c.running)

    @property
    def monthly_need(self) -> int:
        """Days a month of all live channels takes (what the monthly invoice credits)."""
        return len(self.channels) * DAYS_PER_MONTH


def channel_views(ledger: Ledger, now: datetime, partner_id: int) -> list[ChannelView]:
    views = []
    at = utc(now)  # once, not per channel: /balance and /channels read this per update
    for channel in ledger.list_channels(partner_id):
        until = channel.active_until
        running = until is not None and utc(until) > at
        views.append(ChannelView(channel, unused_days(until, at), running))
    views.sort(key=lambda v: (v.channel.name.casefold(), v.channel.id))
    return views


def account_summary(ledger: Ledger, now: datetime, partner_id: int) -> AccountSummary:
    partner = get_partner(ledger, partner_id)
    balance = ledger.balance(partner_account(partner_id))
    views = channel_views(ledger, now, partner_id)
    running = [v.channel.active_until for v in views if v.running and v.channel.active_until]
    invoices = [
        o
        for o in ledger.list_orders(partner_id, statuses=(OrderStatus.OPEN,))
        if o.kind is OrderKind.INVOICE
    ]
    return AccountSummary(
        partner=partner,
        balance=balance,
        channels=views,
        members=ledger.list_members(partner_id),
        open_invoices=invoices,
        runway=runway_until(balance, running, now),
    )


def history(
    ledger: Ledger, partner_id: int, *, limit: int = 20, before_id: int | None = None
) -> list[Transfer]:
    """The partner balance's transfers, newest first."""
    get_partner(ledger, partner_id)
    return ledger.list_transfers(partner_account(partner_id), limit=limit, before_id=before_id)


@dataclass(frozen=True, slots=True)
class AccountView:
    """One partner in full, read in one transaction: what support's /account and the
    CLI's ``partner show`` render."""

    summary: AccountSummary  # partner, balance, live channels, members, runway
    recent: list[Transfer]  # the balance's latest transfers, newest first
    channel_names: dict[int, str]  # every channel, deleted ones too: names history rows
    orders: list[PaymentOrder]  # every order of the partner

    @property
    def partner(self) -> Partner:
        return self.summary.partner


def account_view(ledger: Ledger, now: datetime, partner_id: int, *, recent: int) -> AccountView:
    """The partner's summary, its ``recent`` latest transfers and all its orders."""
    return AccountView(
        summary=account_summary(ledger, now, partner_id),
        recent=history(ledger, partner_id, limit=recent),
        channel_names={
            c.id: c.name for c in ledger.list_channels(partner_id, include_deleted=True)
        },
        orders=ledger.list_orders(partner_id),
    )

