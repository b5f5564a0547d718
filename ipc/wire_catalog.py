"""The catalog's calls on the wire (docs/protocol.md, "Adding assets and markets";
docs/engine.md, "Adding assets and markets"): ``asset.add`` and ``market.add``, two
admin calls that append an asset or a market to the engine's catalog at run time.

Each carries its config table as the config file writes it (``core.config.AssetConfig``,
``MarketConfig``: decimals as text), not a COMMAND_DTYPE record: the server runs it
through ``Journal.add_catalog``, journaled like every other command, and answers a
``CommandDone`` whose ``value`` is the new index. A setting left out (None) takes the
config's default, except a market's ``max_orders`` and ``max_levels``, which take
the room the engine reserves for an added market (``engine.added_market_orders`` and
``added_market_levels``), so that a plain add fits. The rules are ``core.catalog``'s
alone; ``refusal`` gives its message for a refused call.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any, Final

import msgspec

from core.catalog import refusal as catalog_refusal
from core.config import AssetConfig, EngineConfig, MarketConfig
from core.schema import Result
from ipc.wire_calls import I64, Call

#: Text of a catalog call (a name, an asset's name, a decimal): the catalog's rules
#: bound it further (names of at most 15 or 30 bytes), with a message naming them.
Text = Annotated[str, msgspec.Meta(max_length=100)]
#: The settings of ``MarketConfig`` that ``market.add`` requires.
REQUIRED_MARKET_SETTINGS: Final = ("name", "stock", "money", "stock_prec", "money_prec")


class CatalogCall(Call, frozen=True):
    """An admin call that adds to the catalog (not an engine record: ``entry`` is its
    config table)."""

    def entry(self, config: EngineConfig) -> AssetConfig | MarketConfig:
        """The config table this call adds to ``config``'s catalog (unchecked:
        ``core.catalog`` checks it)."""
        raise NotImplementedError

    def refusal(self, config: EngineConfig, code: Result) -> str:
        """``core.catalog``'s message for refusing this call with ``code`` against
        ``config`` (the catalog it was refused by), or "" if the catalog does not
        refuse it so (the engine's reason was another: its standard message)."""
        refused = catalog_refusal(config, self.entry(config))
        return refused.message if refused is not None and refused.code == code else ""


class AssetAdd(CatalogCall, frozen=True, tag="asset.add", omit_defaults=True):
    """Add an asset (ADD_ASSET): ``prec`` its internal scale, ``prec_show`` the scale
    of shown balances (None: ``prec``). ``value`` of the result: its index."""

    name: Text
    prec: I64
    prec_show: I64 | None = None

    def entry(self, config: EngineConfig) -> AssetConfig:
        return AssetConfig(self.name, self.prec, self.prec_show)


class MarketAdd(CatalogCall, frozen=True, tag="market.add", omit_defaults=True):
    """Add a market (ADD_MARKET): the keys of a ``[[markets]]`` table, decimals as
    text; None: the config's default, and for ``max_orders`` and ``max_levels`` the
    engine's ``added_market_orders`` and ``added_market_levels``. ``value`` of the
    result: its index."""

    name: Text
    stock: Text
    money: Text
    stock_prec: I64
    money_prec: I64
    fee_prec: I64 | None = None
    min_amount: Text | None = None
    max_amount: Text | None = None
    max_price: Text | None = None
    max_orders: I64 | None = None
    max_levels: I64 | None = None
    price_step: Text | None = None
    amount_step: Text | None = None
    min_notional: Text | None = None
    max_notional: Text | None = None
    max_open_orders: I64 | None = None
    price_band: Text | None = None
    max_order_amount: Text | None = None

    def entry(self, config: EngineConfig) -> MarketConfig:
        settings: dict[str, Any] = {
            name: getattr(self, name)
            for name in self.__struct_fields__
            if getattr(self, name) is not None
        }
        settings.setdefault("max_orders", config.added_market_orders)
        settings.setdefault("max_levels", config.added_market_levels)
        return MarketConfig(**settings)


def optional_market_settings() -> tuple[str, ...]:
    """The settings ``market.add`` may leave out, in ``MarketConfig``'s order."""
    return tuple(f.name for f in fields(MarketConfig) if f.name not in REQUIRED_MARKET_SETTINGS)


__all__ = [
    "REQUIRED_MARKET_SETTINGS",
    "AssetAdd",
    "CatalogCall",
    "MarketAdd",
    "optional_market_settings",
]
