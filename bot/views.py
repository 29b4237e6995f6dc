"""Renderings shared by commands and buttons: a text and its inline keyboard."""

from __future__ import annotations

from datetime import tzinfo

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import callbacks
from bot.callbacks import ListKind, Page
from bot.render import PAGE_BUDGET, amount, date, days, esc, paginate
from core.model import Partner, Transfer, channel_of, partner_account
from core.queries import AccountSummary, ChannelView
from core.service import BillingService

View = tuple[str, InlineKeyboardMarkup | None]
PER_PAGE = 20
HISTORY_PAGE = 15


def first_lines(lines: list[str], most: int, budget: int = PAGE_BUDGET) -> list[str]:
    """The leading lines (at most `most`) that fit in `budget` UTF-16 units."""
    return paginate(lines, per_page=most, budget=budget)[0].split("\n") if lines else []


def pager(kind: ListKind, partner_id: int, page: int, pages: int) -> InlineKeyboardMarkup | None:
    if pages <= 1:
        return None
    row = []
    if page > 0:
        data = callbacks.encode(Page(kind, partner_id, page - 1))
        row.append(InlineKeyboardButton("‹ Prev", callback_data=data))
    noop = callbacks.encode(callbacks.Noop())
    row.append(InlineKeyboardButton(f"{page + 1}/{pages}", callback_data=noop))
    if page + 1 < pages:
        data = callbacks.encode(Page(kind, partner_id, page + 1))
        row.append(InlineKeyboardButton("Next ›", callback_data=data))
    return InlineKeyboardMarkup([row])


def channel_line(v: ChannelView, tz: tzinfo) -> str:
    c = v.channel
    name = f"<b>{esc(c.name)}</b>"
    renew = ", auto-renew" if c.auto_renew else ""
    sub = ", Stripe subscription" if c.billing.value == "subscription" else ""
    if c.active_until is None:
        return f"• {name}: never active{renew}{sub}"
    if not v.running:
        return f"• {name}: expired {date(c.active_until, tz)}{renew}{sub}"
    return (
        f"• {name}: active until {date(c.active_until, tz)}, "
        f"{days(v.days_left)} left{renew}{sub}"
    )


def channels_page(
    partner: Partner, views: list[ChannelView], page: int, tz: tzinfo
) -> View:
    if not views:
        return (
            f"{esc(partner.name)} has no channels yet. Create one: /newchannel NAME",
            None,
        )
    pages = paginate([channel_line(v, tz) for v in views], per_page=PER_PAGE)
    page = min(max(page, 0), len(pages) - 1)
    running = sum(1 for v in views if v.running)
    head = f"Channels of {esc(partner.name)}: {len(views)} ({running} running)"
    if len(pages) > 1:
        head += f", page {page + 1} of {len(pages)}"
    return f"{head}\n\n{pages[page]}", pager(ListKind.CHANNELS, partner.id, page, len(pages))


def balance_text(s: AccountSummary, tz: tzinfo) -> str:
    p = s.partner
    lines = [
        f"Balance: {s.balance:,} days",
        f"Channels: {len(s.channels)} ({s.running} running)",
        f"Monthly need: {days(s.monthly_need)} ({len(s.channels)} channels × 30)",
    ]
    if s.runway is None:
        lines.append("Runway: no running channels draw on the balance")
    else:
        lines.append(f"Runway: the balance keeps running channels going until {date(s.runway, tz)}")
    if s.open_invoices:
        total = sum(o.amount for o in s.open_invoices)
        lines.append(
            f"Open invoices: {len(s.open_invoices)} ({amount(total, p.currency)}): /invoices"
        )
    else:
        lines.append("Open invoices: none")
    lines.append(f"Low-balance alert below {days(p.low_balance_days)}")
    return "\n".join(lines)


KIND_LABEL = {
    "purchase": "bought",
    "refund": "refunded",
    "grant": "granted by support",
    "removal": "removed by support",
    "allocation": "given to",
    "renewal": "auto-renewed",
    "return": "returned from",
    "consumption": "used by",
    "subscription": "subscription period of",
}


def history_line(t: Transfer, partner_id: int, names: dict[int, str], tz: tzinfo) -> str:
    incoming = t.credit == partner_account(partner_id)
    other = t.debit if incoming else t.credit
    kind = t.kind.value  # read once: an enum's value is a property, not a plain attribute
    label = KIND_LABEL.get(kind, kind)
    channel_id = channel_of(other)
    if channel_id is not None:
        label += f" {esc(names.get(channel_id, other))}"
    sign = "+" if incoming else "−"
    reason = f" ({esc(t.reason)})" if t.reason and kind in ("grant", "removal") else ""
    return f"{date(t.created_at, tz)} {sign}{days(t.days)} {label}{reason}"


async def history_page(
    billing: BillingService, partner_id: int, before_id: int, tz: tzinfo
) -> View:
    before = before_id or None
    partner, rows, names = await billing.history_view(
        partner_id, limit=HISTORY_PAGE + 1, before_id=before
    )
    more = len(rows) > HISTORY_PAGE
    rows = rows[:HISTORY_PAGE]
    if not rows:
        return f"No movements on the balance of {esc(partner.name)} yet.", None
    # Reasons may be 200 emoji long: keep only the entries that fit one message.
    shown = first_lines([history_line(t, partner.id, names, tz) for t in rows], HISTORY_PAGE)
    more = more or len(shown) < len(rows)
    rows = rows[: len(shown)]
    body = "\n".join(shown)
    head = f"History of {esc(partner.name)}" + (" (older)" if before_id else " (newest first)")
    buttons = []
    if before_id:
        data = callbacks.encode(Page(ListKind.HISTORY, partner.id, 0))
        buttons.append(InlineKeyboardButton("« Newest", callback_data=data))
    if more:
        data = callbacks.encode(Page(ListKind.HISTORY, partner.id, rows[-1].id))
        buttons.append(InlineKeyboardButton("Older ›", callback_data=data))
    return f"{head}\n\n{body}", InlineKeyboardMarkup([buttons]) if buttons else None


def partners_page(rows: list[tuple[Partner, int, int]], page: int) -> View:
    if not rows:
        return "No partners yet. Create one: /newpartner NAME", None
    lines = [
        f"#{p.id} <b>{esc(p.name)}</b>: {days(balance)}, {channels} channels, "
        f"{amount(p.monthly_price, p.currency)}/channel-month"
        for p, balance, channels in rows
    ]
    pages = paginate(lines, per_page=PER_PAGE)
    page = min(max(page, 0), len(pages) - 1)
    head = f"Partners: {len(rows)}"
    if len(pages) > 1:
        head += f", page {page + 1} of {len(pages)}"
    return f"{head}\n\n{pages[page]}", pager(ListKind.PARTNERS, 0, page, len(pages))
