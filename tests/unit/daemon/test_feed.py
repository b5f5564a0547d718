"""The feed (daemon/feed.py) over a real journal, with a real Redis (db 15, emptied
by each test) and ZeroMQ over ipc://: its market data equals one built from scratch
from the whole log, after restarts from older states (no gap, no deal twice), after
Redis is flushed or unreachable; every deal reaches ZeroMQ once with contiguous topic
sequences; the market.* methods answer over the ROUTER socket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import zmq

from core.engine import Engine
from core.fixed import format_units
from daemon.feed import CONSUMER, Feed
from daemon.feed_config import FeedConfig, RedisConfig
from feed.market_data import MarketData
from feed.redis_out import SEQ_KEY, deals_key, depth_keys, kline_key, last_key
from feed.state import state_files, state_seq
from persistence.consumers import consumer_positions
from persistence.history_batch import BatchDecoder
from persistence.journal import LOG_DIR
from persistence.log_reader import LogReader
from tests.unit.daemon.conftest import REDIS_DB
from tests.unit.persistence.test_drainer import write_log

pytestmark = pytest.mark.integration

NOW = 1_700_000_100  # after every deal of write_log


class Clock:
    """Moves 0.05 s a reading, from ``NOW``: every step publishes."""

    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        self.now += 0.05
        return self.now


def make_feed(
    tmp_path: Path,
    engine: Engine,
    *,
    redis_db: int | None = REDIS_DB,
    merge: tuple[str, ...] = ("0",),
    **kw: Any,
) -> Feed:
    """A feed whose state is written only when asked (``save``) and whose depth is in
    full only first."""
    config = FeedConfig(
        pub=f"ipc://{tmp_path}/pub.sock", rpc=f"ipc://{tmp_path}/rpc.sock",
        state_interval_s=3600, depth_snapshot_s=3600, depth_merge=merge,
    )  # fmt: skip
    rc = RedisConfig(db=redis_db) if redis_db is not None else None
    data = tmp_path / "data"
    return Feed(engine.config, config, rc, data, log_dir=data / LOG_DIR, clock=Clock(), **kw)


def from_scratch(tmp_path: Path, engine: Engine) -> MarketData:
    """Market data of the whole log, built directly."""
    md = MarketData(engine.config)
    with LogReader(tmp_path / "data" / LOG_DIR) as reader:
        md.add_events(BatchDecoder().decode(list(reader.read(1))).events)
    return md


def assert_same(a: MarketData, b: MarketData) -> None:
    x, y = a.to_arrays(), b.to_arrays()
    assert x.keys() == y.keys()
    for key in x:
        assert np.array_equal(x[key], y[key]), key


def drain(feed: Feed) -> None:
    while feed.step():
        pass
    feed.publish(NOW)


def test_feed_equals_a_rebuild_and_writes_redis(tmp_path: Path, rdb: redis.Redis) -> None:
    engine = write_log(tmp_path / "data", 1500)
    feed = make_feed(tmp_path, engine, batch_records=50)
    try:
        drain(feed)
        want = from_scratch(tmp_path, engine)
        assert_same(feed.data, want)
        assert feed.position == engine.counters()[0]
        assert int(rdb.get(SEQ_KEY) or 0) == feed.position
        for m, market in enumerate(engine.config.markets):
            minutes = rdb.hgetall(kline_key(market.name, 60))
            series = want.klines.series(m, 60).candles()
            assert len(minutes) == len(series) > 0
            for c in series:
                assert json.loads(minutes[str(c.start).encode()]) == list(want.candle_fields(m, c))
            assert rdb.get(last_key(market.name)) == want.last(market.name).encode()
            stream = rdb.xrange(deals_key(market.name))
            ring = want.deals(market.name, 10_000, 0)
            written = [d for _, entry in stream for d in json.loads(entry[b"deals"])]
            assert written == ring[::-1]
            assert stream[-1][0] == f"{want.deal_count(m)}-0".encode()
            # Depth: the engine's, in memory and (top levels) in Redis.
            asks, bids = engine.depth(m, 10_000, 0)
            assert feed.depth.depth(m, 10_000, 0) == (asks, bids)
            assert asks or bids  # the book is not empty
            for key, levels in zip(depth_keys(market.name), (asks, bids), strict=True):
                members = [x.decode() for x in rdb.zrange(key, 0, -1)]
                want_members = [
                    f"{format_units(p, market.money_prec)}:{format_units(q, market.stock_prec)}"
                    for p, q in sorted(levels[:100])
                ]
                assert members == want_members
    finally:
        feed.close()


def test_a_restart_from_an_older_state_counts_nothing_twice(
    tmp_path: Path, rdb: redis.Redis
) -> None:
    engine = write_log(tmp_path / "data", 1500)
    first = make_feed(tmp_path, engine, batch_records=40)
    try:
        for _ in range(5):
            first.step()
        first.save()  # the state at some position...
        saved = first.position
        for _ in range(5):
            first.step()  # ...then more, never saved: lost in the "crash"
        assert first.position > saved
    finally:
        first.close()
    assert [state_seq(p) for p in state_files(tmp_path / "data" / "feed")] == [saved]
    assert consumer_positions(tmp_path / "data" / LOG_DIR)[CONSUMER] == saved
    second = make_feed(tmp_path, engine, batch_records=40)
    try:
        assert second.position == saved
        drain(second)
        assert_same(second.data, from_scratch(tmp_path, engine))
        for m in range(len(engine.config.markets)):
            assert second.depth.depth(m, 10_000, 0) == engine.depth(m, 10_000, 0)
        assert int(rdb.get(SEQ_KEY) or 0) == second.position
    finally:
        second.close()


def test_redis_flushed_or_unreachable_is_rewritten_whole(tmp_path: Path, rdb: redis.Redis) -> None:
    engine = write_log(tmp_path / "data", 1500)
    feed = make_feed(tmp_path, engine, batch_records=60)
    try:
        feed.step()
        feed.publish(NOW)
        good = feed.redis
        assert good is not None
        # Unreachable: flushes fail and are counted; the feed goes on.
        dead = redis.Redis(host="127.0.0.1", port=1, db=REDIS_DB, socket_connect_timeout=0.5)
        good_client, good.client = good.client, dead
        for _ in range(3):
            feed.step()
            feed.publish(NOW)
        assert good.failures >= 3  # every write while unreachable
        assert good.resync
        # Back, after someone flushed it: everything is written again.
        rdb.flushdb()
        good.client = good_client
        drain(feed)
        want = from_scratch(tmp_path, engine)
        name = engine.config.markets[0].name
        assert len(rdb.hgetall(kline_key(name, 1))) == len(want.klines.series(0, 1))
        assert int(rdb.get(SEQ_KEY) or 0) == feed.position == engine.counters()[0]
    finally:
        feed.close()


def test_every_deal_reaches_zeromq_once_in_sequence(tmp_path: Path, rdb: redis.Redis) -> None:
    engine = write_log(tmp_path / "data", 1500)
    feed = make_feed(tmp_path, engine, batch_records=30, merge=("0", "1"))
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(feed.config.pub)
    try:
        while not feed.pub.poll(10):  # the subscription has reached the publisher
            sub.poll(10)
        drain(feed)
        seen: dict[bytes, list[int]] = {}
        ids = []
        books: dict[tuple[str, str], tuple[dict[str, str], dict[str, str]]] = {}
        while sub.poll(200):
            topic, body = sub.recv_multipart()
            msg = json.loads(body)
            seen.setdefault(topic, []).append(msg["seq"])
            if topic.startswith(b"deals."):
                ids += [d["id"] for d in msg["deals"]]
            if topic.startswith(b"depth."):
                view = (msg["market"], msg["interval"])
                if msg["full"]:
                    books[view] = ({}, {})
                for side, levels in zip(books[view], (msg["asks"], msg["bids"]), strict=True):
                    for price, amount in levels:
                        if amount == "0":
                            del side[price]
                        else:
                            side[price] = amount
        for topic, seqs in seen.items():
            assert seqs == list(range(1, len(seqs) + 1)), topic
        want = from_scratch(tmp_path, engine)
        all_ids = sorted(
            d["id"] for m in engine.config.markets for d in want.deals(m.name, 10_000, 0)
        )
        assert sorted(ids) == all_ids
        assert len(ids) > 50
        for m, market in enumerate(engine.config.markets):  # snapshot + diffs = the book
            for interval, ticks in (("0", 0), ("1", 10**market.money_prec)):
                asks, bids = engine.depth(m, 100, ticks)
                assert books[(market.name, interval)] == tuple(
                    {format_units(p, market.money_prec): format_units(q, market.stock_prec)
                     for p, q in side}
                    for side in (asks, bids)
                )  # fmt: skip
        depth_topics = sorted(t for t in seen if t.startswith(b"depth."))
        assert depth_topics == [
            b"depth.BTC_USDT", b"depth.BTC_USDT.1", b"depth.ETH_USDT", b"depth.ETH_USDT.1",
        ]  # fmt: skip
        assert any(t.startswith(b"kline.60.") for t in seen)
        assert any(t.startswith(b"ticker.") for t in seen)
        assert feed.dropped == 0
    finally:
        sub.close(0)
        feed.close()


def test_the_market_methods_answer_over_zeromq(tmp_path: Path) -> None:
    engine = write_log(tmp_path / "data", 600)
    feed = make_feed(tmp_path, engine, redis_db=None)
    client = zmq.Context.instance().socket(zmq.DEALER)
    client.connect(feed.config.rpc)
    name = engine.config.markets[0].name

    def call(body: bytes) -> Any:
        client.send(body)
        for _ in range(200):
            feed.step()
            if client.poll(5):
                return json.loads(client.recv())
        raise AssertionError("no answer")

    try:
        drain(feed)
        got = call(json.dumps({"method": "market.last", "params": [name], "id": 7}).encode())
        assert got == {"error": None, "result": feed.data.last(name), "id": 7}
        req = {"method": "market.deals", "params": [name, 3, 0], "id": "x"}
        assert call(json.dumps(req).encode())["result"] == feed.data.deals(name, 3, 0)
        req = {"method": "market.kline", "params": [name, NOW - 7200, NOW, 60], "id": 1}
        rows = call(json.dumps(req).encode())["result"]
        assert rows
        assert rows == feed.data.kline(name, NOW - 7200, NOW, 60, now=NOW)
        assert call(b'{"method": "market.nope", "params": [], "id": 2}')["error"] == {
            "code": 4, "message": "method not found",
        }  # fmt: skip
        assert call(b"{not json")["error"]["code"] == 1
        bad = call(b'{"method": "market.status", "params": ["X"], "id": 3}')
        assert bad["error"] == {
            "code": 1,
            "message": "invalid argument: market.status takes 2 params",
        }
        bad = call(json.dumps({"method": "market.status", "params": [name, 0], "id": 4}).encode())
        assert bad["error"]["message"] == "invalid argument: period must be in 1..604800"
        for hostile in (
            b"[]", b'"x"', b'{"method": 5, "params": [], "id": 1}',
            b'{"method": "market.deals", "params": [{"a": [1]}, null, true], "id": [1]}',
            b"[" * 5000 + b"]" * 5000,
        ):  # fmt: skip
            assert call(hostile)["error"]["code"] == 1, hostile[:40]
        bad = call(b'{"method": "market.deals", "params": ["X", 1, 0], "id": {"k": [1, 2]}}')
        assert bad["id"] == {"k": [1, 2]}  # any id is echoed
    finally:
        client.close(0)
        feed.close()


def test_a_subscriber_that_does_not_read_is_dropped_and_counted(tmp_path: Path) -> None:
    """XPUB_NODROP with a small high-water mark: sends to a full subscriber fail at
    once and are counted; the feed goes on to the end of the log."""
    engine = write_log(tmp_path / "data", 1500)
    config = FeedConfig(
        pub=f"ipc://{tmp_path}/pub.sock", rpc=f"ipc://{tmp_path}/rpc.sock", send_hwm=5,
        kline_interval_s=0.01,  # klines at every step: many messages
    )  # fmt: skip
    data = tmp_path / "data"
    feed = Feed(engine.config, config, None, data, log_dir=data / LOG_DIR, clock=Clock(),
                batch_records=5)  # fmt: skip
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 5)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(config.pub)
    try:
        while not feed.pub.poll(10):
            sub.poll(10)
        drain(feed)  # the subscriber reads nothing
        assert feed.position == engine.counters()[0]
        assert feed.dropped > 100, (feed.dropped, feed.published)
        assert feed.published > 0
    finally:
        sub.close(0)
        feed.close()


def test_redis_emptied_between_two_writes_is_noticed_and_rewritten(
    tmp_path: Path, rdb: redis.Redis
) -> None:
    """No write fails, yet Redis lost everything (restarted between two writes): the
    next write sees the epoch gone, does not claim its sequence, and the one after
    rewrites every key."""
    engine = write_log(tmp_path / "data", 1500)
    feed = make_feed(tmp_path, engine, batch_records=60)
    try:
        feed.step()
        feed.publish(NOW)
        out = feed.redis
        assert out is not None
        assert out.resyncs == 1
        rdb.flushdb()  # gone, with no error seen
        assert out.flush(feed.position, NOW)  # the write worked...
        assert out.resync  # ...and noticed
        assert rdb.get(SEQ_KEY) is None  # and not claimed
        drain(feed)
        assert out.resyncs == 2
        assert out.failures == 0
        want = from_scratch(tmp_path, engine)
        for m, market in enumerate(engine.config.markets):
            assert len(rdb.hgetall(kline_key(market.name, 1))) == len(want.klines.series(m, 1))
        assert int(rdb.get(SEQ_KEY) or 0) == feed.position == engine.counters()[0]
    finally:
        feed.close()


def test_redis_keeps_only_the_buckets_memory_keeps(rdb: redis.Redis) -> None:
    """Buckets dropped by retention are deleted from Redis too: its 1 s hash stays as
    small as the series in memory however long the market trades."""
    from core.schema import EVENT_DTYPE, EventKind
    from feed.klines import Retention
    from feed.redis_out import RedisOut
    from tests.support.world import Limits, stream_config

    config = stream_config(Limits())
    data = MarketData(config, retention=Retention(sec_max=30, min_max=2, hour_max=1))
    out = RedisOut(redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB), data)
    name = config.markets[0].name
    deal_id = 0
    for second in range(0, 600, 5):
        events = np.zeros(5, dtype=EVENT_DTYPE)
        events["kind"] = EventKind.DEAL
        events["deal_id"] = np.arange(deal_id + 1, deal_id + 6)
        deal_id += 5
        events["ts_ns"] = (NOW + second + np.arange(5)) * 10**9
        events["price"] = 100
        events["amount"] = 1
        data.add_events(events)
        assert out.flush(second, NOW + second)
        assert rdb.hlen(kline_key(name, 1)) == len(data.klines.series(0, 1)) <= 31
        assert rdb.hlen(kline_key(name, 60)) == len(data.klines.series(0, 60)) <= 3
    assert out.resyncs == 1  # the first write only
    out.close()
