"""Builders for ``COMMAND_DTYPE`` records, in integer units.

Each builder returns a one-element array (``quote``: its k + 1 records); ``batch``
concatenates them. Values are
stored as given: the engines validate them (a builder never raises on a bad value,
so tests can feed hostile input through the same path).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

import numpy as np

from core.schema import (
    COMMAND_DTYPE,
    CommandKind,
    Side,
    StpMode,
    TimeInForce,
)

#: ``COMMAND_DTYPE``'s layout for ``struct`` (``pack``): one call instead of a numpy
#: assignment per field.
_LAYOUT: Final = struct.Struct("<qqqqqiihbbbbbb32s")


def pack(
    kind: CommandKind | int,
    user: int,
    market: int,
    *,
    ts_ns: int = 0,
    side: int = 0,
    amount: int = 0,
    price: int = 0,
    order_id: int = 0,
    taker_rate: int = 0,
    maker_rate: int = 0,
    tif: int = 0,
    stp: int = 0,
    flags: int = 0,
    source: bytes = b"",
) -> np.ndarray:
    """A one-element command array built in one ``struct`` call (about 10x faster
    than the builders below, for checked values: a value outside its field's range
    raises ``struct.error`` instead of being stored). A PUT's client id goes in
    ``order_id``."""
    raw = _LAYOUT.pack(
        ts_ns, user, price, amount, order_id, taker_rate, maker_rate, market, kind, side,
        tif, stp, flags, min(len(source), 127), source[:32],
    )  # fmt: skip
    return np.frombuffer(bytearray(raw), dtype=COMMAND_DTYPE)


def _command(kind: CommandKind, ts_ns: int, user: int, market: int) -> np.ndarray:
    cmd = np.zeros(1, dtype=COMMAND_DTYPE)
    cmd["kind"] = kind
    cmd["ts_ns"] = ts_ns
    cmd["user"] = user
    cmd["market"] = market
    return cmd


def _set_source(cmd: np.ndarray, source: bytes) -> None:
    n = min(len(source), 32)
    cmd["source"][0, :n] = np.frombuffer(source[:n], dtype=np.uint8)
    cmd["source_len"] = min(len(source), 127)


def put_limit(
    user: int,
    market: int,
    side: Side | int,
    amount: int,
    price: int,
    taker_rate: int = 0,
    maker_rate: int = 0,
    *,
    ts_ns: int = 0,
    tif: TimeInForce | int = TimeInForce.GTC,
    stp: StpMode | int = StpMode.NONE,
    flags: int = 0,
    source: bytes = b"",
    client_id: int = 0,
) -> np.ndarray:
    """A limit order: ``amount`` lots at ``price`` ticks; ``client_id`` (0 = none) is
    the client's own id for it (docs/engine.md, "Client order ids")."""
    cmd = _command(CommandKind.PUT_LIMIT, ts_ns, user, market)
    cmd["order_id"] = client_id
    cmd["side"] = side
    cmd["amount"] = amount
    cmd["price"] = price
    cmd["taker_rate"] = taker_rate
    cmd["maker_rate"] = maker_rate
    cmd["tif"] = tif
    cmd["stp"] = stp
    cmd["flags"] = flags
    _set_source(cmd, source)
    return cmd


def put_market(
    user: int,
    market: int,
    side: Side | int,
    amount: int,
    taker_rate: int = 0,
    *,
    ts_ns: int = 0,
    stp: StpMode | int = StpMode.NONE,
    source: bytes = b"",
    client_id: int = 0,
) -> np.ndarray:
    """A market order: an ask sells ``amount`` lots, a bid spends ``amount`` money units;
    ``client_id`` as for ``put_limit``."""
    cmd = _command(CommandKind.PUT_MARKET, ts_ns, user, market)
    cmd["order_id"] = client_id
    cmd["side"] = side
    cmd["amount"] = amount
    cmd["taker_rate"] = taker_rate
    cmd["tif"] = TimeInForce.IOC
    cmd["stp"] = stp
    _set_source(cmd, source)
    return cmd


def cancel(user: int, market: int, order_id: int, *, ts_ns: int = 0) -> np.ndarray:
    """Cancel one resting order."""
    cmd = _command(CommandKind.CANCEL, ts_ns, user, market)
    cmd["order_id"] = order_id
    return cmd


def replace(
    user: int, market: int, order_id: int, price: int, left: int, *, ts_ns: int = 0
) -> np.ndarray:
    """Atomically move a resting order to ``price`` ticks with ``left`` lots open."""
    cmd = _command(CommandKind.REPLACE, ts_ns, user, market)
    cmd["order_id"] = order_id
    cmd["price"] = price
    cmd["amount"] = left
    return cmd


def cancel_all(user: int, market: int, side: int = 0, *, ts_ns: int = 0) -> np.ndarray:
    """Cancel all the user's resting orders in the market (side 0 = both)."""
    cmd = _command(CommandKind.CANCEL_ALL, ts_ns, user, market)
    cmd["side"] = side
    return cmd


def market_status(market: int, status: int, *, ts_ns: int = 0) -> np.ndarray:
    """Set the market's status (a ``MarketStatus``: open, halted, delisted)."""
    cmd = _command(CommandKind.MARKET_STATUS, ts_ns, 0, market)
    cmd["amount"] = status
    return cmd


def user_status(user: int, status: int, *, ts_ns: int = 0) -> np.ndarray:
    """Set the user's status (a ``UserStatus``: active, blocked)."""
    cmd = _command(CommandKind.USER_STATUS, ts_ns, user, 0)
    cmd["amount"] = status
    return cmd


def market_limit(market: int, limit: int, value: int, *, ts_ns: int = 0) -> np.ndarray:
    """Set the market's risk limit ``limit`` (a ``RiskLimit``) to ``value``, in engine
    units (ticks, lots, money units, orders, millionths, lots)."""
    cmd = _command(CommandKind.MARKET_LIMIT, ts_ns, 0, market)
    cmd["side"] = limit
    cmd["amount"] = value
    return cmd


def user_limit(user: int, market: int, limit: int, value: int, *, ts_ns: int = 0) -> np.ndarray:
    """Set the user's own risk limit ``limit`` (``RiskLimit.MAX_NOTIONAL``, money units,
    or ``RiskLimit.MAX_ORDER_AMOUNT``, lots) in the market to ``value`` (0: none)."""
    cmd = _command(CommandKind.USER_LIMIT, ts_ns, user, market)
    cmd["side"] = limit
    cmd["amount"] = value
    return cmd


def cancel_market(market: int, side: int = 0, *, ts_ns: int = 0) -> np.ndarray:
    """Cancel up to max_matches resting orders of the market, any user's (side 0 =
    both); repeat until its value is 0."""
    cmd = _command(CommandKind.CANCEL_MARKET, ts_ns, 0, market)
    cmd["side"] = side
    return cmd


def quote(
    user: int,
    market: int,
    levels: Sequence[tuple[int, int, int]],
    taker_rate: int = 0,
    maker_rate: int = 0,
    *,
    ts_ns: int = 0,
    source: bytes = b"",
    k: int | None = None,
) -> np.ndarray:
    """A mass quote (docs/engine.md, "QUOTE"): the header and one QUOTE_LEVEL record
    per ``(side, price ticks, amount lots)`` of ``levels``, in order; no level removes
    the quote. ``k`` overrides the header's level count (for tests of bad input)."""
    n = len(levels)
    out = np.zeros(n + 1, dtype=COMMAND_DTYPE)
    out["ts_ns"] = ts_ns
    out["user"] = user
    out["market"] = market
    out["kind"] = CommandKind.QUOTE_LEVEL
    head = out[:1]
    head["kind"] = CommandKind.QUOTE
    head["amount"] = n if k is None else k
    head["taker_rate"] = taker_rate
    head["maker_rate"] = maker_rate
    _set_source(head, source)
    if n:
        out[["side", "price", "amount"]][1:] = np.array(
            [tuple(level) for level in levels], dtype=out[["side", "price", "amount"]].dtype
        )
    return out


def batch(*commands: np.ndarray) -> np.ndarray:
    """Concatenate one-element command arrays into one batch."""
    if not commands:
        return np.zeros(0, dtype=COMMAND_DTYPE)
    return np.concatenate(commands)
