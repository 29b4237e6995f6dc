"""Money at its edges: currency codes as people type them, what a refusal says, and the
limits of an amount, each written out by hand."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from core.money import (
    MAX_AMOUNT,
    amount_for_days,
    check_currency,
    format_amount,
    minimum_days,
    parse_amount,
)


@pytest.mark.parametrize(
    ("typed", "code"), [("usd", "usd"), ("USD", "usd"), ("  Eur ", "eur"), ("\tgbp\n", "gbp")]
)
def test_a_currency_is_read_whatever_its_case_and_surrounding_spaces(
    typed: str, code: str
) -> None:
    assert check_currency(typed) == code


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("xyz", "'xyz' is not a supported currency"),
        ("abcdefghij", "'abcdefghij' is not a supported currency"),  # 10 characters: whole
        ("abcdefghijk", "'abcdefghi…' is not a supported currency"),  # 11: cut to 9 and …
    ],
)
def test_an_unknown_currency_is_named_in_the_refusal_cut_short_when_long(
    typed: str, reason: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_currency(typed)
    assert (caught.value.field, caught.value.reason) == ("currency", reason)


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (500, "JPY", "500 JPY"),  # upper-case codes keep their own decimals
        (1250, "KWD", "1.250 KWD"),
        (7, "BHD", "0.007 BHD"),
        (1_000, "vnd", "1,000 VND"),
    ],
)
def test_an_amount_in_an_upper_case_or_rare_currency_has_that_currencys_decimals(
    minor: int, currency: str, text: str
) -> None:
    assert format_amount(minor, currency) == text


@pytest.mark.parametrize(
    ("text", "currency", "reason"),
    [
        ("12.345", "usd", "USD has 2 decimal places at most"),
        ("1.5", "jpy", "JPY has 0 decimal places at most"),
        ("0", "usd", "must be greater than zero"),
        ("1000000", "usd", "is too large"),
        ("abc", "usd", "'abc' is not an amount like 12.50"),
        ("1" * 20 + "x", "usd", "'" + "1" * 19 + "…' is not an amount like 12.50"),
        ("1" * 19 + "x", "usd", "'" + "1" * 19 + "x' is not an amount like 12.50"),
        ("1..2", "usd", "'1..2' is not an amount like 12.50"),
    ],
)
def test_a_refused_amount_says_why(text: str, currency: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_amount(text, currency)
    assert (caught.value.field, caught.value.reason) == ("amount", reason)


def test_the_largest_amount_is_accepted_and_one_more_minor_unit_is_not() -> None:
    assert MAX_AMOUNT == 99_999_999
    assert parse_amount("999999.99", "usd") == 99_999_999
    assert parse_amount("99999999", "jpy") == 99_999_999
    with pytest.raises(InvalidInput):
        parse_amount("100000000", "jpy")


@pytest.mark.parametrize(("days", "price"), [(-1, 1000), (1, -1)])
def test_a_negative_day_count_or_price_is_refused_naming_days(days: int, price: int) -> None:
    with pytest.raises(InvalidInput) as caught:
        amount_for_days(days, price)
    assert (caught.value.field, caught.value.reason) == ("days", "must not be negative")


@pytest.mark.parametrize(
    ("price", "currency", "least"),
    [(1000, "usd", 2), (1, "usd", 1485), (3000, "JPY", 1), (10, "huf", 52_499)],
)
def test_minimum_days_is_a_whole_number(price: int, currency: str, least: int) -> None:
    found = minimum_days(price, currency)
    assert found == least
    assert type(found) is int


def test_minimum_days_refuses_a_free_price_naming_the_price() -> None:
    with pytest.raises(InvalidInput) as caught:
        minimum_days(0, "usd")
    assert (caught.value.field, caught.value.reason) == ("monthly_price", "must be positive")


def test_a_lone_decimal_point_is_not_an_amount() -> None:
    # It passes the character check (digits and one point) and only Decimal refuses it.
    with pytest.raises(InvalidInput) as caught:
        parse_amount(".", "usd")
    assert (caught.value.field, caught.value.reason) == (
        "amount", "'.' is not an amount like 12.50"
    )
