"""The reference engine's catalog commands (docs/engine.md, "Adding assets and
markets"): ADD_ASSET and ADD_MARKET, as a mixin of ``core.reference.ReferenceEngine``.

The rules are ``core.catalog``'s (the one place they live); what the reference adds
is the plain reading of what an accepted add does to its state: the catalog
(``self.config``) gets the new entry at the next index, and every per-asset or
per-market list grows by one entry in its starting state (supply 0; an empty book,
OPEN, no last price). Everything else the reference keeps is a dict keyed by asset or
market index and needs no room. Decisions on points the contract leaves open are
marked ``# SPEC:``.
"""

from __future__ import annotations

import numpy as np

from core.catalog import CatalogRefused, new_asset, new_market, with_asset, with_market
from core.config import AssetConfig, MarketConfig
from core.errors import InternalError
from core.reference_admin import AdminCommands
from core.reference_book import ZERO, MarketBook
from core.schema import EVENT_DTYPE, RESULT_DTYPE, MarketStatus, Result


def _answer(code: Result, seq: int = 0, value: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One result and no events."""
    # SPEC: neither command has events, accepted or not: its result has event_start 0
    # and event_count 0, order_id 0; a refusal has seq 0 and value 0.
    results = np.zeros(1, dtype=RESULT_DTYPE)
    results["code"][0] = code
    results["seq"][0] = seq
    results["value"][0] = value
    return results, np.zeros(0, dtype=EVENT_DTYPE)


class CatalogCommands(AdminCommands):
    """ADD_ASSET and ADD_MARKET: each appends to the catalog; neither trades nor has
    events."""

    def add_asset(self, raw: AssetConfig) -> tuple[np.ndarray, np.ndarray]:
        """ADD_ASSET: ``raw`` as the catalog's next asset (see ``EngineAPI``)."""
        try:
            checked = new_asset(self.config, raw)
        except CatalogRefused as refused:
            return _answer(refused.code)
        # SPEC: the command carries no time: the engine's time (the ts_ns of the
        # events of later commands) is not touched, nor is anything but the catalog,
        # the seq and the new asset's supply.
        index = len(self.config.assets)
        config = with_asset(self.config, checked)
        if len(config.assets) != index + 1 or config.assets[index].index != index:
            raise InternalError("ADD_ASSET did not append the asset at the next index")
        self._seq += 1
        self.config = config
        # SPEC: its supply is 0 and no account holds it (every balance of it is 0,
        # which the balance dict says by having no entry).
        self._supply.append(ZERO)
        return _answer(Result.OK, self._seq, index)

    def add_market(self, raw: MarketConfig) -> tuple[np.ndarray, np.ndarray]:
        """ADD_MARKET: ``raw`` (a whole ``[[markets]]`` table) as the catalog's next
        market (see ``EngineAPI``)."""
        try:
            market = new_market(self.config, raw)
        except CatalogRefused as refused:
            return _answer(refused.code)
        index = len(self.config.markets)
        if market.index != index or len(self._books) != index:
            raise InternalError("ADD_MARKET's market is not at the catalog's next index")
        self._seq += 1
        self.config = with_market(self.config, market)
        # SPEC: the market starts as a configured one does: empty books, no last price
        # (both in its MarketBook), OPEN, the risk limits of its table (the book's
        # market, which MARKET_LIMIT changes later), no user limits (a dict by pair).
        self._books.append(MarketBook(market))
        self._market_status.append(MarketStatus.OPEN)
        return _answer(Result.OK, self._seq, index)
