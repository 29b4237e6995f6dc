"""Money: integer minor units, the pricing rule, and amounts people type and read.

Rule 2: the amount for D days at a monthly price P (per channel, per 30 days) is
D x P / 30, rounded half up to a whole minor unit. Integers only: no float ever touches
money, so the seed's example (2250 days at 10.00) is exactly 750.00.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from core.errors import InvalidInput

DAYS_PER_MONTH = 30

# Digits after the decimal point, as Stripe counts them for its API amounts.
_ZERO_DECIMAL = frozenset([
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
    "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
])
_THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])

# Stripe's minimum charge per currency, in minor units (docs: "Minimum and maximum
# charge amounts"). A currency absent here is not offered: its minimum is unknown.
MINIMUM_CHARGE: dict[str, int] = {
    "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50,
    "czk": 1500, "dkk": 250, "eur": 50, "gbp": 30, "hkd": 400, "huf": 17500,
    "inr": 50, "jpy": 50, "mxn": 1000, "myr": 200, "nok": 300, "nzd": 50,
    "pln": 200, "ron": 200, "sek": 300, "sgd": 50, "thb": 1000,
}

# Far above any real order; keeps every product of days and prices well inside the
# range Stripe accepts (8 digits of a major unit) and far from datetime overflow.
MAX_AMOUNT = 99_999_999


def check_currency(currency: str) -> str:
    """Return the lower-case ISO code if it is one we can charge in."""
    code = currency.strip().lower()
    if code not in MINIMUM_CHARGE:
        shown = currency if len(currency) <= 10 else currency[:9] + "…"
        raise InvalidInput("currency", f"{shown!r} is not a supported currency")
    return code


def exponent(currency: str) -> int:
    code = currency.lower()
    if code in _ZERO_DECIMAL:
        return 0
    if code in _THREE_DECIMAL:
        return 3
    return 2


def amount_for_days(days: int, monthly_price: int) -> int:
    """Rule 2: days x monthly_price / 30, rounded half up, in minor units."""
    if days < 0 or monthly_price < 0:
        raise InvalidInput("days", "must not be negative")
    # Half up on non-negative integers: floor((2n + d) / 2d) with n/d = days*price/30.
    return (2 * days * monthly_price + DAYS_PER_MONTH) // (2 * DAYS_PER_MONTH)


def minimum_days(monthly_price: int, currency: str) -> int:
    """The fewest days whose amount reaches Stripe's minimum charge (rule 3)."""
    floor = MINIMUM_CHARGE[check_currency(currency)]
    if monthly_price <= 0:
        raise InvalidInput("monthly_price", "must be positive")
    days = max(1, (floor * DAYS_PER_MONTH) // monthly_price)
    while amount_for_days(days, monthly_price) < floor:
        days += 1
    while days > 1 and amount_for_days(days - 1, monthly_price) >= floor:
        days -= 1
    return days


def parse_amount(text: str, currency: str) -> int:
    """'12.50' in usd -> 1250. Refuses signs, exponents, extra digits and nonsense."""
    code = check_currency(currency)
    raw = text.strip().replace(",", ".")
    shown = text if len(text) <= 20 else text[:19] + "…"  # never quote a flood back
    if not raw or not all(c.isdigit() or c == "." for c in raw) or raw.count(".") > 1:
        raise InvalidInput("amount", f"{shown!r} is not an amount like 12.50")
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:  # pragma: no cover - guarded by the character check
        raise InvalidInput("amount", f"{shown!r} is not an amount like 12.50") from exc
    places = exponent(code)
    minor = value.scaleb(places)
    if minor != minor.to_integral_value():
        raise InvalidInput("amount", f"{code.upper()} has {places} decimal places at most")
    result = int(minor)
    if result <= 0:
        raise InvalidInput("amount", "must be greater than zero")
    if result > MAX_AMOUNT:
        raise InvalidInput("amount", "is too large")
    return result


def format_amount(minor: int, currency: str) -> str:
    """1250, 'usd' -> '12.50 USD' (thousands grouped: '1,250.00 USD')."""
    places = exponent(currency)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**places) if places else (abs(minor), 0)
    text = f"{whole:,}"
    if places:
        text += f".{frac:0{places}d}"
    return f"{sign}{text} {currency.upper()}"
