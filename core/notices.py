"""Notices the bot owes people, queued in the transaction of the change that causes them.

A notice is a frozen record of what happened, named in the past tense; the bot turns it
into text when it delivers (texts live in bot/). `encode` and `decode` are the only way
into and out of the `notices` table. Decoding is strict: a missing, unexpected or
mistyped field raises `NoticeUndecodable` instead of reading as 0. The kind column keeps
the names the first version wrote, and that version's payloads (no "v" key; channels
packed as "name|iso|0" lines, amounts as formatted text) still decode. A notice's key
makes it impossible to queue the same notice twice.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from core import money
from core.model import OrderKind
from core.ports import Ledger

# The kind column: these strings are stored, so they never change.
DAYS_CREDITED = "days_credited"
DAYS_REFUNDED = "days_refunded"
REFUND_OVERDRAWN = "refund_overdrawn"
PAYMENT_MISMATCH = "payment_mismatch"
INVOICE_ISSUED = "invoice_issued"
SUBSCRIPTION_PAID = "subscription_paid"
SUBSCRIPTION_ENDED = "subscription_ended"
LOW_BALANCE = "low_balance"
EXPIRY = "expiry"
RENEW_SHORT = "renew_short"
RENEWED = "renewed"
INVOICE_REMINDER = "invoice_reminder"
INVOICE_OVERDUE = "invoice_overdue"
PERIOD_MISMATCH = "period_mismatch"
BALANCE_CORRECTED = "balance_corrected"
SUPPORT_ALLOCATED = "support_allocated"
SUPPORT_DELETED = "support_deleted"


@dataclass(frozen=True, slots=True)
class ListedChannel:
    """A channel named in a notice about several."""

    name: str
    until: datetime | None  # its active_until; None only in renewals the first version stored
    auto_renew: bool


@dataclass(frozen=True, slots=True)
class DaysCredited:
    """To members: a paid order's days arrived."""

    order_id: int
    order_kind: OrderKind
    days: int
    balance: int


@dataclass(frozen=True, slots=True)
class DaysRefunded:
    """To members: a refund took days back."""

    order_id: int
    days: int
    balance: int


@dataclass(frozen=True, slots=True)
class RefundOverdrawn:
    """To support: a refund left a balance below zero (rule 11)."""

    partner_id: int
    order_id: int
    days: int
    balance: int


@dataclass(frozen=True, slots=True)
class PaymentMismatched:
    """To support: the paid amount or currency is not the quote; nothing was credited."""

    partner_id: int
    order_id: int
    expected_amount: int  # minor units
    expected_currency: str
    paid_amount: int  # minor units, as Stripe reported them
    paid_currency: str


@dataclass(frozen=True, slots=True)
class PeriodMismatched:
    """To support: a subscription period (a Stripe invoice) was paid with another amount or
    currency than the subscription's price; the channel got no days."""

    partner_id: int
    channel: str
    invoice_ref: str  # the Stripe invoice, to look it up there
    expected_amount: int  # minor units: the price the subscription was made at
    expected_currency: str
    paid_amount: int  # minor units, as Stripe reported them
    paid_currency: str


@dataclass(frozen=True, slots=True)
class BalanceCorrected:
    """To members: support granted (days > 0) or removed (days < 0) days, with a reason."""

    days: int
    balance: int  # after the change
    reason: str  # as support typed it


@dataclass(frozen=True, slots=True)
class SupportAllocated:
    """To members: support gave a channel days from the balance, on the partner's behalf."""

    channel: str
    days: int
    until: datetime  # the channel's new active-until
    balance: int  # after the move


@dataclass(frozen=True, slots=True)
class SupportDeleted:
    """To members: support deleted a channel; its unused days came back to the balance."""

    channel: str
    returned: int
    balance: int  # after the return


@dataclass(frozen=True, slots=True)
class InvoiceIssued:
    """To members: a new invoice, with its payment link once Stripe made one."""

    order_id: int
    days: int
    channels: int  # channels billed, 30 days each
    amount: int  # minor units
    currency: str
    period: str | None
    url: str | None


@dataclass(frozen=True, slots=True)
class SubscriptionPaid:
    """To members: a paid subscription period extended a channel."""

    channel: str
    days: int
    until: datetime


@dataclass(frozen=True, slots=True)
class SubscriptionEnded:
    """To members: a channel's subscription ended; it runs until `until`."""

    channel: str
    until: datetime | None


@dataclass(frozen=True, slots=True)
class LowBalanceCrossed:
    """To members: the balance fell below the alert threshold (rule 7)."""

    balance: int
    threshold: int
    running: int  # channels drawing on the balance
    runway: datetime | None  # when the balance runs out at this rate; None: nothing draws


@dataclass(frozen=True, slots=True)
class ChannelsExpiring:
    """To members: channels expire within `stage` days, or expired (stage 0) (rule 8)."""

    stage: int
    count: int  # every channel concerned; `channels` lists the first few
    channels: tuple[ListedChannel, ...]


@dataclass(frozen=True, slots=True)
class ChannelsRenewed:
    """To members: auto-renew extended channels by 30 days (rule 9)."""

    count: int  # every channel renewed; `channels` lists the first few
    channels: tuple[ListedChannel, ...]


@dataclass(frozen=True, slots=True)
class RenewFellShort:
    """To members: the balance could not pay for auto-renewing channels (rule 9)."""

    count: int  # every channel left unrenewed; `channels` lists the first few
    needed: int
    balance: int
    channels: tuple[ListedChannel, ...]


@dataclass(frozen=True, slots=True)
class InvoiceUnpaid:
    """To members: an invoice is still unpaid (a reminder)."""

    order_id: int
    amount: int  # minor units
    currency: str
    url: str | None


@dataclass(frozen=True, slots=True)
class InvoiceOverdue:
    """To support and to members: an invoice was unpaid for too long."""

    order_id: int
    partner_id: int
    amount: int  # minor units
    currency: str
    url: str | None


AnyNotice = (
    DaysCredited
    | DaysRefunded
    | RefundOverdrawn
    | PaymentMismatched
    | InvoiceIssued
    | SubscriptionPaid
    | SubscriptionEnded
    | LowBalanceCrossed
    | ChannelsExpiring
    | ChannelsRenewed
    | RenewFellShort
    | InvoiceUnpaid
    | InvoiceOverdue
    | PeriodMismatched
    | BalanceCorrected
    | SupportAllocated
    | SupportDeleted
)
KINDS: dict[type[Any], str] = {
    DaysCredited: DAYS_CREDITED,
    DaysRefunded: DAYS_REFUNDED,
    RefundOverdrawn: REFUND_OVERDRAWN,
    PaymentMismatched: PAYMENT_MISMATCH,
    InvoiceIssued: INVOICE_ISSUED,
    SubscriptionPaid: SUBSCRIPTION_PAID,
    SubscriptionEnded: SUBSCRIPTION_ENDED,
    LowBalanceCrossed: LOW_BALANCE,
    ChannelsExpiring: EXPIRY,
    ChannelsRenewed: RENEWED,
    RenewFellShort: RENEW_SHORT,
    InvoiceUnpaid: INVOICE_REMINDER,
    InvoiceOverdue: INVOICE_OVERDUE,
    PeriodMismatched: PERIOD_MISMATCH,
    BalanceCorrected: BALANCE_CORRECTED,
    SupportAllocated: SUPPORT_ALLOCATED,
    SupportDeleted: SUPPORT_DELETED,
}
NOTICE_TYPES: dict[str, type[Any]] = {kind: cls for cls, kind in KINDS.items()}
VERSION_KEY, VERSION = "v", 2  # payloads without it were stored by the first version


class NoticeUndecodable(ValueError):
    """A stored notice that cannot be read back: unknown kind, or a field missing or mistyped."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


def notify(ledger: Ledger, at: datetime, key: str, to: int | None, notice: AnyNotice) -> bool:
    """Queue a notice for the members of partner `to` (None: for support staff)."""
    kind, payload = encode(notice)
    return ledger.add_notice(key, to, kind, payload, at)


def encode(notice: AnyNotice) -> tuple[str, str]:
    """Return (kind, JSON payload) for the notices table."""
    kind = KINDS.get(type(notice))
    if kind is None:
        raise TypeError(f"not a notice: {type(notice).__name__}")
    data = _plain(notice)
    data[VERSION_KEY] = VERSION
    return kind, json.dumps(data, sort_keys=True, separators=(",", ":"))


def decode(kind: str, payload: str) -> AnyNotice:
    """The notice stored as (kind, payload), by this version or the first one."""
    cls = NOTICE_TYPES.get(kind)
    if cls is None:
        raise NoticeUndecodable(kind, "unknown kind")
    try:
        raw = json.loads(payload)
    except ValueError as exc:
        raise NoticeUndecodable(kind, f"payload is not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise NoticeUndecodable(kind, "payload is not a JSON object")
    try:
        if VERSION_KEY not in raw:
            raw = _from_first_version(cls, raw)
        elif raw.pop(VERSION_KEY) != VERSION:
            raise _Bad("unknown payload version")
        notice: AnyNotice = _build(cls, raw, cls.__name__)
    except _Bad as exc:
        raise NoticeUndecodable(kind, str(exc)) from None
    return notice


class _Bad(Exception):
    """Why a payload does not fit its type; decode() adds the kind."""


def _plain(value: object) -> Any:
    """A notice or one of its values as JSON-ready data."""
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, (str, int)):  # bool is an int
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    # What is left in a notice is a dataclass (the notice itself, a ListedChannel).
    return {name: _plain(getattr(value, name)) for name, _ in _fields(type(value))}


def _build(cls: type[Any], data: object, where: str) -> Any:
    if not isinstance(data, dict):
        raise _Bad(f"{where}: expected an object")
    fields = _fields(cls)
    names = [name for name, _ in fields]
    missing = [n for n in names if n not in data]
    unexpected = sorted(set(data) - set(names))
    if missing or unexpected:
        problems = [f"{what} {', '.join(which)}" for what, which in
                    (("missing", missing), ("unexpected", unexpected)) if which]
        raise _Bad(f"{where}: {'; '.join(problems)}")
    return cls(**{n: _value(hint, data[n], f"{where}.{n}") for n, hint in fields})


_FIELDS: dict[type[Any], tuple[tuple[str, Any], ...]] = {}


def _fields(cls: type[Any]) -> tuple[tuple[str, Any], ...]:
    """(name, type) of each field; resolving the annotations (strings here) costs more than
    a whole notice, so once per type."""
    found = _FIELDS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = _FIELDS[cls] = tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls))
    return found


def _value(hint: Any, value: object, where: str) -> Any:
    if isinstance(hint, types.UnionType):  # only `X | None` occurs in notices
        if value is None:
            return None
        (hint,) = [a for a in typing.get_args(hint) if a is not types.NoneType]
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if hint is datetime and isinstance(value, str):
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            raise _Bad(f"{where}: {value!r} is not an ISO date and time") from None
        if instant.tzinfo is None:
            raise _Bad(f"{where}: {value!r} has no time zone")
        return instant
    if isinstance(hint, type) and issubclass(hint, enum.Enum) and isinstance(value, str):
        try:
            return hint(value)
        except ValueError:
            raise _Bad(f"{where}: {value!r} is not a {hint.__name__}") from None
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        (item, _) = typing.get_args(hint)  # tuple[X, ...]
        return tuple(_value(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return _build(typing.cast(type[Any], hint), value, where)
    shown = getattr(hint, "__name__", str(hint))
    raise _Bad(f"{where}: expected {shown}, got {type(value).__name__}")


# ---------------------------------------------------------------- the first version's payloads


def _from_first_version(cls: type[Any], raw: dict[str, Any]) -> dict[str, Any]:
    """The first version stored the same facts under the same names, except that it packed
    channel lists into lines and some amounts into formatted text: unpack those."""
    data = dict(raw)
    if cls is ChannelsExpiring:
        data["channels"] = _packed_channels(_text(data, "channels"), renewing=False)
    elif cls in (ChannelsRenewed, RenewFellShort):
        data["channels"] = _packed_channels(_text(data, "channels"), renewing=True)
    elif cls is InvoiceIssued:
        data["amount"], data["currency"] = _formatted_amount(_text(data, "amount"))
    elif cls is PaymentMismatched:
        expected = _formatted_amount(_text(data, "expected"))
        data["expected_amount"], data["expected_currency"] = expected
        data["paid_amount"], data["paid_currency"] = _minor_amount(_text(data, "paid"))
        del data["expected"], data["paid"]
    return data


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise _Bad(f"{key}: expected text in a first-version payload")
    return value


def _packed_channels(packed: str, *, renewing: bool) -> list[dict[str, Any]]:
    """Lines of "name|until|0-or-1" (expiry) or of names alone (renewals)."""
    listed = []
    for row in packed.split("\n"):
        if not row:
            continue
        name, _, rest = row.partition("|")
        until, _, renew = rest.partition("|")
        # Only auto-renew channels are ever renewed, so a renewal's list means "on".
        listed.append({"name": name, "until": until or None,
                       "auto_renew": renewing or renew == "1"})
    return listed


def _formatted_amount(text: str) -> tuple[int, str]:
    """What money.format_amount wrote ("1,250.00 USD") back as (125000, "usd")."""
    number, _, code = text.rpartition(" ")
    try:
        minor = Decimal(number.replace(",", "")).scaleb(money.exponent(code))
    except InvalidOperation:
        raise _Bad(f"{text!r} is not an amount") from None
    if not code or not minor.is_finite() or minor != minor.to_integral_value():
        raise _Bad(f"{text!r} is not an amount")
    return int(minor), code.lower()


def _minor_amount(text: str) -> tuple[int, str]:
    """"1875 eur" (minor units and currency, as Stripe reported them) as (1875, "eur")."""
    number, _, code = text.partition(" ")
    try:
        return int(number), code
    except ValueError:
        raise _Bad(f"{text!r} is not an amount in minor units") from None
