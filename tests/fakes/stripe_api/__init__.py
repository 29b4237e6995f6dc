"""A Stripe-speaking fake API server for integration tests (no internet needed).

``FakeStripe`` runs an ``aiohttp.web`` server on ``127.0.0.1`` (free port) in a
background thread with its own event loop, so the *real* stripe-python client can
talk to it with its synchronous methods (``requests``) as well as with its async
``*_async`` methods (``httpx``) from any thread or event loop, and tests can drive
it through plain Python methods ("test controls").

Pointing stripe 16.x at the fake
--------------------------------
``StripeClient`` takes ``base_addresses={"api": <url>}``; the URL is used verbatim
as the prefix of every v1 path (``/v1/...``), ``http://`` is fine::

    async with FakeStripe() as fake:           # or: with FakeStripe() as fake:
        client = stripe.StripeClient(
            fake.api_key,                        # "sk_test_..." checked as Bearer token
            base_addresses={"api": fake.base_url},   # "http://127.0.0.1:<port>"
            http_client=stripe.HTTPXClient(timeout=5.0, allow_sync_methods=True),
            max_network_retries=0,
        )
        session = await client.v1.checkout.sessions.create_async(params={...})
        same = client.v1.checkout.sessions.retrieve(session.id)

``fake.make_client(timeout=..., max_network_retries=...)`` builds exactly that and
closes the HTTPX clients when the ``async with`` block ends.

HTTP-client facts of stripe 16.1 (read from ``stripe/_http_client.py``):

* Without ``http_client`` StripeClient uses ``RequestsClient(timeout=80)`` for sync
  calls with an ``HTTPXClient(timeout=80)`` as *async fallback* (httpx and anyio are
  installed), so ``StripeClient(key, base_addresses={"api": fake.base_url})`` alone
  supports sync and async calls, with an 80 s timeout.
* ``stripe.HTTPXClient(timeout=..., allow_sync_methods=True)`` serves both sync and
  async calls from one object; without ``allow_sync_methods`` sync calls raise.
  Its ``httpx.AsyncClient`` binds to the event loop that first uses it: create one
  per test/loop and ``await http_client.close_async()`` afterwards.
* ``stripe.RequestsClient(timeout=..., async_fallback_client=stripe.HTTPXClient(
  timeout=...))`` is the explicit form of the default.
* ``stripe.AIOHTTPClient`` is async-only.
* ``max_network_retries`` defaults to ``None`` on StripeClient, which the HTTP client
  treats as 0 retries. With retries, stripe re-sends POSTs with the *same*
  ``Idempotency-Key`` (stripe generates one for every POST) and retries 409/5xx and
  connection errors; timeouts and dropped connections raise
  ``stripe.APIConnectionError``.
* Timeouts / dropped connections surface as ``stripe.APIConnectionError``; HTTP 500
  as ``stripe.APIError``; 400/404 as ``stripe.InvalidRequestError`` (or
  ``stripe.IdempotencyError`` for ``type=idempotency_error``); 401 as
  ``stripe.AuthenticationError``.

Call style in v16: ``client.v1.checkout.sessions.create(params={...},
options={"idempotency_key": "..."})``, ``.retrieve(id, params={"expand": [...]})``,
``.list(params={"status": "open"})``, ``.expire(id)``; subscriptions:
``client.v1.subscriptions.retrieve/update/cancel``; every method has an ``*_async``
twin. Webhooks: ``stripe.Webhook.construct_event(body, sig_header, secret)`` or
``client.construct_event(...)``.

What the fake checks like Stripe does
-------------------------------------
* ``Authorization: Bearer <key>`` (or Basic with the key as user); a wrong or
  missing key is answered with 401 and Stripe's error JSON. ``Stripe-Version`` is
  recorded (malformed values are refused).
* ``Idempotency-Key`` on POST: same key + same endpoint + same parameters replays
  the stored response (``Idempotent-Replayed: true``); same key with other
  parameters or another endpoint gives 400 ``idempotency_error``. As on Stripe,
  nothing is stored for requests refused by validation or failed by injected faults.
* Parameters are form-decoded from Stripe's bracket notation and validated against
  stripe-python's own ``stripe.params`` TypedDicts (walked recursively: required
  keys, nested TypedDicts, ``List[...]``, ``Dict[str, str]`` metadata, ``Literal``
  enums, int/bool/decimal). Unknown parameters: 400 ``parameter_unknown``; missing
  required ones: 400 ``parameter_missing``; plus Checkout business rules (``mode``
  and ``line_items`` required, ``price_data`` needs an amount, ``quantity``,
  ``product``/``product_data``; one currency; recurring prices only in
  subscription mode; Stripe's minimum/maximum charge amounts for ``mode=payment``;
  ``expires_at`` 30 min .. 24 h; ``payment_intent_data``/``subscription_data``/
  ``customer_creation`` only in their mode; metadata limits).

Not faithful (known gaps)
-------------------------
* Only the endpoints in ``server._ROUTES`` exist; objects are built for API version
  ``stripe.api_version`` whatever ``Stripe-Version`` the client sends.
* No Price/Product/PaymentMethod endpoints: ``line_items[][price]`` and
  ``price_data[product]`` are answered with ``resource_missing``. Parameters that
  would change amounts or objects the fake does not model (trials, discounts,
  automatic tax, shipping options, optional items, invoice creation, setup mode)
  are refused with 400 ``code=fake_unsupported`` rather than silently ignored.
* Event ordering: controls record every event Stripe would send (``fake.events``)
  in one plausible order; Stripe does not guarantee any order.
* Error messages for business rules are close to but not always word-for-word
  Stripe's. Idempotency keys never expire and concurrent requests with one key are
  not answered with 409. Currency list and minimum amounts only cover common
  currencies.
* ``expand`` works for IDs of objects the fake stores (sessions, payment intents,
  charges, customers, subscriptions, invoices, refunds, prices) and for the
  includables ``line_items`` (session), ``refunds`` (charge), ``payments``
  (invoice); ``pm_``/``txn_`` IDs cannot be expanded.
* Charges copy the PaymentIntent's metadata; subscription invoices get a
  PaymentIntent/Charge/InvoicePayment each (``GET /v1/invoice_payments`` finds the
  invoice of a refunded subscription charge).

Layout (each layer a class the next one extends; ``FakeStripe`` is the last)
-------------------------------------------------------------------------------
* ``records``: shared value types (JSON, ids, recorded requests, faults).
* ``errors``: Stripe's error bodies. ``currencies``: Stripe's published minimum and
  maximum charge amounts. ``validation``: form decoding and parameter checks.
  ``webhooks``: signing deliveries.
* ``objects`` (``StripeObjects``): state, storage, lists, ``expand``, resource builders.
* ``billing`` (``StripeBilling``): subscriptions, periods and invoices.
* ``endpoints`` (``StripeEndpoints``): one ``_h_*`` method per API endpoint.
* ``server`` (``StripeServer``): the HTTP server thread, faults, auth, idempotency, routes.
* ``controls`` (``FakeStripe``): the test-side API (inspection, faults, customer actions).
"""

from __future__ import annotations

from .controls import FakeStripe
from .currencies import MAX_CHARGE, MIN_CHARGE
from .errors import StripeHTTPError
from .records import API_VERSION, JSON, RecordedRequest
from .validation import decode_form, listify, schema_for
from .webhooks import sign_webhook

__all__ = [
    "API_VERSION",
    "JSON",
    "MAX_CHARGE",
    "MIN_CHARGE",
    "FakeStripe",
    "RecordedRequest",
    "StripeHTTPError",
    "decode_form",
    "listify",
    "schema_for",
    "sign_webhook",
]
