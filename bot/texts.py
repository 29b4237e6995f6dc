"""Fixed texts, and how each domain error reads to a person (one line, a way forward)."""

from __future__ import annotations

from datetime import UTC, tzinfo

from bot.render import date, days, echo, esc
from core.errors import (
    AlreadyLinked,
    BillingError,
    ChannelChanged,
    ChannelNameTaken,
    ChannelNotFound,
    InsufficientBalance,
    InvalidInput,
    InviteInvalid,
    NothingToInvoice,
    NotPermitted,
    OrderNotFound,
    OrderNotPayable,
    PartnerNameTaken,
    PartnerNotFound,
    PaymentUnavailable,
    StoreBusy,
    SubscriptionExists,
)

UNKNOWN = "I don't know that command. /help lists what you can do."
NOT_LINKED = (
    "You are not linked to a partner account yet.\n"
    "Ask your account owner for an invite link (or write to support for one), "
    "then open it: it starts this chat with your code."
)
PRIVATE_ONLY = "I keep balances and ledgers private: please write to me in a private chat."
CHOOSE_PARTNER = (
    "Choose a partner first: /account PARTNER (an id or exact name). /partners lists them."
)
OWNER_ONLY = "Only the account owner can invite teammates. Ask your owner for an invite link."
NOT_COMMAND = "I work with commands. /help lists them."
# The one answer to a flood, at most once a minute (bot/gate.py).
TOO_MANY = "Too many messages at once. Please wait a minute, then try again."
PAYMENTS_OFF = (
    "Payments are not set up on this bot yet. "
    "Ask support to credit days meanwhile; /balance shows what you have."
)
BUTTON_EXPIRED = "This button has expired. Run the command again."
BUSY = "I'm busy saving other changes. Please try again in a moment."
# A domain reason may quote what the user typed (e.g. an amount): plain text, any length.
MAX_REASON = 160


def subscription_exists(exc: SubscriptionExists, tz: tzinfo) -> str:
    """Which subscription the channel has: a second one would bill it twice."""
    each = "monthly" if exc.interval == "month" else "annual"
    name = esc(exc.channel)
    if not exc.pending:
        return (
            f"“{name}” is already paid by a{'n' if each == 'annual' else ''} {each} "
            f"subscription since {date(exc.since, tz)}. Nothing new was made; to change it, "
            "ask support to cancel that one first."
        )
    if exc.url is None or exc.expires_at is None:
        return (
            f"“{name}” already has a{'n' if each == 'annual' else ''} {each} subscription "
            "being set up: ask again in a minute for its payment link. Nothing new was made."
        )
    until = exc.expires_at.astimezone(tz)
    return (
        f"“{name}” already has a{'n' if each == 'annual' else ''} {each} subscription "
        f"waiting for payment, open until {until:%Y-%m-%d %H:%M %Z}: pay it with its "
        "button, or let it lapse and ask again. Nothing new was made."
    )


def explain(exc: BillingError, *, hint: str = "") -> str:
    """The one-line answer for a refusal; `hint` is the command's usage line."""
    match exc:
        case InsufficientBalance(needed=needed, available=available):
            missing = needed - available
            return (
                f"You have {days(available)}, this needs {needed:,}: /topup {missing}"
            )
        case ChannelNotFound(name=name):
            return f"No channel named “{echo(name)}”. /channels lists yours."
        case ChannelNameTaken(name=name):
            return f"A channel named “{echo(name)}” already exists. Pick another name."
        case ChannelChanged(name=name):
            return f"Channel “{echo(name)}” changed since I asked. Run /delete again."
        case PartnerNotFound(ref=ref):
            return f"No partner “{echo(ref)}”. /partners lists them."
        case PartnerNameTaken(name=name):
            return f"A partner named “{echo(name)}” already exists."
        case InviteInvalid(reason="expired"):
            return "This invite link has expired. Ask for a new one."
        case InviteInvalid(reason="used"):
            return "This invite link was already used. Ask for a new one."
        case InviteInvalid():
            return "I don't know this invite link. Check it, or ask for a new one."
        case AlreadyLinked():
            return "You are already linked to a partner account. /help shows what you can do."
        case InvalidInput(field=field, reason=reason):
            plain = f"{field.capitalize()} {reason}."
            if len(plain) > MAX_REASON:
                plain = plain[: MAX_REASON - 1] + "…"
            text = esc(plain)  # replies are HTML
            return f"{text} {hint}" if hint else text
        case OrderNotFound() | OrderNotPayable():
            return "That order is not open for payment any more. /invoices lists yours."
        case NothingToInvoice():
            return "No live channels, so there is nothing to invoice."
        case PaymentUnavailable():
            return (
                "Stripe is not answering right now. Nothing was charged; "
                "please try again in a few minutes."
            )
        case NotPermitted():
            return UNKNOWN
        case StoreBusy():
            return BUSY
        case SubscriptionExists():
            return subscription_exists(exc, UTC)
    return "I could not do that. Please try again; if it keeps failing, tell support."
