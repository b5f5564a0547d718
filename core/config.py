"""Typed engine configuration: assets, markets and engine limits.

``parse_config(text)`` turns TOML text into a frozen ``EngineConfig``; reading the
file is the caller's job (core does no I/O). Every market is checked at load: a
limit that int64 fixed point cannot hold exactly is refused with a ``ConfigError``
naming the market, the limit and the reason.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields, replace
from decimal import Decimal
from typing import Any, Protocol, TypeVar, get_type_hints

from core.errors import ConfigError, ParseError
from core.fixed import format_units, is_exact, parse_decimal, to_units
from core.schema import (
    ASSET_NAME_LENGTH,
    MAX_FEE_PREC,
    MAX_PREC,
    MAX_SUPPLY_UNITS,
    MAX_USER_ID,
    PRICE_BAND_DEN,
    PRICE_BAND_PLACES,
)

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: Hard upper bounds for capacities, so that a typo cannot ask for terabytes.
MAX_ORDERS_PER_MARKET = 1 << 26
MAX_LEVELS_PER_SIDE = 1 << 22
MAX_USERS = 1 << 26
MAX_UPDATE_KEYS = 1 << 28
MAX_CLIENT_IDS = 1 << 28
#: Client order ids the table holds by default: 4M x 48 bytes (24-byte rows, at most
#: half full) = 192 MiB of address space, paid as it fills.
DEFAULT_MAX_CLIENT_IDS = 4_000_000
MAX_USER_LIMITS = 1 << 24
#: (user, market) pairs with risk limits of their own: 65,536 x 64 bytes (32-byte
#: rows, at most half full) = 4 MiB of address space, paid as it fills.
DEFAULT_MAX_USER_LIMITS = 65_536
#: The catalog's bounds (docs/engine.md, "Adding assets and markets").
MAX_ASSETS = 1024
MAX_MARKETS = 32767
#: Most resting orders one command may reach. A command's log record must fit 64 MiB:
#: a maker reached costs at most ten events of at most 188 bytes each.
DEFAULT_MAX_MATCHES = 10_000
MAX_MATCHES = 30_000


@dataclass(frozen=True, slots=True)
class AssetConfig:
    """An asset. ``prec`` is the internal scale (ViaBTC's prec_save); ``prec_show`` the
    scale of balance.update changes and of shown balances (defaults to ``prec``)."""

    name: str
    prec: int
    prec_show: int | None = None


@dataclass(frozen=True, slots=True)
class MarketConfig:
    """A market as written in the config file (decimals as strings)."""

    name: str
    stock: str
    money: str
    stock_prec: int
    money_prec: int
    fee_prec: int = 4
    min_amount: str = "0.01"
    max_amount: str | None = None
    max_price: str | None = None
    max_orders: int = 1_000_000
    max_levels: int = 65_536
    #: Pre-trade risk limits (docs/engine.md, "Market risk limits"); None: none.
    price_step: str | None = None
    amount_step: str | None = None
    min_notional: str | None = None
    max_notional: str | None = None
    max_open_orders: int | None = None
    #: A fraction, e.g. "0.1": a limit price more than that away from the last trade
    #: price is refused (exact at 6 places, 0 < band < 1).
    price_band: str | None = None
    max_order_amount: str | None = None


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Engine-wide settings."""

    fee_user: int = 0
    max_users: int = 1_000_000
    max_update_keys: int = 4_000_000
    max_matches: int = DEFAULT_MAX_MATCHES
    max_client_ids: int = DEFAULT_MAX_CLIENT_IDS
    max_user_limits: int = DEFAULT_MAX_USER_LIMITS
    #: Room for assets and markets added at run time (None: as many as configured).
    max_assets: int | None = None
    max_markets: int | None = None
    added_market_orders: int = 1_000_000
    added_market_levels: int = 65_536


@dataclass(frozen=True, slots=True)
class Asset:
    """A validated asset."""

    index: int
    name: str
    prec: int
    prec_show: int


@dataclass(frozen=True, slots=True)
class Market:
    """A validated market with the integer constants the kernels use.

    * ``stock_scale`` = 10**(stock.prec - stock_prec): stock units per lot;
    * ``deal_scale`` = 10**(money.prec - money_prec - stock_prec): money units per
      tick x lot, so ``deal = price_ticks * lots * deal_scale`` exactly;
    * ``fee_den`` = 10**fee_prec: fee rates are integers over it;
    * ``min_amount``, ``max_amount`` in lots, ``max_price`` in ticks;
    * risk limits: ``price_step`` in ticks and ``amount_step`` in lots (1: none),
      ``min_notional`` and ``max_notional`` in money units, ``max_open_orders``
      resting orders per user, ``price_band`` in millionths of the last price,
      ``max_order_amount`` in lots (0: none).
    """

    index: int
    name: str
    stock: Asset
    money: Asset
    stock_prec: int
    money_prec: int
    fee_prec: int
    stock_scale: int
    deal_scale: int
    fee_den: int
    min_amount: int
    max_amount: int
    max_price: int
    max_orders: int
    max_levels: int
    price_step: int = 1
    amount_step: int = 1
    min_notional: int = 0
    max_notional: int = 0
    max_open_orders: int = 0
    price_band: int = 0
    max_order_amount: int = 0


#: The risk limit fields of ``Market``, in ``RiskLimit`` order (core/schema.py).
LIMIT_NAMES = (
    "price_step",
    "amount_step",
    "min_notional",
    "max_notional",
    "max_open_orders",
    "price_band",
    "max_order_amount",
)


#: The value of each risk limit that means "no limit" (``Market``'s defaults), in
#: LIMIT_NAMES order: 1 for the steps, 0 for the others.
_DEFAULTS = {f.name: f.default for f in fields(Market) if isinstance(f.default, int)}
NO_LIMITS: tuple[int, ...] = tuple(_DEFAULTS[name] for name in LIMIT_NAMES)


def with_limits(market: Market, limits: Sequence[int]) -> Market:
    """``market`` with the risk limits ``limits`` (seven values, in LIMIT_NAMES order)."""
    step, lot_step, low, high, most, band, biggest = (int(v) for v in limits)
    return replace(
        market,
        price_step=step,
        amount_step=lot_step,
        min_notional=low,
        max_notional=high,
        max_open_orders=most,
        price_band=band,
        max_order_amount=biggest,
    )


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """The whole validated configuration of an engine."""

    assets: tuple[Asset, ...]
    markets: tuple[Market, ...]
    fee_user: int
    max_users: int
    max_update_keys: int
    #: Most resting orders one command may reach (docs/engine.md, "Reach").
    max_matches: int = DEFAULT_MAX_MATCHES
    #: Most client order ids ever recorded (docs/engine.md, "Client order ids").
    max_client_ids: int = DEFAULT_MAX_CLIENT_IDS
    #: Most (user, market) pairs with risk limits of their own (docs/engine.md, "User
    #: risk limits").
    max_user_limits: int = DEFAULT_MAX_USER_LIMITS
    #: The catalog's room (docs/engine.md, "Adding assets and markets"): 0 means as
    #: many as the config defines (``build_config`` always sets them).
    max_assets: int = 0
    max_markets: int = 0
    #: Order pool slots and price levels per side reserved for each market that can
    #: still be added.
    added_market_orders: int = 1_000_000
    added_market_levels: int = 65_536

    #: How many of ``assets`` and ``markets`` the config file defined (the genesis
    #: catalog; the rest were added at run time). -1: all of them.
    genesis_assets: int = -1
    genesis_markets: int = -1

    def genesis(self) -> EngineConfig:
        """This config with the genesis catalog only: what the config file says."""
        return replace(
            self,
            assets=self.assets[: self.genesis_asset_count],
            markets=self.markets[: self.genesis_market_count],
        )

    @property
    def genesis_asset_count(self) -> int:
        """Assets of the genesis catalog."""
        return len(self.assets) if self.genesis_assets < 0 else self.genesis_assets

    @property
    def genesis_market_count(self) -> int:
        """Markets of the genesis catalog."""
        return len(self.markets) if self.genesis_markets < 0 else self.genesis_markets

    def slot_capacity(self, index: int) -> tuple[int, int]:
        """(order pool slots, price levels per side) of market slot ``index``: a
        genesis market's own, or the room reserved for an added one."""
        if index < self.genesis_market_count:
            market = self.markets[index]
            return market.max_orders, market.max_levels
        return self.added_market_orders, self.added_market_levels

    @property
    def asset_slots(self) -> int:
        """Assets the engine's arrays have room for."""
        return max(self.max_assets, len(self.assets))

    @property
    def market_slots(self) -> int:
        """Markets the engine's arrays have room for."""
        return max(self.max_markets, len(self.markets))

    def asset(self, name: str) -> Asset | None:
        """The asset called ``name``, or None."""
        return _by_name(self.assets, name)

    def market(self, name: str) -> Market | None:
        """The market called ``name``, or None."""
        return _by_name(self.markets, name)


class _Named(Protocol):
    @property
    def name(self) -> str: ...


_N = TypeVar("_N", bound=_Named)


def _by_name(items: tuple[_N, ...], name: str) -> _N | None:
    for item in items:
        if item.name == name:
            return item
    return None


def parse_config(text: str) -> EngineConfig:
    """Parse and validate TOML ``text``; ``ConfigError`` says what is wrong."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config is not valid TOML: {exc}") from exc
    # Only the engine's own tables; the daemon's settings live beside them.
    engine = _convert(LimitsConfig, raw.get("engine", {}), "[engine]")
    assets = [
        _convert(AssetConfig, item, f"[[assets]] #{i + 1}")
        for i, item in enumerate(_table_list(raw, "assets"))
    ]
    markets = [
        _convert(MarketConfig, item, f"[[markets]] #{i + 1}")
        for i, item in enumerate(_table_list(raw, "markets"))
    ]
    return build_config(engine, assets, markets)


_T = TypeVar("_T")


def _table_list(raw: dict[str, Any], key: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"config: {key} must be an array of tables ([[{key}]])")
    return value


def _convert(cls: type[_T], raw: object, where: str) -> _T:
    """Build the flat config dataclass ``cls`` from a TOML table, strictly.

    Unknown keys, missing required keys and wrong types are refused with a message
    naming the table and the key (a TOML boolean is not an integer).
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"config: {where} must be a table")
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    for key in raw:
        if key not in known:
            raise ConfigError(f"config: {where}: unknown setting {key!r}")
    values: dict[str, Any] = {}
    for name, f in known.items():
        if name not in raw:
            if f.default is MISSING:
                raise ConfigError(f"config: {where}: missing setting {name!r}")
            continue
        value = raw[name]
        expected = hints[name]
        allowed = tuple(
            t for t in getattr(expected, "__args__", (expected,)) if t is not type(None)
        )
        if isinstance(value, bool) or not isinstance(value, allowed):
            kinds = " or ".join(t.__name__ for t in allowed)
            raise ConfigError(f"config: {where}: {name} must be {kinds}, not {value!r}")
        values[name] = value
    return cls(**values)


def build_config(
    limits: LimitsConfig, assets: list[AssetConfig], markets: list[MarketConfig]
) -> EngineConfig:
    """Validate raw settings into an ``EngineConfig``."""
    if not 0 <= limits.fee_user <= MAX_USER_ID:
        raise ConfigError(f"engine.fee_user {limits.fee_user} is not a user id 0..{MAX_USER_ID}")
    _check_range("engine.max_users", limits.max_users, 1, MAX_USERS)
    _check_range("engine.max_update_keys", limits.max_update_keys, 1, MAX_UPDATE_KEYS)
    _check_range("engine.max_matches", limits.max_matches, 1, MAX_MATCHES)
    _check_range("engine.max_client_ids", limits.max_client_ids, 1, MAX_CLIENT_IDS)
    _check_range("engine.max_user_limits", limits.max_user_limits, 1, MAX_USER_LIMITS)
    if not assets:
        raise ConfigError("config has no [[assets]]")
    built_assets: list[Asset] = []
    for index, raw in enumerate(assets):
        built_assets.append(_build_asset(index, raw, built_assets))
    built_markets: list[Market] = []
    for index, raw_market in enumerate(markets):
        built_markets.append(_build_market(index, raw_market, built_assets, built_markets))
    if len(built_markets) > MAX_MARKETS:
        raise ConfigError(f"too many markets (at most {MAX_MARKETS})")
    if len(built_assets) > MAX_ASSETS:
        raise ConfigError(f"too many assets (at most {MAX_ASSETS})")
    max_assets = len(built_assets) if limits.max_assets is None else limits.max_assets
    max_markets = len(built_markets) if limits.max_markets is None else limits.max_markets
    _check_range("engine.max_assets", max_assets, len(built_assets), MAX_ASSETS)
    _check_range("engine.max_markets", max_markets, len(built_markets), MAX_MARKETS)
    _check_range("engine.added_market_orders", limits.added_market_orders, 1, MAX_ORDERS_PER_MARKET)
    _check_range("engine.added_market_levels", limits.added_market_levels, 1, MAX_LEVELS_PER_SIDE)
    return EngineConfig(
        assets=tuple(built_assets),
        markets=tuple(built_markets),
        fee_user=limits.fee_user,
        max_users=limits.max_users,
        max_update_keys=limits.max_update_keys,
        max_matches=limits.max_matches,
        max_client_ids=limits.max_client_ids,
        max_user_limits=limits.max_user_limits,
        max_assets=max_assets,
        max_markets=max_markets,
        added_market_orders=limits.added_market_orders,
        added_market_levels=limits.added_market_levels,
        genesis_assets=len(built_assets),
        genesis_markets=len(built_markets),
    )


def _check_range(what: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{what} = {value} is outside {low}..{high}")


def _check_name(kind: str, name: str, taken: list[Any]) -> None:
    if len(name.encode()) > ASSET_NAME_LENGTH and kind == "asset":
        raise ConfigError(f"asset name {name!r} is longer than {ASSET_NAME_LENGTH} bytes")
    if not _NAME_RE.fullmatch(name) or len(name) > 32:
        raise ConfigError(f"{kind} name {name!r} must be 1..32 of A-Z a-z 0-9 _ . -")
    if any(item.name == name for item in taken):
        raise ConfigError(f"{kind} {name!r} is defined twice")


def _build_asset(index: int, raw: AssetConfig, taken: list[Asset]) -> Asset:
    _check_name("asset", raw.name, taken)
    _check_range(f"asset {raw.name}: prec", raw.prec, 0, MAX_PREC)
    prec_show = raw.prec if raw.prec_show is None else raw.prec_show
    _check_range(f"asset {raw.name}: prec_show", prec_show, 0, raw.prec)
    return Asset(index=index, name=raw.name, prec=raw.prec, prec_show=prec_show)


def _decimal_limit(market: str, what: str, text: str, places: int) -> int:
    """Parse a positive decimal limit that must be exact at ``places``; returns units."""
    try:
        value = parse_decimal(text)
    except ParseError as exc:
        raise ConfigError(f"market {market}: {what} {text!r}: {exc}") from exc
    if value <= 0:
        raise ConfigError(f"market {market}: {what} {text!r} must be positive")
    if not is_exact(value, places):
        raise ConfigError(
            f"market {market}: {what} {text!r} has more decimal places than the "
            f"{places} this market keeps, so it cannot be represented exactly"
        )
    return to_units(value, places)


def _build_market(
    index: int, raw: MarketConfig, assets: list[Asset], taken: list[Market]
) -> Market:
    name = raw.name
    _check_name("market", name, taken)
    stock = _by_name(tuple(assets), raw.stock)
    money = _by_name(tuple(assets), raw.money)
    if stock is None or money is None:
        missing = raw.stock if stock is None else raw.money
        raise ConfigError(f"market {name}: asset {missing!r} is not defined in [[assets]]")
    if stock.name == money.name:
        raise ConfigError(f"market {name}: stock and money are the same asset")
    _check_range(f"market {name}: stock_prec", raw.stock_prec, 0, stock.prec)
    _check_range(f"market {name}: money_prec", raw.money_prec, 0, money.prec)
    _check_range(f"market {name}: fee_prec", raw.fee_prec, 0, MAX_FEE_PREC)
    # ViaBTC's load-time rules: a deal (price x amount) and both fees fit the assets'
    # internal scales.
    if raw.stock_prec + raw.money_prec > money.prec:
        raise ConfigError(
            f"market {name}: stock_prec + money_prec = {raw.stock_prec + raw.money_prec} "
            f"but {money.name} keeps {money.prec} places, so price x amount would not be exact"
        )
    if raw.stock_prec + raw.fee_prec > stock.prec:
        raise ConfigError(
            f"market {name}: stock_prec + fee_prec = {raw.stock_prec + raw.fee_prec} "
            f"but {stock.name} keeps {stock.prec} places (ViaBTC refuses this market too)"
        )
    if raw.money_prec + raw.fee_prec > money.prec:
        raise ConfigError(
            f"market {name}: money_prec + fee_prec = {raw.money_prec + raw.fee_prec} "
            f"but {money.name} keeps {money.prec} places (ViaBTC refuses this market too)"
        )
    _check_range(f"market {name}: max_orders", raw.max_orders, 1, MAX_ORDERS_PER_MARKET)
    _check_range(f"market {name}: max_levels", raw.max_levels, 1, MAX_LEVELS_PER_SIDE)
    stock_scale = 10 ** (stock.prec - raw.stock_prec)
    deal_scale = 10 ** (money.prec - raw.money_prec - raw.stock_prec)
    min_amount = _decimal_limit(name, "min_amount", raw.min_amount, raw.stock_prec)
    # An amount must be holdable: amount x stock_scale units of stock within the supply
    # limit. A price must be payable for one lot: price x deal_scale within it too.
    amount_cap = MAX_SUPPLY_UNITS // stock_scale
    price_cap = MAX_SUPPLY_UNITS // deal_scale
    max_amount = amount_cap
    if raw.max_amount is not None:
        max_amount = _decimal_limit(name, "max_amount", raw.max_amount, raw.stock_prec)
        if max_amount > amount_cap:
            raise ConfigError(
                f"market {name}: max_amount {raw.max_amount} is {max_amount * stock_scale} units "
                f"of {stock.name} (prec {stock.prec}), beyond the int64 supply limit of "
                f"{MAX_SUPPLY_UNITS} units; at most {format_units(amount_cap, raw.stock_prec)}"
            )
    max_price = price_cap
    if raw.max_price is not None:
        max_price = _decimal_limit(name, "max_price", raw.max_price, raw.money_prec)
        if max_price > price_cap:
            raise ConfigError(
                f"market {name}: max_price {raw.max_price} for one lot costs "
                f"{max_price * deal_scale} units of {money.name} (prec {money.prec}), beyond "
                f"the int64 supply limit of {MAX_SUPPLY_UNITS} units; at most "
                f"{format_units(price_cap, raw.money_prec)}"
            )
    if min_amount > max_amount:
        raise ConfigError(
            f"market {name}: min_amount {raw.min_amount} is above max_amount "
            f"{format_units(max_amount, raw.stock_prec)}"
        )
    price_step, amount_step, min_notional, max_notional, max_open_orders = _risk_limits(
        raw, money, max_price, max_amount
    )

    return Market(
        index=index,
        name=name,
        stock=stock,
        money=money,
        stock_prec=raw.stock_prec,
        money_prec=raw.money_prec,
        fee_prec=raw.fee_prec,
        stock_scale=stock_scale,
        deal_scale=deal_scale,
        fee_den=10**raw.fee_prec,
        min_amount=min_amount,
        max_amount=max_amount,
        max_price=max_price,
        max_orders=raw.max_orders,
        max_levels=raw.max_levels,
        price_step=price_step,
        amount_step=amount_step,
        min_notional=min_notional,
        max_notional=max_notional,
        max_open_orders=max_open_orders,
        price_band=_price_band(raw),
        max_order_amount=_max_order_amount(raw, max_amount),
    )


def _risk_limits(
    raw: MarketConfig, money: Asset, max_price: int, max_amount: int
) -> tuple[int, int, int, int, int]:
    """(price_step ticks, amount_step lots, min_notional, max_notional money units,
    max_open_orders) of ``raw``: steps 1, the others 0 where unset."""
    name = raw.name
    price_step = amount_step = 1
    min_notional = max_notional = max_open_orders = 0
    if raw.price_step is not None:
        price_step = _decimal_limit(name, "price_step", raw.price_step, raw.money_prec)
        if price_step > max_price:
            raise ConfigError(f"market {name}: price_step {raw.price_step} is above max_price")
    if raw.amount_step is not None:
        amount_step = _decimal_limit(name, "amount_step", raw.amount_step, raw.stock_prec)
        if amount_step > max_amount:
            raise ConfigError(f"market {name}: amount_step {raw.amount_step} is above max_amount")
    if raw.min_notional is not None:
        min_notional = _decimal_limit(name, "min_notional", raw.min_notional, money.prec)
    if raw.max_notional is not None:
        max_notional = _decimal_limit(name, "max_notional", raw.max_notional, money.prec)
    for what, value in (("min_notional", min_notional), ("max_notional", max_notional)):
        if value > MAX_SUPPLY_UNITS:
            raise ConfigError(
                f"market {name}: {what} is above the supply limit of {MAX_SUPPLY_UNITS} "
                f"units of {money.name}"
            )
    if max_notional and min_notional > max_notional:
        raise ConfigError(
            f"market {name}: min_notional {raw.min_notional} is above max_notional "
            f"{raw.max_notional}"
        )
    if raw.max_open_orders is not None:
        _check_range(f"market {name}: max_open_orders", raw.max_open_orders, 1, raw.max_orders)
        max_open_orders = raw.max_open_orders
    return price_step, amount_step, min_notional, max_notional, max_open_orders


def _max_order_amount(raw: MarketConfig, max_amount: int) -> int:
    """``raw.max_order_amount`` in lots (0: none), at most ``max_amount``."""
    if raw.max_order_amount is None:
        return 0
    lots = _decimal_limit(raw.name, "max_order_amount", raw.max_order_amount, raw.stock_prec)
    if lots > max_amount:
        raise ConfigError(
            f"market {raw.name}: max_order_amount {raw.max_order_amount} is above max_amount"
        )
    return lots


def _price_band(raw: MarketConfig) -> int:
    """``raw.price_band`` in millionths (0: none); a fraction in (0, 1)."""
    if raw.price_band is None:
        return 0
    band = _decimal_limit(raw.name, "price_band", raw.price_band, PRICE_BAND_PLACES)
    if band >= PRICE_BAND_DEN:
        raise ConfigError(
            f"market {raw.name}: price_band {raw.price_band} must be below 1 (a fraction "
            "of the last price)"
        )
    return band


def decimal_of(units: int, places: int) -> Decimal:
    """``units`` * 10**-places as an exact Decimal."""
    return Decimal(units).scaleb(-places)
