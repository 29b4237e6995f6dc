"""Entities of the billing domain: partners, members, invites, channels, accounts,
transfers and payment orders. Frozen: a change is a new value handed to the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class ActorKind(StrEnum):
    USER = "user"  # a linked partner member, by Telegram user id
    SUPPORT = "support"  # a support agent, by Telegram user id
    STRIPE = "stripe"  # a Stripe event or a reconciliation with Stripe
    SCHEDULER = "scheduler"  # a scheduled job
    CLI = "cli"  # an operator at the command line
    SYSTEM = "system"  # the bot itself (e.g. migrations)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who caused a change; recorded on every state change."""

    kind: ActorKind
    ref: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.ref}"

    @classmethod
    def parse(cls, text: str) -> Actor:
        kind, _, ref = text.partition(":")
        return cls(ActorKind(kind), ref)

    @classmethod
    def user(cls, user_id: int) -> Actor:
        return cls(ActorKind.USER, str(user_id))

    @classmethod
    def support(cls, user_id: int) -> Actor:
        return cls(ActorKind.SUPPORT, str(user_id))


class Role(StrEnum):
    OWNER = "owner"
    MEMBER = "member"


@dataclass(frozen=True, slots=True)
class Partner:
    id: int
    name: str
    currency: str
    monthly_price: int  # minor units per channel per 30 days
    low_balance_days: int
    billing_day: int  # 1..31; a day past a short month's end means its last day
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Member:
    user_id: int
    partner_id: int
    role: Role
    linked_at: datetime
    unreachable: bool = False


@dataclass(frozen=True, slots=True)
class Invite:
    id: int
    partner_id: int
    role: Role
    code_hash: str  # sha256 of the code; the code itself is never stored
    created_at: datetime
    expires_at: datetime
    created_by: str
    used_at: datetime | None = None
    used_by: int | None = None


class ChannelBilling(StrEnum):
    BALANCE = "balance"  # days given from the partner's balance
    SUBSCRIPTION = "subscription"  # a Stripe subscription of its own (rule 10)


@dataclass(frozen=True, slots=True)
class Channel:
    id: int
    partner_id: int
    name: str
    created_at: datetime
    active_until: datetime | None = None
    auto_renew: bool = False
    deleted_at: datetime | None = None
    billing: ChannelBilling = ChannelBilling.BALANCE
    subscription_ref: str | None = None  # the Stripe subscription paying it (rule 10)

    @property
    def live(self) -> bool:
        return self.deleted_at is None


# Accounts are named by short codes. Outside accounts are where days come from and go
# to; their balances are the negation of everything inside, so the total is zero.
# The largest id a row can have: SQLite integers are signed 64-bit. A number typed or
# forged beyond it names nothing (and binding it would raise OverflowError).
MAX_ID = 2**63 - 1

PURCHASES = "ext:purchases"  # days bought with money (top-ups, invoices)
GRANTS = "ext:grants"  # days given or taken by support
CONSUMED = "ext:consumed"  # days used up by deleted channels
SUBSCRIPTIONS = "ext:subscriptions"  # days paid by per-channel Stripe subscriptions
EXTERNAL_ACCOUNTS = (PURCHASES, GRANTS, CONSUMED, SUBSCRIPTIONS)


_PARTNER_PREFIX = "partner:"
_CHANNEL_PREFIX = "channel:"


def partner_account(partner_id: int) -> str:
    """The code of a partner's balance: ``partner:7``."""
    return f"{_PARTNER_PREFIX}{partner_id}"


def channel_account(channel_id: int) -> str:
    """The code of a channel's account: ``channel:12``."""
    return f"{_CHANNEL_PREFIX}{channel_id}"


def partner_of(account: str) -> int | None:
    """The partner whose balance ``account`` is (``partner:7`` -> 7), else None."""
    return _id_after(_PARTNER_PREFIX, account)


def channel_of(account: str) -> int | None:
    """The channel whose account ``account`` is (``channel:12`` -> 12), else None."""
    return _id_after(_CHANNEL_PREFIX, account)


def _id_after(prefix: str, account: str) -> int | None:
    if not account.startswith(prefix):
        return None
    ref = account[len(prefix):]
    return int(ref) if ref.isdigit() else None


class TransferKind(StrEnum):
    PURCHASE = "purchase"  # purchases -> partner: a paid order
    REFUND = "refund"  # partner -> purchases: a Stripe refund takes days back
    GRANT = "grant"  # grants -> partner
    REMOVAL = "removal"  # partner -> grants
    ALLOCATION = "allocation"  # partner -> channel
    RENEWAL = "renewal"  # partner -> channel, by auto-renew
    RETURN = "return"  # channel -> partner: unused days of a deleted channel
    CONSUMPTION = "consumption"  # channel -> consumed: used days of a deleted channel
    SUBSCRIPTION = "subscription"  # subscriptions -> channel: a paid Stripe period


@dataclass(frozen=True, slots=True)
class NewTransfer:
    key: str  # idempotency key, unique across the ledger
    debit: str  # account the days leave
    credit: str  # account the days enter
    days: int
    kind: TransferKind
    actor: str
    reason: str
    created_at: datetime
    order_id: int | None = None


@dataclass(frozen=True, slots=True)
class Transfer:
    id: int
    key: str
    debit: str
    credit: str
    days: int
    kind: TransferKind
    actor: str
    reason: str
    created_at: datetime
    order_id: int | None
    digest: str  # chains this row to the previous one (see core.ledger)


class OrderKind(StrEnum):
    TOPUP = "topup"  # extra days bought by the partner (rule 3)
    INVOICE = "invoice"  # N channels x 30 days, monthly or on request (rule 6)
    SUBSCRIPTION = "subscription"  # a per-channel Stripe subscription (rule 10)


class OrderStatus(StrEnum):
    OPEN = "open"  # waiting for payment
    PAID = "paid"  # days credited
    EXPIRED = "expired"  # the payment link lapsed unpaid
    FAILED = "failed"  # the payment was attempted and failed
    CANCELED = "canceled"  # withdrawn before payment (e.g. Stripe unreachable)


@dataclass(frozen=True, slots=True)
class PaymentOrder:
    id: int
    partner_id: int
    kind: OrderKind
    days: int
    amount: int  # minor units, the quote the payment must match
    currency: str
    status: OrderStatus
    created_at: datetime
    created_by: str
    period: str | None = None  # "YYYY-MM" for monthly invoices
    channels: int | None = None  # channel count an invoice was sized by
    channel_id: int | None = None  # the channel of a subscription
    provider_ref: str | None = None  # Stripe Checkout Session id
    payment_ref: str | None = None  # Stripe PaymentIntent id, once paid
    url: str | None = None  # where the partner pays
    paid_at: datetime | None = None
    closed_at: datetime | None = None
    refunded_days: int = 0


@dataclass(frozen=True, slots=True)
class Notice:
    """A message the bot owes someone; rendered into text by the bot at delivery."""

    id: int
    key: str  # dedupe: one notice per key, however often the cause is replayed
    partner_id: int | None  # None: for support staff
    kind: str
    payload: str  # a typed notice as core.notices.encode writes it (decode reads it back)
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    notice: Notice
    user_id: int
    attempts: int


class CheckoutMode(StrEnum):
    PAYMENT = "payment"
    SUBSCRIPTION = "subscription"


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    """What the payment gateway needs to make a payment link for an order."""

    order: PaymentOrder
    mode: CheckoutMode
    description: str
    expires_at: datetime
    interval: str | None = None  # "month" or "year" for subscriptions


@dataclass(frozen=True, slots=True)
class CheckoutLink:
    provider_ref: str
    url: str


@dataclass(frozen=True, slots=True)
class SessionState:
    """What the payment provider says about one checkout (webhook or a direct ask)."""

    provider_ref: str
    status: str  # "open", "complete" or "expired"
    payment_status: str  # "paid", "unpaid" or "no_payment_required"
    amount_total: int
    currency: str
    order_id: int | None  # from the metadata we set
    partner_id: int | None
    payment_ref: str | None = None  # PaymentIntent id
    subscription_ref: str | None = None
    failed: bool = False  # an asynchronous payment failed


@dataclass(frozen=True, slots=True)
class AlertState:
    """Where a partner stands against its low-balance threshold (rule 7)."""

    partner: Partner
    balance: int
    below: bool  # the members were told and the balance has not risen above since
    crossings: int  # downward crossings so far; numbers the alerts


@dataclass(frozen=True, slots=True)
class ChainStart:
    """Where the keyed part of the chain starts: transfers from `keyed_from` on are sealed
    with HMAC-SHA256 under `ledger.chain_key`; `seal` is that key's HMAC of this record,
    so moving the start (claiming keyed rows are plain) also needs the key."""

    keyed_from: int
    seal: str
