"""Running an operation once per idempotency key."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from core import outcomes
from core.errors import InvalidInput
from core.ports import Ledger

T = TypeVar("T")
MAX_KEY = 200


def once(ledger: Ledger, key: str, at: datetime, kind: type[T], body: Callable[[], T]) -> T:
    """Return the stored outcome of `key`, or run `body` and store what it returns.

    Both happen in the caller's transaction, so a crash leaves either the effects and
    the outcome, or neither. A body that raises stores nothing: the refusal is
    re-evaluated when the key comes again (the balance may have changed since).
    """
    if not key or len(key) > MAX_KEY:
        raise InvalidInput("idempotency key", f"must be 1-{MAX_KEY} characters")
    stored = ledger.find_outcome(key)
    if stored is not None:
        return outcomes.decode(stored[0], stored[1], kind)
    result = body()
    name, payload = outcomes.encode(result)
    ledger.save_outcome(key, name, payload, at)
    return result
