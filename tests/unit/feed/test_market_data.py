"""``feed.market_data``: ViaBTC's market.* methods over the deals of a real engine run,
checked against the kline oracle and plain Python over the same deals; every argument
check with its message; the deals ring past its size."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from core.engine import Engine
from core.fixed import format_units
from core.schema import EVENT_DTYPE, EventKind, Result, Side
from feed.klines import MINUTE, Retention
from feed.market_data import DEALS_KEPT, MAX_KLINE_ROWS, MarketData, MarketDataError
from tests.support import kline_oracle as oracle
from tests.support.kline_oracle import Deal
from tests.support.steps import Batch, Update, resolve
from tests.support.streams import random_stream
from tests.support.world import Limits, stream_config

SEED = 20261205
T0_NS = 1_764_547_200 * 10**9  # 2025-12-01 00:00 UTC


def run_engine(n_commands: int, seed: int = SEED) -> tuple[Engine, np.ndarray]:
    """A random stream through an engine, 0 to 90 s between steps; its events."""
    config = stream_config(Limits())
    engine = Engine(config)
    rng = np.random.default_rng(seed)
    ts = T0_NS
    out = []
    for step in random_stream(rng, config, n_commands):
        ts += int(rng.choice([0, 10**8, 10**9, 7 * 10**9, 90 * 10**9]))
        if isinstance(step, Update):
            engine.balance_update(
                step.user, step.asset, step.business, step.business_id, step.change, ts
            )
            continue
        assert isinstance(step, Batch)
        _, events = engine.execute(resolve(step.commands, engine, ts))
        out.append(events)
    return engine, np.concatenate(out)


@pytest.fixture(scope="module")
def run() -> tuple[Engine, np.ndarray]:
    return run_engine(3000)


@pytest.fixture(scope="module")
def data(run: tuple[Engine, np.ndarray]) -> MarketData:
    engine, events = run
    md = MarketData(engine.config, retention=Retention(sec_max=400 * 86400))
    for k in range(0, events.shape[0], 333):  # in batches, as the feed reads the log
        md.add_events(events[k : k + 333])
    return md


def deals_of(events: np.ndarray, market: int) -> list[Deal]:
    e = events[(events["kind"] == EventKind.DEAL) & (events["market"] == market)]
    return [
        Deal(int(d["ts_ns"]) // 10**9, int(d["price"]), int(d["amount"]), int(d["deal_money"]))
        for d in e
    ]


def test_klines_equal_the_oracle_over_the_engines_deals(
    run: tuple[Engine, np.ndarray], data: MarketData
) -> None:
    engine, events = run
    for m, market in enumerate(engine.config.markets):
        deals = deals_of(events, m)
        assert len(deals) > 50  # the stream traded in every market
        last_s = deals[-1].time_s
        for interval in (1, 15, 60, 300, 3600, 14400, 86400, 604800, 2592000):
            start, end = deals[0].time_s - 3600, last_s + 3600
            if (end - start) // interval > MAX_KLINE_ROWS:
                start = end - 1000 * interval
            rows = data.kline(market.name, start, end, interval, now=end)
            want = oracle.kline(deals, start, end, interval, 0)
            assert [r[0] for r in rows] == [c.start for c in want]
            for row, c in zip(rows, want, strict=True):
                assert row == [
                    c.start,
                    format_units(c.open, market.money_prec),
                    format_units(c.close, market.money_prec),
                    format_units(c.high, market.money_prec),
                    format_units(c.low, market.money_prec),
                    format_units(c.volume, market.stock_prec),
                    format_units(c.deal, market.money.prec),
                    market.name,
                ]


def test_status_and_today_equal_plain_sums(
    run: tuple[Engine, np.ndarray], data: MarketData
) -> None:
    engine, events = run
    market = engine.config.markets[0]
    deals = deals_of(events, 0)
    now = deals[len(deals) // 2].time_s + 1
    for period in (1, 60, 61, 3600, 86400, 7 * 86400):
        got = data.status(market.name, period, now)
        inside = [d for d in deals if now - period <= d.time_s < now]
        assert got["period"] == period
        if not inside:
            assert got["open"] == got["volume"] == "0"
            continue
        assert Decimal(got["open"]) * 10**market.money_prec == inside[0].price
        assert Decimal(got["close"]) * 10**market.money_prec == inside[-1].price
        assert Decimal(got["high"]) * 10**market.money_prec == max(d.price for d in inside)
        assert Decimal(got["volume"]) * 10**market.stock_prec == sum(d.amount for d in inside)
        assert Decimal(got["deal"]) * 10**market.money.prec == sum(d.money for d in inside)
    assert got["last"] == format_units(deals[-1].price, market.money_prec)  # of all time
    today = data.status_today(market.name, now)
    day_start = now - now % 86400
    todays = [d for d in deals if day_start <= d.time_s < day_start + 86400]
    rolling = [d for d in deals if now - 86400 <= d.time_s < now]
    if todays:
        assert Decimal(today["open"]) * 10**market.money_prec == todays[0].price
        assert Decimal(today["last"]) * 10**market.money_prec == todays[-1].price
    assert Decimal(today["volume"]) * 10**market.stock_prec == sum(d.amount for d in rolling)
    assert set(today) == {"open", "last", "high", "low", "volume", "deal"}


def test_last_and_deals_newest_first(run: tuple[Engine, np.ndarray], data: MarketData) -> None:
    engine, events = run
    market = engine.config.markets[1]
    e = events[(events["kind"] == EventKind.DEAL) & (events["market"] == 1)]
    assert data.last(market.name) == format_units(
        int(e["price"][-1]), market.money_prec, strip=False
    )
    got = data.deals(market.name, 5, 0)
    assert [d["id"] for d in got] == e["deal_id"][::-1][:5].tolist()
    newest = e[-1]
    assert got[0] == {
        "id": int(newest["deal_id"]),
        "time": int(newest["ts_ns"]) / 1e9,
        "price": format_units(int(newest["price"]), market.money_prec),
        "amount": format_units(int(newest["amount"]), market.stock_prec),
        "type": "sell" if int(newest["side"]) == Side.ASK else "buy",
    }
    after = int(e["deal_id"][-3])
    assert [d["id"] for d in data.deals(market.name, 100, after)] == e["deal_id"][-2:][
        ::-1
    ].tolist()
    assert data.deals(market.name, 100, int(e["deal_id"][-1])) == []


def test_before_any_deal_everything_is_zero() -> None:
    config = stream_config(Limits())
    md = MarketData(config)
    name = config.markets[0].name
    assert md.last(name) == "0"
    assert md.deals(name, 10, 0) == []
    assert md.kline(name, 1, 10**9, 3600, now=10**9) == []
    status = md.status(name, 86400, 10**9)
    assert status == {
        "period": 86400, "last": "0", "open": "0", "close": "0", "high": "0", "low": "0",
        "volume": "0", "deal": "0",
    }  # fmt: skip
    assert md.status_today(name, 10**9) == {
        "open": "0", "last": "0", "high": "0", "low": "0", "volume": "0", "deal": "0",
    }  # fmt: skip


def test_the_deals_ring_keeps_the_newest_ten_thousand() -> None:
    config = stream_config(Limits())
    md = MarketData(config)
    n = DEALS_KEPT + 2345
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["kind"] = EventKind.DEAL
    events["deal_id"] = np.arange(1, n + 1)
    events["ts_ns"] = T0_NS + np.arange(n) * 10**9
    events["price"] = 100
    events["amount"] = 1
    events["side"] = Side.BID
    md.add_events(events[:7000])
    md.add_events(events[7000:])
    name = config.markets[0].name
    got = md.deals(name, DEALS_KEPT, 0)
    assert [d["id"] for d in got] == list(range(n, n - DEALS_KEPT, -1))
    assert got[0]["type"] == "buy"
    assert md.deals(name, 3, n - 10) == [got[0], got[1], got[2]]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda md: md.kline(7, 1, 2, 60, now=10), "market must be a string"),
        (lambda md: md.kline("NOPE", 1, 2, 60, now=10), "no market 'NOPE'"),
        (lambda md: md.kline("BTC_USDT", 0, 2, 60, now=10), "start must be in 1.."),
        (lambda md: md.kline("BTC_USDT", True, 2, 60, now=10), "start must be an integer"),
        (lambda md: md.kline("BTC_USDT", 5, 2, 60, now=10), "start 5 is after end 2"),
        (lambda md: md.kline("BTC_USDT", 5, 20, 60, now=3), "start 5 is after end 3"),
        (lambda md: md.kline("BTC_USDT", 1, 2, 61, now=10), "interval 61 is not one of"),
        (lambda md: md.kline("BTC_USDT", 1, 2, "60", now=10), "interval must be an integer"),
        (
            lambda md: md.kline("BTC_USDT", 1, 10**9, 1, now=10**9),  # 7 days of seconds
            f"604801 intervals of 1 s asked, at most {MAX_KLINE_ROWS}",
        ),
        (lambda md: md.status("BTC_USDT", 0, 10), "period must be in 1..604800"),
        (lambda md: md.status("BTC_USDT", 604801, 10), "period must be in 1..604800"),
        (lambda md: md.status("BTC_USDT", 1.5, 10), "period must be an integer"),
        (lambda md: md.deals("BTC_USDT", 0, 0), "limit must be in 1..10000"),
        (lambda md: md.deals("BTC_USDT", 10001, 0), "limit must be in 1..10000"),
        (lambda md: md.deals("BTC_USDT", 10, -1), "last_id must be in 0.."),
        (lambda md: md.last(None), "market must be a string"),
        (lambda md: md.status_today("btc_usdt", 10), "no market 'btc_usdt'"),
    ],
)
def test_bad_arguments_get_code_1_and_say_why(call: object, message: str) -> None:
    md = MarketData(stream_config(Limits()))
    with pytest.raises(MarketDataError) as info:
        call(md)  # type: ignore[operator]
    assert info.value.code == 1
    assert message in info.value.message
    assert info.value.message.startswith("invalid argument")
    assert info.value.error() == {"code": 1, "message": info.value.message}
    assert info.value.result_code in (Result.INVALID_ARGUMENT, Result.UNKNOWN_MARKET)


def test_minute_klines_of_one_second_agree_with_seconds(data: MarketData) -> None:
    """The same span from 1 s buckets and from minute buckets."""
    name = data.config.markets[0].name
    deals = data.deals(name, 1, 0)
    end = int(deals[0]["time"]) + 1
    start = end - 3 * 3600
    by_minute = data.kline(name, start, end, MINUTE, now=end)
    by_second = data.kline(name, start - start % 60, end, 30, now=end)
    volume_m = sum(Decimal(r[5]) for r in by_minute)
    volume_s = sum(Decimal(r[5]) for r in by_second if r[0] >= by_minute[0][0])
    assert volume_m == volume_s
