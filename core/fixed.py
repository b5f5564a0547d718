"""Exact decimal text <-> int64 fixed point.

Money never touches a float. Text is parsed with ``decimal.Decimal`` and truncated
toward zero to the wanted number of places, as ViaBTC does; results are written in
plain notation (never ``1e-8``) with trailing zeros removed, unless asked to keep
the scale.
"""

from __future__ import annotations

import re
from decimal import ROUND_DOWN, Context, Decimal, InvalidOperation

from core.errors import ParseError
from core.schema import INT64_MAX

#: Longest decimal text accepted (digits, sign, point and exponent).
MAX_DECIMAL_TEXT_LENGTH = 80
#: Largest |exponent| accepted in scientific notation; anything bigger is out of range
#: for int64 fixed point anyway, and refusing it early bounds the work per input.
MAX_EXPONENT = 60

_DECIMAL_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_CONTEXT = Context(prec=200, rounding=ROUND_DOWN, Emax=999_999, Emin=-999_999)


def parse_decimal(text: str) -> Decimal:
    """Parse decimal ``text`` strictly (plain or scientific notation, no spaces).

    Raises ``ParseError`` for anything else: empty text, spaces, NaN, Infinity,
    hexadecimal, more than ``MAX_DECIMAL_TEXT_LENGTH`` characters, or an exponent
    beyond ``MAX_EXPONENT``.
    """
    if not isinstance(text, str):
        raise ParseError(f"expected a decimal string, got {type(text).__name__}")
    if len(text) > MAX_DECIMAL_TEXT_LENGTH:
        raise ParseError(f"decimal text longer than {MAX_DECIMAL_TEXT_LENGTH} characters")
    if _DECIMAL_RE.fullmatch(text) is None:
        raise ParseError(f"not a decimal number: {text!r}")
    try:
        value = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex already refuses these
        raise ParseError(f"not a decimal number: {text!r}") from exc
    if abs(value.adjusted()) > MAX_EXPONENT and value != 0:
        raise ParseError(f"decimal out of range: {text!r}")
    return value


def to_units(value: Decimal, places: int) -> int:
    """``value`` * 10**places truncated toward zero, as an int (no range check)."""
    return int(value.scaleb(places, _CONTEXT).to_integral_value(rounding=ROUND_DOWN))


def parse_units(
    text: str,
    places: int,
    *,
    allow_zero: bool = False,
    allow_negative: bool = False,
    maximum: int = INT64_MAX,
) -> int:
    """Parse ``text`` into integer units of 10**-places, truncating toward zero.

    A value that truncates to zero is refused unless ``allow_zero``; a negative one
    unless ``allow_negative``. ``|result| <= maximum`` or ``ParseError``.
    """
    value = parse_decimal(text)
    units = to_units(value, places)
    if units == 0 and not allow_zero:
        raise ParseError(f"{text!r} is zero at {places} decimal places")
    if units < 0 and not allow_negative:
        raise ParseError(f"{text!r} is negative")
    if abs(units) > maximum:
        raise ParseError(f"{text!r} is out of range")
    return units


def is_exact(value: Decimal, places: int) -> bool:
    """True if ``value`` has no digits beyond ``places`` decimal places."""
    return Decimal(to_units(value, places)).scaleb(-places, _CONTEXT) == value


def format_units(units: int, places: int, *, strip: bool = True) -> str:
    """Write ``units`` * 10**-places in plain notation.

    With ``strip`` (the default, as ViaBTC's results), trailing zeros after the point
    and a bare point are removed: ``format_units(110000000, 8) == "1.1"``. Without it
    the scale is kept: ``format_units(700000, 2, strip=False) == "7000.00"``.
    """
    negative = units < 0
    digits = str(-units if negative else units)
    if places > 0:
        digits = digits.rjust(places + 1, "0")
        whole, frac = digits[:-places], digits[-places:]
        if strip:
            frac = frac.rstrip("0")
        text = f"{whole}.{frac}" if frac else whole
    else:
        text = digits
    if negative and text.strip("0.") != "":
        return "-" + text
    return text
