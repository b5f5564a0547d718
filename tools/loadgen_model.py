"""Traffic models of ``matchd-loadgen``: a seed in, a deterministic stream of ViaBTC calls out.

A ``TrafficModel`` (named in ``MODELS``, or TOML with the same keys) says who trades
what; a ``TrafficGenerator`` turns it and a seed into ``Op(method, params)``: ViaBTC's
JSON-RPC params as the HTTP gateway takes them (shared/reference/viabtc-api.md §4.3).
Makers quote a ladder of ``levels`` prices a side on a grid around a mid that walks at
random within ``band_pct`` of ``start_price``, cancelling the quotes it left and putting
the missing levels (ViaBTC has no replace), or, with ``mass_quotes``, set the whole
ladder in one ``order.quote`` each time the mid moves (matchd's mass quote); takers
cross the spread with limit or market orders; random cancels; deposits and withdrawals
with unique business ids. Answers come back through ``on_answer`` (order ids for
cancels, fills seen); without them the operations stay valid. Money is integers: prices
in ticks of ``10**-money_prec``, amounts in units of ``10**-stock_prec``, lots of
``min_amount``.
"""

from __future__ import annotations

import json
import random
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final, NamedTuple, cast

import msgspec

from core.errors import ConfigError, ParseError
from core.fixed import format_units, is_exact, parse_decimal, parse_units, to_units

ASK: Final = 1
BID: Final = 2
MAX_USER_ID: Final = 2**32 - 1
MAX_SOURCE_LENGTH: Final = 30
_PENDING: Final = -1  # a quote sent, its answer not back yet
_CANCELLING: Final = -2  # a cancel of the quote sent, its answer not back yet

Param = int | str | dict[str, str] | list[list[str]]
#: Most levels a side of one ``order.quote`` (core.schema.MAX_QUOTE_LEVELS).
MAX_QUOTE_LEVELS: Final = 32


class Op(NamedTuple):
    """One JSON-RPC call: ``method`` and its ``params`` in ViaBTC's order."""

    method: str
    params: tuple[Param, ...]


def _positive_multiple(key: str, text: str, places: int) -> None:
    try:
        value = parse_decimal(text)
    except ParseError:
        raise ValueError(f"{key} = {text!r} is not a decimal") from None
    if value <= 0 or not is_exact(value, places):
        raise ValueError(f"{key} = {text!r} must be positive with at most {places} decimals")


def _is_rate(text: str) -> bool:
    try:
        return 0 <= parse_decimal(text) < 1
    except ParseError:
        return False


class MarketModel(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A market the model trades (``[[markets]]``); precisions as in the server's config."""

    name: str = "BTC_USDT"
    stock: str = "BTC"
    money: str = "USDT"
    stock_prec: int = 6
    money_prec: int = 2
    min_amount: str = "0.0001"
    start_price: str = "30000"

    def __post_init__(self) -> None:
        for key in ("name", "stock", "money"):
            text = getattr(self, key)
            if not 1 <= len(text) <= 15 or not text.isprintable():
                raise ValueError(f"{key} = {text!r} must be 1 to 15 printable characters")
        for key in ("stock_prec", "money_prec"):
            if not 0 <= getattr(self, key) <= 18:
                raise ValueError(f"{key} = {getattr(self, key)} is outside 0..18")
        _positive_multiple("min_amount", self.min_amount, self.stock_prec)
        _positive_multiple("start_price", self.start_price, self.money_prec)


class TrafficModel(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Who trades what, how much and how often. Weights are relative shares of operations;
    takers are every user that is not a maker (deposits go to any user)."""

    markets: tuple[MarketModel, ...] = (MarketModel(),)
    makers: int = 4
    takers: int = 16
    first_user: int = 1
    levels: int = 5
    level_step_ticks: int = 5
    half_spread_ticks: int = 5
    walk_ticks: int = 3
    band_pct: int = 50
    quote_lots: int = 10
    take_lots_max: int = 5
    fund_lots: int = 100_000
    market_order_pct: int = 25
    maker_weight: int = 50
    taker_weight: int = 30
    cancel_weight: int = 10
    deposit_weight: int = 5
    withdraw_weight: int = 5
    taker_fee: str = "0.002"
    maker_fee: str = "0.001"
    source: str = "loadgen"
    #: Makers set their ladder with one ``order.quote`` (both sides) instead of
    #: cancels and puts; ``levels`` is then at most MAX_QUOTE_LEVELS.
    mass_quotes: bool = False

    def __post_init__(self) -> None:
        for key, (low, high) in _INT_RANGES.items():
            if not low <= getattr(self, key) <= high:
                raise ValueError(f"{key} = {getattr(self, key)} is outside {low}..{high}")
        self._check_users()
        self._check_orders()

    def _check_users(self) -> None:
        names = [m.name for m in self.markets]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"markets = {names} must name one market or more, each once")
        if self.makers + self.takers == 0:
            raise ValueError("makers = 0 and takers = 0: the model has no user")
        if self.first_user + self.makers + self.takers - 1 > MAX_USER_ID:
            raise ValueError(f"first_user = {self.first_user}: user ids beyond {MAX_USER_ID}")
        for key, users in (("maker_weight", "makers"), ("taker_weight", "takers")):
            if getattr(self, key) and not getattr(self, users):
                raise ValueError(f"{key} = {getattr(self, key)} needs {users} >= 1")
        if not sum(getattr(self, key) for key in _WEIGHTS):
            raise ValueError(f"the weights ({', '.join(_WEIGHTS)}) are all 0")

    def _check_orders(self) -> None:
        if self.fund_lots < 2 * self.levels * max(self.quote_lots, self.take_lots_max):
            raise ValueError(f"fund_lots = {self.fund_lots} is below 2 x levels x lots per order")
        for key in ("taker_fee", "maker_fee"):
            if not _is_rate(getattr(self, key)):
                raise ValueError(f"{key} = {getattr(self, key)!r} is not a decimal in [0, 1)")
        if self.mass_quotes and self.levels > MAX_QUOTE_LEVELS:
            raise ValueError(
                f"levels = {self.levels}: one order.quote takes at most {MAX_QUOTE_LEVELS}"
            )
        if len(self.source.encode()) > MAX_SOURCE_LENGTH:
            raise ValueError(f"source = {self.source!r} is over {MAX_SOURCE_LENGTH} bytes")
        reach = self.half_spread_ticks + self.levels * self.level_step_ticks
        for i, m in enumerate(self.markets):
            start = to_units(parse_decimal(m.start_price), m.money_prec)
            if start * (100 - self.band_pct) // 100 - reach < 1:
                raise ValueError(
                    f"markets[{i}].start_price = {m.start_price!r}: the lowest bid of the "
                    f"band (band_pct, half_spread_ticks, levels x level_step_ticks) is <= 0"
                )


_INT_RANGES: Final = {
    "makers": (0, 100_000), "takers": (0, 10_000_000), "first_user": (1, MAX_USER_ID),
    "levels": (1, 1000), "level_step_ticks": (1, 10**9), "half_spread_ticks": (1, 10**9),
    "walk_ticks": (0, 10**9), "band_pct": (1, 99), "quote_lots": (1, 10**9),
    "take_lots_max": (1, 10**9), "fund_lots": (1, 10**12), "market_order_pct": (0, 100),
    "maker_weight": (0, 10**6), "taker_weight": (0, 10**6), "cancel_weight": (0, 10**6),
    "deposit_weight": (0, 10**6), "withdraw_weight": (0, 10**6),
}  # fmt: skip
_WEIGHTS: Final = tuple(key for key in _INT_RANGES if key.endswith("_weight"))


_ETH_USDT: Final = MarketModel("ETH_USDT", "ETH", "USDT", 5, 2, "0.001", "2000")
_ETH_BTC: Final = MarketModel("ETH_BTC", "ETH", "BTC", 4, 6, "0.001", "0.05")

#: The named models (``matchd-loadgen --model NAME``); the markets are etc/matchd.toml's.
MODELS: Final[Mapping[str, TrafficModel]] = MappingProxyType(
    {
        "mm-takers": TrafficModel(),
        "makers-only": TrafficModel(
            takers=0, maker_weight=90, taker_weight=0, cancel_weight=10,
            deposit_weight=0, withdraw_weight=0,
        ),
        "deposits": TrafficModel(
            makers=0, takers=1000, maker_weight=0, taker_weight=0, cancel_weight=0,
            deposit_weight=60, withdraw_weight=40,
        ),
        "multi-market": TrafficModel(
            markets=(MarketModel(), _ETH_USDT, _ETH_BTC), makers=8, takers=1000,
        ),
        "mass-quotes": TrafficModel(mass_quotes=True, levels=10),
    }
)  # fmt: skip


def parse_model(text: str, where: str = "traffic model") -> TrafficModel:
    """A ``TrafficModel`` from TOML ``text``; ``ConfigError`` names the key at fault."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    try:
        return msgspec.convert(raw, TrafficModel)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {_name_key(str(exc))}") from None


def load_model(spec: str) -> TrafficModel:
    """The model named ``spec`` in ``MODELS``, else the TOML file at path ``spec``."""
    if spec in MODELS:
        return MODELS[spec]
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"no traffic model {spec!r}: not one of {sorted(MODELS)} nor a file")
    return parse_model(path.read_text(encoding="utf-8"), str(path))


def model_to_toml(model: TrafficModel) -> str:
    """``model`` as TOML that ``parse_model`` reads back equal."""
    lines = [
        f"{k} = {_toml(v)}" for k, v in msgspec.structs.asdict(model).items() if k != "markets"
    ]
    for market in model.markets:
        lines += ["", "[[markets]]"]
        lines += [f"{k} = {_toml(v)}" for k, v in msgspec.structs.asdict(market).items()]
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else json.dumps(value, ensure_ascii=False)


_AT_RE: Final = re.compile(r"(.*?)(?: - at `\$\.?([^`]*)`)?", re.DOTALL)
_UNKNOWN_RE: Final = re.compile(r"Object contains unknown field `(.+)`")


def _name_key(message: str) -> str:
    match = _AT_RE.fullmatch(message)
    assert match is not None  # noqa: S101 - the pattern matches any text
    what, path = match.group(1), match.group(2) or ""
    unknown = _UNKNOWN_RE.fullmatch(what)
    if unknown is not None:
        key = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
        return f"unknown key {key!r}"
    return f"{path}: {what}" if path else what


@dataclass(slots=True)
class _Order:
    """An order as the generator knows it: placed, and not yet seen to fill or go."""

    user: int
    market: int
    side: int
    price_ticks: int
    left_units: int = 0

    @property
    def slot(self) -> tuple[int, int, int]:
        """The key of the maker ladder it may belong to."""
        return (self.user, self.market, self.side)


class _Market:
    """One market's constants and its mid price (ticks of ``10**-money_prec``)."""

    def __init__(self, index: int, spec: MarketModel, model: TrafficModel) -> None:
        self.index = index
        self.spec = spec
        self.lot_units = to_units(parse_decimal(spec.min_amount), spec.stock_prec)
        self.mid_ticks = to_units(parse_decimal(spec.start_price), spec.money_prec)
        self.low_ticks = self.mid_ticks * (100 - model.band_pct) // 100
        self.high_ticks = self.mid_ticks * (100 + model.band_pct) // 100

    def money_units(self, price_ticks: int, stock_units: int, places: int) -> int:
        """``price x amount`` in units of ``10**-places`` of money, rounded up."""
        scale: int = 10 ** (self.spec.stock_prec + self.spec.money_prec - places)
        return -(-price_ticks * stock_units // scale)


def _stock_units(result: Mapping[str, object], key: str, m: _Market) -> int:
    return parse_units(str(result.get(key, "0")), m.spec.stock_prec, allow_zero=True)


class TrafficGenerator:
    """The operations of ``model`` for ``seed``: ``funding_ops()`` first, then ``next_op()``
    as often as wanted, each answer given back to ``on_answer`` (in any order, or never).

    Business ids of ``balance.update`` count up from ``business_id_start`` (matchd keeps
    them forever: a second run against the same server needs a fresh start).
    """

    def __init__(self, model: TrafficModel, seed: int, *, business_id_start: int = 1) -> None:
        self.model = model
        self._rng = random.Random(seed)  # noqa: S311 -- reproducible traffic, not secrets
        self._markets = [_Market(i, m, model) for i, m in enumerate(model.markets)]
        self._by_name = {m.spec.name: m for m in self._markets}
        self._asset_prec: dict[str, int] = {}
        for m in model.markets:
            for asset, prec in ((m.stock, m.stock_prec), (m.money, m.money_prec)):
                self._asset_prec[asset] = max(prec, self._asset_prec.get(asset, 0))
        self._next_business_id = business_id_start
        self._quotes: dict[tuple[int, int, int], dict[int, int]] = {}  # price -> id
        self._live: dict[int, _Order] = {}  # order id -> order, resting as far as known
        self._cancelling: dict[int, _Order] = {}
        self._deposited: dict[tuple[int, str], int] = {}  # withdrawable, at asset prec
        kinds: list[tuple[Callable[[], Op | None], int]] = [
            (self._maker_op, model.maker_weight),
            (self._taker_op, model.taker_weight),
            (self._cancel_op, model.cancel_weight),
            (self._deposit_op, model.deposit_weight),
            (self._withdraw_op, model.withdraw_weight),
        ]
        self._kinds = [make for make, weight in kinds if weight]
        self._weights = [weight for _, weight in kinds if weight]

    @property
    def users(self) -> range:
        """Every user id of the model, makers first."""
        first = self.model.first_user
        return range(first, first + self.model.makers + self.model.takers)

    def funding_ops(self) -> list[Op]:
        """Deposits giving every user ``fund_lots`` lots of each market's stock and their
        price at the top of the band in money."""
        ops = []
        for user in self.users:
            for m in self._markets:
                stock_units = self.model.fund_lots * m.lot_units
                top_ticks = m.high_ticks + self.model.half_spread_ticks
                top_ticks += self.model.levels * self.model.level_step_ticks
                money_units = m.money_units(top_ticks, stock_units, m.spec.money_prec)
                ops.append(self._update(user, m.spec.stock, "fund", stock_units, m.spec.stock_prec))
                ops.append(self._update(user, m.spec.money, "fund", money_units, m.spec.money_prec))
        return ops

    def next_op(self) -> Op:
        """The next operation: a kind drawn by weight, or the next kind that has one."""
        chosen = self._rng.choices(self._kinds, self._weights)[0]
        for make in (chosen, *self._kinds):
            op = make()
            if op is not None:
                return op
        return self._deposit_op()

    def on_answer(self, op: Op, result: Mapping[str, object] | None) -> None:
        """Feed back the server's ``result`` to ``op`` (None when it answered an error)."""
        method, params = op
        if method in ("order.put_limit", "order.put_market"):
            self._on_order(method, params, result)
        elif method == "order.cancel":
            order = self._cancelling.pop(cast(int, params[2]), None)
            if order is not None:
                self._forget(order, _CANCELLING)
        elif method == "balance.update":
            user, asset, business, _, change = cast(tuple[int, str, str, int, str], params[:5])
            units = parse_units(change, self._asset_prec[asset], allow_negative=True)
            deposited = business == "deposit" and result is not None
            refunded = business == "withdraw" and result is None  # reserved when sent
            if deposited or refunded:
                key = (user, asset)
                self._deposited[key] = self._deposited.get(key, 0) + abs(units)

    def _on_order(
        self, method: str, params: tuple[Param, ...], result: Mapping[str, object] | None
    ) -> None:
        user, name, side = cast(tuple[int, str, int], params[:3])
        m = self._by_name[name]
        result = result or {}
        deal_units = _stock_units(result, "deal_stock", m)
        if deal_units:
            self._fill(m.index, BID if side == ASK else ASK, deal_units)
        if method == "order.put_market":
            return
        price_ticks = parse_units(cast(str, params[4]), m.spec.money_prec)
        left_units = _stock_units(result, "left", m)
        order = _Order(user, m.index, side, price_ticks, left_units)
        order_id = result.get("id")
        if not isinstance(order_id, int) or not left_units:
            self._forget(order, _PENDING)
            return
        self._live[order_id] = order
        slots = self._quotes.get(order.slot)
        if slots is not None and slots.get(price_ticks) == _PENDING:
            slots[price_ticks] = order_id

    def _fill(self, market: int, side: int, units: int) -> None:
        """Take ``units`` off the known orders of ``side`` in price-time priority, as the
        order just answered did: a quote seen to fill is put again."""
        sign = 1 if side == ASK else -1
        book = sorted(
            (sign * o.price_ticks, order_id)
            for order_id, o in self._live.items()
            if o.market == market and o.side == side
        )
        for _, order_id in book:
            order = self._live[order_id]
            taken = min(units, order.left_units)
            order.left_units -= taken
            units -= taken
            if not order.left_units:
                del self._live[order_id]
                self._forget(order, order_id)
            if not units:
                return

    def _forget(self, order: _Order, state: int) -> None:
        """Drop the maker's slot of ``order`` if it is still in ``state``."""
        slots = self._quotes.get(order.slot)
        if slots is not None and slots.get(order.price_ticks) == state:
            del slots[order.price_ticks]

    # ------------------------------------------------------------ the kinds

    def _maker_op(self) -> Op | None:
        user = self.model.first_user + self._rng.randrange(self.model.makers)
        m = self._rng.choice(self._markets)
        if self.model.mass_quotes:  # the mid moves, the maker sets its whole ladder
            self._walk(m)
            return self._mass_quote(user, m)
        op = self._requote(user, m)
        if op is None:  # the ladder is in place: the mid moves, the maker follows
            self._walk(m)
            op = self._requote(user, m)
        return op

    def _walk(self, m: _Market) -> None:
        """Move the market's mid by up to ``walk_ticks``, within its band."""
        step = self._rng.randint(-self.model.walk_ticks, self.model.walk_ticks)
        m.mid_ticks = min(max(m.mid_ticks + step, m.low_ticks), m.high_ticks)

    def _mass_quote(self, user: int, m: _Market) -> Op:
        """``order.quote`` of the whole ladder around the mid: ``levels`` bids and asks
        of ``quote_lots`` each. The engine keeps the levels that did not move (their
        priority too) and cancels the rest; the quote orders are not tracked here."""
        amount = format_units(self.model.quote_lots * m.lot_units, m.spec.stock_prec)
        sides = [
            [[format_units(p, m.spec.money_prec), amount] for p in self._ladder(m, side)]
            for side in (BID, ASK)
        ]
        model = self.model
        return Op(
            "order.quote",
            (user, m.spec.name, *sides, model.taker_fee, model.maker_fee, model.source),
        )

    def _requote(self, user: int, m: _Market) -> Op | None:
        """A cancel of a quote off the ladder, else a put of a missing level (nearest the
        mid first), else None."""
        ladders = {side: self._ladder(m, side) for side in (BID, ASK)}
        for side, wanted in ladders.items():
            slots = self._quotes.setdefault((user, m.index, side), {})
            for price_ticks, order_id in slots.items():
                if order_id >= 0 and price_ticks not in wanted:
                    return self._cancel(order_id)
        for level in range(self.model.levels):
            for side, wanted in ladders.items():
                slots = self._quotes[(user, m.index, side)]
                price_ticks = wanted[level]
                if price_ticks not in slots and len(slots) < 2 * self.model.levels:
                    slots[price_ticks] = _PENDING
                    return self._limit(user, m, side, self.model.quote_lots, price_ticks)
        return None

    def _ladder(self, m: _Market, side: int) -> list[int]:
        """The ladder's prices on ``side``, nearest the mid first, on the level grid."""
        step, half = self.model.level_step_ticks, self.model.half_spread_ticks
        if side == BID:
            best = (m.mid_ticks - half) // step * step
            return [best - level * step for level in range(self.model.levels)]
        best = -(-(m.mid_ticks + half) // step) * step
        return [best + level * step for level in range(self.model.levels)]

    def _taker_op(self) -> Op:
        model, rng = self.model, self._rng
        user = model.first_user + model.makers + rng.randrange(model.takers)
        m = rng.choice(self._markets)
        side = rng.choice((ASK, BID))
        lots = rng.randint(1, model.take_lots_max)
        opposite = self._ladder(m, BID if side == ASK else ASK)
        if rng.randrange(100) >= model.market_order_pct:
            return self._limit(user, m, side, lots, opposite[rng.randrange(model.levels)])
        stock_units = lots * m.lot_units
        if side == ASK:  # a market sell gives stock, a market buy spends money
            amount = format_units(stock_units, m.spec.stock_prec)
        else:
            places = min(m.spec.stock_prec, m.spec.money_prec)  # ViaBTC cuts it to stock_prec
            amount = format_units(m.money_units(opposite[-1], stock_units, places), places)
        return Op(
            "order.put_market", (user, m.spec.name, side, amount, model.taker_fee, model.source)
        )

    def _limit(self, user: int, m: _Market, side: int, lots: int, price_ticks: int) -> Op:
        amount = format_units(lots * m.lot_units, m.spec.stock_prec)
        price = format_units(price_ticks, m.spec.money_prec)
        params = (user, m.spec.name, side, amount, price)
        return Op(
            "order.put_limit",
            (*params, self.model.taker_fee, self.model.maker_fee, self.model.source),
        )

    def _cancel_op(self) -> Op | None:
        return self._cancel(self._rng.choice(list(self._live))) if self._live else None

    def _cancel(self, order_id: int) -> Op:
        order = self._cancelling[order_id] = self._live.pop(order_id)
        slots = self._quotes.get(order.slot)
        if slots is not None and slots.get(order.price_ticks) == order_id:
            slots[order.price_ticks] = _CANCELLING
        return Op("order.cancel", (order.user, self._markets[order.market].spec.name, order_id))

    def _deposit_op(self) -> Op:
        user = self._rng.choice(self.users)
        m = self._rng.choice(self._markets)
        stock_units = self._rng.randint(1, self.model.quote_lots) * m.lot_units
        if self._rng.randrange(2):
            return self._update(user, m.spec.stock, "deposit", stock_units, m.spec.stock_prec)
        money_units = m.money_units(m.mid_ticks, stock_units, m.spec.money_prec)
        return self._update(user, m.spec.money, "deposit", money_units, m.spec.money_prec)

    def _withdraw_op(self) -> Op | None:
        user = self._rng.choice(self.users)
        spec = self._rng.choice(self._markets).spec
        asset = spec.stock if self._rng.randrange(2) else spec.money
        available = self._deposited.get((user, asset), 0)
        if not available:
            return None
        units = self._rng.randint(1, available)
        self._deposited[(user, asset)] = available - units
        return self._update(user, asset, "withdraw", -units, self._asset_prec[asset])

    def _update(self, user: int, asset: str, business: str, units: int, prec: int) -> Op:
        business_id = self._next_business_id
        self._next_business_id += 1
        change = format_units(units, prec)
        return Op("balance.update", (user, asset, business, business_id, change, {}))
