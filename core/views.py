"""Plain, immutable views of engine objects returned by queries.

Both engines return these, so the test suite can compare them directly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from hashlib import blake2b

import numpy as np

from core.schema import BUSINESS_KEY_LENGTH


@dataclass(frozen=True, slots=True)
class OrderView:
    """An order as ViaBTC shows it, in integer units (see docs/engine.md "Units").

    ``left`` and ``amount`` are lots, except for a market bid (money units).
    ``deal_fee`` is in the fee asset: money for an ask, stock for a bid.
    """

    id: int
    market: int
    user: int
    side: int
    otype: int
    price: int
    amount: int
    left: int
    deal_stock: int
    deal_money: int
    deal_fee: int
    taker_rate: int
    maker_rate: int
    ctime_ns: int
    mtime_ns: int
    tif: int
    stp: int
    flags: int
    source: str


@dataclass(frozen=True, slots=True)
class AssetSummary:
    """``asset.summary`` for one asset, in units."""

    total: int
    available_count: int
    available: int
    frozen_count: int
    frozen: int


@dataclass(frozen=True, slots=True)
class MarketSummary:
    """``market.summary`` for one market, in orders and lots."""

    ask_count: int
    ask_lots: int
    bid_count: int
    bid_lots: int


def source_text(raw: np.ndarray, length: int) -> str:
    """Decode a zero-padded source field."""
    return bytes(raw[:length]).decode("utf-8")


def update_key_digest(user: int, asset: int, business: bytes, business_id: int) -> bytes:
    """BLAKE2b-128 of a balance.update idempotency key.

    Only the first ``BUSINESS_KEY_LENGTH`` bytes of ``business`` count (as ViaBTC); their
    length is part of the key, so ``b"deposit"`` and ``b"deposit\\0"`` stay distinct.
    """
    name = business[:BUSINESS_KEY_LENGTH]
    key = (
        struct.pack("<qhB", user, asset, len(name))
        + name.ljust(BUSINESS_KEY_LENGTH, b"\0")
        + struct.pack("<q", business_id)
    )
    return blake2b(key, digest_size=16).digest()
