"""Value types every part of the fake shares: JSON, ids, recorded requests, faults,
request context, subscription periods."""

from __future__ import annotations

import fnmatch
import secrets
import string
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import stripe

JSON: TypeAlias = dict[str, Any]

API_VERSION: str = stripe.api_version
"""The version the fake's objects follow (the one stripe-python pins)."""

_ALNUM = string.ascii_letters + string.digits
_DAY = 86_400


def _new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


@dataclass
class RecordedRequest:
    """One request as the fake saw it (params decoded, index dicts turned to lists)."""

    method: str
    path: str
    params: JSON
    headers: dict[str, str]
    idempotency_key: str | None
    stripe_version: str | None
    fault: str | None = None
    status: int | None = None
    request_id: str = ""


@dataclass
class _Fault:
    kind: Literal["error", "hang", "drop"]
    remaining: int
    path: str | None
    method: str | None
    status: int = 500
    seconds: float = 0.0
    process: Literal["never", "before", "after"] = "never"

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path is None or fnmatch.fnmatchcase(path, self.path)


@dataclass
class _Ctx:
    request_id: str
    idempotency_key: str | None


@dataclass
class _SubState:
    interval: str
    interval_count: int
    anchor: int
    periods: int = 1  # number of periods started so far
    invoice_seq: int = 0


_Response: TypeAlias = tuple[int, JSON, dict[str, str]]
