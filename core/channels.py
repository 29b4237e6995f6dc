"""Use cases of channels: create, allocate (rule 4), delete (rule 5), auto-renew (rule 9)
and paid subscription periods (rule 10). Synchronous, inside one transaction."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from core import notices
from core.days import check_days, extended_until, unused_days, utc
from core.errors import ChannelChanged, ChannelNameTaken, ChannelNotFound, InsufficientBalance
from core.idempotency import once
from core.ledger import move
from core.model import (
    CONSUMED,
    SUBSCRIPTIONS,
    ActorKind,
    Channel,
    TransferKind,
    channel_account,
    partner_account,
)
from core.names import clean_name
from core.outcomes import (
    ChannelCreated,
    ChannelDeleted,
    ChannelRenewed,
    DaysAllocated,
    SubscriptionPeriodPaid,
)
from core.partners import get_partner
from core.ports import Ledger

RENEWAL_DAYS = 30


def _by_support(actor: str) -> bool:
    """Support acting on a partner's behalf: its members did not make the change, so they
    are told (a member's own change is answered in the chat)."""
    return actor.partition(":")[0] == ActorKind.SUPPORT.value


def find_channel(ledger: Ledger, partner_id: int, name: str) -> Channel:
    """The partner's live channel by name; another partner's reads as absent."""
    channel = ledger.find_live_channel(partner_id, " ".join(name.split()))
    if channel is None:
        raise ChannelNotFound(name)
    return channel


def channel_by_id(ledger: Ledger, partner_id: int, channel_id: int) -> Channel:
    channel = ledger.get_channel(channel_id)
    if channel is None or channel.partner_id != partner_id:
        raise ChannelNotFound(str(channel_id))
    return channel


@dataclass(frozen=True, slots=True)
class _Funded:
    balance: int  # the partner's balance after the move
    until: datetime  # the channel's new active-until
    transfer_id: int


def _fund_from_balance(
    ledger: Ledger,
    now: datetime,
    channel: Channel,
    days: int,
    kind: TransferKind,
    actor: str,
    key: str,
) -> _Funded:
    """Rules 4 and 9 share this: move ``days`` from the partner's balance to the channel
    and extend it (an expired channel restarts from now); never overdraw."""
    balance = ledger.balance(partner_account(channel.partner_id))
    if days > balance:
        raise InsufficientBalance(needed=days, available=balance)
    until = extended_until(channel.active_until, now, days)
    # The channel first: a low-balance alert raised by the move counts it in the runway.
    ledger.update_channel(replace(channel, active_until=until))
    transfer = move(
        ledger, key=key, debit=partner_account(channel.partner_id),
        credit=channel_account(channel.id), days=days, kind=kind, actor=actor, at=now,
    )
    return _Funded(balance - days, until, transfer.id)


def create_channel(
    ledger: Ledger, now: datetime, partner_id: int, name: str, actor: str, key: str
) -> ChannelCreated:
    def body() -> ChannelCreated:
        get_partner(ledger, partner_id)
        clean = clean_name(name)
        if ledger.find_live_channel(partner_id, clean) is not None:
            raise ChannelNameTaken(clean)
        channel = ledger.add_channel(partner_id, clean, utc(now))
        ledger.record_event(now, actor, "channel.created", partner_id, f"channel={channel.id}")
        return ChannelCreated(partner_id, channel.id, channel.name, channel.created_at)

    return once(ledger, key, now, ChannelCreated, body)


def allocate_days(
    ledger: Ledger,
    now: datetime,
    partner_id: int,
    channel_name: str,
    days: int,
    actor: str,
    key: str,
) -> DaysAllocated:
    def body() -> DaysAllocated:
        check_days(days)
        get_partner(ledger, partner_id)
        channel = find_channel(ledger, partner_id, channel_name)
        funded = _fund_from_balance(
            ledger, now, channel, days, TransferKind.ALLOCATION, actor, key
        )
        if _by_support(actor):
            notices.notify(
                ledger, now, f"support-allocated:{key}", partner_id, notices.SupportAllocated(
                    channel=channel.name, days=days, until=funded.until, balance=funded.balance,
                ),
            )
        return DaysAllocated(
            partner_id, channel.id, channel.name, days, funded.balance, funded.until,
            funded.transfer_id,
        )

    return once(ledger, key, now, DaysAllocated, body)


def deletion_preview(
    ledger: Ledger, now: datetime, partner_id: int, channel_name: str
) -> tuple[Channel, int]:
    """The channel and the days that deleting it now would return."""
    channel = find_channel(ledger, partner_id, channel_name)
    return channel, unused_days(channel.active_until, now)


def delete_channel(
    ledger: Ledger,
    now: datetime,
    partner_id: int,
    channel_id: int,
    actor: str,
    key: str,
    *,
    expected_until: datetime | None = None,
    check_expected: bool = False,
) -> ChannelDeleted:
    """Delete a live channel, return its unused days and record the rest as consumed.

    With check_expected, refuse (ChannelChanged) if its active_until moved since the
    partner was shown what would come back.
    """

    def body() -> ChannelDeleted:
        channel = channel_by_id(ledger, partner_id, channel_id)
        if not channel.live:
            raise ChannelNotFound(channel.name)
        if check_expected and channel.active_until != expected_until:
            raise ChannelChanged(channel.name)
        account = channel_account(channel.id)
        held = ledger.balance(account)
        returned = min(unused_days(channel.active_until, now), max(held, 0))
        consumed = held - returned
        if returned:
            move(
                ledger, key=f"{key}/return", debit=account, credit=partner_account(partner_id),
                days=returned, kind=TransferKind.RETURN, actor=actor, at=now,
            )
        if consumed > 0:
            move(
                ledger, key=f"{key}/consumed", debit=account, credit=CONSUMED,
                days=consumed, kind=TransferKind.CONSUMPTION, actor=actor, at=now,
            )
        ledger.update_channel(replace(channel, deleted_at=utc(now), auto_renew=False))
        ledger.record_event(now, actor, "channel.deleted", partner_id, f"channel={channel.id}")
        balance = ledger.balance(partner_account(partner_id))
        if _by_support(actor):
            notices.notify(
                ledger, now, f"support-deleted:{key}", partner_id, notices.SupportDeleted(
                    channel=channel.name, returned=returned, balance=balance,
                ),
            )
        return ChannelDeleted(
            partner_id, channel.id, channel.name, returned, max(consumed, 0), balance, utc(now)
        )

    return once(ledger, key, now, ChannelDeleted, body)


def set_auto_renew(
    ledger: Ledger, now: datetime, partner_id: int, channel_name: str, on: bool, actor: str
) -> Channel:
    channel = find_channel(ledger, partner_id, channel_name)
    updated = replace(channel, auto_renew=on)
    if updated != channel:
        ledger.update_channel(updated)
        ledger.record_event(
            now, actor, "channel.auto_renew", partner_id,
            f"channel={channel.id} on={str(on).lower()}",
        )
    return updated


def renew_channel(
    ledger: Ledger, now: datetime, channel_id: int, actor: str, *, days: int = RENEWAL_DAYS
) -> ChannelRenewed:
    """Rule 9: extend an auto-renew channel from the balance, once per expiry instant."""
    channel = ledger.get_channel(channel_id)
    if channel is None or not channel.live:
        raise ChannelNotFound(str(channel_id))
    until = channel.active_until
    key = f"renew:{channel.id}:{'none' if until is None else utc(until).isoformat()}"

    def body() -> ChannelRenewed:
        funded = _fund_from_balance(ledger, now, channel, days, TransferKind.RENEWAL, actor, key)
        return ChannelRenewed(
            channel.partner_id, channel.id, channel.name, days, funded.balance,
            funded.until, funded.transfer_id,
        )

    return once(ledger, key, now, ChannelRenewed, body)


def credit_subscription_period(
    ledger: Ledger,
    now: datetime,
    channel_id: int,
    days: int,
    period_ref: str,
    actor: str,
) -> SubscriptionPeriodPaid:
    """Rule 10: a paid subscription period extends its channel, not the balance.

    `period_ref` names the paid period (a Stripe invoice id): once per period.
    """
    key = f"subscription-period:{period_ref}"

    def body() -> SubscriptionPeriodPaid:
        check_days(days)
        channel = ledger.get_channel(channel_id)
        if channel is None:
            raise ChannelNotFound(str(channel_id))
        until = extended_until(channel.active_until, now, days)
        transfer = move(
            ledger, key=key, debit=SUBSCRIPTIONS, credit=channel_account(channel.id),
            days=days, kind=TransferKind.SUBSCRIPTION, actor=actor, at=now,
            reason=period_ref,
        )
        ledger.update_channel(replace(channel, active_until=until))
        notices.notify(
            ledger, now, f"period:{period_ref}", channel.partner_id,
            notices.SubscriptionPaid(channel=channel.name, days=days, until=until),
        )
        return SubscriptionPeriodPaid(
            channel.partner_id, channel.id, channel.name, days, until, transfer.id
        )

    return once(ledger, key, now, SubscriptionPeriodPaid, body)
