"""Automatic entities, trimming, and the whole pipeline (:func:`format_text`)."""

from __future__ import annotations

import re

from .common import FormattedText, JSONDict, _sort_entities, utf16_len
from .html_mode import parse_html
from .markdown import parse_markdown
from .markdown_v2 import parse_markdown_v2

_AUTO_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("url", re.compile(r"(?<![\w@/])(?:https?|tg|ftp)://[^\s<>\"']+", re.IGNORECASE)),
    ("email", re.compile(r"(?<![\w.@/])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")),
    ("bot_command", re.compile(r"(?<![\w/@])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/])")),
    ("mention", re.compile(r"(?<![\w@/])@[A-Za-z0-9_]{3,32}(?!\w)")),
    ("hashtag", re.compile(r"(?<![\w#&])#\w*[^\W\d]\w*")),
    ("cashtag", re.compile(r"(?<![\w$])\$[A-Z]{1,8}(?![\w$])")),
)

# Types inside which Telegram detects nothing automatically.
_OPAQUE = frozenset({"code", "pre", "text_link", "url", "email", "custom_emoji"})


def detect_entities(text: str, existing: list[JSONDict] | None = None) -> list[JSONDict]:
    """Entities Telegram adds by itself (commands, mentions, hashtags, links, e-mails)."""
    existing = existing or []
    blocked = [(e["offset"], e["offset"] + e["length"]) for e in existing if e["type"] in _OPAQUE]
    found: list[JSONDict] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _AUTO_PATTERNS:
        for match in pattern.finditer(text):
            value = match.group(0)
            if kind == "url":
                value = value.rstrip(".,;:!?)'\"")
            start = utf16_len(text[: match.start()])
            end = start + utf16_len(value)
            if any(s < end and start < e for s, e in blocked + taken):
                continue
            taken.append((start, end))
            found.append({"type": kind, "offset": start, "length": end - start})
    return found


_TRIM = " \t\r\n\v\f"


def trim(formatted: FormattedText) -> FormattedText:
    """Strip leading/trailing whitespace and clip entities, as Telegram does with a message."""
    text = formatted.text
    stripped_left = text.lstrip(_TRIM)
    left = utf16_len(text) - utf16_len(stripped_left)
    stripped = stripped_left.rstrip(_TRIM)
    total = utf16_len(stripped)
    entities: list[JSONDict] = []
    for entity in formatted.entities:
        start = max(entity["offset"] - left, 0)
        end = min(entity["offset"] + entity["length"] - left, total)
        if end > start:
            clipped = dict(entity)
            clipped["offset"] = start
            clipped["length"] = end - start
            entities.append(clipped)
    return FormattedText(stripped, entities)


PARSE_MODES = {"html": "HTML", "markdownv2": "MarkdownV2", "markdown": "Markdown"}


class UnsupportedParseMode(ValueError):
    """``parse_mode`` is not one Telegram knows."""


def format_text(
    text: str,
    parse_mode: str | None = None,
    entities: list[JSONDict] | None = None,
    *,
    strict_ampersand: bool = False,
) -> FormattedText:
    """Do what Telegram does with a message text: parse, trim, add automatic entities.

    Raises :class:`EntityParseError` for markup Telegram refuses and
    :class:`UnsupportedParseMode` for an unknown ``parse_mode``. An empty or too long result is
    for the caller to refuse (Telegram's limits differ per method).
    """
    mode = PARSE_MODES.get((parse_mode or "").lower()) if parse_mode else None
    if parse_mode and mode is None:
        raise UnsupportedParseMode(parse_mode)
    if mode == "HTML":
        formatted = parse_html(text, strict_ampersand=strict_ampersand)
    elif mode == "MarkdownV2":
        formatted = parse_markdown_v2(text)
    elif mode == "Markdown":
        formatted = parse_markdown(text)
    else:
        formatted = FormattedText(text, [dict(e) for e in entities or []])
    formatted = trim(formatted)
    auto = detect_entities(formatted.text, formatted.entities)
    formatted.entities = _sort_entities(formatted.entities + auto)
    return formatted
