"""Notices stored by the first version (facts as flat JSON, channels packed into lines,
some amounts as formatted text) still read exactly as that version rendered them.

Each row below is a payload in the first version's exact format (what its
`notify(..., **facts)` wrote: sorted keys, compact JSON, no "v" key) and the text its
renderer made of it. The same notice written in today's format reads the same.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

import pytest

from bot.notices import SHOWN, render
from core import notices
from core.model import Notice, OrderKind
from core.notices import NOTICE_TYPES, ListedChannel, NoticeUndecodable

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2030, 1, 14, 9, 30, tzinfo=UTC)
END = "2030-01-15T09:30:00+00:00"
MANY = "\\n".join(f"c{i:02d}|{END}|{i % 2}" for i in range(50))  # sweeps listed 50 at most
MANY_TEXT = "\n".join(
    f"• <b>c{i:02d}</b> (2030-01-15)" + (", auto-renew on" if i % 2 else "") for i in range(SHOWN)
)
NAMES = "\\n".join(f"n{i:02d}" for i in range(50))
NAMES_TEXT = "\n".join(f"• <b>n{i:02d}</b>" for i in range(SHOWN))
MISMATCH_TAIL = "No days were credited; please check it in Stripe."

FIRST_VERSION: list[tuple[str, str, tzinfo, str]] = [
    ("days_credited", '{"balance":130,"days":30,"order_id":4,"order_kind":"topup"}', UTC,
     "30 days credited; balance 130 days."),
    ("days_credited", '{"balance":12345,"days":1,"order_id":5,"order_kind":"invoice"}', UTC,
     "1 day credited; balance 12,345 days."),
    ("days_refunded", '{"balance":-20,"days":45,"order_id":3}', UTC,
     "A refund took 45 days back (order #3); balance -20 days."),
    ("refund_overdrawn", '{"balance":-20,"days":45,"order_id":3,"partner_id":7}', UTC,
     "Support: a refund of order #3 took 45 days back from partner #7, whose balance is now "
     "-20 days (below zero). /account 7"),
    ("payment_mismatch",
     '{"expected":"18.75 EUR","order_id":5,"paid":"1874 eur","partner_id":7}', UTC,
     f"Support: order #5 of partner #7 was paid 1874 eur but the quote was 18.75 EUR. "
     f"{MISMATCH_TAIL}"),
    ("payment_mismatch",
     '{"expected":"1,250.00 USD","order_id":6,"paid":"-1 usd","partner_id":7}', UTC,
     f"Support: order #6 of partner #7 was paid -1 usd but the quote was 1,250.00 USD. "
     f"{MISMATCH_TAIL}"),
    ("payment_mismatch",
     '{"expected":"5,000 JPY","order_id":9,"paid":"5000 usd","partner_id":8}', UTC,
     f"Support: order #9 of partner #8 was paid 5000 usd but the quote was 5,000 JPY. "
     f"{MISMATCH_TAIL}"),
    ("invoice_issued",
     '{"amount":"45.00 USD","channels":3,"days":90,"order_id":9,"period":"2030-01",'
     '"url":"https://pay.example/9?a=1&b=2"}', UTC,
     "New invoice #9 for 2030-01: 3 channels × 30 = 90 days, 45.00 USD.\n"
     "Pay here: https://pay.example/9?a=1&amp;b=2"),
    ("invoice_issued",
     '{"amount":"1,234,567.89 EUR","channels":1000,"days":30000,"order_id":10,'
     '"period":null,"url":null}', UTC,
     "New invoice #10: 1000 channels × 30 = 30,000 days, 1,234,567.89 EUR.\n/invoices has it."),
    ("invoice_issued",
     '{"amount":"1.500 KWD","channels":1,"days":30,"order_id":11,"period":"2030-02",'
     '"url":null}', UTC,
     "New invoice #11 for 2030-02: 1 channels × 30 = 30 days, 1.500 KWD.\n/invoices has it."),
    ("subscription_paid",
     '{"channel":"shop <1> & co","days":30,"until":"2030-02-13T23:30:00+00:00"}', BERLIN,
     "Subscription paid: <b>shop &lt;1&gt; &amp; co</b> got 30 days, active until 2030-02-14."),
    ("subscription_ended", '{"channel":"shop","until":"2030-02-13T09:30:00.123456+00:00"}', UTC,
     "The subscription of <b>shop</b> ended. It runs until 2030-02-13; then give it days "
     "with /allocate or /autorenew."),
    ("subscription_ended", '{"channel":"shop","until":null}', UTC,
     "The subscription of <b>shop</b> ended. It runs until -; then give it days "
     "with /allocate or /autorenew."),
    ("low_balance", '{"balance":5,"running":0,"runway":null,"threshold":10}', UTC,
     "Low balance: 5 days left, below your alert at 10 days. No channel is drawing on it now.\n"
     "Buy days: /topup"),
    ("low_balance",
     '{"balance":1234,"running":2,"runway":"2030-01-20T23:00:00+00:00","threshold":5000}',
     BERLIN,
     "Low balance: 1,234 days left, below your alert at 5,000 days. At this rate the balance "
     "keeps your running channels going until 2030-01-21.\nBuy days: /topup"),
    ("expiry",
     '{"channels":"a|2030-01-17T09:30:00+00:00|0\\nb & <co>|2030-01-17T23:30:00+00:00|1",'
     '"count":2,"stage":3}', BERLIN,
     "2 channel(s) expire within 3 days:\n• <b>a</b> (2030-01-17)\n"
     "• <b>b &amp; &lt;co&gt;</b> (2030-01-18), auto-renew on\n"
     "Give days: /allocate CHANNEL DAYS"),
    ("expiry", f'{{"channels":"shop|{END}|1","count":1,"stage":1}}', UTC,
     "1 channel(s) expire within 1 day:\n• <b>shop</b> (2030-01-15), auto-renew on\n"
     "Give days: /allocate CHANNEL DAYS"),
    ("expiry", f'{{"channels":"{MANY}","count":70,"stage":0}}', UTC,
     f"70 channel(s) expired:\n{MANY_TEXT}\n… and 50 more: /channels\n"
     "Give days: /allocate CHANNEL DAYS"),
    ("renewed", '{"channels":"shop\\nblog","count":2}', UTC,
     "Auto-renew: 2 channel(s) extended by 30 days.\n• <b>shop</b>\n• <b>blog</b>"),
    ("renewed", f'{{"channels":"{NAMES}","count":60}}', UTC,
     f"Auto-renew: 60 channel(s) extended by 30 days.\n{NAMES_TEXT}\n… and 40 more: /channels"),
    ("renew_short", '{"balance":10,"channels":"b\\nc","count":2,"needed":60}', UTC,
     "Auto-renew could not extend 2 channel(s): they need 60 days and the balance has 10.\n"
     "• <b>b</b>\n• <b>c</b>\nBuy days: /topup"),
    ("renew_short", '{"balance":-5,"channels":"x","count":1,"needed":30}', UTC,
     "Auto-renew could not extend 1 channel(s): they need 30 days and the balance has -5.\n"
     "• <b>x</b>\nBuy days: /topup"),
    ("invoice_reminder",
     '{"amount":4500,"currency":"usd","order_id":9,"url":"https://pay.example/9"}', UTC,
     "Reminder: invoice #9 (45.00 USD) is still unpaid.\nPay here: https://pay.example/9"),
    ("invoice_reminder", '{"amount":500000,"currency":"jpy","order_id":9,"url":null}', UTC,
     "Reminder: invoice #9 (500,000 JPY) is still unpaid."),
    ("invoice_overdue",
     '{"amount":1500,"currency":"usd","order_id":7,"partner_id":3,"url":null}', UTC,
     "Invoice #7 of partner #3 (15.00 USD) is overdue. /invoices"),
    ("invoice_overdue",
     '{"amount":123456,"currency":"eur","order_id":8,"partner_id":3,'
     '"url":"https://pay.example/8"}', UTC,
     "Invoice #8 of partner #3 (1,234.56 EUR) is overdue. /invoices"),
]


def stored(kind: str, payload: str) -> Notice:
    return Notice(1, "key", 1, kind, payload, T0)


def row_id(row: tuple[str, str, tzinfo, str]) -> str:
    return row[0]


# Kinds added after the first version: it never stored them (their texts: below).
LATER_KINDS = {
    notices.PERIOD_MISMATCH, notices.BALANCE_CORRECTED, notices.SUPPORT_ALLOCATED,
    notices.SUPPORT_DELETED,
}


def test_every_kind_has_rows_in_the_first_versions_format() -> None:
    assert {kind for kind, *_ in FIRST_VERSION} == set(NOTICE_TYPES) - LATER_KINDS
    for _, payload, *_ in FIRST_VERSION:
        assert notices.VERSION_KEY not in json.loads(payload)


@pytest.mark.parametrize("row", FIRST_VERSION, ids=row_id)
def test_a_notice_the_first_version_stored_reads_as_it_did(
    row: tuple[str, str, tzinfo, str],
) -> None:
    kind, payload, tz, expected = row
    assert render(stored(kind, payload), tz) == expected


@pytest.mark.parametrize("row", FIRST_VERSION, ids=row_id)
def test_the_same_notice_stored_today_reads_the_same(row: tuple[str, str, tzinfo, str]) -> None:
    kind, payload, tz, expected = row
    again_kind, again = notices.encode(notices.decode(kind, payload))
    assert again_kind == kind and json.loads(again)[notices.VERSION_KEY] == notices.VERSION
    assert render(stored(again_kind, again), tz) == expected


def test_first_version_channel_lines_become_typed_channels() -> None:
    expiring = notices.decode(
        "expiry", '{"channels":"a|2030-01-17T09:30:00+00:00|0\\nb|2030-01-17T23:30:00+00:00|1",'
        '"count":3,"stage":3}'
    )
    assert expiring == notices.ChannelsExpiring(3, 3, (
        ListedChannel("a", datetime(2030, 1, 17, 9, 30, tzinfo=UTC), False),
        ListedChannel("b", datetime(2030, 1, 17, 23, 30, tzinfo=UTC), True),
    ))
    renewed = notices.decode("renewed", '{"channels":"shop\\nblog","count":2}')
    # Only auto-renew channels are renewed; the first version did not store their ends.
    assert renewed == notices.ChannelsRenewed(
        2, (ListedChannel("shop", None, True), ListedChannel("blog", None, True))
    )


def test_first_version_formatted_amounts_become_minor_units() -> None:
    issued = notices.decode(
        "invoice_issued", '{"amount":"1,234,567.89 EUR","channels":1000,"days":30000,'
        '"order_id":10,"period":null,"url":null}'
    )
    assert issued == notices.InvoiceIssued(10, 30000, 1000, 123456789, "eur", None, None)
    mismatch = notices.decode(
        "payment_mismatch", '{"expected":"1.500 KWD","order_id":6,"paid":"-1 usd","partner_id":7}'
    )
    assert mismatch == notices.PaymentMismatched(7, 6, 1500, "kwd", -1, "usd")
    credited = notices.decode(
        "days_credited", '{"balance":130,"days":30,"order_id":4,"order_kind":"topup"}'
    )
    assert credited == notices.DaysCredited(4, OrderKind.TOPUP, 30, 130)


@pytest.mark.parametrize(("kind", "payload"), [
    # What the first version rendered as a quiet 0 or "None" is now an error.
    ("low_balance", '{"balance":5,"running":0,"runway":null}'),
    ("expiry", '{"channels":"a|2030-01-17T09:30:00+00:00|0","stage":3}'),
    ("days_credited", '{"balance":"130","days":30,"order_id":4,"order_kind":"topup"}'),
    ("invoice_issued", '{"channels":3,"days":90,"order_id":9,"period":null,"url":null}'),
    ("invoice_issued", '{"amount":"lots","channels":3,"days":90,"order_id":9,"period":null,'
                       '"url":null}'),
    ("invoice_issued", '{"amount":"1.005 USD","channels":3,"days":90,"order_id":9,'
                       '"period":null,"url":null}'),
    ("payment_mismatch", '{"expected":"18.75 EUR","order_id":5,"paid":"a lot","partner_id":7}'),
    ("expiry", '{"channels":"a|next week|0","count":1,"stage":3}'),
    ("subscription_ended", '{"channel":"shop"}'),
])
def test_a_first_version_row_missing_or_mistyping_a_fact_is_refused(
    kind: str, payload: str
) -> None:
    with pytest.raises(NoticeUndecodable) as caught:
        render(stored(kind, payload), UTC)
    assert caught.value.kind == kind



@pytest.mark.parametrize(("notice", "expected"), [
    (notices.PeriodMismatched(7, "shop & co", "in_1A", 1000, "usd", 0, "usd"),
     "Support: Stripe invoice in_1A for the subscription of channel <b>shop &amp; co</b> "
     f"(partner #7) was paid 0 usd but its price is 10.00 USD. {MISMATCH_TAIL}"),
    (notices.PeriodMismatched(8, "blog", "in_2B", 10200, "usd", 10200, "eur"),
     "Support: Stripe invoice in_2B for the subscription of channel <b>blog</b> "
     f"(partner #8) was paid 10200 eur but its price is 102.00 USD. {MISMATCH_TAIL}"),
    (notices.BalanceCorrected(30, 1130, "goodwill <outage>"),
     "Support granted 30 days: goodwill &lt;outage&gt;. Balance: 1,130 days."),
    (notices.BalanceCorrected(-1, -4, "dup"),
     "Support removed 1 day: dup. Balance: -4 days."),
    (notices.SupportAllocated("a<b", 30, T0, 1070),
     "Support gave <b>a&lt;b</b> 30 days from your balance; it runs until 2030-01-14. "
     "Balance: 1,070 days."),
    (notices.SupportDeleted("shop", 1, 5),
     "Support deleted channel <b>shop</b> (1 day came back). Balance: 5 days."),
    (notices.SupportDeleted("shop", 0, 5),
     "Support deleted channel <b>shop</b> (no unused days to return). Balance: 5 days."),
])
def test_the_notices_added_later_read_exactly(
    notice: notices.AnyNotice, expected: str
) -> None:
    kind, payload = notices.encode(notice)
    assert kind in LATER_KINDS
    assert render(stored(kind, payload), UTC) == expected
