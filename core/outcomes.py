"""Records of what happened, named in the past tense.

Idempotent operations store their outcome under their key; repeating the key returns
the stored record. The codec below turns these flat records to JSON and back.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar


@dataclass(frozen=True, slots=True)
class ChannelCreated:
    partner_id: int
    channel_id: int
    name: str
    created_at: datetime
    replayed: bool = False  # True when returned for a repeated key


@dataclass(frozen=True, slots=True)
class DaysAllocated:
    partner_id: int
    channel_id: int
    channel_name: str
    days: int
    balance: int  # the partner's balance afterwards
    active_until: datetime
    transfer_id: int
    replayed: bool = False  # True when returned for a repeated key


@dataclass(frozen=True, slots=True)
class ChannelDeleted:
    partner_id: int
    channel_id: int
    channel_name: str
    returned_days: int
    consumed_days: int
    balance: int
    deleted_at: datetime
    replayed: bool = False  # True when returned for a repeated key


@dataclass(frozen=True, slots=True)
class DaysGranted:
    """Support granted (days > 0) or removed (days < 0) days."""

    partner_id: int
    days: int
    balance: int
    reason: str
    transfer_id: int
    replayed: bool = False  # True when returned for a repeated key


@dataclass(frozen=True, slots=True)
class OrderCredited:
    partner_id: int
    order_id: int
    days: int
    balance: int
    transfer_id: int
    replayed: bool = False  # True when returned for a repeated key


@dataclass(frozen=True, slots=True)
class OrderRefunded:
    partner_id: int
    order_id: int
    days: int  # days taken back
    balance: int  # may be negative (rule 11): support is told
    transfer_id: int | None  # None when nothing was left to take back
    replayed: bool = False  # True when returned for a repeated key


@dataclass(frozen=True, slots=True)
class ChannelRenewed:
    partner_id: int
    channel_id: int
    channel_name: str
    days: int
    balance: int
    active_until: datetime
    transfer_id: int
    replayed: bool = False  # True when returned for a repeated key


@dataclass(frozen=True, slots=True)
class SubscriptionPeriodPaid:
    partner_id: int
    channel_id: int
    channel_name: str
    days: int
    active_until: datetime
    transfer_id: int
    replayed: bool = False  # True when returned for a repeated key


Outcome = (
    ChannelCreated
    | DaysAllocated
    | ChannelDeleted
    | DaysGranted
    | OrderCredited
    | OrderRefunded
    | ChannelRenewed
    | SubscriptionPeriodPaid
)
OUTCOME_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls for cls in typing.get_args(Outcome)
}
T = TypeVar("T")
# What json.dumps(..., sort_keys=True, separators=(",", ":")) builds on every call, built
# once: every write of a chat update stores an outcome.
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_STORED_FIELDS: dict[type[Any], tuple[str, ...]] = {}  # by outcome class, "replayed" left out


def _stored_fields(cls: type[Any]) -> tuple[str, ...]:
    names = _STORED_FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls) if f.name != "replayed")
        _STORED_FIELDS[cls] = names
    return names


def encode(outcome: object) -> tuple[str, str]:
    """Return (kind, JSON) for a stored outcome."""
    kind = type(outcome).__name__
    if kind not in OUTCOME_TYPES:
        raise TypeError(f"not an outcome: {kind}")
    data = {}
    for name in _stored_fields(type(outcome)):
        value = getattr(outcome, name)
        data[name] = value.isoformat() if isinstance(value, datetime) else value
    return kind, _JSON.encode(data)


def decode(kind: str, payload: str, expected: type[T]) -> T:
    cls = OUTCOME_TYPES.get(kind)
    if cls is not expected:
        # The same key was used for a different operation: refuse rather than guess.
        raise TypeError(f"key holds a {kind}, not a {expected.__name__}")
    hints = typing.get_type_hints(cls)
    raw = json.loads(payload)
    values: dict[str, Any] = {}
    for name, value in raw.items():
        hint = hints[name]
        wants_datetime = hint is datetime or (
            isinstance(hint, types.UnionType) and datetime in typing.get_args(hint)
        )
        values[name] = (
            datetime.fromisoformat(value) if wants_datetime and value is not None else value
        )
    result: T = typing.cast(Any, cls)(**values, replayed=True)
    return result
