"""Support commands: look after every partner account."""

from __future__ import annotations

from bot import views
from bot.args import Usage, require, split_last, split_partner_days
from bot.guard import command
from bot.render import amount, date, days, esc
from bot.request import Request
from core import money
from core.errors import InsufficientBalance

ACCOUNT_CHANNELS = 10
ACCOUNT_HISTORY = 8
ACCOUNT_MEMBERS = 20
# UTF-16 units per list in /account; the rest of the message stays under ~1,150.
CHANNELS_BUDGET = 1200
MEMBERS_BUDGET = 500
HISTORY_BUDGET = 900


@command("partners")
async def partners(req: Request) -> None:
    """All partners with balance and channel count, paginated."""
    text, markup = views.partners_page(await req.deps.billing.list_partners(), 0)
    await req.reply(text, markup)


@command("account")
async def account(req: Request) -> None:
    """One partner in full; partner commands then act on it."""
    billing, tz = req.deps.billing, req.deps.tz
    partner = await billing.resolve_partner(require(req.args_text(), "PARTNER"))
    req.choose(partner.id)
    view = await billing.account_view(partner.id, recent=ACCOUNT_HISTORY)
    s, partner = view.summary, view.partner
    lines = [
        f"<b>{esc(partner.name)}</b> (#{partner.id}), "
        f"{amount(partner.monthly_price, partner.currency)} per channel-month, "
        f"billing day {partner.billing_day}",
        views.balance_text(s, tz),
        "",
        f"Channels ({len(s.channels)}):",
    ]
    # One message holds it all: each list gets a share of Telegram's 4096 (UTF-16 units).
    shown = views.first_lines(
        [views.channel_line(v, tz) for v in s.channels], ACCOUNT_CHANNELS, CHANNELS_BUDGET
    )
    lines += shown
    if len(s.channels) > len(shown):
        lines.append(f"… and {len(s.channels) - len(shown)} more: /channels")
    lines += ["", f"Members ({len(s.members)}):"]
    blocked = " (unreachable: blocked the bot)"
    members = views.first_lines(
        [f"• {m.user_id}: {m.role.value}{blocked if m.unreachable else ''}" for m in s.members],
        ACCOUNT_MEMBERS, MEMBERS_BUDGET,
    )
    lines += members or ["• none yet: share an invite link (/invite)"]
    if len(s.members) > len(members):
        lines.append(f"… and {len(s.members) - len(members)} more")
    lines += ["", "Recent ledger:"]
    lines += views.first_lines(
        [views.history_line(t, partner.id, view.channel_names, tz) for t in view.recent],
        ACCOUNT_HISTORY, HISTORY_BUDGET,
    ) or ["• nothing yet"]
    lines += ["", "Invoices and orders:"]
    lines += [
        f"• #{o.id} {o.kind.value} {days(o.days)} {amount(o.amount, o.currency)} "
        f"{o.status.value} ({date(o.created_at, tz)})"
        for o in view.orders[:5]
    ] or ["• none"]
    lines += ["", f"<i>Partner commands now act on {esc(partner.name)}.</i>"]
    await req.reply("\n".join(lines))


@command("newpartner")
async def newpartner(req: Request) -> None:
    """Create a partner and its owner's invite link."""
    made = await req.deps.billing.create_partner(require(req.args_text(), "NAME"), req.actor)
    p = made.partner
    await req.reply(
        f"Partner <b>{esc(p.name)}</b> (#{p.id}) created at "
        f"{amount(p.monthly_price, p.currency)} per channel-month.\n"
        f"Send this link to its owner. It works once, until "
        f"{made.invite_expires_at.astimezone(req.deps.tz):%Y-%m-%d %H:%M}:\n"
        f"{req.deps.invite_link(made.invite_code)}"
    )


@command("credit")
async def credit(req: Request) -> None:
    """Grant (DAYS > 0) or remove (DAYS < 0) days, with a reason."""
    ref, count, reason = split_partner_days(require(req.args_text(), "PARTNER, DAYS and REASON"))
    if not reason:
        raise Usage("REASON is required.")
    billing = req.deps.billing
    partner = await billing.resolve_partner(ref)
    try:
        done = await billing.grant_days(partner.id, count, reason, req.actor, req.key)
    except InsufficientBalance as exc:
        await req.reply(
            f"<b>{esc(partner.name)}</b> has {days(exc.available)}: removing "
            f"{days(exc.needed)} would overdraw it. Nothing changed."
        )
        return
    verb = "Granted" if done.days > 0 else "Removed"
    await req.reply(
        f"{verb} {days(abs(done.days))} {'to' if done.days > 0 else 'from'} "
        f"<b>{esc(partner.name)}</b> ({esc(done.reason)}).\nBalance: {done.balance:,} days"
    )


@command("setprice")
async def setprice(req: Request) -> None:
    """Set the agreed monthly price per channel, in the partner's currency."""
    ref, text = split_last(require(req.args_text(), "PARTNER and AMOUNT"), "AMOUNT")
    billing = req.deps.billing
    partner = await billing.resolve_partner(ref)
    price = money.parse_amount(text, partner.currency)
    updated = await billing.set_price(partner.id, price, req.actor)
    await req.reply(
        f"<b>{esc(updated.name)}</b> now pays "
        f"{amount(updated.monthly_price, updated.currency)} per channel-month "
        f"(was {amount(partner.monthly_price, partner.currency)})."
    )
