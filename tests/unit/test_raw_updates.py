"""bot.gate.RawUpdates: the poller records updates as Telegram sent them, not re-encoded."""

from __future__ import annotations

import json

from telegram import Update

from bot.gate import FloodGate, RawUpdates, UpdatesRequest
from bot.limits import FloodLimiter, FloodLimits
from tests.conftest import FakeClock


def message(update_id: int, user_id: int, text: str) -> dict[str, object]:
    user = {"id": user_id, "is_bot": False, "first_name": "Ann"}
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id, "date": 1_800_000_000, "text": text,
            "chat": {"id": user_id, "type": "private", "first_name": "Ann"}, "from": user,
        },
    }


def request(raw: RawUpdates) -> UpdatesRequest:
    gate = FloodGate(FloodLimiter(FakeClock(), FloodLimits()), frozenset(), lambda _: None)
    return UpdatesRequest(gate, raw)


def test_each_update_of_an_answer_is_kept_as_received() -> None:
    raw = RawUpdates()
    sent = [message(7, 1, "/balance ünïcode"), message(8, 2, "hi")]
    answer = request(raw).parse_json_payload(json.dumps({"ok": True, "result": sent}).encode())
    assert [u["update_id"] for u in answer["result"]] == [7, 8]
    for original in sent:
        update = Update.de_json(original, None)
        stored = raw.payload(update)
        assert json.loads(stored) == original  # every field Telegram sent, none added
        assert stored != update.to_json()  # not python-telegram-bot's re-encoding
        assert Update.de_json(json.loads(stored), None) == update  # replays the same update


def test_the_next_answer_replaces_the_last_and_others_are_re_encoded() -> None:
    raw = RawUpdates()
    req = request(raw)
    req.parse_json_payload(json.dumps({"ok": True, "result": [message(7, 1, "a")]}).encode())
    req.parse_json_payload(json.dumps({"ok": True, "result": [message(9, 1, "b")]}).encode())
    assert set(raw.latest) == {9}
    earlier = Update.de_json(message(7, 1, "a"), None)
    assert raw.payload(earlier) == earlier.to_json()


def test_an_error_answer_keeps_nothing() -> None:
    raw = RawUpdates()
    request(raw).parse_json_payload(b'{"ok": false, "error_code": 502, "description": "x"}')
    assert raw.latest == {}
