"""Random command streams for the property tests of the engines.

A stream is a list of steps: a ``Batch`` of commands given to one ``execute`` call,
or an ``Update`` (one balance.update). Commands are symbolic (``Command``): an order id
may be a ``Ref`` that is resolved against the engine just before the step runs ("an
order of this user resting in this market", "any id issued so far", ...), so that
cancels and replaces mostly hit orders that exist while the stream itself is drawn up
front, shrinks well and can be written down as an ``@example``.

Steps are drawn through a ``Chooser``, so one set of drawing rules serves both
hypothesis (``DataChooser``, shrinking toward the first option and toward "no rare
branch") and the fixed-seed runs (``RngChooser`` over a numpy ``Generator``).

The world: assets BTC, ETH, USDT; markets BTC_USDT and ETH_USDT sharing USDT; users
1..5 and the fee account 0; prices in a narrow band so that orders cross often;
small amounts; hostile values mixed in now and then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Any, Protocol, TypeVar

import numpy as np
from hypothesis import strategies as st

from core.api import EngineAPI
from core.config import EngineConfig, Market, parse_config
from core.schema import (
    COMMAND_DTYPE,
    MAX_SUPPLY_UNITS,
    MAX_USER_ID,
    CommandKind,
    OrderFlag,
    Side,
    StpMode,
    TimeInForce,
)

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)

FEE_USER = 0
USERS = (1, 2, 3, 4, 5)
BTC, ETH, USDT = 0, 1, 2
ASSETS = (BTC, ETH, USDT)
BTC_USDT, ETH_USDT = 0, 1
MARKETS = (BTC_USDT, ETH_USDT)
ASK, BID = int(Side.ASK), int(Side.BID)
POST_ONLY = int(OrderFlag.POST_ONLY)

#: Values of the int8 enum fields that no enum defines.
BAD_SIDES = (0, 3, -1, 127, -128)
BAD_TIFS = (3, -1, 127, -128)
BAD_STPS = (4, -1, 127, -128)
BAD_FLAGS = (2, 3, -1, 127, -128)
BAD_KINDS = (0, int(CommandKind.BALANCE_UPDATE), 7, -1, 127, -128)
BAD_MARKETS = (2, -1, 127, 32767, -32768)
BAD_USERS = (-1, MAX_USER_ID + 1, INT64_MAX, INT64_MIN)
BAD_SOURCE_LENS = (31, 32, 127, -1, -128)
#: Used source bytes that are not UTF-8 without NUL.
BAD_SOURCES = (
    b"a\0b",  # NUL
    b"\0",
    b"\xff",  # never valid in UTF-8
    b"\x80",  # lone continuation byte
    b"ab\xc3",  # truncated two-byte sequence
    b"\xe2\x82",  # truncated three-byte sequence
    b"\xc0\xaf",  # overlong "/"
    b"\xe0\x80\xaf",  # overlong three-byte form
    b"\xed\xa0\x80",  # UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xf5\x80\x80\x80",
)
#: Self-trade prevention modes, NONE twice as often as the others.
_STPS = (StpMode.NONE, *StpMode)
GOOD_SOURCES = (b"", b"web", "h\u00e9".encode(), b"api-v2", "\u20ac\U0001f600".encode(), b"x" * 30)


# --------------------------------------------------------------------------- config

_CONFIG = """
[engine]
fee_user = 0
max_users = {max_users}
max_update_keys = {max_update_keys}

[[assets]]
name = "BTC"
prec = 10

[[assets]]
name = "ETH"
prec = 10

[[assets]]
name = "USDT"
prec = 8

# 10**4 BTC units per lot, 1 USDT unit per tick x lot; default (supply) caps
[[markets]]
name = "BTC_USDT"
stock = "BTC"
money = "USDT"
stock_prec = 6
money_prec = 2
fee_prec = 4
min_amount = "0.00001"
max_orders = {max_orders}
max_levels = {max_levels}

# 10**6 ETH units per lot, 10 USDT units per tick x lot; explicit caps
[[markets]]
name = "ETH_USDT"
stock = "ETH"
money = "USDT"
stock_prec = 4
money_prec = 3
fee_prec = 3
min_amount = "0.001"
max_amount = "0.1"
max_price = "2000"
max_orders = {max_orders}
max_levels = {max_levels}
"""


@dataclass(frozen=True, slots=True)
class Limits:
    """The capacities of a stream config."""

    max_orders: int = 64
    max_levels: int = 16
    max_users: int = 64
    max_update_keys: int = 512


#: Capacities small enough that BOOK_FULL, USER_TABLE_FULL and KEY_TABLE_FULL happen.
TIGHT = Limits(max_orders=4, max_levels=2, max_users=4, max_update_keys=24)


@lru_cache(maxsize=16)
def stream_config(limits: Limits = Limits()) -> EngineConfig:
    """The config of the streams (see the module docstring) with ``limits``."""
    return parse_config(
        _CONFIG.format(
            max_orders=limits.max_orders,
            max_levels=limits.max_levels,
            max_users=limits.max_users,
            max_update_keys=limits.max_update_keys,
        )
    )


@dataclass(frozen=True, slots=True)
class Shape:
    """Where a market's orders are drawn: prices ``center +- spread`` ticks, amounts
    ``lots + [-3, max_extra]`` lots (``lots`` 0: the market's min_amount), market bids
    spending ``bid_money`` units."""

    center: int
    spread: int
    max_extra: int
    bid_money: tuple[int, int]
    lots: int = 0


@dataclass(frozen=True, slots=True)
class World:
    """The sizes of a stream: a ``Shape`` per market and, per asset, the deposit sizes
    (units; the largest is what ``funding`` gives each user)."""

    shapes: tuple[Shape, ...]
    deposits: tuple[tuple[int, ...], ...]


#: Small numbers: books of a few dozen lots, deposits for several orders but not all.
SMALL = World(
    shapes=(
        Shape(center=1000, spread=4, max_extra=50, bid_money=(2_000, 80_000)),
        Shape(center=5000, spread=4, max_extra=50, bid_money=(100_000, 4_000_000)),
    ),
    deposits=(
        (100_000, 600_000, 2_000_000, 10_000_000),  # BTC
        (10_000_000, 50_000_000, 200_000_000),  # ETH
        (100_000, 1_000_000, 5_000_000, 20_000_000),  # USDT
    ),
)
#: Large numbers: BTC_USDT deals near 2**59 units with fees near that, supply near its
#: 2**62 limit; ETH_USDT at its configured max_price and max_amount.
BIG = World(
    shapes=(
        Shape(center=2**39, spread=4, max_extra=2**19, bid_money=(2**50, 2**59), lots=2**19),
        Shape(center=1_999_996, spread=4, max_extra=13, bid_money=(10**9, 2 * 10**10), lots=990),
    ),
    deposits=(
        (2**56, 2**58, 2**60),  # BTC
        (10**10, 10**11, 2 * 10**11),  # ETH
        (2**56, 2**58, 2**60),  # USDT
    ),
)
SHAPES = SMALL.shapes


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True, slots=True)
class Ref:
    """An order id resolved when the step runs.

    ``own``: the ``k``-th resting order of the command's user in its market, newest
    first; ``other``: the ``k``-th resting order of another user in that market;
    ``elsewhere``: one resting in the other market; ``next``: the id the next order
    would get; ``any`` (and the fallback when there is no such order): the ``k``-th
    newest id issued so far, resting or not.
    """

    mode: str
    k: int = 0


@dataclass(frozen=True, slots=True)
class Command:
    """A symbolic ``COMMAND_DTYPE`` record (fields as in core/schema.py).

    ``source_len`` None means ``len(source)``; ``same_price`` (REPLACE) takes the price
    of the order addressed, when it rests, so that the keep-priority path is taken.
    """

    kind: int
    user: int = 1
    market: int = BTC_USDT
    side: int = 0
    price: int = 0
    amount: int = 0
    order_id: int | Ref = 0
    taker_rate: int = 0
    maker_rate: int = 0
    tif: int = 0
    stp: int = 0
    flags: int = 0
    source: bytes = b""
    source_len: int | None = None
    same_price: bool = False

    def __repr__(self) -> str:
        defaults = Command(self.kind)
        parts = [_kind_name(self.kind)]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "kind" and value != getattr(defaults, f.name):
                parts.append(f"{f.name}={value!r}")
        return f"Command({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class Batch:
    """Commands executed by one ``execute`` call."""

    commands: tuple[Command, ...]


@dataclass(frozen=True, slots=True)
class Update:
    """One balance.update (arguments in units, as ``EngineAPI.balance_update``)."""

    user: int
    asset: int
    change: int
    business: bytes = b"deposit"
    business_id: int = 1


Step = Batch | Update


def _kind_name(kind: int) -> str:
    try:
        return f"kind={CommandKind(kind).name}"
    except ValueError:
        return f"kind={kind}"


# Readable constructors, for examples written by hand.


def limit(user: int, market: int, side: int, amount: int, price: int, **kw: Any) -> Command:
    """PUT_LIMIT (keywords: other ``Command`` fields)."""
    return Command(int(CommandKind.PUT_LIMIT), user, market, side, price, amount, **kw)


def market_order(user: int, market: int, side: int, amount: int, **kw: Any) -> Command:
    """PUT_MARKET (keywords: other ``Command`` fields)."""
    return Command(int(CommandKind.PUT_MARKET), user, market, side, 0, amount, **kw)


def cancel(user: int, market: int, order_id: int | Ref) -> Command:
    """CANCEL."""
    return Command(int(CommandKind.CANCEL), user, market, order_id=order_id)


def cancel_all(user: int, market: int, side: int = 0) -> Command:
    """CANCEL_ALL (side 0: both)."""
    return Command(int(CommandKind.CANCEL_ALL), user, market, side=side)


def replace_order(user: int, market: int, order_id: int | Ref, price: int, left: int) -> Command:
    """REPLACE to ``price`` ticks with ``left`` lots."""
    return Command(
        int(CommandKind.REPLACE), user, market, price=price, amount=left, order_id=order_id
    )


def run(*commands: Command) -> Batch:
    """A batch of ``commands``."""
    return Batch(tuple(commands))


# --------------------------------------------------------------------------- resolving


def _resting(engine: EngineAPI, market: int) -> list[tuple[int, int, int]]:
    """(id, user, price) of every order resting in ``market``, asks first."""
    out = []
    for side in (ASK, BID):
        _, orders = engine.book(market, side, 0, 1 << 20)
        out += [(o.id, o.user, o.price) for o in orders]
    return out


def resolve_id(ref: int | Ref, engine: EngineAPI, user: int, market: int) -> int:
    """The concrete order id ``ref`` stands for in ``engine``'s current state."""
    if not isinstance(ref, Ref):
        return ref
    last_id = engine.counters()[1]
    known = 0 <= market < len(engine.config.markets)
    resting = _resting(engine, market) if known else []
    if ref.mode == "own":
        mine = sorted((r for r in resting if r[1] == user), reverse=True)
        if mine:
            return mine[ref.k % len(mine)][0]
    elif ref.mode == "other":
        theirs = sorted(r for r in resting if r[1] != user)
        if theirs:
            return theirs[ref.k % len(theirs)][0]
    elif ref.mode == "elsewhere" and known:
        other = _resting(engine, 1 - market) if len(engine.config.markets) == 2 else []
        if other:
            return sorted(other)[ref.k % len(other)][0]
    elif ref.mode == "next":
        return last_id + 1
    return last_id - ref.k % last_id if last_id else 1  # "any": the k-th newest id


def resolve(commands: Sequence[Command], engine: EngineAPI, first_ts_ns: int) -> np.ndarray:
    """The ``COMMAND_DTYPE`` records of ``commands``, order ids resolved in ``engine``'s
    current state, times ``first_ts_ns``, ``+1000``, ..."""
    out = np.zeros(len(commands), dtype=COMMAND_DTYPE)
    for i, cmd in enumerate(commands):
        rec = out[i]
        order_id = resolve_id(cmd.order_id, engine, cmd.user, cmd.market)
        price = cmd.price
        if cmd.same_price and 0 <= cmd.market < len(engine.config.markets):
            view = engine.order(cmd.market, order_id)
            if view is not None:
                price = view.price
        rec["ts_ns"] = first_ts_ns + 1000 * i
        for name, value in (
            ("kind", cmd.kind),
            ("user", cmd.user),
            ("market", cmd.market),
            ("side", cmd.side),
            ("price", price),
            ("amount", cmd.amount),
            ("order_id", order_id),
            ("taker_rate", cmd.taker_rate),
            ("maker_rate", cmd.maker_rate),
            ("tif", cmd.tif),
            ("stp", cmd.stp),
            ("flags", cmd.flags),
        ):
            rec[name] = value
        src = cmd.source[:32]
        rec["source"][: len(src)] = np.frombuffer(src, dtype=np.uint8)
        rec["source_len"] = len(cmd.source) if cmd.source_len is None else cmd.source_len
    return out


def record_call(rec: np.void) -> str:
    """One command record, compactly: its non-zero fields."""
    fields = []
    for name in COMMAND_DTYPE.names or ():
        value = rec[name]
        if name == "source":
            raw = bytes(value)
            if raw.strip(b"\0"):
                fields.append(f"source={raw.rstrip(bytes(1))!r}")
        elif int(value) != 0:
            label = _kind_name(int(value)) if name == "kind" else f"{name}={int(value)}"
            fields.append(label)
    return "{" + ", ".join(fields) + "}"


# --------------------------------------------------------------------------- drawing

T = TypeVar("T")


class Chooser(Protocol):
    """The random choices a stream is made of."""

    def integer(self, low: int, high: int) -> int:
        """An integer in low..high (both included)."""
        ...

    def choice(self, options: Sequence[T]) -> T:
        """One of ``options`` (the first ones are the "simplest")."""
        ...


def rarely(c: Chooser, percent: int) -> bool:
    """True with probability ``percent``/100; shrinks to False."""
    return c.integer(0, 99) >= 100 - percent


class DataChooser:
    """Choices drawn by hypothesis (``st.data()`` or inside ``st.composite``)."""

    def __init__(self, draw: Callable[[st.SearchStrategy[T]], T]) -> None:
        self._draw = draw

    def integer(self, low: int, high: int) -> int:
        return self._draw(st.integers(low, high))

    def choice(self, options: Sequence[T]) -> T:
        return self._draw(st.sampled_from(options))


class RngChooser:
    """Choices from a numpy ``Generator`` (fixed-seed runs)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def integer(self, low: int, high: int) -> int:
        return int(self._rng.integers(low, high, endpoint=True, dtype=np.int64))

    def choice(self, options: Sequence[T]) -> T:
        return options[int(self._rng.integers(len(options)))]


@dataclass(frozen=True, slots=True)
class Mix:
    """How often (percent) hostile values replace good ones in a stream, and its sizes."""

    hostile: int = 1
    world: World = SMALL


def _user(c: Chooser, mix: Mix) -> int:
    if rarely(c, mix.hostile):
        return c.choice(BAD_USERS)
    # The fee account trades never, but tries to now and then.
    return c.choice((1, 2, 3, 1, 2, 3, 4, 5) * 2 + (FEE_USER,))


def _market(c: Chooser, mix: Mix) -> int:
    if rarely(c, mix.hostile):
        return c.choice(BAD_MARKETS)
    return c.choice(MARKETS)


def _side(c: Chooser, mix: Mix) -> int:
    if rarely(c, mix.hostile):
        return c.choice(BAD_SIDES)
    return c.choice((ASK, BID))


def _price(c: Chooser, mix: Mix, m: Market | None, side: int) -> int:
    """Asks in center-1..center+spread, bids in center-spread..center+1: they cross
    often, and yet books build up."""
    shape = mix.world.shapes[m.index if m is not None else BTC_USDT]
    if m is not None and rarely(c, mix.hostile):
        return c.choice((0, -1, 1, m.max_price, m.max_price + 1, INT64_MAX, INT64_MIN))
    offset = 1 + c.integer(-2, shape.spread - 1)
    return shape.center + (offset if side == ASK else -offset)


def _amount(c: Chooser, mix: Mix, m: Market | None) -> int:
    shape = mix.world.shapes[m.index if m is not None else BTC_USDT]
    low = shape.lots or (m.min_amount if m is not None else 10)
    if m is not None and rarely(c, mix.hostile):
        return c.choice((0, -1, 1, m.max_amount, m.max_amount + 1, INT64_MAX, INT64_MIN))
    return low + c.integer(-3, shape.max_extra)


def _rate(c: Chooser, mix: Mix, m: Market | None) -> int:
    den = m.fee_den if m is not None else 10_000
    if rarely(c, mix.hostile):
        return c.choice((-1, den, INT32_MAX, INT32_MIN))
    return c.choice((0, 10, 25, 1, 7, 999 % den, den - 1))


def _source(c: Chooser, mix: Mix) -> tuple[bytes, int | None]:
    if rarely(c, mix.hostile):
        if c.choice((False, True)):
            return c.choice(GOOD_SOURCES), c.choice(BAD_SOURCE_LENS)
        return c.choice(BAD_SOURCES), None
    if c.choice((False, False, True)):
        # Many distinct tags, each shared by few orders: tags are interned and freed
        # with their last order, so this churns the engine's tag table.
        return b"client-%d" % c.integer(0, 199), None
    return c.choice(GOOD_SOURCES), None


def _ref(c: Chooser, mix: Mix) -> int | Ref:
    if rarely(c, 5 * mix.hostile):
        return c.choice((0, -1, INT64_MAX, INT64_MIN, Ref("next"), Ref("elsewhere")))
    mode = c.choice(("own", "own", "own", "any", "other"))
    return Ref(mode, c.integer(0, 7))


def draw_command(c: Chooser, config: EngineConfig, mix: Mix = Mix()) -> Command:
    """One command of any kind (now and then hostile)."""
    kind = c.choice(
        (CommandKind.PUT_LIMIT,) * 8
        + (CommandKind.CANCEL,) * 3
        + (CommandKind.PUT_MARKET,) * 2
        + (CommandKind.REPLACE,) * 3
        + (CommandKind.CANCEL_ALL,)
    )
    user = _user(c, mix)
    market = _market(c, mix)
    m = config.markets[market] if 0 <= market < len(config.markets) else None
    if kind == CommandKind.PUT_LIMIT:
        source, source_len = _source(c, mix)
        tif = c.choice((TimeInForce.GTC,) * 3 + (TimeInForce.IOC, TimeInForce.FOK))
        side = _side(c, mix)
        cmd = Command(
            int(kind),
            user,
            market,
            side=side,
            price=_price(c, mix, m, side),
            amount=_amount(c, mix, m),
            taker_rate=_rate(c, mix, m),
            maker_rate=_rate(c, mix, m),
            tif=c.choice(BAD_TIFS) if rarely(c, mix.hostile) else int(tif),
            stp=c.choice(BAD_STPS) if rarely(c, mix.hostile) else int(c.choice(_STPS)),
            flags=c.choice(BAD_FLAGS) if rarely(c, mix.hostile) else c.choice((0, 0, POST_ONLY)),
            source=source,
            source_len=source_len,
        )
    elif kind == CommandKind.PUT_MARKET:
        side = _side(c, mix)
        shape = mix.world.shapes[market if m is not None else BTC_USDT]
        if side == BID and m is not None and not rarely(c, mix.hostile):
            amount = c.integer(*shape.bid_money)
        elif side == BID and rarely(c, 50):
            amount = c.choice((0, -1, MAX_SUPPLY_UNITS, MAX_SUPPLY_UNITS + 1, INT64_MAX))
        else:
            amount = _amount(c, mix, m)
        source, source_len = _source(c, mix)
        cmd = Command(
            int(kind),
            user,
            market,
            side=side,
            amount=amount,
            taker_rate=_rate(c, mix, m),
            stp=c.choice(BAD_STPS) if rarely(c, mix.hostile) else int(c.choice(_STPS)),
            source=source,
            source_len=source_len,
        )
    elif kind == CommandKind.CANCEL:
        cmd = Command(int(kind), user, market, order_id=_ref(c, mix))
    elif kind == CommandKind.REPLACE:
        same = c.choice((False, False, True))
        cmd = Command(
            int(kind),
            user,
            market,
            order_id=_ref(c, mix),
            price=_price(c, mix, m, c.choice((ASK, BID))),
            amount=_amount(c, mix, m) if not same else c.integer(1, 30),
            same_price=same,
        )
    else:
        side = c.choice((0, ASK, BID)) if not rarely(c, mix.hostile) else c.choice((3, -1, 127))
        cmd = Command(int(kind), user, market, side=side)
    if rarely(c, mix.hostile):
        cmd = replace(cmd, kind=c.choice(BAD_KINDS))
    return cmd


BUSINESSES = (b"deposit", b"withdraw", b"x" * 32 + b"1", b"x" * 32 + b"2", b"")


def draw_update(c: Chooser, mix: Mix = Mix()) -> Update:
    """One balance.update: mostly deposits, some withdrawals, repeated keys often."""
    user = _user(c, mix) if not rarely(c, 10) else c.choice(USERS)
    asset = c.choice(ASSETS) if not rarely(c, 2 * mix.hostile) else c.choice((3, -1, 2**15, 2**63))
    sizes = mix.world.deposits[asset if asset in ASSETS else USDT]
    how = c.choice(("deposit", "deposit", "deposit", "withdraw", "withdraw", "zero"))
    if rarely(c, 5 * mix.hostile):
        how = c.choice(("huge", "bad"))
    if how == "deposit":
        change = c.choice(sizes)
    elif how == "withdraw":
        change = -c.choice(sizes) // c.choice((1, 10, 100))
    elif how == "zero":
        change = 0
    elif how == "huge":
        change = c.choice((MAX_SUPPLY_UNITS // 2, MAX_SUPPLY_UNITS, INT64_MAX, -INT64_MAX))
    else:
        change = c.choice((2**63, INT64_MIN, 2**64, -(2**64)))
    business_id = c.integer(1, 6)
    if rarely(c, 3 * mix.hostile):
        business_id = c.choice((0, -1, INT64_MAX, -INT64_MAX, 2**63, INT64_MIN, 2**64))
    return Update(user, asset, change, c.choice(BUSINESSES), business_id)


def draw_step(c: Chooser, config: EngineConfig, mix: Mix = Mix()) -> Step:
    """A batch of 1..5 commands (mostly 1), or a balance.update (about 1 in 5)."""
    if rarely(c, 20):
        return draw_update(c, mix)
    n = 1 + (c.integer(1, 4) if rarely(c, 25) else 0)
    return Batch(tuple(draw_command(c, config, mix) for _ in range(n)))


def funding(users: Sequence[int] = (1, 2, 3), world: World = SMALL) -> list[Step]:
    """Deposits that let ``users`` trade in both markets from the first step."""
    return [
        Update(user, asset, world.deposits[asset][-1], b"seed", 1_000 + user)
        for user in users
        for asset in ASSETS
    ]


@st.composite
def streams(
    draw: Callable[[st.SearchStrategy[T]], T],
    config: EngineConfig,
    max_steps: int = 50,
    mix: Mix = Mix(),
) -> list[Step]:
    """A stream of ``0..max_steps`` steps after a funding prefix that shrinks away."""
    c = DataChooser(draw)
    prefix = funding(world=mix.world) if c.choice((True, False)) else []
    n = c.integer(0, max_steps)
    return prefix + [draw_step(c, config, mix) for _ in range(n)]


def random_stream(
    rng: np.random.Generator,
    config: EngineConfig,
    n_commands: int,
    mix: Mix = Mix(),
) -> list[Step]:
    """A fixed-seed stream of at least ``n_commands`` commands and updates."""
    c = RngChooser(rng)
    steps: list[Step] = funding(world=mix.world)
    count = 0
    while count < n_commands:
        step = draw_step(c, config, mix)
        steps.append(step)
        count += len(step.commands) if isinstance(step, Batch) else 1
    return steps


# --------------------------------------------------------------------------- a state


#: Resting orders of ``holding()``: id -> (user, market, side, lots, ticks).
HOLDING_RESTING = {
    1: (1, BTC_USDT, ASK, 20, 1005),
    2: (2, BTC_USDT, BID, 20, 995),
    3: (1, ETH_USDT, ASK, 20, 5005),
    4: (2, ETH_USDT, BID, 20, 4995),
}
#: Ids of ``holding()`` orders that no longer rest: 5 and 6 filled each other, 7 was
#: cancelled.
HOLDING_FINISHED = (5, 6, 7)


def holding() -> list[Step]:
    """An engine state worth attacking: users 1..3 funded, the orders of
    ``HOLDING_RESTING`` resting in both markets, and finished orders."""
    steps = funding()
    for user, market, side, lots, ticks in HOLDING_RESTING.values():
        steps.append(run(limit(user, market, side, lots, ticks, source=b"seed")))
    steps.append(run(limit(3, BTC_USDT, ASK, 10, 1004), limit(2, BTC_USDT, BID, 10, 1004)))
    steps.append(run(limit(1, BTC_USDT, BID, 10, 990), cancel(1, BTC_USDT, 7)))
    return steps


def apply(engine: EngineAPI, steps: Sequence[Step], ts_ns: int = 1_000_000) -> int:
    """Run ``steps`` on ``engine``, each of which must be accepted; returns the next
    free time."""
    for step in steps:
        if isinstance(step, Update):
            results, _ = engine.balance_update(
                step.user, step.asset, step.business, step.business_id, step.change, ts_ns
            )
            ts_ns += 1000
        else:
            results, _ = engine.execute(resolve(step.commands, engine, ts_ns))
            ts_ns += 1000 * (len(step.commands) + 1)
        if not (results["code"] == 0).all():
            raise AssertionError(f"setup step {step} was refused: {results['code']}")
    return ts_ns
