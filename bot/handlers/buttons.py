"""Inline buttons: pages of lists and the delete confirmation."""

from __future__ import annotations

import logging

from telegram import CallbackQuery, InlineKeyboardMarkup, Update
from telegram.error import BadRequest

from bot import callbacks, texts, views
from bot.callbacks import BadCallback, CancelDelete, ConfirmDelete, ListKind, Noop, Page
from bot.deps import Context
from bot.render import days, esc
from bot.request import Request
from core.errors import BillingError, ChannelChanged, ChannelNotFound, StorageError, StoreBusy

log = logging.getLogger(__name__)


async def _edit(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> None:
    try:
        await query.edit_message_text(text, reply_markup=markup)
    except BadRequest as exc:
        # Pressing "page 2" while on page 2 changes nothing; Telegram says so. Fine.
        if "not modified" not in exc.message.lower():
            raise


async def _page(req: Request, query: CallbackQuery, cb: Page) -> None:
    billing, tz = req.deps.billing, req.deps.tz
    if cb.kind is ListKind.PARTNERS:
        if not req.support:
            await query.answer(texts.BUTTON_EXPIRED)
            return
        text, markup = views.partners_page(await billing.list_partners(), cb.page)
    else:
        if not req.may_access(cb.partner_id):
            await query.answer(texts.BUTTON_EXPIRED)
            return
        if cb.kind is ListKind.CHANNELS:
            partner, rows = await billing.channel_list(cb.partner_id)
            text, markup = views.channels_page(partner, rows, cb.page, tz)
        else:
            text, markup = await views.history_page(billing, cb.partner_id, cb.page, tz)
    await _edit(query, text, markup)
    await query.answer()


async def _delete(req: Request, query: CallbackQuery, cb: ConfirmDelete) -> None:
    if not req.may_access(cb.partner_id):
        await query.answer(texts.BUTTON_EXPIRED)
        return
    try:
        done = await req.deps.billing.delete_channel(
            cb.partner_id, cb.channel_id, req.actor,
            # One key per confirmation: a double tap, or the same button pressed again
            # later, repeats the first outcome instead of deleting twice.
            f"delete:{cb.channel_id}:{cb.until_us}",
            expected_until=callbacks.unstamp(cb.until_us), check_expected=True,
        )
    except ChannelChanged as exc:
        await query.answer("The channel changed; nothing was deleted.")
        await _edit(query, texts.explain(exc), None)
        return
    except ChannelNotFound:
        await query.answer("That channel is already gone.")
        await _edit(query, "That channel no longer exists: nothing to delete.", None)
        return
    # A repeated press shows the outcome again: if the first edit was lost (Telegram
    # failing), the message would otherwise keep offering a deletion that is done.
    await _edit(
        query,
        f"Channel <b>{esc(done.channel_name)}</b> deleted. {days(done.returned_days)} "
        f"returned to the balance.\nBalance: {done.balance:,} days",
        None,
    )
    await query.answer("Already deleted; nothing more to do." if done.replayed else "Deleted.")


async def on_button(update: Update, context: Context) -> None:
    """Every inline button press."""
    query = update.callback_query
    assert query is not None
    req = await Request.of(update, context)
    req.deps.on_update("button")
    if not req.private:
        # The bot makes buttons only in private chats; data on a group message is forged
        # (clients choose callback_data) and must not show lists or balances there.
        await query.answer(texts.BUTTON_EXPIRED)
        return
    try:
        cb = callbacks.parse(query.data)
    except BadCallback as exc:
        # An old button, or one a client forged: nothing the operator must act on, but
        # visible when looking for who sends what.
        log.info("refused button data %r: %s", (query.data or "")[:64], exc)
        await query.answer(texts.BUTTON_EXPIRED)
        return
    try:
        match cb:
            case Noop():
                await query.answer()
            case Page():
                await _page(req, query, cb)
            case ConfirmDelete():
                await _delete(req, query, cb)
            case CancelDelete():
                await _edit(query, "Kept the channel: nothing was deleted.", None)
                await query.answer()
    except StorageError as exc:
        if not isinstance(exc, StoreBusy):
            raise  # the error handler logs it once, with the reference it shows
        await query.answer(texts.explain(exc)[:190])
    except BillingError as exc:
        await query.answer(texts.explain(exc)[:190])
    except BadRequest as exc:
        if "query is too old" not in exc.message.lower():
            raise
        # Answered already, or too late: a press handled again after a restart (the
        # update inbox replays it). The work and the message's edit are done; only the
        # small notice on the presser's screen is lost, and that is no error.
        log.info("button press %s answered too late to show a notice", query.id)
