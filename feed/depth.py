"""Market depth of every market, kept from the engine's order events.

``DepthBook`` follows the log's events (``core.schema.EVENT_DTYPE``) and answers
``order.depth`` and ViaBTC's ``depth.update`` diffs without asking the engine. It keeps
every resting order (id -> market, side, price, left) and, per market and side, the
price levels (price -> summed ``left`` and order count).

What the engine emits for a resting order (``core.reference`` and the kernels of
``core.kernels.book_side`` and ``core.kernels.settlement`` agree; the oracle test in
tests/unit/feed/test_depth.py holds ``DepthBook`` to ``Engine.depth``):

* ``ORDER_PUT``: a GTC limit order rests, once, after the DEAL events of its own fills
  as a taker: ``left`` is the remainder, ``price`` its limit. Market, IOC and FOK
  orders never rest.
* ``ORDER_UPDATE``: the whole new state of a resting order (market, side, price,
  left). A maker partly filled: new ``left``. A replace at the same price with no more
  left: new ``left``, same place in the queue. Any other replace: the order leaves its
  level without an event, matches as a taker (its deals and the makers' events come
  first), then rests again at the new ``price`` with the new ``left``.
* ``ORDER_FINISH``: the order is gone: a maker filled (``left`` 0), cancel, cancel-all,
  CANCEL_MARKET (any owner's orders, many in one record), self-trade prevention, a
  replace that filled completely or was stopped by self-trade prevention. It is also
  sent for every taker that never rested (filled, expired, stopped): a finish of an id
  that does not rest is normal and changes nothing. A resting order never expires.
* ``DEAL`` and ``BALANCE`` events change no depth: a fill of a maker is also its
  ``ORDER_UPDATE`` or ``ORDER_FINISH``. Nor do ``MARKET_STATUS`` and ``USER_STATUS``
  (a halted market's orders stay; orders leave the book only by ``ORDER_FINISH``),
  nor ``MARKET_LIMIT`` and ``USER_LIMIT`` (a new limit holds for later orders only).

So the depth is exact at record boundaries (inside a replace's events the order still
counts at its old price until its final event): ``apply`` whole records. Order ids in
the log are real ids (the sequencer renames provisional ones before logging).

Bad input is counted and skipped, never raised (``statistics()``): an event of an
unknown market, an update of an order that does not rest, a put of an id that
already rests, an update or finish whose market or side is not the resting order's,
a kind that is not an ``EventKind``, an id below 1, a side other than 1 or 2, a price
or ``left`` of a put or update outside 1..MAX_SUPPLY_UNITS. The feed is a derived
view: one bad record must not stop market data for every market (DESIGN.md rules 6
and 8), and skipping keeps a replay deterministic. The engine never writes such
events, so a non-zero count means a bug or a feed that started without its
snapshot; the caller alerts on it and rebuilds from a snapshot and the log.

``changes(market)`` reports, per side, the levels whose total differs from the last
``changes`` call for that market (the first call: every level), as (price, lots) with
0 for a level that is gone. It compares the levels against the ones kept at that
call, so the diff is exact: a level that changed and came back to the same total is
not reported, and nothing is missed.

Speed: a batch is grouped by order id with one stable sort and checked with masks;
only each touched order's net change (its state before the batch and after its last
event) reaches the levels, sorted numpy arrays per market and side merged with
``searchsorted``: the Python work is a dict lookup per order and a merge per side. A
batch with a bad event takes a per-event loop with the same rules instead, so that
only the bad events are skipped. Memory: four int64 slots per resting order (tables
grow by doubling to the peak) and a dict entry; at most two copies of each side's
levels (now, and at the last ``changes``): bounded by ``max_orders`` and ``max_levels``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

import numpy as np

from core.errors import InternalError
from core.fixed import format_units
from core.schema import EVENT_DTYPE, INT64_MAX, MAX_SUPPLY_UNITS, EventKind, Side
from feed.depth_arrays import COUNTER_NAMES, MAX_MARKETS, check_depth_arrays

_PUT: Final = int(EventKind.ORDER_PUT)
_UPDATE: Final = int(EventKind.ORDER_UPDATE)
_FINISH: Final = int(EventKind.ORDER_FINISH)
_MAX_KIND: Final = max(int(k) for k in EventKind)
_ASK: Final = int(Side.ASK)
_BID: Final = int(Side.BID)
_INITIAL_SLOTS: Final = 256

Level = tuple[int, int]  #: (price ticks, lots)


def format_levels(levels: list[Level], money_prec: int, stock_prec: int) -> list[list[str]]:
    """``levels`` as ``[price, amount]`` decimal strings (plain, trailing zeros off)."""
    return [[format_units(p, money_prec), format_units(q, stock_prec)] for p, q in levels]


@dataclass(frozen=True, slots=True)
class DepthStatistics:
    """A snapshot of a ``DepthBook``'s size and counters (see the module docstring)."""

    orders: int  #: resting orders
    levels: int  #: price levels, both sides of every market
    order_events: int  #: ORDER_* events applied (finishes of takers included)
    unknown_market: int  #: skipped: market index outside 0..n_markets-1
    unknown_order: int  #: skipped: ORDER_UPDATE of an order that does not rest
    duplicate_order: int  #: skipped: ORDER_PUT of an id that already rests
    mismatched: int  #: skipped: update or finish with another market or side
    malformed: int  #: skipped: bad kind, id, side, price or left

    @property
    def rejected(self) -> int:
        """Events skipped for any reason."""
        return int(sum(getattr(self, name) for name in COUNTER_NAMES[1:]))


class _Levels(NamedTuple):
    """One side's levels, ascending by price; read-only arrays, replaced on change."""

    price: np.ndarray
    total: np.ndarray
    orders: np.ndarray


class _Batch(NamedTuple):
    """The ORDER_* events of a batch that passed the stateless checks, in log order."""

    kind: np.ndarray
    order_id: np.ndarray
    market: np.ndarray
    side: np.ndarray
    price: np.ndarray
    left: np.ndarray


class _Net(NamedTuple):
    """The net change of each order a batch touched: its slot before (-1: it did not
    rest) and whether and how it rests after (fields valid where ``rests``)."""

    order_id: np.ndarray
    slot: np.ndarray
    rests: np.ndarray
    market: np.ndarray
    side: np.ndarray
    price: np.ndarray
    left: np.ndarray


def _levels(price: np.ndarray, total: np.ndarray, orders: np.ndarray) -> _Levels:
    for array in (price, total, orders):
        array.flags.writeable = False
    return _Levels(price, total, orders)


_EMPTY: Final = _levels(*(np.zeros(0, dtype=np.int64) for _ in range(3)))


class DepthBook:
    """Depth of ``n_markets`` markets kept from the engine's events.

    Parameters
    ----------
    n_markets : int
        Markets of the config; events of other market indexes are skipped.
    """

    def __init__(self, n_markets: int) -> None:
        if not 0 <= n_markets <= MAX_MARKETS:
            raise ValueError(f"n_markets must be in 0..{MAX_MARKETS}, not {n_markets}")
        self._n = n_markets
        self._index: dict[int, int] = {}  #: order id -> slot
        self._market = np.zeros(_INITIAL_SLOTS, dtype=np.int64)
        self._side = np.zeros(_INITIAL_SLOTS, dtype=np.int64)
        self._price = np.zeros(_INITIAL_SLOTS, dtype=np.int64)
        self._left = np.zeros(_INITIAL_SLOTS, dtype=np.int64)
        self._free = np.arange(_INITIAL_SLOTS - 1, -1, -1, dtype=np.int64)  #: a stack
        # Sides are indexed 2 * market + side - 1.
        self._sides: list[_Levels] = [_EMPTY] * (2 * n_markets)
        self._base: list[_Levels] = [_EMPTY] * (2 * n_markets)  #: at the last changes()
        self._counters = dict.fromkeys(COUNTER_NAMES, 0)

    @property
    def n_markets(self) -> int:
        """The number of markets."""
        return self._n

    def grow(self, n_markets: int) -> None:
        """Hold ``n_markets`` markets (more than now, or as many): the new ones, at the
        end (a market added at run time), have empty books."""
        if not self._n <= n_markets <= MAX_MARKETS:
            raise ValueError(f"n_markets must be in {self._n}..{MAX_MARKETS}, not {n_markets}")
        more = 2 * (n_markets - self._n)
        self._sides += [_EMPTY] * more
        self._base += [_EMPTY] * more
        self._n = n_markets

    # ------------------------------------------------------------------ events in

    def apply(self, events: np.ndarray) -> int:
        """Apply the ORDER_* events of ``events``; other kinds are ignored.

        Parameters
        ----------
        events : np.ndarray
            ``EVENT_DTYPE`` records in log order: the events of whole log records.

        Returns
        -------
        int
            ORDER_* events applied (bad ones are counted in ``statistics()``).

        Raises
        ------
        TypeError
            ``events`` is not a 1-d ``EVENT_DTYPE`` array.
        """
        if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE or events.ndim != 1:
            raise TypeError("events must be a 1-d array of EVENT_DTYPE")
        batch = self._select(events)
        if batch is None:
            return 0
        net = self._net_checked(batch)
        taken = int(batch.kind.shape[0])
        if net is None:
            net, rejected = self._net_stepwise(batch)
            taken -= rejected
        self._commit(net)
        self._counters["order_events"] += taken
        return taken

    def _select(self, events: np.ndarray) -> _Batch | None:
        """The ORDER_* events that pass the checks needing no state; counts the rest."""
        kind = events["kind"].astype(np.int64)
        self._counters["malformed"] += int(np.count_nonzero((kind < 1) | (kind > _MAX_KIND)))
        mine = (kind >= _PUT) & (kind <= _FINISH)
        if not mine.any():
            return None
        batch = _Batch(
            kind[mine],
            events["order_id"][mine],
            events["market"][mine].astype(np.int64),
            events["side"][mine].astype(np.int64),
            events["price"][mine],
            events["left"][mine],
        )
        unknown = (batch.market < 0) | (batch.market >= self._n)
        rests = batch.kind != _FINISH
        bad_value = (
            (batch.order_id < 1)
            | ((batch.side != _ASK) & (batch.side != _BID))
            | (rests & ((batch.price < 1) | (batch.price > MAX_SUPPLY_UNITS)))
            | (rests & ((batch.left < 1) | (batch.left > MAX_SUPPLY_UNITS)))
        )
        malformed = bad_value & ~unknown
        self._counters["unknown_market"] += int(np.count_nonzero(unknown))
        self._counters["malformed"] += int(np.count_nonzero(malformed))
        drop = unknown | malformed
        if drop.any():
            keep = ~drop
            batch = _Batch(*(column[keep] for column in batch))
            if not keep.any():
                return None
        return batch

    def _lookup(self, order_ids: np.ndarray) -> np.ndarray:
        get = self._index.get
        return np.array([get(i, -1) for i in order_ids.tolist()], dtype=np.int64)

    def _net_checked(self, batch: _Batch) -> _Net | None:
        """The net change of each order, with the whole batch checked at once; None if
        an event breaks a rule (then ``_net_stepwise`` finds which)."""
        n = batch.kind.shape[0]
        perm = np.argsort(batch.order_id, kind="stable")
        oid, kind = batch.order_id[perm], batch.kind[perm]
        market, side = batch.market[perm], batch.side[perm]
        first = np.ones(n, dtype=bool)
        first[1:] = oid[1:] != oid[:-1]
        starts = np.flatnonzero(first)
        slot = self._lookup(oid[starts])
        stored = slot >= 0
        # Did the order rest before the event, with which market and side?
        rested = np.empty(n, dtype=bool)
        rested[1:] = kind[:-1] != _FINISH
        rested[starts] = stored
        was_market = np.empty(n, dtype=np.int64)
        was_side = np.empty(n, dtype=np.int64)
        was_market[1:], was_side[1:] = market[:-1], side[:-1]
        was_market[starts[stored]] = self._market[slot[stored]]
        was_side[starts[stored]] = self._side[slot[stored]]
        moved = (market != was_market) | (side != was_side)
        bad = np.where(kind == _PUT, rested, (kind == _UPDATE) & ~rested | rested & moved)
        if bad.any():
            return None
        last = perm[np.append(starts[1:], n) - 1]
        return _Net(
            oid[starts],
            slot,
            batch.kind[last] != _FINISH,
            batch.market[last],
            batch.side[last],
            batch.price[last],
            batch.left[last],
        )

    def _net_stepwise(self, batch: _Batch) -> tuple[_Net, int]:
        """The net change of each order, event by event, skipping and counting the
        events that break a rule; returns it and how many were skipped."""
        after: dict[int, tuple[int, int, int, int] | None] = {}
        counts = self._counters
        skipped = 0
        for kind, oid, m, s, price, left in zip(*(c.tolist() for c in batch), strict=True):
            now = after[oid] if oid in after else self._resting(oid)
            if kind == _PUT:
                problem = "duplicate_order" if now is not None else None
            elif now is None:
                problem = "unknown_order" if kind == _UPDATE else None
                if problem is None:
                    continue  # a taker that never rested
            else:
                problem = "mismatched" if (m, s) != now[:2] else None
            if problem is not None:
                counts[problem] += 1
                skipped += 1
                continue
            after[oid] = None if kind == _FINISH else (m, s, price, left)
        ids = np.fromiter(after, dtype=np.int64, count=len(after))
        states = [state or (0, 0, 0, 0) for state in after.values()]
        fields = np.array(states, dtype=np.int64).reshape(len(states), 4).T
        rests = np.array([state is not None for state in after.values()], dtype=bool)
        return _Net(ids, self._lookup(ids), rests, *fields), skipped

    def _resting(self, order_id: int) -> tuple[int, int, int, int] | None:
        slot = self._index.get(order_id)
        if slot is None:
            return None
        return (
            int(self._market[slot]),
            int(self._side[slot]),
            int(self._price[slot]),
            int(self._left[slot]),
        )

    # ------------------------------------------------------------------ state changes

    def _commit(self, net: _Net) -> None:
        """Move the levels and the order table by ``net``."""
        stored = net.slot >= 0
        old = net.slot[stored]
        rests = net.rests
        self._move_levels(
            np.concatenate((2 * self._market[old] + self._side[old] - 1,
                            2 * net.market[rests] + net.side[rests] - 1)),
            np.concatenate((self._price[old], net.price[rests])),
            np.concatenate((-self._left[old], net.left[rests])),
            np.concatenate((np.full(old.shape[0], -1, dtype=np.int64),
                            np.ones(int(np.count_nonzero(rests)), dtype=np.int64))),
        )  # fmt: skip
        stays = stored & rests
        self._price[net.slot[stays]] = net.price[stays]
        self._left[net.slot[stays]] = net.left[stays]
        gone = stored & ~rests
        if gone.any():
            self._free = np.concatenate((self._free, net.slot[gone]))
            for oid in net.order_id[gone].tolist():
                del self._index[oid]
        new = ~stored & rests
        k = int(np.count_nonzero(new))
        if k:
            if self._free.shape[0] < k:
                self._grow(k)
            slots = self._free[-k:]
            self._free = self._free[:-k]
            self._market[slots] = net.market[new]
            self._side[slots] = net.side[new]
            self._price[slots] = net.price[new]
            self._left[slots] = net.left[new]
            self._index.update(zip(net.order_id[new].tolist(), slots.tolist(), strict=True))

    def _grow(self, need: int) -> None:
        size = self._market.shape[0]
        grown = max(2 * size, size + need)
        for name in ("_market", "_side", "_price", "_left"):
            table = np.zeros(grown, dtype=np.int64)
            table[:size] = getattr(self, name)
            setattr(self, name, table)
        added = np.arange(grown - 1, size - 1, -1, dtype=np.int64)
        self._free = np.concatenate((added, self._free))

    def _move_levels(
        self, book: np.ndarray, price: np.ndarray, lots: np.ndarray, count: np.ndarray
    ) -> None:
        """Add ``lots`` and ``count`` to the levels at (``book``, ``price``)."""
        if not book.shape[0]:
            return
        order = np.lexsort((price, book))
        book, price = book[order], price[order]
        first = np.ones(book.shape[0], dtype=bool)
        first[1:] = (book[1:] != book[:-1]) | (price[1:] != price[:-1])
        at = np.flatnonzero(first)
        lots = np.add.reduceat(lots[order], at)
        count = np.add.reduceat(count[order], at)
        book, price = book[at], price[at]
        side_start = np.flatnonzero(np.append(True, book[1:] != book[:-1]))
        bounds = [*side_start.tolist(), book.shape[0]]
        for a, z in itertools.pairwise(bounds):
            b = int(book[a])
            self._sides[b] = _merge(self._sides[b], price[a:z], lots[a:z], count[a:z])

    # ------------------------------------------------------------------ queries

    def depth(
        self, market: int, limit: int, interval_ticks: int
    ) -> tuple[list[Level], list[Level]]:
        """``(asks, bids)`` as ``Engine.depth`` gives them.

        Parameters
        ----------
        market : int
            Market index; an unknown one gives empty sides, as the engine's does.
        limit : int
            At most this many levels per side, after merging (<= 0: none).
        interval_ticks : int
            > 0: an ask price is rounded up and a bid price down to a multiple of it,
            and equal prices are summed; <= 0: no merging.

        Returns
        -------
        tuple[list[tuple[int, int]], list[tuple[int, int]]]
            (price ticks, lots) per level, best first: asks ascending, bids descending.
        """
        if not 0 <= market < self._n or limit <= 0:
            return [], []
        limit = min(int(limit), INT64_MAX)
        interval = min(max(0, int(interval_ticks)), INT64_MAX)
        asks, bids = self._sides[2 * market], self._sides[2 * market + 1]
        ask_price, ask_lots = _view(asks.price, asks.total, _ASK, interval, limit)
        bid_price, bid_lots = _view(bids.price[::-1], bids.total[::-1], _BID, interval, limit)
        return _pairs(ask_price, ask_lots), _pairs(bid_price, bid_lots)

    def changes(self, market: int, interval_ticks: int = 0) -> tuple[list[Level], list[Level]]:
        """The levels that changed since the last call for ``market`` (the first call:
        every level), merged to ``interval_ticks`` as in ``depth``.

        The levels of that call are kept whatever its interval, so the diff holds for
        any interval; one baseline per market (a caller that publishes several
        intervals diffs ``depth`` results itself).

        Parameters
        ----------
        market : int
            Market index; an unknown one gives empty sides.
        interval_ticks : int
            Merge interval as in ``depth`` (<= 0: none).

        Returns
        -------
        tuple[list[tuple[int, int]], list[tuple[int, int]]]
            (price ticks, lots) per changed level, 0 lots for a level gone; asks
            ascending, bids descending. A level that changed and came back to the
            same total is not reported.
        """
        if not 0 <= market < self._n:
            return [], []
        interval = min(max(0, int(interval_ticks)), INT64_MAX)
        out: list[list[Level]] = []
        for side in (_ASK, _BID):
            b = 2 * market + side - 1
            old, now = self._base[b], self._sides[b]
            self._base[b] = now
            if old is now:
                out.append([])
                continue
            old_price, old_lots = _view(old.price, old.total, side, interval, INT64_MAX)
            now_price, now_lots = _view(now.price, now.total, side, interval, INT64_MAX)
            price, lots = _diff(old_price, old_lots, now_price, now_lots)
            if side == _BID:
                price, lots = price[::-1], lots[::-1]
            out.append(_pairs(price, lots))
        return out[0], out[1]

    def statistics(self) -> DepthStatistics:
        """Sizes and counters now."""
        levels = sum(side.price.shape[0] for side in self._sides)
        return DepthStatistics(orders=len(self._index), levels=levels, **self._counters)

    # ------------------------------------------------------------------ snapshots

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The whole state as int64 arrays (names ``ARRAY_NAMES``), for a snapshot.

        Returns
        -------
        dict[str, np.ndarray]
            ``n_markets`` (0-d); the resting orders by id (``order_id``,
            ``order_market``, ``order_side``, ``order_price``, ``order_left``); the
            levels of the last ``changes`` call by market, side and price
            (``base_market``, ``base_side``, ``base_price``, ``base_lots``);
            ``counters`` in the order of ``COUNTER_NAMES``.
        """
        ids = np.fromiter(self._index.keys(), dtype=np.int64, count=len(self._index))
        slots = np.fromiter(self._index.values(), dtype=np.int64, count=len(self._index))
        order = np.argsort(ids)
        ids, slots = ids[order], slots[order]
        sizes = [levels.price.shape[0] for levels in self._base]
        books = np.repeat(np.arange(2 * self._n, dtype=np.int64), sizes)
        return {
            "n_markets": np.array(self._n, dtype=np.int64),
            "order_id": ids,
            "order_market": self._market[slots],
            "order_side": self._side[slots],
            "order_price": self._price[slots],
            "order_left": self._left[slots],
            "base_market": books // 2,
            "base_side": books % 2 + 1,
            "base_price": np.concatenate([lv.price for lv in self._base] or [_EMPTY.price]),
            "base_lots": np.concatenate([lv.total for lv in self._base] or [_EMPTY.total]),
            "counters": np.array([self._counters[k] for k in COUNTER_NAMES], dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> DepthBook:
        """The book ``to_arrays`` saved (``to_arrays`` of the result equals ``arrays``).

        Raises
        ------
        ValueError
            An array is missing, unknown, of the wrong shape or type, or holds a value
            ``to_arrays`` cannot have written; the message says which and why.
        """
        a = check_depth_arrays(arrays)
        book = cls(int(a["n_markets"]))
        n = a["order_id"].shape[0]
        book._commit(
            _Net(a["order_id"], np.full(n, -1, dtype=np.int64), np.ones(n, dtype=bool),
                 a["order_market"], a["order_side"], a["order_price"], a["order_left"])
        )  # fmt: skip
        books = 2 * a["base_market"] + a["base_side"] - 1
        bounds = np.searchsorted(books, np.arange(2 * book._n + 1)).tolist()
        for b in range(2 * book._n):
            price = a["base_price"][bounds[b] : bounds[b + 1]].copy()
            lots = a["base_lots"][bounds[b] : bounds[b + 1]].copy()
            book._base[b] = _levels(price, lots, np.ones(price.shape[0], dtype=np.int64))
        book._counters = dict(zip(COUNTER_NAMES, a["counters"].tolist(), strict=True))
        return book


# ---------------------------------------------------------------------- helpers


def _merge(levels: _Levels, price: np.ndarray, lots: np.ndarray, count: np.ndarray) -> _Levels:
    """``levels`` with ``lots`` and ``count`` added at ``price`` (ascending, unique);
    levels left without orders are dropped."""
    at, hit = _find(levels.price, price)
    new_price, total, n = levels.price, levels.total.copy(), levels.orders.copy()
    total[at[hit]] += lots[hit]
    n[at[hit]] += count[hit]
    miss = ~hit
    if miss.any():
        new_price = np.insert(new_price, at[miss], price[miss])
        total = np.insert(total, at[miss], lots[miss])
        n = np.insert(n, at[miss], count[miss])
    if ((n < 0) | (total < 0) | ((n == 0) != (total == 0))).any():
        raise InternalError("depth: a level's order count and total disagree")
    live = n > 0
    if not live.all():
        new_price, total, n = new_price[live], total[live], n[live]
    return _levels(new_price, total, n)


def _view(
    price: np.ndarray, lots: np.ndarray, side: int, interval: int, limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``limit`` levels of a side in the given order, merged to ``interval``
    (> 0): asks rounded up, bids down, equal prices summed (they are adjacent)."""
    if interval == 0 or not price.shape[0]:
        return price[:limit], lots[:limit]
    # No overflow: prices are at most MAX_SUPPLY_UNITS = 2**62, and a rounded-up price
    # is below price + interval, so either interval itself or below 2 * price.
    key = -(-price // interval) * interval if side == _ASK else price // interval * interval
    start = np.flatnonzero(np.append(True, key[1:] != key[:-1]))
    return key[start][:limit], np.add.reduceat(lots, start)[:limit]


def _diff(
    old_price: np.ndarray, old_lots: np.ndarray, new_price: np.ndarray, new_lots: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Prices (ascending) whose lots differ between two ascending sides, and the new
    lots there (0: gone)."""
    price = np.union1d(old_price, new_price)
    was, now = _lots_at(old_price, old_lots, price), _lots_at(new_price, new_lots, price)
    changed = was != now
    return price[changed], now[changed]


def _find(sorted_price: np.ndarray, price: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``price`` is or would go in ``sorted_price``, and if it is there."""
    at = np.searchsorted(sorted_price, price)
    hit = at < sorted_price.shape[0]
    hit[hit] = sorted_price[at[hit]] == price[hit]
    return at, hit


def _lots_at(side_price: np.ndarray, side_lots: np.ndarray, price: np.ndarray) -> np.ndarray:
    at, hit = _find(side_price, price)
    out = np.zeros(price.shape[0], dtype=np.int64)
    out[hit] = side_lots[at[hit]]
    return out


def _pairs(price: np.ndarray, lots: np.ndarray) -> list[Level]:
    return list(zip(price.tolist(), lots.tolist(), strict=True))
