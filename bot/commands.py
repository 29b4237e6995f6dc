"""Every command: who may use it, what it does, how it is typed.

One table feeds /help, the per-user command menus and the usage hints.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Audience(Enum):
    EVERYONE = "everyone"
    PARTNER = "partner"  # linked members (and support, acting on a chosen partner)
    OWNER = "owner"  # a partner's owner
    SUPPORT = "support"


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    audience: Audience
    summary: str  # for the menu (Telegram allows 3-256 characters)
    usage: str  # shown when the arguments are wrong
    example: str = ""


COMMANDS: tuple[Command, ...] = (
    Command("start", Audience.EVERYONE, "Start, or link your account with an invite code",
            "/start CODE: open the invite link you were given"),
    Command("help", Audience.EVERYONE, "What I can do for you", "/help"),
    Command("balance", Audience.PARTNER, "Balance, channels, monthly need and runway",
            "/balance"),
    Command("channels", Audience.PARTNER, "Your channels and their days left", "/channels"),
    Command("newchannel", Audience.PARTNER, "Create a channel",
            "/newchannel NAME (1-64 characters)", "/newchannel shop-berlin"),
    Command("allocate", Audience.PARTNER, "Give days from the balance to a channel",
            "/allocate CHANNEL DAYS", "/allocate shop-berlin 30"),
    Command("delete", Audience.PARTNER, "Delete a channel and get its unused days back",
            "/delete CHANNEL", "/delete shop-berlin"),
    Command("topup", Audience.PARTNER, "Buy days", "/topup DAYS", "/topup 300"),
    Command("autorenew", Audience.PARTNER, "Renew a channel from the balance before expiry",
            "/autorenew CHANNEL on|off", "/autorenew shop-berlin on"),
    Command("subscribe", Audience.PARTNER, "Pay one channel by its own Stripe subscription",
            "/subscribe CHANNEL monthly|annual", "/subscribe shop-berlin annual"),
    Command("history", Audience.PARTNER, "Recent movements of your balance", "/history"),
    Command("invoices", Audience.PARTNER, "Your invoices and their payment links",
            "/invoices"),
    Command("alerts", Audience.PARTNER, "Warn me when the balance falls below DAYS",
            "/alerts DAYS", "/alerts 60"),
    Command("invite", Audience.OWNER, "Invite link for a teammate", "/invite"),
    Command("partners", Audience.SUPPORT, "All partners", "/partners"),
    Command("account", Audience.SUPPORT, "One partner in full; commands then act on it",
            "/account PARTNER (id or exact name)", "/account Acme"),
    Command("newpartner", Audience.SUPPORT, "Create a partner and its owner's invite link",
            "/newpartner NAME", "/newpartner Acme"),
    Command("credit", Audience.SUPPORT, "Grant or remove days, with a reason",
            "/credit PARTNER DAYS REASON (DAYS may be negative)",
            "/credit Acme 30 goodwill for the outage"),
    Command("setprice", Audience.SUPPORT, "Set the agreed monthly price per channel",
            "/setprice PARTNER AMOUNT", "/setprice Acme 12.50"),
    Command("invoice", Audience.SUPPORT, "Issue an invoice now",
            "/invoice PARTNER [CHANNELS]", "/invoice Acme 75"),
)
BY_NAME = {c.name: c for c in COMMANDS}


def usage(name: str) -> str:
    cmd = BY_NAME[name]
    example = f" (e.g. {cmd.example})" if cmd.example else ""
    return f"Usage: {cmd.usage}{example}"


def visible(*, member: bool, owner: bool, support: bool) -> list[Command]:
    """The commands a user may use, in menu order."""
    allowed = {Audience.EVERYONE}
    if member or support:
        allowed.add(Audience.PARTNER)
    if owner or support:
        allowed.add(Audience.OWNER)
    if support:
        allowed.add(Audience.SUPPORT)
    return [c for c in COMMANDS if c.audience in allowed]
