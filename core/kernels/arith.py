"""Exact integer helpers for money: no floats, no silent overflow."""

from __future__ import annotations

from core.kernels.jit import inline

INT64_MAX = 9223372036854775807


@inline
def fee_of(base: int, rate: int, den: int) -> int:
    """floor(base * rate / den) exactly, for 0 <= base, 0 <= rate < den <= 10**9.

    base * rate may exceed int64; splitting base = q*den + r keeps every product in
    range: q*rate <= base and r*rate < den*den <= 10**18.
    """
    q = base // den
    r = base - q * den
    return q * rate + (r * rate) // den


#: Below this, the product of two non-negative values fits in int64.
_HALF = 1 << 31


@inline
def mul_le(a: int, b: int, limit: int) -> bool:
    """a * b <= limit, for non-negative a, b, limit, without overflowing."""
    if 0 <= a < _HALF and 0 <= b < _HALF:  # the product fits: no division (the usual case)
        return a * b <= limit
    if a == 0 or b == 0:
        return limit >= 0
    return a <= limit // b


@inline
def mul3_le(a: int, b: int, c: int, limit: int) -> bool:
    """a * b * c <= limit, for non-negative values, without overflowing."""
    if a == 0 or b == 0 or c == 0:
        return limit >= 0
    if not mul_le(a, b, INT64_MAX):
        return False
    return mul_le(a * b, c, limit)
