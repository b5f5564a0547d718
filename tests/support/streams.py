"""Random command streams for the property tests of the engines.

A stream is a list of steps (``tests.support.steps``: batches of symbolic commands and
balance.updates) in the world of ``tests.support.world``, drawn up front so that it
shrinks well and can be written down as an ``@example``: every command kind, every
TIF, STP mode and the post-only flag, order ids that mostly address resting orders,
client order ids that now and then repeat, balance.updates with repeated keys,
hostile values mixed in now and then (``Mix``).

Steps are drawn through a ``Chooser``, so one set of drawing rules serves both
hypothesis (``DataChooser``, shrinking toward the first option and toward "no rare
branch") and the fixed-seed runs (``RngChooser`` over a numpy ``Generator``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

import numpy as np
from hypothesis import strategies as st

from core.config import EngineConfig, Market
from core.schema import (
    MAX_SUPPLY_UNITS,
    CommandKind,
    MarketStatus,
    RiskLimit,
    StpMode,
    TimeInForce,
    UserStatus,
)
from tests.support.steps import Batch, Command, Ref, Step, Update, funding
from tests.support.world import (
    ASK,
    ASSETS,
    BAD_FLAGS,
    BAD_KINDS,
    BAD_MARKETS,
    BAD_SIDES,
    BAD_SOURCE_LENS,
    BAD_SOURCES,
    BAD_STPS,
    BAD_TIFS,
    BAD_USERS,
    BID,
    BTC_USDT,
    FEE_USER,
    GOOD_SOURCES,
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    MARKETS,
    POST_ONLY,
    SMALL,
    USDT,
    USERS,
    World,
)

#: Self-trade prevention modes, NONE twice as often as the others.
_STPS = (StpMode.NONE, *StpMode)

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
    #: Percent of commands that are market operations (MARKET_STATUS, USER_STATUS,
    #: CANCEL_MARKET); 0 leaves the stream as it was without them.
    admin: int = 0
    #: Percent of commands that are mass quotes (a QUOTE and its levels); 0: none.
    quote: int = 0
    #: Percent of commands that set a user's own risk limits (USER_LIMIT); 0: none.
    #: Set, it also lets MARKET_LIMIT (``admin``) draw the market's max_order_amount,
    #: which streams without it never do (so that their draws stay as they were).
    user_limit: int = 0


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


def _client_id(c: Chooser, mix: Mix) -> int:
    """A PUT's client order id: none half the time; else mostly one from a large range
    (new, almost always), now and then one of a dozen per user, so that repeats
    (REPEAT_ORDER) are common without refusing most puts."""
    if rarely(c, mix.hostile):
        return c.choice((-1, INT64_MIN, INT64_MAX))
    if c.choice((False, True)):
        return 0
    if rarely(c, 20):
        return c.integer(1, 12)
    return c.integer(13, 1 << 40)


def _ref(c: Chooser, mix: Mix) -> int | Ref:
    if rarely(c, 5 * mix.hostile):
        return c.choice((0, -1, INT64_MAX, INT64_MIN, Ref("next"), Ref("elsewhere")))
    mode = c.choice(("own", "own", "own", "any", "other"))
    return Ref(mode, c.integer(0, 7))


#: Market statuses as drawn: mostly OPEN, so that markets halted reopen soon.
_MARKET_STATUSES = (MarketStatus.OPEN,) * 5 + (MarketStatus.HALTED, MarketStatus.DELISTED)
_USER_STATUSES = (UserStatus.ACTIVE,) * 3 + (UserStatus.BLOCKED,)


#: Risk limit values as drawn (engine units), the first of each "none" (the steps' 1):
#: mostly ones the SMALL world's orders meet or miss now and then, and some that the
#: other limits make invalid (a min_notional above the max_notional).
_LIMIT_VALUES = {
    RiskLimit.PRICE_STEP: (1, 2, 5),
    RiskLimit.AMOUNT_STEP: (1, 2, 3),
    RiskLimit.MIN_NOTIONAL: (0, 10_000, 700_000, 10**9),
    RiskLimit.MAX_NOTIONAL: (0, 55_000, 2_800_000, 5_000),
    RiskLimit.MAX_OPEN_ORDERS: (0, 1, 2, 5),
    RiskLimit.PRICE_BAND: (0, 3_000, 600, 999_999),
    # the SMALL world's orders are of 7..60 lots, its quote levels of 10..40
    RiskLimit.MAX_ORDER_AMOUNT: (0, 40, 25, 12),
}
#: The market limits MARKET_LIMIT draws without ``Mix.user_limit``: those there were
#: before max_order_amount, so that the draws of such streams stay as they were.
_OLD_LIMITS = tuple(limit for limit in RiskLimit if limit != RiskLimit.MAX_ORDER_AMOUNT)
#: A limit that is no RiskLimit.
_NO_LIMIT = max(RiskLimit) + 1
#: A user's own limit values as drawn (lots, money units): none a third of the time;
#: else ones that cut the larger orders of the SMALL world (BTC_USDT values of 7,000
#: to 60,000 units, ETH_USDT 350,000 to 3,000,000; market bids spend up to 80,000 and
#: 4,000,000) or few of them.
_USER_LIMIT_VALUES: dict[int, tuple[int, ...]] = {
    RiskLimit.MAX_ORDER_AMOUNT: (0, 0, 0, 40, 25, 12, 55),
    RiskLimit.MAX_NOTIONAL: (0, 0, 0, 30_000, 55_000, 1_500_000, 2_800_000),
}


def draw_admin(c: Chooser, mix: Mix) -> Command:
    """A market operation: a market's or a user's status, a market's orders
    cancelled, or one of its risk limits changed (now and then hostile)."""
    kind = c.choice((CommandKind.MARKET_STATUS,) * 2 + (CommandKind.USER_STATUS,) * 2 + (
        CommandKind.CANCEL_MARKET, CommandKind.MARKET_LIMIT, CommandKind.MARKET_LIMIT,
    ))  # fmt: skip
    if kind == CommandKind.MARKET_STATUS:
        status = c.choice((3, -1)) if rarely(c, mix.hostile) else int(c.choice(_MARKET_STATUSES))
        return Command(int(kind), 0, _market(c, mix), amount=status)
    if kind == CommandKind.USER_STATUS:
        status = c.choice((2, -1)) if rarely(c, mix.hostile) else int(c.choice(_USER_STATUSES))
        return Command(int(kind), _user(c, mix), 0, amount=status)
    if kind == CommandKind.MARKET_LIMIT:
        limits = tuple(RiskLimit) if mix.user_limit else _OLD_LIMITS
        which = c.choice(limits) if not rarely(c, mix.hostile) else c.choice((0, _NO_LIMIT))
        values = _LIMIT_VALUES.get(which, (0,))
        # "none" half the time, so that trading goes on between the limits set
        value = values[0] if c.choice((True, False)) else c.choice(values)
        if rarely(c, mix.hostile):
            value = c.choice((-1, INT64_MAX, INT64_MIN, MAX_SUPPLY_UNITS + 1))
        return Command(int(kind), 0, _market(c, mix), side=int(which), amount=value)
    side = c.choice((0, ASK, BID)) if not rarely(c, mix.hostile) else c.choice((3, -1))
    return Command(int(kind), 0, _market(c, mix), side=side)


def draw_user_limit(c: Chooser, mix: Mix) -> Command:
    """A USER_LIMIT: one of a user's two limits in a market, now and then hostile (a
    limit a user may not have, a value out of range, the fee account, ...)."""
    user, market = _user(c, mix), _market(c, mix)
    if rarely(c, mix.hostile):
        which = c.choice((0, int(RiskLimit.PRICE_STEP), int(RiskLimit.PRICE_BAND), _NO_LIMIT, -1))
    else:
        which = int(c.choice((RiskLimit.MAX_ORDER_AMOUNT, RiskLimit.MAX_NOTIONAL)))
    value = c.choice(_USER_LIMIT_VALUES.get(which, (0, 1)))
    if rarely(c, mix.hostile):
        value = c.choice((-1, INT64_MAX, INT64_MIN, MAX_SUPPLY_UNITS, MAX_SUPPLY_UNITS + 1))
    return Command(int(CommandKind.USER_LIMIT), user, market, side=which, amount=value)


def _quote_size(c: Chooser, mix: Mix, m: Market | None) -> int:
    shape = mix.world.shapes[m.index if m is not None else BTC_USDT]
    low = shape.lots or (m.min_amount if m is not None else 10)
    return low + c.choice((0, 4, 4, 12, 30))


def _ladder_side(c: Chooser, mix: Mix, m: Market | None, side: int) -> list[Command]:
    """Levels of one side of a quote: 0..4 prices walking away from the center (now
    and then one too close, repeated or too many), each a drawn amount."""
    shape = mix.world.shapes[m.index if m is not None else BTC_USDT]
    n = c.integer(0, 4) if not rarely(c, mix.hostile) else c.choice((0, 33))
    offset = c.integer(0, shape.spread)
    levels = []
    for _ in range(n):
        price = shape.center + (offset if side == ASK else -offset)
        if m is not None and rarely(c, mix.hostile):
            price = c.choice((0, -1, m.max_price + 1, INT64_MAX))
        # few sizes, so that a level often meets its last size (kept) or a near one
        amount = _amount(c, mix, m) if rarely(c, 10) else _quote_size(c, mix, m)
        levels.append(Command(int(CommandKind.QUOTE_LEVEL), side=side, price=price, amount=amount))
        offset += c.integer(1, 2) if not rarely(c, 3) else 0
    return levels


def draw_quote(c: Chooser, config: EngineConfig, mix: Mix) -> list[Command]:
    """A QUOTE and its levels: a ladder about the market's center that mostly meets
    the maker's previous one (kept, shrunk and grown levels), now and then crosses the
    book, itself or the limits; now and then its count does not match its levels."""
    user = _user(c, mix)
    market = _market(c, mix)
    m = config.markets[market] if 0 <= market < len(config.markets) else None
    levels = _ladder_side(c, mix, m, BID) + _ladder_side(c, mix, m, ASK)
    if c.choice((False, False, True)):  # asks first, or mixed: the record order is free
        levels = levels[::-1]
    levels = [replace(level, user=user, market=market) for level in levels]
    source, source_len = _source(c, mix)
    k = len(levels) if not rarely(c, mix.hostile) else c.choice((len(levels) + 1, -1, 65))
    head = Command(
        int(CommandKind.QUOTE),
        user,
        market,
        amount=k,
        taker_rate=_rate(c, mix, m),
        maker_rate=_rate(c, mix, m),
        source=source,
        source_len=source_len,
    )
    return [head, *levels]


def draw_command(c: Chooser, config: EngineConfig, mix: Mix = Mix()) -> Command:
    """One command of any kind (now and then hostile)."""
    if mix.admin and rarely(c, mix.admin):
        return draw_admin(c, mix)
    if mix.user_limit and rarely(c, mix.user_limit):
        return draw_user_limit(c, mix)
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
            order_id=_client_id(c, mix),
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
            order_id=_client_id(c, mix),
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
    commands: list[Command] = []
    for _ in range(n):
        if mix.quote and rarely(c, mix.quote):
            commands += draw_quote(c, config, mix)
        else:
            commands.append(draw_command(c, config, mix))
    return Batch(tuple(commands))


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
