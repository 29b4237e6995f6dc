"""Money: rule 2's price for days, the Stripe minimum of rule 3, amounts typed and shown."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest

from core.errors import InvalidInput
from core.money import (
    MAX_AMOUNT,
    MINIMUM_CHARGE,
    amount_for_days,
    format_amount,
    minimum_days,
    parse_amount,
)

# --- rule 2: amount = days x monthly_price / 30, rounded half up ---------------------


@pytest.mark.parametrize(
    ("days", "monthly_price", "amount", "why"),
    [
        (2250, 1000, 75_000, "seed: 75 channels x 30 days at 10.00 is exactly 750.00"),
        (30, 1000, 1000, "one channel-month is the monthly price"),
        (60, 1250, 2500, "two channel-months"),
        (1, 1000, 33, "33.33 rounds down"),
        (2, 1000, 67, "66.67 rounds up"),
        (1, 1050, 35, "exactly 35"),
        (1, 15, 1, "0.5 rounds up"),
        (3, 5, 1, "0.5 rounds up"),
        (15, 1, 1, "0.5 rounds up"),
        (1, 45, 2, "1.5 rounds up"),
        (1, 75, 3, "2.5 rounds up (banker's rounding would give 2)"),
        (1, 14, 0, "0.47 rounds down"),
        (1, 16, 1, "0.53 rounds up"),
        (0, 1000, 0, "zero days cost nothing"),
        (10, 0, 0, "a free price costs nothing"),
        (100_000, 99_999_999, 333_333_330_000, "large products stay exact integers"),
    ],
)
def test_the_amount_for_days_is_the_monthly_price_pro_rata_rounded_half_up(
    days: int, monthly_price: int, amount: int, why: str
) -> None:
    result = amount_for_days(days, monthly_price)
    assert result == amount, why
    assert type(result) is int


def test_the_amount_agrees_with_decimal_half_up_for_every_small_case() -> None:
    for days in range(0, 95):
        for price in range(0, 130):
            exact = Decimal(days * price) / 30
            expected = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
            assert amount_for_days(days, price) == expected, (days, price)


@pytest.mark.parametrize(("days", "monthly_price"), [(-1, 1000), (1, -1000)])
def test_a_negative_day_count_or_price_is_refused(days: int, monthly_price: int) -> None:
    with pytest.raises(InvalidInput):
        amount_for_days(days, monthly_price)


# --- rule 3: the fewest days whose amount reaches Stripe's minimum charge ------------


@pytest.mark.parametrize(
    ("monthly_price", "currency", "least"),
    [
        (1000, "usd", 2),  # 1 day = 0.33, 2 days = 0.67 >= 0.50
        (1050, "usd", 2),  # 1 day = 0.35, 2 days = 0.70
        (1500, "usd", 1),  # 1 day = exactly 0.50
        (1499, "usd", 1),  # 1 day = 49.97 cents, rounds to 0.50
        (1484, "usd", 2),  # 1 day = 49.47 cents, rounds to 0.49
        (100, "usd", 15),  # 1.00 a month: 15 days = 0.50
        (1, "usd", 1485),  # one cent a month: 1485 days = 49.5 -> 50
        (99_999_999, "usd", 1),
        (1000, "eur", 2),
        (1500, "eur", 1),
        (1000, "gbp", 1),  # GBP minimum is 0.30: 1 day = 0.33
        (800, "gbp", 2),  # 1 day = 0.27
        (900, "gbp", 1),  # 1 day = exactly 0.30
        (3000, "jpy", 1),  # 100 yen a day, minimum 50 yen
        (900, "jpy", 2),  # 30 yen a day
        (1485, "jpy", 1),  # 49.5 yen rounds up to 50
        (1484, "jpy", 2),  # 49.47 yen rounds down
    ],
)
def test_minimum_days_is_the_fewest_days_that_reach_the_minimum_charge(
    monthly_price: int, currency: str, least: int
) -> None:
    floor = MINIMUM_CHARGE[currency]
    found = minimum_days(monthly_price, currency)
    assert found == least
    assert amount_for_days(found, monthly_price) >= floor
    assert found == 1 or amount_for_days(found - 1, monthly_price) < floor


@pytest.mark.parametrize(
    ("monthly_price", "currency"), [(0, "usd"), (-5, "usd"), (1000, "xyz"), (1000, "")]
)
def test_minimum_days_refuses_a_free_price_or_an_unknown_currency(
    monthly_price: int, currency: str
) -> None:
    with pytest.raises(InvalidInput):
        minimum_days(monthly_price, currency)


# --- amounts people type -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.50", "usd", 1250),
        ("12.5", "usd", 1250),
        ("12", "usd", 1200),
        ("0.50", "usd", 50),
        ("0.01", "usd", 1),
        ("12,50", "usd", 1250),  # a decimal comma is read as the point
        ("  12.50  ", "usd", 1250),
        ("12.50", "USD", 1250),
        ("12.50", "eur", 1250),
        ("999999.99", "usd", MAX_AMOUNT),
        ("500", "jpy", 500),
        ("500.0", "jpy", 500),
        ("1.25", "gbp", 125),
    ],
)
def test_a_well_formed_amount_is_read_in_minor_units(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "field"),
    [
        ("", "usd", "amount"),
        ("   ", "usd", "amount"),
        ("abc", "usd", "amount"),
        ("12abc", "usd", "amount"),
        ("-1", "usd", "amount"),
        ("+1", "usd", "amount"),
        ("1e3", "usd", "amount"),
        ("NaN", "usd", "amount"),
        ("Infinity", "usd", "amount"),
        ("1.2.3", "usd", "amount"),
        ("12 50", "usd", "amount"),
        ("1,234.56", "usd", "amount"),
        ("12.345", "usd", "amount"),  # three decimals in a two-decimal currency
        ("0", "usd", "amount"),
        ("0.00", "usd", "amount"),
        ("1.5", "jpy", "amount"),  # yen has no minor unit
        ("1000000", "usd", "amount"),  # one cent over the largest amount
        ("9" * 40, "usd", "amount"),
        ("12.50", "xyz", "currency"),
    ],
)
def test_a_malformed_amount_is_refused_naming_the_field(
    text: str, currency: str, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_amount(text, currency)
    assert caught.value.field == field


# --- amounts people read -------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (1250, "usd", "12.50 USD"),
        (1250, "USD", "12.50 USD"),
        (50, "usd", "0.50 USD"),
        (5, "usd", "0.05 USD"),
        (0, "usd", "0.00 USD"),
        (75_000, "usd", "750.00 USD"),
        (125_000_000, "usd", "1,250,000.00 USD"),
        (100_000, "eur", "1,000.00 EUR"),
        (500, "jpy", "500 JPY"),
        (1_234_567, "jpy", "1,234,567 JPY"),
        (1250, "kwd", "1.250 KWD"),
        (5, "kwd", "0.005 KWD"),
        (-1250, "usd", "-12.50 USD"),
        (-5, "usd", "-0.05 USD"),
        (-1_234_567, "jpy", "-1,234,567 JPY"),
    ],
)
def test_an_amount_is_shown_with_its_decimals_grouping_and_code(
    minor: int, currency: str, text: str
) -> None:
    assert format_amount(minor, currency) == text


@pytest.mark.parametrize(
    ("text", "currency"), [("12.50", "usd"), ("0.50", "eur"), ("1,250.00", "gbp"), ("500", "jpy")]
)
def test_a_shown_amount_reads_back_as_the_same_minor_units(text: str, currency: str) -> None:
    minor = parse_amount(text.replace(",", ""), currency)
    assert format_amount(minor, currency) == f"{text} {currency.upper()}"
