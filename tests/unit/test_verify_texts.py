"""What `ledger verify` prints: each violation's full line and the summary, pinned.

The corrupted ledgers are those of test_invariants (the same ids); here the operator's
view of each is checked word for word, since the line is all an operator gets to find
the row. Outcomes naming their transfers (the anchor at the chain's end) are checked
with a snapshot that holds some.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator

import pytest

from core.invariants import Violation, verify
from core.model import GRANTS, TransferKind
from tests.unit.test_invariants import (
    C1,
    CORRUPTIONS,
    P1,
    P2,
    Book,
    Snapshot,
    consistent,
)

EDITED = (
    "chain: digest does not match this row and the one before it "
    "(the row, or one before it, was edited, removed or inserted by hand)"
)

LINES = {
    "a row's days edited: chain at that row, balances of both its accounts": [
        f"transfers.id=3: {EDITED}",
        "accounts.code=channel:1: derived balance: stored balance 30, transfers sum to 31",
        "accounts.code=partner:1: derived balance: stored balance 129, transfers sum to 128",
    ],
    "a row's reason edited: chain at that row": [f"transfers.id=7: {EDITED}"],
    "a row's actor edited: chain at that row": [f"transfers.id=7: {EDITED}"],
    "a row removed: named as missing, chain at the next row, balances it moved": [
        "transfers.id=7: chain: missing: the row was removed",
        f"transfers.id=8: {EDITED}",
        "accounts.code=ext:grants: derived balance: stored balance -5, transfers sum to 0",
        "accounts.code=partner:1: derived balance: stored balance 129, transfers sum to 124",
    ],
    "the newest row removed: no next row to chain, the balances still tell": [
        "accounts.code=channel:3: derived balance: stored balance 30, transfers sum to 0",
        "accounts.code=ext:subscriptions: derived balance: stored balance -30, "
        "transfers sum to 0",
    ],
    "two rows swapped: order, and the chain at both and at the row after": [
        "transfers.id=6: chain: missing: the row was removed",
        f"transfers.id=7: {EDITED}",
        "transfers.id=6: order: id not after 7",
        f"transfers.id=6: {EDITED}",
        "transfers.id=7: chain: missing: the row was removed",
        f"transfers.id=8: {EDITED}",
    ],
    "a stored balance off by one: derived balance and zero sum": [
        "accounts.code=partner:1: derived balance: stored balance 130, transfers sum to 129",
        "accounts: zero sum: stored balances sum to 1",
    ],
    "days moved between stored balances without a transfer": [
        "accounts.code=ext:grants: derived balance: stored balance -10, transfers sum to -5",
        "accounts.code=partner:1: derived balance: stored balance 134, transfers sum to 129",
    ],
    "a key used twice: idempotency at the second row": [
        "transfers.id=9: idempotency: key 'alloc-1' used twice",
    ],
    "an allocation overdraws the balance": [
        "transfers.id=9: no overdraft: allocation left partner:1 at -71 days",  # 129 - 200
    ],
    "a support removal overdraws the balance": [
        "transfers.id=9: no overdraft: removal left partner:1 at -1 days",  # 129 - 130
    ],
    "an auto-renewal overdraws the balance": [
        "transfers.id=9: no overdraft: renewal left partner:1 at -1 days",
    ],
    "a refund may overdraw the balance (rule 11)": [],
    "a paid order credited twice": [
        "orders.id=1: credited once: paid order of 100 days credited [100, 100]",
    ],
    "a paid order never credited": [
        "orders.id=5: credited once: paid order of 30 days credited []",
    ],
    "a paid order credited with other days than it sold": [
        "orders.id=5: credited once: paid order of 30 days credited [29]",
    ],
    "an open order credited": ["orders.id=2: credited once: open order was credited [50]"],
    "an expired order credited but not marked paid": [
        "orders.id=5: credited once: expired order was credited [30]",
    ],
    "an order records a refund the ledger does not have": [
        "orders.id=1: refunds: records 50 days refunded, transfers say 0",
    ],
    "a deleted channel still holding days": [
        "channels.id=2: channel: deleted but still holds 5 days",
    ],
    "a live channel holding fewer than zero days": ["channels.id=1: channel: holds -10 days"],
    "a transfer of zero days": [
        "transfers.id=9: double entry: moves 0 days ext:grants->partner:1",
    ],
    "a transfer from an account to itself": [
        "transfers.id=9: double entry: moves 5 days partner:1->partner:1",
    ],
    "a transfer to an account that does not exist": [
        "transfers.id=9: double entry: unknown account partner:99",
        "accounts.code=partner:99: derived balance: stored balance 0, transfers sum to 5",
        "accounts: zero sum: stored balances sum to -5",
    ],
}


@pytest.mark.parametrize(("build", "expected"), CORRUPTIONS)
def test_each_violation_reads_as_its_row_rule_and_detail(
    build: Callable[[], Snapshot], expected: set[tuple[str, str]], request: pytest.FixtureRequest
) -> None:
    case = request.node.callspec.id
    report = verify(build())
    assert [str(v) for v in report.violations] == LINES[case]
    transfers = len(build().rows)
    if report.violations:
        assert report.summary() == (
            f"ledger BROKEN ({len(LINES[case])} violations): {transfers} transfers checked"
        )


def test_a_violation_is_shown_row_first() -> None:
    assert str(Violation("chain", "transfers.id=4", "missing")) == "transfers.id=4: chain: missing"


def test_the_summary_of_a_sound_ledger_counts_what_it_checked_in_thousands() -> None:
    assert verify(consistent().seal()).summary() == (
        "ledger ok: 8 transfers, 9 accounts, 2 partners; 129 days on partner balances, "
        "60 days on live channels; accounts sum to zero"
    )
    book = consistent()
    book.add("grant-2", GRANTS, P2, 2000, TransferKind.GRANT)
    book.add("alloc-3", P2, C1, 1000, TransferKind.ALLOCATION)
    report = verify(book.seal())
    assert (report.on_balances, report.on_channels) == (1129, 1060)
    assert report.summary() == (
        "ledger ok: 10 transfers, 9 accounts, 2 partners; 1,129 days on partner balances, "
        "1,060 days on live channels; accounts sum to zero"
    )


def test_a_partner_spending_down_to_exactly_zero_is_no_overdraft() -> None:
    book = Book()
    book.orders.clear()
    book.add("grant-2", GRANTS, P2, 5, TransferKind.GRANT)
    book.add("alloc-3", P2, C1, 5, TransferKind.ALLOCATION)
    report = verify(book.seal())
    assert report.violations == []
    assert (report.on_balances, report.on_channels) == (0, 5)


class WithOutcomes(Snapshot):
    """The consistent ledger plus stored outcomes (key, kind, payload)."""

    def __init__(self, outcomes: list[tuple[str, str, str]]) -> None:
        sealed = consistent().seal()
        super().__init__(
            sealed.rows, sealed.balances, sealed.channels(), sealed.orders(), sealed.partners()
        )
        self.stored = outcomes

    def outcomes(self) -> Iterator[tuple[str, str, str]]:
        return iter(self.stored)


def _outcome(key: str, transfer_id: object) -> tuple[str, str, str]:
    return key, "DaysAllocated", json.dumps({"transfer_id": transfer_id, "days": 30})


def test_outcomes_that_find_their_transfers_under_their_own_keys_pass() -> None:
    snap = WithOutcomes([
        _outcome("alloc-1", 3),
        _outcome("grant-1", 7),
        ("channel-made", "ChannelCreated", json.dumps({"channel_id": 1})),  # names none
        _outcome("refund-nothing", None),  # a refund with nothing left took no transfer
    ])
    assert verify(snap).violations == []


def test_an_outcome_naming_a_missing_or_another_transfer_is_a_violation() -> None:
    snap = WithOutcomes([
        ("channel-made", "ChannelCreated", json.dumps({"channel_id": 1})),  # names none
        _outcome("alloc-9", 99),  # the newest rows were removed by hand
        _outcome("alloc-2", 3),  # points at alloc-1's row
        _outcome("alloc-1", 3),
    ])
    assert [str(v) for v in verify(snap).violations] == [
        "operations.key=alloc-9: outcome: names transfers.id=99, which is missing",
        "operations.key=alloc-2: outcome: names transfers.id=3, which has key 'alloc-1'",
    ]


def test_the_in_test_accounts_are_the_partner_and_channel_codes() -> None:
    assert (P1, P2, C1) == ("partner:1", "partner:2", "channel:1")


def test_a_row_id_used_twice_is_out_of_order_and_leaves_a_gap() -> None:
    snap = consistent().seal()
    snap.rows[5] = dataclasses.replace(snap.rows[5], id=5)  # the sixth row renumbered 5
    # Row 7 still chains to the renumbered row's digest, so only 5 and the gap are named.
    assert [str(v) for v in verify(snap).violations] == [
        "transfers.id=5: order: id not after 5",
        f"transfers.id=5: {EDITED}",
        "transfers.id=6: chain: missing: the row was removed",
    ]


def test_a_live_channel_that_never_had_days_holds_zero_and_is_fine() -> None:
    book = consistent()
    book.channels[4] = dataclasses.replace(book.channels[1], id=4, active_until=None)
    report = verify(book.seal())
    assert report.violations == []
    assert report.on_channels == 60
