"""Use cases of partners, members and invites (synchronous, inside one transaction)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import replace
from datetime import datetime

from core import money
from core.alerts import check_low_balance
from core.days import MAX_DAYS_PER_OPERATION
from core.errors import (
    AlreadyLinked,
    InvalidInput,
    InviteInvalid,
    PartnerNameTaken,
    PartnerNotFound,
)
from core.model import MAX_ID, Invite, Member, Partner, Role
from core.names import clean_partner_name
from core.policy import BillingPolicy
from core.ports import Ledger

# 24 random bytes: 192 bits, 32 characters of A-Za-z0-9_- (fits a /start deep link).
INVITE_BYTES = 24


def new_invite_code() -> str:
    return secrets.token_urlsafe(INVITE_BYTES)


def hash_code(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def check_billing_day(day: int) -> int:
    if not 1 <= day <= 31:
        raise InvalidInput("billing day", "must be between 1 and 31")
    return day


def check_threshold(days: int) -> int:
    if isinstance(days, bool) or days < 0 or days > MAX_DAYS_PER_OPERATION:
        raise InvalidInput("days", f"must be between 0 and {MAX_DAYS_PER_OPERATION:,}")
    return days


def create_partner(
    ledger: Ledger,
    now: datetime,
    policy: BillingPolicy,
    name: str,
    actor: str,
    *,
    monthly_price: int | None = None,
    currency: str | None = None,
) -> Partner:
    clean = clean_partner_name(name)
    cur = money.check_currency(currency or policy.currency)
    price = policy.monthly_price if monthly_price is None else monthly_price
    if price <= 0 or price > money.MAX_AMOUNT:
        raise InvalidInput("price", "must be greater than zero")
    if ledger.find_partner_by_name(clean) is not None:
        raise PartnerNameTaken(clean)
    partner = ledger.add_partner(
        clean, cur, price, policy.low_balance_days, check_billing_day(policy.billing_day), now
    )
    ledger.record_event(
        now, actor, "partner.created", partner.id,
        f"name={clean} price={price} currency={cur}",
    )
    return partner


def resolve_partner(ledger: Ledger, ref: str) -> Partner:
    """PARTNER is a numeric id or an exact name (compared case-insensitively)."""
    text = ref.strip()
    # ASCII digits only ("²" is a digit to str.isdigit but not to int), and no more than
    # SQLite's 64-bit integers hold: a longer number cannot be an id, nor a name.
    partner = (
        ledger.get_partner(int(text))
        if text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= MAX_ID
        else ledger.find_partner_by_name(text)
    )
    if partner is None:
        raise PartnerNotFound(text)
    return partner


def get_partner(ledger: Ledger, partner_id: int) -> Partner:
    partner = ledger.get_partner(partner_id)
    if partner is None:
        raise PartnerNotFound(str(partner_id))
    return partner


def create_invite(
    ledger: Ledger,
    now: datetime,
    policy: BillingPolicy,
    partner_id: int,
    role: Role,
    actor: str,
    code: str,
) -> Invite:
    """Store the hash of `code` (made by the caller with new_invite_code)."""
    get_partner(ledger, partner_id)
    invite = ledger.add_invite(
        partner_id, role, hash_code(code), now, now + policy.invite_ttl, actor
    )
    ledger.record_event(now, actor, "invite.created", partner_id, f"role={role.value}")
    return invite


def redeem_invite(ledger: Ledger, now: datetime, code: str, user_id: int) -> Member:
    """Link a Telegram user to the invite's partner; the partner's first member owns it."""
    invite = ledger.find_invite(hash_code(code.strip()))
    if invite is None:
        raise InviteInvalid("unknown")
    existing = ledger.get_member(user_id)
    if invite.used_at is not None:
        if invite.used_by == user_id and existing is not None:
            return existing  # the same /start delivered twice
        raise InviteInvalid("used")
    if now >= invite.expires_at:
        raise InviteInvalid("expired")
    if existing is not None:
        raise AlreadyLinked(existing.partner_id)
    first = not ledger.list_members(invite.partner_id)
    member = Member(
        user_id=user_id,
        partner_id=invite.partner_id,
        role=Role.OWNER if first or invite.role is Role.OWNER else Role.MEMBER,
        linked_at=now,
    )
    ledger.save_member(member)
    ledger.use_invite(invite.id, user_id, now)
    ledger.record_event(
        now, f"user:{user_id}", "member.linked", invite.partner_id, f"role={member.role.value}"
    )
    return member


def set_price(
    ledger: Ledger, now: datetime, partner_id: int, amount: int, actor: str
) -> Partner:
    partner = get_partner(ledger, partner_id)
    if amount <= 0 or amount > money.MAX_AMOUNT:
        raise InvalidInput("amount", "must be greater than zero")
    updated = replace(partner, monthly_price=amount)
    ledger.update_partner(updated)
    ledger.record_event(
        now, actor, "partner.price_set", partner_id,
        f"from={partner.monthly_price} to={amount}",
    )
    return updated


def set_alert_threshold(
    ledger: Ledger, now: datetime, partner_id: int, days: int, actor: str
) -> Partner:
    partner = get_partner(ledger, partner_id)
    updated = replace(partner, low_balance_days=check_threshold(days))
    ledger.update_partner(updated)
    check_low_balance(ledger, now, partner_id)  # a raised threshold may be crossed now
    ledger.record_event(
        now, actor, "partner.threshold_set", partner_id,
        f"from={partner.low_balance_days} to={days}",
    )
    return updated


def set_member_reachable(
    ledger: Ledger, now: datetime, user_id: int, reachable: bool, actor: str
) -> None:
    member = ledger.get_member(user_id)
    if member is None or member.unreachable is (not reachable):
        return
    ledger.save_member(replace(member, unreachable=not reachable))
    ledger.record_event(
        now, actor, "member.reachable" if reachable else "member.unreachable",
        member.partner_id, f"user={user_id}",
    )
