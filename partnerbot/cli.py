"""The `partnerbot` command line.

Exit status: 0 done, 1 refused or the ledger is broken, 2 bad usage or configuration.
Every error is one line on stderr; secrets never appear in output.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from core import money
from core.errors import BillingError
from core.model import partner_account
from core.names import clean_partner_name
from core.service import BillingService
from partnerbot import logs
from partnerbot.config import ConfigError, Settings, load_settings
from partnerbot.jobs import JOBS, JobFailed, run_job
from partnerbot.webhook_cli import WebhookCliError, add_parser, run_webhook_command
from partnerbot.wiring import Services, open_services, secrets_of

Handler = Callable[[argparse.Namespace, Services], Awaitable[int]]


class CliError(Exception):
    """A refusal to print as one line (exit 1)."""


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def invite_link(settings: Settings, code: str) -> str:
    username = settings.telegram.bot_username
    return f"https://t.me/{username}?start={code}" if username else f"/start {code}"


# partner ---------------------------------------------------------------------------


def check_partner_add(args: argparse.Namespace, settings: Settings) -> None:
    """Refuse bad input before the database is opened (or created)."""
    args.currency = money.check_currency(args.currency or settings.billing.currency)
    args.price = None if args.price is None else money.parse_amount(args.price, args.currency)
    args.name = clean_partner_name(args.name)


async def partner_add(args: argparse.Namespace, svc: Services) -> int:
    created = await svc.billing.create_partner(
        args.name, "cli:operator", monthly_price=args.price, currency=args.currency
    )
    p = created.partner
    out(f"partner {p.id} created: {p.name}, {money.format_amount(p.monthly_price, p.currency)}"
        " per channel-month")
    out(f"id: {p.id}")
    out(f"invite code: {created.invite_code}")
    out(f"invite link: {invite_link(svc.settings, created.invite_code)}")
    out(f"the code works once, until {created.invite_expires_at:%Y-%m-%d %H:%M} UTC")
    return 0


async def partner_list(args: argparse.Namespace, svc: Services) -> int:
    rows = await svc.billing.list_partners()
    if not rows:
        out("no partners yet: partnerbot partner add NAME")
        return 0
    out(f"{'id':>5}  {'name':<32} {'price/month':>16} {'balance':>12} {'channels':>8}")
    for p, balance, channels in rows:
        price = money.format_amount(p.monthly_price, p.currency)
        out(f"{p.id:>5}  {p.name:<32} {price:>16} {balance:>7,} days {channels:>8}")
    return 0


async def partner_show(args: argparse.Namespace, svc: Services) -> int:
    billing: BillingService = svc.billing
    found = await billing.resolve_partner(args.partner)
    view = await billing.account_view(found.id, recent=10)
    s, partner = view.summary, view.partner
    runway = "-" if s.runway is None else f"{s.runway:%Y-%m-%d}"
    out(f"partner {partner.id}: {partner.name}")
    out(f"balance: {s.balance:,} days")
    out(f"price: {money.format_amount(partner.monthly_price, partner.currency)} per channel-month")
    out(f"alert below: {partner.low_balance_days:,} days; billing day: {partner.billing_day}")
    out(f"channels: {len(s.channels)} ({s.running} running); monthly need: "
        f"{s.monthly_need:,} days; runway until: {runway}")
    for v in s.channels:
        until = "never active" if v.channel.active_until is None else (
            f"until {v.channel.active_until:%Y-%m-%d}")
        renew = " auto-renew" if v.channel.auto_renew else ""
        out(f"  - {v.channel.name}: {until}, {v.days_left} days left{renew}")
    out(f"members: {len(s.members)}")
    for m in s.members:
        reach = " (unreachable)" if m.unreachable else ""
        out(f"  - telegram user {m.user_id}: {m.role.value}{reach}")
    out("recent ledger:")
    for t in view.recent:
        sign = "+" if t.credit == partner_account(partner.id) else "-"
        out(f"  #{t.id} {t.created_at:%Y-%m-%d %H:%M} {sign}{t.days:,} days {t.kind.value}"
            f" by {t.actor}{(': ' + t.reason) if t.reason else ''}")
    out(f"orders: {len(view.orders)}")
    for o in view.orders[:10]:
        out(f"  #{o.id} {o.kind.value} {o.days:,} days "
            f"{money.format_amount(o.amount, o.currency)} {o.status.value}")
    return 0


# ledger, db, run -------------------------------------------------------------------


async def ledger_verify(args: argparse.Namespace, svc: Services) -> int:
    # The ledger's rows can read as consistent from a file whose other pages (indexes,
    # free lists) are damaged: check the file itself first.
    damage = await svc.store.integrity_check()
    if damage:
        out(f"database corrupt: PRAGMA integrity_check found {len(damage)} problem(s)")
        for line in damage:
            out(f"  {line}")
        return 1
    report = await svc.billing.verify(chain_key=svc.settings.ledger.chain_key_bytes)
    if report.ok:
        out(report.summary())
        return 0
    out(report.summary())
    for violation in report.violations:
        out(f"  {violation}")
    return 1


async def db_backup(args: argparse.Namespace, svc: Services) -> int:
    target = await svc.store.backup(Path(args.path))
    out(f"backup written: {target}")
    return 0


async def db_copy(args: argparse.Namespace, svc: Services) -> int:
    """`partnerbot db copy URL` (partnerbot/dbcopy.py): the source was just opened (and so
    migrated to the current schema) as `svc`; the copy reads the file itself."""
    from partnerbot.dbcopy import CopyRefused, copy_to_postgres

    if svc.settings.database.url is not None:
        raise CliError("db copy: database.url is set; it copies the SQLite database at "
                       "database.path into the URL given: unset database.url for the copy")
    try:
        done, report = await copy_to_postgres(svc.settings, args.url)
    except CopyRefused as exc:
        raise CliError(f"db copy: {exc}") from None
    for table in done.tables:
        out(f"{table.name}: {table.rows} rows")
    out(f"copied {done.rows} rows in {len(done.tables)} tables into {done.target}; "
        f"{done.balances} balances equal to the source's")
    out(report.summary())
    if not report.ok:
        for violation in report.violations:
            out(f"  {violation}")
        return 1
    out("verified")
    return 0


async def jobs_run(args: argparse.Namespace, svc: Services) -> int:
    try:
        out(await run_job(args.job, svc, args.period, by_hand=True))
    except JobFailed as exc:
        out(str(exc))
        return 1
    return 0


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """`partnerbot run`: unlike the other commands, it opens its own services (they learn
    the bot's username from the running bot)."""
    from partnerbot.runner import StartupError, serve

    try:
        await serve(settings)
    except StartupError as exc:
        sys.stderr.write(f"partnerbot: {exc}\n")
        return 2
    return 0


# parsing ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS,
        help="TOML configuration file (default: $PARTNERBOT_CONFIG or ./config.toml)",
    )
    parser = argparse.ArgumentParser(
        prog="partnerbot", parents=[common],
        description="Partner billing bot: days ledger, payments and scheduler.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", parents=[common], help="run the bot until stopped")
    p.set_defaults(handler=run)

    partner = sub.add_parser("partner", parents=[common], help="partner accounts")
    psub = partner.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = psub.add_parser("add", parents=[common], help="create a partner and its invite code")
    p.add_argument("name", help="partner name (1-64 characters)")
    p.add_argument("--price", help="agreed monthly price per channel, e.g. 10.00")
    p.add_argument("--currency", help="ISO currency, e.g. usd (default: billing.currency)")
    p.set_defaults(handler=partner_add)
    p = psub.add_parser("list", parents=[common], help="all partners")
    p.set_defaults(handler=partner_list)
    p = psub.add_parser("show", parents=[common], help="one partner in full")
    p.add_argument("partner", help="partner id or exact name")
    p.set_defaults(handler=partner_show)

    ledger = sub.add_parser("ledger", parents=[common], help="the days ledger")
    lsub = ledger.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = lsub.add_parser("verify", parents=[common], help="check every ledger invariant")
    p.set_defaults(handler=ledger_verify)

    jobs = sub.add_parser("jobs", parents=[common], help="scheduled jobs")
    jsub = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = jsub.add_parser("run", parents=[common], help="run one scheduled job now")
    p.add_argument("job", choices=JOBS, help="the job to run")
    p.add_argument("--period", help="month to invoice, YYYY-MM (invoices only)")
    p.set_defaults(handler=jobs_run)

    db = sub.add_parser("db", parents=[common], help="the database")
    dsub = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = dsub.add_parser("backup", parents=[common], help="consistent online copy")
    p.add_argument("path", help="file to write (must not exist)")
    p.set_defaults(handler=db_backup)
    p = dsub.add_parser(
        "copy", parents=[common],
        help="copy the SQLite database into an empty PostgreSQL database, then verify it",
    )
    p.add_argument("url", help="postgresql://user:password@host:port/database (empty)")
    p.set_defaults(handler=db_copy)

    add_parser(sub, common)  # webhook set|info|delete (partnerbot/webhook_cli.py)
    return parser


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.handler is run:
        settings.require("telegram.token")  # before touching the database
        if settings.telegram.mode == "webhook":
            settings.require("telegram.webhook_secret")
        status: int = await run(args, settings)
        return status
    if args.handler is run_webhook_command:  # webhook set|info|delete: no database
        answered: int = await run_webhook_command(args, settings)
        return answered
    handler: Handler = args.handler
    if handler is partner_add:
        check_partner_add(args, settings)
    # Checking or copying a ledger never starts its keyed chain first.
    services = await open_services(settings, writes=handler not in (ledger_verify, db_copy))
    try:
        return await handler(args, services)
    finally:
        await services.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(getattr(args, "config", None))
    except ConfigError as exc:
        sys.stderr.write(f"partnerbot: {exc}\n")
        return 2
    # Only `run` logs its course; other commands print their answer and log problems only.
    level = settings.logging.level if args.handler is run else "WARNING"
    redactor = logs.setup(level, settings.logging.format, secrets_of(settings))
    try:
        return asyncio.run(_dispatch(args, settings))
    except ConfigError as exc:
        sys.stderr.write(f"partnerbot: {exc}\n")
        return 2
    except (BillingError, CliError, WebhookCliError) as exc:
        sys.stderr.write(f"partnerbot: {redactor.scrub(str(exc))}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`partnerbot partner list | head`): the work is done; point
        # stdout at nothing so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
