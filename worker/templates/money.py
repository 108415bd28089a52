"""Amounts in minor units (what orders store) rendered for people, per ISO 4217 exponent."""

from __future__ import annotations

# Currencies whose minor unit is not 1/100 (ISO 4217); every other code uses two decimals.
_ZERO_DECIMALS = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
     "VND", "VUV", "XAF", "XOF", "XPF"}
)
_THREE_DECIMALS = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})


def minor_unit_exponent(currency: str) -> int:
    """How many decimal places the currency's minor unit has (2 unless ISO says otherwise)."""
    if currency in _ZERO_DECIMALS:
        return 0
    if currency in _THREE_DECIMALS:
        return 3
    return 2


def format_amount(minor_units: int, currency: str) -> str:
    """``1234567, "EUR"`` -> ``"12,345.67 EUR"``; exact (integer arithmetic, no floats)."""
    exponent = minor_unit_exponent(currency)
    sign = "-" if minor_units < 0 else ""
    major, minor = divmod(abs(minor_units), 10**exponent)
    text = f"{major:,}"
    if exponent:
        text += f".{minor:0{exponent}d}"
    return f"{sign}{text} {currency}"
