"""The live catalog of a gateway worker (docs/gateways.md, "Assets and markets added
at run time").

A gateway starts with the config file's assets and markets (the genesis catalog) and
checks and formats with them (``core.viabtc_codec.ViabtcCodec``). Assets and markets
added at run time (ADD_ASSET, ADD_MARKET; docs/engine.md) are learnt from the
engine: its ``asset.list`` and ``market.list`` calls carry every number the codec
needs. ``GatewayCatalog.refresh`` asks for both when a request names an asset or a
market the codec does not know, at most once per ``interval_s`` (a flood of unknown
names costs the engine one pair of calls per interval, and the requests that arrive
while one is in flight wait for it); ``learn`` takes the lists a request already
asked for (``market.list``, ``asset.list``). The catalog only grows, by index: an
engine whose entries differ from the gateway's at an index it already has is not
followed (``CatalogMismatch``, logged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Final, Protocol

import msgspec

from core.config import Asset, EngineConfig, Market
from core.schema import Result
from core.viabtc_codec import ViabtcCodec
from daemon.gateway_links import BackendError
from ipc import wire
from ipc.market_limits import LIMIT_NAMES, NONE_VALUES, RISK_LIMITS

logger = logging.getLogger("matchd.gateway")

#: The default of ``[http]``/``[ws]`` ``catalog_refresh_s``.
DEFAULT_REFRESH_S: Final = 1.0
#: The refusals of a param naming what the catalog does not know.
UNKNOWN_NAME: Final = frozenset((Result.UNKNOWN_MARKET, Result.UNKNOWN_ASSET))


class CatalogMismatch(ValueError):
    """The engine's catalog is not the gateway's plus entries at the end; the message
    says where they differ."""


class _Engine(Protocol):
    async def call(self, call: wire.Call) -> wire.Reply: ...


def configured(m: wire.MarketInfo) -> wire.MarketInfo:
    """``m`` without what the engine changes at run time: open, with no risk limits."""
    return msgspec.structs.replace(
        m, status="open", **{name: NONE_VALUES[RISK_LIMITS[name]] for name in LIMIT_NAMES}
    )


def _asset_of(info: wire.AssetInfo, index: int) -> Asset:
    if info.index != index:
        raise CatalogMismatch(f"the engine lists asset {info.name!r} at {info.index}, not {index}")
    if not 0 <= info.prec_show <= info.prec:
        raise CatalogMismatch(f"the engine's asset {info.name!r} has prec_show above prec")
    return Asset(info.index, info.name, info.prec, info.prec_show)


def _market_of(info: wire.MarketInfo, index: int, config: EngineConfig) -> Market:
    """The ``Market`` the codec needs of an added market. ``max_orders`` and
    ``max_levels`` are not listed: the room reserved for an added market bounds them."""
    if info.index != index:
        raise CatalogMismatch(f"the engine lists market {info.name!r} at {info.index}, not {index}")
    assets = config.assets
    if not (0 <= info.stock < len(assets) and 0 <= info.money < len(assets)):
        raise CatalogMismatch(f"the engine's market {info.name!r} names an unknown asset")
    stock, money = assets[info.stock], assets[info.money]
    scale = money.prec - info.money_prec - info.stock_prec
    if stock.prec < info.stock_prec or scale < 0 or info.fee_prec < 0:
        raise CatalogMismatch(f"the engine's market {info.name!r} has impossible precisions")
    return Market(
        index=info.index, name=info.name, stock=stock, money=money,
        stock_prec=info.stock_prec, money_prec=info.money_prec, fee_prec=info.fee_prec,
        stock_scale=10 ** (stock.prec - info.stock_prec), deal_scale=10**scale,
        fee_den=10**info.fee_prec, min_amount=info.min_amount, max_amount=info.max_amount,
        max_price=info.max_price, max_orders=config.added_market_orders,
        max_levels=config.added_market_levels, price_step=info.price_step,
        amount_step=info.amount_step, min_notional=info.min_notional,
        max_notional=info.max_notional, max_open_orders=info.max_open_orders,
        price_band=info.price_band, max_order_amount=info.max_order_amount,
    )  # fmt: skip


def check_prefix(
    config: EngineConfig,
    assets: Sequence[wire.AssetInfo] | None,
    markets: Sequence[wire.MarketInfo] | None,
) -> None:
    """``CatalogMismatch`` unless the engine's ``assets`` and ``markets`` (None: not
    asked) begin with ``config``'s (a market's status and risk limits aside: the
    engine's to change)."""
    if markets is not None:
        ours = [configured(wire.MarketInfo.from_market(m)) for m in config.markets]
        theirs = [configured(m) for m in markets[: len(ours)]]
        if theirs != ours:
            raise CatalogMismatch(
                f"the engine's markets {[m.name for m in markets]} do not begin with the "
                f"gateway's {[m.name for m in ours]}"
            )
    if assets is not None:
        mine = [wire.AssetInfo.from_asset(a) for a in config.assets]
        if list(assets[: len(mine)]) != mine:
            raise CatalogMismatch(
                f"the engine's assets {[a.name for a in assets]} do not begin with the "
                f"gateway's {[a.name for a in mine]}"
            )


def grown_catalog(
    config: EngineConfig,
    assets: Sequence[wire.AssetInfo] | None,
    markets: Sequence[wire.MarketInfo] | None,
) -> EngineConfig:
    """``config`` with the engine's entries beyond its own appended: every asset of
    ``assets``, then the markets of ``markets`` as far as their assets are known
    (None: none). ``CatalogMismatch`` if the lists do not begin with ``config``'s."""
    check_prefix(config, assets, markets)
    have_assets = list(config.assets)
    for asset in (assets or ())[len(have_assets) :]:
        have_assets.append(_asset_of(asset, len(have_assets)))
    grown = replace(config, assets=tuple(have_assets))
    have_markets = list(config.markets)
    for info in (markets or ())[len(have_markets) :]:
        if max(info.stock, info.money) >= len(have_assets):
            break  # an asset not listed yet: the next refresh brings both
        have_markets.append(_market_of(info, len(have_markets), grown))
    return replace(grown, markets=tuple(have_markets))


class GatewayCatalog:
    """The catalog a gateway worker checks and formats with: ``codec.config``, grown
    from the engine's lists (see the module docstring).

    Parameters
    ----------
    codec
        The worker's codec (its ``config`` is replaced when the catalog grows).
    engine
        The link to the engine (``market.list`` and ``asset.list``).
    interval_s
        Least time between two refreshes (``catalog_refresh_s``).
    clock
        Monotonic seconds.
    """

    def __init__(
        self,
        codec: ViabtcCodec,
        engine: _Engine,
        interval_s: float = DEFAULT_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.codec = codec
        self.engine = engine
        self.interval_s = interval_s
        self._clock = clock
        self._next = 0.0  #: the clock reading from which a refresh may run again
        self._running: asyncio.Future[bool] | None = None
        #: called with the new catalog each time it grows (the history's names)
        self.listeners: list[Callable[[EngineConfig], None]] = []
        self.refreshes = 0  #: refreshes that asked the engine
        self.skipped = 0  #: refreshes not run: within ``interval_s`` of the last one
        self.mismatches = 0

    @property
    def config(self) -> EngineConfig:
        """The catalog now."""
        return self.codec.config

    async def refresh(self) -> bool:
        """Ask the engine for its catalog, unless it was asked less than
        ``interval_s`` ago (a refresh in flight is waited for); True if the catalog
        grew."""
        if self._running is not None:
            return await asyncio.shield(self._running)
        now = self._clock()
        if now < self._next:
            self.skipped += 1
            return False
        self._next = now + self.interval_s
        self._running = asyncio.ensure_future(self.fetch())
        try:
            return await asyncio.shield(self._running)
        finally:
            self._running = None

    async def learnt(self, code: Result, before: EngineConfig) -> bool:
        """True if ``code``, a refusal of a request's params, is an unknown asset or
        market and the catalog has grown since ``before`` (what it was when the
        request was checked): by the refresh this asks for, or by another's. The
        request is then worth checking once more."""
        if code not in UNKNOWN_NAME:
            return False
        return await self.refresh() or self.codec.config is not before

    async def fetch(self) -> bool:
        """Ask the engine for both lists now and learn them; True if the catalog
        grew. An engine that cannot answer changes nothing (logged)."""
        self.refreshes += 1
        markets_call, assets_call = wire.MarketList(), wire.AssetList()
        try:
            replies = await asyncio.gather(
                self.engine.call(markets_call), self.engine.call(assets_call)
            )
            if not (replies[0].ok and replies[1].ok):
                logger.warning("catalog refresh: the engine refused: %s", replies)
                return False
            assets = replies[1].result_as(assets_call)
            markets = replies[0].result_as(markets_call)
        except (BackendError, wire.WireError) as exc:
            logger.warning("catalog refresh: %s", exc)
            return False
        return self.learn(assets, markets)

    def learn(
        self,
        assets: Sequence[wire.AssetInfo] | None,
        markets: Sequence[wire.MarketInfo] | None,
    ) -> bool:
        """Take the engine's lists (None: not asked); True if the catalog grew. Lists
        that do not begin with it are not followed (logged)."""
        before = self.codec.config
        try:
            grown = grown_catalog(before, assets, markets)
        except CatalogMismatch as exc:
            self.mismatches += 1
            logger.error("catalog: not following the engine: %s", exc)
            return False
        if len(grown.assets) == len(before.assets) and len(grown.markets) == len(before.markets):
            return False
        self.codec.config = grown
        logger.info(
            "catalog: %d assets, %d markets (was %d, %d)",
            len(grown.assets), len(grown.markets), len(before.assets), len(before.markets),
        )  # fmt: skip
        for listener in self.listeners:
            listener(grown)
        return True


__all__ = [
    "DEFAULT_REFRESH_S",
    "UNKNOWN_NAME",
    "CatalogMismatch",
    "GatewayCatalog",
    "check_prefix",
    "configured",
    "grown_catalog",
]
