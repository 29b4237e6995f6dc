"""PaymentService's one method per kind of Stripe event, over the in-memory store.

Each delivery is handled once by its event id: the first one applies its effect and
records the event with what it did, under the event's kind, at the clock's instant; a
redelivery changes nothing and answers what the first one did. The effect acts as
"stripe:<event id>". Checked: the store afterwards, the recorded provider events and the
audit trail.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.channels import create_channel
from core.model import ChannelBilling, OrderKind, OrderStatus, SessionState, channel_account
from core.orders import attach_payment_link, open_order
from core.payments import (
    ChargeRefunded,
    EventHandled,
    EventResult,
    PaymentService,
    PeriodPaid,
    ProviderEvent,
)
from storage.memory import MemoryStore
from tests.conftest import FakeClock
from tests.unit.book import T0, Book, Delivered, Event
from tests.unit.test_payment_service_links import Gateway

DAY = timedelta(days=1)
NOW = T0 + timedelta(hours=5)  # the service's clock: later than anything the book did


@pytest.fixture
async def book(memory_store: MemoryStore) -> Book:
    return await Book(memory_store).start()


@pytest.fixture
def service(book: Book) -> PaymentService:
    return PaymentService(book.recorded, FakeClock(NOW), Gateway())


async def _paid_session(book: Book, days: int = 60) -> SessionState:
    """A linked top-up of `days` days and Stripe's report that it was paid."""
    order = await book.open(days)
    await book.run(lambda lg: attach_payment_link(lg, order.id, "cs_1", "https://p/cs_1"))
    return SessionState("cs_1", "complete", "paid", order.amount, order.currency, order.id,
                        book.partner_id, payment_ref="pi_1")  # fmt: skip


async def _subscribed_channel(book: Book) -> int:
    made = await book.run(lambda lg: create_channel(lg, T0, book.partner_id, "shop", "u:1", "c"))
    order = await book.run(lambda lg: open_order(
        lg, T0, book.partner_id, OrderKind.SUBSCRIPTION, 30, "user:1",
        channel_id=made.channel_id, amount=1000,
    ))
    await book.run(lambda lg: attach_payment_link(lg, order.id, "cs_s", "https://p/cs_s"))
    return made.channel_id


def test_a_provider_event_acts_as_stripe_by_its_id() -> None:
    assert ProviderEvent("evt_9", "invoice.paid").actor == "stripe:evt_9"


def test_the_results_keep_the_words_stored_with_each_event() -> None:
    """Databases hold these strings (provider_events.result): a renamed value would make
    every stored duplicate unreadable."""
    assert {r.name: r.value for r in EventResult} == {
        "CREDITED": "credited", "SUBSCRIBED": "subscribed", "EXTENDED": "extended",
        "ENDED": "ended", "REFUNDED": "refunded", "ALREADY": "already", "PENDING": "pending",
        "EXPIRED": "expired", "LINK_EXPIRED": "link_expired", "FAILED": "failed",
        "MISMATCH": "mismatch", "CHANNEL_DELETED": "channel_deleted", "FOREIGN": "foreign",
        "UNKNOWN": "unknown", "IGNORED": "ignored",
    }


async def test_a_paid_session_is_credited_once_and_its_event_recorded(
    book: Book, service: PaymentService
) -> None:
    state = await _paid_session(book)
    event = ProviderEvent("evt_1", "checkout.session.completed")
    assert await service.session_changed(event, state) == EventHandled(EventResult.CREDITED)
    assert await service.session_changed(event, state) == EventHandled(
        EventResult.CREDITED, duplicate=True
    )
    assert await book.balance() == 60
    paid = await book.order(1)
    assert (paid.status, paid.paid_at, paid.payment_ref) == (OrderStatus.PAID, NOW, "pi_1")
    assert book.provider_events == [
        Delivered("evt_1", "checkout.session.completed", NOW, "credited")
    ]
    credit = await book.read(lambda lg: lg.find_transfer("order:1:credit"))
    assert credit is not None
    assert (credit.actor, credit.days, credit.created_at) == ("stripe:evt_1", 60, NOW)


async def test_a_redelivery_answers_what_the_first_delivery_did_whatever_it_now_says(
    book: Book, service: PaymentService
) -> None:
    paid = await _paid_session(book)
    event = ProviderEvent("evt_1", "checkout.session.completed")
    pending = SessionState("cs_1", "open", "unpaid", paid.amount_total, paid.currency,
                           paid.order_id, paid.partner_id)  # fmt: skip
    assert await service.session_changed(event, pending) == EventHandled(EventResult.PENDING)
    # The same event id again, this time claiming the payment: the first answer stands.
    assert await service.session_changed(event, paid) == EventHandled(
        EventResult.PENDING, duplicate=True
    )
    assert await book.balance() == 0
    assert book.provider_events == [
        Delivered("evt_1", "checkout.session.completed", NOW, "pending")
    ]
    # Another event about the same session is a new delivery and credits it.
    other = ProviderEvent("evt_2", "checkout.session.async_payment_succeeded")
    assert await service.session_changed(other, paid) == EventHandled(EventResult.CREDITED)
    assert await book.balance() == 60


async def test_a_paid_period_extends_its_channel_once_and_is_recorded(
    book: Book, service: PaymentService
) -> None:
    cid = await _subscribed_channel(book)
    period = PeriodPaid("in_1", "sub_1", book.partner_id, cid, "month", 1000, "usd")
    event = ProviderEvent("evt_p", "invoice.paid")
    assert await service.period_paid(event, period) == EventHandled(EventResult.EXTENDED)
    assert await service.period_paid(event, period) == EventHandled(
        EventResult.EXTENDED, duplicate=True
    )
    # Stripe's second event for the same invoice: the period was paid already.
    again = ProviderEvent("evt_q", "invoice.paid")
    assert await service.period_paid(again, period) == EventHandled(EventResult.ALREADY)
    assert await book.balance(channel_account(cid)) == 30
    channel = await book.channel(cid)
    assert channel.active_until == NOW + 30 * DAY
    assert (channel.billing, channel.subscription_ref) == (ChannelBilling.SUBSCRIPTION, "sub_1")
    assert book.provider_events == [
        Delivered("evt_p", "invoice.paid", NOW, "extended"),
        Delivered("evt_q", "invoice.paid", NOW, "already"),
    ]


async def test_a_deleted_subscription_puts_its_channel_back_on_the_balance_once(
    book: Book, service: PaymentService
) -> None:
    cid = await _subscribed_channel(book)
    await service.period_paid(
        ProviderEvent("evt_p", "invoice.paid"),
        PeriodPaid("in_1", "sub_1", book.partner_id, cid, "year", 1000, "usd"),
    )
    event = ProviderEvent("evt_d", "customer.subscription.deleted")
    assert await service.subscription_deleted(event, "sub_1") == EventHandled(EventResult.ENDED)
    assert await service.subscription_deleted(event, "sub_1") == EventHandled(
        EventResult.ENDED, duplicate=True
    )
    # A second event about it finds no channel paid by that subscription any more.
    later = ProviderEvent("evt_e", "customer.subscription.deleted")
    assert await service.subscription_deleted(later, "sub_1") == EventHandled(
        EventResult.UNKNOWN
    )
    channel = await book.channel(cid)
    assert (channel.billing, channel.subscription_ref) == (ChannelBilling.BALANCE, None)
    assert channel.active_until == NOW + 365 * DAY
    assert book.events[-1] == Event(
        "stripe:evt_d", "subscription.ended", book.partner_id, "channel=1 subscription=sub_1"
    )
    assert [d.result for d in book.provider_events] == ["extended", "ended", "unknown"]


async def test_a_refund_takes_its_days_back_once_and_is_recorded(
    book: Book, service: PaymentService
) -> None:
    state = await _paid_session(book)
    await service.session_changed(ProviderEvent("evt_1", "checkout.session.completed"), state)
    refund = ChargeRefunded("pi_1", 1000)  # half of 20.00: 30 of the 60 days
    event = ProviderEvent("evt_r", "charge.refunded")
    assert await service.charge_refunded(event, refund) == EventHandled(EventResult.REFUNDED)
    assert await service.charge_refunded(event, refund) == EventHandled(
        EventResult.REFUNDED, duplicate=True
    )
    # Another event reporting the same total refunded: nothing more to take.
    same = ProviderEvent("evt_s", "charge.refunded")
    assert await service.charge_refunded(same, refund) == EventHandled(EventResult.ALREADY)
    # Then a smaller total than already taken (events out of order): nothing either.
    smaller = ProviderEvent("evt_t", "charge.refunded")
    assert await service.charge_refunded(smaller, ChargeRefunded("pi_1", 400)) == (
        EventHandled(EventResult.ALREADY)
    )
    assert await book.balance() == 30
    assert (await book.order(1)).refunded_days == 30
    assert book.provider_events[1:] == [
        Delivered("evt_r", "charge.refunded", NOW, "refunded"),
        Delivered("evt_s", "charge.refunded", NOW, "already"),
        Delivered("evt_t", "charge.refunded", NOW, "already"),
    ]


async def test_an_event_not_ours_to_act_on_is_recorded_so_redeliveries_are_duplicates(
    book: Book, service: PaymentService
) -> None:
    event = ProviderEvent("evt_x", "invoice.paid")
    assert await service.event_ignored(event) == EventHandled(EventResult.IGNORED)
    assert await service.event_ignored(event) == EventHandled(
        EventResult.IGNORED, duplicate=True
    )
    assert book.provider_events == [Delivered("evt_x", "invoice.paid", NOW, "ignored")]
    assert await book.balance() == 0
