"""The feed (daemon/feed.py) and the market operations, with a real Redis (db 15) and
ZeroMQ over ipc://: each change of a market's status is published once on
``status.<market>`` and lands in ``md:<market>:status`` (every market has one); the
status survives a restart from the feed's state; CANCEL_MARKET empties the depth;
the status events disturb no other topic. Over a log framed by hand
(``tests.unit.persistence.market_ops_log``), and over a real engine's log (the
``engine`` tests, which need an engine that executes the market operations)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
import zmq

from core.engine import Engine
from core.schema import MarketStatus
from daemon.feed import Feed
from daemon.feed_config import FeedConfig, RedisConfig
from feed.redis_out import SEQ_KEY, depth_keys, status_key
from persistence.journal import LOG_DIR
from tests.support.world import Limits, stream_config
from tests.unit.daemon.test_feed import NOW, REDIS_DB, Clock
from tests.unit.daemon.test_feed_user_topics import received
from tests.unit.persistence import market_ops_log as ops

pytestmark = pytest.mark.integration


def assert_follows(feed: Feed, engine: Engine, rdb: redis.Redis) -> None:
    """The feed's depth and statuses are the engine's, in memory and in Redis."""
    for m, market in enumerate(engine.config.markets):
        assert feed.depth.depth(m, 10_000, 0) == engine.depth(m, 10_000, 0)
        want = MarketStatus(engine.market_status(m)).name.lower()
        assert feed.data.trading_status(m)["status"] == want
        assert status_hash(rdb, market.name)["status"] == want
    assert feed.depth.statistics().rejected == 0


def make_feed(tmp_path: Path, **kw: Any) -> Feed:
    """A feed of ``tmp_path/data`` whose state is written only when asked."""
    config = FeedConfig(
        pub=f"ipc://{tmp_path}/pub.sock", rpc=f"ipc://{tmp_path}/rpc.sock",
        state_interval_s=3600, depth_snapshot_s=3600,
    )  # fmt: skip
    data = tmp_path / "data"
    return Feed(
        stream_config(Limits()), config, RedisConfig(db=REDIS_DB), data,
        log_dir=data / LOG_DIR, clock=Clock(), **kw,
    )  # fmt: skip


def subscriber(feed: Feed, prefix: bytes) -> zmq.Socket[Any]:
    """A SUB socket of ``prefix`` whose subscription has reached the publisher."""
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, prefix)
    sub.connect(feed.config.pub)
    while not feed.pub.poll(10):
        sub.poll(10)
    return sub


def status_hash(rdb: redis.Redis, market: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in rdb.hgetall(status_key(market)).items()}


@pytest.fixture
def hand_log(tmp_path: Path) -> Path:
    ops.write_market_ops_log(tmp_path / "data" / LOG_DIR)
    return tmp_path


def test_status_changes_are_published_once_and_written_to_redis(
    hand_log: Path, rdb: redis.Redis
) -> None:
    feed = make_feed(hand_log, batch_records=1)
    sub = subscriber(feed, b"")
    try:
        statuses = []
        while feed.step():  # a record a step, Redis written after each
            feed.publish(NOW)
            statuses.append(status_hash(rdb, "BTC_USDT")["status"])
        assert statuses == ["open"] * 4 + ["halted"] * 3 + ["delisted"]
        messages = list(received(sub))
    finally:
        sub.close(0)
        feed.close()
    status = [(t, m) for t, m in messages if t.startswith(b"status.")]
    assert [(t, {k: m[k] for k in ("market", "status", "previous", "log_seq", "seq")})
            for t, m in status] == [
        (b"status.BTC_USDT", {"market": "BTC_USDT", "status": "halted", "previous": "open",
                              "log_seq": ops.SEQ_HALT, "seq": 1}),
        (b"status.BTC_USDT", {"market": "BTC_USDT", "status": "delisted",
                              "previous": "halted", "log_seq": ops.SEQ_DELIST, "seq": 2}),
    ]  # fmt: skip
    assert status[0][1]["time"] == (ops.T0_NS + ops.SEQ_HALT * 1_000_000) / 1e9
    # No deals, and the book is empty again: its last depth message says so.
    assert not any(t.startswith(b"deals.") for t, _ in messages)
    depth = [m for t, m in messages if t == b"depth.BTC_USDT"]
    assert depth[-1]["log_seq"] == ops.SEQ_CANCEL
    assert (depth[-1]["asks"], depth[-1]["bids"]) == ([["100", "0"]], [["90", "0"]])
    assert feed.depth.statistics().rejected == 0
    assert feed.data.status_rejected == 0
    assert feed.dropped == 0
    assert status_hash(rdb, "BTC_USDT") == {
        "status": "delisted", "log_seq": str(ops.SEQ_DELIST),
        "time": str((ops.T0_NS + ops.SEQ_DELIST * 1_000_000) / 1e9),
    }  # fmt: skip
    assert status_hash(rdb, "ETH_USDT") == {"status": "open", "log_seq": "0", "time": "0.0"}
    assert all(rdb.zcard(key) == 0 for key in depth_keys("BTC_USDT"))
    assert int(rdb.get(SEQ_KEY) or 0) == ops.LAST_SEQ


def test_the_status_survives_a_restart_and_a_flushed_redis(
    hand_log: Path, rdb: redis.Redis
) -> None:
    first = make_feed(hand_log)
    try:
        while first.step():
            pass
        first.save()
    finally:
        first.close()
    rdb.flushdb()
    second = make_feed(hand_log)
    try:
        assert second.position == ops.LAST_SEQ
        assert second.data.trading_status(0)["status"] == "delisted"
        assert second.step() == 0
        second.publish(NOW)  # a fresh start rewrites every key from the state
    finally:
        second.close()
    assert status_hash(rdb, "BTC_USDT")["status"] == "delisted"
    assert status_hash(rdb, "ETH_USDT")["status"] == "open"


# ------------------------------------------------------------------ with the engine


def test_the_feed_follows_the_engines_market_operations(tmp_path: Path, rdb: redis.Redis) -> None:
    log = ops.write_engine_log(tmp_path / "data", 1500)
    engine: Engine = log.engine
    feed = make_feed(tmp_path, batch_records=41)
    sub = subscriber(feed, b"status.")
    try:
        while feed.step():
            feed.publish(NOW)
        feed.publish(NOW)
        messages = list(received(sub))
        assert_follows(feed, engine, rdb)
    finally:
        sub.close(0)
        feed.close()
    names = [m.name for m in engine.config.markets]
    assert [(t, m["log_seq"], m["status"], m["previous"]) for t, m in messages] == [
        (f"status.{names[market]}".encode(), seq, MarketStatus(new).name.lower(),
         MarketStatus(old).name.lower())
        for seq, market, new, old in log.market_changes
    ]  # fmt: skip
    assert len(log.market_changes) == 4  # halt, delist, open twice


def test_the_feed_follows_random_market_operations(tmp_path: Path, rdb: redis.Redis) -> None:
    """5 % market operations amid random trading: the feed's depth and statuses are
    the engine's at the end, in memory and in Redis."""
    engine = ops.write_mixed_log(tmp_path / "data", 2000)
    feed = make_feed(tmp_path, batch_records=53)
    try:
        while feed.step():
            feed.publish(NOW)
        feed.publish(NOW)
        assert_follows(feed, engine, rdb)
        assert feed.data.status_rejected == 0
    finally:
        feed.close()
