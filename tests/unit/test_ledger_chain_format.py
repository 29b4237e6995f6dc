"""The chain's digest format is frozen: every existing database was sealed with it.

A change to the fields, their order, their text form or the separator would make
`ledger verify` fail on every ledger written before, with nothing else turning red.
The expected digests below were computed once, independently of core.ledger, with
hashlib over the preimage written out in `_preimage_sha256`; they are pinned as text.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.ledger import GENESIS, move, transfer_digest
from core.model import GRANTS, NewTransfer, Transfer, TransferKind, partner_account
from core.partners import create_partner
from core.policy import BillingPolicy
from core.ports import Ledger
from storage.memory import MemoryStore

T0 = datetime(2030, 1, 14, 9, 30, tzinfo=UTC)

BERLIN_WINTER = timezone(timedelta(hours=1))

FIRST = NewTransfer(
    key="grant:1", debit="ext:grants", credit="partner:1", days=30,
    kind=TransferKind.GRANT, actor="support:42", reason="welcome",
    # 10:30 at UTC+1 is 09:30 UTC: the digest uses the UTC instant, microseconds shown.
    created_at=datetime(2030, 1, 14, 10, 30, tzinfo=BERLIN_WINTER),
)
FIRST_DIGEST = "9c403b2a81e540eb8cead6e02f257aa33e9cd0b6f33d53fa99a79e0843c19760"

SECOND_DIGEST = "7654fd1f3a01659bb82010098cca75e879212ed79ee2f728f35dd6a9345ff236"


def _second(digest: str = SECOND_DIGEST) -> Transfer:
    return Transfer(
        id=2, key="order:7:credit", debit="ext:purchases", credit="partner:1", days=60,
        kind=TransferKind.PURCHASE, actor="stripe:evt_1", reason="topup 7",
        created_at=datetime(2030, 1, 14, 9, 30, 0, 123456, tzinfo=UTC), order_id=7,
        digest=digest,
    )


def _preimage_sha256(*fields: str) -> str:
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


def test_the_genesis_is_sixty_four_zeros() -> None:
    assert GENESIS == "0000000000000000000000000000000000000000000000000000000000000000"


def test_the_pinned_digests_are_sha256_of_the_unit_separated_fields() -> None:
    # The same preimage as the format documents: previous, id, key, debit, credit, days,
    # kind, actor, reason, created_at in UTC with microseconds, order id or "".
    assert _preimage_sha256(
        "0" * 64, "1", "grant:1", "ext:grants", "partner:1", "30", "grant", "support:42",
        "welcome", "2030-01-14T09:30:00.000000+00:00", "",
    ) == FIRST_DIGEST
    assert _preimage_sha256(
        FIRST_DIGEST, "2", "order:7:credit", "ext:purchases", "partner:1", "60", "purchase",
        "stripe:evt_1", "topup 7", "2030-01-14T09:30:00.123456+00:00", "7",
    ) == SECOND_DIGEST


def test_a_row_without_an_order_has_its_pinned_digest() -> None:
    assert transfer_digest(GENESIS, 1, FIRST) == FIRST_DIGEST


def test_a_row_of_an_order_chained_to_the_one_before_has_its_pinned_digest() -> None:
    assert transfer_digest(FIRST_DIGEST, 2, _second()) == SECOND_DIGEST


@pytest.mark.parametrize(
    "field",
    ["previous", "id", "key", "debit", "credit", "days", "kind", "actor", "reason",
     "created_at", "order_id"],
)
def test_every_field_of_a_row_changes_its_digest(field: str) -> None:
    previous, transfer_id, row = FIRST_DIGEST, 2, _second()
    if field == "previous":
        previous = GENESIS
    elif field == "id":
        transfer_id = 3
    else:
        changed: dict[str, object] = {
            "key": "order:7:credit2", "debit": "ext:grants", "credit": "partner:2",
            "days": 61, "kind": TransferKind.GRANT, "actor": "stripe:evt_2",
            "reason": "topup 8", "created_at": row.created_at + timedelta(microseconds=1),
            "order_id": None,
        }
        values = {name: getattr(row, name) for name in Transfer.__slots__}
        values[field] = changed[field]
        row = Transfer(**values)  # type: ignore[arg-type]
    assert transfer_digest(previous, transfer_id, row) != SECOND_DIGEST


def _partner(lg: Ledger) -> int:
    return create_partner(lg, T0, BillingPolicy(), "Acme", "cli").id


def _grant(lg: Ledger, key: str, debit: str, credit: str, days: int) -> Transfer:
    kind = TransferKind.GRANT if debit == GRANTS else TransferKind.REMOVAL
    return move(lg, key=key, debit=debit, credit=credit, days=days, kind=kind,
                actor="support:42", at=T0)


async def test_a_move_writes_one_transfer_with_what_it_was_given(
    memory_store: MemoryStore,
) -> None:
    def work(lg: Ledger) -> Transfer:
        pid = _partner(lg)
        return move(
            lg, key="grant:1", debit=GRANTS, credit=partner_account(pid), days=30,
            kind=TransferKind.GRANT, actor="support:42", at=FIRST.created_at,
            reason="welcome",
        )

    written = await memory_store.write(work)
    assert written == Transfer(
        1, "grant:1", "ext:grants", "partner:1", 30, TransferKind.GRANT, "support:42",
        "welcome", datetime(2030, 1, 14, 9, 30, tzinfo=UTC), None, FIRST_DIGEST,
    )
    assert written.created_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("debit", "credit", "days", "message"),
    [
        (GRANTS, "partner:1", 0, "a transfer moves a positive number of days"),
        (GRANTS, "partner:1", -1, "a transfer moves a positive number of days"),
        ("partner:1", "partner:1", 1, "a transfer moves days between two different accounts"),
    ],
)
async def test_a_move_of_no_days_or_to_its_own_account_is_refused(
    memory_store: MemoryStore, debit: str, credit: str, days: int, message: str
) -> None:
    def work(lg: Ledger) -> Transfer:
        _partner(lg)
        return _grant(lg, "k", debit, credit, days)

    with pytest.raises(ValueError) as caught:
        await memory_store.write(work)
    assert str(caught.value) == message


async def test_a_move_without_a_reason_records_none(memory_store: MemoryStore) -> None:
    def work(lg: Ledger) -> Transfer:
        _partner(lg)
        return _grant(lg, "k", GRANTS, "partner:1", 5)

    assert (await memory_store.write(work)).reason == ""


async def test_a_move_checks_the_low_balance_alert_of_each_partner_it_touches(
    memory_store: MemoryStore,
) -> None:
    """Threshold 30 (the default policy): 40 days, then 20 (below), then 35 (above)."""

    def work(lg: Ledger) -> list[bool]:
        account = partner_account(_partner(lg))
        seen = []
        _grant(lg, "a", GRANTS, account, 40)
        seen.append(lg.alert_state(1).below)
        _grant(lg, "b", account, GRANTS, 20)  # the partner is debited
        seen.append(lg.alert_state(1).below)
        _grant(lg, "c", GRANTS, account, 15)  # the partner is credited
        seen.append(lg.alert_state(1).below)
        return seen

    assert await memory_store.write(work) == [False, True, False]
