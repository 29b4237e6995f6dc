"""Names people type: partner and channel names, and support's reasons."""

from __future__ import annotations

import unicodedata

from core.errors import InvalidInput

MAX_NAME = 64
MAX_REASON = 200


# Format characters that real text needs: zero-width (non-)joiners in emoji sequences
# and in Persian and Indic scripts, and the tag characters of subdivision flags.
_JOINERS = frozenset("\u200c\u200d")


def _allowed(c: str) -> bool:
    if unicodedata.category(c)[0] != "C":
        return True
    return c in _JOINERS or 0xE0020 <= ord(c) <= 0xE007F


def _printable(text: str) -> bool:
    # Other control, format (e.g. bidi overrides), surrogate and private-use characters
    # would make a name read differently from what is stored.
    return all(_allowed(c) for c in text)


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
