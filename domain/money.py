"""Money as Decimal, with the contract's two-decimal-place rule."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_MONEY = re.compile(r"^-?\d{1,13}(\.\d{1,2})?$")


class InvalidMoney(ValueError):
    """A money value that is not a decimal string with at most two places."""


def parse_money(text: str) -> Decimal:
    """Read a contract money string such as ``"125.00"`` or ``"-20.50"``.

    Floats and numbers are refused by the wire format before this is called; here
    only the string's shape is checked.
    """
    if not _MONEY.match(text):
        raise InvalidMoney(f"{text!r} is not a decimal string with at most 2 places")
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex already rules this out
        raise InvalidMoney(f"{text!r} is not a decimal amount") from exc


def format_money(amount: Decimal) -> str:
    """Write an amount with exactly two places, the way the contract shows money."""
    return str(amount.quantize(Decimal("0.01")))
