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
"""

from __future__ import annotations

import re
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


# --------------------------------------------------------------------------------------------
# HTML


def _decode_html_entity(text: _Bytes, pos: int) -> tuple[int, int]:
    """Decode ``&...;`` at ``pos``: (code point, new position), code point 0 if it is none."""
    end = pos + 1
    code = 0
    if text[pos + 1] == ord("#"):
        end += 1
        if text[pos + 2] == ord("x"):
            end += 1
            while text[end] in _HEX:
                code = code * 16 + int(chr(text[end]), 16)
                end += 1
        else:
            while text[end] in _DIGITS:
                code = code * 10 + text[end] - ord("0")
                end += 1
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return 0, pos
    else:
        while text[end] in _ALPHA:
            end += 1
        name = text.data[pos + 1 : end]
        named = {b"lt": "<", b"gt": ">", b"amp": "&", b"quot": '"'}.get(name)
        if named is None:
            return 0, pos
        code = ord(named)
    if text[end] == ord(";"):
        end += 1
    return code, end


@dataclass
class _OpenTag:
    name: str
    argument: str
    utf16_offset: int
    result_pos: int


def parse_html(source: str, *, strict_ampersand: bool = False) -> FormattedText:
    """Parse Telegram HTML like TDLib's ``parse_html``.

    A bare ``&`` that starts no known entity is kept literally, as Telegram does. With
    ``strict_ampersand`` it is refused instead (stricter than Telegram; the description is
    this fake's own).
    """
    text = _Bytes(source)
    result = bytearray()
    entities: list[JSONDict] = []
    nested: list[_OpenTag] = []
    utf16 = 0
    i = 0
    while i < text.size:
        c = text[i]
        if c == ord("&"):
            code, new_pos = _decode_html_entity(text, i)
            if code != 0:
                utf16 += 2 if code > 0xFFFF else 1
                result += chr(code).encode("utf-8", "surrogatepass")
                i = new_pos
                continue
            if strict_ampersand:
                raise EntityParseError(
                    f'Character "&" at byte offset {i} must be escaped as "&amp;" '
                    "(strict mode of the fake; Telegram itself accepts it)"
                )
        if c != ord("<"):
            utf16 += _utf16_units(c)
            result.append(c)
            i += 1
            continue

        begin = i
        i += 1
        if text[i] != ord("/"):
            i = _parse_start_tag(text, begin, i, nested, utf16, len(result))
        else:
            if not nested:
                raise EntityParseError(f"Unexpected end tag at byte offset {begin}")
            while text[i] not in _SPACES and text[i] != ord(">"):
                i += 1
            end_name = text.slice(begin + 2, i).lower()
            while text[i] in _SPACES and i < text.size:
                i += 1
            if text[i] != ord(">"):
                raise EntityParseError(f"Unclosed end tag at byte offset {begin}")
            i += 1
            opened = nested[-1]
            if end_name and end_name != opened.name:
                raise EntityParseError(
                    f'Unmatched end tag at byte offset {begin}, expected "</{opened.name}>", '
                    f'found "</{end_name}>"'
                )
            if utf16 > opened.utf16_offset:
                _close_html_entity(opened, utf16, bytes(result), entities)
            nested.pop()
    if nested:
        raise EntityParseError(
            f'Can\'t find end tag corresponding to start tag "{nested[-1].name}"'
        )
    for entity in entities:
        if entity["type"] == "code":
            entity.pop("language", None)
    try:
        plain = result.decode("utf-8")
    except UnicodeDecodeError:
        raise EntityParseError(
            "Text contains invalid Unicode characters after decoding HTML entities, check for "
            "unmatched surrogate code units"
        ) from None
    return FormattedText(plain, _sort_entities(entities))


def _parse_start_tag(
    text: _Bytes, begin: int, i: int, nested: list[_OpenTag], utf16: int, result_pos: int
) -> int:
    """Parse ``<tag attr=...>`` starting at ``begin``; push it on ``nested``; return the index
    just past ``>``."""
    while text[i] not in _SPACES and text[i] != ord(">"):
        i += 1
    if i >= text.size:
        raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
    tag = text.slice(begin + 1, i).lower()
    if tag not in HTML_TAGS:
        raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {begin}')

    argument = ""
    while text[i] != ord(">"):
        while i < text.size and text[i] in _SPACES:
            i += 1
        if text[i] == ord(">"):
            break
        attr_begin = i
        while text[i] not in _SPACES and text[i] not in b"=>/\"'":
            i += 1
        attr_name = text.slice(attr_begin, i)
        if not attr_name:
            raise EntityParseError(
                f'Empty attribute name in the tag "{tag}" at byte offset {begin}'
            )
        while i < text.size and text[i] in _SPACES:
            i += 1
        if text[i] != ord("="):
            if i >= text.size:
                raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
            if tag == "blockquote" and attr_name == "expandable":
                argument = "1"
            continue
        i += 1
        while i < text.size and text[i] in _SPACES:
            i += 1
        if i >= text.size:
            raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')

        if text[i] not in b"'\"":
            token_begin = i
            while text[i] in _ALNUM or text[i] in b".-":
                i += 1
            value = text.slice(token_begin, i).lower()
            if text[i] not in _SPACES and text[i] != ord(">"):
                raise EntityParseError(f"Unexpected end of name token at byte offset {token_begin}")
        else:
            quote = text[i]
            i += 1
            raw = bytearray()
            while i < text.size and text[i] != quote:
                if text[i] == ord("&"):
                    code, new_pos = _decode_html_entity(text, i)
                    if code != 0:
                        raw += chr(code).encode("utf-8", "surrogatepass")
                        i = new_pos
                        continue
                raw.append(text[i])
                i += 1
            if text[i] == quote and i < text.size:
                i += 1
            value = raw.decode("utf-8", "replace")
        if i >= text.size:
            raise EntityParseError(f"Unclosed start tag at byte offset {begin}")

        if tag == "a" and attr_name == "href":
            argument = value
        elif tag == "code" and attr_name == "class" and value.startswith("language-"):
            argument = value[len("language-") :]
        elif tag == "span" and attr_name == "class" and value.startswith("tg-"):
            argument = value[len("tg-") :]
        elif tag == "tg-emoji" and attr_name == "emoji-id":
            argument = value
        elif tag == "blockquote" and attr_name == "expandable":
            argument = "1"

    if tag == "span" and argument != "spoiler":
        raise EntityParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
    nested.append(_OpenTag(tag, argument, utf16, result_pos))
    return i + 1


def _close_html_entity(
    opened: _OpenTag, utf16: int, result: bytes, entities: list[JSONDict]
) -> None:
    offset = opened.utf16_offset
    length = utf16 - offset
    tag = opened.name
    if tag in _SIMPLE_HTML_TYPES or (tag == "span" and opened.argument == "spoiler"):
        entities.append(
            {"type": _SIMPLE_HTML_TYPES.get(tag, "spoiler"), "offset": offset, "length": length}
        )
    elif tag == "tg-emoji":
        arg = opened.argument
        if not (arg.isascii() and arg.isdigit()) or int(arg) == 0 or int(arg) >= 2**63:
            raise EntityParseError("Invalid custom emoji identifier specified")
        entities.append(
            {"type": "custom_emoji", "offset": offset, "length": length, "custom_emoji_id": arg}
        )
    elif tag == "a":
        url = opened.argument or result[opened.result_pos :].decode("utf-8", "replace")
        checked = _checked_link(url)
        if checked is not None:
            entities.append(
                {"type": "text_link", "offset": offset, "length": length, "url": checked}
            )
    elif tag == "pre":
        last = entities[-1] if entities else None
        if (
            last is not None
            and last["type"] == "code"
            and last["offset"] == offset
            and last["length"] == length
            and last.get("language")
        ):
            last["type"] = "pre"
        else:
            entities.append({"type": "pre", "offset": offset, "length": length})
    elif tag == "code":
        last = entities[-1] if entities else None
        if (
            last is not None
            and last["type"] == "pre"
            and last["offset"] == offset
            and last["length"] == length
            and opened.argument
        ):
            last["language"] = opened.argument
        else:
            entity: JSONDict = {"type": "code", "offset": offset, "length": length}
            if opened.argument:
                entity["language"] = opened.argument
            entities.append(entity)
    elif tag == "blockquote":
        kind = "expandable_blockquote" if opened.argument else "blockquote"
        entities.append({"type": kind, "offset": offset, "length": length})


# --------------------------------------------------------------------------------------------
# MarkdownV2

_V2_RESERVED = b"_*[]()~`>#+-=|{}.!\n"

# TDLib's names of entity types, used in "Can't find end of X entity" descriptions.
_V2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "pre_code": "PreCode",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
    "blockquote": "BlockQuote",
}


@dataclass
class _OpenV2:
    kind: str
    argument: str
    utf16_offset: int
    byte_offset: int
    result_pos: int


def _reserved(char: int) -> EntityParseError:
    return EntityParseError(
        f"Character '{chr(char)}' is reserved and must be escaped with the preceding '\\'"
    )


def _cant_find_end(opened: _OpenV2) -> EntityParseError:
    return EntityParseError(
        f"Can't find end of {_V2_NAMES[opened.kind]} entity at byte offset {opened.byte_offset}"
    )


def _read_link(text: _Bytes, i: int) -> tuple[str, int]:
    """Read a ``(url)`` body starting after ``(``: (url, index of ``)`` or size)."""
    url = bytearray()
    while i < text.size and text[i] != ord(")"):
        if text[i] == ord("\\") and 0 < text[i + 1] <= 126:
            url.append(text[i + 1])
            i += 2
            continue
        url.append(text[i])
        i += 1
    return url.decode("utf-8", "replace"), i


def parse_markdown_v2(source: str) -> FormattedText:
    """Parse ``MarkdownV2`` like TDLib's ``parse_markdown_v2``."""
    text = _Bytes(source)
    result = bytearray()
    entities: list[JSONDict] = []
    nested: list[_OpenV2] = []
    utf16 = 0
    have_blockquote = False
    can_start_blockquote = True
    i = 0
    while i < text.size:
        c = text[i]
        if c == ord("\\") and 0 < text[i + 1] <= 126:
            i += 1
            utf16 += 1
            result.append(text[i])
            if text[i] != ord("\r"):
                can_start_blockquote = text[i] == ord("\n")
            i += 1
            continue

        reserved = _V2_RESERVED
        if nested and nested[-1].kind in {"code", "pre", "pre_code"}:
            reserved = b"`"
        if c not in reserved:
            units = _utf16_units(c)
            if units:
                utf16 += units
                if c != ord("\r"):
                    can_start_blockquote = False
            result.append(c)
            i += 1
            continue

        if _v2_is_end(text, i, nested, have_blockquote):
            i, have_blockquote, can_start_blockquote, utf16 = _v2_close(
                text, i, nested, entities, result, utf16, have_blockquote, can_start_blockquote
            )
            continue

        # beginning of an entity
        kind: str
        argument = ""
        byte_offset = i
        if c == ord("_"):
            if text[i + 1] == ord("_"):
                kind = "underline"
                i += 1
            else:
                kind = "italic"
        elif c == ord("*"):
            kind = "bold"
        elif c == ord("~"):
            kind = "strikethrough"
        elif c == ord("|"):
            if text[i + 1] != ord("|"):
                raise _reserved(c)
            i += 1
            kind = "spoiler"
        elif c == ord("["):
            kind = "text_link"
        elif c == ord("`"):
            if text[i + 1] == ord("`") and text[i + 2] == ord("`"):
                i += 3
                kind = "pre"
                language_end = i
                while text[language_end] not in _SPACES and text[language_end] != ord("`"):
                    language_end += 1
                if (
                    i != language_end
                    and language_end < text.size
                    and text[language_end] != ord("`")
                ):
                    kind = "pre_code"
                    argument = text.slice(i, language_end)
                    i = language_end
                if text[i] in b"\r\n" and i < text.size:
                    if text[i + 1] in b"\r\n" and i + 1 < text.size and text[i] != text[i + 1]:
                        i += 2
                    else:
                        i += 1
                i -= 1
            else:
                kind = "code"
        elif c == ord("!"):
            if text[i + 1] != ord("["):
                raise _reserved(c)
            i += 1
            kind = "custom_emoji"
        elif c == ord("\n"):
            utf16 += 1
            result.append(c)
            can_start_blockquote = True
            i += 1
            continue
        elif c == ord(">"):
            if not can_start_blockquote:
                raise _reserved(c)
            if have_blockquote:
                i += 1
                continue
            kind = "blockquote"
            have_blockquote = True
        else:
            raise _reserved(c)
        nested.append(_OpenV2(kind, argument, utf16, byte_offset, len(result)))
        i += 1

    if have_blockquote and nested:
        kind = "blockquote"
        if nested[-1].kind == "spoiler" and nested[-1].byte_offset == text.size - 2:
            nested.pop()
            kind = "expandable_blockquote"
        if nested and nested[-1].kind == "blockquote":
            opened = nested.pop()
            if utf16 != opened.utf16_offset:
                entities.append(
                    {
                        "type": kind,
                        "offset": opened.utf16_offset,
                        "length": utf16 - opened.utf16_offset,
                    }
                )
    if nested:
        raise _cant_find_end(nested[-1])
    return FormattedText(result.decode("utf-8", "replace"), _sort_entities(entities))


def _v2_is_end(text: _Bytes, i: int, nested: list[_OpenV2], have_blockquote: bool) -> bool:
    if not nested:
        return False
    c = text[i]
    if have_blockquote and c == ord("\n") and (i + 1 == text.size or text[i + 1] != ord(">")):
        return True
    kind = nested[-1].kind
    if kind == "bold":
        return c == ord("*")
    if kind == "italic":
        return c == ord("_") and text[i + 1] != ord("_")
    if kind == "code":
        return c == ord("`")
    if kind in {"pre", "pre_code"}:
        return c == ord("`") and text[i + 1] == ord("`") and text[i + 2] == ord("`")
    if kind in {"text_link", "custom_emoji"}:
        return c == ord("]")
    if kind == "underline":
        return c == ord("_") and text[i + 1] == ord("_")
    if kind == "strikethrough":
        return c == ord("~")
    if kind == "spoiler":
        return c == ord("|") and text[i + 1] == ord("|")
    return False


def _v2_close(
    text: _Bytes,
    i: int,
    nested: list[_OpenV2],
    entities: list[JSONDict],
    result: bytearray,
    utf16: int,
    have_blockquote: bool,
    can_start_blockquote: bool,
) -> tuple[int, bool, bool, int]:
    c = text[i]
    kind = nested[-1].kind
    if c == ord("\n") and kind != "blockquote":
        opened = nested[-1]
        spoiler_at_line_end = kind == "spoiler" and (
            opened.byte_offset == i - 2
            or (opened.byte_offset == i - 3 and result and result[-1] == ord("\r"))
        )
        if not spoiler_at_line_end:
            raise _cant_find_end(opened)
        nested.pop()
        if nested[-1].kind != "blockquote":
            raise _cant_find_end(nested[-1])
        kind = "expandable_blockquote"
    opened = nested[-1]
    argument = opened.argument
    skip = utf16 == opened.utf16_offset
    entity_type = kind
    extra: JSONDict = {}
    if kind in {"underline", "spoiler"}:
        i += 1
    elif kind in {"pre", "pre_code"}:
        i += 2
        entity_type = "pre"
        if kind == "pre_code":
            extra["language"] = argument
    elif kind == "text_link":
        if text[i + 1] != ord("("):
            url = result[opened.result_pos :].decode("utf-8", "replace")
        else:
            url_begin = i + 2
            url, i = _read_link(text, url_begin)
            if text[i] != ord(")") or i >= text.size:
                raise EntityParseError(f"Can't find end of a URL at byte offset {url_begin}")
        checked = _checked_link(url)
        if checked is None:
            skip = True
        else:
            extra["url"] = checked
    elif kind == "custom_emoji":
        if text[i + 1] != ord("("):
            raise EntityParseError("Custom emoji entity must contain a tg://emoji URL")
        url_begin = i + 2
        url, i = _read_link(text, url_begin)
        if text[i] != ord(")") or i >= text.size:
            raise EntityParseError(
                f"Can't find end of a custom emoji URL at byte offset {url_begin}"
            )
        match = re.fullmatch(r"tg://emoji\?id=(\d{1,19})", url)
        if match is None or int(match.group(1)) == 0:
            raise EntityParseError("Invalid custom emoji identifier specified")
        extra["custom_emoji_id"] = match.group(1)
    elif kind in {"blockquote", "expandable_blockquote"}:
        have_blockquote = False
        result.append(c)
        can_start_blockquote = True
        utf16 += 1
        skip = False
    if not skip:
        entity: JSONDict = {
            "type": entity_type,
            "offset": opened.utf16_offset,
            "length": utf16 - opened.utf16_offset,
        }
        entity.update(extra)
        entities.append(entity)
    nested.pop()
    return i + 1, have_blockquote, can_start_blockquote, utf16


# --------------------------------------------------------------------------------------------
# Markdown (legacy)


def parse_markdown(source: str) -> FormattedText:
    """Parse legacy ``Markdown`` like TDLib's ``parse_markdown``."""
    text = _Bytes(source)
    result = bytearray()
    entities: list[JSONDict] = []
    utf16 = 0
    i = 0
    while i < text.size:
        c = text[i]
        if c == ord("\\") and text[i + 1] in b"_*`[" and i + 1 < text.size:
            i += 1
            result.append(text[i])
            utf16 += 1
            i += 1
            continue
        if c not in b"_*`[":
            utf16 += _utf16_units(c)
            result.append(c)
            i += 1
            continue
        begin = i
        end_char = ord("]") if c == ord("[") else c
        is_pre = False
        language = ""
        i += 1
        if c == ord("`") and text[i] == ord("`") and text[i + 1] == ord("`"):
            i += 2
            is_pre = True
            language_end = i
            while text[language_end] not in _SPACES and text[language_end] != ord("`"):
                language_end += 1
            if i != language_end and language_end < text.size and text[language_end] != ord("`"):
                language = text.slice(i, language_end)
                i = language_end
            if text[i] in b"\r\n" and i < text.size:
                if text[i + 1] in b"\r\n" and i + 1 < text.size and text[i] != text[i + 1]:
                    i += 2
                else:
                    i += 1
        entity_offset = utf16
        entity_pos = len(result)
        while i < text.size and (
            text[i] != end_char
            or (is_pre and not (text[i + 1] == ord("`") and text[i + 2] == ord("`")))
        ):
            utf16 += _utf16_units(text[i])
            result.append(text[i])
            i += 1
        if i >= text.size:
            raise EntityParseError(f"Can't find end of the entity starting at byte offset {begin}")
        if entity_offset != utf16:
            length = utf16 - entity_offset
            if c == ord("_"):
                entities.append({"type": "italic", "offset": entity_offset, "length": length})
            elif c == ord("*"):
                entities.append({"type": "bold", "offset": entity_offset, "length": length})
            elif c == ord("["):
                if text[i + 1] != ord("("):
                    url = result[entity_pos:].decode("utf-8", "replace")
                else:
                    i += 2
                    raw = bytearray()
                    while i < text.size and text[i] != ord(")"):
                        raw.append(text[i])
                        i += 1
                    url = raw.decode("utf-8", "replace")
                checked = _checked_link(url)
                if checked is not None:
                    entities.append(
                        {
                            "type": "text_link",
                            "offset": entity_offset,
                            "length": length,
                            "url": checked,
                        }
                    )
            elif is_pre:
                entity: JSONDict = {"type": "pre", "offset": entity_offset, "length": length}
                if language:
                    entity["language"] = language
                entities.append(entity)
            else:
                entities.append({"type": "code", "offset": entity_offset, "length": length})
        if is_pre:
            i += 2
        i += 1
    return FormattedText(result.decode("utf-8", "replace"), _sort_entities(entities))


# --------------------------------------------------------------------------------------------
# Automatic entities, trimming, the whole pipeline

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
