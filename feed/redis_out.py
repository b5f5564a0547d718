"""Market data written into Redis (docs/redis.md lists every key).

``RedisOut.flush(seq, now)`` writes what changed since the last flush (the kline
buckets touched, each traded market's last price, ticker and new deals, the trading
status of the markets whose status changed) and the log
sequence it covers, in one ``MULTI``/``EXEC``: a reader that sees ``md:feed:seq`` = N
sees everything up to N. Kline values are ViaBTC's (``k:<market>:1s`` .. ``1d``
hashes, field = bucket start, value = JSON ``[open, close, high, low, volume,
deal]``; ``k:<market>:last``), so ViaBTC's tools read them.

Redis down or failing: the flush fails, is counted and logged once per outage, and
the next flush that works rewrites every key from memory (``resync``), so nothing a
failed flush held is lost. The same full rewrite runs first, and whenever Redis no
longer holds the token of the feed's last rewrite (``md:feed:epoch``, read in every
flush's transaction): a Redis restarted or flushed between two flushes. That flush's
``md:feed:seq`` is set only if the token is there (a script in the same
transaction), so the sequence never claims data Redis lost. Memory: nothing is queued for
Redis; what is in memory is the feed's state itself.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any, Final

import msgspec
import redis
from redis.typing import EncodableT, FieldT

from feed.depth import Level, format_levels
from feed.klines import DAY, HOUR, MINUTE, SECOND
from feed.market_data import DEALS_KEPT, MarketData

logger = logging.getLogger(__name__)

SEQ_KEY: Final = "md:feed:seq"
#: A token written with each full rewrite: a Redis that no longer holds it lost data.
EPOCH_KEY: Final = "md:feed:epoch"
#: md:feed:seq is set only if the epoch is still the feed's (in the same MULTI).
_SET_SEQ_IF_OURS: Final = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[2], ARGV[2]) end"
)
SUFFIXES: Final = {SECOND: "1s", MINUTE: "1m", HOUR: "1h", DAY: "1d"}
#: Fields per HSET while rewriting a whole series.
CHUNK: Final = 1000
_json = msgspec.json.Encoder()


def kline_key(market: str, base: int) -> str:
    """``k:<market>:1s`` (``1m``, ``1h``, ``1d``): ViaBTC's kline hashes."""
    return f"k:{market}:{SUFFIXES[base]}"


def last_key(market: str) -> str:
    """``k:<market>:last``: ViaBTC's last price."""
    return f"k:{market}:last"


def deals_key(market: str) -> str:
    """``md:<market>:deals``: a stream of the market's deals, one entry per write:
    field ``deals``, a JSON array of market.deals objects (oldest first); entry id
    ``<n>-0``, n the market's deals so far; trimmed to the newest ~10,000 deals."""
    return f"md:{market}:deals"


def depth_keys(market: str) -> tuple[str, str]:
    """``md:<market>:depth:asks`` and ``md:<market>:depth:bids``: sorted sets of the
    top levels, member ``<price>:<amount>``, score the price in ticks."""
    return f"md:{market}:depth:asks", f"md:{market}:depth:bids"


def ticker_key(market: str) -> str:
    """``md:<market>:ticker``: a hash of the rolling day (market.status_today) and
    the last price."""
    return f"md:{market}:ticker"


def status_key(market: str) -> str:
    """``md:<market>:status``: a hash of the market's trading status (``status``:
    ``open``, ``halted`` or ``delisted``; ``log_seq`` and ``time`` of the change that
    set it, 0 if none). Not ViaBTC's market.status (a price summary)."""
    return f"md:{market}:status"


class RedisOut:
    """Writes ``data`` into Redis through ``client`` (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        data: MarketData,
        depth: Callable[[int], tuple[list[Level], list[Level]]] | None = None,
    ) -> None:
        """Nothing is written until the first ``flush``; ``depth(market)`` gives the
        (asks, bids) levels the depth keys hold."""
        self.client = client
        self.data = data
        data.klines.track = True  # every flush takes what changed and what was dropped
        self.depth = depth
        self.resync = True  #: the next flush rewrites everything
        self._deal_written = [0] * len(data.config.markets)  #: newest deal id written
        #: per market: deals added since the last flush, as market.deals JSON objects
        #: (``add_deal_rows``), oldest first, and the newest one's id
        self._pending: dict[int, tuple[list[bytes], int]] = {}
        self._failing = False
        self._epoch = ""  #: the token of this feed's last rewrite (``md:feed:epoch``)
        self.flushes = 0
        self.failures = 0
        self.resyncs = 0
        self.last_error = ""

    def grow(self) -> None:
        """Follow ``data`` after it grew (a market added at run time): the new
        markets' keys are written from the next flush on."""
        self._deal_written += [0] * (len(self.data.config.markets) - len(self._deal_written))

    def add_deal_rows(self, market: int, rows: list[bytes], newest_id: int) -> None:
        """Deals of ``market`` as the feed formatted them for ZeroMQ (market.deals
        JSON objects, oldest first), for the next flush's stream entry; at most the
        newest ``DEALS_KEPT`` are held, and a flush (working or not) takes them."""
        held, _ = self._pending.get(market, ([], 0))
        held.extend(rows)
        del held[:-DEALS_KEPT]
        self._pending[market] = (held, newest_id)

    def flush(self, seq: int, now: int, depth_changed: set[int] | None = None) -> bool:
        """Write what changed (the markets of ``depth_changed``: their depth), and
        ``seq``; False if Redis failed (retried whole at the next flush)."""
        touched = self.data.klines.take_touched()
        dropped = self.data.klines.take_dropped()
        pending, self._pending = self._pending, {}
        statuses = self.data.take_status_touched()
        try:
            if self.resync:
                self._rewrite(seq, now)
            else:
                self._write_changes(
                    touched, dropped, seq, now, depth_changed or set(), pending, statuses
                )
        except redis.RedisError as exc:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            if not self._failing:
                logger.error("feed: Redis failed (%s); ZeroMQ goes on", self.last_error)
            self._failing = True
            self.resync = True
            return False
        if self._failing:
            logger.warning("feed: Redis answers again; rewritten at seq %d", seq)
        self._failing = False
        self.flushes += 1
        return True

    def _write_changes(
        self,
        touched: set[tuple[int, int, int]],
        dropped: set[tuple[int, int, int]],
        seq: int,
        now: int,
        depth_changed: set[int],
        pending: dict[int, tuple[list[bytes], int]],
        statuses: set[int],
    ) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.get(EPOCH_KEY)  # ours unless Redis lost what we wrote (restarted, flushed)
        markets = sorted({m for m, _, _ in touched})
        for m, base, start in sorted(touched | dropped):
            candle = self.data.klines.series(m, base).bucket(start)
            name = self.data.config.markets[m].name
            if candle is None:  # dropped by retention: Redis keeps what memory keeps
                pipe.hdel(kline_key(name, base), str(start))
            else:
                pipe.hset(kline_key(name, base), str(start), self._value(m, candle))
        for m in sorted(set(markets) | set(pending)):
            self._market_keys(pipe, m, now, pending.get(m))
        for m in sorted(depth_changed):
            self._depth_keys(pipe, m)
        for m in sorted(statuses):
            self._status_key(pipe, m)
        pipe.eval(_SET_SEQ_IF_OURS, 2, EPOCH_KEY, SEQ_KEY, self._epoch, seq)
        held = pipe.execute()[0]
        if held != self._epoch.encode():
            # These changes landed on a Redis that lost the rest: md:feed:seq was not
            # set (the script checked), and the next flush rewrites everything.
            logger.warning("feed: Redis lost its market data (restarted or flushed)")
            self.resync = True

    def _rewrite(self, seq: int, now: int) -> None:
        """Every key from memory, under a new epoch; ``md:feed:seq`` last (gone
        meanwhile)."""
        self.client.delete(SEQ_KEY)
        self._epoch = uuid.uuid4().hex
        for m, market in enumerate(self.data.config.markets):
            pipe = self.client.pipeline(transaction=False)
            keys = [kline_key(market.name, b) for b in SUFFIXES]
            pipe.delete(*keys, last_key(market.name), deals_key(market.name))
            pipe.delete(ticker_key(market.name), status_key(market.name))
            for base in SUFFIXES:
                candles = self.data.klines.series(m, base).candles()
                for k in range(0, len(candles), CHUNK):
                    mapping: dict[FieldT, EncodableT] = {
                        str(c.start): self._value(m, c) for c in candles[k : k + CHUNK]
                    }
                    pipe.hset(kline_key(market.name, base), mapping=mapping)
            self._deal_written[m] = 0
            self._market_keys(pipe, m, now)
            self._depth_keys(pipe, m)
            self._status_key(pipe, m)
            pipe.execute()
        self.client.set(EPOCH_KEY, self._epoch)
        self.client.set(SEQ_KEY, seq)
        self.resync = False
        self.resyncs += 1

    def _market_keys(
        self, pipe: Any, m: int, now: int, pending: tuple[list[bytes], int] | None = None
    ) -> None:
        """Last price, ticker, and a stream entry of the deals since the last write:
        ``pending`` when the feed handed them over, else made from the deal ring."""
        name = self.data.config.markets[m].name
        last = self.data.last(name)
        if last == "0":
            return
        pipe.set(last_key(name), last)
        pipe.hset(ticker_key(name), mapping={**self.data.status_today(name, now), "last": last})
        if pending is not None:
            rows, newest = pending
            entry = b"[" + b",".join(rows) + b"]" if rows else b""
        else:
            fresh = self.data.deals(name, DEALS_KEPT, self._deal_written[m])
            newest = fresh[0]["id"] if fresh else 0
            entry = _json.encode(fresh[::-1]) if fresh else b""
        if entry:
            count = self.data.deal_count(m)
            pipe.xadd(
                deals_key(name), {"deals": entry}, id=f"{count}-0",
                minid=max(0, count - DEALS_KEPT), approximate=False,
            )  # fmt: skip
            self._deal_written[m] = newest

    def _depth_keys(self, pipe: Any, m: int) -> None:
        """``md:<market>:depth:asks`` / ``bids``: the levels, rewritten whole."""
        if self.depth is None:
            return
        cfg = self.data.config.markets[m]
        for key, levels in zip(depth_keys(cfg.name), self.depth(m), strict=True):
            pipe.delete(key)
            if levels:
                texts = format_levels(levels, cfg.money_prec, cfg.stock_prec)
                pipe.zadd(key, {f"{price}:{amount}": p for (price, amount), (p, _) in
                                zip(texts, levels, strict=True)})  # fmt: skip

    def _status_key(self, pipe: Any, m: int) -> None:
        """``md:<market>:status``: the market's trading status (every market has it)."""
        status = self.data.trading_status(m)
        name = self.data.config.markets[m].name
        pipe.hset(status_key(name), mapping={k: str(v) for k, v in status.items()})

    def _value(self, m: int, candle: Any) -> bytes:
        return _json.encode(list(self.data.candle_fields(m, candle)))

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()
