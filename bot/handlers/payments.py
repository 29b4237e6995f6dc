"""Payment commands: /topup, /subscribe, /invoices and support's /invoice."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import texts
from bot.args import Usage, parse_days, require, split_last
from bot.guard import command
from bot.render import amount, date, days, echo, esc
from bot.request import Request
from core import money
from core.errors import PaymentUnavailable, SubscriptionExists
from core.model import OrderKind, OrderStatus, PaymentOrder
from core.payments import PaymentService

STRIPE_DOWN = (
    "Stripe is not answering right now, so I could not make a payment link. "
    "Nothing was charged; please try again in a few minutes."
)
INTERVALS = {"monthly": "month", "annual": "year", "yearly": "year"}


def _service(req: Request) -> PaymentService | None:
    return req.deps.payments


def pay_button(order: PaymentOrder) -> InlineKeyboardMarkup | None:
    if order.url is None or order.status is not OrderStatus.OPEN:
        return None
    label = f"Pay {amount(order.amount, order.currency)}"
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, url=order.url)]])


def _partner_id(req: Request) -> int:
    partner_id = req.partner_id()
    assert partner_id is not None
    return partner_id


async def quote_topup(req: Request, service: PaymentService, count: int) -> None:
    try:
        order = await service.start_topup(_partner_id(req), count, req.actor)
    except PaymentUnavailable:
        await req.reply(STRIPE_DOWN)
        return
    await req.reply(
        f"{days(order.days)} for {amount(order.amount, order.currency)}.\n"
        "Pay with the button; the days arrive as soon as Stripe confirms the payment.",
        pay_button(order),
    )


@command("topup")
async def topup(req: Request) -> None:
    """Quote days and give the Stripe payment link; without DAYS, suggest amounts."""
    service = _service(req)
    if service is None:
        await req.reply(texts.PAYMENTS_OFF)
        return
    text = req.args_text()
    if text:
        await quote_topup(req, service, parse_days(text))
        return
    summary = await req.deps.billing.summary(_partner_id(req))
    p = summary.partner
    least = money.minimum_days(p.monthly_price, p.currency)
    options = sorted({max(summary.monthly_need, least), max(90, least), max(365, least)})
    lines = [
        f"/topup {n}: {days(n)} for {amount(money.amount_for_days(n, p.monthly_price), p.currency)}"
        + (" (a month of all your channels)" if n == summary.monthly_need else "")
        for n in options
    ]
    await req.reply(
        f"Balance: {summary.balance:,} days. How many days would you like to buy?\n"
        + "\n".join(lines)
        + f"\nAt {amount(p.monthly_price, p.currency)} per channel-month; "
        f"at least {days(least)}."
    )


@command("subscribe")
async def subscribe(req: Request) -> None:
    """A Stripe subscription paying one channel, monthly or annual."""
    service = _service(req)
    if service is None:
        await req.reply(texts.PAYMENTS_OFF)
        return
    name, period = split_last(require(req.args_text(), "CHANNEL and monthly|annual"), "PERIOD")
    interval = INTERVALS.get(period.lower())
    if interval is None:
        raise Usage(f"“{echo(period)}” is neither monthly nor annual.")
    try:
        order = await service.start_subscription(_partner_id(req), name, interval, req.actor)
    except PaymentUnavailable:
        await req.reply(STRIPE_DOWN)
        return
    except SubscriptionExists as exc:
        button = (
            InlineKeyboardMarkup([[InlineKeyboardButton("Pay it", url=exc.url)]])
            if exc.pending and exc.url else None
        )
        await req.reply(texts.subscription_exists(exc, req.deps.tz), button)
        return
    each = "month" if interval == "month" else "year"
    await req.reply(
        f"Subscription for <b>{esc(name)}</b>: {amount(order.amount, order.currency)} "
        f"a {each}; each paid {each} adds {days(order.days)} to the channel, "
        "without touching your balance.",
        pay_button(order),
    )


def invoice_line(order: PaymentOrder, req: Request) -> str:
    period = order.period or f"on request {date(order.created_at, req.deps.tz)}"
    status = {
        OrderStatus.OPEN: "open" if order.url else "open, link pending",
        OrderStatus.PAID: f"paid {date(order.paid_at, req.deps.tz)}",
    }.get(order.status, order.status.value)
    return (
        f"#{order.id} {esc(period)}: {order.channels or 0} channels, {days(order.days)}, "
        f"{amount(order.amount, order.currency)}: {status}"
    )


@command("invoices")
async def invoices(req: Request) -> None:
    """Invoices with status, and pay buttons for the open ones."""
    orders = await req.deps.billing.orders(_partner_id(req))
    mine = [o for o in orders if o.kind is OrderKind.INVOICE][:20]
    if not mine:
        await req.reply("No invoices yet. Invoices come monthly, sized by your channels.")
        return
    buttons = [
        [InlineKeyboardButton(f"Pay #{o.id}: {amount(o.amount, o.currency)}", url=o.url)]
        for o in mine
        if o.status is OrderStatus.OPEN and o.url
    ][:10]
    await req.reply(
        "Invoices (newest first):\n" + "\n".join(invoice_line(o, req) for o in mine),
        InlineKeyboardMarkup(buttons) if buttons else None,
    )


@command("invoice")
async def invoice(req: Request) -> None:
    """Support: issue an invoice now, for the live channels or CHANNELS of them."""
    service = _service(req)
    if service is None:
        await req.reply(texts.PAYMENTS_OFF)
        return
    text = require(req.args_text(), "PARTNER")
    ref, last = text, ""
    if " " in text:
        head, last = split_last(text, "CHANNELS")
        if last.isdigit():
            ref = head
        else:
            last = ""
    partner = await req.deps.billing.resolve_partner(ref)
    count = parse_days(last) if last else None
    try:
        order = await service.issue_invoice(partner.id, req.actor, channel_count=count)
    except PaymentUnavailable:
        await req.reply(
            "Invoice recorded, but Stripe did not answer, so it has no payment link yet. "
            "The invoices job retries; the partner is told."
        )
        return
    await req.reply(
        f"Invoice #{order.id} for <b>{esc(partner.name)}</b>: {order.channels} channels × 30 = "
        f"{days(order.days)}, {amount(order.amount, order.currency)}. Its members are told.",
        pay_button(order),
    )
