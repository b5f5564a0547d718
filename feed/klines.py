"""Kline buckets of every market, built from deals, and the queries over them
(docs/feed.md, "Klines").

Each market keeps four series of buckets (``core.schema.KLINE_DTYPE``), one for each
base interval: 1 s, 1 min, 1 h and 1 day, as ViaBTC's marketprice does. A bucket holds
the open, close, high and low price of its deals (open and close in log order), and
its volume (amounts summed) and deal (money summed), exact in two words each, since
sums of int64 amounts need more than 63 bits. The conventional rule holds: a bucket
opens at its first deal (ViaBTC's HEAD opens it at the previous close instead).
Only buckets with deals are stored; a series is sorted by start, so a query finds its
range by binary search and aggregates it with numpy's ``reduceat``.

Time alignment uses a fixed offset from UTC (``utc_offset_s``, seconds east, a
multiple of 60; 0 by default), as ViaBTC's ``timezone`` setting does: minute, hour and
day buckets start at local minute, hour and midnight; derived intervals are unions of
base buckets: < 60 s of 1 s buckets, 60..3599 s of minutes, 3600..86399 s of hours
(aligned from local midnight), multiples of a day of days, a week (604800) from
Monday, a month (2592000) from the 1st, local time.

Retention, counted back from the newest deal seen (not the clock, so that a replay
keeps what the live run kept): ``sec_max`` seconds of 1 s buckets, ``min_max``
minutes of minute buckets, ``hour_max`` hours of hour buckets; day buckets are kept.
Memory per market is therefore at most (sec_max + min_max + hour_max) buckets of 72
bytes, plus its days.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import numpy as np

from core.schema import KLINE_DTYPE, WIDE_SHIFT

#: The base intervals, in seconds.
SECOND: Final = 1
MINUTE: Final = 60
HOUR: Final = 3600
DAY: Final = 86400
BASES: Final = (SECOND, MINUTE, HOUR, DAY)
WEEK: Final = 7 * DAY
MONTH: Final = 30 * DAY  #: 2592000: the calendar month, as ViaBTC's interval
#: 1970-01-05, the first Monday after the epoch, is this many days after it.
_MONDAY_DAYS: Final = 4
_LOW_MASK: Final = (1 << WIDE_SHIFT) - 1
_INITIAL_CAPACITY: Final = 64


class KlineError(ValueError):
    """A kline query that cannot be answered (an interval ViaBTC does not take, or too
    many rows); the message says why."""


@dataclass(frozen=True, slots=True)
class Retention:
    """How long base buckets are kept (ViaBTC's sec_max, min_max, hour_max)."""

    sec_max: int = 7 * DAY  #: seconds of 1 s buckets (market.status reaches this far)
    min_max: int = 366 * 24 * 60  #: minutes of minute buckets
    hour_max: int = 10 * 366 * 24  #: hours of hour buckets

    def seconds(self, base: int) -> int | None:
        """How far back the series of ``base`` reaches (None: for ever)."""
        kept = {SECOND: self.sec_max, MINUTE: self.min_max * MINUTE, HOUR: self.hour_max * HOUR}
        return kept.get(base)


@dataclass(frozen=True, slots=True)
class Candle:
    """An aggregate over a span: prices in ticks, volume in lots, deal in money units."""

    start: int
    open: int
    close: int
    high: int
    low: int
    volume: int
    deal: int

    def flat(self, start: int) -> Candle:
        """A span with no deal after this one: its close throughout, nothing traded."""
        return Candle(start, self.close, self.close, self.close, self.close, 0, 0)


def align(t: int, interval: int, offset_s: int) -> int:
    """The start of the span of ``interval`` seconds that holds Unix second ``t``,
    spans counted from local midnight of the epoch (``offset_s`` east of UTC)."""
    return (t + offset_s) // interval * interval - offset_s


def align_week(t: int, offset_s: int) -> int:
    """The local Monday 00:00 at or before ``t``."""
    shift = _MONDAY_DAYS * DAY - offset_s
    return (t - shift) // WEEK * WEEK + shift


def month_starts(t0: int, t1: int, offset_s: int) -> list[int]:
    """Local month starts from the month holding ``t0`` up to the first one after
    ``t1``: each month's span is [starts[i], starts[i + 1])."""
    local = datetime.fromtimestamp(t0 + offset_s, UTC)
    year, month = local.year, local.month
    starts = []
    while True:
        start = calendar.timegm((year, month, 1, 0, 0, 0)) - offset_s
        starts.append(start)
        if start > t1:
            return starts
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


class Series:
    """The buckets of one market at one base interval, sorted by start; buckets before
    ``_first`` are dropped (retention) and compacted away now and then."""

    def __init__(self) -> None:
        self._data = np.zeros(_INITIAL_CAPACITY, dtype=KLINE_DTYPE)
        self._first = 0
        self._n = 0

    def __len__(self) -> int:
        return self._n - self._first

    @classmethod
    def from_buckets(cls, buckets: np.ndarray) -> Series:
        """A series holding a copy of ``buckets`` (``KLINE_DTYPE``, sorted by start)."""
        if buckets.dtype != KLINE_DTYPE or buckets.ndim != 1:
            raise ValueError("buckets must be a 1-d KLINE_DTYPE array")
        starts = buckets["start"]
        if starts.shape[0] > 1 and not bool((starts[1:] > starts[:-1]).all()):
            raise ValueError("buckets must be sorted by start, each start once")
        series = cls()
        series._data = np.zeros(max(_INITIAL_CAPACITY, 2 * buckets.shape[0]), dtype=KLINE_DTYPE)
        series._data[: buckets.shape[0]] = buckets
        series._n = buckets.shape[0]
        return series

    @property
    def buckets(self) -> np.ndarray:
        """The live buckets (a view)."""
        return self._data[self._first : self._n]

    def merge(self, row: tuple[int, ...]) -> None:
        """Add a group of deals (start, open, close, high, low, volume_hi, volume_lo,
        deal_hi, deal_lo) that came after every deal already in this series."""
        start = row[0]
        if self._n == self._data.shape[0]:
            self._grow()
        n, data = self._n, self._data
        if n > self._first and data["start"][n - 1] == start:
            self._update(n - 1, row)
            return
        if n == self._first or data["start"][n - 1] < start:
            i = n
        else:  # a deal stamped before the newest bucket (the clock stepped back)
            i = self._first + int(np.searchsorted(self.buckets["start"], start))
            if data["start"][i] == start:
                self._update(i, row)
                return
            data[i + 1 : n + 1] = data[i:n].copy()
        data[i] = row
        self._carry(i)
        self._n = n + 1

    def _update(self, i: int, row: tuple[int, ...]) -> None:
        b = self._data[i]
        b["close"] = row[2]
        b["high"] = max(int(b["high"]), row[3])
        b["low"] = min(int(b["low"]), row[4])
        b["volume_hi"] += row[5]
        b["volume_lo"] += row[6]
        b["deal_hi"] += row[7]
        b["deal_lo"] += row[8]
        self._carry(i)

    def _carry(self, i: int) -> None:
        b = self._data[i]
        for word in ("volume", "deal"):
            lo = int(b[f"{word}_lo"])
            if lo > _LOW_MASK:
                b[f"{word}_hi"] += lo >> WIDE_SHIFT
                b[f"{word}_lo"] = lo & _LOW_MASK

    def _grow(self) -> None:
        live = self.buckets
        capacity = max(_INITIAL_CAPACITY, 2 * live.shape[0])
        data = np.zeros(capacity, dtype=KLINE_DTYPE)
        data[: live.shape[0]] = live
        self._data, self._n, self._first = data, live.shape[0], 0

    def drop_before(self, start: int) -> list[int]:
        """Forget the buckets that start before ``start``; returns their starts."""
        k = int(np.searchsorted(self.buckets["start"], start))
        if not k:
            return []
        dropped: list[int] = self.buckets["start"][:k].tolist()
        self._first += k
        if self._first > self._data.shape[0] // 2:
            self._grow()  # compacts
        return dropped

    def bucket(self, start: int) -> Candle | None:
        """The bucket that starts at ``start``, if any."""
        b = self.buckets
        k = int(np.searchsorted(b["start"], start))
        return _candle(b[k]) if k < b.shape[0] and int(b["start"][k]) == start else None

    def candles(self) -> list[Candle]:
        """Every live bucket, oldest first."""
        return [_candle(b) for b in self.buckets]

    def before(self, start: int) -> Candle | None:
        """The last bucket that starts before ``start``, if any."""
        k = int(np.searchsorted(self.buckets["start"], start))
        return _candle(self.buckets[k - 1]) if k else None

    def spans(self, starts: np.ndarray, stops: np.ndarray) -> list[Candle | None]:
        """The aggregate of the buckets in each span [starts[i], stops[i]) (contiguous
        spans, in order), None for a span without deals."""
        b = self.buckets
        lo = np.searchsorted(b["start"], starts)
        hi = np.searchsorted(b["start"], stops)
        full = hi > lo
        out: list[Candle | None] = [None] * starts.shape[0]
        if not full.any():
            return out
        base = int(lo[full][0])
        part = b[base : int(hi[full][-1])]
        idx = lo[full] - base
        last = hi[full] - 1 - base
        highs = np.maximum.reduceat(part["high"], idx)
        lows = np.minimum.reduceat(part["low"], idx)
        words = [np.add.reduceat(part[f], idx).tolist() for f in _WIDE_FIELDS]
        rows = zip(
            np.flatnonzero(full).tolist(), part["open"][idx].tolist(),
            part["close"][last].tolist(), highs.tolist(), lows.tolist(), *words, strict=True,
        )  # fmt: skip
        for i, o, c, h, low, vh, vl, dh, dl in rows:
            out[i] = Candle(
                int(starts[i]), o, c, h, low, (vh << WIDE_SHIFT) + vl, (dh << WIDE_SHIFT) + dl
            )
        return out


_WIDE_FIELDS: Final = ("volume_hi", "volume_lo", "deal_hi", "deal_lo")


def _candle(b: np.void) -> Candle:
    return Candle(
        int(b["start"]), int(b["open"]), int(b["close"]), int(b["high"]), int(b["low"]),
        (int(b["volume_hi"]) << WIDE_SHIFT) + int(b["volume_lo"]),
        (int(b["deal_hi"]) << WIDE_SHIFT) + int(b["deal_lo"]),
    )  # fmt: skip


def combine(parts: list[Candle | None]) -> Candle | None:
    """One aggregate of consecutive spans (None: no deal in any)."""
    live = [p for p in parts if p is not None]
    if not live:
        return None
    return Candle(
        live[0].start, live[0].open, live[-1].close, max(p.high for p in live),
        min(p.low for p in live), sum(p.volume for p in live), sum(p.deal for p in live),
    )  # fmt: skip


class KlineStore:
    """The kline series of ``markets`` markets (indexes 0..markets-1)."""

    def __init__(
        self, markets: int, *, utc_offset_s: int = 0, retention: Retention | None = None
    ) -> None:
        """Empty series; ``utc_offset_s`` east of UTC, a multiple of 60 within ±14 h."""
        if utc_offset_s % MINUTE or abs(utc_offset_s) > 14 * HOUR:
            raise ValueError(
                f"utc_offset_s must be a multiple of 60 within ±14 hours; got {utc_offset_s}"
            )
        self.offset_s = utc_offset_s
        self.retention = retention or Retention()
        self._series = [{base: Series() for base in BASES} for _ in range(markets)]
        self.newest_s = 0  #: the newest deal's second
        #: Whether the buckets changed and dropped are noted (for ``take_touched`` and
        #: ``take_dropped``): only when a publisher takes them, else they would pile up.
        self.track = False
        #: (market, base, bucket start) of every bucket changed since ``take_touched``
        self._touched: set[tuple[int, int, int]] = set()
        #: (market, base, bucket start) of every bucket retention dropped since
        #: ``take_dropped``
        self._dropped: set[tuple[int, int, int]] = set()

    @property
    def markets(self) -> int:
        """How many markets the store holds."""
        return len(self._series)

    def grow(self, markets: int) -> None:
        """Hold ``markets`` markets: the new ones (at the end) have no bucket yet."""
        self._series += [{base: Series() for base in BASES} for _ in range(markets - self.markets)]

    def take_touched(self) -> set[tuple[int, int, int]]:
        """The (market, base, bucket start) changed since the last call (a publisher
        sends these; noted only while ``track`` is set)."""
        touched, self._touched = self._touched, set()
        return touched

    def take_dropped(self) -> set[tuple[int, int, int]]:
        """The (market, base, bucket start) that retention dropped since the last
        call (a publisher deletes these; noted only while ``track`` is set)."""
        dropped, self._dropped = self._dropped, set()
        return dropped

    def replace_series(self, market: int, base: int, series: Series) -> None:
        """Put ``series`` in place of the one of ``market`` at ``base`` (state load)."""
        self._series[market][base] = series

    def series(self, market: int, base: int) -> Series:
        """The series of ``market`` at ``base``."""
        return self._series[market][base]

    # ------------------------------------------------------------------ deals in

    def add_deals(
        self,
        market: np.ndarray,
        time_s: np.ndarray,
        price: np.ndarray,
        amount: np.ndarray,
        money: np.ndarray,
    ) -> None:
        """Add deals in log order: market indexes, Unix seconds, prices (ticks),
        amounts (lots) and money (units), int64 arrays of one length."""
        n = market.shape[0]
        if not n:
            return
        market = market.astype(np.int64)
        time_s = time_s.astype(np.int64)
        words = (amount >> WIDE_SHIFT, amount & _LOW_MASK, money >> WIDE_SHIFT, money & _LOW_MASK)
        for base in BASES:
            starts = time_s if base == SECOND else align_array(time_s, base, self.offset_s)
            order = np.lexsort((starts, market))  # stable: log order within a bucket
            m, s = market[order], starts[order]
            cut = np.flatnonzero((m[1:] != m[:-1]) | (s[1:] != s[:-1])) + 1
            first = np.concatenate(([0], cut))
            last = np.concatenate((cut - 1, [n - 1]))
            p = price[order]
            sums = [np.add.reduceat(w[order], first).tolist() for w in words]
            rows = zip(
                m[first].tolist(), s[first].tolist(), p[first].tolist(), p[last].tolist(),
                np.maximum.reduceat(p, first).tolist(), np.minimum.reduceat(p, first).tolist(),
                *sums, strict=True,
            )  # fmt: skip
            for mk, *row in rows:
                self._series[mk][base].merge(tuple(row))
                if self.track:
                    self._touched.add((mk, base, row[0]))
        newest = int(time_s.max())
        if newest > self.newest_s:
            self.newest_s = newest
            self._prune()

    def _prune(self) -> None:
        for base in (SECOND, MINUTE, HOUR):
            cutoff = self._cutoff(base)
            for m, series in enumerate(self._series):
                dropped = series[base].drop_before(cutoff)
                if self.track:
                    self._dropped.update((m, base, start) for start in dropped)

    def _cutoff(self, base: int) -> int:
        """The first second kept of ``base`` (seconds, minutes, hours: days are kept)."""
        kept = self.retention.seconds(base)
        assert kept is not None  # noqa: S101 -- only days are kept for ever
        return self.newest_s - kept

    # ------------------------------------------------------------------ queries

    def kline(
        self, market: int, start: int, end: int, interval: int, *, max_rows: int
    ) -> list[Candle]:
        """ViaBTC's market.kline over [start, end] (both already checked: 0 < start <=
        end): one candle per interval from the one holding ``start``; an interval
        without deals after one with deals (or after a bucket before ``start``) is
        flat at the previous close; leading ones without deals are left out.
        ``KlineError`` for an interval ViaBTC does not take or more than ``max_rows``
        intervals."""
        base, starts, stops = self._spans(start, end, interval, max_rows)
        series = self.series(market, base)
        previous = series.before(int(starts[0]))
        out = []
        for candle, span_start in zip(series.spans(starts, stops), starts.tolist(), strict=True):
            if candle is None:
                if previous is None:
                    continue
                candle = previous.flat(span_start)
            out.append(candle)
            previous = candle
        return out

    def _spans(
        self, start: int, end: int, interval: int, max_rows: int
    ) -> tuple[int, np.ndarray, np.ndarray]:
        """(base, span starts, span stops) of a kline query."""
        off = self.offset_s
        if interval == MONTH:
            edges = month_starts(start, end, off)
            if len(edges) - 1 > max_rows:
                raise KlineError(f"{len(edges) - 1} months asked, at most {max_rows}")
            bounds = np.array(edges, dtype=np.int64)
            return DAY, bounds[:-1], bounds[1:]
        base = kline_base(interval)
        first = align_week(start, off) if interval == WEEK else align(start, interval, off)
        count = (end - first) // interval + 1
        if count > max_rows:
            raise KlineError(f"{count} intervals of {interval} s asked, at most {max_rows}")
        starts = first + interval * np.arange(count, dtype=np.int64)
        return base, starts, starts + interval

    def status(self, market: int, since: int, now: int) -> Candle | None:
        """The aggregate of [since, now): 1 s buckets up to the next minute, minute
        buckets after (ViaBTC's market.status); None without deals."""
        minute = align(since, MINUTE, self.offset_s) + MINUTE
        seconds = self.series(market, SECOND).spans(
            np.array([since], dtype=np.int64), np.array([min(minute, now)], dtype=np.int64)
        )
        minutes = (
            self.series(market, MINUTE).spans(
                np.array([minute], dtype=np.int64), np.array([now], dtype=np.int64)
            )
            if minute < now
            else [None]
        )
        return combine([*seconds, *minutes])

    def day(self, market: int, now: int) -> tuple[Candle | None, Candle | None]:
        """(today's day bucket, the last day bucket of the 30 days before today)."""
        today = align(now, DAY, self.offset_s)
        series = self.series(market, DAY)
        got = series.spans(np.array([today], dtype=np.int64), np.array([today + DAY]))[0]
        before = series.before(today)
        if before is not None and before.start < today - 30 * DAY:
            before = None
        return got, before


def kline_base(interval: int) -> int:
    """The base series an interval is made of (ViaBTC's rules); ``KlineError`` for an
    interval it does not take."""
    if 0 < interval < MINUTE and MINUTE % interval == 0:
        return SECOND
    if MINUTE <= interval < HOUR and interval % MINUTE == 0 and HOUR % interval == 0:
        return MINUTE
    if HOUR <= interval < DAY and interval % HOUR == 0 and DAY % interval == 0:
        return HOUR
    if DAY <= interval < WEEK and interval % DAY == 0:
        return DAY
    if interval in (WEEK, MONTH):
        return DAY
    raise KlineError(
        f"interval {interval} is not one of: a divisor of 60; a multiple of 60 that "
        "divides 3600; a multiple of 3600 that divides 86400; a multiple of 86400 below "
        "604800; 604800 (a week); 2592000 (a month)"
    )


def align_array(t: np.ndarray, interval: int, offset_s: int) -> np.ndarray:
    """``align`` over an int64 array."""
    return (t + offset_s) // interval * interval - offset_s
