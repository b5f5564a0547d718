"""The catalog of assets and markets, and its two commands ADD_ASSET and ADD_MARKET
(docs/engine.md, "Adding assets and markets").

The config's assets and markets are the genesis catalog; the commands append to it.
Their rules are the config's own (``core.config``), applied to one new entry against
the catalog as it is: ``new_asset`` and ``new_market`` return the validated entry or
raise ``CatalogRefused`` with the result code and a message naming the setting. Both
engines and the gateways call them, so a refusal reads the same everywhere.

A command travels (the wire, the log) as the JSON of its config table:
``catalog_payload`` and ``decode_catalog``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from core.config import (
    _NAME_RE,
    AssetConfig,
    EngineConfig,
    Market,
    MarketConfig,
    _build_asset,
    _build_market,
    _convert,
)
from core.errors import ConfigError, MatchdError
from core.schema import ASSET_NAME_LENGTH, Result
from core.statehash import CANON_ASSET_DTYPE, CANON_MARKET_DTYPE

#: Longest name of an added market (bytes): the history's ``market`` columns are
#: VARCHAR(30) (ViaBTC's).
MARKET_NAME_LENGTH = 30
#: Longest JSON text of one catalog command.
MAX_PAYLOAD_BYTES = 4096


class CatalogRefused(MatchdError):
    """An ADD_ASSET or ADD_MARKET that the catalog refuses: ``code`` and why."""

    def __init__(self, code: Result, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _checked(cls: type[Any], raw: object, what: str) -> Any:
    """``raw`` (an instance of ``cls``) with every field of the type the config
    takes, or ``CatalogRefused(INVALID_ARGUMENT)``."""
    if not isinstance(raw, cls):
        raise CatalogRefused(Result.INVALID_ARGUMENT, f"{what} must be a {cls.__name__}")
    try:
        return _convert(cls, _set_fields(raw), what)
    except ConfigError as exc:
        raise CatalogRefused(Result.INVALID_ARGUMENT, str(exc)) from None


def _set_fields(raw: AssetConfig | MarketConfig) -> dict[str, Any]:
    """The fields of a config table that are set (None: left to the default)."""
    return {k: v for k, v in asdict(raw).items() if v is not None}


def _check_name(kind: str, name: str, longest: int) -> None:
    if not _NAME_RE.fullmatch(name) or len(name.encode()) > longest:
        raise CatalogRefused(
            Result.INVALID_ARGUMENT,
            f"{kind} name {name!r} must be 1..{longest} bytes of A-Z a-z 0-9 _ . - "
            "(not starting with _ . -)",
        )


def new_asset(config: EngineConfig, raw: AssetConfig) -> AssetConfig:
    """``raw`` as the catalog's next asset, checked: INVALID_ARGUMENT (its form),
    ASSET_EXISTS, ASSET_TABLE_FULL, in that order."""
    raw = _checked(AssetConfig, raw, "asset")
    _check_name("asset", raw.name, ASSET_NAME_LENGTH)
    try:
        _build_asset(len(config.assets), raw, [])
    except ConfigError as exc:
        raise CatalogRefused(Result.INVALID_ARGUMENT, str(exc)) from None
    if config.asset(raw.name) is not None:
        raise CatalogRefused(Result.ASSET_EXISTS, f"asset {raw.name!r} exists")
    if len(config.assets) >= config.asset_slots:
        raise CatalogRefused(
            Result.ASSET_TABLE_FULL,
            f"the catalog holds engine.max_assets = {config.asset_slots} assets",
        )
    return raw


def new_market(config: EngineConfig, raw: MarketConfig) -> Market:
    """``raw`` as the catalog's next market, checked: INVALID_ARGUMENT (the name's
    form), MARKET_EXISTS, UNKNOWN_ASSET, INVALID_ARGUMENT (every other rule of the
    config, and the reserved room), MARKET_TABLE_FULL, in that order."""
    raw = _checked(MarketConfig, raw, "market")
    _check_name("market", raw.name, MARKET_NAME_LENGTH)
    if config.market(raw.name) is not None:
        raise CatalogRefused(Result.MARKET_EXISTS, f"market {raw.name!r} exists")
    for asset in (raw.stock, raw.money):
        if config.asset(asset) is None:
            raise CatalogRefused(
                Result.UNKNOWN_ASSET, f"market {raw.name}: asset {asset!r} is not in the catalog"
            )
    room = (
        ("max_orders", raw.max_orders, config.added_market_orders, "added_market_orders"),
        ("max_levels", raw.max_levels, config.added_market_levels, "added_market_levels"),
    )
    for what, value, most, setting in room:
        if value > most:
            raise CatalogRefused(
                Result.INVALID_ARGUMENT,
                f"market {raw.name}: {what} {value} is above engine.{setting} = {most}, "
                "the room reserved for an added market",
            )
    try:
        market = _build_market(len(config.markets), raw, list(config.assets), [])
    except ConfigError as exc:
        raise CatalogRefused(Result.INVALID_ARGUMENT, str(exc)) from None
    if len(config.markets) >= config.market_slots:
        raise CatalogRefused(
            Result.MARKET_TABLE_FULL,
            f"the catalog holds engine.max_markets = {config.market_slots} markets",
        )
    return market


def grown(config: EngineConfig, raw: AssetConfig | MarketConfig) -> EngineConfig:
    """``config`` after ADD_ASSET (``raw`` an ``AssetConfig``) or ADD_MARKET (a
    ``MarketConfig``): checked by ``new_asset``/``new_market`` (``CatalogRefused`` as
    an engine would refuse it) and appended (``with_asset``/``with_market``)."""
    if isinstance(raw, AssetConfig):
        return with_asset(config, new_asset(config, raw))
    return with_market(config, new_market(config, raw))


def refusal(config: EngineConfig, raw: AssetConfig | MarketConfig) -> CatalogRefused | None:
    """Why the catalog ``config`` refuses ADD_ASSET (``raw`` an ``AssetConfig``) or
    ADD_MARKET (a ``MarketConfig``), or None: what an engine would answer, with the
    message (the engines answer the code only)."""
    try:
        grown(config, raw)
    except CatalogRefused as refused:
        return refused
    return None


def with_asset(config: EngineConfig, raw: AssetConfig) -> EngineConfig:
    """``config`` with ``raw`` (checked by ``new_asset``) as its next asset."""
    asset = _build_asset(len(config.assets), raw, [])
    return replace(
        config, assets=(*config.assets, asset), genesis_assets=config.genesis_asset_count
    )


def with_market(config: EngineConfig, market: Market) -> EngineConfig:
    """``config`` with ``market`` (from ``new_market``) as its next market."""
    return replace(
        config, markets=(*config.markets, market), genesis_markets=config.genesis_market_count
    )


# ----------------------------------------------------------------- on the wire and log


def catalog_payload(raw: AssetConfig | MarketConfig) -> bytes:
    """The JSON text of an ADD_ASSET (``{"asset": {...}}``) or ADD_MARKET
    (``{"market": {...}}``): every field of its config table, keys sorted."""
    if not isinstance(raw, AssetConfig | MarketConfig):
        raise TypeError(f"a catalog command is an AssetConfig or a MarketConfig, not {raw!r}")
    kind = "asset" if isinstance(raw, AssetConfig) else "market"
    return json.dumps({kind: _set_fields(raw)}, sort_keys=True, separators=(",", ":")).encode()


def decode_catalog(payload: bytes) -> AssetConfig | MarketConfig:
    """The command of ``catalog_payload``'s text; ``ValueError`` says what is wrong
    (the entry is not checked against a catalog here: ``new_asset``/``new_market``)."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise ValueError("a catalog command is bytes")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"a catalog command is at most {MAX_PAYLOAD_BYTES} bytes")
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"a catalog command is not JSON: {exc}") from None
    if not isinstance(doc, dict) or len(doc) != 1:
        raise ValueError('a catalog command is {"asset": {...}} or {"market": {...}}')
    ((kind, table),) = doc.items()
    cls = {"asset": AssetConfig, "market": MarketConfig}.get(kind)
    if cls is None:
        raise ValueError(f"unknown catalog command {kind!r}")
    try:
        return _convert(cls, table, kind)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


# ----------------------------------------------------------------- state hash


def canonical_catalog(config: EngineConfig) -> tuple[np.ndarray, np.ndarray]:
    """The catalog sections of the state hash (CANON_ASSET_DTYPE, CANON_MARKET_DTYPE),
    in index order."""
    assets = np.zeros(len(config.assets), dtype=CANON_ASSET_DTYPE)
    for i, a in enumerate(config.assets):
        assets[i] = (a.name.encode(), a.prec, a.prec_show)
    markets = np.zeros(len(config.markets), dtype=CANON_MARKET_DTYPE)
    for i, m in enumerate(config.markets):
        markets[i] = (
            m.name.encode(), m.stock.index, m.money.index, m.stock_prec, m.money_prec,
            m.fee_prec, m.min_amount, m.max_amount, m.max_price, m.max_orders, m.max_levels,
        )  # fmt: skip
    return assets, markets
