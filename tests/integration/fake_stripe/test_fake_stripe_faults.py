"""The fake Stripe server's injected faults (errors, hangs, dropped connections) as the
real stripe-python client meets them, and webhook deliveries."""

from __future__ import annotations

import json

import httpx
import pytest
import stripe

from tests.fakes.stripe_api import FakeStripe
from tests.integration.fake_stripe.helpers import WHSEC, error_body, payment_params

# stripe's HTTPXClient passes the form body as `data=<str>`, which httpx deprecates.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)


# ------------------------------------------------------------------ faults


async def test_injected_500_surfaces_as_api_error(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    fake.fail_next(path="/v1/checkout/sessions", method="POST")
    with pytest.raises(stripe.APIError) as err:
        await client.v1.checkout.sessions.create_async(params=payment_params())
    assert err.value.http_status == 500
    assert error_body(err.value)["type"] == "api_error"
    assert fake.requests[-1].fault == "error"

    # stripe retries a 500 with the same Idempotency-Key; one session results.
    retrying = fake.make_client(timeout=5.0, max_network_retries=1)
    fake.fail_next(path="/v1/checkout/sessions")
    session = retrying.v1.checkout.sessions.create(params=payment_params())
    attempts = fake.requests_to("/v1/checkout/sessions", "POST")[-2:]
    assert attempts[0].idempotency_key == attempts[1].idempotency_key
    assert [a.status for a in attempts] == [500, 200]
    assert [s.id for s in (await client.v1.checkout.sessions.list_async()).data] == [session.id]


async def test_hang_triggers_client_timeout(fake: FakeStripe) -> None:
    impatient = fake.make_client(timeout=0.3)
    fake.hang_next(60.0, path="/v1/checkout/sessions/*")  # far longer than the client waits
    with pytest.raises(stripe.APIConnectionError) as err:
        await impatient.v1.checkout.sessions.retrieve_async("cs_test_whatever")
    # The client's own timeout ended the wait (the fake would drop the connection only
    # after 60 s, which surfaces as another error); the fake never answered.
    assert isinstance(err.value.__cause__, httpx.TimeoutException)
    assert (fake.requests[-1].fault, fake.requests[-1].status) == ("hang", None)

    # A lost response: executed, then the reply never arrives in time. Retrying with
    # the same idempotency key returns the session that was created.
    fake.hang_next(3.0, method="POST", process="before")
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.checkout.sessions.create(
            params=payment_params(), options={"idempotency_key": "lost-1"}
        )
    replay = impatient.v1.checkout.sessions.create(
        params=payment_params(), options={"idempotency_key": "lost-1"}
    )
    listed = impatient.v1.checkout.sessions.list()
    assert [s.id for s in listed.data] == [replay.id]


async def test_dropped_connection(fake: FakeStripe, client: stripe.StripeClient) -> None:
    fake.drop_next(2)
    with pytest.raises(stripe.APIConnectionError):
        await client.v1.checkout.sessions.list_async()
    with pytest.raises(stripe.APIConnectionError):
        client.v1.checkout.sessions.list()
    assert (await client.v1.checkout.sessions.list_async()).data == []
    assert [r.fault for r in fake.requests] == ["drop", "drop", None]


async def test_deliver_webhook_posts_signed_event(fake: FakeStripe) -> None:
    from aiohttp import web

    received: list[stripe.Event] = []

    async def endpoint(request: web.Request) -> web.Response:
        payload = await request.read()
        received.append(
            stripe.Webhook.construct_event(payload, request.headers["Stripe-Signature"], WHSEC)
        )
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/stripe/webhook", endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        client = fake.make_client()
        session = await client.v1.checkout.sessions.create_async(params=payment_params())
        event = fake.expire_session(session.id)
        status, text = await fake.deliver_webhook(
            event, f"http://127.0.0.1:{port}/stripe/webhook", WHSEC
        )
    finally:
        await runner.cleanup()
    assert (status, text) == (200, "ok")
    assert received[0].type == "checkout.session.expired"
    assert json.loads(json.dumps(received[0].to_dict()))["data"]["object"]["status"] == "expired"
