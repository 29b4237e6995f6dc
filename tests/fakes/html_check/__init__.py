"""Telegram's text-formatting rules, for the fake Bot API server.

Telegram parses ``parse_mode`` markup in TDLib (``td/telegram/MessageEntity.cpp``). This module
re-implements the same grammar in Python so that the fake accepts exactly what Telegram accepts
and answers the same ``can't parse entities: ...`` descriptions, with byte offsets counted in
UTF-8 like Telegram and entity offsets/lengths counted in UTF-16 code units like the Bot API.

Public entry points:

* :func:`format_text` - what ``sendMessage``/``editMessageText`` do with ``text``,
  ``parse_mode`` and ``entities``: parse, trim, detect automatic entities.
* :func:`parse_html`, :func:`parse_markdown_v2`, :func:`parse_markdown` - the three parse modes.
* :func:`utf16_len` - the length Telegram uses for its 4096-character limit.

Known simplifications (documented, deliberately small):

* automatic entity detection (``url``, ``mention``, ``bot_command``, ``hashtag``, ``cashtag``,
  ``email``) uses regular expressions; bare domains without a scheme are not detected as URLs
  and phone or bank-card numbers are never detected;
* ``<a href="tg://user?id=N">`` produces a ``text_link`` entity, not a ``text_mention``;
* link checking is approximate: http(s) links without a scheme get ``http://`` prepended, and a
  bare host gets a trailing ``/``, as Telegram does; links Telegram would drop are kept.

Layout: ``common`` (shared types and helpers), ``html_mode``, ``markdown_v2``, ``markdown``
(one parse mode each), ``pipeline`` (automatic entities, trimming, :func:`format_text`).
"""

from __future__ import annotations

from .common import HTML_TAGS, EntityParseError, FormattedText, JSONDict, utf16_len
from .html_mode import parse_html
from .markdown import parse_markdown
from .markdown_v2 import parse_markdown_v2
from .pipeline import PARSE_MODES, UnsupportedParseMode, detect_entities, format_text, trim

__all__ = [
    "HTML_TAGS",
    "PARSE_MODES",
    "EntityParseError",
    "FormattedText",
    "JSONDict",
    "UnsupportedParseMode",
    "detect_entities",
    "format_text",
    "parse_html",
    "parse_markdown",
    "parse_markdown_v2",
    "trim",
    "utf16_len",
]
