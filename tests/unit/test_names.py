"""Names people type: channel and partner names, support's reasons, and how names compare.

Names are stored as typed (apart from folded white space): escaping them for HTML is the
bot's job when it renders, not a reason to refuse or rewrite them here.
"""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from core.names import MAX_NAME, MAX_REASON, clean_name, clean_partner_name, clean_reason, name_key


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("shop-1", "shop-1"),
        ("Café Ünïcode", "Café Ünïcode"),
        ("Ünïcode 🚀 channel", "Ünïcode 🚀 channel"),
        ("🇩🇪 Berlin", "🇩🇪 Berlin"),  # a flag is two regional indicators
        ("1️⃣ first", "1️⃣ first"),  # keycap: a variation selector and a combining mark
        ("客服频道", "客服频道"),
        ("カスタマー", "カスタマー"),
        ("قناة الدعم", "قناة الدعم"),
        ("<b>bold</b>", "<b>bold</b>"),  # kept verbatim; the bot escapes it
        ("a & b <script>alert(1)</script>", "a & b <script>alert(1)</script>"),
        ('"quoted" \'name\'', '"quoted" \'name\''),
        ("  padded  ", "padded"),
        ("two   spaces", "two spaces"),
        ("tab\tand\nnewline", "tab and newline"),
        ("no\u00a0break", "no break"),  # a no-break space is white space too
        ("ideographic\u3000space", "ideographic space"),
        ("x" * MAX_NAME, "x" * MAX_NAME),
        ("  " + "x" * MAX_NAME + "  ", "x" * MAX_NAME),  # trimmed before it is measured
        ("é" * MAX_NAME, "é" * MAX_NAME),
        ("🚀" * MAX_NAME, "🚀" * MAX_NAME),  # characters are counted, not bytes
        ("42", "42"),  # a channel name may be all digits
    ],
)
def test_a_channel_name_is_stored_as_typed_with_white_space_folded(typed: str, stored: str) -> None:
    assert clean_name(typed) == stored


@pytest.mark.parametrize(
    ("typed", "why"),
    [
        ("", "empty"),
        ("   ", "blank"),
        ("\t\n", "blank"),
        ("x" * (MAX_NAME + 1), "65 characters"),
        ("🚀" * (MAX_NAME + 1), "65 characters"),
        ("a\x00b", "NUL"),
        ("bell\x07", "a control character"),
        ("esc\x1b[31mred", "an ANSI escape"),
        ("del\x7f", "DEL"),
        ("c1\x9bcontrol", "a C1 control"),
        ("evil\u202egnp.exe", "right-to-left override"),
        ("\u202dforced", "left-to-right override"),
        ("iso\u2066late\u2069", "a bidi isolate"),
        ("mark\u200f", "a right-to-left mark"),
        ("zero\u200bwidth", "a zero-width space"),
        ("bom\ufeff", "a byte-order mark"),
        ("private\ue000", "a private-use character"),
        ("lone\ud800", "a lone surrogate"),
        ("unassigned\u0378", "an unassigned code point"),
    ],
)
def test_a_name_that_would_read_differently_from_what_is_stored_is_refused(
    typed: str, why: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        clean_name(typed)
    assert caught.value.field == "name", why


@pytest.mark.parametrize(
    ("typed", "why"),
    [
        ("👩\u200d💻 dev team", "an emoji ZWJ sequence (woman technologist)"),
        ("👨\u200d👩\u200d👧 family", "an emoji ZWJ sequence (family)"),
        ("می\u200cخواهم", "Persian text needs the zero-width non-joiner"),
    ],
)
def test_emoji_sequences_and_joiners_of_real_scripts_are_accepted(typed: str, why: str) -> None:
    assert clean_name(typed) == typed, why


def test_clean_name_reports_the_field_it_was_asked_for() -> None:
    with pytest.raises(InvalidInput) as caught:
        clean_name("", field="channel")
    assert caught.value.field == "channel"


@pytest.mark.parametrize(
    ("typed", "accepted"),
    [
        ("Acme Resellers", True),
        ("Acme 2", True),
        ("42 Telecom", True),
        ("1 2", True),  # digits and a space are not a number
        ("12a", True),
        ("№7", True),
        ("  Café  Ünïcode ", True),
        ("<i>Acme</i>", True),
        ("42", False),  # PARTNER is "a numeric id or exact name": ambiguous
        ("  007  ", False),
        ("０４２", False),  # full-width digits are digits too
        ("١٢٣", False),  # so are Arabic-Indic ones
        ("", False),
        ("x" * (MAX_NAME + 1), False),
        ("bad\u202ename", False),
    ],
)
def test_a_partner_name_follows_the_name_rules_and_is_not_all_digits(
    typed: str, accepted: bool
) -> None:
    if accepted:
        assert clean_partner_name(typed) == " ".join(typed.split())
    else:
        with pytest.raises(InvalidInput):
            clean_partner_name(typed)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("duplicate payment", "duplicate payment"),
        ("  goodwill,\n ticket #123 ", "goodwill, ticket #123"),
        ("Stripe refund <re_123> & fee", "Stripe refund <re_123> & fee"),
        ("Kulanz für Ausfall 🙏", "Kulanz für Ausfall 🙏"),
        ("r" * MAX_REASON, "r" * MAX_REASON),
    ],
)
def test_a_reason_is_kept_with_white_space_folded(typed: str, stored: str) -> None:
    assert clean_reason(typed) == stored


@pytest.mark.parametrize(
    "typed", ["", "   ", "\n", "r" * (MAX_REASON + 1), "why\x00", "why\u202e", "bell\x07"]
)
def test_a_reason_that_is_missing_too_long_or_hides_characters_is_refused(typed: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        clean_reason(typed)
    assert caught.value.field == "reason"


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("abc", "abc", True),
        ("ABC", "abc", True),
        ("ＡＢＣ", "abc", True),  # full-width letters
        ("Ａｂｃ", "aBC", True),
        ("Straße", "STRASSE", True),  # case folding, not just lower()
        ("ﬁle", "file", True),  # a ligature unfolds
        ("Café", "Cafe\u0301", True),  # composed and decomposed é
        ("ΣΊΣΥΦΟΣ", "σίσυφος", True),  # final sigma
        ("shop１", "shop1", True),
        ("abc", "abd", False),
        ("cafe", "café", False),  # accents matter
        ("shop 1", "shop1", False),  # so does a space
        ("Ünïcode", "Unicode", False),
    ],
)
def test_names_compare_case_and_width_insensitively(one: str, other: str, same: bool) -> None:
    assert (name_key(one) == name_key(other)) is same
