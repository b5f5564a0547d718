"""Checks of method arguments, shared by the ViaBTC-compatible methods (core/viabtc.py,
persistence/history_queries.py, feed/market_data.py): typed Python values, as the
HTTP and WebSocket layers map them from JSON, are checked here, and a bad one raises
``ArgumentError`` whose message says which argument and why."""

from __future__ import annotations

from core.schema import Result


class ArgumentError(ValueError):
    """An argument is invalid; the message says which and why, ``result`` is the
    precise result (``INVALID_ARGUMENT`` unless the caller says otherwise)."""

    def __init__(self, message: str, result: Result = Result.INVALID_ARGUMENT) -> None:
        super().__init__(message)
        self.result = result


def int_arg(value: object, what: str, low: int, high: int) -> int:
    """``value`` if it is an integer (not a bool) in ``low..high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentError(f"{what} must be an integer")
    if not low <= value <= high:
        raise ArgumentError(f"{what} must be in {low}..{high}")
    return int(value)


def str_arg(value: object, what: str) -> str:
    """``value`` if it is a string."""
    if not isinstance(value, str):
        raise ArgumentError(f"{what} must be a string")
    return value
