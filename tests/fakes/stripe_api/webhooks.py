"""Webhook deliveries signed the way Stripe signs them."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import stripe


def sign_webhook(
    event: Mapping[str, Any] | str | bytes, secret: str, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a webhook delivery signed the way Stripe signs them.

    Uses ``stripe.WebhookSignature.generate_signature_header`` (HMAC-SHA256 over
    ``f"{t}.{payload}"`` with the endpoint secret, header ``t=...,v1=...``).
    """
    if isinstance(event, bytes):
        payload = event.decode("utf-8")
    elif isinstance(event, str):
        payload = event
    else:
        payload = json.dumps(event, indent=2)  # Stripe sends pretty-printed JSON
    header = stripe.WebhookSignature.generate_signature_header(
        payload, secret, timestamp=int(time.time()) if timestamp is None else timestamp
    )
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": header,
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "Cache-Control": "no-cache",
    }
    return payload.encode("utf-8"), headers
