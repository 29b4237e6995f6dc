"""`ledger verify`: a consistent ledger passes; each kind of damage is named by rule and row.

The ledger is built in the test over plain lists, sealed with the real digest chain
(core.ledger.transfer_digest) and balances derived from its transfers, the way a store
writes them. Each corruption then either forges rows that are well chained (a bug in
the code that wrote them) or tampers with stored rows afterwards (a hand edit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from core.invariants import verify
from core.ledger import GENESIS, transfer_digest
from core.model import (
    CONSUMED,
    EXTERNAL_ACCOUNTS,
    GRANTS,
    PURCHASES,
    SUBSCRIPTIONS,
    Channel,
    NewTransfer,
    OrderKind,
    OrderStatus,
    Partner,
    PaymentOrder,
    Transfer,
    TransferKind,
    channel_account,
    partner_account,
)
from core.ports import LedgerSnapshot

T0 = datetime(2030, 1, 14, 9, 30, tzinfo=UTC)
P1, P2 = partner_account(1), partner_account(2)
C1, C2, C3 = channel_account(1), channel_account(2), channel_account(3)


class Snapshot:
    """core.ports.LedgerSnapshot over plain lists."""

    def __init__(
        self,
        rows: list[Transfer],
        balances: dict[str, int],
        channels: list[Channel],
        orders: list[PaymentOrder],
        partners: list[Partner],
    ) -> None:
        self.rows, self.balances = rows, balances
        self._channels, self._orders, self._partners = channels, orders, partners

    def transfers(self) -> Iterator[Transfer]:
        return iter(list(self.rows))

    def account_balances(self) -> dict[str, int]:
        return dict(self.balances)

    def channels(self) -> list[Channel]:
        return list(self._channels)

    def orders(self) -> list[PaymentOrder]:
        return list(self._orders)

    def partners(self) -> list[Partner]:
        return list(self._partners)

    def outcomes(self) -> Iterator[tuple[str, str, str]]:
        return iter(())

    def chain_start(self) -> None:
        return None  # a plain chain (the keyed one: tests/faults/test_chain_key.py)


def partner(pid: int) -> Partner:
    return Partner(pid, f"Partner {pid}", "usd", 1000, 10, 1, T0)


def channel(cid: int, *, deleted: bool = False) -> Channel:
    return Channel(
        cid, 1, f"ch{cid}", T0, active_until=T0 + timedelta(days=30),
        deleted_at=T0 + timedelta(days=5) if deleted else None,
    )


def order(
    oid: int, kind: OrderKind, days: int, status: OrderStatus, *, refunded_days: int = 0
) -> PaymentOrder:
    return PaymentOrder(
        oid, 1, kind, days, days * 1000 // 30, "usd", status, T0, "user:1",
        refunded_days=refunded_days,
    )


class Book:
    """A ledger under construction: rows are chained and balances derived on seal()."""

    def __init__(self) -> None:
        self.rows: list[NewTransfer] = []
        self.partners = [partner(1), partner(2)]
        self.channels = {1: channel(1), 2: channel(2, deleted=True), 3: channel(3)}
        self.orders = {
            1: order(1, OrderKind.TOPUP, 100, OrderStatus.PAID),
            2: order(2, OrderKind.TOPUP, 50, OrderStatus.OPEN),
            3: order(3, OrderKind.INVOICE, 60, OrderStatus.PAID),
            4: order(4, OrderKind.SUBSCRIPTION, 30, OrderStatus.PAID),  # credits no balance
        }

    def add(
        self, key: str, debit: str, credit: str, days: int, kind: TransferKind,
        *, order_id: int | None = None, reason: str = "",
    ) -> Book:
        at = T0 + timedelta(minutes=len(self.rows))
        self.rows.append(
            NewTransfer(key, debit, credit, days, kind, "user:1", reason, at, order_id)
        )
        return self

    def seal(self) -> Snapshot:
        accounts = [*EXTERNAL_ACCOUNTS, P1, P2, C1, C2, C3]
        balances = dict.fromkeys(accounts, 0)
        rows: list[Transfer] = []
        previous = GENESIS
        for tid, new in enumerate(self.rows, start=1):
            previous = transfer_digest(previous, tid, new)
            rows.append(Transfer(
                tid, new.key, new.debit, new.credit, new.days, new.kind, new.actor, new.reason,
                new.created_at, new.order_id, previous,
            ))
            for account, sign in ((new.debit, -1), (new.credit, +1)):
                if account in balances:
                    balances[account] += sign * new.days
        return Snapshot(
            rows, balances, list(self.channels.values()), list(self.orders.values()),
            self.partners,
        )


def consistent() -> Book:
    """Partner 1 bought 100 + 60 days, gave 30 to ch1 and 10 to ch2, deleted ch2 (4
    back, 6 used), got 5 from support; ch3 is paid by its own subscription."""
    return (
        Book()
        .add("order:1:credit", PURCHASES, P1, 100, TransferKind.PURCHASE, order_id=1)
        .add("order:3:credit", PURCHASES, P1, 60, TransferKind.PURCHASE, order_id=3)
        .add("alloc-1", P1, C1, 30, TransferKind.ALLOCATION)
        .add("alloc-2", P1, C2, 10, TransferKind.ALLOCATION)
        .add("delete-2/return", C2, P1, 4, TransferKind.RETURN)
        .add("delete-2/consumed", C2, CONSUMED, 6, TransferKind.CONSUMPTION)
        .add("grant-1", GRANTS, P1, 5, TransferKind.GRANT, reason="goodwill")
        .add("subscription-period:in_1", SUBSCRIPTIONS, C3, 30, TransferKind.SUBSCRIPTION)
    )  # transfers.id 1..8


def test_a_consistent_ledger_passes_with_a_summary() -> None:
    report = verify(consistent().seal())
    assert report.violations == []
    assert report.ok
    assert (report.transfers, report.partners) == (8, 2)
    assert report.accounts == len(EXTERNAL_ACCOUNTS) + 5
    assert report.on_balances == 100 + 60 - 30 - 10 + 4 + 5
    assert report.on_channels == 30 + 30  # ch1 and ch3; the deleted ch2 holds nothing
    assert report.summary().startswith("ledger ok: 8 transfers")


def test_an_empty_ledger_passes() -> None:
    book = Book()
    book.orders.clear()
    assert verify(book.seal()).ok


def _sealed_then(change: Callable[[Snapshot], object]) -> Callable[[], Snapshot]:
    def build() -> Snapshot:
        snap = consistent().seal()
        change(snap)
        return snap

    return build


def _forged(change: Callable[[Book], object]) -> Callable[[], Snapshot]:
    def build() -> Snapshot:
        book = consistent()
        change(book)
        return book.seal()

    return build


def _edit_row(index: int, **changes: object) -> Callable[[Snapshot], None]:
    def edit(snap: Snapshot) -> None:
        snap.rows[index] = dataclasses.replace(snap.rows[index], **changes)  # type: ignore[arg-type]

    return edit


def _shift_balance(**deltas: int) -> Callable[[Snapshot], None]:
    names = {"p1": P1, "grants": GRANTS}

    def shift(snap: Snapshot) -> None:
        for name, delta in deltas.items():
            snap.balances[names[name]] += delta

    return shift


def _set_order(oid: int, **changes: object) -> Callable[[Book], None]:
    def change(book: Book) -> None:
        book.orders[oid] = dataclasses.replace(book.orders[oid], **changes)  # type: ignore[arg-type]

    return change


def _swap(snap: Snapshot) -> None:
    snap.rows[5], snap.rows[6] = snap.rows[6], snap.rows[5]


def _refund_into_overdraft(book: Book) -> None:
    book.add("alloc-1b", P1, C1, 100, TransferKind.ALLOCATION)  # balance 29
    book.add("order:1:refund:100", P1, PURCHASES, 100, TransferKind.REFUND, order_id=1)
    _set_order(1, refunded_days=100)(book)  # balance -71: allowed, support is told


def _add_unpaid_invoice_without_credit(book: Book) -> None:
    book.orders[5] = order(5, OrderKind.INVOICE, 30, OrderStatus.PAID)


def _credit_wrong_days(book: Book) -> None:
    book.orders[5] = order(5, OrderKind.INVOICE, 30, OrderStatus.PAID)
    book.add("order:5:credit", PURCHASES, P1, 29, TransferKind.PURCHASE, order_id=5)


def _credit_expired(book: Book) -> None:
    book.orders[5] = order(5, OrderKind.TOPUP, 30, OrderStatus.EXPIRED)
    book.add("order:5:credit", PURCHASES, P1, 30, TransferKind.PURCHASE, order_id=5)


def _violations(*pairs: tuple[str, str]) -> set[tuple[str, str]]:
    return set(pairs)


TRANSFER = "transfers.id={}".format
ACCOUNT = "accounts.code={}".format
ORDER = "orders.id={}".format
CHANNEL = "channels.id={}".format

CORRUPTIONS = [
    # --- hand edits of stored rows: the chain names the row -------------------------
    pytest.param(
        _sealed_then(_edit_row(2, days=31)),
        _violations(("chain", TRANSFER(3)), ("derived balance", ACCOUNT(P1)),
                    ("derived balance", ACCOUNT(C1))),
        id="a row's days edited: chain at that row, balances of both its accounts",
    ),
    pytest.param(
        _sealed_then(_edit_row(6, reason="goodwill x10")),
        _violations(("chain", TRANSFER(7))),
        id="a row's reason edited: chain at that row",
    ),
    pytest.param(
        _sealed_then(_edit_row(6, actor="support:1")),
        _violations(("chain", TRANSFER(7))),
        id="a row's actor edited: chain at that row",
    ),
    pytest.param(
        _sealed_then(lambda snap: snap.rows.pop(6)),
        _violations(("chain", TRANSFER(7)), ("chain", TRANSFER(8)),
                    ("derived balance", ACCOUNT(P1)), ("derived balance", ACCOUNT(GRANTS))),
        id="a row removed: named as missing, chain at the next row, balances it moved",
    ),
    pytest.param(
        _sealed_then(lambda snap: snap.rows.pop()),
        _violations(("derived balance", ACCOUNT(C3)),
                    ("derived balance", ACCOUNT(SUBSCRIPTIONS))),
        id="the newest row removed: no next row to chain, the balances still tell",
    ),
    pytest.param(
        _sealed_then(_swap),
        _violations(("chain", TRANSFER(7)), ("order", TRANSFER(6)), ("chain", TRANSFER(6)),
                    ("chain", TRANSFER(8))),
        id="two rows swapped: order, and the chain at both and at the row after",
    ),
    # --- stored balances -------------------------------------------------------------
    pytest.param(
        _sealed_then(_shift_balance(p1=+1)),
        _violations(("derived balance", ACCOUNT(P1)), ("zero sum", "accounts")),
        id="a stored balance off by one: derived balance and zero sum",
    ),
    pytest.param(
        _sealed_then(_shift_balance(p1=+5, grants=-5)),
        _violations(("derived balance", ACCOUNT(P1)), ("derived balance", ACCOUNT(GRANTS))),
        id="days moved between stored balances without a transfer",
    ),
    # --- well-chained rows that break a rule (a bug in the writer) --------------------
    pytest.param(
        _forged(lambda b: b.add("alloc-1", GRANTS, P1, 5, TransferKind.GRANT)),
        _violations(("idempotency", TRANSFER(9))),
        id="a key used twice: idempotency at the second row",
    ),
    pytest.param(
        _forged(lambda b: b.add("alloc-big", P1, C1, 200, TransferKind.ALLOCATION)),
        _violations(("no overdraft", TRANSFER(9))),
        id="an allocation overdraws the balance",
    ),
    pytest.param(
        _forged(lambda b: b.add("removal", P1, GRANTS, 130, TransferKind.REMOVAL)),
        _violations(("no overdraft", TRANSFER(9))),
        id="a support removal overdraws the balance",
    ),
    pytest.param(
        _forged(lambda b: b.add("renew", P1, C1, 130, TransferKind.RENEWAL)),
        _violations(("no overdraft", TRANSFER(9))),
        id="an auto-renewal overdraws the balance",
    ),
    pytest.param(
        _forged(_refund_into_overdraft),
        _violations(),
        id="a refund may overdraw the balance (rule 11)",
    ),
    pytest.param(
        _forged(lambda b: b.add(
            "order:1:credit-again", PURCHASES, P1, 100, TransferKind.PURCHASE, order_id=1)),
        _violations(("credited once", ORDER(1))),
        id="a paid order credited twice",
    ),
    pytest.param(
        _forged(_add_unpaid_invoice_without_credit),
        _violations(("credited once", ORDER(5))),
        id="a paid order never credited",
    ),
    pytest.param(
        _forged(_credit_wrong_days),
        _violations(("credited once", ORDER(5))),
        id="a paid order credited with other days than it sold",
    ),
    pytest.param(
        _forged(lambda b: b.add(
            "order:2:credit", PURCHASES, P1, 50, TransferKind.PURCHASE, order_id=2)),
        _violations(("credited once", ORDER(2))),
        id="an open order credited",
    ),
    pytest.param(
        _forged(_credit_expired),
        _violations(("credited once", ORDER(5))),
        id="an expired order credited but not marked paid",
    ),
    pytest.param(
        _forged(_set_order(1, refunded_days=50)),
        _violations(("refunds", ORDER(1))),
        id="an order records a refund the ledger does not have",
    ),
    pytest.param(
        _forged(lambda b: b.add("alloc-late", P1, C2, 5, TransferKind.ALLOCATION)),
        _violations(("channel", CHANNEL(2))),
        id="a deleted channel still holding days",
    ),
    pytest.param(
        _forged(lambda b: b.add("give-back", C1, P1, 40, TransferKind.RETURN)),
        _violations(("channel", CHANNEL(1))),
        id="a live channel holding fewer than zero days",
    ),
    pytest.param(
        _forged(lambda b: b.add("grant-0", GRANTS, P1, 0, TransferKind.GRANT)),
        _violations(("double entry", TRANSFER(9))),
        id="a transfer of zero days",
    ),
    pytest.param(
        _forged(lambda b: b.add("self", P1, P1, 5, TransferKind.GRANT)),
        _violations(("double entry", TRANSFER(9))),
        id="a transfer from an account to itself",
    ),
    pytest.param(
        _forged(lambda b: b.add("ghost", GRANTS, partner_account(99), 5, TransferKind.GRANT)),
        _violations(("double entry", TRANSFER(9)), ("derived balance", ACCOUNT("partner:99")),
                    ("zero sum", "accounts")),
        id="a transfer to an account that does not exist",
    ),
]


@pytest.mark.parametrize(("build", "expected"), CORRUPTIONS)
def test_verify_names_the_rule_and_row_of_each_corruption(
    build: Callable[[], Snapshot], expected: set[tuple[str, str]]
) -> None:
    report = verify(build())
    assert {(v.rule, v.row) for v in report.violations} == expected
    assert report.ok is (not expected)
    if expected:
        assert report.summary().startswith(f"ledger BROKEN ({len(report.violations)} violations)")


def test_a_violation_reads_as_row_rule_and_detail() -> None:
    snap = _sealed_then(_shift_balance(p1=+1))()
    lines = sorted(str(v) for v in verify(snap).violations)
    assert lines == [
        "accounts.code=partner:1: derived balance: stored balance 130, transfers sum to 129",
        "accounts: zero sum: stored balances sum to 1",
    ]


def test_the_in_test_snapshot_satisfies_the_protocol() -> None:
    snap: LedgerSnapshot = consistent().seal()
    assert [t.id for t in snap.transfers()] == list(range(1, 9))
    assert sum(snap.account_balances().values()) == 0
