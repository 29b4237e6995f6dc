"""Routing and server: the aiohttp app on 127.0.0.1 in its own thread, request records,
injected faults, authentication, idempotency keys and the route table.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import re
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any, Self, TypeAlias, cast
from urllib.parse import parse_qsl

import stripe
from aiohttp import web
from stripe import params as stripe_params
from stripe.params import checkout as checkout_params

from .endpoints import StripeEndpoints
from .errors import StripeHTTPError
from .records import API_VERSION, JSON, RecordedRequest, _Ctx, _Fault, _new_id, _Response
from .validation import _validate, decode_form, listify, schema_for


class StripeServer(StripeEndpoints):
    """The aiohttp server thread, authentication, idempotency, faults and routing."""

    # ----------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeStripe is not running")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` for ``base_addresses={"api": ...}``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("FakeStripe already started")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="fake-stripe", daemon=True
        )
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("FakeStripe did not start within 10 s")
        if self._startup_error is not None:
            raise RuntimeError("FakeStripe failed to start") from self._startup_error

    def stop(self) -> None:
        for client in self._http_clients:
            cast(Any, client).close()  # untyped in stripe
        if self._thread is None:
            return
        loop, shutdown = self._loop, self._shutdown
        if loop is not None and shutdown is not None and not loop.is_closed():
            loop.call_soon_threadsafe(shutdown.set)
        self._thread.join(10)
        self._thread = None
        self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self._http_clients:
            await cast(Any, client).close_async()  # untyped in stripe
        await asyncio.to_thread(self.stop)

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as exc:  # surfaced by start()
            self._startup_error = exc
            ready.set()
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._shutdown = asyncio.Event()
        app = web.Application(client_max_size=2**20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", 0))
                site = web.SockSite(runner, sock)
                await site.start()
            except BaseException:
                sock.close()
                raise
            self._port = int(sock.getsockname()[1])
            ready.set()
            await self._shutdown.wait()
        finally:
            await runner.cleanup()

    def make_client(
        self,
        *,
        timeout: float = 5.0,
        max_network_retries: int = 0,
        api_key: str | None = None,
    ) -> stripe.StripeClient:
        """A real ``StripeClient`` aimed at this fake (sync and async methods work).

        The HTTPX client is closed when the fake's ``with``/``async with`` ends; with
        ``async with`` its async half is closed in the caller's loop.
        """
        http_client = stripe.HTTPXClient(timeout=timeout, allow_sync_methods=True)
        self._http_clients.append(http_client)
        return stripe.StripeClient(
            api_key or self.api_key,
            base_addresses={"api": self.base_url},
            http_client=http_client,
            max_network_retries=max_network_retries,
        )

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.matches(method, path):
                fault.remaining -= 1
                return fault
        return None

    # --------------------------------------------------------- HTTP plumbing

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        method = request.method.upper()
        pairs = parse_qsl(request.query_string, keep_blank_values=True)
        if body:
            pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        tree = decode_form(pairs)
        headers = {k: v for k, v in request.headers.items()}
        record = RecordedRequest(
            method=method,
            path=request.path,
            params=listify(tree),
            headers=headers,
            idempotency_key=request.headers.get("Idempotency-Key"),
            stripe_version=request.headers.get("Stripe-Version"),
            request_id=_new_id("req_", 14),
        )
        with self._lock:
            self._requests.append(record)
            fault = self._take_fault(method, request.path)
        if fault is not None:
            record.fault = fault.kind

        if fault is None:
            response = self._dispatch(method, request.path, headers, tree, record)
        elif fault.kind == "error":
            response = self._fault_response(fault.status)
        else:
            response = None
            if fault.process == "before":
                response = self._dispatch(method, request.path, headers, tree, record)
            if fault.kind == "hang":
                await self._sleep(fault.seconds)
                if fault.process == "after":
                    response = self._dispatch(method, request.path, headers, tree, record)
            if fault.kind == "drop" or fault.process == "never":
                transport = request.transport
                if transport is not None:
                    transport.abort()
                raise asyncio.CancelledError  # nothing to send: the socket is gone
        assert response is not None
        status, payload, extra = response
        record.status = status
        out_headers = {
            "Request-Id": record.request_id,
            "Stripe-Version": record.stripe_version or API_VERSION,
            "Cache-Control": "no-cache, no-store",
            **extra,
        }
        return web.Response(
            status=status,
            body=json.dumps(payload, indent=2).encode(),
            content_type="application/json",
            headers=out_headers,
        )

    async def _sleep(self, seconds: float) -> None:
        assert self._shutdown is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._shutdown.wait(), timeout=seconds)

    @staticmethod
    def _fault_response(status: int) -> _Response:
        if status == 429:
            err = StripeHTTPError(
                "Request rate limit exceeded. You can learn more about rate limits here "
                "https://stripe.com/docs/rate-limits.",
                code="rate_limit",
                status=429,
            )
        else:
            err = StripeHTTPError(
                "An unknown error occurred", status=status, type_="api_error"
            )
        return status, err.body(), {}

    def _dispatch(
        self, method: str, path: str, headers: Mapping[str, str], tree: JSON,
        record: RecordedRequest,
    ) -> _Response:  # fmt: skip
        try:
            return self._dispatch_inner(method, path, headers, tree, record)
        except StripeHTTPError as exc:
            return exc.status, exc.body(), {}
        except Exception as exc:  # a bug in the fake: answer like Stripe, keep it visible
            with self._lock:
                self.internal_errors.append(exc)
            err = StripeHTTPError(
                f"FakeStripe internal error: {exc!r}", status=500, type_="api_error"
            )
            return 500, err.body(), {}

    def _authenticate(self, headers: Mapping[str, str]) -> str:
        auth = headers.get("Authorization", "")
        key: str | None = None
        if auth.startswith("Bearer "):
            key = auth[len("Bearer ") :].strip()
        elif auth.startswith("Basic "):
            try:
                key = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
            except ValueError:
                key = None
        if not key:
            raise StripeHTTPError(
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for "
                "details, or we can help at https://support.stripe.com/.",
                status=401,
            )
        if key != self.api_key:
            raise StripeHTTPError(
                f"Invalid API Key provided: {key[:8]}{'*' * 12}{key[-4:]}", status=401
            )
        return key

    def _dispatch_inner(
        self, method: str, path: str, headers: Mapping[str, str], tree: JSON,
        record: RecordedRequest,
    ) -> _Response:  # fmt: skip
        version = headers.get("Stripe-Version")
        if version is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}(\.[a-z]+)?", version):
            raise StripeHTTPError(f"Invalid Stripe API version: {version}")
        key = self._authenticate(headers)
        handler, path_args, params_type = self._route(method, path)
        ctx = _Ctx(record.request_id, record.idempotency_key if method == "POST" else None)
        canonical = json.dumps(tree, sort_keys=True)
        with self._lock:
            if ctx.idempotency_key is not None:
                stored = self._idempotency.get((key, ctx.idempotency_key))
                if stored is not None:
                    s_method, s_path, s_params, s_response = stored
                    if (s_method, s_path) != (method, path):
                        raise StripeHTTPError(
                            "Keys for idempotent requests can only be used for the same "
                            "endpoint they were first used for "
                            f"('{s_method} {s_path}' vs '{method} {path}'). Try using a "
                            "key other than "
                            f"'{ctx.idempotency_key}' if you meant to execute a different "
                            "request.",
                            type_="idempotency_error",
                        )
                    if s_params != canonical:
                        raise StripeHTTPError(
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with. Try using a key other "
                            f"than '{ctx.idempotency_key}' if you meant to execute a "
                            "different request.",
                            type_="idempotency_error",
                        )
                    status, payload, extra = s_response
                    return status, copy.deepcopy(payload), {
                        **extra,
                        "Idempotent-Replayed": "true",
                    }
            params = _validate(schema_for(params_type), tree, "")
            expand = params.pop("expand", None) or []
            result = handler(self, params, path_args, ctx)
            result = self._expand(result, expand)
            extra = {"Original-Request": ctx.request_id}
            if ctx.idempotency_key is not None:
                extra["Idempotency-Key"] = ctx.idempotency_key
                self._idempotency[(key, ctx.idempotency_key)] = (
                    method, path, canonical, (200, copy.deepcopy(result), dict(extra)),
                )  # fmt: skip
            return 200, result, extra

    def _route(self, method: str, path: str) -> tuple[_Handler, dict[str, str], type]:
        for r_method, pattern, handler, params_type in _ROUTES:
            m = pattern.fullmatch(path)
            if m is not None and r_method == method:
                return handler, m.groupdict(), params_type
        raise StripeHTTPError(
            f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
            "or we can help at https://support.stripe.com/.",
            status=404,
        )


_Handler: TypeAlias = "Callable[[StripeEndpoints, JSON, dict[str, str], _Ctx], JSON]"


def _bind(method: Callable[..., JSON]) -> _Handler:
    return cast(_Handler, method)


def _retriever(kind: str, param: str) -> _Handler:
    def handler(fake: StripeEndpoints, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        return fake._find(a["id"], kind, param)

    return handler


_ID = r"(?P<id>[A-Za-z0-9_]+)"
_ROUTES: list[tuple[str, re.Pattern[str], _Handler, type]] = [
    ("POST", re.compile(r"/v1/checkout/sessions"), _bind(StripeEndpoints._h_create_session),
     checkout_params.SessionCreateParams),
    ("GET", re.compile(r"/v1/checkout/sessions"), _bind(StripeEndpoints._h_list_sessions),
     checkout_params.SessionListParams),
    ("GET", re.compile(rf"/v1/checkout/sessions/{_ID}"),
     _bind(StripeEndpoints._h_retrieve_session), checkout_params.SessionRetrieveParams),
    ("GET", re.compile(rf"/v1/checkout/sessions/{_ID}/line_items"),
     _bind(StripeEndpoints._h_session_line_items), checkout_params.SessionListLineItemsParams),
    ("POST", re.compile(rf"/v1/checkout/sessions/{_ID}/expire"),
     _bind(StripeEndpoints._h_expire_session), checkout_params.SessionExpireParams),
    ("GET", re.compile(rf"/v1/payment_intents/{_ID}"),
     _retriever("payment_intent", "intent"),
     stripe_params.PaymentIntentRetrieveParams),
    ("GET", re.compile(rf"/v1/subscriptions/{_ID}"),
     _retriever("subscription", "subscription_exposed_id"),
     stripe_params.SubscriptionRetrieveParams),
    ("DELETE", re.compile(rf"/v1/subscriptions/{_ID}"),
     _bind(StripeEndpoints._h_cancel_subscription), stripe_params.SubscriptionCancelParams),
    ("POST", re.compile(rf"/v1/subscriptions/{_ID}"),
     _bind(StripeEndpoints._h_update_subscription), stripe_params.SubscriptionUpdateParams),
    ("GET", re.compile(rf"/v1/invoices/{_ID}"),
     _retriever("invoice", "invoice"),
     stripe_params.InvoiceRetrieveParams),
    ("GET", re.compile(r"/v1/invoice_payments"), _bind(StripeEndpoints._h_list_invoice_payments),
     stripe_params.InvoicePaymentListParams),
    ("GET", re.compile(rf"/v1/charges/{_ID}"),
     _retriever("charge", "charge"),
     stripe_params.ChargeRetrieveParams),
    ("GET", re.compile(rf"/v1/customers/{_ID}"),
     _retriever("customer", "customer"),
     stripe_params.CustomerRetrieveParams),
    ("GET", re.compile(rf"/v1/refunds/{_ID}"),
     _retriever("refund", "refund"),
     stripe_params.RefundRetrieveParams),
    ("GET", re.compile(r"/v1/events"), _bind(StripeEndpoints._h_list_events),
     stripe_params.EventListParams),
    ("GET", re.compile(rf"/v1/events/{_ID}"), _bind(StripeEndpoints._h_retrieve_event),
     stripe_params.EventRetrieveParams),
]  # fmt: skip
