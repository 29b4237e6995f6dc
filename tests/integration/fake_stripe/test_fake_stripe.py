"""The fake Stripe server driven by the real stripe-python client (sync and async)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest
import stripe
from stripe.params import checkout as checkout_params

from core.money import MINIMUM_CHARGE
from tests.fakes.stripe_api import (
    API_VERSION,
    MIN_CHARGE,
    FakeStripe,
    decode_form,
    listify,
    schema_for,
    sign_webhook,
)
from tests.integration.fake_stripe.helpers import (
    WHSEC,
    error_body,
    payment_params,
    subscription_params,
    verify,
)

# stripe's HTTPXClient passes the form body as `data=<str>`, which httpx deprecates.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)


# ----------------------------------------------------------------- plumbing


def test_bracket_form_decoding() -> None:
    tree = decode_form(
        [
            ("metadata[partner_id]", "42"),
            ("line_items[0][price_data][unit_amount]", "1500"),
            ("line_items[0][quantity]", "1"),
            ("line_items[1][quantity]", "2"),
            ("expand[]", "line_items"),
            ("expand[]", "payment_intent"),
        ]
    )
    assert listify(tree) == {
        "metadata": {"partner_id": "42"},
        "line_items": [
            {"price_data": {"unit_amount": "1500"}, "quantity": "1"},
            {"quantity": "2"},
        ],
        "expand": ["line_items", "payment_intent"],
    }


def test_schema_comes_from_stripe_python_typeddicts() -> None:
    schema = schema_for(checkout_params.SessionCreateParams)
    assert set(schema.fields) == (
        set(checkout_params.SessionCreateParams.__annotations__)
        - {"api_key", "stripe_version", "stripe_account", "stripe_context",
           "max_network_retries", "idempotency_key", "content_type", "headers"}
    )  # fmt: skip
    # payment_method_types is not special-cased: accepted iff stripe-python has it.
    assert ("payment_method_types" in schema.fields) == (
        "payment_method_types" in checkout_params.SessionCreateParams.__annotations__
    )


def test_signature_header_is_stripes_hmac_scheme() -> None:
    event = {"id": "evt_1", "object": "event", "type": "checkout.session.completed"}
    body, headers = sign_webhook(event, WHSEC, timestamp=1_700_000_000)
    fields = dict(part.split("=", 1) for part in headers["Stripe-Signature"].split(","))
    assert fields["t"] == "1700000000"
    expected = hmac.new(WHSEC.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert fields["v1"] == expected
    assert json.loads(body) == event


def test_sync_client_with_default_http_client_creates_and_reads_back() -> None:
    with FakeStripe() as fake:
        # StripeClient's default: RequestsClient for sync, HTTPXClient as async fallback.
        client = stripe.StripeClient(fake.api_key, base_addresses={"api": fake.base_url})
        created = client.v1.checkout.sessions.create(params=payment_params())
        assert created.id.startswith("cs_test_")
        assert created.object == "checkout.session"
        assert created.url is not None
        assert created.url.startswith(f"https://checkout.stripe.com/c/pay/{created.id}")
        assert (created.mode, created.status) == ("payment", "open")
        assert created.payment_status == "unpaid"
        assert created.amount_total == 1500
        assert created.currency == "usd"
        assert created.livemode is False
        assert created.payment_intent is None  # created when the customer pays
        assert created.expires_at - created.created == 86_400

        fetched = client.v1.checkout.sessions.retrieve(created.id)
        assert fetched.id == created.id
        assert fetched.metadata is not None
        assert fetched.metadata.to_dict() == {"partner_id": "42", "order_id": "17", "days": "30"}
        assert fetched.client_reference_id == "order-17"

        post = fake.requests_to("/v1/checkout/sessions", "POST")[0]
        assert post.params["line_items"][0]["price_data"]["unit_amount"] == "1500"
        assert post.params["metadata"]["days"] == "30"
        assert post.stripe_version == API_VERSION == stripe.api_version
        assert post.headers["Authorization"] == f"Bearer {fake.api_key}"
        assert post.idempotency_key  # stripe-python sends one on every POST


async def test_async_create_retrieve_and_expand(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    created = await client.v1.checkout.sessions.create_async(params=payment_params(2500))
    fetched = await client.v1.checkout.sessions.retrieve_async(
        created.id, params={"expand": ["line_items"]}
    )
    assert fetched.amount_total == 2500
    assert fetched.line_items is not None
    item = fetched.line_items.data[0]
    assert item.price is not None
    assert (item.object, item.quantity, item.amount_total) == ("item", 1, 2500)
    assert item.price.unit_amount == 2500
    assert item.price.type == "one_time"
    assert fake.api_versions_seen == {API_VERSION}


# --------------------------------------------------------------- validation


async def test_unknown_and_missing_parameters_are_refused(client: stripe.StripeClient) -> None:
    sessions = client.v1.checkout.sessions
    bad: Any = payment_params()
    bad["line_items"][0]["price_data"]["bogus"] = "1"
    with pytest.raises(stripe.InvalidRequestError) as err:
        await sessions.create_async(params=bad)
    assert err.value.code == "parameter_unknown"
    assert err.value.param == "line_items[0][price_data][bogus]"
    assert err.value.http_status == 400
    assert error_body(err.value)["type"] == "invalid_request_error"
    assert "Received unknown parameter: line_items[0][price_data][bogus]" in str(err.value)

    if "payment_method_types" not in checkout_params.SessionCreateParams.__annotations__:
        legacy: Any = {**payment_params(), "payment_method_types": ["card"]}
        with pytest.raises(stripe.InvalidRequestError) as err:
            await sessions.create_async(params=legacy)
        assert (err.value.code, err.value.param) == ("parameter_unknown", "payment_method_types")

    no_currency: Any = payment_params()
    del no_currency["line_items"][0]["price_data"]["currency"]
    with pytest.raises(stripe.InvalidRequestError) as err:
        await sessions.create_async(params=no_currency)
    assert (err.value.code, err.value.param) == (
        "parameter_missing",
        "line_items[0][price_data][currency]",
    )

    no_amount: Any = payment_params()
    del no_amount["line_items"][0]["price_data"]["unit_amount"]
    with pytest.raises(stripe.InvalidRequestError) as err:
        await sessions.create_async(params=no_amount)
    assert err.value.param == "line_items[0][price_data][unit_amount]"

    no_mode: Any = payment_params()
    del no_mode["mode"]
    with pytest.raises(stripe.InvalidRequestError) as err:
        await sessions.create_async(params=no_mode)
    assert (err.value.code, err.value.param) == ("parameter_missing", "mode")

    bad_mode: Any = {**payment_params(), "mode": "bogus"}
    with pytest.raises(stripe.InvalidRequestError) as err:
        await sessions.create_async(params=bad_mode)
    assert err.value.param == "mode"
    assert "must be one of payment, setup, or subscription" in str(err.value)

    bad_int: Any = payment_params()
    bad_int["line_items"][0]["quantity"] = "two"
    with pytest.raises(stripe.InvalidRequestError) as err:
        await sessions.create_async(params=bad_int)
    assert err.value.code == "parameter_invalid_integer"

    with pytest.raises(stripe.InvalidRequestError) as err:
        await sessions.create_async(params=payment_params(49))
    assert err.value.code == "amount_too_small"
    assert "$0.50 usd" in str(err.value)

    recurring_in_payment: Any = subscription_params()
    recurring_in_payment["mode"] = "payment"
    del recurring_in_payment["subscription_data"]
    with pytest.raises(stripe.InvalidRequestError, match="recurring price"):
        await sessions.create_async(params=recurring_in_payment)

    colour: Any = {"status": "open", "colour": "red"}
    with pytest.raises(stripe.InvalidRequestError) as err:
        await sessions.list_async(params=colour)
    assert (err.value.code, err.value.param) == ("parameter_unknown", "colour")

    with pytest.raises(stripe.InvalidRequestError) as err:
        await sessions.retrieve_async("cs_test_missing")
    assert (err.value.http_status, err.value.code) == (404, "resource_missing")


async def test_the_minimum_charge_is_stripes_in_each_currency(
    client: stripe.StripeClient,
) -> None:
    # Two-decimal and zero-decimal currencies: $0.50, ¥50, 175.00 Ft, £0.30.
    for currency, minimum in (("usd", 50), ("jpy", 50), ("huf", 17_500), ("gbp", 30)):
        params: Any = payment_params(minimum - 1)
        params["line_items"][0]["price_data"]["currency"] = currency
        with pytest.raises(stripe.InvalidRequestError) as err:
            await client.v1.checkout.sessions.create_async(params=params)
        assert err.value.code == "amount_too_small", currency
        params["line_items"][0]["price_data"]["unit_amount"] = minimum
        session = await client.v1.checkout.sessions.create_async(params=params)
        assert (session.currency, session.amount_total) == (currency, minimum)


def test_core_offers_only_currencies_stripe_lists_and_never_below_its_minimum() -> None:
    # core/money.py keeps its own table; the fake's comes from Stripe's docs.
    for currency, floor in MINIMUM_CHARGE.items():
        assert currency in MIN_CHARGE, currency
        assert floor >= MIN_CHARGE[currency], currency


async def test_wrong_api_key_is_401(fake: FakeStripe) -> None:
    client = fake.make_client(api_key="sk_test_not_the_right_key_0000")
    with pytest.raises(stripe.AuthenticationError) as err:
        await client.v1.checkout.sessions.list_async()
    assert err.value.http_status == 401
    assert "Invalid API Key provided" in str(err.value)


async def test_idempotent_replay_and_conflict(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    sessions = client.v1.checkout.sessions
    first = await sessions.create_async(
        params=payment_params(), options={"idempotency_key": "order-17-try-1"}
    )
    again = await sessions.create_async(
        params=payment_params(), options={"idempotency_key": "order-17-try-1"}
    )
    assert again.id == first.id
    assert again.url == first.url
    assert again.last_response is not None
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert len((await sessions.list_async()).data) == 1

    with pytest.raises(stripe.IdempotencyError) as err:
        await sessions.create_async(
            params=payment_params(3000), options={"idempotency_key": "order-17-try-1"}
        )
    assert err.value.http_status == 400
    assert error_body(err.value)["type"] == "idempotency_error"

    # Refused (validation) requests are not stored: the key stays usable.
    with pytest.raises(stripe.InvalidRequestError):
        await sessions.create_async(params=payment_params(10), options={"idempotency_key": "k2"})
    ok = await sessions.create_async(params=payment_params(), options={"idempotency_key": "k2"})
    assert ok.id != first.id


# ------------------------------------------------------------ payments flow


async def test_completed_session_event_verifies_with_stripe_webhook(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    session = await client.v1.checkout.sessions.create_async(params=payment_params())
    event = fake.complete_session(session.id)
    assert event["type"] == "checkout.session.completed"
    assert event["id"].startswith("evt_")
    assert event["api_version"] == API_VERSION
    assert event["livemode"] is False
    obj = event["data"]["object"]
    assert (obj["status"], obj["payment_status"]) == ("complete", "paid")
    assert obj["metadata"] == {"partner_id": "42", "order_id": "17", "days": "30"}
    assert obj["amount_total"] == 1500

    body, headers = fake.signed_webhook(event, WHSEC)
    assert headers["Stripe-Signature"].startswith("t=")
    verified = verify(body, headers)
    assert verified.type == "checkout.session.completed"
    assert verified.data.object.id == session.id
    assert client.construct_event(body, headers["Stripe-Signature"], WHSEC).id == event["id"]

    tampered = body.replace(b'"days": "30"', b'"days": "300"')
    with pytest.raises(stripe.SignatureVerificationError):
        verify(tampered, headers)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], "whsec_other")
    stale_body, stale_headers = sign_webhook(event, WHSEC, timestamp=int(time.time()) - 301)
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        verify(stale_body, stale_headers)
    fresh_body, fresh_headers = sign_webhook(event, WHSEC, timestamp=int(time.time()) - 250)
    assert verify(fresh_body, fresh_headers).id == event["id"]

    fetched = await client.v1.checkout.sessions.retrieve_async(
        session.id, params={"expand": ["payment_intent"]}
    )
    assert fetched.status == "complete"
    assert fetched.url is None
    pi = fetched.payment_intent
    assert isinstance(pi, stripe.PaymentIntent)
    assert (pi.status, pi.amount, pi.currency) == ("succeeded", 1500, "usd")
    # Session metadata does not reach the PaymentIntent; payment_intent_data does.
    assert pi.metadata.to_dict() == {"order_id": "17"}
    charge = await client.v1.charges.retrieve_async(str(pi.latest_charge))
    assert (charge.paid, charge.payment_intent, charge.amount) == (True, pi.id, 1500)
    types = [e["type"] for e in fake.events]
    assert types[-1] == "checkout.session.completed"
    assert {"payment_intent.succeeded", "charge.succeeded"} <= set(types)


async def test_async_payment_success_and_failure(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    good = await client.v1.checkout.sessions.create_async(params=payment_params())
    bad = await client.v1.checkout.sessions.create_async(params=payment_params())
    for s in (good, bad):
        completed = fake.complete_session(s.id, paid=False)
        assert completed["data"]["object"]["payment_status"] == "unpaid"
        assert completed["data"]["object"]["status"] == "complete"

    succeeded = fake.async_payment_result(good.id, succeeded=True)
    assert succeeded["type"] == "checkout.session.async_payment_succeeded"
    assert succeeded["data"]["object"]["payment_status"] == "paid"
    failed = fake.async_payment_result(bad.id, succeeded=False)
    assert failed["type"] == "checkout.session.async_payment_failed"
    assert failed["data"]["object"]["payment_status"] == "unpaid"
    pi_id = failed["data"]["object"]["payment_intent"]
    pi = await client.v1.payment_intents.retrieve_async(pi_id)
    assert pi.status == "requires_payment_method"


async def test_list_open_sessions_with_filters_and_pagination(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    sessions = client.v1.checkout.sessions
    created = [await sessions.create_async(params=payment_params()) for _ in range(5)]
    fake.complete_session(created[0].id)
    expired = await sessions.expire_async(created[1].id)
    assert expired.status == "expired"
    assert fake.events[-1]["type"] == "checkout.session.expired"
    assert fake.events[-1]["request"]["id"] is not None  # triggered by an API call
    with pytest.raises(stripe.InvalidRequestError, match="can be expired"):
        await sessions.expire_async(created[1].id)

    open_ids = [s.id for s in (await sessions.list_async(params={"status": "open"})).data]
    assert open_ids == [s.id for s in reversed(created[2:])]  # newest first

    page = await sessions.list_async(params={"status": "open", "limit": 2})
    assert page.has_more is True
    rest = await sessions.list_async(
        params={"status": "open", "limit": 2, "starting_after": page.data[-1].id}
    )
    assert [s.id for s in page.data + rest.data] == open_ids
    assert rest.has_more is False
    one_by_one = sessions.list(params={"status": "open", "limit": 1}).auto_paging_iter()
    assert [s.id for s in one_by_one] == open_ids

    since = created[0].created
    assert len((await sessions.list_async(params={"created": {"gte": since}})).data) == 5
    assert (await sessions.list_async(params={"created": {"gt": since + 3600}})).data == []

    pi_id = fake.get(created[0].id)["payment_intent"]
    by_pi = await sessions.list_async(params={"payment_intent": pi_id})
    assert [s.id for s in by_pi.data] == [created[0].id]

    fake.advance_time(86_400)
    expired_events = fake.expire_due_sessions()
    assert {e["data"]["object"]["id"] for e in expired_events} == set(open_ids)


# ------------------------------------------------------------ subscriptions


async def test_subscription_two_paid_periods(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    session = await client.v1.checkout.sessions.create_async(params=subscription_params())
    completed = fake.complete_session(session.id)
    sub_id = completed["data"]["object"]["subscription"]
    assert sub_id.startswith("sub_")
    assert completed["data"]["object"]["customer"].startswith("cus_")
    assert completed["data"]["object"]["payment_intent"] is None

    sub = await client.v1.subscriptions.retrieve_async(sub_id)
    assert sub.status == "active"
    assert sub.metadata.to_dict() == {"partner_id": "42", "channel_id": "-100123"}
    item = sub["items"].data[0]
    first_start, first_end = item.current_period_start, item.current_period_end
    assert 28 * 86_400 <= first_end - first_start <= 31 * 86_400
    assert item.price.recurring is not None
    assert item.price.recurring.interval == "month"

    first = fake.events_of_type("invoice.paid")
    assert len(first) == 1
    inv1 = first[0]["data"]["object"]
    assert "subscription" not in inv1
    assert inv1["parent"]["subscription_details"]["subscription"] == sub_id
    assert inv1["parent"]["subscription_details"]["metadata"] == {
        "partner_id": "42",
        "channel_id": "-100123",
    }
    assert inv1["billing_reason"] == "subscription_create"
    assert inv1["lines"]["data"][0]["period"] == {"start": first_start, "end": first_end}
    assert inv1["amount_paid"] == 990

    renewed = fake.renew_subscription(sub_id)
    assert renewed["type"] == "invoice.paid"
    inv2 = renewed["data"]["object"]
    assert inv2["billing_reason"] == "subscription_cycle"
    assert inv2["parent"]["subscription_details"]["metadata"]["channel_id"] == "-100123"
    period = inv2["lines"]["data"][0]["period"]
    assert period["start"] == first_end
    assert 28 * 86_400 <= period["end"] - period["start"] <= 31 * 86_400
    body, headers = sign_webhook(renewed, WHSEC)
    assert verify(body, headers).data.object.parent.subscription_details.subscription == sub_id

    invoice = await client.v1.invoices.retrieve_async(inv2["id"], params={"expand": ["payments"]})
    assert invoice.status == "paid"
    assert invoice.lines.data[0].period.start == first_end
    assert invoice.payments is not None
    pi_id = invoice.payments.data[0].payment.payment_intent
    assert isinstance(pi_id, str)
    assert pi_id.startswith("pi_")
    sub = await client.v1.subscriptions.retrieve_async(sub_id)
    assert sub["items"].data[0].current_period_start == first_end
    assert sub.latest_invoice == inv2["id"]


async def test_annual_subscription_period(fake: FakeStripe, client: stripe.StripeClient) -> None:
    session = await client.v1.checkout.sessions.create_async(params=subscription_params("year"))
    sub_id = fake.complete_session(session.id)["data"]["object"]["subscription"]
    item = fake.get(sub_id)["items"]["data"][0]
    assert 365 * 86_400 <= item["current_period_end"] - item["current_period_start"] <= 366 * 86_400


async def test_subscription_cancellation(fake: FakeStripe, client: stripe.StripeClient) -> None:
    a = await client.v1.checkout.sessions.create_async(params=subscription_params())
    b = await client.v1.checkout.sessions.create_async(params=subscription_params())
    sub_a = fake.complete_session(a.id)["data"]["object"]["subscription"]
    sub_b = fake.complete_session(b.id)["data"]["object"]["subscription"]

    canceled = await client.v1.subscriptions.cancel_async(sub_a)
    assert canceled.status == "canceled"
    deleted = fake.events_of_type("customer.subscription.deleted")
    assert [e["data"]["object"]["id"] for e in deleted] == [sub_a]

    updated = await client.v1.subscriptions.update_async(
        sub_b, params={"cancel_at_period_end": True}
    )
    assert updated.cancel_at_period_end is True
    assert updated.cancel_at == updated["items"].data[0].current_period_end
    changed = fake.events_of_type("customer.subscription.updated")[-1]
    assert changed["data"]["previous_attributes"]["cancel_at_period_end"] is False
    ended = fake.renew_subscription(sub_b)
    assert ended["type"] == "customer.subscription.deleted"
    assert ended["data"]["object"]["status"] == "canceled"

    c = await client.v1.checkout.sessions.create_async(params=subscription_params())
    sub_c = fake.complete_session(c.id)["data"]["object"]["subscription"]
    assert fake.cancel_subscription(sub_c)["type"] == "customer.subscription.deleted"


# ------------------------------------------------------------------ refunds


async def test_refund_event_traces_back_to_payment_intent(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    session = await client.v1.checkout.sessions.create_async(params=payment_params(3000))
    pi_id = fake.complete_session(session.id)["data"]["object"]["payment_intent"]

    partial = fake.refund(pi_id, amount=1000)
    assert partial["type"] == "charge.refunded"
    charge = partial["data"]["object"]
    assert charge["payment_intent"] == pi_id
    assert (charge["amount_refunded"], charge["refunded"]) == (1000, False)
    assert partial["data"]["previous_attributes"] == {"amount_refunded": 0}
    # How the bot finds the order: payment_intent -> session (metadata lives there).
    found = await client.v1.checkout.sessions.list_async(params={"payment_intent": pi_id})
    assert found.data[0].metadata is not None
    assert found.data[0].metadata["order_id"] == "17"

    full = fake.refund(charge["id"])
    assert (full["data"]["object"]["amount_refunded"], full["data"]["object"]["refunded"]) == (
        3000,
        True,
    )
    fetched = await client.v1.charges.retrieve_async(charge["id"], params={"expand": ["refunds"]})
    assert fetched.refunded is True
    assert fetched.refunds is not None
    assert [r.amount for r in fetched.refunds.data] == [2000, 1000]
    with pytest.raises(ValueError, match="greater than"):
        fake.refund(pi_id, amount=1)
