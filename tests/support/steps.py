"""The steps of a command stream, how they run on an engine, and a state to start from.

A stream is a list of steps: a ``Batch`` of commands given to one ``execute`` call, or
an ``Update`` (one balance.update). Commands are symbolic (``Command``): an order id may
be a ``Ref`` that is resolved against the engine just before the step runs ("an order
of this user resting in this market", "any id issued so far", ...), so that cancels and
replaces mostly hit orders that exist while the stream itself is drawn up front
(``tests.support.streams``), shrinks well and can be written down as an ``@example``.

``resolve`` turns commands into ``COMMAND_DTYPE`` records, ``apply`` runs steps that
must be accepted, and ``holding()`` / ``held()`` give an engine with funded users,
resting orders in both markets and finished orders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from core.api import EngineAPI
from core.schema import COMMAND_DTYPE, CommandKind
from tests.support.engines import EngineClass
from tests.support.world import (
    ASK,
    ASSETS,
    BID,
    BTC_USDT,
    ETH_USDT,
    SMALL,
    Limits,
    World,
    stream_config,
)


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


# --------------------------------------------------------------------------- a state


def funding(users: Sequence[int] = (1, 2, 3), world: World = SMALL) -> list[Step]:
    """Deposits that let ``users`` trade in both markets from the first step."""
    return [
        Update(user, asset, world.deposits[asset][-1], b"seed", 1_000 + user)
        for user in users
        for asset in ASSETS
    ]


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


def held(engine_cls: EngineClass, limits: Limits = Limits()) -> EngineAPI:  # noqa: B008
    """A new engine in the ``holding()`` state."""
    engine = engine_cls(stream_config(limits))
    apply(engine, holding())
    return engine
