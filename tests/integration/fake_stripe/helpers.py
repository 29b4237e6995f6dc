"""Parameters partnerbot sends, and readers of what Stripe answers, shared by the fake
Stripe tests."""

from __future__ import annotations

from typing import Any, Literal

import stripe
from stripe.params.checkout import SessionCreateParams

WHSEC = "whsec_test_partnerbot"


def payment_params(amount: int = 1500) -> SessionCreateParams:
    """What partnerbot sends for a days purchase."""
    return {
        "mode": "payment",
        "success_url": "https://t.me/partnerbot?start=paid",
        "cancel_url": "https://t.me/partnerbot?start=cancel",
        "client_reference_id": "order-17",
        "metadata": {"partner_id": "42", "order_id": "17", "days": "30"},
        "payment_intent_data": {"metadata": {"order_id": "17"}},
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": "usd",
                    "unit_amount": amount,
                    "product_data": {"name": "30 days"},
                },
            }
        ],
    }


def subscription_params(interval: Literal["month", "year"] = "month") -> SessionCreateParams:
    return {
        "mode": "subscription",
        "success_url": "https://t.me/partnerbot?start=sub",
        "metadata": {"partner_id": "42", "channel_id": "-100123"},
        "subscription_data": {"metadata": {"partner_id": "42", "channel_id": "-100123"}},
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 990 if interval == "month" else 9900,
                    "recurring": {"interval": interval},
                    "product_data": {"name": "Channel subscription"},
                },
            }
        ],
    }


def error_body(exc: stripe.StripeError) -> dict[str, Any]:
    assert isinstance(exc.json_body, dict)
    error = exc.json_body["error"]
    assert isinstance(error, dict)
    return error


def verify(payload: bytes, headers: dict[str, str]) -> stripe.Event:
    event = stripe.Webhook.construct_event(payload, headers["Stripe-Signature"], WHSEC)
    assert isinstance(event, stripe.Event)
    return event
