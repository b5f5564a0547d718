"""The engine's catalog (docs/engine.md, "Adding assets and markets"): the assets and
markets it holds as state (the ``asset_table`` and ``market_table`` arrays and two
counters, beside each market's parameter row), ADD_ASSET and ADD_MARKET, and taking
the catalog a state holds (``adopt_catalog``). A mixin of ``core.engine.Engine``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from core.catalog import CatalogRefused, new_asset, new_market, with_asset, with_market
from core.config import (
    LIMIT_NAMES,
    Asset,
    AssetConfig,
    EngineConfig,
    Market,
    MarketConfig,
    with_limits,
)
from core.kernels.layout import (
    B_MPARAMS,
    MP_AMOUNT_STEP,
    MP_DEAL_SCALE,
    MP_FEE_DEN,
    MP_MAX_AMOUNT,
    MP_MAX_LEVELS,
    MP_MAX_NOTIONAL,
    MP_MAX_OPEN_ORDERS,
    MP_MAX_ORDER_AMOUNT,
    MP_MAX_ORDERS,
    MP_MAX_PRICE,
    MP_MIN_AMOUNT,
    MP_MIN_NOTIONAL,
    MP_MONEY,
    MP_PRICE_BAND,
    MP_PRICE_STEP,
    MP_STOCK,
    MP_STOCK_SCALE,
)
from core.schema import COUNTER_ASSETS, COUNTER_MARKETS, COUNTER_SEQ, EVENT_DTYPE, RESULT_DTYPE


def market_params(row: np.ndarray, m: Market) -> None:
    """Write market ``m``'s parameters into its row of the parameter table (all but
    its place in the pools, which the slot has from the start)."""
    row[MP_STOCK] = m.stock.index
    row[MP_MONEY] = m.money.index
    row[MP_STOCK_SCALE] = m.stock_scale
    row[MP_DEAL_SCALE] = m.deal_scale
    row[MP_FEE_DEN] = m.fee_den
    row[MP_MIN_AMOUNT] = m.min_amount
    row[MP_MAX_AMOUNT] = m.max_amount
    row[MP_MAX_PRICE] = m.max_price
    row[MP_MAX_ORDERS] = m.max_orders
    row[MP_MAX_LEVELS] = m.max_levels
    row[MP_PRICE_STEP] = m.price_step
    row[MP_AMOUNT_STEP] = m.amount_step
    row[MP_MIN_NOTIONAL] = m.min_notional
    row[MP_MAX_NOTIONAL] = m.max_notional
    row[MP_MAX_OPEN_ORDERS] = m.max_open_orders
    row[MP_PRICE_BAND] = m.price_band
    row[MP_MAX_ORDER_AMOUNT] = m.max_order_amount


def _market_of(index: int, row: np.ndarray, mp: np.ndarray, assets: list[Asset]) -> Market:
    """The added market ``index`` from its catalog row and parameter row (with the
    risk limits its table set, as a live engine's config keeps them)."""
    name, stock_prec, money_prec, fee_prec, limits, _ = row.tolist()
    market = Market(
        index=index,
        name=name.decode(),
        stock=assets[int(mp[MP_STOCK])],
        money=assets[int(mp[MP_MONEY])],
        stock_prec=stock_prec,
        money_prec=money_prec,
        fee_prec=fee_prec,
        stock_scale=int(mp[MP_STOCK_SCALE]),
        deal_scale=int(mp[MP_DEAL_SCALE]),
        fee_den=int(mp[MP_FEE_DEN]),
        min_amount=int(mp[MP_MIN_AMOUNT]),
        max_amount=int(mp[MP_MAX_AMOUNT]),
        max_price=int(mp[MP_MAX_PRICE]),
        max_orders=int(mp[MP_MAX_ORDERS]),
        max_levels=int(mp[MP_MAX_LEVELS]),
    )
    return with_limits(market, limits)


def asset_row(asset: Asset) -> tuple[bytes, int, int]:
    """``asset``'s row of the ``asset_table`` (ASSET_ROW_DTYPE)."""
    return asset.name.encode(), asset.prec, asset.prec_show


class CatalogState:
    """``Engine``'s catalog: ADD_ASSET, ADD_MARKET and ``adopt_catalog`` over the
    engine's arrays (a mixin)."""

    config: EngineConfig
    _book: tuple[np.ndarray, ...]
    _counters: np.ndarray
    _asset_rows: np.ndarray
    _market_rows: np.ndarray
    _n_markets: int

    def _write_market_row(self, m: Market) -> None:
        row = self._market_rows[m.index]
        row["name"] = m.name.encode()
        row["stock_prec"] = m.stock_prec
        row["money_prec"] = m.money_prec
        row["fee_prec"] = m.fee_prec
        row["table_limits"] = [getattr(m, name) for name in LIMIT_NAMES]

    def adopt_catalog(self, what: str = "arrays") -> None:
        """Take the catalog the arrays hold (docs/engine.md, "Adding assets and
        markets"): the config's entries must be its first ones; those after them were
        added at run time and join ``self.config``. ``ValueError`` if they disagree.
        An engine over arrays that another engine changes (``from_arrays``) calls it
        after that engine added an asset or a market."""
        config = self.config
        n_assets = int(self._counters[COUNTER_ASSETS])
        n_markets = int(self._counters[COUNTER_MARKETS])
        if not (
            len(config.assets) <= n_assets <= config.asset_slots
            and len(config.markets) <= n_markets <= config.market_slots
        ):
            raise ValueError(
                f"{what} holds {n_assets} assets and {n_markets} markets; the config has "
                f"{len(config.assets)} and {len(config.markets)}, with room for "
                f"{config.asset_slots} and {config.market_slots}"
            )
        for a in config.assets:
            if self._asset_rows[a.index].tolist() != asset_row(a):
                raise ValueError(f"{what} has another asset {a.index} than {a.name}")
        for m in config.markets:
            row = self._market_rows[m.index]
            if row.tolist()[:4] != (m.name.encode(), m.stock_prec, m.money_prec, m.fee_prec):
                raise ValueError(f"{what} has another market {m.index} than {m.name}")
        assets = list(config.assets)
        for i in range(len(assets), n_assets):
            name, prec, prec_show = self._asset_rows[i].tolist()
            assets.append(Asset(index=i, name=name.decode(), prec=prec, prec_show=prec_show))
        mp = self._book[B_MPARAMS]
        added = range(len(config.markets), n_markets)
        markets = [
            *config.markets,
            *(_market_of(i, self._market_rows[i], mp[i], assets) for i in added),
        ]
        self.config = replace(
            config,
            assets=tuple(assets),
            markets=tuple(markets),
            genesis_assets=config.genesis_asset_count,
            genesis_markets=config.genesis_market_count,
        )
        self._n_markets = n_markets

    def add_asset(self, raw: AssetConfig) -> tuple[np.ndarray, np.ndarray]:
        """ADD_ASSET (docs/engine.md, "Adding assets and markets"): one result
        (``value`` the new asset's index) and no events."""
        results = np.zeros(1, dtype=RESULT_DTYPE)
        try:
            checked = new_asset(self.config, raw)
        except CatalogRefused as refused:
            results["code"] = refused.code
            return results, np.zeros(0, dtype=EVENT_DTYPE)
        self.config = with_asset(self.config, checked)
        asset = self.config.assets[-1]
        index = asset.index
        self._asset_rows[index] = asset_row(asset)
        self._counters[COUNTER_ASSETS] = index + 1
        return self._catalog_result(results, index)

    def add_market(self, raw: MarketConfig) -> tuple[np.ndarray, np.ndarray]:
        """ADD_MARKET (docs/engine.md, "Adding assets and markets"): one result
        (``value`` the new market's index) and no events. The market's slot has its
        room and an empty book from the start; this writes its parameters."""
        results = np.zeros(1, dtype=RESULT_DTYPE)
        try:
            market = new_market(self.config, raw)
        except CatalogRefused as refused:
            results["code"] = refused.code
            return results, np.zeros(0, dtype=EVENT_DTYPE)
        market_params(self._book[B_MPARAMS][market.index], market)
        self._write_market_row(market)
        self.config = with_market(self.config, market)
        self._counters[COUNTER_MARKETS] = market.index + 1
        self._n_markets = market.index + 1
        return self._catalog_result(results, market.index)

    def _catalog_result(self, results: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        self._counters[COUNTER_SEQ] += 1
        results["seq"] = self._counters[COUNTER_SEQ]
        results["value"] = index
        return results, np.zeros(0, dtype=EVENT_DTYPE)
