"""Errors of the billing domain.

Every error the domain raises derives from one root, and carries its facts as fields so
that the bot, the CLI and the webhook render them without parsing messages::

    BillingError
    ├── InvalidInput(field, reason)          a value no rule accepts (days, name, amount)
    ├── NotFound                             answered the same whether absent or foreign
    │   ├── PartnerNotFound(ref)
    │   ├── ChannelNotFound(name)
    │   ├── OrderNotFound(order_id)
    │   └── MemberNotFound(user_id)
    ├── InsufficientBalance(needed, available)
    ├── ChannelNameTaken(name)
    ├── ChannelChanged(name)                 a confirmation no longer matches the channel
    ├── PartnerNameTaken(name)
    ├── InviteInvalid(reason)                unknown, used or expired
    ├── AlreadyLinked(partner_id)
    ├── NotPermitted(action)
    ├── OrderNotPayable(order_id, status)
    ├── PaymentMismatch(order_id, expected_amount, expected_currency, paid_amount, paid_currency)
    ├── SubscriptionExists(channel, ...)     a channel's one subscription, pending or active
    ├── NothingToInvoice(partner_id)         no live channels, so no invoice (rule 6)
    ├── PaymentUnavailable(reason)           the payment provider failed or did not answer
    └── StorageError                         the store failed; translated at its boundary
        └── StoreBusy                        the database stayed locked past the timeout
"""

from __future__ import annotations

from datetime import datetime


class BillingError(Exception):
    """Root of every error the domain raises."""


class InvalidInput(BillingError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(BillingError):
    """Something does not exist for this caller (absent and foreign look the same)."""


class PartnerNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"no partner {ref!r}")
        self.ref = ref


class ChannelNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"no channel {name!r}")
        self.name = name


class OrderNotFound(NotFound):
    def __init__(self, order_id: int) -> None:
        super().__init__(f"no order {order_id}")
        self.order_id = order_id


class MemberNotFound(NotFound):
    def __init__(self, user_id: int) -> None:
        super().__init__(f"user {user_id} is not linked to a partner")
        self.user_id = user_id


class InsufficientBalance(BillingError):
    def __init__(self, needed: int, available: int) -> None:
        super().__init__(f"needs {needed} days, balance is {available} days")
        self.needed = needed
        self.available = available

    @property
    def missing(self) -> int:
        return self.needed - self.available


class ChannelNameTaken(BillingError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a live channel is already named {name!r}")
        self.name = name


class ChannelChanged(BillingError):
    def __init__(self, name: str) -> None:
        super().__init__(f"channel {name!r} changed since this was shown")
        self.name = name


class PartnerNameTaken(BillingError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a partner is already named {name!r}")
        self.name = name


class InviteInvalid(BillingError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"invite {reason}")
        self.reason = reason  # "unknown", "used" or "expired"


class AlreadyLinked(BillingError):
    def __init__(self, partner_id: int) -> None:
        super().__init__(f"already linked to partner {partner_id}")
        self.partner_id = partner_id


class NotPermitted(BillingError):
    def __init__(self, action: str) -> None:
        super().__init__(f"not permitted: {action}")
        self.action = action


class OrderNotPayable(BillingError):
    def __init__(self, order_id: int, status: str) -> None:
        super().__init__(f"order {order_id} is {status}")
        self.order_id = order_id
        self.status = status


class PaymentMismatch(BillingError):
    def __init__(
        self,
        order_id: int,
        expected_amount: int,
        expected_currency: str,
        paid_amount: int,
        paid_currency: str,
    ) -> None:
        super().__init__(
            f"order {order_id} expects {expected_amount} {expected_currency}, "
            f"payment was {paid_amount} {paid_currency}"
        )
        self.order_id = order_id
        self.expected_amount = expected_amount
        self.expected_currency = expected_currency
        self.paid_amount = paid_amount
        self.paid_currency = paid_currency


class SubscriptionExists(BillingError):
    """The channel already has its one subscription (rule 10): pending (a checkout not
    paid yet, open until `expires_at`, payable at `url`) or active since `since`."""

    def __init__(
        self,
        channel: str,
        interval: str,
        since: datetime,
        *,
        pending: bool,
        url: str | None = None,
        expires_at: datetime | None = None,
        order_id: int | None = None,
    ) -> None:
        state = "pending" if pending else "active"
        super().__init__(f"channel {channel} has a {state} {interval} subscription")
        self.channel = channel
        self.interval = interval  # "month" or "year"
        self.since = since  # when it was asked for (pending) or paid (active)
        self.pending = pending
        self.url = url
        self.expires_at = expires_at
        self.order_id = order_id  # the pending one's order


class NothingToInvoice(BillingError):
    def __init__(self, partner_id: int) -> None:
        super().__init__(f"partner {partner_id} has no channels to invoice")
        self.partner_id = partner_id


class PaymentUnavailable(BillingError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"payment provider unavailable: {reason}")
        self.reason = reason


class StorageError(BillingError):
    """The store could not do what was asked; the cause is chained."""


class StoreBusy(StorageError):
    """Another process held the database lock for longer than the busy timeout."""
