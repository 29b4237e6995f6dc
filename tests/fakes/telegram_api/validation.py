"""Request decoding (form, multipart, JSON, GET) and reply-markup validation as Telegram does it."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from .constants import (
    _BOOL_PARAMS,
    _INT_PARAMS,
    _JSON_PARAMS,
    INLINE_BUTTON_ACTIONS,
    MAX_CALLBACK_DATA_BYTES,
)
from .records import JSONDict, bad_request


async def _read_params(request: web.Request) -> JSONDict:
    raw: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        content_type = request.content_type
        if content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise bad_request("can't parse JSON object") from None
            if not isinstance(body, dict):
                raise bad_request("can't parse JSON object")
            raw.update(body)
        elif content_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    raw[key] = {"file_name": value.filename, "size": len(value.file.read())}
                else:
                    raw[key] = value
    return {key: _decode_value(key, value) for key, value in raw.items()}


def _decode_value(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if key in _JSON_PARAMS:
        try:
            return json.loads(value)
        except ValueError:
            return value
    if key in _INT_PARAMS:
        return _maybe_int(value)
    if key in _BOOL_PARAMS:
        return value.strip().lower() in {"true", "1", "yes"}
    return value


def _maybe_int(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return value


def _as_int(value: Any, name: str, *, default: int) -> int:
    if value is None or value == "":
        return default
    value = _maybe_int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f'field "{name}" must be of type Integer')
    return int(value)


def _reply_target(params: JSONDict) -> tuple[int, bool] | None:
    parameters = params.get("reply_parameters")
    if isinstance(parameters, dict) and "message_id" in parameters:
        return int(parameters["message_id"]), bool(
            parameters.get("allow_sending_without_reply", False)
        )
    legacy = params.get("reply_to_message_id")
    if isinstance(legacy, int):
        return legacy, bool(params.get("allow_sending_without_reply", False))
    return None


def _set_inline_markup(message: JSONDict, inline: JSONDict | None) -> None:
    if inline is None:
        message.pop("reply_markup", None)
    else:
        message["reply_markup"] = inline


def _parse_reply_markup(
    value: Any, *, inline_only: bool
) -> tuple[JSONDict | None, JSONDict | None]:
    """Validate ``reply_markup`` like Telegram: (markup as sent, inline keyboard or None)."""
    if value is None or value == "":
        return None, None
    if isinstance(value, str):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if not isinstance(value, dict):
        raise bad_request("object expected as reply markup")
    if "inline_keyboard" in value:
        return value, _validate_inline_keyboard(value)
    if inline_only:
        raise bad_request("inline keyboard expected")
    if "keyboard" in value:
        rows = value["keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad_request(
                'field "keyboard" of the ReplyKeyboardMarkup should be an Array of Arrays'
            )
        for button in (b for row in rows for b in row):
            if isinstance(button, dict):
                if not isinstance(button.get("text"), str):
                    raise bad_request(
                        'can\'t parse keyboard button: Field "text" must be of type String'
                    )
            elif not isinstance(button, str):
                raise bad_request(
                    "can't parse keyboard button: KeyboardButton should be a String or an Object"
                )
        return value, None
    if value.get("remove_keyboard") is True or value.get("force_reply") is True:
        return value, None
    raise bad_request("can't parse reply keyboard markup JSON object")


def _validate_inline_keyboard(markup: JSONDict) -> JSONDict:
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise bad_request(
            'field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
        )
    for button in (b for row in rows for b in row):
        prefix = "can't parse inline keyboard button: "
        if not isinstance(button, dict):
            raise bad_request(prefix + "InlineKeyboardButton should be an Object")
        if "text" not in button:
            raise bad_request(prefix + 'Can\'t find field "text"')
        if not isinstance(button["text"], str):
            raise bad_request(prefix + 'Field "text" must be of type String')
        actions = [a for a in INLINE_BUTTON_ACTIONS if button.get(a) not in (None, "")]
        if not actions:
            raise bad_request(prefix + "Text buttons are unallowed in the inline keyboard")
        data = button.get("callback_data")
        if data is not None and (
            not isinstance(data, str) or len(data.encode("utf-8")) > MAX_CALLBACK_DATA_BYTES
        ):
            raise bad_request("BUTTON_DATA_INVALID")
        url = button.get("url")
        if url is not None and (
            not isinstance(url, str)
            or re.fullmatch(r"(?i)(?:(?:https?|tg)://)?[^\s/?#]+[^\s]*", url) is None
        ):
            raise bad_request("BUTTON_URL_INVALID")
    return {"inline_keyboard": rows}


def _error_response(
    status: int, description: str, parameters: JSONDict | None = None
) -> web.Response:
    body: JSONDict = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)


def _utf16_slice(text: str, offset: int, length: int) -> str:
    encoded = text.encode("utf-16-le")
    return encoded[offset * 2 : (offset + length) * 2].decode("utf-16-le", "replace")


def _copy(value: JSONDict) -> JSONDict:
    copied: JSONDict = json.loads(json.dumps(value))
    return copied


def _short(params: JSONDict) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return text if len(text) <= 120 else text[:117] + "..."
