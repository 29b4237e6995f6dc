"""core.ports.PaymentGateway over the official Stripe client (StripeClient, async calls).

Stripe errors are translated here, at the boundary: whatever goes wrong becomes
PaymentUnavailable, with a reason that names no secret.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

import stripe

from core.errors import PaymentUnavailable
from core.model import CheckoutLink, CheckoutMode, CheckoutRequest, SessionState
from payments.events import session_state

log = logging.getLogger(__name__)


def _reason(exc: stripe.StripeError) -> str:
    if isinstance(exc, stripe.APIConnectionError):
        return "Stripe did not answer in time"
    if isinstance(exc, stripe.AuthenticationError):
        return "Stripe refused the API key (stripe.api_key)"
    if isinstance(exc, stripe.RateLimitError):
        return "Stripe is rate limiting us"
    status = getattr(exc, "http_status", None)
    return f"Stripe answered {status or 'an error'}"


def idempotency_key(order_id: int, params: dict[str, Any]) -> str:
    """The same request for the same order gets the same session back (retries, a lost
    answer). A later attempt at a link asks for something else (a new `expires_at`), and
    Stripe refuses a key reused with other parameters, so the parameters are in the key."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:24]
    return f"partnerbot-order-{order_id}-checkout-{digest}"


class StripeGateway:
    def __init__(
        self,
        api_key: str,
        *,
        api_base: str = "https://api.stripe.com",
        success_url: Callable[[], str],
        timeout_seconds: float = 20.0,
        max_network_retries: int = 2,
    ) -> None:
        self._http = stripe.HTTPXClient(timeout=timeout_seconds)
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base},
            http_client=self._http,
            # Retries resend a POST with the same Idempotency-Key: safe by design.
            max_network_retries=max_network_retries,
        )
        # Asked per checkout: where the payer lands may be known only once the bot has
        # started (its username, from getMe); partnerbot/wiring.py decides it.
        self.success_url = success_url

    def checkout_params(self, request: CheckoutRequest) -> dict[str, Any]:
        order = request.order
        metadata = {
            "partner_id": str(order.partner_id),
            "order_id": str(order.id),
            "days": str(order.days),
            "kind": order.kind.value,
        }
        price_data: dict[str, Any] = {
            "currency": order.currency,
            "unit_amount": order.amount,
            "product_data": {"name": request.description[:250]},
        }
        params: dict[str, Any] = {
            "mode": request.mode.value,
            "line_items": [{"quantity": 1, "price_data": price_data}],
            "metadata": metadata,
            "client_reference_id": f"order-{order.id}",
            "expires_at": int(request.expires_at.timestamp()),
            "success_url": self.success_url(),
        }
        if request.mode is CheckoutMode.SUBSCRIPTION:
            price_data["recurring"] = {"interval": request.interval or "month"}
            metadata["channel_id"] = str(order.channel_id)
            metadata["interval"] = request.interval or "month"
            # Reaches every invoice of the subscription (parent.subscription_details).
            params["subscription_data"] = {"metadata": dict(metadata)}
        else:
            # Session metadata does not reach the PaymentIntent; this does, which helps
            # an operator reading Stripe's dashboard. Refunds are matched by PI id.
            params["payment_intent_data"] = {"metadata": dict(metadata)}
        return params

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutLink:
        params = self.checkout_params(request)
        try:
            session = await self.client.v1.checkout.sessions.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key(request.order.id, params)},
            )
        except stripe.StripeError as exc:
            log.warning("checkout for order %s failed: %s", request.order.id, _reason(exc))
            raise PaymentUnavailable(_reason(exc)) from exc
        if not session.url:
            raise PaymentUnavailable("Stripe returned a session without a payment URL")
        return CheckoutLink(provider_ref=session.id, url=session.url)

    async def session_state(self, provider_ref: str) -> SessionState:
        try:
            session = await self.client.v1.checkout.sessions.retrieve_async(provider_ref)
        except stripe.StripeError as exc:
            raise PaymentUnavailable(_reason(exc)) from exc
        return session_state(session.to_dict())

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]
