"""The feed (daemon/feed.py) over a log whose catalog grows at run time (docs/feed.md,
"Markets added at run time"): an ADD_MARKET (an RT_CATALOG record) gives the new
market its market data, depth, ZeroMQ topics and Redis keys, and the market.*
methods answer for it; an ADD_ASSET needs nothing more; the state saved after an add
loads into a feed whose config file has only the genesis markets, and goes on as one
built from the whole log; a record of a type the feed does not know, and a catalog
record it cannot decode, are skipped, never raised. Real journal, Redis (db 15) and
ZeroMQ over ipc://."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import zmq

from core import commands as C
from core.config import AssetConfig, EngineConfig, MarketConfig, parse_config
from core.schema import CommandKind, Result, Side
from daemon.feed import Feed
from daemon.feed_config import FeedConfig, RedisConfig
from feed.market_data import MarketData
from feed.redis_out import deals_key, depth_keys, kline_key, last_key, status_key
from persistence.frames import RT_CATALOG
from persistence.history_batch import BatchDecoder
from persistence.journal import LOG_DIR, Journal, JournalConfig, journal_log_config
from persistence.log_reader import LogReader
from persistence.log_writer import LogWriter
from tests.support.scenario import config_text
from tests.unit.daemon.conftest import REDIS_DB

pytestmark = pytest.mark.integration

T0 = 1_700_000_000
NS = 1_000_000_000
NOW = T0 + 100  # after every deal
BTC, ETH, USDT, SOL = 0, 1, 2, 3
BTC_USDT, SOL_USDT = 0, 2
SELLER, BUYER = 1, 2
SOL_ASSET = AssetConfig(name="SOL", prec=8)
#: 10**4 SOL units a lot, 10 USDT units a tick x lot.
SOL_MARKET = MarketConfig(
    name="SOL_USDT", stock="SOL", money="USDT", stock_prec=4, money_prec=3,
    min_amount="0.001", max_orders=64, max_levels=16,
)  # fmt: skip


def genesis() -> EngineConfig:
    """The config file's catalog, with room for one more asset and one more market."""
    return parse_config(
        config_text(max_assets=4, max_markets=3, added_market_orders=64, added_market_levels=16)
    )


class Clock:
    """Moves 0.05 s a reading, from ``NOW``: every step publishes."""

    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        self.now += 0.05
        return self.now


class Log:
    """A journal in ``data`` whose commands carry increasing times."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.journal = Journal.open(
            genesis(), JournalConfig(data_dir=data, log=journal_log_config())
        )
        self.ts = T0 * NS

    def tick(self) -> int:
        self.ts += NS
        return self.ts

    def add(self, raw: AssetConfig | MarketConfig) -> int:
        results, _ = self.journal.add_catalog(raw, self.tick())
        assert Result(int(results[0]["code"])) == Result.OK
        return int(results[0]["value"])

    def deposit(self, user: int, asset: int, units: int) -> None:
        results, _ = self.journal.balance_update(
            user, asset, b"deposit", self.ts + user, units, self.tick()
        )
        assert Result(int(results[0]["code"])) == Result.OK

    def put(self, user: int, market: int, side: Side, price: int, lots: int) -> None:
        record = C.pack(
            CommandKind.PUT_LIMIT, user, market, side=side, amount=lots, price=price,
            ts_ns=self.tick(),
        )  # fmt: skip
        results, _ = self.journal.submit(record)
        assert Result(int(results[0]["code"])) == Result.OK

    def trade(self, market: int, price: int, lots: int) -> None:
        """A resting ask and a bid that takes it: one deal."""
        self.put(SELLER, market, Side.ASK, price, lots)
        self.put(BUYER, market, Side.BID, price, lots)

    def close(self) -> None:
        self.journal.close()


def make_feed(data: Path, redis_db: int | None = REDIS_DB) -> Feed:
    """A feed of the genesis config (as ``matchd feed`` reads the config file)."""
    config = FeedConfig(
        pub=f"ipc://{data}/pub.sock", rpc=f"ipc://{data}/rpc.sock",
        state_interval_s=3600, depth_snapshot_s=3600, depth_merge=("0", "1"),
    )  # fmt: skip
    rc = RedisConfig(db=redis_db) if redis_db is not None else None
    return Feed(genesis(), config, rc, data, log_dir=data / LOG_DIR, clock=Clock())


def drain(feed: Feed) -> None:
    while feed.step():
        pass
    feed.publish(NOW)


def from_scratch(data: Path, config: EngineConfig) -> MarketData:
    """Market data of the whole log for ``config``'s markets, built directly."""
    md = MarketData(config)
    with LogReader(data / LOG_DIR) as reader:
        md.add_events(BatchDecoder().decode(list(reader.read(1))).events)
    return md


def ask(feed: Feed, method: str, *params: Any) -> Any:
    """``method`` answered by the feed (as over its ROUTER)."""
    request = json.dumps({"method": method, "params": params, "id": 1}).encode()
    reply = json.loads(feed.answer(request))
    assert reply["error"] is None, reply
    return reply["result"]


def fund(log: Log, *assets: int) -> None:
    for user in (SELLER, BUYER):
        for asset in assets:
            log.deposit(user, asset, 10**15)


def test_an_added_market_is_published_and_answered(tmp_path: Path, rdb: redis.Redis) -> None:
    data = tmp_path / "data"
    log = Log(data)
    fund(log, BTC, USDT)
    log.trade(BTC_USDT, 3_000_000, 1000)
    assert log.add(SOL_ASSET) == SOL
    assert log.add(SOL_MARKET) == SOL_USDT
    fund(log, SOL)
    log.trade(SOL_USDT, 25_500, 30)  # 25.5 USDT, 0.003 SOL
    log.trade(SOL_USDT, 26_000, 20)
    feed = make_feed(data)
    sub: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    users: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.SUB)
    users.setsockopt(zmq.SUBSCRIBE, b"user.")  # the user topics are made on request
    try:
        sub.connect(feed.config.pub)
        users.connect(feed.config.pub)
        time.sleep(0.3)  # the subscriptions reach the publisher before anything is sent
        drain(feed)
        assert feed.markets == ["BTC_USDT", "ETH_BTC", "SOL_USDT"]
        assert feed.position == log.journal.engine.counters()[0]
        # market.*: as for any market, equal to a rebuild from the whole log
        want = from_scratch(data, log.journal.engine.config)
        assert ask(feed, "market.last", "SOL_USDT") == "26.000" == want.last("SOL_USDT")
        deals = ask(feed, "market.deals", "SOL_USDT", 10, 0)
        assert [(d["price"], d["amount"], d["type"]) for d in deals] == [
            ("26", "0.002", "buy"), ("25.5", "0.003", "buy"),
        ]  # fmt: skip
        assert deals == want.deals("SOL_USDT", 10, 0)
        kline = ask(feed, "market.kline", "SOL_USDT", T0, NOW, 86400)
        assert kline
        assert kline[0][-1] == "SOL_USDT"
        assert ask(feed, "market.status_today", "SOL_USDT")["last"] == "26"
        # Redis: its keys as any market's
        assert rdb.get(last_key("SOL_USDT")) == b"26.000"
        assert rdb.hgetall(kline_key("SOL_USDT", 60))
        assert rdb.hget(status_key("SOL_USDT"), "status") == b"open"
        assert rdb.xrange(deals_key("SOL_USDT"))
        assert rdb.zcard(depth_keys("SOL_USDT")[0]) == 0  # every order filled
        # ZeroMQ: its deals, klines, ticker and depth (in full first, as every market's)
        topics = receive(sub)
        assert [d["price"] for m in topics[b"deals.SOL_USDT"] for d in m["deals"]] == [
            "25.5", "26",
        ]  # fmt: skip
        assert topics[b"kline.60.SOL_USDT"][-1]["kline"][-1] == "SOL_USDT"
        assert topics[b"ticker.SOL_USDT"][-1]["ticker"]["last"] == "26.000"
        for topic in (b"depth.SOL_USDT", b"depth.SOL_USDT.1"):
            assert topics[topic][0]["full"] is True
        # the user topics name the new market and the new asset
        mine = receive(users)
        assert {m["market"] for m in mine[b"user.1.order"]} == {"BTC_USDT", "SOL_USDT"}
        assert any("SOL" in m["assets"] for m in mine[b"user.2.asset"])
        # then the changes of its book
        log.put(SELLER, SOL_USDT, Side.ASK, 27_000, 10)
        drain(feed)
        topics = receive(sub)
        assert topics[b"depth.SOL_USDT"][-1]["asks"] == [["27", "0.001"]]
        assert rdb.zrange(depth_keys("SOL_USDT")[0], 0, -1) == [b"27:0.001"]
    finally:
        sub.close(0)
        users.close(0)
        feed.close()
        log.close()


def receive(sub: zmq.Socket[Any]) -> dict[bytes, list[Any]]:
    """Every message waiting (and those that come within a moment), by topic."""
    topics: dict[bytes, list[Any]] = {}
    while sub.poll(300):
        topic, body = sub.recv_multipart()
        topics.setdefault(topic, []).append(json.loads(body))
    return topics


def test_the_state_loads_with_more_markets_than_the_config(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = Log(data)
    fund(log, BTC, USDT)
    log.add(SOL_ASSET)
    log.add(SOL_MARKET)
    fund(log, SOL)
    log.trade(SOL_USDT, 25_500, 30)
    feed = make_feed(data, redis_db=None)
    try:
        drain(feed)
        feed.save()
        saved = feed.position
    finally:
        feed.close()
    log.trade(SOL_USDT, 26_000, 20)
    log.trade(BTC_USDT, 3_000_000, 1000)
    again = make_feed(data, redis_db=None)  # the config file still has 2 markets
    try:
        assert again.position == saved
        assert again.markets == ["BTC_USDT", "ETH_BTC", "SOL_USDT"]
        assert again.data.deal_count(SOL_USDT) == 1
        drain(again)
        want = from_scratch(data, log.journal.engine.config)
        got_arrays, want_arrays = again.data.to_arrays(), want.to_arrays()
        assert got_arrays.keys() == want_arrays.keys()
        for key, value in want_arrays.items():
            assert np.array_equal(got_arrays[key], value), key
        assert ask(again, "market.last", "SOL_USDT") == "26.000"
        again.save()  # and once more, from a state that had the market already
    finally:
        again.close()
    third = make_feed(data, redis_db=None)
    try:
        assert third.markets == ["BTC_USDT", "ETH_BTC", "SOL_USDT"]
        assert len(third.catalog) == 2
        assert third.data.deal_count(SOL_USDT) == 2
    finally:
        third.close()
        log.close()


def test_records_it_does_not_take_are_skipped(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = Log(data)
    fund(log, BTC, USDT)
    log.trade(BTC_USDT, 3_000_000, 1000)
    log.close()
    with LogWriter.open(data / LOG_DIR, journal_log_config()) as writer:
        seq = writer.last_seq
        writer.append(seq + 1, 99, b"a record type of a later build")
        writer.append(seq + 2, RT_CATALOG, b"not a catalog command")
        writer.commit()
    feed = make_feed(data, redis_db=None)
    try:
        drain(feed)
        assert feed.position == seq + 2
        assert feed.markets == ["BTC_USDT", "ETH_BTC"]
        assert ask(feed, "market.last", "BTC_USDT") == "30000.00"
    finally:
        feed.close()
