"""Partner commands: balance, channels, days, history, alerts, invites."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import callbacks, views
from bot.args import Usage, parse_days, require, split_last
from bot.callbacks import CancelDelete, ConfirmDelete
from bot.guard import command
from bot.render import date, days, echo, esc
from bot.request import Request


def _partner_id(req: Request) -> int:
    partner_id = req.partner_id()
    assert partner_id is not None  # the guard refuses requests without one
    return partner_id


def _acting(req: Request, name: str) -> str:
    """A footer that reminds support whose account they are changing."""
    return f"\n\n<i>Support, acting on {esc(name)}</i>" if req.support else ""


@command("balance")
async def balance(req: Request) -> None:
    """Balance first, then channels, monthly need, runway and open invoices."""
    s = await req.deps.billing.summary(_partner_id(req))
    await req.reply(views.balance_text(s, req.deps.tz) + _acting(req, s.partner.name))


@command("channels")
async def channels(req: Request) -> None:
    """The partner's live channels, paginated."""
    partner, rows = await req.deps.billing.channel_list(_partner_id(req))
    text, markup = views.channels_page(partner, rows, 0, req.deps.tz)
    await req.reply(text, markup)


@command("newchannel")
async def newchannel(req: Request) -> None:
    """Create a channel."""
    name = require(req.args_text(), "NAME")
    made = await req.deps.billing.create_channel(_partner_id(req), name, req.actor, req.key)
    await req.reply(
        f"Channel <b>{esc(made.name)}</b> created. Give it days: "
        f"/allocate {esc(made.name)} 30"
    )


@command("allocate")
async def allocate(req: Request) -> None:
    """Move days from the balance to a channel."""
    name, count = split_last(require(req.args_text(), "CHANNEL and DAYS"), "DAYS")
    done = await req.deps.billing.allocate_days(
        _partner_id(req), name, parse_days(count), req.actor, req.key
    )
    await req.reply(
        f"Gave {days(done.days)} to <b>{esc(done.channel_name)}</b>.\n"
        f"Balance: {done.balance:,} days\n"
        f"{esc(done.channel_name)} is active until {date(done.active_until, req.deps.tz)}"
    )


@command("delete")
async def delete(req: Request) -> None:
    """Ask to confirm a deletion, showing the days that will come back."""
    name = require(req.args_text(), "CHANNEL")
    partner_id = _partner_id(req)
    channel, back = await req.deps.billing.deletion_preview(partner_id, name)
    yes = callbacks.encode(
        ConfirmDelete(partner_id, channel.id, callbacks.stamp(channel.active_until))
    )
    no = callbacks.encode(CancelDelete(partner_id, channel.id))
    markup = InlineKeyboardMarkup([[
        InlineKeyboardButton("Delete it", callback_data=yes),
        InlineKeyboardButton("Keep it", callback_data=no),
    ]])
    comes_back = (
        f"{days(back)} come back to your balance; the rest counts as used."
        if back else "No days come back: it has no whole unused day left."
    )
    await req.reply(f"Delete channel <b>{esc(channel.name)}</b>?\n{comes_back}", markup)


@command("autorenew")
async def autorenew(req: Request) -> None:
    """Turn auto-renew on or off for one channel."""
    name, switch = split_last(require(req.args_text(), "CHANNEL and on|off"), "on|off")
    if switch.lower() not in ("on", "off"):
        raise Usage(f"“{echo(switch)}” is neither on nor off.")
    on = switch.lower() == "on"
    channel = await req.deps.billing.set_auto_renew(_partner_id(req), name, on, req.actor)
    if on:
        text = (
            f"Auto-renew is on for <b>{esc(channel.name)}</b>: shortly before it expires "
            "I extend it by 30 days from the balance, if the balance covers it."
        )
    else:
        text = f"Auto-renew is off for <b>{esc(channel.name)}</b>."
    await req.reply(text)


@command("history")
async def history(req: Request) -> None:
    """Recent movements of the balance, paginated."""
    text, markup = await views.history_page(req.deps.billing, _partner_id(req), 0, req.deps.tz)
    await req.reply(text, markup)


@command("alerts")
async def alerts(req: Request) -> None:
    """Set the low-balance alert threshold."""
    count = parse_days(require(req.args_text(), "DAYS"))
    partner = await req.deps.billing.set_alert_threshold(_partner_id(req), count, req.actor)
    await req.reply(
        f"Done: I will warn every member when the balance of {esc(partner.name)} "
        f"falls below {days(partner.low_balance_days)}."
    )


@command("invite")
async def invite(req: Request) -> None:
    """A one-time invite link for a teammate."""
    made = await req.deps.billing.create_invite(_partner_id(req), req.actor)
    await req.reply(
        "Send this link to your teammate. It works once, until "
        f"{made.expires_at.astimezone(req.deps.tz):%Y-%m-%d %H:%M}:\n"
        f"{req.deps.invite_link(made.code)}"
    )
