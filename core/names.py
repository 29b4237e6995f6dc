"""Names people type: partner and channel names, and support's reasons."""

from __future__ import annotations

import unicodedata

from core.errors import InvalidInput

MAX_NAME = 64
MAX_REASON = 200


def _printable(text: str) -> bool:
    # Control, format (e.g. bidi overrides), surrogate and private-use characters would
    # make a name read differently from what is stored.
    return all(unicodedata.category(c)[0] != "C" for c in text)


def clean_name(text: str, *, field: str = "name") -> str:
    name = " ".join(text.split())  # trims and folds runs of white space
    if not name:
        raise InvalidInput(field, "must not be empty")
    if len(name) > MAX_NAME:
        raise InvalidInput(field, f"must be at most {MAX_NAME} characters")
    if not _printable(name):
        raise InvalidInput(field, "must not contain control characters")
    return name


def clean_partner_name(text: str) -> str:
    name = clean_name(text)
    if name.isdigit():
        # PARTNER arguments are an id or a name: an all-digit name would be ambiguous.
        raise InvalidInput("name", "must not be only digits")
    return name


def name_key(name: str) -> str:
    """How names are compared: case- and width-insensitively."""
    return unicodedata.normalize("NFKC", name).casefold()


def clean_reason(text: str) -> str:
    reason = " ".join(text.split())
    if not reason:
        raise InvalidInput("reason", "is required")
    if len(reason) > MAX_REASON:
        raise InvalidInput("reason", f"must be at most {MAX_REASON} characters")
    if not _printable(reason):
        raise InvalidInput("reason", "must not contain control characters")
    return reason
