"""PaymentService over the in-memory store and a payment gateway written for the test:
links for top-ups, invoices and subscriptions, what happens when the provider fails, and
reconciliation of orders whose webhook never came.

Checked: the orders the store holds, what the gateway was asked, and who is told.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.channels import create_channel
from core.errors import InvalidInput, NothingToInvoice, PaymentUnavailable, SubscriptionExists
from core.model import (
    CheckoutLink,
    CheckoutMode,
    CheckoutRequest,
    OrderKind,
    OrderStatus,
    PaymentOrder,
    SessionState,
)
from core.orders import open_order
from core.payments import PaymentService
from core.policy import BillingPolicy
from storage.memory import MemoryStore
from tests.conftest import FakeClock
from tests.unit.book import MEMBER, T0, Book, Event


class Gateway:
    """core.ports.PaymentGateway: numbered sessions, a switch to fail, states to report."""

    def __init__(self) -> None:
        self.asked: list[CheckoutRequest] = []
        self.down = False
        self.states: dict[str, SessionState] = {}
        self.unreachable: set[str] = set()

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutLink:
        if self.down:
            raise PaymentUnavailable("down")
        self.asked.append(request)
        ref = f"cs_{len(self.asked)}"
        return CheckoutLink(ref, f"https://pay.example/{ref}")

    async def session_state(self, provider_ref: str) -> SessionState:
        if provider_ref in self.unreachable:
            raise PaymentUnavailable("timeout")
        return self.states[provider_ref]


@pytest.fixture
async def book(memory_store: MemoryStore) -> Book:
    book = await Book(memory_store).start()
    await book.add_member()
    return book


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


@pytest.fixture
def service(book: Book, gateway: Gateway) -> PaymentService:
    return PaymentService(
        book.recorded, FakeClock(T0), gateway, session_ttl=timedelta(minutes=30),
        annual_discount_percent=20, policy=BillingPolicy(max_topup_days=400),
    )


async def _channels(book: Book, *names: str) -> None:
    for name in names:
        await book.run(lambda lg, n=name: create_channel(lg, T0, book.partner_id, n, "u:1", n))


# --- top-ups ----------------------------------------------------------------------------


async def test_a_top_up_is_quoted_and_linked_for_the_time_a_session_lives(
    book: Book, service: PaymentService, gateway: Gateway
) -> None:
    order = await service.start_topup(book.partner_id, 1200 // 3, "user:1")
    assert (order.kind, order.days, order.amount) == (OrderKind.TOPUP, 400, 13_333)
    assert (order.provider_ref, order.url) == ("cs_1", "https://pay.example/cs_1")
    assert await book.order(order.id) == order
    [asked] = gateway.asked
    assert (asked.mode, asked.description, asked.interval) == (
        CheckoutMode.PAYMENT, "400 days", None
    )
    assert asked.expires_at == T0 + timedelta(minutes=30)
    assert asked.order.id == order.id


async def test_a_top_up_over_the_most_days_is_refused_before_any_link(
    book: Book, service: PaymentService, gateway: Gateway
) -> None:
    with pytest.raises(InvalidInput):
        await service.start_topup(book.partner_id, 401, "user:1")
    assert gateway.asked == []


async def test_a_thousand_days_read_with_a_thousands_separator(
    memory_store: MemoryStore, book: Book, gateway: Gateway
) -> None:
    service = PaymentService(memory_store, FakeClock(T0), gateway)
    await service.start_topup(book.partner_id, 1000, "user:1")
    assert gateway.asked[0].description == "1,000 days"


async def test_a_top_up_whose_link_fails_is_cancelled(
    book: Book, service: PaymentService, gateway: Gateway
) -> None:
    gateway.down = True
    with pytest.raises(PaymentUnavailable):
        await service.start_topup(book.partner_id, 60, "user:1")
    order = await book.order(1)
    assert (order.status, order.closed_at, order.url) == (OrderStatus.CANCELED, T0, None)
    assert book.events[-1] == Event("system:payments", "order.canceled", book.partner_id,
                                    "order=1")


# --- invoices (rule 6) ------------------------------------------------------------------------


async def test_an_invoice_is_sized_by_the_live_channels_linked_and_announced_once(
    book: Book, service: PaymentService, gateway: Gateway
) -> None:
    await _channels(book, "a", "b")
    order, new = await service.invoice_for_period(book.partner_id, "scheduler", period="2030-02")
    assert new is True
    assert (order.kind, order.channels, order.days, order.amount) == (
        OrderKind.INVOICE, 2, 60, 2000
    )
    assert order.url == "https://pay.example/cs_1"
    assert gateway.asked[0].description == "invoice 2030-02: 2 channels x 30 days"
    again, new = await service.invoice_for_period(book.partner_id, "scheduler", period="2030-02")
    assert (again, new) == (order, False)
    assert len(gateway.asked) == 1
    assert await book.told() == [MEMBER]


async def test_an_invoice_on_request_is_labelled_by_its_number(
    book: Book, service: PaymentService, gateway: Gateway
) -> None:
    order = await service.issue_invoice(book.partner_id, "support:1", channel_count=3)
    assert (order.days, order.channels, order.period) == (90, 3, None)
    assert gateway.asked[0].description == "invoice 1: 3 channels x 30 days"


async def test_no_live_channels_means_no_invoice(book: Book, service: PaymentService) -> None:
    with pytest.raises(NothingToInvoice) as caught:
        await service.issue_invoice(book.partner_id, "scheduler")
    assert caught.value.partner_id == book.partner_id
    with pytest.raises(NothingToInvoice):
        await service.issue_invoice(book.partner_id, "support:1", channel_count=0)
    assert await book.read(lambda lg: lg.list_orders(statuses=(OrderStatus.OPEN,))) == []


@pytest.mark.parametrize(
    ("count", "field", "reason"),
    [
        (100_001, "channels", "must be at most 100,000"),
        (100_000, "days", "must be at most 100,000"),  # 3,000,000 days: one operation's cap
    ],
)
async def test_an_invoice_for_more_channels_than_one_payment_can_hold_is_refused(
    book: Book, service: PaymentService, count: int, field: str, reason: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await service.issue_invoice(book.partner_id, "support:1", channel_count=count)
    assert (caught.value.field, caught.value.reason) == (field, reason)


async def test_an_invoice_whose_link_fails_waits_announced_and_is_linked_later(
    book: Book, service: PaymentService, gateway: Gateway
) -> None:
    await _channels(book, "a")
    gateway.down = True
    with pytest.raises(PaymentUnavailable):
        await service.issue_invoice(book.partner_id, "scheduler", period="2030-02")
    waiting = await book.order(1)
    assert (waiting.status, waiting.url) == (OrderStatus.OPEN, None)
    assert await book.told() == [MEMBER]  # told without a link
    gateway.down = False
    linked = await service.ensure_link(waiting)
    assert linked.url == "https://pay.example/cs_1"
    assert (await book.order(1)).url == linked.url
    assert await book.told() == [MEMBER, MEMBER]  # and again with it
    assert await service.ensure_link(linked) == linked  # nothing more to do
    assert len(gateway.asked) == 1


async def test_an_invoice_asked_again_after_its_link_failed_is_linked_then(
    book: Book, service: PaymentService, gateway: Gateway
) -> None:
    await _channels(book, "a")
    gateway.down = True
    with pytest.raises(PaymentUnavailable):
        await service.issue_invoice(book.partner_id, "scheduler", period="2030-02")
    gateway.down = False
    order, new = await service.invoice_for_period(book.partner_id, "scheduler", period="2030-02")
    assert (new, order.url) == (False, "https://pay.example/cs_1")
    assert await book.told() == [MEMBER, MEMBER]


# --- subscriptions (rule 10) ---------------------------------------------------------------


@pytest.mark.parametrize(("interval", "amount"), [("month", 1000), ("year", 9600)])
async def test_a_subscription_is_priced_by_its_interval_and_linked_as_one(
    book: Book, service: PaymentService, gateway: Gateway, interval: str, amount: int
) -> None:
    await _channels(book, "shop")
    order = await service.start_subscription(book.partner_id, "shop", interval, "user:1")
    assert (order.kind, order.amount, order.channel_id) == (OrderKind.SUBSCRIPTION, amount, 1)
    assert order.days == (30 if interval == "month" else 365)
    [asked] = gateway.asked
    assert (asked.mode, asked.description, asked.interval) == (
        CheckoutMode.SUBSCRIPTION, "channel shop", interval
    )


async def test_a_subscription_of_another_interval_or_for_a_subscribed_channel_is_refused(
    book: Book, service: PaymentService, gateway: Gateway
) -> None:
    await _channels(book, "shop")
    with pytest.raises(InvalidInput) as caught:
        await service.start_subscription(book.partner_id, "shop", "week", "user:1")
    assert (caught.value.field, caught.value.reason) == ("period", "must be monthly or annual")
    channel = await book.channel(1)
    from dataclasses import replace

    await book.run(lambda lg: lg.update_channel(replace(channel, subscription_ref="sub_1")))
    with pytest.raises(SubscriptionExists) as exists:
        await service.start_subscription(book.partner_id, "shop", "month", "user:1")
    assert (exists.value.channel, exists.value.pending) == ("shop", False)
    assert gateway.asked == []


async def test_a_subscription_whose_link_fails_is_cancelled(
    book: Book, service: PaymentService, gateway: Gateway
) -> None:
    await _channels(book, "shop")
    gateway.down = True
    with pytest.raises(PaymentUnavailable):
        await service.start_subscription(book.partner_id, "shop", "month", "user:1")
    assert (await book.order(1)).status is OrderStatus.CANCELED


# --- reconciliation ----------------------------------------------------------------------------


async def _unlinked(book: Book, kind: OrderKind = OrderKind.TOPUP) -> PaymentOrder:
    return await book.run(lambda lg: open_order(
        lg, T0, book.partner_id, kind, 60, "user:1",
        channels=2 if kind is OrderKind.INVOICE else None,
    ))


def _paid(order: PaymentOrder, ref: str) -> SessionState:
    return SessionState(ref, "complete", "paid", order.amount, "usd", order.id, order.partner_id,
                        payment_ref="pi_" + ref)


async def test_reconcile_cancels_every_top_up_left_without_a_link(
    book: Book, memory_store: MemoryStore, gateway: Gateway
) -> None:
    first, second = await _unlinked(book), await _unlinked(book)
    clock = FakeClock(T0 + timedelta(hours=1))
    service = PaymentService(memory_store, clock, gateway)
    done = await service.reconcile(timedelta(hours=1))
    assert [(await book.order(o.id)).status for o in (first, second)] == [
        OrderStatus.CANCELED, OrderStatus.CANCELED
    ]
    assert (done.checked, done.closed) == (0, 2)


async def test_reconcile_leaves_orders_younger_than_the_cutoff(
    book: Book, memory_store: MemoryStore, gateway: Gateway
) -> None:
    order = await _unlinked(book)
    service = PaymentService(memory_store, FakeClock(T0 + timedelta(minutes=59)), gateway)
    await service.reconcile(timedelta(hours=1))
    assert (await book.order(order.id)).status is OrderStatus.OPEN


async def test_reconcile_credits_what_was_paid_and_relinks_a_lapsed_invoice(
    book: Book, memory_store: MemoryStore, gateway: Gateway
) -> None:
    clock = FakeClock(T0)
    service = PaymentService(memory_store, clock, gateway)
    paid = await service.start_topup(book.partner_id, 60, "user:1")  # cs_1
    lapsed = await service.issue_invoice(book.partner_id, "s", channel_count=2)  # cs_2
    unlinked_invoice = await _unlinked(book, OrderKind.INVOICE)
    asked_first = await service.start_topup(book.partner_id, 30, "user:1")  # cs_3
    gateway.states["cs_1"] = _paid(paid, "cs_1")
    gateway.states["cs_2"] = SessionState("cs_2", "expired", "unpaid", lapsed.amount, "usd",
                                          lapsed.id, book.partner_id)
    gateway.unreachable.add("cs_3")
    clock.advance(timedelta(hours=2))
    done = await service.reconcile(timedelta(hours=1))
    assert await book.balance() == 60
    assert (await book.order(paid.id)).status is OrderStatus.PAID
    relinked = await book.order(lapsed.id)
    assert relinked.status is OrderStatus.OPEN
    # Both invoices got new sessions (cs_4 and cs_5, in whichever order they were read).
    assert {relinked.provider_ref, (await book.order(unlinked_invoice.id)).provider_ref} == {
        "cs_4", "cs_5"
    }
    # The lapsed invoice's new session is asked for the order as the store now holds it,
    # without the session that lapsed.
    [again] = [r for r in gateway.asked[3:] if r.order.id == lapsed.id]
    assert (again.order.provider_ref, again.order.url) == (None, None)
    assert (await book.order(asked_first.id)).status is OrderStatus.OPEN
    assert (done.checked, done.credited, done.closed, done.failed, done.relinked) == (2, 1, 0, 1, 2)


async def test_reconcile_counts_each_invoice_it_could_not_relink_as_failed(
    book: Book, memory_store: MemoryStore, gateway: Gateway
) -> None:
    orders = [await _unlinked(book, OrderKind.INVOICE) for _ in range(2)]
    gateway.down = True
    service = PaymentService(memory_store, FakeClock(T0 + timedelta(hours=2)), gateway)
    done = await service.reconcile(timedelta(hours=1))
    assert (done.failed, done.relinked, done.closed) == (2, 0, 0)
    for order in orders:
        assert (await book.order(order.id)).status is OrderStatus.OPEN


async def test_reconcile_counts_expired_and_failed_sessions_as_closed(
    book: Book, memory_store: MemoryStore, gateway: Gateway
) -> None:
    clock = FakeClock(T0)
    service = PaymentService(memory_store, clock, gateway)
    one = await service.start_topup(book.partner_id, 60, "user:1")
    two = await service.start_topup(book.partner_id, 60, "user:1")
    gateway.states["cs_1"] = SessionState("cs_1", "expired", "unpaid", one.amount, "usd",
                                          one.id, book.partner_id)
    gateway.states["cs_2"] = SessionState("cs_2", "complete", "unpaid", two.amount, "usd",
                                          two.id, book.partner_id, failed=True)
    clock.advance(timedelta(hours=2))
    done = await service.reconcile(timedelta(hours=1))
    assert (done.checked, done.closed, done.credited) == (2, 2, 0)
    assert (await book.order(one.id)).status is OrderStatus.EXPIRED
    assert (await book.order(two.id)).status is OrderStatus.FAILED


async def test_by_default_a_year_is_discounted_15_percent_and_a_link_lives_an_hour(
    book: Book, memory_store: MemoryStore, gateway: Gateway
) -> None:
    service = PaymentService(memory_store, FakeClock(T0), gateway)
    await _channels(book, "shop")
    order = await service.start_subscription(book.partner_id, "shop", "year", "user:1")
    assert order.amount == 10_200  # 12 x 10.00 less 15 %
    assert gateway.asked[0].expires_at == T0 + timedelta(hours=1)


async def test_by_default_a_top_up_buys_at_most_36_500_days(
    book: Book, memory_store: MemoryStore, gateway: Gateway
) -> None:
    service = PaymentService(memory_store, FakeClock(T0), gateway)
    assert (await service.start_topup(book.partner_id, 36_500, "user:1")).days == 36_500
    with pytest.raises(InvalidInput):
        await service.start_topup(book.partner_id, 36_501, "user:1")
