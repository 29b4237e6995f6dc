"""/start and /help, and what the bot says to anything else."""

from __future__ import annotations

import re

from telegram import Update

from bot import texts
from bot.commands import visible
from bot.deps import Context, deps_of
from bot.guard import command, ensure_menu
from bot.limits import Sender
from bot.render import esc
from bot.request import Request

_CODE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def help_text(req: Request) -> str:
    cmds = visible(member=req.member is not None, owner=req.owner, support=req.support)
    lines = [f"/{c.name}: {esc(c.summary)}" for c in cmds]
    head = "Here is what you can do:"
    if req.support:
        head = "You are support staff. Partner commands act on the partner chosen with /account."
    elif req.member is None:
        head = texts.NOT_LINKED + "\n\nMeanwhile:"
    return head + "\n\n" + "\n".join(lines)


@command("start")
async def start(req: Request) -> None:
    """Link with an invite code, or greet and show help."""
    code = req.args_text()
    if not code:
        greeting = "Hello! I run your partner billing: days, channels, payments."
        await req.reply(f"{greeting}\n\n{help_text(req)}")
        return
    if not _CODE.match(code):
        await req.reply("This invite link is not valid. Check it, or ask for a new one.")
        return
    member = await req.deps.billing.redeem_invite(code, req.user_id)
    req.member = member
    if req.deps.flood is not None and not req.support:
        req.deps.flood.learn(req.user_id, Sender.MEMBER)  # a member's allowance from now on
    req.deps.menus_set.discard(req.user_id)
    await ensure_menu(req)
    partner = await req.deps.billing.partner(member.partner_id)
    await req.reply(
        f"Welcome! You are linked to <b>{esc(partner.name)}</b> as {member.role.value}.\n\n"
        + help_text(req)
    )


@command("help")
async def help_(req: Request) -> None:
    """The commands this user may use."""
    await req.reply(help_text(req))


async def unknown(update: Update, context: Context) -> None:
    """A command no handler took."""
    req = await Request.of(update, context)
    req.deps.on_update("unknown")
    await req.reply(texts.UNKNOWN)


async def not_a_command(update: Update, context: Context) -> None:
    """Plain text in a private chat: the same hint for everyone."""
    deps = deps_of(context)
    user = update.effective_user
    assert user is not None
    if deps.flood is not None and deps.flood.known(user.id) is Sender.STRANGER:
        # A stranger already looked up: no database read (the flood gate limits how often).
        req = Request(update, context, deps, user.id, None, support=False)
    else:
        req = await Request.of(update, context)
    deps.on_update("stranger" if req.member is None and not req.support else "text")
    await req.reply(texts.NOT_COMMAND)


async def other(update: Update, context: Context) -> None:
    """Anything no other handler took (chatter in groups, commands for other bots): counted
    so that every update shows in the metrics, and nothing else (no database work)."""
    deps_of(context).on_update("other")
