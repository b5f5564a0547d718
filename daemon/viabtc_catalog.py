"""matchd's ``asset.add`` and ``market.add`` over JSON-RPC (docs/gateways.md, "Adding
assets and markets"): the params checked into the engine's catalog calls
(``ipc.wire_catalog``).

``asset.add [name, prec, prec_show?]`` adds an asset; ``market.add [settings]`` a
market, ``settings`` a JSON object with the keys of a ``[[markets]]`` table of the
config (decimals as text: ``{"name": "SOL_USDT", "stock": "SOL", "money": "USDT",
"stock_prec": 2, "money_prec": 4, "min_amount": "0.01"}``); a setting left out takes
the config's default (``max_orders`` and ``max_levels``: the room the engine
reserves for an added market). A param of the wrong type, an unknown or a missing
setting is refused here (code 1), and so is what the catalog refuses against the
catalog the gateway knows (``refusal``: ``core.catalog``'s rules, answered as the
engine answers them; the engine checks again). The result is ``{"status":
"success", "index": N}``, N the new entry's index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from core.arguments import ArgumentError
from core.catalog import CatalogRefused
from core.catalog import refusal as catalog_refusal
from core.config import EngineConfig
from ipc import wire

ASSET_METHOD: Final = "asset.add"
MARKET_METHOD: Final = "market.add"
#: asset.add's params: name, prec, then prec_show (optional).
ASSET_PARAMS: Final = (2, 3)
#: market.add's params: one JSON object.
MARKET_PARAMS: Final = 1


def _converted(table: dict[str, Any], kind: type[wire.CatalogCall], what: str) -> Any:
    try:
        return msgspec.convert(table, kind)
    except msgspec.ValidationError as exc:
        raise ArgumentError(f"{what}: {exc}") from None


def asset_add_call(params: Sequence[Any]) -> wire.AssetAdd:
    """asset.add's ``params`` as its call; ``ArgumentError`` naming the param."""
    name, prec, *rest = params
    table = {"name": name, "prec": prec}
    if rest:
        table["prec_show"] = rest[0]
    call: wire.AssetAdd = _converted(table, wire.AssetAdd, "asset")
    return call


def market_add_call(params: Sequence[Any]) -> wire.MarketAdd:
    """market.add's ``params`` (one object of ``[[markets]]`` settings) as its call;
    ``ArgumentError`` naming the setting."""
    (table,) = params
    if not isinstance(table, dict):
        raise ArgumentError(
            "market.add takes one param: a JSON object of a [[markets]] table's settings"
        )
    call: wire.MarketAdd = _converted(table, wire.MarketAdd, "market")
    return call


def refusal(config: EngineConfig, call: wire.AssetAdd | wire.MarketAdd) -> CatalogRefused | None:
    """Why the catalog ``config`` refuses ``call`` (``core.catalog``'s code and
    message, the engine's own), or None."""
    return catalog_refusal(config, call.entry(config))


__all__ = [
    "ASSET_METHOD",
    "ASSET_PARAMS",
    "MARKET_METHOD",
    "MARKET_PARAMS",
    "asset_add_call",
    "market_add_call",
    "refusal",
]
