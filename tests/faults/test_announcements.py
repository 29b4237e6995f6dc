"""Everyone is told about their money (issue 11, point 8).

Support's /credit (a grant or a removal) reaches every member of the partner as a notice
with the reason support typed, through the real outbox dispatcher and the loopback Bot
API server; support gets its answer in the chat and no copy of the notice. A hand-run
`partnerbot jobs run reconcile` checks every open order, however young: a payment whose
webhook was lost is credited at once (the scheduled run keeps its age filter).
"""

from __future__ import annotations

from argparse import Namespace
from datetime import UTC

import pytest

from bot.notices import text
from bot.outbox import Dispatcher
from core import notices
from partnerbot.cli import jobs_run
from partnerbot.jobs import run_job
from tests.faults.test_degraded_apis import (  # noqa: F401  (w: the fixture)
    MATE,
    World,
    session_of,
    w,
)
from tests.integration.bot_harness import OTHER_SUPPORT_ID, SUPPORT_ID
from tests.integration.payments_harness import HTTPX_DEPRECATION

pytestmark = [
    pytest.mark.filterwarnings(HTTPX_DEPRECATION),
    pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning"),
]


async def test_support_credit_is_announced_to_every_member_with_its_reason(
    w: World,  # noqa: F811
) -> None:
    h, owner = w.h, w.acme.owner
    mate = await h.link(MATE, w.acme.id)
    dispatcher = Dispatcher(
        h.app.bot, h.store, h.clock, UTC, [SUPPORT_ID, OTHER_SUPPORT_ID], per_chat_interval=0
    )
    await dispatcher.run_once()  # whatever the set-up queued goes first
    for user in (owner, mate, h.support):
        await h.drain(user)

    granted = await h.ask(h.support, "/credit Acme 30 goodwill for the outage")
    assert granted.text.startswith("Granted 30 days to Acme"), granted.text
    removed = await h.ask(h.support, "/credit Acme -5 duplicate grant")
    assert removed.text.startswith("Removed 5 days from Acme"), removed.text
    # Two notices, two members each; one message a chat a round.
    assert [await dispatcher.run_once() for _ in range(3)] == [2, 2, 0]

    expected = [
        "Support granted 30 days: goodwill for the outage. Balance: 130 days.",
        "Support removed 5 days: duplicate grant. Balance: 125 days.",
    ]
    for user in (owner, mate):
        got = [m.text for m in await user.wait_replies(2)]
        assert got == expected, (user.user_id, got)
    await h.tg.wait_idle(quiet=0.05)
    assert h.support.pending_replies() == []  # support has its answer, not a copy
    assert w.sends_to(OTHER_SUPPORT_ID) == 0
    assert await w.notices_of(notices.BALANCE_CORRECTED) >= 2

    # A refused removal changes nothing and announces nothing.
    refused = await h.ask(h.support, "/credit Acme -1000 too much")
    assert "would overdraw it" in refused.text
    assert await dispatcher.run_once() == 0


async def test_support_acting_for_a_partner_is_announced_and_a_members_own_change_is_not(
    w: World,  # noqa: F811
) -> None:
    h, owner = w.h, w.acme.owner
    mate = await h.link(MATE, w.acme.id)
    dispatcher = Dispatcher(h.app.bot, h.store, h.clock, UTC, [SUPPORT_ID], per_chat_interval=0)
    await dispatcher.run_once()
    for user in (owner, mate, h.support):
        await h.drain(user)

    await h.ask(h.support, "/account Acme")
    given = await h.ask(h.support, "/allocate shop 10")
    assert "90 days" in given.text, given.text
    mine = await h.ask(owner, "/allocate shop 5")  # the owner's own: answered, not announced
    assert "85 days" in mine.text, mine.text
    shop = await h.store.read(lambda lg: lg.find_live_channel(w.acme.id, "shop"))
    assert shop is not None
    deleted = await h.billing.delete_channel(
        w.acme.id, shop.id, f"support:{SUPPORT_ID}", "support-delete:1"
    )
    assert [await dispatcher.run_once() for _ in range(3)] == [2, 2, 0]
    expected = [
        "Support gave shop 10 days from your balance; it runs until 2030-01-24. "
        "Balance: 90 days.",
        f"Support deleted channel shop ({deleted.returned_days} days came back). "
        f"Balance: {deleted.balance:,} days.",
    ]
    for user in (owner, mate):
        got = [m.text for m in await user.wait_replies(2)]
        assert got == expected, (user.user_id, got)
    await h.tg.wait_idle(quiet=0.05)
    assert h.support.pending_replies() == []


def test_the_correction_notice_reads_exactly() -> None:
    utc = UTC
    assert text(notices.BalanceCorrected(days=1, balance=-3, reason="a <b> & c"), utc) == (
        "Support granted 1 day: a &lt;b&gt; &amp; c. Balance: -3 days."
    )
    assert text(notices.BalanceCorrected(days=-2, balance=0, reason="typo"), utc) == (
        "Support removed 2 days: typo. Balance: 0 days."
    )


async def test_a_hand_run_reconcile_credits_a_payment_whose_webhook_was_lost(
    w: World,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    h, owner = w.h, w.acme.owner
    quote = await h.ask(owner, "/topup 30")
    w.stripe.complete_session(session_of(quote))  # paid; the webhook never arrives
    before = await w.balance(w.acme)

    # The scheduled run keeps its age filter: a payment this young is not asked about.
    scheduled = await run_job("reconcile", w.services)
    assert "0 open orders checked" in scheduled, scheduled
    assert await w.balance(w.acme) == before

    # By hand, at once (`partnerbot jobs run reconcile`'s own handler, on the test clock):
    # every open order is asked about.
    assert await jobs_run(Namespace(job="reconcile", period=None), w.services) == 0
    printed = capsys.readouterr().out
    assert "1 open orders checked with Stripe, 1 credited" in printed, printed
    assert await w.balance(w.acme) == before + 30
    assert await w.notices_of(notices.DAYS_CREDITED) == 1
