"""The ledger invariants of PRODUCT.md, checked over a snapshot of the whole store.

`partnerbot ledger verify` prints the summary when they hold and every violation (with
the table and row it concerns) when they do not.
"""

from __future__ import annotations

import hmac
import json
from collections import defaultdict
from dataclasses import dataclass, field

from core.ledger import GENESIS, chain_start_seal, transfer_digest
from core.model import (
    ChainStart,
    OrderKind,
    OrderStatus,
    TransferKind,
    channel_account,
    partner_account,
    partner_of,
)
from core.ports import LedgerSnapshot


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    row: str  # e.g. "transfers.id=42" or "accounts.code=partner:3"
    detail: str

    def __str__(self) -> str:
        return f"{self.row}: {self.rule}: {self.detail}"


@dataclass(slots=True)
class VerifyReport:
    transfers: int = 0
    accounts: int = 0
    partners: int = 0
    on_balances: int = 0  # days on partner balances
    on_channels: int = 0  # days held by live channels
    keyed_from: int | None = None  # transfers from this id on are sealed with the key
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        state = "ok" if self.ok else f"BROKEN ({len(self.violations)} violations)"
        keyed = (
            "" if self.keyed_from is None
            else f"; chain keyed from transfers.id={self.keyed_from}"
        )
        return (
            f"ledger {state}: {self.transfers} transfers, {self.accounts} accounts, "
            f"{self.partners} partners; {self.on_balances:,} days on partner balances, "
            f"{self.on_channels:,} days on live channels; accounts sum to zero{keyed}"
            if self.ok
            else f"ledger {state}: {self.transfers} transfers checked"
        )


def verify(snapshot: LedgerSnapshot, chain_key: bytes | None = None) -> VerifyReport:
    """`chain_key`: ledger.chain_key as configured (None: not set)."""
    report = VerifyReport()
    stored = snapshot.account_balances()
    sealing = _sealing(snapshot.chain_start(), chain_key, report)
    walk = _walk_transfers(snapshot, stored, report, sealing)
    if sealing.start is None and chain_key is not None and report.transfers:
        report.violations.append(Violation(
            "chain key", "ledger_chain",
            "ledger.chain_key is set but no transfer is sealed with it: if the key was "
            "only just configured, the keyed chain starts when the bot (or any other "
            "command) next opens the database; if not, the record of where it starts was "
            "removed by hand (restore the last backup that verifies)",
        ))
    _check_balances(stored, walk.derived, report)
    partners = snapshot.partners()
    report.partners = len(partners)
    report.on_balances = sum(walk.derived.get(partner_account(p.id), 0) for p in partners)
    _check_orders(snapshot, walk, report)
    _check_channels(snapshot, walk.derived, report)
    _check_outcomes(snapshot, walk, report)
    return report


@dataclass(frozen=True, slots=True)
class _Sealing:
    """How each transfer's digest is checked: plain before `start`, with `key` from it
    on; `checkable` False when the keyed rows cannot be checked (no key, wrong key)."""

    start: int | None
    key: bytes | None
    checkable: bool


def _sealing(
    start: ChainStart | None, chain_key: bytes | None, report: VerifyReport
) -> _Sealing:
    if start is None:
        return _Sealing(None, None, True)
    where = f"transfers.id={start.keyed_from}"
    if chain_key is None:
        report.violations.append(Violation(
            "chain key", "ledger_chain",
            f"transfers from {where} on are sealed with a key, but ledger.chain_key is not "
            "configured: they cannot be checked (set ledger.chain_key and verify again)",
        ))
        return _Sealing(start.keyed_from, None, False)
    if not hmac.compare_digest(start.seal, chain_start_seal(chain_key, start.keyed_from)):
        report.violations.append(Violation(
            "chain key", "ledger_chain",
            f"ledger.chain_key is not the key this ledger is chained with from {where} "
            "(or that record was edited by hand): the keyed rows cannot be checked",
        ))
        return _Sealing(start.keyed_from, None, False)
    report.keyed_from = start.keyed_from
    return _Sealing(start.keyed_from, chain_key, True)


@dataclass(slots=True)
class _Walk:
    derived: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    purchases: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    refunds: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    ids: dict[int, str] = field(default_factory=dict)  # transfer id -> key


def _walk_transfers(
    snapshot: LedgerSnapshot, stored: dict[str, int], report: VerifyReport, sealing: _Sealing
) -> _Walk:
    """One pass in id order: the chain, the shape of each row, and derived balances."""
    bad, walk = report.violations, _Walk()
    keys: set[str] = set()
    previous, last_id = GENESIS, 0
    for t in snapshot.transfers():
        report.transfers += 1
        row = f"transfers.id={t.id}"
        if t.id <= last_id:
            bad.append(Violation("order", row, f"id not after {last_id}"))
        # Ids are consecutive by construction (each is the last id + 1): a gap is a row
        # removed by hand, and naming it is more useful than naming the next row.
        bad.extend(
            Violation("chain", f"transfers.id={gap}", "missing: the row was removed")
            for gap in range(last_id + 1, t.id)
        )
        last_id = t.id
        walk.ids[t.id] = t.key
        keyed = sealing.start is not None and t.id >= sealing.start
        if keyed and not sealing.checkable:
            pass  # reported once above, not as every keyed row "edited by hand"
        elif transfer_digest(previous, t.id, t, sealing.key if keyed else None) != t.digest:
            bad.append(Violation(
                "chain", row,
                "digest does not match this row and the one before it "
                "(the row, or one before it, was edited, removed or inserted by hand)",
            ))
        previous = t.digest
        if t.key in keys:
            bad.append(Violation("idempotency", row, f"key {t.key!r} used twice"))
        keys.add(t.key)
        if t.days <= 0 or t.debit == t.credit:
            bad.append(Violation("double entry", row, f"moves {t.days} days {t.debit}->{t.credit}"))
        bad.extend(
            Violation("double entry", row, f"unknown account {account}")
            for account in (t.debit, t.credit)
            if account not in stored
        )
        walk.derived[t.debit] -= t.days
        walk.derived[t.credit] += t.days
        # Replaying in order shows any moment a partner went below zero: only a refund
        # may do that (rule 11).
        if (
            walk.derived[t.debit] < 0
            and partner_of(t.debit) is not None
            and t.kind is not TransferKind.REFUND
        ):
            bad.append(Violation(
                "no overdraft", row,
                f"{t.kind.value} left {t.debit} at {walk.derived[t.debit]} days",
            ))
        if t.kind is TransferKind.PURCHASE and t.order_id is not None:
            walk.purchases[t.order_id].append(t.days)
        if t.kind is TransferKind.REFUND and t.order_id is not None:
            walk.refunds[t.order_id] += t.days
    return walk


def _check_balances(stored: dict[str, int], derived: dict[str, int], report: VerifyReport) -> None:
    report.accounts = len(stored)
    for account in sorted(set(stored) | set(derived)):
        have, want = stored.get(account, 0), derived.get(account, 0)
        if have != want:
            report.violations.append(Violation(
                "derived balance", f"accounts.code={account}",
                f"stored balance {have}, transfers sum to {want}",
            ))
    if sum(stored.values()) != 0:
        report.violations.append(Violation(
            "zero sum", "accounts", f"stored balances sum to {sum(stored.values())}"
        ))


def _check_orders(snapshot: LedgerSnapshot, walk: _Walk, report: VerifyReport) -> None:
    for order in snapshot.orders():
        row = f"orders.id={order.id}"
        credited = walk.purchases.get(order.id, [])
        paid = order.status is OrderStatus.PAID and order.kind is not OrderKind.SUBSCRIPTION
        if paid and credited != [order.days]:
            report.violations.append(Violation(
                "credited once", row, f"paid order of {order.days} days credited {credited}"
            ))
        if not paid and credited:
            report.violations.append(Violation(
                "credited once", row, f"{order.status.value} order was credited {credited}"
            ))
        refunded = walk.refunds.get(order.id, 0)
        if refunded != order.refunded_days:
            report.violations.append(Violation(
                "refunds", row,
                f"records {order.refunded_days} days refunded, transfers say {refunded}",
            ))


def _check_channels(
    snapshot: LedgerSnapshot, derived: dict[str, int], report: VerifyReport
) -> None:
    for channel in snapshot.channels():
        held = derived.get(channel_account(channel.id), 0)
        row = f"channels.id={channel.id}"
        if channel.live:
            report.on_channels += held
            if held < 0:
                report.violations.append(Violation("channel", row, f"holds {held} days"))
        elif held != 0:
            report.violations.append(
                Violation("channel", row, f"deleted but still holds {held} days")
            )


def _check_outcomes(snapshot: LedgerSnapshot, walk: _Walk, report: VerifyReport) -> None:
    """Every stored outcome that names a transfer still finds it, under its own key.

    This anchors the end of the chain: removing the newest transfers (and fixing the
    cached balances to match) leaves outcomes that point at nothing.
    """
    for key, _kind, payload in snapshot.outcomes():
        transfer_id = json.loads(payload).get("transfer_id")
        if not isinstance(transfer_id, int):
            continue
        found = walk.ids.get(transfer_id)
        if found != key:
            what = "is missing" if found is None else f"has key {found!r}"
            report.violations.append(Violation(
                "outcome", f"operations.key={key}",
                f"names transfers.id={transfer_id}, which {what}",
            ))
