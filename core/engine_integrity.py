"""The engine's canonical state, its hash and its invariants (docs/engine.md, "State
hash and invariants"), over the arrays ``Engine`` holds: the part of the engine that
reads the whole state at once, for tests, snapshots and replicas, and never runs per
command.
"""

from __future__ import annotations

import numpy as np

from core.catalog import canonical_catalog
from core.config import EngineConfig
from core.kernels import client_ids as kcids
from core.kernels import inspect as kinspect
from core.kernels import user_limits as kulimits
from core.kernels.layout import (
    A_BALANCES,
    A_CIDS,
    A_MSTATUS,
    A_ULIMITS,
    A_USERS,
    A_USTATUS,
    B_INFO,
    B_MPARAMS,
    B_MSTATE,
    B_ORDERS,
    B_SRC_DATA,
    B_SRC_STATE,
    MP_PRICE_STEP,
    MS_LAST_PRICE,
    MS_NORDERS,
    SRC_LEN,
    SS_BUMP,
)
from core.schema import (
    COUNTER_ACCOUNTS,
    COUNTER_CLIENT_IDS,
    COUNTER_ORDER_ID,
    COUNTER_USER_LIMITS,
    MarketStatus,
    UserStatus,
)
from core.statehash import (
    CANON_BALANCE_DTYPE,
    CANON_CLIENT_ID_DTYPE,
    CANON_ORDER_DTYPE,
    CANON_USER_LIMIT_DTYPE,
    CANON_USER_STATUS_DTYPE,
    state_hash,
)

_BOOK_PROBLEMS = {
    kinspect.BAD_LEVEL_ORDER: "price levels out of order",
    kinspect.BAD_LEVEL_TOTAL: "a level's total or count differs from its orders",
    kinspect.BAD_LINKS: "broken order links in a level",
    kinspect.BAD_ORDER: "an order with left <= 0 or left > amount",
    kinspect.BAD_COUNT: "order count of a side is wrong",
    kinspect.BAD_INDEX: "order id index does not match the book",
    kinspect.CROSSED: "book crossed (best bid >= best ask)",
    kinspect.BAD_DEAD_LEVEL: "an emptied level kept in the price array is not empty, is "
    "the best, or is miscounted",
}


class StateIntegrity:
    """``Engine``'s whole-state readers: ``canonical_state``, ``state_hash`` and
    ``check_invariants`` (a mixin over the engine's arrays)."""

    config: EngineConfig
    _book: tuple[np.ndarray, ...]
    _accounts: tuple[np.ndarray, ...]
    _counters: np.ndarray
    _supply: np.ndarray
    _keys: np.ndarray
    _n_markets: int

    def _balances(self) -> np.ndarray:
        return self._accounts[A_BALANCES][: int(self._counters[COUNTER_ACCOUNTS])]

    def _canonical_orders(self) -> np.ndarray:
        parts = []
        for m in self.config.markets:
            for side in (1, 2):
                total = int(self._book[B_MSTATE][m.index, MS_NORDERS + side - 1])
                slots = np.zeros(total, dtype=np.int64)
                n = kinspect.side_slots(self._book, m.index, side, 0, total, slots)
                o = self._book[B_ORDERS][slots[:n]]
                c = self._book[B_INFO][slots[:n]]
                part = np.zeros(n, dtype=CANON_ORDER_DTYPE)
                part["market"] = m.index
                part["user"] = self._accounts[A_USERS][o["acct"]]
                for name in CANON_ORDER_DTYPE.names or ():
                    if name in (o.dtype.names or ()) and name != "acct":
                        part[name] = o[name]
                    elif name in (c.dtype.names or ()) and name != "source":
                        part[name] = c[name]
                tags = self._book[B_SRC_DATA][c["source"]]
                part["source_len"] = np.where(c["source"] != 0, tags[:, SRC_LEN], 0)
                part["source"][:, :SRC_LEN] = np.where(
                    c["source"][:, None] != 0, tags[:, :SRC_LEN], 0
                )
                parts.append(part)
        if not parts:
            return np.zeros(0, dtype=CANON_ORDER_DTYPE)
        return np.concatenate(parts)

    def _canonical_balances(self) -> np.ndarray:
        bal = self._balances()
        users = self._accounts[A_USERS][: bal.shape[0]]
        acct, asset = np.nonzero((bal[:, :, 0] != 0) | (bal[:, :, 1] != 0))
        out = np.zeros(acct.shape[0], dtype=CANON_BALANCE_DTYPE)
        out["user"] = users[acct]
        out["asset"] = asset
        out["available"] = bal[acct, asset, 0]
        out["frozen"] = bal[acct, asset, 1]
        return out[np.lexsort((out["asset"], out["user"]))]

    def _canonical_keys(self) -> np.ndarray:
        used = self._keys[(self._keys[:, 0] != 0) | (self._keys[:, 1] != 0)]
        digests = np.ascontiguousarray(used, dtype="<i8").view(np.uint8).reshape(-1, 16)
        order = np.lexsort(tuple(digests[:, j] for j in range(15, -1, -1)))
        return digests[order]

    def _canonical_client_ids(self) -> np.ndarray:
        if self._counters[COUNTER_CLIENT_IDS] == 0:  # (the table is large and mostly empty)
            return np.zeros(0, dtype=CANON_CLIENT_ID_DTYPE)
        table = self._accounts[A_CIDS]
        rows = table[table[:, kcids.CID_ID] != 0]
        out = np.zeros(rows.shape[0], dtype=CANON_CLIENT_ID_DTYPE)
        out["user"] = rows[:, kcids.CID_USER]
        out["client_id"] = rows[:, kcids.CID_ID]
        out["order_id"] = rows[:, kcids.CID_ORDER]
        return out[np.lexsort((out["client_id"], out["user"]))]

    def _canonical_user_status(self) -> np.ndarray:
        n = int(self._counters[COUNTER_ACCOUNTS])
        status = self._accounts[A_USTATUS][:n]
        acct = np.flatnonzero(status != UserStatus.ACTIVE)
        out = np.zeros(acct.shape[0], dtype=CANON_USER_STATUS_DTYPE)
        out["user"] = self._accounts[A_USERS][acct]
        out["status"] = status[acct]
        return out[np.argsort(out["user"], kind="stable")]

    def _canonical_user_limits(self) -> np.ndarray:
        if self._counters[COUNTER_USER_LIMITS] == 0:
            return np.zeros(0, dtype=CANON_USER_LIMIT_DTYPE)
        table = self._accounts[A_ULIMITS]
        rows = table[table[:, kulimits.UL_MARKET] != 0]
        out = np.zeros(rows.shape[0], dtype=CANON_USER_LIMIT_DTYPE)
        out["user"] = rows[:, kulimits.UL_USER]
        out["market"] = rows[:, kulimits.UL_MARKET] - 1
        out["max_order_amount"] = rows[:, kulimits.UL_AMOUNT]
        out["max_notional"] = rows[:, kulimits.UL_NOTIONAL]
        return out[np.lexsort((out["market"], out["user"]))]

    def state_hash(self) -> str:
        """BLAKE2b-128 of the canonical state (core/statehash.py)."""
        return state_hash(*self.canonical_state())

    def canonical_state(self) -> tuple[np.ndarray, ...]:
        """The sections ``state_hash`` hashes, in its order (core/statehash.py)."""
        return (
            self._counters[:3],
            self._supply[: len(self.config.assets)],
            self._canonical_balances(),
            self._canonical_keys(),
            self._canonical_orders(),
            self._canonical_client_ids(),
            self._accounts[A_MSTATUS][: self._n_markets],
            self._canonical_user_status(),
            self._book[B_MSTATE][: self._n_markets, MS_LAST_PRICE],
            self._book[B_MPARAMS][: self._n_markets, MP_PRICE_STEP:],
            self._canonical_user_limits(),
            *canonical_catalog(self.config),
        )

    def check_invariants(self) -> list[str]:
        """Violations of the engine's invariants; empty when sound."""
        problems: list[str] = []
        bal = self._balances()
        for a in self.config.assets:
            held = int(bal[:, a.index, 0].sum() + bal[:, a.index, 1].sum())
            if held != int(self._supply[a.index]):
                problems.append(
                    f"{a.name}: accounts hold {held}, supply is {self._supply[a.index]}"
                )
        if (bal < 0).any():
            problems.append("a negative balance")
        reserved = np.zeros(bal.shape[:2], dtype=np.int64)
        kinspect.reserves(self._book, self._n_markets, reserved)
        for acct, asset in zip(*np.nonzero(reserved != bal[:, :, 1]), strict=True):
            user = int(self._accounts[A_USERS][acct])
            problems.append(
                f"user {user} asset {self.config.assets[asset].name}: frozen "
                f"{bal[acct, asset, 1]} but resting orders reserve {reserved[acct, asset]}"
            )
        for m in self.config.markets:
            code = kinspect.validate_book(self._book, m.index)
            if code != kinspect.BOOK_OK:
                problems.append(f"market {m.name}: {_BOOK_PROBLEMS.get(code, code)}")
        bump = int(self._book[B_SRC_STATE][SS_BUMP])
        bad_tag = kinspect.validate_tags(
            self._book, self._n_markets, np.zeros(bump, np.int64), np.zeros(bump, np.bool_)
        )
        if bad_tag != 0:
            problems.append(f"source tag table disagrees with the orders (tag {bad_tag})")
        problems.extend(self._check_client_ids())
        problems.extend(self._check_status())
        problems.extend(self._check_user_limits())
        return problems

    def _check_user_limits(self) -> list[str]:
        rows = self._canonical_user_limits()
        table = self._accounts[A_ULIMITS]
        count = int(np.count_nonzero(table[:, kulimits.UL_MARKET]))
        problems = _count_problems(
            "user risk limit pairs",
            count,
            int(self._counters[COUNTER_USER_LIMITS]),
            self.config.max_user_limits,
        )
        if count != rows.shape[0] or (rows["market"] >= self._n_markets).any():
            problems.append("a user risk limit row of a market that is not configured")
        if (rows["max_order_amount"] < 0).any() or (rows["max_notional"] < 0).any():
            problems.append("a negative user risk limit")
        return problems

    def _check_status(self) -> list[str]:
        problems = []
        markets = self._accounts[A_MSTATUS][: self._n_markets]
        if not np.isin(markets, [int(s) for s in MarketStatus]).all():
            problems.append(f"a market status is not a MarketStatus: {markets.tolist()}")
        users = self._accounts[A_USTATUS]
        n = int(self._counters[COUNTER_ACCOUNTS])
        if not np.isin(users[:n], [int(s) for s in UserStatus]).all() or users[n:].any():
            problems.append("a user status is not a UserStatus, or is set beyond the accounts")
        return problems

    def _check_client_ids(self) -> list[str]:
        table = self._accounts[A_CIDS]
        used = table[:, kcids.CID_ID] != 0
        problems = _count_problems(
            "client order ids",
            int(np.count_nonzero(used)),
            int(self._counters[COUNTER_CLIENT_IDS]),
            self.config.max_client_ids,
        )
        rows = table[used]
        if (rows[:, kcids.CID_ID] < 0).any() or (rows[:, kcids.CID_ORDER] < 1).any():
            problems.append("a client order id row with a negative id or no order")
        if (rows[:, kcids.CID_ORDER] > self._counters[COUNTER_ORDER_ID]).any():
            problems.append("a client order id names an order id not given yet")
        return problems


def _count_problems(what: str, count: int, counted: int, most: int) -> list[str]:
    """A table's rows in use against its counter and its bound: [] or the problem."""
    if count != counted or count > most:
        return [f"{count} {what} in the table, {counted} counted, at most {most} allowed"]
    return []
