"""matchd's ``order.quote`` over JSON-RPC (docs/gateways.md, "Mass quotes"): the
params checked and converted exactly into a QUOTE's records, and the engine's
results as the method's result.

``order.quote [user_id, market, bids, asks, taker_fee_rate, maker_fee_rate, source]``
sets the user's whole ladder on the market (docs/engine.md, "QUOTE"): ``bids`` and
``asks`` are arrays of ``[price, amount]`` decimal strings, at most
``MAX_QUOTE_LEVELS`` a side. Every decimal is converted once, here, exactly: a price
or amount that is not a multiple of the market's tick or lot, or a fee rate with more
places than its ``fee_prec``, is refused (never rounded, unlike ViaBTC's put_limit,
which cuts). The gateway also refuses what is malformed on its face, with a precise
message: too many levels, a price twice on a side, a bid at or above an ask. The
engine checks everything again (and the rest: min_amount, risk limits, funds, the
book). The result is ``{"cancelled": n, "levels": [{"side", "price", "amount", "id",
"action"}, ...]}``, the levels in the order given (bids, then asks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from core.arguments import ArgumentError, str_arg
from core.config import Market
from core.errors import ParseError
from core.fixed import format_units, is_exact, parse_decimal, to_units
from core.schema import MAX_QUOTE_LEVELS, SOURCE_LENGTH, QuoteAction, Result
from core.viabtc_codec import CommandOutcome, Reply, ViabtcCodec, fail, success
from ipc.wire import MarketInfo, parse_level, quote_records

METHOD: Final = "order.quote"
#: order.quote's params: user_id, market, bids, asks, taker_fee_rate,
#: maker_fee_rate, source.
PARAMS: Final = 7
#: The name of each level's ``action`` in the result.
ACTION_NAMES: Final = {
    QuoteAction.KEPT: "kept",
    QuoteAction.SHRUNK: "shrunk",
    QuoteAction.GROWN: "grown",
    QuoteAction.NEW: "new",
}

Level = tuple[int, int]


@dataclass(frozen=True, slots=True)
class QuoteRequest:
    """order.quote's checked params: the market and the QUOTE's k + 1 records."""

    market: Market
    records: np.ndarray


def quote_request(codec: ViabtcCodec, params: Sequence[Any]) -> QuoteRequest:
    """order.quote's ``params`` (``PARAMS`` of them) as a QUOTE's records (``ts_ns``
    0: the server sets it); ``ArgumentError`` naming the param and why."""
    user_id, market, bids, asks, taker, maker, source = params
    user = codec.user(user_id)
    m = codec.market(market)
    info = MarketInfo.from_market(m)
    bid_levels = _side(info, bids, "bids")
    ask_levels = _side(info, asks, "asks")
    problem = ladder_problem(m, bid_levels, ask_levels)
    if problem is not None:
        raise ArgumentError(problem)
    records = quote_records(
        user, m.index, bid_levels, ask_levels, _rate(m, taker, "taker_fee_rate"),
        _rate(m, maker, "maker_fee_rate"), source=_source(source),
    )  # fmt: skip
    return QuoteRequest(m, records)


def _side(info: MarketInfo, levels: object, what: str) -> list[Level]:
    """One side's levels as (ticks, lots)."""
    if not isinstance(levels, list):
        raise ArgumentError(f"{what} must be an array of [price, amount] pairs of strings")
    if len(levels) > MAX_QUOTE_LEVELS:
        raise ArgumentError(
            f"{what} has {len(levels)} levels; a side has at most {MAX_QUOTE_LEVELS}"
        )
    out = []
    for i, level in enumerate(levels):
        try:
            out.append(parse_level(info, level, f"{what}[{i}]"))
        except ParseError as exc:
            raise ArgumentError(str(exc)) from None
    return out


def ladder_problem(m: Market, bids: Sequence[Level], asks: Sequence[Level]) -> str | None:
    """Why the ladder is malformed on its face (a price twice on a side, a bid at or
    above an ask), or None. The engine refuses the same (INVALID_ARGUMENT)."""

    def price(ticks: int) -> str:
        return format_units(ticks, m.money_prec)

    for what, levels in (("bids", bids), ("asks", asks)):
        seen: set[int] = set()
        for ticks, _ in levels:
            if ticks in seen:
                return f"{what} has the price {price(ticks)} twice"
            seen.add(ticks)
    if bids and asks:
        best_bid = max(p for p, _ in bids)
        best_ask = min(p for p, _ in asks)
        if best_bid >= best_ask:
            return (
                f"the ladder crosses: the bid at {price(best_bid)} is at or above the ask "
                f"at {price(best_ask)}"
            )
    return None


def _rate(m: Market, value: object, what: str) -> int:
    """A fee rate, exact at the market's ``fee_prec``: 0 <= rate < 1."""
    text = str_arg(value, what)
    try:
        rate = parse_decimal(text)
    except ParseError as exc:
        raise ArgumentError(f"{what}: {exc}") from None
    if rate < 0:
        raise ArgumentError(f"{what} {text!r} is negative")
    if not is_exact(rate, m.fee_prec):
        raise ArgumentError(
            f"{what} {text!r} has more decimal places than the {m.fee_prec} of market "
            f"{m.name}'s fee rates (fee_prec), so it cannot be represented exactly"
        )
    units = to_units(rate, m.fee_prec)
    if units >= m.fee_den:
        raise ArgumentError(f"{what} must be below 1")
    return units


def _source(value: object) -> bytes:
    raw = str_arg(value, "source").encode()
    if len(raw) > SOURCE_LENGTH or b"\0" in raw:
        raise ArgumentError(f"source must be at most {SOURCE_LENGTH} bytes, without NUL")
    return raw


def quote_reply(m: Market, records: np.ndarray, outcomes: Sequence[CommandOutcome]) -> Reply:
    """The reply to order.quote from the outcomes of its records (by position): the
    engine's error (ViaBTC's code 1, 2 or 3 and its message), or the result."""
    if len(outcomes) != len(records):  # pragma: no cover - the engine answers each record
        return fail(METHOD, Result.INTERNAL_ERROR, "the engine did not answer every level")
    head = outcomes[0]
    if head.code != Result.OK:
        try:
            code = Result(head.code)
        except ValueError:
            return fail(METHOD, Result.INTERNAL_ERROR, f"unknown engine code {head.code}")
        return fail(METHOD, code)
    levels = [
        {
            "side": side,
            "price": format_units(price, m.money_prec),
            "amount": format_units(amount, m.stock_prec),
            "id": outcome.order_id,
            "action": ACTION_NAMES[QuoteAction(outcome.value)],
        }
        for side, price, amount, outcome in zip(
            records["side"][1:].tolist(),
            records["price"][1:].tolist(),
            records["amount"][1:].tolist(),
            outcomes[1:],
            strict=True,
        )
    ]
    return success({"cancelled": head.value, "levels": levels})


__all__ = [
    "ACTION_NAMES",
    "METHOD",
    "PARAMS",
    "QuoteRequest",
    "ladder_problem",
    "quote_reply",
    "quote_request",
]
