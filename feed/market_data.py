"""ViaBTC's marketprice methods over the feed's state (docs/feed.md, "The market.*
methods").

``MarketData`` takes the deals of the log (``DEAL`` events, in log order) and answers
``market.kline``, ``market.status``, ``market.status_today``, ``market.last`` and
``market.deals`` with ViaBTC's parameters, limits and result shapes
(shared/reference/viabtc-api.md §4.3, §8.2). Arguments are typed Python values (the
HTTP and WebSocket layers map JSON to them) and are all checked before anything is
read; ``now`` (Unix seconds) is the caller's clock, so that answers are reproducible.

It also keeps each market's trading status (``core.schema.MarketStatus``: open,
halted, delisted) from the ``MARKET_STATUS`` events, with the log sequence and time
of the change that set it (``trading_status``); every other event (orders, balances,
``USER_STATUS``, ``MARKET_LIMIT``, ``USER_LIMIT``) is ignored. A status event of an
unknown market or with an unknown status is counted (``status_rejected``) and
skipped, never raised.

Errors are ``MarketDataError`` with ViaBTC's code 1 (invalid argument) and a message
that says which argument and why.

Deliberate differences from ViaBTC's marketprice (docs/compat.md):

* a kline bucket opens at its first deal (the conventional rule; ViaBTC's HEAD opens
  it at the previous close, so that its high and low include that price);
* decimals are in plain notation with trailing zeros removed (``market.last`` keeps
  the market's scale, as ViaBTC's does), never ``1e-8``;
* a ``market.kline`` query of more than ``MAX_KLINE_ROWS`` intervals (after ``start``
  is moved up to the oldest bucket kept, as ViaBTC does) is refused; ViaBTC builds
  any number;
* every market of the config is known from the start, and a market added at run time
  from its ADD_MARKET on (``grow``; ViaBTC learns the market list from accesshttp and
  from deals); nothing else is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from core.arguments import ArgumentError, int_arg, str_arg
from core.config import EngineConfig
from core.errors import MatchdError
from core.fixed import format_units
from core.schema import EVENT_DTYPE, EventKind, MarketStatus, Result, Side
from feed.klines import BASES, Candle, KlineError, KlineStore, Retention, Series, kline_base

#: market.deals keeps this many deals per market; its ``limit`` is 1..this.
DEALS_KEPT: Final = 10_000
#: Most intervals one market.kline answer may hold.
MAX_KLINE_ROWS: Final = 100_000
#: market.status periods: 1..this (ViaBTC's sec_max).
MAX_PERIOD_S: Final = 7 * 86400
_DEAL = int(EventKind.DEAL)
_MARKET_STATUS = int(EventKind.MARKET_STATUS)
_STATUSES = np.array(sorted(int(s) for s in MarketStatus), dtype=np.int64)
_ASK = int(Side.ASK)
_MAX_TIME: Final = 2**40  #: about the year 36812: beyond, a time is refused


class MarketDataError(MatchdError):
    """A market.* method refused its arguments (ViaBTC code 1).

    Attributes
    ----------
    code : int
        ViaBTC's error code (1).
    result_code : Result
        ``INVALID_ARGUMENT`` or ``UNKNOWN_MARKET``.
    message : str
        The text for the client.
    """

    def __init__(self, result_code: Result, message: str) -> None:
        super().__init__(message)
        self.result_code = result_code
        self.code = 1
        self.message = message

    def error(self) -> dict[str, Any]:
        """ViaBTC's ``error`` member: ``{"code", "message"}``."""
        return {"code": self.code, "message": self.message}


class _Deals:
    """The newest ``DEALS_KEPT`` deals of a market, in a ring."""

    def __init__(self) -> None:
        self.count = 0  #: deals ever added
        self.id = np.zeros(DEALS_KEPT, dtype=np.int64)
        self.ts_ns = np.zeros(DEALS_KEPT, dtype=np.int64)
        self.price = np.zeros(DEALS_KEPT, dtype=np.int64)
        self.amount = np.zeros(DEALS_KEPT, dtype=np.int64)
        self.side = np.zeros(DEALS_KEPT, dtype=np.int8)

    def add(self, deals: np.ndarray) -> None:
        keep = deals[-DEALS_KEPT:]
        slots = (self.count + (deals.shape[0] - keep.shape[0]) + np.arange(keep.shape[0])) % (
            DEALS_KEPT
        )
        self.id[slots] = keep["deal_id"]
        self.ts_ns[slots] = keep["ts_ns"]
        self.price[slots] = keep["price"]
        self.amount[slots] = keep["amount"]
        self.side[slots] = keep["side"]
        self.count += deals.shape[0]

    _FIELDS = ("id", "ts_ns", "price", "amount", "side")

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}{name}": getattr(self, name).copy() for name in self._FIELDS}
        out[f"{prefix}count"] = np.array([self.count], dtype=np.int64)
        return out

    def load(self, arrays: dict[str, np.ndarray], prefix: str) -> None:
        for name in self._FIELDS:
            got = arrays[f"{prefix}{name}"]
            want = getattr(self, name)
            if got.shape != want.shape or got.dtype != want.dtype:
                raise ValueError(f"state field {prefix}{name} is {got.dtype}{got.shape}")
            want[:] = got
        self.count = int(arrays[f"{prefix}count"][0])

    def newest(self, limit: int, after_id: int) -> list[int]:
        """Slots of the newest deals with an id above ``after_id``, newest first."""
        held = min(self.count, DEALS_KEPT)
        slots = (self.count - 1 - np.arange(min(limit, held))) % DEALS_KEPT
        ids = self.id[slots]
        stop = np.flatnonzero(ids <= after_id)
        if stop.shape[0]:
            slots = slots[: int(stop[0])]
        result: list[int] = slots.tolist()
        return result


class MarketData:
    """The market data of ``config``'s markets (see the module docstring)."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        utc_offset_s: int = 0,
        retention: Retention | None = None,
    ) -> None:
        """Empty state; ``utc_offset_s`` aligns days, weeks and months (east of UTC)."""
        self.config = config
        self._index = {m.name: i for i, m in enumerate(config.markets)}
        self.klines = KlineStore(
            len(config.markets), utc_offset_s=utc_offset_s, retention=retention
        )
        self._deals = [_Deals() for _ in config.markets]
        self._last = [0] * len(config.markets)  #: ticks; 0 before the first deal
        n = len(config.markets)
        #: per market: MarketStatus, and the log seq and time (ns) of the event that
        #: set it (0, 0: open since the log began)
        self._status = np.zeros(n, dtype=np.int64)
        self._status_seq = np.zeros(n, dtype=np.int64)
        self._status_ts_ns = np.zeros(n, dtype=np.int64)
        self._status_touched: set[int] = set()
        self.status_rejected = 0  #: MARKET_STATUS events skipped (unknown market or status)

    def grow(self, config: EngineConfig) -> None:
        """Take ``config``, this one's catalog with markets added at its end (ADD_MARKET):
        each new market starts with no deal and open; its status is noted as changed
        (``take_status_touched``), so that Redis gets it too."""
        have = len(self._deals)
        if config.markets[:have] != self.config.markets[:have]:
            raise ValueError("a grown catalog keeps the markets it had, in their places")
        added = range(have, len(config.markets))
        self.config = config
        self._index.update((config.markets[m].name, m) for m in added)
        self.klines.grow(len(config.markets))
        self._deals += [_Deals() for _ in added]
        self._last += [0] * len(added)
        more = np.zeros(len(added), dtype=np.int64)
        self._status = np.concatenate((self._status, more))
        self._status_seq = np.concatenate((self._status_seq, more))
        self._status_ts_ns = np.concatenate((self._status_ts_ns, more))
        self._status_touched.update(added)

    # ------------------------------------------------------------------ state

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything this holds, as named arrays (``feed.state`` writes them)."""
        out: dict[str, np.ndarray] = {
            "last": np.array(self._last, dtype=np.int64),
            "newest_s": np.array([self.klines.newest_s], dtype=np.int64),
            "status": self._status.copy(),
            "status_seq": self._status_seq.copy(),
            "status_ts_ns": self._status_ts_ns.copy(),
        }
        for m in range(len(self._deals)):
            out.update(self._deals[m].to_arrays(f"deals.{m}."))
            for base in BASES:
                out[f"klines.{m}.{base}"] = self.klines.series(m, base).buckets.copy()
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Take the state of ``to_arrays`` (of the same markets, or of the first ones
        when markets were added since); ``ValueError`` if it does not fit."""
        last = arrays["last"]
        if last.shape[0] > len(self._last):
            raise ValueError(f"the state holds {last.shape[0]} markets, the config fewer")
        self._last[: last.shape[0]] = [int(x) for x in last.tolist()]
        for name in ("status", "status_seq", "status_ts_ns"):
            got = arrays.get(name)  # absent from states written before market status
            if got is None:
                continue
            if got.shape != last.shape or got.dtype != np.int64:
                raise ValueError(f"state field {name} is {got.dtype}{got.shape}")
            if name == "status" and not np.isin(got, _STATUSES).all():
                raise ValueError(f"state field status holds unknown statuses: {got}")
            getattr(self, f"_{name}")[: got.shape[0]] = got
        self.klines.newest_s = int(arrays["newest_s"][0])
        for m in range(last.shape[0]):
            self._deals[m].load(arrays, f"deals.{m}.")
            for base in BASES:
                self.klines.replace_series(
                    m, base, Series.from_buckets(arrays[f"klines.{m}.{base}"])
                )

    # ------------------------------------------------------------------ deals in

    def add_events(self, events: np.ndarray) -> int:
        """Take the ``DEAL`` and ``MARKET_STATUS`` events of ``events``
        (``EVENT_DTYPE``, log order); returns how many deals."""
        if events.dtype != EVENT_DTYPE:
            raise TypeError(f"events must be EVENT_DTYPE, not {events.dtype}")
        kinds = events["kind"]
        if (kinds == _MARKET_STATUS).any():
            self.add_status_events(events)
        deals = events[kinds == _DEAL]
        n = int(deals.shape[0])
        if not n:
            return 0
        market = deals["market"].astype(np.int64)
        self.klines.add_deals(
            market, deals["ts_ns"] // 1_000_000_000, deals["price"], deals["amount"],
            deals["deal_money"],
        )  # fmt: skip
        for m in np.unique(market).tolist():
            mine = deals[market == m]
            self._deals[m].add(mine)
            self._last[m] = int(mine["price"][-1])
        return n

    def add_status_events(self, events: np.ndarray) -> np.ndarray:
        """Take the ``MARKET_STATUS`` events of ``events`` (log order); returns those
        taken (the others are counted in ``status_rejected``)."""
        statuses: np.ndarray = events[events["kind"] == _MARKET_STATUS]
        if not statuses.shape[0]:
            return statuses
        market = statuses["market"].astype(np.int64)
        good = (market >= 0) & (market < self._status.shape[0])
        good &= np.isin(statuses["reason"].astype(np.int64), _STATUSES)
        self.status_rejected += int(np.count_nonzero(~good))
        taken: np.ndarray = statuses[good]
        for e in taken:  # a few a day: one at a time, in log order
            m = int(e["market"])
            self._status[m] = int(e["reason"])
            self._status_seq[m] = int(e["seq"])
            self._status_ts_ns[m] = int(e["ts_ns"])
            self._status_touched.add(m)
        return taken

    def take_status_touched(self) -> set[int]:
        """The markets whose status changed since the last call (for Redis)."""
        touched, self._status_touched = self._status_touched, set()
        return touched

    def trading_status(self, m: int) -> dict[str, Any]:
        """Market index ``m``'s status: ``{"status": "open"|"halted"|"delisted",
        "log_seq", "time"}``, the sequence and time (Unix seconds) of the change that
        set it (0 and 0: open since the log began)."""
        return {
            "status": MarketStatus(int(self._status[m])).name.lower(),
            "log_seq": int(self._status_seq[m]),
            "time": int(self._status_ts_ns[m]) / 1e9,
        }

    # ------------------------------------------------------------------ methods

    def kline(self, market: str, start: int, end: int, interval: int, now: int) -> list[Any]:
        """``market.kline``: ``[[time, open, close, high, low, volume, deal, market],
        ...]`` from the interval holding ``start`` to ``min(end, now)``."""
        m = self._market(market)
        start = _int(start, "start", 1, _MAX_TIME)
        end = min(_int(end, "end", 0, _MAX_TIME), now)
        interval = _int(interval, "interval", 1, _MAX_TIME)
        if start > end:
            raise _invalid(f"start {start} is after end {end} (end is at most now)")
        try:
            kept = self.klines.retention.seconds(kline_base(interval))
            if kept is not None:  # nothing older is kept: start there, as ViaBTC does
                start = min(max(start, now - kept), end)
            candles = self.klines.kline(m, start, end, interval, max_rows=MAX_KLINE_ROWS)
        except KlineError as exc:
            raise _invalid(str(exc)) from None
        return [self._kline_row(m, market, c) for c in candles]

    def status(self, market: str, period: int, now: int) -> dict[str, Any]:
        """``market.status``: the last ``period`` seconds up to ``now``."""
        m = self._market(market)
        period = _int(period, "period", 1, MAX_PERIOD_S)
        candle = self.klines.status(m, now - period, now)
        fields = self.candle_fields(m, candle)
        return {
            "period": period,
            "last": self._price(m, self._last[m]),
            "open": fields[0],
            "close": fields[1],
            "high": fields[2],
            "low": fields[3],
            "volume": fields[4],
            "deal": fields[5],
        }

    def status_today(self, market: str, now: int) -> dict[str, Any]:
        """``market.status_today``: open, last, high and low of today's day bucket
        (else the last day's close within 30 days, else "0"); volume and deal of the
        24 hours up to ``now``."""
        m = self._market(market)
        today, before = self.klines.day(m, now)
        if today is None and before is not None:
            today = before.flat(before.start)
        day = self.candle_fields(m, today)
        rolling = self.candle_fields(m, self.klines.status(m, now - 86400, now))
        return {
            "open": day[0],
            "last": day[1],
            "high": day[2],
            "low": day[3],
            "volume": rolling[4],
            "deal": rolling[5],
        }

    def deal_count(self, market: int) -> int:
        """Deals of market index ``market`` so far (kept in the state)."""
        return self._deals[market].count

    def last(self, market: str) -> str:
        """``market.last``: the last deal's price at the market's scale ("0" before
        any deal)."""
        m = self._market(market)
        price = self._last[m]
        if not price:
            return "0"
        return format_units(price, self.config.markets[m].money_prec, strip=False)

    def deals(self, market: str, limit: int, last_id: int) -> list[dict[str, Any]]:
        """``market.deals``: up to ``limit`` of the newest deals with an id above
        ``last_id``, newest first; ``type`` is the taker's side."""
        m = self._market(market)
        limit = _int(limit, "limit", 1, DEALS_KEPT)
        last_id = _int(last_id, "last_id", 0, 2**63 - 1)
        ring = self._deals[m]
        cfg = self.config.markets[m]
        return [
            {
                "id": int(ring.id[s]),
                "time": int(ring.ts_ns[s]) / 1e9,
                "price": format_units(int(ring.price[s]), cfg.money_prec),
                "amount": format_units(int(ring.amount[s]), cfg.stock_prec),
                "type": "sell" if int(ring.side[s]) == _ASK else "buy",
            }
            for s in ring.newest(limit, last_id)
        ]

    # ------------------------------------------------------------------ helpers

    def _market(self, market: object) -> int:
        try:
            market = str_arg(market, "market")
        except ArgumentError as exc:
            raise _invalid(str(exc)) from None
        m = self._index.get(market)
        if m is None:
            raise MarketDataError(Result.UNKNOWN_MARKET, f"invalid argument: no market {market!r}")
        return m

    def _price(self, m: int, ticks: int) -> str:
        return format_units(ticks, self.config.markets[m].money_prec)

    def candle_fields(self, m: int, c: Candle | None) -> Sequence[str]:
        """open, close, high, low, volume, deal as decimal strings ("0" for none)."""
        if c is None:
            return ("0",) * 6
        cfg = self.config.markets[m]
        return (
            self._price(m, c.open), self._price(m, c.close), self._price(m, c.high),
            self._price(m, c.low), format_units(c.volume, cfg.stock_prec),
            format_units(c.deal, cfg.money.prec),
        )  # fmt: skip

    def _kline_row(self, m: int, market: str, c: Candle) -> list[Any]:
        return [c.start, *self.candle_fields(m, c), market]


def _invalid(detail: str) -> MarketDataError:
    return MarketDataError(Result.INVALID_ARGUMENT, f"invalid argument: {detail}")


def _int(value: object, what: str, low: int, high: int) -> int:
    try:
        return int_arg(value, what, low, high)
    except ArgumentError as exc:
        raise _invalid(str(exc)) from None
