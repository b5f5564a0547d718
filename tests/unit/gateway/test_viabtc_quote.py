"""order.quote's params and result (daemon/viabtc_quote.py; docs/gateways.md, "Mass
quotes"): decimals converted once and exactly, malformed ladders refused with a
precise message before anything is sent, the engine's outcomes as the result and
its refusals as ViaBTC's codes. No engine here: outcomes are made up."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from core.arguments import ArgumentError
from core.schema import CommandKind, QuoteAction, Result, Side
from core.viabtc_codec import CommandOutcome, ViabtcCodec
from daemon import viabtc_quote as quote
from daemon.viabtc_methods import METHODS, arity_error
from ipc import wire
from tests.support.scenario import make_config

CODEC = ViabtcCodec(make_config())  # BTC_USDT: stock_prec 6, money_prec 2, fee_prec 4
BID, ASK = int(Side.BID), int(Side.ASK)


def params(**changes: Any) -> list[Any]:
    given = {
        "user_id": 7, "market": "BTC_USDT", "bids": [["7999.5", "0.1"], ["7999", "0.25"]],
        "asks": [["8000.01", "0.5"]], "taker": "0.002", "maker": "0.001", "source": "mm",
    }  # fmt: skip
    given.update(changes)
    return list(given.values())


def test_the_params_become_the_records_of_a_quote() -> None:
    request = quote.quote_request(CODEC, params())

    expected = wire.quote_records(
        7, 0, [(799_950, 100_000), (799_900, 250_000)], [(800_001, 500_000)], 20, 10,
        source=b"mm",
    )  # fmt: skip
    assert request.market.name == "BTC_USDT"
    assert request.records.tobytes() == expected.tobytes()
    removal = quote.quote_request(CODEC, params(bids=[], asks=[], source=""))
    assert removal.records["kind"].tolist() == [CommandKind.QUOTE]
    assert int(removal.records["amount"][0]) == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"user_id": -1}, "user_id must be in 0..4294967295"),
        ({"market": "DOGE_USDT"}, "unknown market 'DOGE_USDT'"),
        ({"bids": {"7999": "1"}}, "bids must be an array of [price, amount] pairs of strings"),
        ({"asks": [["8000"] * 2] * 33}, "asks has 33 levels; a side has at most 32"),
        ({"bids": [["7999.001", "1"]]}, "bids[0] price '7999.001' has more decimal places "
         "than the 2 of market BTC_USDT's prices (money_prec), so it cannot be represented "
         "exactly"),
        ({"asks": [["8000", "0.0000005"]]}, "asks[0] amount '0.0000005' has more decimal "
         "places than the 6"),
        ({"asks": [["8000", 1]]}, "asks[0] amount must be a string"),
        ({"bids": [["0", "1"]]}, "bids[0] price '0' is out of range"),
        ({"bids": [["7999", "1"], ["7998", "1"], ["7999", "2"]]},
         "bids has the price 7999 twice"),
        ({"asks": [["8000", "1"], ["8000.00", "2"]]}, "asks has the price 8000 twice"),
        ({"bids": [["8000.01", "1"]]}, "the ladder crosses: the bid at 8000.01 is at or above "
         "the ask at 8000.01"),
        ({"taker": "0.00025"}, "taker_fee_rate '0.00025' has more decimal places than the 4 "
         "of market BTC_USDT's fee rates (fee_prec)"),
        ({"maker": "1"}, "maker_fee_rate must be below 1"),
        ({"maker": "-0.001"}, "maker_fee_rate '-0.001' is negative"),
        ({"taker": 0.002}, "taker_fee_rate must be a string"),
        ({"source": "x" * 31}, "source must be at most 30 bytes, without NUL"),
    ],
)  # fmt: skip
def test_malformed_params_are_refused_with_a_precise_message(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ArgumentError) as info:
        quote.quote_request(CODEC, params(**changes))
    assert str(info.value).startswith(message), str(info.value)
    expected = Result.UNKNOWN_MARKET if "market" in changes else Result.INVALID_ARGUMENT
    assert info.value.result == expected


def test_the_method_takes_exactly_seven_params() -> None:
    assert "order.quote" in METHODS
    assert arity_error("order.quote", 7) is None
    bad = arity_error("order.quote", 6)
    assert bad is not None
    assert bad.error == {
        "code": 1,
        "message": "invalid argument: order.quote takes 7 params, not 6",
    }


def outcomes(records: np.ndarray, code: Result = Result.OK) -> list[CommandOutcome]:
    actions = [QuoteAction.NEW, QuoteAction.KEPT, QuoteAction.GROWN, QuoteAction.SHRUNK]
    head = CommandOutcome(int(code), 3 if code == Result.OK else 0, None)
    levels = [
        CommandOutcome(int(code), int(actions[i]) if code == Result.OK else 0, None, 50 + i)
        for i in range(len(records) - 1)
    ]
    return [head, *levels]


def test_the_result_lists_each_level_with_its_order_and_action() -> None:
    request = quote.quote_request(CODEC, params())

    reply = quote.quote_reply(request.market, request.records, outcomes(request.records))

    assert reply.error() is None
    assert reply.result == {
        "cancelled": 3,
        "levels": [
            {"side": BID, "price": "7999.5", "amount": "0.1", "id": 50, "action": "new"},
            {"side": BID, "price": "7999", "amount": "0.25", "id": 51, "action": "kept"},
            {"side": ASK, "price": "8000.01", "amount": "0.5", "id": 52, "action": "grown"},
        ],
    }


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (Result.BALANCE_NOT_ENOUGH, {"code": 1, "message": "balance not enough"}),
        (Result.POST_ONLY_WOULD_TAKE,
         {"code": 1, "message": "post-only order would take liquidity"}),
        (Result.INVALID_ARGUMENT, {"code": 1, "message": "invalid argument"}),
        (Result.NOT_PRIMARY,
         {"code": 3, "message": "service unavailable: this engine is not the primary"}),
        (Result.INTERNAL_ERROR, {"code": 2, "message": "internal error"}),
    ],
)  # fmt: skip
def test_a_refusal_is_the_engines_error_with_viabtcs_code(
    code: Result, error: dict[str, Any]
) -> None:
    request = quote.quote_request(CODEC, params())

    reply = quote.quote_reply(request.market, request.records, outcomes(request.records, code))

    assert reply.error() == error
    assert reply.result is None
