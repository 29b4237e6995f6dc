"""``parse_mode=Markdown`` (legacy) as TDLib parses it."""

from __future__ import annotations

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
