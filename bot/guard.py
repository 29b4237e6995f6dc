"""Wraps each command handler with the access rules and the translation of refusals."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from telegram import Update

from bot import menus, texts
from bot.args import Usage
from bot.commands import BY_NAME, Audience, usage
from bot.deps import Context
from bot.request import Request
from core.errors import BillingError, StorageError, StoreBusy

log = logging.getLogger("bot.commands")
Handler = Callable[[Request], Awaitable[None]]
Callback = Callable[[Update, Context], Coroutine[Any, Any, None]]


async def ensure_menu(req: Request) -> None:
    """Give a member or support agent their menu the first time they write (per run)."""
    if not req.private or req.user_id in req.deps.menus_set:
        return
    if req.member is None and not req.support:
        return  # the default menu (/start, /help) already fits
    if await menus.set_user_menu(
        req.context.bot, req.user_id, member=req.member is not None,
        owner=req.owner, support=req.support,
    ):
        req.deps.menus_set.add(req.user_id)


async def refusal(req: Request, audience: Audience) -> str | None:
    """The answer when this user may not run the command here, else None."""
    if audience is Audience.SUPPORT and not req.support:
        return texts.UNKNOWN  # support commands are invisible to others
    if not req.private:
        return texts.PRIVATE_ONLY
    if audience in (Audience.PARTNER, Audience.OWNER) and req.partner_id() is None:
        return texts.CHOOSE_PARTNER if req.support else texts.NOT_LINKED
    if audience is Audience.OWNER and not (req.owner or req.support):
        return texts.OWNER_ONLY
    return None


def command(name: str) -> Callable[[Handler], Callback]:
    audience = BY_NAME[name].audience

    def wrap(handler: Handler) -> Callback:
        async def callback(update: Update, context: Context) -> None:
            req = await Request.of(update, context)
            req.deps.on_update(name)
            log.info(
                "/%s", name,
                extra={"update_id": update.update_id, "user_id": req.user_id,
                       "partner_id": req.partner_id()},
            )
            await ensure_menu(req)
            refused = await refusal(req, audience)
            if refused is not None:
                await req.reply(refused)
                return
            try:
                await handler(req)
            except Usage as exc:
                await req.reply(f"{exc.reason} {usage(name)}".strip())
            except StoreBusy as exc:
                await req.reply(texts.explain(exc, hint=usage(name)))
            except StorageError:
                raise  # not a refusal: the error handler logs it once, with its reference
            except BillingError as exc:
                await req.reply(texts.explain(exc, hint=usage(name)))

        callback.__doc__ = handler.__doc__
        callback.__name__ = f"cmd_{name}"
        return callback

    return wrap
