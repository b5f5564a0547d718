"""The arrays a ``feed.depth.DepthBook`` saves (``to_arrays``) and how they are checked
before one is rebuilt from them (``from_arrays``): names, types, shapes and every
value ``to_arrays`` cannot have written, each refused with a message saying which."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np

from core.schema import MAX_SUPPLY_UNITS, Side

#: Counters of ``DepthStatistics``, in this order in ``to_arrays()["counters"]``.
COUNTER_NAMES: Final = (
    "order_events",
    "unknown_market",
    "unknown_order",
    "duplicate_order",
    "mismatched",
    "malformed",
)
_ORDER_ARRAYS: Final = ("order_id", "order_market", "order_side", "order_price", "order_left")
_BASE_ARRAYS: Final = ("base_market", "base_side", "base_price", "base_lots")
#: The names of ``to_arrays()``; ``from_arrays`` takes exactly these.
ARRAY_NAMES: Final = ("n_markets", *_ORDER_ARRAYS, *_BASE_ARRAYS, "counters")

_ASK: Final = int(Side.ASK)
_BID: Final = int(Side.BID)
MAX_MARKETS: Final = 2**15  #: market indexes are int16


def check_depth_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``arrays`` as int64 arrays, checked as ``DepthBook.from_arrays`` says
    (``ValueError`` naming what is wrong)."""
    names = set(arrays)
    if names != set(ARRAY_NAMES):
        missing, unknown = sorted(set(ARRAY_NAMES) - names), sorted(names - set(ARRAY_NAMES))
        raise ValueError(f"depth arrays: missing {missing}, unknown {unknown}")
    a: dict[str, np.ndarray] = {}
    for name in ARRAY_NAMES:
        array = np.asarray(arrays[name])
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"depth arrays: {name} must hold integers, not {array.dtype}")
        a[name] = array.astype(np.int64)
    n = int(a["n_markets"]) if a["n_markets"].shape == () else -1
    _require(0 <= n <= MAX_MARKETS, "n_markets must be one integer in 0..32768")
    _require(a["counters"].shape == (len(COUNTER_NAMES),), "counters has the wrong shape")
    _require(bool((a["counters"] >= 0).all()), "counters must not be negative")
    for group in (_ORDER_ARRAYS, _BASE_ARRAYS):
        shape = a[group[0]].shape
        _require(len(shape) == 1, f"{group[0]} must be 1-d")
        _require(all(a[name].shape == shape for name in group), f"{group} differ in shape")
    ids = a["order_id"]
    _require(bool((ids[1:] > ids[:-1]).all()), "order ids must be ascending and unique")
    _require(bool((ids >= 1).all()), "order ids must be at least 1")
    for prefix, amount in (("order", "order_left"), ("base", "base_lots")):
        market, side, price = (a[f"{prefix}_{x}"] for x in ("market", "side", "price"))
        _require(bool(((market >= 0) & (market < n)).all()), f"{prefix}_market out of range")
        _require(bool(((side == _ASK) | (side == _BID)).all()), f"{prefix}_side not 1 or 2")
        for name, values in ((f"{prefix}_price", price), (amount, a[amount])):
            inside = (values >= 1) & (values <= MAX_SUPPLY_UNITS)
            _require(bool(inside.all()), f"{name} outside 1..{MAX_SUPPLY_UNITS}")
    books = 2 * a["base_market"] + a["base_side"] - 1
    price = a["base_price"]
    ascending = (books[1:] > books[:-1]) | ((books[1:] == books[:-1]) & (price[1:] > price[:-1]))
    _require(bool(ascending.all()), "base levels must be sorted by market, side and price")
    return a


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"depth arrays: {message}")
