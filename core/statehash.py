"""Canonical state and its hash, shared by every engine implementation.

The canonical form does not depend on how an engine lays out its memory, so the
numba engine, the reference engine and a replay can be compared by one hash.
"""

from __future__ import annotations

from hashlib import blake2b

import numpy as np

STATE_HASH_VERSION = b"matchd-state-v5"

CANON_BALANCE_DTYPE = np.dtype(
    [("user", "<i8"), ("asset", "<i8"), ("available", "<i8"), ("frozen", "<i8")]
)
#: Client order ids, sorted by (user, client_id).
CANON_CLIENT_ID_DTYPE = np.dtype([("user", "<i8"), ("client_id", "<i8"), ("order_id", "<i8")])
#: Users whose status is not ACTIVE, sorted by user.
CANON_USER_STATUS_DTYPE = np.dtype([("user", "<i8"), ("status", "<i8")])
#: Every (user, market) pair in the user risk limit table, sorted by (user, market).
CANON_USER_LIMIT_DTYPE = np.dtype(
    [("user", "<i8"), ("market", "<i8"), ("max_order_amount", "<i8"), ("max_notional", "<i8")]
)
#: The catalog's assets, in index order (genesis and added: docs/engine.md, "Adding
#: assets and markets").
CANON_ASSET_DTYPE = np.dtype([("name", "S16"), ("prec", "<i8"), ("prec_show", "<i8")])
#: The catalog's markets, in index order: what defines each (its risk limits are the
#: ``market_limits`` section). Amounts in lots, prices in ticks.
CANON_MARKET_DTYPE = np.dtype(
    [
        ("name", "S32"),
        ("stock", "<i8"),
        ("money", "<i8"),
        ("stock_prec", "<i8"),
        ("money_prec", "<i8"),
        ("fee_prec", "<i8"),
        ("min_amount", "<i8"),
        ("max_amount", "<i8"),
        ("max_price", "<i8"),
        ("max_orders", "<i8"),
        ("max_levels", "<i8"),
    ]
)
#: Resting orders, market by market, asks then bids, in priority order.
CANON_ORDER_DTYPE = np.dtype(
    [
        ("market", "<i8"),
        ("id", "<i8"),
        ("user", "<i8"),
        ("side", "<i8"),
        ("price", "<i8"),
        ("amount", "<i8"),
        ("left", "<i8"),
        ("deal_money", "<i8"),
        ("deal_fee", "<i8"),
        ("ctime_ns", "<i8"),
        ("mtime_ns", "<i8"),
        ("taker_rate", "<i8"),
        ("maker_rate", "<i8"),
        ("tif", "<i8"),
        ("stp", "<i8"),
        ("flags", "<i8"),
        ("source_len", "<i8"),
        ("source", "u1", (32,)),
    ]
)


def state_hash(
    counters: np.ndarray,
    supply: np.ndarray,
    balances: np.ndarray,
    key_digests: np.ndarray,
    orders: np.ndarray,
    client_ids: np.ndarray,
    market_status: np.ndarray,
    user_status: np.ndarray,
    last_price: np.ndarray,
    market_limits: np.ndarray,
    user_limits: np.ndarray,
    assets: np.ndarray,
    markets: np.ndarray,
) -> str:
    """BLAKE2b-128 (hex) over the canonical sections.

    ``counters``: int64 [seq, order_id, deal_id]; ``supply``: int64 per asset;
    ``balances``: CANON_BALANCE_DTYPE sorted by (user, asset), non-zero entries only;
    ``key_digests``: uint8 [n, 16] sorted lexicographically; ``orders``:
    CANON_ORDER_DTYPE in canonical order; ``client_ids``: CANON_CLIENT_ID_DTYPE sorted
    by (user, client_id); ``market_status``: int64 per market (MarketStatus);
    ``user_status``: CANON_USER_STATUS_DTYPE of the users not ACTIVE, sorted by user;
    ``last_price``: int64 per market, the ticks of its last deal (0: none);
    ``market_limits``: int64 [markets, 7], each market's risk limits in RiskLimit order;
    ``user_limits``: CANON_USER_LIMIT_DTYPE, every pair of the user risk limit table,
    sorted by (user, market); ``assets``: CANON_ASSET_DTYPE and ``markets``:
    CANON_MARKET_DTYPE, the catalog in index order.
    """
    h = blake2b(digest_size=16)
    h.update(STATE_HASH_VERSION)
    for name, arr in (
        ("counters", np.ascontiguousarray(counters, dtype="<i8")),
        ("supply", np.ascontiguousarray(supply, dtype="<i8")),
        ("balances", np.ascontiguousarray(balances, dtype=CANON_BALANCE_DTYPE)),
        ("keys", np.ascontiguousarray(key_digests, dtype=np.uint8)),
        ("orders", np.ascontiguousarray(orders, dtype=CANON_ORDER_DTYPE)),
        ("client_ids", np.ascontiguousarray(client_ids, dtype=CANON_CLIENT_ID_DTYPE)),
        ("market_status", np.ascontiguousarray(market_status, dtype="<i8")),
        ("user_status", np.ascontiguousarray(user_status, dtype=CANON_USER_STATUS_DTYPE)),
        ("last_price", np.ascontiguousarray(last_price, dtype="<i8")),
        ("market_limits", np.ascontiguousarray(market_limits, dtype="<i8")),
        ("user_limits", np.ascontiguousarray(user_limits, dtype=CANON_USER_LIMIT_DTYPE)),
        ("assets", np.ascontiguousarray(assets, dtype=CANON_ASSET_DTYPE)),
        ("markets", np.ascontiguousarray(markets, dtype=CANON_MARKET_DTYPE)),
    ):
        data = arr.tobytes()
        h.update(name.encode())
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()
