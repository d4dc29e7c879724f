"""Money: exact decimals with two places; a string on the wire, DECIMAL(12,2) in storage."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

CENT = Decimal("0.01")
# DECIMAL(12,2) holds up to 10 digits before the point.
MAX_AMOUNT = Decimal("9999999999.99")
# Longer text is no amount, whatever it says; refused before Decimal() reads it.
MAX_MONEY_TEXT = 40


def parse_money(value: Any) -> Decimal:
    """Accepts "19.99", 19.99 (parsed as Decimal, never float) or 19; refuses anything else."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError("must be a decimal string or a number")
    if isinstance(value, str) and len(value) > MAX_MONEY_TEXT:
        raise ValueError(f"must be at most {MAX_MONEY_TEXT} characters")
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation as exc:
        raise ValueError("must be a decimal number such as 19.99") from exc
    if not amount.is_finite():
        raise ValueError("must be a finite number")
    if amount < 0:
        raise ValueError("must not be negative")
    if amount > MAX_AMOUNT:
        raise ValueError(f"must be at most {MAX_AMOUNT}")
    if amount != amount.quantize(CENT, rounding="ROUND_DOWN"):
        raise ValueError("must have at most 2 decimal places")
    return amount.quantize(CENT)


def format_money(amount: Decimal) -> str:
    return f"{amount.quantize(CENT):f}"


# A pydantic field type: validated by parse_money, serialised as a two-place string.
Money = Annotated[Decimal, BeforeValidator(parse_money), PlainSerializer(format_money)]


# The string form every OpenAPI document states for money inputs. parse_money alone is more
# lenient (it strips blanks, takes "1e2"); requests are held to exactly what the spec says.
MONEY_TEXT_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"


def parse_money_input(value: Any) -> Decimal:
    """A money input from a client: a MONEY_TEXT_PATTERN string or a JSON number."""
    if isinstance(value, str) and not re.fullmatch(MONEY_TEXT_PATTERN, value):
        raise ValueError("must be a decimal string such as 19.99")
    return parse_money(value)


MoneyInput = Annotated[Decimal, BeforeValidator(parse_money_input), PlainSerializer(format_money)]
