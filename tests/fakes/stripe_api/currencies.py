"""Currencies and the charge amounts Stripe accepts for ``mode=payment`` sessions.

The minimum table is Stripe's own, written as Stripe publishes it (major units per
settlement currency), not copied from ``core/money.py``: the fake refusing an amount
that core lets through is exactly the disagreement these tests exist to catch.
"""

from __future__ import annotations

from decimal import Decimal

_ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg",
                           "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"})  # fmt: skip

# Stripe Docs, "Supported currencies" > "Minimum and maximum charge amounts"
# (https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts): the minimum
# charge amount per settlement currency, as printed there ($0.50, 175.00 Ft, ¥50, ...).
_PUBLISHED_MINIMUM: dict[str, str] = {
    "usd": "0.50", "aed": "2.00", "aud": "0.50", "bgn": "1.00", "brl": "0.50",
    "cad": "0.50", "chf": "0.50", "czk": "15.00", "dkk": "2.50", "eur": "0.50",
    "gbp": "0.30", "hkd": "4.00", "huf": "175.00", "inr": "0.50", "jpy": "50",
    "mxn": "10", "myr": "2", "nok": "3.00", "nzd": "0.50", "pln": "2.00",
    "ron": "2.00", "sek": "3.00", "sgd": "0.50", "thb": "10",
}  # fmt: skip


def _minor_units(major: str, currency: str) -> int:
    """Stripe's API amounts: major x 100, except for zero-decimal currencies (¥50 is 50)."""
    places = 0 if currency in _ZERO_DECIMAL else 2
    return int(Decimal(major).scaleb(places))


MIN_CHARGE: dict[str, int] = {
    currency: _minor_units(major, currency) for currency, major in _PUBLISHED_MINIMUM.items()
}
"""Minimum charge per currency in the smallest currency unit (``{"usd": 50, ...}``)."""

# Same page: "up to eight digits for all other currencies" (IDR allows twelve; the fake
# applies eight to every currency).
MAX_CHARGE = 99_999_999
_CURRENCIES = frozenset(MIN_CHARGE) | _ZERO_DECIMAL | frozenset(
    {"ars", "cop", "egp", "idr", "ils", "kzt", "mad", "ngn", "php", "pkr", "rub", "sar",
     "try", "twd", "uah", "zar", "gel", "amd", "azn", "uzs", "kgs", "byn", "mdl", "rsd"}
)  # fmt: skip


def _fmt_amount(amount: int, currency: str) -> str:
    if currency in _ZERO_DECIMAL:
        return f"{amount} {currency}"
    major = f"{amount / 100:.2f}"
    return f"${major} {currency}" if currency == "usd" else f"{major} {currency}"

