"""``parse_mode=MarkdownV2`` as TDLib parses it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .common import (
    _SPACES,
    EntityParseError,
    FormattedText,
    JSONDict,
    _Bytes,
    _checked_link,
    _sort_entities,
    _utf16_units,
)

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
