"""The fast engine: numba kernels over preallocated numpy arrays.

``Engine`` implements ``core.api.EngineAPI`` (docs/engine.md). Its whole state is a
set of arrays obtained from an ``Allocator``; the default allocates on the heap, and
``ipc`` can hand out shared memory instead without changing anything here. Two
mixins hold what is not the commands and queries: ``core.engine_integrity`` the
canonical state, its hash and the invariants; ``core.engine_catalog`` the catalog of
assets and markets and its commands.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from core.config import (
    LIMIT_NAMES,
    EngineConfig,
    Market,
    with_limits,
)
from core.engine_catalog import CatalogState, asset_row, market_params
from core.engine_integrity import StateIntegrity
from core.kernels import balance as kbalance
from core.kernels import book as kbook
from core.kernels import inspect as kinspect
from core.kernels import match as kmatch
from core.kernels import user_limits as kulimits
from core.kernels.layout import (
    A_BALANCES,
    A_MSTATUS,
    A_ULIMITS,
    A_USERS,
    A_USTATUS,
    B_IDX,
    B_INFO,
    B_LEVELS,
    B_MPARAMS,
    B_MSTATE,
    B_ORDERS,
    B_SLEVELS,
    B_SRC_DATA,
    B_SRC_STATE,
    MP_LBASE,
    MP_LENGTH,
    MP_MAX_LEVELS,
    MP_MAX_ORDERS,
    MP_OBASE,
    MP_PRICE_STEP,
    MP_SBASE,
    MS_LENGTH,
    MS_NLEVELS,
    MS_NORDERS,
    NIL,
    SRC_LEN,
    SS_BUMP,
    SS_FREE,
    SS_LENGTH,
    SS_LIVE,
)
from core.kernels.quote import MAX_GROUP_LEVELS
from core.memory import Allocator, HeapAllocator
from core.schema import (
    ASSET_ROW_DTYPE,
    COMMAND_DTYPE,
    COUNTER_ASSETS,
    COUNTER_DEAL_ID,
    COUNTER_MARKETS,
    COUNTER_ORDER_ID,
    COUNTER_SEQ,
    COUNTERS_LENGTH,
    EVENT_DTYPE,
    INT64_MAX,
    LEVEL_DTYPE,
    MARKET_ROW_DTYPE,
    MAX_USER_ID,
    ORDER_DTYPE,
    ORDER_FLAG_MARKET,
    ORDER_INFO_DTYPE,
    RESULT_DTYPE,
    WORK_DTYPE,
    MarketStatus,
    OrderType,
    Result,
    UserStatus,
)
from core.views import AssetSummary, MarketSummary, OrderView, update_key_digest

DEFAULT_EVENT_CAPACITY = 1 << 16

#: The arrays that make up the book (``KernelState.book``), by name, in the order of the
#: book tuple (the ``B_*`` indexes of core/kernels/layout.py): what a pair worker holds.
#: The engine's other arrays (accounts and client order ids, counters, supply, update
#: keys) are the sequencer's.
BOOK_ARRAYS: tuple[str, ...] = (
    "orders",
    "order_info",
    "levels",
    "side_keys",
    "side_levels",
    "order_index",
    "user_keys",
    "user_heads",
    "user_counts",
    "mparams",
    "mstate",
    "source_tags",
    "source_refs",
    "source_index",
    "source_state",
)


def _is_int(value: object) -> bool:
    """An int (Python or numpy) that is not a bool: a float is never truncated into units."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _copy_records(records: np.ndarray) -> np.ndarray:
    """A contiguous copy of a 1-d record array, made as one byte copy."""
    return records.view(np.uint8).copy().view(records.dtype)


_COPY_BLOCK = 1 << 16


def copy_nonzero(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[...] = src`` for a zero-filled ``dst``, copying only the 64 KiB blocks of
    ``src`` that are not all zero: the untouched pools of a large config stay unmapped
    (an empty engine of the shipped config is 1,854 MiB of arrays, nearly all zero)."""
    s = np.ascontiguousarray(src).reshape(-1).view(np.uint8)
    d = dst.reshape(-1).view(np.uint8)
    whole = s.shape[0] // _COPY_BLOCK
    if whole:
        blocks = s[: whole * _COPY_BLOCK].view(np.uint64).reshape(whole, -1)
        for b in np.flatnonzero(blocks.any(axis=1)):
            at = int(b) * _COPY_BLOCK
            d[at : at + _COPY_BLOCK] = s[at : at + _COPY_BLOCK]
    tail = whole * _COPY_BLOCK
    d[tail:] = s[tail:]


def _same_layout(a: np.ndarray, b: np.ndarray, markets: int) -> bool:
    """Whether two market parameter tables agree on everything but the risk limits
    (the columns from MP_PRICE_STEP on), which are state: MARKET_LIMIT changes them,
    and the config only sets them when the state is new. Only the first ``markets``
    rows (the markets ``a`` was filled for) are compared whole; the others only on
    their place in the pools (a state may hold markets added since)."""
    bases = [MP_OBASE, MP_LBASE, MP_SBASE]
    return bool(
        np.array_equal(a[:markets, :MP_PRICE_STEP], b[:markets, :MP_PRICE_STEP])
        and np.array_equal(a[:, bases], b[:, bases])
    )


class KernelState(NamedTuple):
    """An engine's arrays as its kernels take them, for running the engine's halves
    apart (docs/daemon.md, "Sequencer and pair workers"): the sequencer's account
    half and ledger use ``accounts``, ``counters`` and ``mparams``; a pair worker's
    book half ``book``, ``fee_acct`` and ``scratch``. The arrays themselves: whoever
    calls the kernels on them owns them."""

    book: tuple[np.ndarray, ...]
    accounts: tuple[np.ndarray, ...]
    counters: np.ndarray
    mparams: np.ndarray
    fee_acct: int
    scratch: int


def _pow2_at_least(n: int) -> int:
    size = 16
    while size < n:
        size <<= 1
    return size


class _GivenArrays:
    """An ``Allocator`` that hands out the arrays of a mapping as they are (no copy, no
    write), each checked against what is asked for: ``ValueError`` names the first
    that is missing, has another shape or dtype, or that the kernels cannot take as it
    is (not C-contiguous, or read-only: another compiled signature)."""

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        self._arrays = arrays

    def array(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        arr = self._arrays.get(name)
        if arr is None:
            raise ValueError(f"arrays have no {name!r}")
        if arr.shape != shape or arr.dtype != dtype:
            raise ValueError(
                f"array {name!r} is {arr.dtype} {arr.shape}, this config needs {dtype} {shape}"
            )
        if not (arr.flags.c_contiguous and arr.flags.writeable):
            raise ValueError(f"array {name!r} is not a writeable C-contiguous array")
        return arr


class Engine(StateIntegrity, CatalogState):
    """In-process matching engine over numpy arrays (see ``core.api.EngineAPI``); its
    whole-state readers (state hash, invariants) are ``StateIntegrity``'s."""

    def __init__(
        self,
        config: EngineConfig,
        allocator: Allocator | None = None,
        event_capacity: int = DEFAULT_EVENT_CAPACITY,
        *,
        state: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """A new engine, empty, or holding ``state`` (what ``state_arrays`` returned
        for the same config, e.g. read back from a snapshot): every array by name,
        with the same shape and dtype, or ``ValueError`` says which differs."""
        self._allocate(config, allocator if allocator is not None else HeapAllocator())
        self._events = np.zeros(event_capacity, dtype=EVENT_DTYPE)
        self._fill_mparams(self._book[B_MPARAMS])
        if state is None:
            self._init_books()
            self._fee_acct = kbalance.add_account(self._accounts, self._counters, config.fee_user)
        else:
            self._load(state)
            self._fee_acct = self._find_fee_acct("state")

    def _allocate(self, config: EngineConfig, allocator: Allocator) -> None:
        """Take the engine's arrays from ``allocator`` (and make its buffers but the
        event buffer); writes nothing to them."""
        self.config = config
        self._arrays: dict[str, np.ndarray] = {}
        self._allocator = allocator
        n_assets = config.asset_slots
        slots = config.market_slots
        self._n_markets = len(config.markets)
        capacity = [config.slot_capacity(i) for i in range(slots)]
        total_orders = sum(orders for orders, _ in capacity)
        total_levels = sum(2 * levels for _, levels in capacity)
        mparams = self._array("mparams", (max(1, slots), MP_LENGTH), np.dtype("<i8"))
        #: The last order slot holds the taker being matched.
        self._scratch = total_orders
        index_size = _pow2_at_least(2 * max(1, total_orders))
        # Every pool slot and the scratch taker may hold a distinct tag; tag 0 is empty.
        tags = total_orders + 2
        self._book = (
            self._array("orders", (total_orders + 1,), ORDER_DTYPE),
            self._array("order_info", (total_orders + 1,), ORDER_INFO_DTYPE),
            self._array("levels", (max(1, total_levels),), LEVEL_DTYPE),
            self._array("side_keys", (max(1, total_levels),), np.dtype("<i8")),
            self._array("side_levels", (max(1, total_levels),), np.dtype("<i4")),
            self._array("order_index", (index_size,), np.dtype("<i4")),
            self._array("user_keys", (index_size,), np.dtype("<i8")),
            self._array("user_heads", (index_size,), np.dtype("<i4")),
            self._array("user_counts", (index_size,), np.dtype("<i4")),
            mparams,
            self._array("mstate", (max(1, slots), MS_LENGTH), np.dtype("<i8")),
            self._array("source_tags", (tags, 32), np.dtype(np.uint8)),
            self._array("source_refs", (tags,), np.dtype("<i4")),
            self._array("source_index", (_pow2_at_least(2 * tags),), np.dtype("<i4")),
            self._array("source_state", (SS_LENGTH,), np.dtype("<i8")),
        )
        account_size = _pow2_at_least(2 * config.max_users)
        self._accounts = (
            self._array("account_keys", (account_size,), np.dtype("<i8")),
            self._array("account_slots", (account_size,), np.dtype("<i4")),
            self._array("balances", (config.max_users, n_assets, 2), np.dtype("<i8")),
            self._array("account_users", (config.max_users,), np.dtype("<i8")),
            self._array(
                "client_ids", (_pow2_at_least(2 * config.max_client_ids), 3), np.dtype("<i8")
            ),
            self._array("market_status", (max(1, slots),), np.dtype("<i8")),
            self._array("user_status", (config.max_users,), np.dtype("i1")),
            self._array(
                "user_limits", (_pow2_at_least(2 * config.max_user_limits), 4), np.dtype("<i8")
            ),
        )
        self._counters = self._array("counters", (COUNTERS_LENGTH,), np.dtype("<i8"))
        self._asset_rows = self._array("asset_table", (n_assets,), ASSET_ROW_DTYPE)
        self._market_rows = self._array("market_table", (max(1, slots),), MARKET_ROW_DTYPE)
        self._supply = self._array("supply", (n_assets,), np.dtype("<i8"))
        key_size = _pow2_at_least(2 * config.max_update_keys)
        self._keys = self._array("update_keys", (key_size, 2), np.dtype("<i8"))
        self._results = np.zeros(1024, dtype=RESULT_DTYPE)
        self._work = np.zeros(1 + MAX_GROUP_LEVELS, dtype=WORK_DTYPE)  # a QUOTE and its levels
        self._slots = np.zeros(256, dtype=np.int64)

    @classmethod
    def from_arrays(
        cls,
        config: EngineConfig,
        arrays: Mapping[str, np.ndarray],
        event_capacity: int = DEFAULT_EVENT_CAPACITY,
    ) -> Engine:
        """An engine whose state IS ``arrays`` (no copy; nothing is written to them):
        every array of ``state_arrays`` by name, with this config's shape and dtype,
        C-contiguous and writeable, and nothing else, or ``ValueError`` says which
        differs. Its queries read the arrays and its commands change them.
        """
        engine = cls.__new__(cls)
        engine._allocate(config, _GivenArrays(arrays))
        engine._events = np.zeros(event_capacity, dtype=EVENT_DTYPE)
        extra = sorted(set(arrays) - set(engine._arrays))
        if extra:
            raise ValueError(f"unexpected arrays {extra}")
        want = np.zeros_like(engine._book[B_MPARAMS])
        engine._fill_mparams(want)
        if not _same_layout(want, engine._book[B_MPARAMS], len(config.markets)):
            raise ValueError("arrays were made with different market parameters")
        engine.adopt_catalog("arrays")
        engine._fee_acct = engine._find_fee_acct("arrays")
        return engine

    def _init_books(self) -> None:
        """Set the tag table and every market's book empty (``__init__``'s writes)."""
        src_state = self._book[B_SRC_STATE]
        src_state[SS_BUMP] = 1
        src_state[SS_FREE] = NIL
        for m in range(self.config.market_slots):  # added markets' too: their room is set
            kbook.init_market(self._book, m)
        for a in self.config.assets:
            self._asset_rows[a.index] = asset_row(a)
        for market in self.config.markets:
            self._write_market_row(market)
        self._counters[COUNTER_ASSETS] = len(self.config.assets)
        self._counters[COUNTER_MARKETS] = len(self.config.markets)

    def _find_fee_acct(self, what: str) -> int:
        acct = int(kbalance.account_of(self._accounts, self.config.fee_user))
        if acct == NIL:
            raise ValueError(f"{what} has no account for the fee user {self.config.fee_user}")
        return acct

    def _array(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        arr = self._allocator.array(name, shape, dtype)
        self._arrays[name] = arr
        return arr

    def _fill_mparams(self, mparams: np.ndarray) -> None:
        """Every slot's place in the pools (and an added market's room), and each
        market's parameters."""
        obase = lbase = 0
        for i in range(self.config.market_slots):
            orders, levels = self.config.slot_capacity(i)
            row = mparams[i]
            row[MP_MAX_ORDERS] = orders
            row[MP_MAX_LEVELS] = levels
            row[MP_OBASE] = obase
            row[MP_LBASE] = lbase
            row[MP_SBASE] = lbase
            obase += orders
            lbase += 2 * levels
        for m in self.config.markets:
            market_params(mparams[m.index], m)

    def _load(self, state: Mapping[str, np.ndarray]) -> None:
        """Copy ``state`` into the freshly allocated arrays (names, shapes, dtypes equal)."""
        missing = sorted(set(self._arrays) - set(state))
        extra = sorted(set(state) - set(self._arrays))
        if missing or extra:
            raise ValueError(f"state arrays differ: missing {missing}, unexpected {extra}")
        for name, dst in self._arrays.items():
            src = state[name]
            if src.shape != dst.shape or src.dtype != dst.dtype:
                raise ValueError(
                    f"state array {name!r} is {src.dtype} {src.shape}, this config needs "
                    f"{dst.dtype} {dst.shape}"
                )
            if name == "mparams" and not _same_layout(src, dst, len(self.config.markets)):
                raise ValueError("state was made with different market parameters")
            copy_nonzero(dst, src)
        self.adopt_catalog("state")

    def kernel_state(self) -> KernelState:
        """The arrays the kernels work on (``KernelState``), not copies."""
        return KernelState(
            self._book,
            self._accounts,
            self._counters,
            self._book[B_MPARAMS],
            int(self._fee_acct),
            int(self._scratch),
        )

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Every array of the engine's state by name (the arrays themselves, not
        copies: read them only while the engine is idle, or from a forked child).
        ``Engine(config, state=...)`` rebuilds an equal engine from them."""
        return dict(self._arrays)

    # ------------------------------------------------------------ commands

    def execute(self, commands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply a batch of commands; see ``EngineAPI.execute``."""
        results, events = self.execute_view(commands)
        # Copy through bytes: numpy copies packed records field by field (~20x slower).
        return _copy_records(results), _copy_records(events)

    def execute_view(self, commands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As ``execute``, but the arrays returned are views of the engine's own buffers,
        valid until its next call: the hot path, which copies nothing.

        The event buffer grows (doubling) when a batch needs more room: it holds the
        events of the largest batch seen, so callers bound it by their batch size. A
        command's events are bounded by the makers it can reach, never by the size of
        the book, so one command cannot force a large buffer.
        """
        if commands.dtype != COMMAND_DTYPE or commands.ndim != 1:
            raise TypeError("commands must be a 1-d array of COMMAND_DTYPE")
        commands = np.ascontiguousarray(commands)
        n = commands.shape[0]
        if self._results.shape[0] < n:
            self._results = np.zeros(max(n, 2 * self._results.shape[0]), dtype=RESULT_DTYPE)
        results = self._results[:n]
        start = ne = 0
        while start < n:
            start, ne = kmatch.execute_batch(
                self._book,
                self._accounts,
                commands,
                self._work,
                results,
                self._events,
                start,
                ne,
                self._counters,
                self._n_markets,
                self.config.fee_user,
                self._fee_acct,
                self._scratch,
                self.config.max_matches,
                self.config.max_client_ids,
                self.config.max_user_limits,
            )
            if start < n:  # the next command may need more room than is left
                grown = np.zeros(2 * self._events.shape[0], dtype=EVENT_DTYPE)
                grown[:ne] = self._events[:ne]
                self._events = grown
        return results, self._events[:ne]

    def balance_update(
        self, user: int, asset: int, business: bytes, business_id: int, change: int, ts_ns: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """ViaBTC's balance.update in units; see ``EngineAPI.balance_update``."""
        results = np.zeros(1, dtype=RESULT_DTYPE)
        code = Result.OK
        if not _is_int(user) or not 0 <= user <= MAX_USER_ID:
            code = Result.INVALID_ARGUMENT
        elif not self._asset_ok(asset):
            code = Result.UNKNOWN_ASSET
        elif not (
            all(_is_int(v) and -INT64_MAX <= v <= INT64_MAX for v in (change, business_id, ts_ns))
            and isinstance(business, bytes | bytearray)
        ):
            code = Result.INVALID_ARGUMENT
        if code != Result.OK:
            results["code"] = code
            return results, np.zeros(0, dtype=EVENT_DTYPE)
        key = update_key_digest(int(user), int(asset), bytes(business), int(business_id))
        digest = np.frombuffer(key, dtype="<i8")
        k0, k1 = int(digest[0]), int(digest[1])
        if k0 == 0 and k1 == 0:  # (0, 0) marks a free slot; 2**-128 odds
            k1 = 1
        events = np.zeros(1, dtype=EVENT_DTYPE)
        code_i, ne = kbalance.balance_update(
            self._accounts,
            self._counters,
            self._supply,
            self._keys,
            events,
            int(user),
            int(asset),
            k0,
            k1,
            int(business_id),
            int(change),
            int(ts_ns),
            self.config.max_users,
            self.config.max_update_keys,
        )
        results["code"] = code_i
        if code_i == Result.OK:
            results["seq"] = self._counters[COUNTER_SEQ]
            results["event_count"] = ne
        return results, events[:ne]

    # ------------------------------------------------------------ queries

    def counters(self) -> tuple[int, int, int]:
        """``(seq, last order id, last deal id)``."""
        c = self._counters
        return int(c[COUNTER_SEQ]), int(c[COUNTER_ORDER_ID]), int(c[COUNTER_DEAL_ID])

    def balance(self, user: int, asset: int) -> tuple[int, int]:
        """``(available, frozen)`` in units."""
        ok = _is_int(user) and 0 <= user <= MAX_USER_ID and self._asset_ok(asset)
        acct = kbalance.account_of(self._accounts, int(user)) if ok else NIL
        if acct == NIL:
            return 0, 0
        row = self._accounts[A_BALANCES][acct, int(asset)]
        return int(row[0]), int(row[1])

    def _source(self, tag: int) -> bytes:
        row = self._book[B_SRC_DATA][tag]
        return bytes(row[: row[SRC_LEN]]) if tag else b""

    def _view(self, slot: int, market: int) -> OrderView:
        o = self._book[B_ORDERS][slot]
        c = self._book[B_INFO][slot]
        return OrderView(
            id=int(o["id"]),
            market=market,
            user=int(self._accounts[A_USERS][o["acct"]]),
            side=int(o["side"]),
            otype=int(OrderType.LIMIT),
            price=int(o["price"]),
            amount=int(c["amount"]),
            left=int(o["left"]),
            deal_stock=int(c["amount"] - o["left"]),
            deal_money=int(o["deal_money"]),
            deal_fee=int(o["deal_fee"]),
            taker_rate=int(c["taker_rate"]),
            maker_rate=int(o["maker_rate"]),
            ctime_ns=int(c["ctime_ns"]),
            mtime_ns=int(c["mtime_ns"]),
            tif=int(o["tif"]),
            stp=int(o["stp"]),
            flags=int(o["flags"] & ~ORDER_FLAG_MARKET),
            source=self._source(int(c["source"])).decode(),
        )

    def _market_ok(self, market: int) -> bool:
        return _is_int(market) and 0 <= market < self._n_markets

    def _asset_ok(self, asset: int) -> bool:
        return _is_int(asset) and 0 <= asset < len(self.config.assets)

    def order(self, market: int, order_id: int) -> OrderView | None:
        """The resting order, or None."""
        if not self._market_ok(market) or not 0 < order_id <= INT64_MAX:
            return None
        slot = kbook.index_find(self._book, int(order_id))
        mp = self._book[B_MPARAMS][market]
        if slot == NIL or not mp[MP_OBASE] <= slot < mp[MP_OBASE] + mp[MP_MAX_ORDERS]:
            return None
        return self._view(slot, market)

    def _page(self, limit: int) -> np.ndarray:
        if self._slots.shape[0] < limit:
            self._slots = np.zeros(limit, dtype=np.int64)
        return self._slots

    def pending(
        self, user: int, market: int, offset: int, limit: int
    ) -> tuple[int, list[OrderView]]:
        """``(total, orders)``: the user's resting orders, newest first."""
        if not self._market_ok(market) or not 0 <= user <= MAX_USER_ID:
            return 0, []
        acct = kbalance.account_of(self._accounts, int(user))
        market = int(market)
        _, total = kbook.user_orders(self._book, market, acct)
        limit = min(max(0, limit), int(total))
        offset = min(max(0, offset), int(total))
        out = self._page(limit)
        n = kinspect.user_slots(self._book, market, acct, offset, limit, out)
        return int(total), [self._view(int(s), market) for s in out[:n]]

    def book(self, market: int, side: int, offset: int, limit: int) -> tuple[int, list[OrderView]]:
        """``(total, orders)`` of one side in priority order."""
        if not self._market_ok(market) or side not in (1, 2):
            return 0, []
        market, side = int(market), int(side)
        total = int(self._book[B_MSTATE][market, MS_NORDERS + side - 1])
        limit = min(max(0, limit), total)
        offset = min(max(0, offset), total)
        out = self._page(limit)
        n = kinspect.side_slots(self._book, market, side, offset, limit, out)
        return total, [self._view(int(s), market) for s in out[:n]]

    def depth(
        self, market: int, limit: int, interval: int
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """``(asks, bids)`` as (price ticks, lots), merged to ``interval`` ticks if > 0."""
        if not self._market_ok(market) or limit <= 0:
            return [], []
        market, interval = int(market), min(max(0, int(interval)), INT64_MAX)
        sides = []
        for side in (1, 2):
            levels = min(limit, int(self._book[B_MSTATE][market, MS_NLEVELS + side - 1]))
            prices = np.zeros(levels, dtype=np.int64)
            lots = np.zeros(levels, dtype=np.int64)
            n = kinspect.depth(self._book, market, side, levels, interval, prices, lots)
            sides.append([(int(p), int(q)) for p, q in zip(prices[:n], lots[:n], strict=True)])
        return sides[0], sides[1]

    def _side_levels(self, market: int, side: int) -> np.ndarray:
        """Level indexes of the side's sorted array, dead (empty) entries included."""
        mp = self._book[B_MPARAMS][market]
        base = int(mp[MP_SBASE]) + (side - 1) * int(mp[MP_MAX_LEVELS])
        n = int(self._book[B_MSTATE][market, MS_NLEVELS + side - 1])
        return self._book[B_SLEVELS][base : base + n]

    def market_summary(self, market: int) -> MarketSummary:
        """Counts and summed ``left`` of both sides."""
        if not self._market_ok(market):
            return MarketSummary(ask_count=0, ask_lots=0, bid_count=0, bid_lots=0)
        ms = self._book[B_MSTATE][market]
        totals = self._book[B_LEVELS]["total"]
        return MarketSummary(
            ask_count=int(ms[MS_NORDERS]),
            ask_lots=int(totals[self._side_levels(market, 1)].sum()),
            bid_count=int(ms[MS_NORDERS + 1]),
            bid_lots=int(totals[self._side_levels(market, 2)].sum()),
        )

    def market_status(self, market: int) -> MarketStatus:
        """The market's status (OPEN for a market that is not configured)."""
        if not self._market_ok(market):
            return MarketStatus.OPEN
        return MarketStatus(int(self._accounts[A_MSTATUS][int(market)]))

    def current_market(self, market: int) -> Market | None:
        """The configured market with the risk limits it has now (MARKET_LIMIT changes
        them); None for a market that is not configured."""
        if not self._market_ok(market):
            return None
        row = self._book[B_MPARAMS][int(market)]
        return with_limits(self.config.markets[int(market)], row[MP_PRICE_STEP:].tolist())

    def limit_drift(self) -> list[str]:
        """The risk limits in which the state differs from the config (the state's
        hold: the config sets them only for a new state), one line each."""
        genesis = self.config.genesis().markets  # (an added market has no config table)
        now = [self.current_market(m.index) for m in genesis]
        return [
            f"market {m.name}: {name} is {getattr(n, name)} in the state, "
            f"{getattr(m, name)} in the config"
            for m, n in zip(genesis, now, strict=True)
            for name in LIMIT_NAMES
            if getattr(n, name) != getattr(m, name)
        ]

    def user_status(self, user: int) -> UserStatus:
        """The user's status (ACTIVE for a user without an account)."""
        ok = _is_int(user) and 0 <= user <= MAX_USER_ID
        acct = kbalance.account_of(self._accounts, int(user)) if ok else NIL
        if acct == NIL:
            return UserStatus.ACTIVE
        return UserStatus(int(self._accounts[A_USTATUS][acct]))

    def user_limits(self, user: int, market: int) -> tuple[int, int]:
        """``(max_order_amount lots, max_notional money units)``: the user's own risk
        limits in the market (0: none)."""
        if not (_is_int(user) and 0 <= user <= MAX_USER_ID and self._market_ok(market)):
            return 0, 0
        table = self._accounts[A_ULIMITS]
        row = int(kulimits.find_row(table, int(user), int(market)))
        if row < 0:
            return 0, 0
        return int(table[row, kulimits.UL_AMOUNT]), int(table[row, kulimits.UL_NOTIONAL])

    def asset_summary(self, asset: int) -> AssetSummary:
        """Totals and counts of non-zero entries over all accounts."""
        if not self._asset_ok(asset):
            return AssetSummary(total=0, available_count=0, available=0, frozen_count=0, frozen=0)
        bal = self._balances()[:, asset, :]
        avail, frozen = bal[:, 0], bal[:, 1]
        return AssetSummary(
            total=int(avail.sum() + frozen.sum()),
            available_count=int(np.count_nonzero(avail)),
            available=int(avail.sum()),
            frozen_count=int(np.count_nonzero(frozen)),
            frozen=int(frozen.sum()),
        )

    # ------------------------------------------------------------ memory

    def bytes_per_order(self) -> int:
        """Bytes of state a resting order costs, its own source tag not counted.

        The pool record, its info record and its share of the id index (sized for
        the pools' capacity). A tag costs its 32-byte row, 4-byte count and a share of
        the tag index, once, however many live orders share it (``live_tags``).
        """
        capacity = max(1, self._scratch)
        index_bytes = int(self._book[B_IDX].nbytes)
        return ORDER_DTYPE.itemsize + ORDER_INFO_DTYPE.itemsize + -(-index_bytes // capacity)

    def live_tags(self) -> int:
        """Distinct non-empty source tags held by live orders (interned once each)."""
        return int(self._book[B_SRC_STATE][SS_LIVE])
