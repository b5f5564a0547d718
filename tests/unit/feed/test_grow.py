"""The feed's per-market tables grown by a market added at run time (ADD_MARKET):
``MarketData.grow``, ``DepthBook.grow``, ``KlineStore.grow``. Before the growth an
event of the new market's index is refused as unknown; after it, the market is
answered and kept like any other, and its state round-trips."""

from __future__ import annotations

import numpy as np
import pytest

from core.catalog import new_asset, new_market, with_asset, with_market
from core.config import AssetConfig, EngineConfig, MarketConfig, parse_config
from core.schema import EVENT_DTYPE, EventKind, Result, Side
from feed.depth import DepthBook
from feed.market_data import MarketData, MarketDataError
from tests.support.scenario import config_text

T0 = 1_700_000_000
SOL_USDT = 2


def configs() -> tuple[EngineConfig, EngineConfig]:
    """The genesis catalog (BTC_USDT, ETH_BTC) and the one with SOL and SOL_USDT."""
    genesis = parse_config(
        config_text(max_assets=4, max_markets=3, added_market_orders=8, added_market_levels=8)
    )
    grown = with_asset(genesis, new_asset(genesis, AssetConfig("SOL", 8)))
    market = MarketConfig("SOL_USDT", "SOL", "USDT", 4, 3, max_orders=8, max_levels=8)
    return genesis, with_market(grown, new_market(grown, market))


def event(kind: EventKind, market: int, order_id: int, price: int, amount: int) -> np.ndarray:
    e = np.zeros(1, dtype=EVENT_DTYPE)
    e["kind"], e["market"], e["order_id"], e["user"] = kind, market, order_id, 1
    e["side"], e["price"], e["amount"], e["left"] = Side.ASK, price, amount, amount
    e["ts_ns"], e["seq"], e["deal_id"], e["deal_money"] = T0 * 10**9, order_id, order_id, 1
    return e


def test_market_data_grows() -> None:
    genesis, grown = configs()
    data = MarketData(genesis)
    with pytest.raises(MarketDataError) as info:
        data.last("SOL_USDT")
    assert info.value.result_code == Result.UNKNOWN_MARKET
    data.take_status_touched()
    data.grow(grown)
    assert data.take_status_touched() == {SOL_USDT}
    assert data.last("SOL_USDT") == "0"
    assert data.trading_status(SOL_USDT)["status"] == "open"
    assert data.add_events(event(EventKind.DEAL, SOL_USDT, 1, 25_500, 30)) == 1
    assert data.last("SOL_USDT") == "25.500"
    assert [d["amount"] for d in data.deals("SOL_USDT", 10, 0)] == ["0.003"]
    assert data.kline("SOL_USDT", T0, T0, 60, now=T0)[0][-1] == "SOL_USDT"
    # its state loads into a market data of the grown catalog, and nowhere smaller
    again = MarketData(grown)
    again.load_arrays(data.to_arrays())
    assert again.deals("SOL_USDT", 10, 0) == data.deals("SOL_USDT", 10, 0)
    with pytest.raises(ValueError, match="the state holds 3 markets"):
        MarketData(genesis).load_arrays(data.to_arrays())
    with pytest.raises(ValueError, match="keeps the markets it had"):
        MarketData(grown).grow(genesis)


def test_depth_book_grows() -> None:
    book = DepthBook(2)
    assert book.apply(event(EventKind.ORDER_PUT, SOL_USDT, 1, 25_500, 30)) == 0
    assert book.statistics().unknown_market == 1
    book.grow(3)
    assert book.apply(event(EventKind.ORDER_PUT, SOL_USDT, 2, 25_500, 30)) == 1
    assert book.depth(SOL_USDT, 10, 0) == ([(25_500, 30)], [])
    assert DepthBook.from_arrays(book.to_arrays()).depth(SOL_USDT, 10, 0) == ([(25_500, 30)], [])
    with pytest.raises(ValueError, match="n_markets must be in 3"):
        book.grow(2)
