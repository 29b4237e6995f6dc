"""What handling a payment report did (a webhook or a reconciliation's ask): one word
per outcome, stored with each provider event and counted by the webhook's metrics."""

from __future__ import annotations

from enum import StrEnum


class EventResult(StrEnum):
    """What a payment report did. The value is what the webhook answers and what is stored
    with a provider event (databases written before this type hold the same strings)."""

    CREDITED = "credited"  # an order paid: its days credited
    SUBSCRIBED = "subscribed"  # a subscription checkout done: its channel knows the subscription
    EXTENDED = "extended"  # a paid subscription period extended its channel
    ENDED = "ended"  # a subscription cancelled: the channel is back on its balance
    REFUNDED = "refunded"  # a refund took its days back
    ALREADY = "already"  # reported before: nothing more to do
    PENDING = "pending"  # not paid yet
    EXPIRED = "expired"  # the checkout lapsed: its order closed
    LINK_EXPIRED = "link_expired"  # an invoice's link lapsed: the invoice waits for a new one
    FAILED = "failed"  # an asynchronous payment failed: its order closed
    MISMATCH = "mismatch"  # paid another amount or currency than ordered: support told
    CHANNEL_DELETED = "channel_deleted"  # a period paid for a deleted channel: none credited
    FOREIGN = "foreign"  # the session's metadata names another order or partner
    UNKNOWN = "unknown"  # not an order, channel or payment of ours
    IGNORED = "ignored"  # an event of a kind, or about an object, we do not act on


CREDITS = frozenset({EventResult.CREDITED, EventResult.SUBSCRIBED})
CLOSES = frozenset({EventResult.EXPIRED, EventResult.FAILED})
