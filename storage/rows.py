"""Conversions between stored rows (either engine) and domain values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.days import utc
from core.model import (
    Channel,
    ChannelBilling,
    Delivery,
    Invite,
    Member,
    Notice,
    OrderKind,
    OrderStatus,
    Partner,
    PaymentOrder,
    Role,
    Transfer,
    TransferKind,
)
from storage.sql import Row

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# Stored values to enum members by a dict: calling the Enum class costs ten times more,
# and a page of history converts a kind per row.
_ROLE = {m.value: m for m in Role}
_BILLING = {m.value: m for m in ChannelBilling}
_TRANSFER_KIND = {m.value: m for m in TransferKind}
_ORDER_KIND = {m.value: m for m in OrderKind}
_ORDER_STATUS = {m.value: m for m in OrderStatus}


def to_us(instant: datetime) -> int:
    return (utc(instant) - EPOCH) // _US


def from_us(value: int) -> datetime:
    return EPOCH + value * _US


def opt_us(instant: datetime | None) -> int | None:
    return None if instant is None else to_us(instant)


def opt_dt(value: int | None) -> datetime | None:
    return None if value is None else from_us(value)


PARTNER_COLS = "id, name, currency, monthly_price, low_balance_days, billing_day, created_at"


def partner(r: Row) -> Partner:
    return Partner(r[0], r[1], r[2], r[3], r[4], r[5], from_us(r[6]))


MEMBER_COLS = "user_id, partner_id, role, linked_at, unreachable"


def member(r: Row) -> Member:
    return Member(r[0], r[1], _ROLE[r[2]], from_us(r[3]), bool(r[4]))


INVITE_COLS = (
    "id, partner_id, role, code_hash, created_at, expires_at, created_by, used_at, used_by"
)


def invite(r: Row) -> Invite:
    return Invite(
        r[0], r[1], _ROLE[r[2]], r[3], from_us(r[4]), from_us(r[5]), r[6], opt_dt(r[7]), r[8]
    )


CHANNEL_COLS = (
    "id, partner_id, name, created_at, active_until, auto_renew, deleted_at, billing,"
    " subscription_ref"
)


def channel(r: Row) -> Channel:
    return Channel(
        r[0], r[1], r[2], from_us(r[3]), opt_dt(r[4]), bool(r[5]), opt_dt(r[6]),
        _BILLING[r[7]], r[8],
    )


TRANSFER_COLS = "id, key, debit, credit, days, kind, actor, reason, created_at, order_id, digest"


def transfer(r: Row) -> Transfer:
    return Transfer(
        r[0], r[1], r[2], r[3], r[4], _TRANSFER_KIND[r[5]], r[6], r[7], from_us(r[8]), r[9], r[10]
    )


ORDER_COLS = (
    "id, partner_id, kind, days, amount, currency, status, created_at, created_by, period, "
    "channels, channel_id, provider_ref, payment_ref, url, paid_at, closed_at, refunded_days"
)


def order(r: Row) -> PaymentOrder:
    return PaymentOrder(
        id=r[0], partner_id=r[1], kind=_ORDER_KIND[r[2]], days=r[3], amount=r[4],
        currency=r[5], status=_ORDER_STATUS[r[6]], created_at=from_us(r[7]), created_by=r[8],
        period=r[9], channels=r[10], channel_id=r[11], provider_ref=r[12],
        payment_ref=r[13], url=r[14], paid_at=opt_dt(r[15]), closed_at=opt_dt(r[16]),
        refunded_days=r[17],
    )


NOTICE_COLS = "n.id, n.key, n.partner_id, n.kind, n.payload, n.created_at"


def delivery(r: Row) -> Delivery:
    notice = Notice(r[3], r[4], r[5], r[6], r[7], from_us(r[8]))
    return Delivery(r[0], notice, r[1], r[2])
