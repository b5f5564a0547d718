"""``matchd feed``: the market-data process (docs/feed.md).

The composition root of the feed: it follows the append log from the sequence its
state covers (``feed.state``; registered as the log consumer ``feed``, so retention
keeps what it has not made durable), turns each batch's deals into market data
(``feed.market_data.MarketData``) and its order events into depth
(``feed.depth.DepthBook``), publishes over ZeroMQ (XPUB: deals at once, and the
order events and balances of the users somebody subscribed to,
``daemon.ws_user_feed``, and each change of a market's trading status; klines and
tickers every ``kline_interval_s``, depth every ``depth_interval_s``), writes Redis
(every ``publish_interval_s``, with the sequence it covers, in one transaction),
answers the market.* methods on a ZeroMQ ROUTER, and writes its state every
``state_interval_s``. An ADD_MARKET in the log (an RT_CATALOG record) grows every
per-market table, so that a market added at run time is published and answered as
any other from then on (its state keeps what was added); a record of a type it does
not know is skipped. It only reads the log: it can fall behind, stop and crash
without slowing trading (DESIGN.md rule 8). Slow subscribers never hold it up: a
message a subscriber has no room for is dropped and counted. Redis down: ZeroMQ goes
on; when Redis answers again it is rewritten whole from memory.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import msgspec
import numpy as np
import redis
import zmq

from core.catalog import CatalogRefused, catalog_payload, decode_catalog
from core.catalog import grown as catalog_grown
from core.config import AssetConfig, EngineConfig, MarketConfig
from core.schema import EventKind, MarketStatus, Side
from daemon.feed_config import FeedConfig, RedisConfig
from daemon.ws_user_feed import UserSubscriptions, UserTopics, log_events
from feed.depth import DepthBook, Level, format_levels
from feed.market_data import MarketData, MarketDataError
from feed.redis_out import RedisOut
from feed.state import StateError, load_newest, save_state, state_files, state_seq
from persistence.consumers import confirm, register_consumer
from persistence.frames import RT_BALANCE, RT_CATALOG, RT_ORDER
from persistence.history_batch import BatchDecoder
from persistence.history_bulk import decimals, integers, seconds
from persistence.history_rows import status_name
from persistence.log_reader import LogReader, RecordRun
from persistence.replay import decode_catalog_record

logger = logging.getLogger("matchd.feed")

CONSUMER: Final = "feed"
BATCH_RECORDS: Final = 4096
#: Klines published on ZeroMQ for every market that traded (the issue's set).
PUBLISHED_INTERVALS: Final = (
    60, 300, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400, 604800, 2592000,
)  # fmt: skip
MAX_REQUEST_BYTES: Final = 64 * 1024
MAX_REQUESTS_PER_STEP: Final = 1000
_METHODS: Final = {
    "market.kline": 4,
    "market.status": 2,
    "market.status_today": 1,
    "market.last": 1,
    "market.deals": 3,
}
_json = msgspec.json.Encoder()
_decode = msgspec.json.Decoder()


class Feed:
    """The feed of one data directory (see the module docstring)."""

    def __init__(
        self,
        engine: EngineConfig,
        config: FeedConfig,
        redis: RedisConfig | None,
        data_dir: Path,
        *,
        log_dir: Path,
        clock: Callable[[], float] = time.time,
        context: zmq.Context[Any] | None = None,
        batch_records: int = BATCH_RECORDS,
    ) -> None:
        """Load the newest state, bind the sockets; nothing is read yet."""
        self.engine = engine
        self.config = config
        self.log_dir = log_dir
        self.state_dir = data_dir / "feed"
        self._clock = clock
        self.batch_records = batch_records
        self.markets = [m.name for m in engine.markets]
        # The per-market tables (ADD_MARKET grows them: ``_grow``).
        self.data = MarketData(engine, utc_offset_s=config.utc_offset_s)
        self.depth = DepthBook(len(self.markets))
        self.redis = (
            RedisOut(redis_client(redis), self.data, self._depth_view)
            if redis is not None
            else None
        )
        self._user_topics = UserTopics(engine)
        self._depth_touched: set[int] = set(range(len(self.markets)))
        #: per market: (merge interval as configured, in ticks of the market's prices)
        self._merges = [merge_ticks(config.depth_merge, m.money_prec) for m in engine.markets]
        #: the RT_CATALOG commands applied so far (``catalog_payload``), in log order:
        #: the state keeps them, so that it loads with the markets they added
        self.catalog: list[bytes] = []
        loaded = load_newest(self.state_dir, self.markets)
        self.position = 0
        if loaded is not None:
            self.position, arrays = loaded
            self._restore_catalog(arrays)
            self.data.load_arrays(arrays)
            self.depth = load_depth(arrays, len(self.markets))
            logger.info("feed: state at seq %d loaded", self.position)
        register_consumer(log_dir, CONSUMER, confirmed_seq=self._oldest_state_seq())
        self._reader = LogReader(log_dir)
        self._decoder = BatchDecoder()
        self._context = context or zmq.Context.instance()
        self.pub = self._context.socket(zmq.XPUB)
        self.pub.setsockopt(zmq.SNDHWM, config.send_hwm)
        self.pub.setsockopt(zmq.XPUB_NODROP, 1)  # a full subscriber: EAGAIN, counted
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind(config.pub)
        self.rpc = self._context.socket(zmq.ROUTER)
        self.rpc.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        self.rpc.setsockopt(zmq.LINGER, 0)
        self.rpc.bind(config.rpc)
        self.epoch_ns = time.time_ns()  #: topic sequences restart with the process
        self.users = UserSubscriptions()  #: the users whose topics are subscribed to
        self._topic_seq: dict[bytes, int] = {}
        self._touched_markets: set[int] = set()
        #: per market: the (asks, bids) top levels last published, as price -> lots
        self._depth_sent: dict[tuple[int, str], tuple[dict[int, int], dict[int, int]]] = {}
        self._next_snapshot = 0.0
        self._next_depth = 0.0
        self._next_kline = 0.0
        self._rejected = 0
        self._status_rejected = 0
        now = clock()
        self._next_publish = now
        self._next_state = now + config.state_interval_s
        self.dropped = 0  #: messages a subscriber had no room for
        self.published = 0
        self.saved_seq = self.position

    # ------------------------------------------------------------------ loop

    def run(self, should_stop: Callable[[], bool], idle_s: float = 0.002) -> None:
        """Follow the log until ``should_stop()``; write the state at the end."""
        try:
            while not should_stop():
                if not self.step():
                    time.sleep(idle_s)
            self.save()
        finally:
            self.close()

    def step(self) -> int:
        """Apply the next batch of records, answer waiting requests, publish and save
        when due; returns the records applied (0: caught up)."""
        self._subscriptions()  # before the batch: a user who just subscribed gets it
        applied = self._apply_batch()
        self._serve()
        now = self._clock()
        if now >= self._next_publish:
            self._next_publish = now + self.config.publish_interval_s
            self.publish(int(now))
        if now >= self._next_state:
            self._next_state = now + self.config.state_interval_s
            self.save()
        return applied

    def _apply_batch(self) -> int:
        runs = self._reader.read_runs(self.position + 1, limit=self.batch_records)
        if not runs:
            return 0
        decodable = decodable_runs(runs)
        if not decodable:  # the next record is of a type the batch decoder does not take
            self._apply_record(runs[0].first_seq, int(runs[0].types[0]), runs[0].payload(0))
            self.position = runs[0].first_seq
            return 1
        batch = self._decoder.decode_runs(decodable)
        events = batch.events
        if self.depth.apply(events):
            orders = events["kind"] <= EventKind.ORDER_FINISH
            self._depth_touched.update(np.unique(events["market"][orders]).tolist())
        deals = events[events["kind"] == EventKind.DEAL]
        if deals.shape[0]:
            self.data.add_events(deals)
            self._publish_deals(deals, batch.last_seq)
        if (events["kind"] == EventKind.MARKET_STATUS).any():
            self._publish_statuses(self.data.add_status_events(events))
        if self.users.any:
            mine = log_events(events, batch.balances)
            for message in self._user_topics.messages(mine, batch.last_seq, self.users):
                self._send(message.topic, message.body, message.raw)
        self.position = batch.last_seq
        return batch.last_seq - batch.first_seq + 1

    # ------------------------------------------------------------------ the catalog

    def _apply_record(self, seq: int, rtype: int, payload: bytes) -> None:
        """A record that is not an order's or a balance.update's: an ADD_ASSET or
        ADD_MARKET (RT_CATALOG) grows the catalog; any other type is skipped."""
        if rtype != RT_CATALOG:
            logger.warning("feed: seq %d: record type %d skipped (not market data)", seq, rtype)
            return
        try:
            _, raw = decode_catalog_record(payload)
        except ValueError as exc:
            logger.error("feed: seq %d: a catalog record that does not decode (%s)", seq, exc)
            return
        self._add_catalog(raw, f"seq {seq}")

    def _add_catalog(self, raw: AssetConfig | MarketConfig, where: str) -> None:
        """Grow the catalog by ``raw`` (checked as the engine checked it: the catalog
        the feed holds is the engine's) and every per-market table with it."""
        try:
            grown = catalog_grown(self.engine, raw)
        except CatalogRefused as exc:
            logger.error(
                "feed: %s: %s %r not added (%s): the feed's config does not match the log",
                where, type(raw).__name__, raw.name, exc.message,
            )  # fmt: skip
            return
        self.catalog.append(catalog_payload(raw))
        self._grow(grown)

    def _grow(self, config: EngineConfig) -> None:
        """Take ``config``, the catalog with entries added at its end: a new market gets
        its market data, depth, merge intervals and topics (its depth is published,
        empty, at the next depth tick; Redis gets its status at the next flush)."""
        added = range(len(self.markets), len(config.markets))
        self.engine = config
        self.markets += [config.markets[m].name for m in added]
        self.data.grow(config)
        self.depth.grow(len(self.markets))
        self._merges += [
            merge_ticks(self.config.depth_merge, config.markets[m].money_prec) for m in added
        ]
        self._depth_touched.update(added)
        self._user_topics = UserTopics(config)
        if self.redis is not None:
            self.redis.grow()
        for m in added:
            logger.info("feed: market %s added (index %d)", config.markets[m].name, m)

    def _restore_catalog(self, arrays: dict[str, np.ndarray]) -> None:
        """Re-add what a loaded state's catalog holds (``catalog``: the commands' JSON,
        absent from states written before); ``StateError`` unless the markets are
        then those the state was made for."""
        for text in arrays.pop("catalog", np.zeros(0, dtype=np.str_)).tolist():
            try:
                raw = decode_catalog(str(text).encode())
            except ValueError as exc:
                raise StateError(f"feed state: a catalog entry does not decode: {exc}") from None
            self._add_catalog(raw, "feed state")
        names = [str(x) for x in arrays.pop("markets").tolist()]
        if names != self.markets[: len(names)]:
            raise StateError(
                f"feed state: made for the markets {names}, the catalog has {self.markets}: "
                "remove the feed state to rebuild it from the log"
            )

    # ------------------------------------------------------------------ ZeroMQ

    def _send(self, topic: bytes, body: dict[str, Any], raw: bytes = b"") -> None:
        """Publish ``body`` (with ``epoch`` and the topic's ``seq``); ``raw`` is JSON
        text appended as the last member (made without dicts, for the deals)."""
        seq = self._topic_seq.get(topic, 0) + 1
        self._topic_seq[topic] = seq
        body["epoch"] = self.epoch_ns
        body["seq"] = seq
        payload = _json.encode(body)
        if raw:
            payload = payload[:-1] + b"," + raw + b"}"
        try:
            self.pub.send_multipart([topic, payload], flags=zmq.NOBLOCK)
            self.published += 1
        except zmq.Again:
            self.dropped += 1

    def _publish_deals(self, deals: np.ndarray, log_seq: int) -> None:
        market = deals["market"].astype(np.int64)
        for m in np.unique(market).tolist():
            self._touched_markets.add(m)
            cfg = self.engine.markets[m]
            mine = deals[market == m]
            rows = deal_rows(mine, cfg.money_prec, cfg.stock_prec)
            if self.redis is not None:
                self.redis.add_deal_rows(m, rows, int(mine["deal_id"][-1]))
            self._send(
                b"deals." + cfg.name.encode(),
                {"market": cfg.name, "log_seq": log_seq},
                b'"deals":[' + b",".join(rows) + b"]",
            )

    def _publish_statuses(self, statuses: np.ndarray) -> None:
        """``status.<market>``: each change of a market's trading status, at once, in
        log order (``log_seq`` is the change's own)."""
        for e in statuses:
            m = int(e["market"])
            name = self.markets[m]
            self._send(
                b"status." + name.encode(),
                {"market": name, "log_seq": int(e["seq"]),
                 "status": MarketStatus(int(e["reason"])).name.lower(),
                 "previous": status_name(MarketStatus, int(e["amount"])),
                 "time": int(e["ts_ns"]) / 1e9},
            )  # fmt: skip
        if self.data.status_rejected > self._status_rejected:
            logger.error(
                "feed: %d market status events named no market or no status: the "
                "feed's config does not match the log",
                self.data.status_rejected - self._status_rejected,
            )
            self._status_rejected = self.data.status_rejected

    def publish(self, now: int) -> None:
        """Every ``kline_interval_s``: klines and tickers of the markets that traded
        since; every ``depth_interval_s``: depth; Redis (every call)."""
        if self._clock() >= self._next_kline:
            self._next_kline = self._clock() + self.config.kline_interval_s
            self._publish_klines(now)
        depth_changed: set[int] = set()
        if self._clock() >= self._next_depth:
            self._next_depth = self._clock() + self.config.depth_interval_s
            depth_changed = self._publish_depth()
        if self.redis is not None:
            self.redis.flush(self.position, now, depth_changed)

    def _publish_klines(self, now: int) -> None:
        touched, self._touched_markets = self._touched_markets, set()
        for m in sorted(touched):
            name = self.markets[m]
            newest = self.data.klines.newest_s
            for interval in PUBLISHED_INTERVALS:
                rows = self.data.kline(name, newest, newest, interval, now=max(now, newest))
                if rows:
                    self._send(
                        f"kline.{interval}.{name}".encode(),
                        {"market": name, "interval": interval, "log_seq": self.position,
                         "kline": rows[-1]},
                    )  # fmt: skip
            ticker = self.data.status_today(name, now)
            ticker["last"] = self.data.last(name)
            self._send(
                b"ticker." + name.encode(),
                {"market": name, "log_seq": self.position, "ticker": ticker},
            )

    def _publish_depth(self) -> set[int]:
        """``depth.<market>`` (and ``depth.<market>.<interval>`` for each merge interval
        of ``depth_merge`` but "0"): the top ``depth_levels`` of each side, in full
        every ``depth_snapshot_s`` (and first), else the levels that changed since the
        last message ("0": gone from the view), for the markets whose book changed;
        returns the markets whose unmerged view changed (Redis holds that one)."""
        now = self._clock()
        full = now >= self._next_snapshot
        if full:
            self._next_snapshot = now + self.config.depth_snapshot_s
            touched = set(range(len(self.markets)))
        else:
            touched = self._depth_touched & set(range(len(self.markets)))
        self._depth_touched = set()
        self._check_depth()
        changed = set()
        for m in sorted(touched):
            for text, ticks in self._merges[m]:
                if self._publish_view(m, text, ticks, full) and text == "0":
                    changed.add(m)
        return changed

    def _publish_view(self, m: int, text: str, ticks: int, full: bool) -> bool:
        """Publish market ``m``'s depth merged to ``ticks`` (named ``text``) if it
        changed (or in full); True if a message went out."""
        asks, bids = self.depth.depth(m, self.config.depth_levels, ticks)
        now_sides = (dict(asks), dict(bids))
        sent = self._depth_sent.get((m, text))
        self._depth_sent[(m, text)] = now_sides
        if full or sent is None:
            diff = (asks, bids)
        else:
            diff = (
                _level_diff(sent[0], now_sides[0], Side.ASK),
                _level_diff(sent[1], now_sides[1], Side.BID),
            )
            if not diff[0] and not diff[1]:
                return False
        cfg = self.engine.markets[m]
        topic = b"depth." + cfg.name.encode() + (b"" if text == "0" else b"." + text.encode())
        self._send(
            topic,
            {"market": cfg.name, "interval": text, "log_seq": self.position,
             "full": full or sent is None,
             "asks": format_levels(diff[0], cfg.money_prec, cfg.stock_prec),
             "bids": format_levels(diff[1], cfg.money_prec, cfg.stock_prec)},
        )  # fmt: skip
        return True

    def _depth_view(self, market: int) -> tuple[list[Level], list[Level]]:
        return self.depth.depth(market, self.config.depth_levels, 0)

    def _check_depth(self) -> None:
        rejected = self.depth.statistics().rejected
        if rejected > self._rejected:
            logger.error(
                "feed: %d order events did not fit the depth book (%s): the feed's state "
                "does not match the log; remove DATA_DIR/feed to rebuild it",
                rejected - self._rejected, self.depth.statistics(),
            )  # fmt: skip
            self._rejected = rejected

    def _subscriptions(self) -> None:
        """Read the (un)subscriptions XPUB hands up (so they never pile up) and note
        which user topics are wanted (``daemon.ws_user_feed``)."""
        while True:
            try:
                self.users.update(self.pub.recv(flags=zmq.NOBLOCK))
            except zmq.Again:
                return

    # ------------------------------------------------------------------ market.*

    def _serve(self) -> None:
        """Answer the waiting requests, at most ``MAX_REQUESTS_PER_STEP`` (the log is
        not starved by a flood of them)."""
        for _ in range(MAX_REQUESTS_PER_STEP):
            try:
                frames = self.rpc.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            envelope, body = frames[:-1], frames[-1]
            self.rpc.send_multipart([*envelope, self.answer(body)])

    def answer(self, body: bytes) -> bytes:
        """The JSON reply to one JSON-RPC request ``{"method", "params", "id"}``."""
        try:
            request = _decode.decode(body)
        except (msgspec.DecodeError, RecursionError):  # not JSON, or nested too deep
            return _reply(None, 1, "invalid argument: the request is not JSON")
        if not isinstance(request, dict):
            return _reply(None, 1, "invalid argument: the request must be an object")
        rid = request.get("id")
        method, params = request.get("method"), request.get("params")
        if not isinstance(method, str) or not isinstance(params, list):
            return _reply(rid, 1, "invalid argument: method must be a string, params a list")
        arity = _METHODS.get(method)
        if arity is None:
            return _reply(rid, 4, "method not found")
        if len(params) != arity:
            return _reply(rid, 1, f"invalid argument: {method} takes {arity} params")
        now = int(self._clock())
        try:
            result = self._call(method, params, now)
        except MarketDataError as exc:
            return _reply(rid, exc.code, exc.message)
        except Exception:  # a bug must not take the feed down with one request
            logger.exception("feed: %s failed on params %.200r", method, params)
            return _reply(rid, 2, "internal error")
        try:
            return _json.encode({"error": None, "result": result, "id": rid})
        except (TypeError, msgspec.EncodeError):  # an id msgspec cannot write back
            return _reply(None, 1, "invalid argument: the id cannot be echoed")

    def _call(self, method: str, params: list[Any], now: int) -> Any:
        d = self.data
        if method == "market.kline":
            return d.kline(params[0], params[1], params[2], params[3], now=now)
        if method == "market.status":
            return d.status(params[0], params[1], now)
        if method == "market.status_today":
            return d.status_today(params[0], now)
        if method == "market.last":
            return d.last(params[0])
        return d.deals(params[0], params[1], params[2])

    # ------------------------------------------------------------------ state

    def save(self) -> None:
        """Write the state at the current position; let retention prune what the
        oldest state kept no longer needs."""
        if self.position == self.saved_seq and state_files(self.state_dir):
            return
        arrays = self.data.to_arrays()
        arrays.update({f"depth.{k}": v for k, v in self.depth.to_arrays().items()})
        arrays["catalog"] = np.array([c.decode() for c in self.catalog], dtype=np.str_)
        save_state(self.state_dir, self.position, self.markets, arrays)
        self.saved_seq = self.position
        confirm(self.log_dir, CONSUMER, self._oldest_state_seq())

    def _oldest_state_seq(self) -> int:
        files = state_files(self.state_dir)
        return state_seq(files[0]) if files else 0

    def close(self) -> None:
        """Close the sockets, the log reader and Redis."""
        self._reader.close()
        self.pub.close(0)
        self.rpc.close(0)
        if self.redis is not None:
            self.redis.close()


def deal_rows(deals: np.ndarray, money_prec: int, stock_prec: int) -> list[bytes]:
    """``DEAL`` events of one market as the JSON objects of market.deals (``id``,
    ``time``, ``price``, ``amount``, ``type``), made a batch at a time."""
    n = deals.shape[0]
    text = decimals(
        np.concatenate([deals["price"], deals["amount"]]),
        np.concatenate([np.full(n, money_prec), np.full(n, stock_prec)]),
    )
    kinds = [b"sell" if s == Side.ASK else b"buy" for s in deals["side"].tolist()]
    return [
        b'{"id":%s,"time":%s,"price":"%s","amount":"%s","type":"%s"}' % row
        for row in zip(
            integers(deals["deal_id"]),
            seconds(deals["ts_ns"]),
            text[:n],
            text[n:],
            kinds,
            strict=True,
        )
    ]


def decodable_runs(runs: list[RecordRun]) -> list[RecordRun]:
    """The records of ``runs`` before the first one the batch decoder does not take
    (an RT_CATALOG, or a type this build does not know), as runs."""
    out = []
    for run in runs:
        other = np.flatnonzero((run.types != RT_ORDER) & (run.types != RT_BALANCE))
        if not other.shape[0]:
            out.append(run)
            continue
        k = int(other[0])
        if k:
            out.append(
                RecordRun(run.first_seq, run.data, run.starts[:k], run.lengths[:k], run.types[:k])
            )
        break
    return out


def merge_ticks(intervals: tuple[str, ...], money_prec: int) -> list[tuple[str, int]]:
    """``depth_merge`` in a market's price ticks, truncated to its ``money_prec`` as
    ViaBTC does (an interval finer than a tick merges nothing: 0 ticks)."""
    return [(text, int(Decimal(text).scaleb(money_prec))) for text in intervals]


def _level_diff(old: dict[int, int], new: dict[int, int], side: int) -> list[Level]:
    """The levels of ``new`` that differ from ``old`` and those gone (0), best first."""
    changed = [(p, q) for p, q in new.items() if old.get(p) != q]
    changed += [(p, 0) for p in old if p not in new]
    changed.sort(reverse=side == Side.BID)
    return changed


def load_depth(arrays: dict[str, np.ndarray], markets: int) -> DepthBook:
    """The depth book of a loaded state (its ``depth.`` arrays), grown to ``markets``."""
    mine = {k[len("depth.") :]: v for k, v in arrays.items() if k.startswith("depth.")}
    book = DepthBook.from_arrays(mine)
    if book.n_markets == markets:
        return book
    return DepthBook.from_arrays({**mine, "n_markets": np.array(markets, dtype=np.int64)})


def redis_client(config: RedisConfig) -> redis.Redis:
    """A client of the ``[redis]`` server (connects on first use)."""
    return redis.Redis(
        host=config.host, port=config.port, db=config.db,
        password=config.password.reveal() or None, socket_timeout=config.timeout_s,
        socket_connect_timeout=config.timeout_s,
    )  # fmt: skip


def _reply(rid: object, code: int, message: str) -> bytes:
    return _json.encode({"error": {"code": code, "message": message}, "result": None, "id": rid})


# ------------------------------------------------------------------ the command


def add_feed_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``matchd feed --config PATH --data-dir DIR``."""
    feed = commands.add_parser("feed", help="publish market data ([feed] in the config)")
    feed.add_argument("--config", type=Path, required=True, metavar="PATH", help="TOML config")
    feed.add_argument(
        "--data-dir", type=Path, default=Path("var/matchd"), metavar="DIR",
        help="the server's data directory, whose log it reads (default var/matchd)",
    )  # fmt: skip
    feed.add_argument(
        "--nice", type=int, default=0, metavar="N",
        help="lower its CPU priority by N (0..19; default 0)",
    )  # fmt: skip


def feed_argv(config: Path, data_dir: Path) -> list[str]:
    """The command line of the feed child."""
    return [
        sys.executable, "-m", "daemon.cli", "feed", "--config", str(config),
        "--data-dir", str(data_dir),
    ]  # fmt: skip


def run_feed(args: argparse.Namespace) -> int:
    """Run the feed until SIGTERM or SIGINT; the exit code."""
    from core.config import parse_config
    from core.errors import ConfigError
    from daemon.feed_config import load_feed_config
    from daemon.stopping import stop_on_signals, wait_for_directory
    from persistence.journal import LOG_DIR

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        text = args.config.read_text()
        engine = parse_config(text)
        config, redis = load_feed_config(text)
    except (OSError, ConfigError) as exc:
        print(f"matchd: {exc}", file=sys.stderr)
        return 2
    if config is None:
        print(f"matchd: {args.config} has no [feed] table", file=sys.stderr)
        return 2
    if not 0 <= args.nice <= 19:
        print(f"matchd: --nice must be 0..19; got {args.nice}", file=sys.stderr)
        return 2
    if args.nice:
        os.nice(args.nice)
    from daemon.alerting import start_alerts

    start_alerts(text, "matchd-feed")
    should_stop = stop_on_signals()
    log_dir = args.data_dir / LOG_DIR
    if not wait_for_directory(log_dir, should_stop):  # the server creates it
        return 0
    feed = Feed(engine, config, redis, args.data_dir, log_dir=log_dir)
    print(f"matchd: feed of {log_dir} on {config.pub}, market.* on {config.rpc}", flush=True)
    feed.run(should_stop)
    print("matchd: feed stopped", flush=True)
    return 0
