"""Mass quotes on the wire (docs/protocol.md, "Mass quotes"; docs/engine.md, "QUOTE").

A QUOTE is one command made of k + 1 consecutive ``COMMAND_DTYPE`` records: a header
of kind QUOTE (``user``, ``market``, ``amount`` = k, ``taker_rate``, ``maker_rate``,
``source``) and k records of kind QUOTE_LEVEL (``side``, ``price`` ticks, ``amount``
lots). ``quote_records`` builds them: the bids first, then the asks, each side in
the order given. A binary client sends them as they are, in one COMMANDS frame; the
``order.quote`` call (``Quote``) carries the same in msgpack and the server builds
the records from it.

The engine answers each record by position: the header's result has the code, the
seq and ``value`` = the stale quote orders it cancelled; each level's has the same
code and, when accepted, ``order_id`` = the level's order and ``value`` = its
``QuoteAction``. ``quote_done`` reads them into a ``QuoteDone``, the call's result.

``parse_level`` converts decimal text (a price and an amount) to ticks and lots
exactly at a market's precisions, refusing text that is not a multiple of a tick or
a lot (never rounded), for clients that hold decimals (the HTTP gateway's
``order.quote`` uses it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from numbers import Integral
from typing import Annotated, Final

import msgspec
import numpy as np

from core import commands
from core.errors import ParseError
from core.fixed import format_units, is_exact, parse_decimal, to_units
from core.schema import (
    COMMAND_DTYPE,
    INT64_MAX,
    MAX_QUOTE_LEVELS,
    RESULT_DTYPE,
    QuoteAction,
    Side,
)
from ipc.wire_calls import I16, I32, I64, MarketInfo, OrderCall

#: One level as the wire carries it: (price ticks, amount lots).
LevelPair = tuple[I64, I64]
#: One side of a ladder: at most ``MAX_QUOTE_LEVELS`` levels (the decoder refuses more).
LadderSide = Annotated[list[LevelPair], msgspec.Meta(max_length=MAX_QUOTE_LEVELS)]
_INT64_MIN: Final = -(2**63)


def _int64(value: object) -> int | None:
    """``value`` as an int if it is an integer (a numpy one too; not a bool) in int64."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, Integral):
        return None
    number = int(value)
    return number if _INT64_MIN <= number <= INT64_MAX else None


def levels_of(levels: Iterable[Sequence[int]], what: str = "levels") -> list[tuple[int, int]]:
    """``levels`` as a list of ``(price ticks, amount lots)`` int pairs; ``ValueError``
    (naming ``what``) for more than ``MAX_QUOTE_LEVELS`` of them, or one that is not
    a pair of int64 integers. Values are the engine's to check."""
    out: list[tuple[int, int]] = []
    for i, level in enumerate(levels):
        if len(out) == MAX_QUOTE_LEVELS:
            raise ValueError(f"{what}: more than {MAX_QUOTE_LEVELS} levels")
        if not isinstance(level, list | tuple) or len(level) != 2:
            raise ValueError(f"{what}[{i}] must be a (price, amount) pair")
        price, amount = _int64(level[0]), _int64(level[1])
        if price is None or amount is None:
            raise ValueError(f"{what}[{i}]: price and amount must be int64 integers")
        out.append((price, amount))
    return out


class Quote(OrderCall, frozen=True, tag="order.quote"):
    """A mass quote: the user's whole ladder on ``market`` (docs/engine.md, "QUOTE").

    ``bids`` and ``asks`` are ``(price ticks, amount lots)`` pairs, at most
    ``MAX_QUOTE_LEVELS`` a side; the user's quote orders on the market are made to
    match them exactly, all or nothing. No level at all removes the quote. The fee
    rates and ``source`` are those of the orders the quote adds. The engine checks
    every value (a duplicate price on a side, a bid at or above an ask: invalid
    argument); the result is a ``QuoteDone``.
    """

    user: I64
    market: I16
    bids: LadderSide = msgspec.field(default_factory=list)
    asks: LadderSide = msgspec.field(default_factory=list)
    taker_rate: I32 = 0
    maker_rate: I32 = 0
    source: str = ""

    def __post_init__(self) -> None:
        self._check_source(self.source)
        levels_of(self.bids, "bids")  # a value built in Python is checked too
        levels_of(self.asks, "asks")

    def record(self) -> np.ndarray:
        return quote_records(
            self.user, self.market, self.bids, self.asks, self.taker_rate, self.maker_rate,
            source=self.source.encode(),
        )  # fmt: skip


def quote_call(
    user: int,
    market: int,
    bids: Iterable[Sequence[int]] = (),
    asks: Iterable[Sequence[int]] = (),
    taker_rate: int = 0,
    maker_rate: int = 0,
    source: str = "",
) -> Quote:
    """The ``Quote`` of levels given as any ``(price ticks, amount lots)`` pairs of
    integers (tuples or lists; numpy integers too); ``ValueError`` as ``levels_of``."""
    return Quote(
        user, market, levels_of(bids, "bids"), levels_of(asks, "asks"), taker_rate, maker_rate,
        source,
    )  # fmt: skip


def quote_records(
    user: int,
    market: int,
    bids: Sequence[Sequence[int]] = (),
    asks: Sequence[Sequence[int]] = (),
    taker_rate: int = 0,
    maker_rate: int = 0,
    *,
    source: bytes = b"",
    ts_ns: int = 0,
) -> np.ndarray:
    """The k + 1 ``COMMAND_DTYPE`` records of a QUOTE: the header, then a QUOTE_LEVEL
    record per bid, then per ask (each with the header's ``user``, ``market`` and
    ``ts_ns``). ``source`` is at most 32 bytes here (the engine takes at most
    ``SOURCE_LENGTH``); the values are the engine's to check."""
    if len(source) > 32:
        raise ValueError(f"source is {len(source)} bytes, a record holds at most 32")
    levels = [(int(Side.BID), p, a) for p, a in bids] + [(int(Side.ASK), p, a) for p, a in asks]
    return commands.quote(user, market, levels, taker_rate, maker_rate, ts_ns=ts_ns, source=source)


# --------------------------------------------------------------------------- results


class QuoteLevel(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One level of an accepted quote: the level as given and what became of it."""

    side: int  #: 1 ask, 2 bid
    price: int  #: ticks
    amount: int  #: lots: the ``left`` of its order now
    order_id: int  #: its order (kept, or new)
    action: QuoteAction  #: KEPT 0, SHRUNK 1 (priority kept), GROWN 2 (to the tail), NEW 3


class QuoteDone(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The outcome of a quote the engine accepted.

    ``seq`` is 0 when nothing changed (every level kept, nothing stale); ``cancelled``
    counts the stale quote orders cancelled; ``levels`` are the quote's levels in
    record order (bids, then asks); ``events`` the command's EVENT_DTYPE records when
    the CALLS frame had the EVENTS flag.
    """

    seq: int
    cancelled: int
    levels: list[QuoteLevel]
    events: bytes | None = None


def quote_done(
    records: np.ndarray, results: np.ndarray, events: np.ndarray, *, with_events: bool = False
) -> QuoteDone:
    """The ``QuoteDone`` of an accepted quote from its k + 1 ``records``, their
    ``results`` (by position) and the batch's ``events`` (the header's
    ``event_start`` indexes them). ``ValueError`` if the two do not match."""
    if records.dtype != COMMAND_DTYPE or results.dtype != RESULT_DTYPE:
        raise ValueError("records must be COMMAND_DTYPE and results RESULT_DTYPE")
    if len(records) != len(results) or not len(records):
        raise ValueError(f"{len(records)} records but {len(results)} results")
    head = results[0]
    levels = [
        QuoteLevel(side, price, amount, order_id, QuoteAction(action))
        for side, price, amount, order_id, action in zip(
            records["side"][1:].tolist(),
            records["price"][1:].tolist(),
            records["amount"][1:].tolist(),
            results["order_id"][1:].tolist(),
            results["value"][1:].tolist(),
            strict=True,
        )
    ]
    raw = None
    if with_events:
        start, count = int(head["event_start"]), int(head["event_count"])
        raw = events[start : start + count].tobytes()
    return QuoteDone(int(head["seq"]), int(head["value"]), levels, raw)


# --------------------------------------------------------------------------- decimal text


def _exact(market: MarketInfo, text: object, what: str, price: bool) -> int:
    """``text`` in ticks (``price``) or lots, exact and in range, or ``ParseError``."""
    places = market.money_prec if price else market.stock_prec
    high = market.max_price if price else market.max_amount
    keeper = "prices (money_prec)" if price else "amounts (stock_prec)"
    if not isinstance(text, str):
        raise ParseError(f"{what} must be a string")
    try:
        value = parse_decimal(text)
    except ParseError as exc:
        raise ParseError(f"{what}: {exc}") from None
    if not is_exact(value, places):
        raise ParseError(
            f"{what} {text!r} has more decimal places than the {places} of market "
            f"{market.name}'s {keeper}, so it cannot be represented exactly"
        )
    units = to_units(value, places)
    if not 1 <= units <= high:
        span = f"{format_units(1, places)}..{format_units(high, places)}"
        raise ParseError(f"{what} {text!r} is out of range: {span}")
    return units


def parse_level(market: MarketInfo, level: object, what: str = "level") -> tuple[int, int]:
    """A level given as decimal text, ``[price, amount]``, as ``(ticks, lots)`` of
    ``market``: each exact at the market's precisions (``money_prec``,
    ``stock_prec``) and within 1..max_price, 1..max_amount; else ``ParseError``
    naming ``what`` and why. The engine checks the rest (min_amount, risk limits)."""
    if not isinstance(level, list | tuple) or len(level) != 2:
        raise ParseError(f"{what} must be a [price, amount] pair of strings")
    price_text, amount_text = level
    return (
        _exact(market, price_text, f"{what} price", True),
        _exact(market, amount_text, f"{what} amount", False),
    )


__all__ = [
    "LadderSide",
    "LevelPair",
    "Quote",
    "QuoteDone",
    "QuoteLevel",
    "levels_of",
    "parse_level",
    "quote_call",
    "quote_done",
    "quote_records",
]
