"""The composition root's small decisions: where Stripe sends a payer back, and how a
webhook delivery is counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.payments import EventHandled, EventResult
from partnerbot.config import load_settings
from partnerbot.runner import webhook_label
from partnerbot.wiring import success_url
from payments.webhook import Refused


@pytest.mark.parametrize(
    ("toml", "bot_username", "expected"),
    [
        ('[stripe]\nsuccess_url = "https://example.com/thanks"\n', "acme_bot",
         "https://example.com/thanks"),
        ("", "acme_bot", "https://t.me/acme_bot"),
        ("", None, "https://t.me/"),
    ],
)
def test_the_payer_goes_back_to_the_configured_page_else_the_bots_chat(
    tmp_path: Path, toml: str, bot_username: str | None, expected: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(toml, encoding="utf-8")
    assert success_url(load_settings(config, environ={}), bot_username) == expected


@pytest.mark.parametrize(
    ("result", "label"),
    [
        (EventHandled(EventResult.CREDITED), "credited"),
        (EventHandled(EventResult.CREDITED, duplicate=True), "duplicate"),
        (EventHandled(EventResult.IGNORED), "ignored"),
        (Refused.BAD_SIGNATURE, "invalid signature"),
        (Refused.FAILED, "error"),
    ],
)
def test_a_webhook_is_counted_by_what_it_did(
    result: EventHandled | Refused, label: str
) -> None:
    assert webhook_label(result) == label
