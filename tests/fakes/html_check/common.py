"""What every parse mode shares: byte classes, errors, the result type, UTF-16 lengths,
the byte cursor, entity ordering and link checking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

JSONDict = dict[str, Any]

# td::is_space
_SPACES = frozenset(b" \t\r\n\0\v")
_ALPHA = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset(b"0123456789")
_ALNUM = _ALPHA | _DIGITS
_HEX = _DIGITS | frozenset(b"abcdefABCDEF")

HTML_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)

_SIMPLE_HTML_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
}


class EntityParseError(ValueError):
    """The markup cannot be parsed; ``str(error)`` is TDLib's message for it."""


@dataclass
class FormattedText:
    """Plain text and its Bot API ``MessageEntity`` dicts (UTF-16 offsets)."""

    text: str
    entities: list[JSONDict] = field(default_factory=list)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's offsets and length limits."""
    return len(text.encode("utf-16-le")) // 2


def _utf16_units(byte: int) -> int:
    """UTF-16 units contributed by a UTF-8 byte (0 for continuation bytes)."""
    if byte & 0xC0 == 0x80:
        return 0
    return 2 if byte >= 0xF0 else 1


class _Bytes:
    """UTF-8 text indexed like TDLib's CSlice: reading past the end gives 0 (the terminator)."""

    def __init__(self, text: str) -> None:
        self.data = text.encode("utf-8")
        self.size = len(self.data)

    def __getitem__(self, index: int) -> int:
        return self.data[index] if 0 <= index < self.size else 0

    def slice(self, begin: int, end: int) -> str:
        return self.data[begin:end].decode("utf-8", "replace")


def _sort_entities(entities: list[JSONDict]) -> list[JSONDict]:
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))


def _checked_link(url: str) -> str | None:
    """Approximation of TDLib's LinkManager::get_checked_link (None: the link is dropped)."""
    url = url.strip()
    if not url:
        return None
    lowered = url.lower()
    if lowered.startswith(("tg:", "ton:")):
        return url
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        return None
    if any(ch.isspace() for ch in url):
        return None
    if not parts.path and not parts.query and not parts.fragment:
        url += "/"
    return url
