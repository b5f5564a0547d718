"""The world of the property tests' command streams, and the hostile values they use.

Assets BTC, ETH, USDT; markets BTC_USDT and ETH_USDT sharing USDT; users 1..5 and the
fee account 0; prices in a narrow band so that orders cross often; small amounts
(``SMALL``) or amounts near the int64 limits (``BIG``). ``stream_config`` is the config,
with capacities from ``Limits`` (``TIGHT`` for full tables). The ``BAD_*`` values are
what no field may accept.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from core.config import EngineConfig, parse_config
from core.schema import MAX_USER_ID, CommandKind, OrderFlag, Side

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
BAD_KINDS = (0, int(CommandKind.BALANCE_UPDATE), 100, -1, 127, -128)
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
GOOD_SOURCES = (b"", b"web", "h\u00e9".encode(), b"api-v2", "\u20ac\U0001f600".encode(), b"x" * 30)


# --------------------------------------------------------------------------- config

_CONFIG = """
[engine]
fee_user = 0
max_users = {max_users}
max_update_keys = {max_update_keys}
max_matches = {max_matches}
max_client_ids = {max_client_ids}
max_user_limits = {max_user_limits}

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
{btc_usdt_risk}
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
{eth_usdt_risk}"""

#: Risk limits (docs/engine.md, "Market risk limits") for the SMALL world: prices of 2
#: ticks (BTC_USDT) and amounts of 2 lots (ETH_USDT), each met half the time; values
#: (price x amount) that cut the smallest and the largest orders; two resting orders
#: per user in each market; price bands of 3 ticks either way of the last price (the
#: prices drawn spread 5).
_RISK = {
    "btc_usdt_risk": 'price_step = "0.02"\nmin_notional = "0.0001"\n'
    'max_notional = "0.00055"\nmax_open_orders = 2\nprice_band = "0.003"\n',
    "eth_usdt_risk": 'amount_step = "0.0002"\nmin_notional = "0.007"\n'
    'max_notional = "0.028"\nmax_open_orders = 2\nprice_band = "0.0006"\n'
    'max_order_amount = "0.0056"\n',
}


@dataclass(frozen=True, slots=True)
class Limits:
    """The capacities of a stream config."""

    max_orders: int = 64
    max_levels: int = 16
    max_users: int = 64
    max_update_keys: int = 512
    #: Small, so that takers are refused as TOO_MANY_MATCHES and CANCEL_ALL stops short.
    max_matches: int = 12
    max_client_ids: int = 256
    max_user_limits: int = 64
    #: The markets have risk limits (``_RISK``; for the SMALL world).
    risk: bool = False


#: Capacities small enough that BOOK_FULL, USER_TABLE_FULL, KEY_TABLE_FULL,
#: CLIENT_ID_TABLE_FULL and (with user limits drawn) USER_LIMIT_TABLE_FULL happen.
TIGHT = Limits(
    max_orders=4,
    max_levels=2,
    max_users=4,
    max_update_keys=24,
    max_matches=2,
    max_client_ids=24,
    max_user_limits=3,
)


#: Risk limits on both markets (with the SMALL world).
RISKY = Limits(risk=True)


def stream_config_text(limits: Limits = Limits()) -> str:
    """The TOML text of ``stream_config(limits)`` (for a process that reads a file)."""
    return _CONFIG.format(
        max_orders=limits.max_orders,
        max_levels=limits.max_levels,
        max_users=limits.max_users,
        max_update_keys=limits.max_update_keys,
        max_matches=limits.max_matches,
        max_client_ids=limits.max_client_ids,
        max_user_limits=limits.max_user_limits,
        **(_RISK if limits.risk else dict.fromkeys(_RISK, "")),
    )


@lru_cache(maxsize=16)
def stream_config(limits: Limits = Limits()) -> EngineConfig:
    """The config of the streams (see the module docstring) with ``limits``."""
    return parse_config(stream_config_text(limits))


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
