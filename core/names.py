"""Names people type: partner and channel names, and support's reasons.

A name is stored as typed (white space folded) and shown so; it is compared by its key,
the form it displays as, so two names that look alike are the same name: one of them
cannot be created beside the other, and either finds the stored one.
"""

from __future__ import annotations

import re
import unicodedata

from core.errors import InvalidInput

MAX_NAME = 64
MAX_REASON = 200


# Format characters that real text needs: zero-width (non-)joiners in emoji sequences
# and in Persian and Indic scripts, and the tag characters of subdivision flags.
_JOINERS = frozenset("\u200c\u200d")

# Characters that render as nothing: Unicode's Default_Ignorable_Code_Point
# (DerivedCoreProperties.txt, Unicode 15), as ranges. Besides the format characters they
# include the Hangul fillers, the combining grapheme joiner, Khmer's inherent vowels,
# Mongolian and other variation selectors.
_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
# Invisible characters a name may still carry, because what they join or select shows:
# the joiners above and the variation selectors (emoji presentation, "1️⃣").
_KEPT_INVISIBLE = _JOINERS | frozenset(map(chr, range(0xFE00, 0xFE10))) | frozenset(
    map(chr, range(0xE0100, 0xE01F0))
)
_BLANK = "\u2800"  # braille blank: not "ignorable", but shows as white space
# A subdivision flag: a black flag, tag letters, a cancel tag. Its tags show (as the
# flag of Scotland or Wales); tags anywhere else show nothing.
_FLAG = re.compile("\U0001F3F4[\U000E0020-\U000E007E]+\U000E007F")


def _ignorable(c: str) -> bool:
    code = ord(c)
    return any(low <= code <= high for low, high in _IGNORABLE)


def _allowed(c: str) -> bool:
    if unicodedata.category(c)[0] != "C":
        return True
    return c in _JOINERS or 0xE0020 <= ord(c) <= 0xE007F


def _printable(text: str) -> bool:
    # Other control, format (e.g. bidi overrides), surrogate and private-use characters
    # would make a name read differently from what is stored.
    return all(_allowed(c) for c in text)


def _shows(c: str) -> bool:
    return c in _KEPT_INVISIBLE or (c != _BLANK and not _ignorable(c))


def _no_hidden(text: str) -> bool:
    # Fillers and other letters or marks that show nothing, and tags outside a flag,
    # would let two names that look the same be stored as different names.
    return all(_shows(c) for c in _FLAG.sub("\U0001F3F4", text))


def clean_name(text: str, *, field: str = "name") -> str:
    name = " ".join(text.split())  # trims and folds runs of white space
    if not name:
        raise InvalidInput(field, "must not be empty")
    if len(name) > MAX_NAME:
        raise InvalidInput(field, f"must be at most {MAX_NAME} characters")
    if not _printable(name):
        raise InvalidInput(field, "must not contain control characters")
    if not _no_hidden(name):
        raise InvalidInput(field, "must not contain invisible characters")
    if not name_key(name):
        raise InvalidInput(field, "must contain a visible character")
    return name


def clean_partner_name(text: str) -> str:
    name = clean_name(text)
    if name.isdigit():
        # PARTNER arguments are an id or a name: an all-digit name would be ambiguous.
        raise InvalidInput("name", "must not be only digits")
    return name


def _visible(text: str) -> str:
    """`text` without what renders as nothing (a flag's tags excepted)."""
    kept, last = [], 0
    for flag in _FLAG.finditer(text):
        kept.append("".join(c for c in text[last : flag.start()] if not _ignorable(c)))
        kept.append(flag.group())
        last = flag.end()
    kept.append("".join(c for c in text[last:] if not _ignorable(c)))
    return "".join(kept)


def name_key(name: str) -> str:
    """How names are compared: as they display. Names that look the same are the same
    name: width (NFKC), case (case folding), invisible characters (dropped: "shop\u200d
    berlin" is "shopberlin") and runs of white space do not count; accents do."""
    text = _visible(unicodedata.normalize("NFKC", name)).replace(_BLANK, " ")
    text = " ".join(text.split())
    return unicodedata.normalize("NFKC", text.casefold())


def clean_reason(text: str) -> str:
    reason = " ".join(text.split())
    if not reason:
        raise InvalidInput("reason", "is required")
    if len(reason) > MAX_REASON:
        raise InvalidInput("reason", f"must be at most {MAX_REASON} characters")
    if not _printable(reason):
        raise InvalidInput("reason", "must not contain control characters")
    return reason
