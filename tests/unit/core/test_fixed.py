"""Exact decimal parsing and formatting (core/fixed.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ParseError
from core.fixed import format_units, is_exact, parse_decimal, parse_units

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize(
    ("text", "places", "units"),
    [
        ("1", 8, 100_000_000),
        ("1.5", 2, 150),
        ("0.123456789", 8, 12_345_678),  # truncated, not rounded
        ("1.999", 2, 199),
        ("1e-2", 2, 1),
        ("1.5E3", 0, 1500),
        ("+7", 0, 7),
        (".5", 1, 5),
        ("5.", 0, 5),
        ("-0.129", 2, -12),  # toward zero
    ],
)
def test_parse_units_truncates_toward_zero(text: str, places: int, units: int) -> None:
    assert parse_units(text, places, allow_negative=True) == units


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 1",
        "1 ",
        "1,5",
        "0x10",
        "NaN",
        "nan",
        "Infinity",
        "-inf",
        "1e",
        "e5",
        "1..2",
        "--1",
        "1e99999",
        "9" * 81,
        "\uff11",  # fullwidth digit one: Decimal() would accept it
    ],
)
def test_parse_decimal_refuses_malformed_text(text: str) -> None:
    with pytest.raises(ParseError):
        parse_decimal(text)


def test_parse_decimal_refuses_non_strings() -> None:
    with pytest.raises(ParseError, match="expected a decimal string"):
        parse_decimal(1.5)  # type: ignore[arg-type]


def test_zero_negative_and_range_are_refused_unless_allowed() -> None:
    with pytest.raises(ParseError, match="zero"):
        parse_units("0.001", 2)
    with pytest.raises(ParseError, match="negative"):
        parse_units("-1", 2)
    with pytest.raises(ParseError, match="out of range"):
        parse_units("100", 2, maximum=9_999)
    with pytest.raises(ParseError, match="out of range"):
        parse_units("1e20", 0)
    assert parse_units("0", 2, allow_zero=True) == 0


@pytest.mark.parametrize(
    ("units", "places", "strip", "text"),
    [
        (110_000_000, 8, True, "1.1"),
        (700_000, 2, True, "7000"),
        (700_000, 2, False, "7000.00"),
        (1, 8, True, "0.00000001"),  # never "1e-8"
        (0, 8, True, "0"),  # never "0e-8"
        (0, 8, False, "0.00000000"),
        (-5, 8, True, "-0.00000005"),
        (15, 0, True, "15"),
    ],
)
def test_format_units_plain_notation(units: int, places: int, strip: bool, text: str) -> None:
    assert format_units(units, places, strip=strip) == text


@given(st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1), st.integers(0, 18))
def test_format_then_parse_round_trips(units: int, places: int) -> None:
    text = format_units(units, places)
    assert parse_units(text, places, allow_zero=True, allow_negative=True) == units
    assert "e" not in text.lower()
    assert Decimal(text) == Decimal(units).scaleb(-places)


def test_is_exact() -> None:
    assert is_exact(Decimal("0.01"), 2)
    assert not is_exact(Decimal("0.001"), 2)
