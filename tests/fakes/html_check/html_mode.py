"""``parse_mode=HTML`` as TDLib parses it."""

from __future__ import annotations

from dataclasses import dataclass

from .common import (
    _ALNUM,
    _ALPHA,
    _DIGITS,
    _HEX,
    _SIMPLE_HTML_TYPES,
    _SPACES,
    HTML_TAGS,
    EntityParseError,
    FormattedText,
    JSONDict,
    _Bytes,
    _checked_link,
    _sort_entities,
    _utf16_units,
)


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
