"""Typed callback data: one encoder, one parser.

Telegram allows 64 bytes of callback_data. Every payload here is ASCII with small
integers, and `encode` refuses anything longer, so a button can never be rejected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from core.model import MAX_ID

MAX_BYTES = 64
_VERSION = "1"
# Clients choose callback_data, so a forged field may be anything, including an id
# larger than a row can have (binding it would raise OverflowError).
_FIELD = re.compile(r"[0-9]{1,19}")  # ASCII only: str.isdigit() also takes "²"


class ListKind(StrEnum):
    CHANNELS = "ch"
    HISTORY = "hi"
    PARTNERS = "pa"
    INVOICES = "in"


@dataclass(frozen=True, slots=True)
class Page:
    """Show page `page` of a list (for history, `page` is the id to read before)."""

    kind: ListKind
    partner_id: int  # 0 where the list is not a partner's (all partners)
    page: int


@dataclass(frozen=True, slots=True)
class ConfirmDelete:
    """Delete a channel if its active_until is still `until_us` (0: never active)."""

    partner_id: int
    channel_id: int
    until_us: int


@dataclass(frozen=True, slots=True)
class CancelDelete:
    partner_id: int
    channel_id: int


@dataclass(frozen=True, slots=True)
class Noop:
    """A button that only labels (e.g. "page 2/5")."""


Callback = Page | ConfirmDelete | CancelDelete | Noop


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def stamp(instant: datetime | None) -> int:
    """An instant as whole microseconds since the epoch; 0 for none."""
    return 0 if instant is None else (instant - _EPOCH) // _US


_MAX_STAMP = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _US


def unstamp(value: int) -> datetime | None:
    return None if value == 0 else _EPOCH + value * _US


class BadCallback(ValueError):
    """Data this bot did not make (or made by an older version)."""


def encode(cb: Callback) -> str:
    match cb:
        case Page(kind, partner_id, page):
            parts = ["p", kind.value, str(partner_id), str(page)]
        case ConfirmDelete(partner_id, channel_id, until_us):
            parts = ["d", str(partner_id), str(channel_id), str(until_us)]
        case CancelDelete(partner_id, channel_id):
            parts = ["k", str(partner_id), str(channel_id)]
        case Noop():
            parts = ["n"]
    data = ":".join([_VERSION, *parts])
    if len(data.encode()) > MAX_BYTES:
        raise ValueError(f"callback data over {MAX_BYTES} bytes: {data!r}")
    return data


def _ints(fields: list[str], count: int) -> list[int]:
    if len(fields) != count or not all(_FIELD.fullmatch(f) for f in fields):
        raise BadCallback("malformed")
    values = [int(f) for f in fields]
    if max(values) > MAX_ID:
        raise BadCallback("id out of range")
    return values


def parse(data: str | None) -> Callback:
    if not data:
        raise BadCallback("empty")
    version, _, rest = data.partition(":")
    if version != _VERSION:
        raise BadCallback("unknown version")
    tag, *fields = rest.split(":")
    if tag == "p" and fields:
        try:
            kind = ListKind(fields[0])
        except ValueError as exc:
            raise BadCallback("unknown list") from exc
        partner_id, page = _ints(fields[1:], 2)
        return Page(kind, partner_id, page)
    if tag == "d":
        partner_id, channel_id, until_us = _ints(fields, 3)
        if until_us > _MAX_STAMP:
            raise BadCallback("instant out of range")  # past the year 9999
        return ConfirmDelete(partner_id, channel_id, until_us)
    if tag == "k":
        return CancelDelete(*_ints(fields, 2))
    if tag == "n" and not fields:
        return Noop()
    raise BadCallback("unknown kind")
