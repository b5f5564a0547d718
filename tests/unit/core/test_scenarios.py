"""Scenario tests of the engine contract (docs/engine.md), run on every implementation.

Each test reads as a table: the book before, one command, the events and balances
after. ``Scenario`` (tests/support/scenario.py) checks after every step that the
invariants hold, that every asset adds up to its deposits, and that a rejected
command changed nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytest

from core import commands
from core.config import EngineConfig
from core.reference import ReferenceEngine
from core.schema import (
    COMMAND_DTYPE,
    MAX_SUPPLY_UNITS,
    CommandKind,
    EventKind,
    OrderFlag,
    OrderType,
    Result,
    StpMode,
    TimeInForce,
)
from core.views import AssetSummary, MarketSummary
from tests.support.engines import EngineClass
from tests.support.scenario import (
    ALICE,
    ASK,
    BID,
    BOB,
    BTC,
    BTC_USDT,
    CAROL,
    DAVE,
    ETH,
    ETH_BTC,
    FEE,
    USDT,
    Scenario,
    make_config,
)

pytestmark = pytest.mark.kernel

POST_ONLY = int(OrderFlag.POST_ONLY)
OK = Result.OK


def funded(engine_cls: EngineClass, **limits: int) -> Scenario:
    """A scenario where ALICE, BOB, CAROL and DAVE hold 10 BTC, 10 ETH, 100000 USDT."""
    s = Scenario(engine_cls, **limits)
    for user in (ALICE, BOB, CAROL, DAVE):
        s.deposit(user, BTC, "10")
        s.deposit(user, ETH, "10")
        s.deposit(user, USDT, "100000")
    return s


# ------------------------------------------------------------------------ trades and fees


def test_viabtc_worked_fee_example(engine_cls: EngineClass) -> None:
    # Arrange: the maker bids 1 @ 8000 with maker fee 0.001.
    s = Scenario(engine_cls)
    s.deposit(BOB, USDT, "8000")
    s.deposit(ALICE, BTC, "1")
    bid = s.limit(BOB, BID, "1", "8000", maker="0.001")
    assert bid.brief() == [("BAL", BOB, "USDT", "FREEZE", "-8000", "8000"), ("PUT", 1)]

    # Act: the taker sells 1 @ 7900 with taker fee 0.002.
    ask = s.limit(ALICE, ASK, "1", "7900", taker="0.002")

    # Assert: the trade is at the maker's 8000.
    assert ask.ok
    assert ask.order_id == 2
    assert ask.brief() == [
        ("DEAL", 2, 1, "8000", "1"),
        ("BAL", ALICE, "BTC", "TRADE", "-1", "0"),
        ("BAL", ALICE, "USDT", "TRADE", "8000", "0"),
        ("BAL", ALICE, "USDT", "FEE", "-16", "0"),
        ("BAL", BOB, "USDT", "TRADE", "0", "-8000"),
        ("BAL", BOB, "BTC", "TRADE", "1", "0"),
        ("BAL", BOB, "BTC", "FEE", "-0.001", "0"),
        ("BAL", FEE, "USDT", "FEE_INCOME", "16", "0"),
        ("BAL", FEE, "BTC", "FEE_INCOME", "0.001", "0"),
        ("FINISH", 1, "FILLED"),
        ("FINISH", 2, "FILLED"),
    ]
    assert s.balance(ALICE, BTC) == ("0", "0")
    assert s.balance(ALICE, USDT) == ("7984", "0")
    assert s.balance(BOB, USDT) == ("0", "0")
    assert s.balance(BOB, BTC) == ("0.999", "0")
    assert s.balance(FEE, USDT) == ("16", "0")
    assert s.balance(FEE, BTC) == ("0.001", "0")
    assert s.engine.counters() == (4, 2, 1)


def test_event_records_carry_every_field(engine_cls: EngineClass) -> None:
    s = Scenario(engine_cls)
    deposit = s.update(ALICE, BTC, "1", business=b"deposit", business_id=77)
    s.deposit(BOB, USDT, "8000")
    bid = s.limit(BOB, BID, "1", "8000", maker="0.001", source=b"web")
    ask = s.limit(ALICE, ASK, "1", "7900", taker="0.002", source=b"api \xc3\xa9")

    assert deposit.event(0) == {
        "seq": 1, "ts_ns": s.ts_ns - 3000, "user": ALICE, "left": 10**10,
        "deal_money": 10**10, "ctime_ns": 77, "market": -1,
        "kind": EventKind.BALANCE, "reason": 1,
    }  # fmt: skip
    assert bid.event(0) == {
        "seq": 3, "ts_ns": s.ts_ns - 1000, "order_id": 1, "user": BOB,
        "asset": USDT, "kind": EventKind.BALANCE, "reason": 5, "deal_stock": 8000 * 10**8,
        "deal_money": -8000 * 10**8, "deal_fee": 8000 * 10**8,
    }  # fmt: skip
    assert ask.event(0) == {
        "seq": 4, "ts_ns": s.ts_ns, "order_id": 2, "user": ALICE, "price": 800000,
        "amount": 10**6, "deal_money": 8000 * 10**8, "deal_fee": 16 * 10**8, "deal_id": 1,
        "maker_order": 1, "maker_user": BOB, "maker_fee": 10**7,
        "kind": EventKind.DEAL, "side": ASK,
    }  # fmt: skip
    assert ask.event(4) == {  # the maker gives from frozen
        "seq": 4, "ts_ns": s.ts_ns, "order_id": 1, "user": BOB,
        "asset": USDT, "kind": EventKind.BALANCE, "reason": 2, "deal_fee": -8000 * 10**8,
        "deal_id": 1,
    }  # fmt: skip
    assert ask.event(9) == {  # maker finished: the full order state
        "seq": 4, "ts_ns": s.ts_ns, "order_id": 1, "user": BOB, "price": 800000,
        "amount": 10**6, "deal_stock": 10**6, "deal_money": 8000 * 10**8, "deal_fee": 10**7,
        "ctime_ns": s.ts_ns - 1000, "mtime_ns": s.ts_ns, "maker_rate": 10,
        "kind": EventKind.ORDER_FINISH, "reason": 1, "side": BID,
        "otype": OrderType.LIMIT, "source_len": 3, "source": b"web",
    }  # fmt: skip
    assert ask.event(10) == {
        "seq": 4, "ts_ns": s.ts_ns, "order_id": 2, "user": ALICE, "price": 790000,
        "amount": 10**6, "deal_stock": 10**6, "deal_money": 8000 * 10**8,
        "deal_fee": 16 * 10**8, "ctime_ns": s.ts_ns, "mtime_ns": s.ts_ns, "taker_rate": 20,
        "kind": EventKind.ORDER_FINISH, "reason": 1, "side": ASK,
        "otype": OrderType.LIMIT, "source_len": 6, "source": b"api \xc3\xa9",
    }  # fmt: skip


def test_fees_truncate_toward_zero_and_zero_fees_emit_nothing(
    engine_cls: EngineClass,
) -> None:
    s = funded(engine_cls)
    s.limit(ALICE, BID, "0.001", "123.45", maker="0.0003")
    # deal 0.12345 USDT; seller fee 0.000086415 -> 0.00008641; buyer fee 0.0000003 BTC
    fill = s.limit(BOB, ASK, "0.001", "123.45", taker="0.0007")
    assert ("BAL", BOB, "USDT", "FEE", "-0.00008641", "0") in fill.brief()
    assert ("BAL", ALICE, "BTC", "FEE", "-0.0000003", "0") in fill.brief()
    assert s.balance(FEE, USDT) == ("0.00008641", "0")
    assert s.balance(FEE, BTC) == ("0.0000003", "0")

    s.limit(ALICE, BID, "0.001", "0.01", maker="0.0001")
    # deal 0.00001 USDT; seller fee 0.000000001 truncates to 0: no FEE events for it
    tiny = s.limit(BOB, ASK, "0.001", "0.01", taker="0.0001")
    reasons = [(e[1], e[2], e[3]) for e in tiny.brief() if e[0] == "BAL"]
    assert reasons == [
        (BOB, "BTC", "TRADE"),
        (BOB, "USDT", "TRADE"),
        (ALICE, "USDT", "TRADE"),
        (ALICE, "BTC", "TRADE"),
        (ALICE, "BTC", "FEE"),
        (FEE, "BTC", "FEE_INCOME"),
    ]


def test_second_market_scales(engine_cls: EngineClass) -> None:
    # ETH_BTC: stock_prec 4, money_prec 5, fee_prec 3, both assets prec 10.
    s = funded(engine_cls)
    s.limit(BOB, BID, "2", "0.05432", market=ETH_BTC, maker="0.001")
    fill = s.limit(ALICE, ASK, "1.2345", "0.05", market=ETH_BTC, taker="0.002")
    # deal 0.05432 x 1.2345 = 0.06705804 BTC; seller fee 0.00013411608 -> 0.000134116
    assert fill.brief() == [
        ("DEAL", 2, 1, "0.05432", "1.2345"),
        ("BAL", ALICE, "ETH", "TRADE", "-1.2345", "0"),
        ("BAL", ALICE, "BTC", "TRADE", "0.06705804", "0"),
        ("BAL", ALICE, "BTC", "FEE", "-0.000134116", "0"),
        ("BAL", BOB, "BTC", "TRADE", "0", "-0.06705804"),
        ("BAL", BOB, "ETH", "TRADE", "1.2345", "0"),
        ("BAL", BOB, "ETH", "FEE", "-0.0012345", "0"),
        ("BAL", FEE, "BTC", "FEE_INCOME", "0.000134116", "0"),
        ("BAL", FEE, "ETH", "FEE_INCOME", "0.0012345", "0"),
        ("UPDATE", 1),
        ("FINISH", 2, "FILLED"),
    ]
    assert {fill.event(i)["market"] for i in range(len(fill.events))} == {ETH_BTC}
    maker = s.engine.order(ETH_BTC, 1)
    assert maker is not None
    assert (maker.left, maker.deal_stock, maker.deal_money, maker.deal_fee) == (
        7655,
        12345,
        6705804 * 100,
        12345 * 10**3,
    )
    assert s.balance(BOB, BTC) == ("9.89136", "0.04158196")  # 0.05432 x 0.7655 frozen


# ------------------------------------------------------------------------ priority, fills


def test_price_time_priority_fills_at_maker_prices(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.limit(ALICE, ASK, "1", "101")  # 1
    s.limit(BOB, ASK, "1", "100")  # 2
    s.limit(CAROL, ASK, "1", "100")  # 3: same price as 2, younger
    assert s.book_ids(ASK) == [2, 3, 1]

    take = s.limit(DAVE, BID, "2.5", "101")

    assert take.deals() == [(4, 2, "100", "1"), (4, 3, "100", "1"), (4, 1, "101", "0.5")]
    assert take.brief(balances=False)[-2:] == [("UPDATE", 1), ("FINISH", 4, "FILLED")]
    assert s.balance(DAVE, USDT) == ("99749.5", "0")
    assert s.book_ids(ASK) == [1]


def test_partial_fill_then_rest(engine_cls: EngineClass) -> None:
    s = Scenario(engine_cls)
    s.deposit(ALICE, BTC, "2")
    s.deposit(BOB, USDT, "1000")
    s.limit(ALICE, ASK, "2", "100")

    small = s.limit(BOB, BID, "0.5", "100")
    assert small.brief(balances=False) == [
        ("DEAL", 2, 1, "100", "0.5"),
        ("UPDATE", 1),
        ("FINISH", 2, "FILLED"),
    ]
    maker = s.engine.order(BTC_USDT, 1)
    assert maker is not None
    assert (maker.amount, maker.left, maker.deal_stock) == (2_000_000, 1_500_000, 500_000)
    assert maker.deal_money == 50 * 10**8

    big = s.limit(BOB, BID, "3", "100")
    assert big.brief(balances=False) == [
        ("DEAL", 3, 1, "100", "1.5"),
        ("FINISH", 1, "FILLED"),
        ("PUT", 3),  # ViaBTC's PUT even when partly filled
    ]
    assert big.brief()[-2] == ("BAL", BOB, "USDT", "FREEZE", "-150", "150")
    rest = s.engine.order(BTC_USDT, 3)
    assert rest is not None
    assert (rest.amount, rest.left, rest.deal_stock) == (3_000_000, 1_500_000, 1_500_000)
    assert s.balance(BOB, USDT) == ("650", "150")
    assert s.balance(BOB, BTC) == ("2", "0")


def test_market_buy_walks_levels_with_money(engine_cls: EngineClass) -> None:
    s = Scenario(engine_cls)
    s.deposit(ALICE, BTC, "2")
    s.deposit(BOB, USDT, "250")
    s.limit(ALICE, ASK, "1", "100")
    s.limit(ALICE, ASK, "1", "333.33")

    buy = s.market_order(BOB, BID, "250")

    # 150 / 333.33 = 0.4500045.. lots truncated to 0.450004, costing 149.99983332
    assert buy.brief(balances=False) == [
        ("DEAL", 3, 1, "100", "1"),
        ("FINISH", 1, "FILLED"),
        ("DEAL", 3, 2, "333.33", "0.450004"),
        ("UPDATE", 2),
        ("FINISH", 3, "EXPIRED"),
    ]
    finish = buy.event(-1)
    assert finish["otype"] == OrderType.MARKET
    assert finish["tif"] == TimeInForce.IOC
    assert "price" not in finish  # 0 for market orders
    assert (finish["amount"], finish["left"]) == (250 * 10**8, 16668)  # money units
    assert (finish["deal_stock"], finish["deal_money"]) == (1_450_004, 24999983332)
    assert s.balance(BOB, USDT) == ("0.00016668", "0")
    assert s.balance(BOB, BTC) == ("1.450004", "0")


def test_market_buy_fills_exactly_and_stops_when_no_lot_fits(
    engine_cls: EngineClass,
) -> None:
    s = funded(engine_cls)
    s.limit(ALICE, ASK, "1", "100")  # 1
    s.limit(ALICE, ASK, "1", "200000")  # 2: one lot costs 0.2

    exact = s.market_order(BOB, BID, "50")
    assert exact.brief(balances=False) == [
        ("DEAL", 3, 1, "100", "0.5"),
        ("UPDATE", 1),
        ("FINISH", 3, "FILLED"),
    ]

    short = s.market_order(BOB, BID, "50.1")  # 50 buys the rest of 1; 0.1 < 0.2
    assert short.brief(balances=False) == [
        ("DEAL", 4, 1, "100", "0.5"),
        ("FINISH", 1, "FILLED"),
        ("FINISH", 4, "EXPIRED"),
    ]
    assert short.event(-1)["left"] == 10**7
    assert s.book_ids(ASK) == [2]


def test_market_sell_walks_bids_down(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.limit(ALICE, BID, "1", "100")
    s.limit(ALICE, BID, "1", "90")

    sell = s.market_order(BOB, ASK, "3", taker="0.001")

    assert sell.brief(balances=False) == [
        ("DEAL", 3, 1, "100", "1"),
        ("FINISH", 1, "FILLED"),
        ("DEAL", 3, 2, "90", "1"),
        ("FINISH", 2, "FILLED"),
        ("FINISH", 3, "EXPIRED"),
    ]
    assert sell.event(-1)["left"] == 1_000_000  # lots
    assert s.balance(BOB, BTC) == ("8", "0")
    assert s.balance(BOB, USDT) == ("100189.81", "0")  # 190 less 0.19 fee

    s.limit(ALICE, BID, "2", "80")
    exact = s.market_order(BOB, ASK, "2")
    assert exact.brief(balances=False)[-1] == ("FINISH", 5, "FILLED")


# ------------------------------------------------------------------------ checks and codes


def test_limit_checks_balance_before_minimum(engine_cls: EngineClass) -> None:
    s = Scenario(engine_cls)
    s.deposit(ALICE, BTC, "0.0005")
    s.deposit(BOB, USDT, "0.05")

    assert s.limit(ALICE, ASK, "0.0006", "100").code == Result.BALANCE_NOT_ENOUGH
    assert s.limit(ALICE, ASK, "0.0005", "100").code == Result.AMOUNT_TOO_SMALL
    assert s.limit(BOB, BID, "0.0006", "100").code == Result.BALANCE_NOT_ENOUGH  # 0.06
    assert s.limit(BOB, BID, "0.0005", "100").code == Result.AMOUNT_TOO_SMALL
    assert s.engine.counters() == (2, 0, 0)


def test_market_checks_balance_then_trader_then_minimum(engine_cls: EngineClass) -> None:
    s = Scenario(engine_cls)
    s.deposit(ALICE, BTC, "0.0005")
    s.deposit(BOB, USDT, "7.99")
    s.deposit(CAROL, USDT, "100")
    s.deposit(CAROL, BTC, "1")

    assert s.market_order(ALICE, ASK, "0.0006").code == Result.BALANCE_NOT_ENOUGH
    assert s.market_order(ALICE, ASK, "0.0005").code == Result.NO_ENOUGH_TRADER
    assert s.market_order(BOB, BID, "8").code == Result.BALANCE_NOT_ENOUGH
    assert s.market_order(BOB, BID, "7.99").code == Result.NO_ENOUGH_TRADER

    s.limit(CAROL, BID, "0.01", "100")
    s.limit(CAROL, ASK, "0.01", "8000")  # a market bid must spend >= 8000 x 0.001
    assert s.market_order(ALICE, ASK, "0.0005").code == Result.AMOUNT_TOO_SMALL
    assert s.market_order(BOB, BID, "7.99").code == Result.AMOUNT_TOO_SMALL

    s.deposit(BOB, USDT, "0.01")
    assert s.market_order(BOB, BID, "8").ok
    assert s.balance(BOB, BTC) == ("0.001", "0")


def _with_source_len(cmd: np.ndarray, length: int) -> np.ndarray:
    cmd["source_len"] = length
    return cmd


def _with(cmd: np.ndarray, **fields: int) -> np.ndarray:
    for name, value in fields.items():
        cmd[name] = value
    return cmd


Build = Callable[[EngineConfig], np.ndarray]
M = BTC_USDT
BAD_COMMANDS: list[tuple[str, Build, Result]] = [
    ("kind 0", lambda c: _with(commands.cancel(ALICE, M, 1), kind=0), Result.INVALID_ARGUMENT),
    (
        "kind BALANCE_UPDATE",
        lambda c: _with(commands.cancel(ALICE, M, 1), kind=CommandKind.BALANCE_UPDATE),
        Result.INVALID_ARGUMENT,
    ),
    (
        "unknown kind before market",
        lambda c: _with(commands.cancel(ALICE, 99, 1), kind=99),
        Result.INVALID_ARGUMENT,
    ),
    ("market 2", lambda c: commands.put_limit(ALICE, 2, ASK, 1000, 100), Result.UNKNOWN_MARKET),
    ("market -1", lambda c: commands.cancel(ALICE, -1, 1), Result.UNKNOWN_MARKET),
    (
        "market before user",
        lambda c: commands.put_limit(-1, 5, ASK, 1000, 100),
        Result.UNKNOWN_MARKET,
    ),
    ("user -1", lambda c: commands.put_limit(-1, M, ASK, 1000, 100), Result.INVALID_ARGUMENT),
    ("user 2**32", lambda c: commands.cancel(2**32, M, 1), Result.INVALID_ARGUMENT),
    ("side 0", lambda c: commands.put_limit(ALICE, M, 0, 1000, 100), Result.INVALID_ARGUMENT),
    ("side 3", lambda c: commands.put_market(ALICE, M, 3, 1000), Result.INVALID_ARGUMENT),
    ("cancel_all side 3", lambda c: commands.cancel_all(ALICE, M, 3), Result.INVALID_ARGUMENT),
    (
        "tif 3",
        lambda c: commands.put_limit(ALICE, M, ASK, 1000, 100, tif=3),
        Result.INVALID_ARGUMENT,
    ),
    (
        "stp 4",
        lambda c: commands.put_limit(ALICE, M, ASK, 1000, 100, stp=4),
        Result.INVALID_ARGUMENT,
    ),
    (
        "market stp -1",
        lambda c: commands.put_market(ALICE, M, ASK, 1000, stp=-1),
        Result.INVALID_ARGUMENT,
    ),
    (
        "flags 2",
        lambda c: commands.put_limit(ALICE, M, ASK, 1000, 100, flags=2),
        Result.INVALID_ARGUMENT,
    ),
    (
        "flags -1",
        lambda c: commands.put_limit(ALICE, M, ASK, 1000, 100, flags=-1),
        Result.INVALID_ARGUMENT,
    ),
    (
        "source 31 bytes",
        lambda c: commands.put_limit(ALICE, M, ASK, 1000, 100, source=b"x" * 31),
        Result.INVALID_ARGUMENT,
    ),
    (
        "source_len -1",
        lambda c: _with_source_len(commands.put_limit(ALICE, M, ASK, 1000, 100), -1),
        Result.INVALID_ARGUMENT,
    ),
    (
        "source not UTF-8",
        lambda c: commands.put_market(ALICE, M, ASK, 1000, source=b"\xff"),
        Result.INVALID_ARGUMENT,
    ),
    (
        "source with NUL",
        lambda c: commands.put_limit(ALICE, M, ASK, 1000, 100, source=b"a\0b"),
        Result.INVALID_ARGUMENT,
    ),
    ("amount 0", lambda c: commands.put_limit(ALICE, M, ASK, 0, 100), Result.INVALID_ARGUMENT),
    (
        "amount above max",
        lambda c: commands.put_limit(ALICE, M, ASK, c.markets[M].max_amount + 1, 100),
        Result.INVALID_ARGUMENT,
    ),
    ("price 0", lambda c: commands.put_limit(ALICE, M, ASK, 1000, 0), Result.INVALID_ARGUMENT),
    (
        "price above max",
        lambda c: commands.put_limit(ALICE, M, BID, 1000, c.markets[M].max_price + 1),
        Result.INVALID_ARGUMENT,
    ),
    (
        "taker rate = fee_den",
        lambda c: commands.put_limit(ALICE, M, ASK, 1000, 100, 10_000, 0),
        Result.INVALID_ARGUMENT,
    ),
    (
        "maker rate -1",
        lambda c: commands.put_limit(ALICE, M, ASK, 1000, 100, 0, -1),
        Result.INVALID_ARGUMENT,
    ),
    ("market amount 0", lambda c: commands.put_market(ALICE, M, ASK, 0), Result.INVALID_ARGUMENT),
    (
        "market ask above max_amount",
        lambda c: commands.put_market(ALICE, M, ASK, c.markets[M].max_amount + 1),
        Result.INVALID_ARGUMENT,
    ),
    (
        "market bid above the supply limit",
        lambda c: commands.put_market(ALICE, M, BID, MAX_SUPPLY_UNITS + 1),
        Result.INVALID_ARGUMENT,
    ),
    (
        "market taker rate",
        lambda c: commands.put_market(ALICE, M, BID, 1000, 10_000),
        Result.INVALID_ARGUMENT,
    ),
    ("replace price 0", lambda c: commands.replace(ALICE, M, 1, 0, 1000), Result.INVALID_ARGUMENT),
    ("replace left 0", lambda c: commands.replace(ALICE, M, 1, 100, 0), Result.INVALID_ARGUMENT),
    (
        "fee account",
        lambda c: commands.put_limit(FEE, M, ASK, 1000, 100),
        Result.FEE_ACCOUNT_CANNOT_TRADE,
    ),
    (
        "fee account before amount",
        lambda c: commands.put_limit(FEE, M, ASK, 0, 100),
        Result.FEE_ACCOUNT_CANNOT_TRADE,
    ),
    (
        "bad side before fee account",
        lambda c: commands.put_limit(FEE, M, 9, 1000, 100),
        Result.INVALID_ARGUMENT,
    ),
    (
        "fee account market",
        lambda c: commands.put_market(FEE, M, ASK, 1000),
        Result.FEE_ACCOUNT_CANNOT_TRADE,
    ),
    (
        "fee account replace",
        lambda c: commands.replace(FEE, M, 1, 100, 1000),
        Result.FEE_ACCOUNT_CANNOT_TRADE,
    ),
    ("fee account cancel", lambda c: commands.cancel(FEE, M, 1), Result.USER_NOT_MATCH),
    ("cancel unknown id", lambda c: commands.cancel(ALICE, M, 2), Result.ORDER_NOT_FOUND),
    ("cancel other market", lambda c: commands.cancel(ALICE, 1, 1), Result.ORDER_NOT_FOUND),
    ("cancel other user", lambda c: commands.cancel(BOB, M, 1), Result.USER_NOT_MATCH),
    (
        "replace unknown id",
        lambda c: commands.replace(ALICE, M, 7, 100, 1000),
        Result.ORDER_NOT_FOUND,
    ),
    (
        "replace other user",
        lambda c: commands.replace(BOB, M, 1, 100, 1000),
        Result.USER_NOT_MATCH,
    ),
]


@pytest.mark.parametrize(
    ("build", "code"),
    [pytest.param(build, code, id=name) for name, build, code in BAD_COMMANDS],
)
def test_bad_commands_are_refused_without_change(
    engine_cls: EngineClass, build: Build, code: Result
) -> None:
    s = funded(engine_cls)
    s.deposit(FEE, BTC, "1")
    s.limit(ALICE, ASK, "1", "100")  # order 1

    step = s.run1(build(s.config))  # Scenario checks that nothing changed

    assert step.code == code
    assert (step.seq, step.order_id, step.value) == (0, 0, 0)


def test_unused_fields_are_ignored(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    order = s.limit(ALICE, BID, "1", "100").order_id
    cancel = _with(commands.cancel(ALICE, BTC_USDT, order), side=9, tif=9, stp=9, flags=9)
    cancel["source_len"] = 99
    assert s.run1(cancel).ok
    market = _with(commands.put_market(BOB, BTC_USDT, ASK, 1000), price=5, maker_rate=-3)
    market = _with(market, tif=TimeInForce.GTC, flags=POST_ONLY)
    assert s.run1(market).code == Result.NO_ENOUGH_TRADER


def test_hostile_records_never_raise(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.limit(ALICE, ASK, "1", "100")
    rng = random.Random(20240601)  # noqa: S311 -- reproducible test data
    raw = bytes(rng.getrandbits(8) for _ in range(COMMAND_DTYPE.itemsize * 500))
    hostile = np.frombuffer(raw, dtype=COMMAND_DTYPE).copy()
    # Make some records plausible, so that later checks are reached too.
    hostile["kind"][::2] = np.array([1, 2, 3, 4, 5] * 50, dtype=np.int8)
    hostile["market"][::3] = 0
    hostile["user"][::4] = ALICE

    steps = s.run(*(hostile[i : i + 1] for i in range(len(hostile))))

    assert {int(step.code) for step in steps} <= {int(code) for code in Result}


# ------------------------------------------------------------------------ time in force


def test_ioc_takes_what_it_can_and_expires(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.limit(ALICE, ASK, "1", "100")

    ioc = s.limit(BOB, BID, "2", "100", tif=TimeInForce.IOC)
    assert ioc.brief(balances=False) == [
        ("DEAL", 2, 1, "100", "1"),
        ("FINISH", 1, "FILLED"),
        ("FINISH", 2, "EXPIRED"),
    ]
    assert s.balance(BOB, USDT) == ("99900", "0")  # nothing frozen

    nothing = s.limit(BOB, BID, "1", "50", tif=TimeInForce.IOC)
    assert nothing.brief() == [("FINISH", 3, "EXPIRED")]
    assert s.engine.counters()[1:] == (3, 1)


def test_fok_is_all_or_nothing(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.limit(ALICE, ASK, "1", "100")
    s.limit(ALICE, ASK, "1", "101")
    counters = s.engine.counters()

    assert s.limit(BOB, BID, "2.5", "101", tif=TimeInForce.FOK).code == Result.FOK_NOT_FILLED
    assert s.limit(BOB, BID, "2", "100", tif=TimeInForce.FOK).code == Result.FOK_NOT_FILLED
    assert s.engine.counters() == counters

    fok = s.limit(BOB, BID, "2", "101", tif=TimeInForce.FOK)
    assert fok.order_id == 3  # the refused ones took no id
    assert fok.deals() == [(3, 1, "100", "1"), (3, 2, "101", "1")]
    assert fok.brief(balances=False)[-1] == ("FINISH", 3, "FILLED")


@pytest.mark.parametrize(
    ("stp", "code"),
    [
        (StpMode.NONE, OK),  # trades with itself
        (StpMode.CANCEL_MAKER, OK),  # own order skipped, 1 left at 100
        (StpMode.CANCEL_TAKER, Result.FOK_NOT_FILLED),  # the walk stops at the own order
        (StpMode.CANCEL_BOTH, Result.FOK_NOT_FILLED),
    ],
)
def test_fok_counts_like_self_trade_prevention(
    engine_cls: EngineClass, stp: StpMode, code: Result
) -> None:
    s = funded(engine_cls)
    s.limit(BOB, ASK, "1", "100")  # own, first in line
    s.limit(ALICE, ASK, "1", "100")

    assert s.limit(BOB, BID, "1", "100", tif=TimeInForce.FOK, stp=stp).code == code


def test_post_only_never_takes(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.limit(ALICE, ASK, "1", "100")

    crossing = s.limit(BOB, BID, "1", "100", flags=POST_ONLY)
    assert crossing.code == Result.POST_ONLY_WOULD_TAKE
    resting = s.limit(BOB, BID, "1", "99.99", flags=POST_ONLY)
    assert resting.brief(balances=False) == [("PUT", 2)]
    assert s.limit(ALICE, ASK, "1", "99.99", flags=POST_ONLY).code == (Result.POST_ONLY_WOULD_TAKE)
    view = s.engine.order(BTC_USDT, 2)
    assert view is not None
    assert view.flags == POST_ONLY


# ------------------------------------------------------------------------ self-trade


STP_CASES = {
    StpMode.NONE: [
        ("DEAL", 3, 1, "100", "1"),
        ("FINISH", 1, "FILLED"),
        ("DEAL", 3, 2, "100", "1"),
        ("FINISH", 2, "FILLED"),
        ("PUT", 3),
    ],
    StpMode.CANCEL_TAKER: [("FINISH", 3, "SELF_TRADE")],
    StpMode.CANCEL_MAKER: [
        ("FINISH", 1, "SELF_TRADE"),
        ("DEAL", 3, 2, "100", "1"),
        ("FINISH", 2, "FILLED"),
        ("PUT", 3),
    ],
    StpMode.CANCEL_BOTH: [("FINISH", 1, "SELF_TRADE"), ("FINISH", 3, "SELF_TRADE")],
}


@pytest.mark.parametrize("stp", list(STP_CASES), ids=lambda m: m.name)
def test_self_trade_prevention(engine_cls: EngineClass, stp: StpMode) -> None:
    s = funded(engine_cls)
    own = s.limit(ALICE, ASK, "1", "100")  # 1
    s.limit(CAROL, ASK, "1", "100")  # 2

    take = s.limit(ALICE, BID, "3", "100", stp=stp)

    assert take.brief(balances=False) == STP_CASES[stp]
    if stp in (StpMode.CANCEL_MAKER, StpMode.CANCEL_BOTH):
        assert take.brief()[0] == ("BAL", ALICE, "BTC", "UNFREEZE", "1", "-1")
        cancelled = take.event(1)
        assert cancelled["mtime_ns"] == cancelled["ctime_ns"] == s.ts_ns - 2000
        assert cancelled["ts_ns"] == s.ts_ns
    expected_asks = {StpMode.CANCEL_TAKER: [own.order_id, 2], StpMode.CANCEL_BOTH: [2]}
    assert s.book_ids(ASK) == expected_asks.get(stp, [])


def test_market_order_self_trade_prevention(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.limit(ALICE, ASK, "1", "100")  # own
    s.limit(CAROL, ASK, "1", "101")

    buy = s.market_order(ALICE, BID, "150", stp=StpMode.CANCEL_MAKER)

    assert buy.brief(balances=False) == [
        ("FINISH", 1, "SELF_TRADE"),
        ("DEAL", 3, 2, "101", "1"),
        ("FINISH", 2, "FILLED"),
        ("FINISH", 3, "EXPIRED"),
    ]
    assert buy.event(-1)["left"] == 49 * 10**8


# ------------------------------------------------------------------------ cancel


def test_cancel_reports_the_order_as_it_stood(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    put = s.limit(ALICE, BID, "1", "100", source=b"bot")
    put_ts = s.ts_ns

    cancel = s.cancel(ALICE, put.order_id)

    assert cancel.order_id == put.order_id
    assert cancel.brief() == [
        ("BAL", ALICE, "USDT", "UNFREEZE", "100", "-100"),
        ("FINISH", 1, "CANCELED"),
    ]
    finish = cancel.event(1)
    assert (finish["ctime_ns"], finish["mtime_ns"], finish["ts_ns"]) == (put_ts, put_ts, s.ts_ns)
    assert (finish["left"], finish["source"]) == (1_000_000, b"bot")
    assert s.cancel(ALICE, put.order_id).code == Result.ORDER_NOT_FOUND
    assert s.balance(ALICE, USDT) == ("100000", "0")


def test_cancel_all_oldest_first_by_side(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.limit(ALICE, BID, "1", "100")  # 1
    s.limit(ALICE, ASK, "1", "200")  # 2
    s.limit(ALICE, BID, "1", "101")  # 3 (better price than 1, younger)
    s.limit(BOB, BID, "1", "98")  # 4
    s.limit(ALICE, BID, "1", "0.05", market=ETH_BTC)  # 5

    bids = s.cancel_all(ALICE, BID)
    assert (bids.code, bids.value, bids.order_id) == (OK, 2, 0)
    assert bids.brief(balances=False) == [("FINISH", 1, "CANCELED"), ("FINISH", 3, "CANCELED")]

    rest = s.cancel_all(ALICE)
    assert rest.value == 1
    assert rest.brief(balances=False) == [("FINISH", 2, "CANCELED")]

    none = s.cancel_all(ALICE)
    assert (none.code, none.seq, none.value) == (OK, 0, 0)
    assert s.book_ids(BID) == [4]
    assert s.book_ids(BID, ETH_BTC) == [5]


def test_cancel_all_cancels_at_most_max_matches_oldest_first(engine_cls: EngineClass) -> None:
    s = funded(engine_cls, max_matches=3)
    for i in range(5):
        s.limit(ALICE, BID, "0.1", str(100 + i))  # ids 1..5
    first = s.cancel_all(ALICE)
    assert (first.code, first.value) == (OK, 3)
    assert [e[1] for e in first.brief(balances=False)] == [1, 2, 3]
    second = s.cancel_all(ALICE)
    assert (second.code, second.value) == (OK, 2)
    assert s.cancel_all(ALICE).value == 0


# ------------------------------------------------------------------------ reach


def reach_book(engine_cls: EngineClass) -> Scenario:
    """max_matches 3; asks: BOB 0.1@100, CAROL 0.1@100, DAVE 0.1@101, BOB 0.1@102,
    ALICE 0.1@101 (ALICE's own, behind DAVE)."""
    s = funded(engine_cls, max_matches=3)
    s.limit(BOB, ASK, "0.1", "100")  # 1
    s.limit(CAROL, ASK, "0.1", "100")  # 2
    s.limit(DAVE, ASK, "0.1", "101")  # 3
    s.limit(ALICE, ASK, "0.1", "101")  # 4
    s.limit(BOB, ASK, "0.1", "102")  # 5
    return s


def test_a_taker_reaching_more_than_max_matches_is_refused_whole(engine_cls: EngineClass) -> None:
    s = reach_book(engine_cls)
    # 0.2 at 101: the first level (2 orders) covers it: reach 2.
    assert s.limit(CAROL, BID, "0.2", "101", tif=TimeInForce.IOC).code == OK
    s = reach_book(engine_cls)
    # 0.25 at 101: both levels, 4 orders: refused, nothing changes.
    refused = s.limit(CAROL, BID, "0.25", "101")
    assert (refused.code, refused.seq, len(refused.events)) == (Result.TOO_MANY_MATCHES, 0, 0)
    # The same amount with a limit of 100 reaches only the first level.
    assert s.limit(CAROL, BID, "0.25", "100").code == OK


def test_reach_does_not_count_the_takers_own_orders_toward_the_amount(
    engine_cls: EngineClass,
) -> None:
    def book() -> Scenario:
        s = funded(engine_cls, max_matches=3)
        s.limit(ALICE, ASK, "0.1", "100")  # her own, at the head
        s.limit(BOB, ASK, "0.1", "100")
        s.limit(CAROL, ASK, "0.1", "101")
        s.limit(DAVE, ASK, "0.1", "101")
        return s

    # Without stp her own 0.1 counts: the first level (2 orders) covers 0.2.
    assert book().limit(ALICE, BID, "0.2", "101").code == OK
    # With stp it does not: the second level is needed too, 4 orders.
    refused = book().limit(ALICE, BID, "0.2", "101", stp=StpMode.CANCEL_MAKER)
    assert refused.code == Result.TOO_MANY_MATCHES


def test_reach_of_market_orders_and_replaces(engine_cls: EngineClass) -> None:
    s = reach_book(engine_cls)
    # A market bid of 25 USDT: 0.1@100 + 0.1@100 cost 20, the 101 level is needed.
    assert s.market_order(CAROL, BID, "25").code == Result.TOO_MANY_MATCHES
    assert s.market_order(CAROL, BID, "15").code == OK
    s = reach_book(engine_cls)
    bid = s.limit(CAROL, BID, "0.25", "99")
    assert bid.code == OK
    moved = s.replace(CAROL, bid.order_id, "101", "0.25")
    assert moved.code == Result.TOO_MANY_MATCHES
    assert s.replace(CAROL, bid.order_id, "100", "0.25").code == OK


# ------------------------------------------------------------------------ replace


def test_replace_amount_down_keeps_priority(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.limit(ALICE, ASK, "2", "100")  # 1
    s.limit(CAROL, ASK, "1", "100")  # 2

    down = s.replace(ALICE, 1, "100", "1.5")

    assert down.order_id == 1
    assert down.brief() == [("BAL", ALICE, "BTC", "UNFREEZE", "0.5", "-0.5"), ("UPDATE", 1)]
    view = s.engine.order(BTC_USDT, 1)
    assert view is not None
    assert (view.amount, view.left, view.mtime_ns) == (1_500_000, 1_500_000, s.ts_ns)
    assert s.book_ids(ASK) == [1, 2]
    assert s.replace(ALICE, 1, "100", "1.5").brief() == [("UPDATE", 1)]
    assert s.limit(BOB, BID, "1", "100").deals() == [(3, 1, "100", "1")]


def test_replace_after_fill_adjusts_amount(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.limit(ALICE, ASK, "2", "100")
    s.limit(BOB, BID, "0.5", "100")  # 1.5 left

    s.replace(ALICE, 1, "100", "1")

    view = s.engine.order(BTC_USDT, 1)
    assert view is not None
    assert (view.amount, view.left, view.deal_stock) == (1_500_000, 1_000_000, 500_000)


@pytest.mark.parametrize(
    ("price", "left", "asks"),
    [
        ("100", "2", [2, 1]),  # more left at the same price: loses priority
        ("101", "1", [2, 1]),  # a new price: loses priority
        ("99", "1", [1, 2]),  # a better price: first in the book, but at the tail of 99
    ],
)
def test_replace_loses_priority(
    engine_cls: EngineClass, price: str, left: str, asks: list[int]
) -> None:
    s = funded(engine_cls)
    s.limit(ALICE, ASK, "1", "100")  # 1
    s.limit(CAROL, ASK, "1", "100")  # 2

    moved = s.replace(ALICE, 1, price, left)

    assert moved.brief() == [
        ("BAL", ALICE, "BTC", "UNFREEZE", "1", "-1"),
        ("BAL", ALICE, "BTC", "FREEZE", f"-{left}", left),
        ("UPDATE", 1),
    ]
    assert s.book_ids(ASK) == asks


def test_replace_that_crosses_trades_as_taker(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.limit(BOB, BID, "1", "99", maker="0.001")  # 1
    s.limit(ALICE, ASK, "2", "101", taker="0.002")  # 2

    cross = s.replace(ALICE, 2, "99", "2")

    assert cross.brief() == [
        ("BAL", ALICE, "BTC", "UNFREEZE", "2", "-2"),
        ("DEAL", 2, 1, "99", "1"),
        ("BAL", ALICE, "BTC", "TRADE", "-1", "0"),
        ("BAL", ALICE, "USDT", "TRADE", "99", "0"),
        ("BAL", ALICE, "USDT", "FEE", "-0.198", "0"),
        ("BAL", BOB, "USDT", "TRADE", "0", "-99"),
        ("BAL", BOB, "BTC", "TRADE", "1", "0"),
        ("BAL", BOB, "BTC", "FEE", "-0.001", "0"),
        ("BAL", FEE, "USDT", "FEE_INCOME", "0.198", "0"),
        ("BAL", FEE, "BTC", "FEE_INCOME", "0.001", "0"),
        ("FINISH", 1, "FILLED"),
        ("BAL", ALICE, "BTC", "FREEZE", "-1", "1"),
        ("UPDATE", 2),
    ]
    view = s.engine.order(BTC_USDT, 2)
    assert view is not None
    assert (view.price, view.amount, view.left, view.deal_stock) == (
        9900,
        2_000_000,
        1_000_000,
        1_000_000,
    )

    s.limit(BOB, BID, "1", "95")  # 3
    filled = s.replace(ALICE, 2, "95", "1")
    assert filled.brief(balances=False) == [
        ("DEAL", 2, 3, "95", "1"),
        ("FINISH", 3, "FILLED"),
        ("FINISH", 2, "FILLED"),
    ]
    assert s.replace(ALICE, 2, "95", "1").code == Result.ORDER_NOT_FOUND


def test_replace_checks(engine_cls: EngineClass) -> None:
    s = Scenario(engine_cls)
    s.deposit(ALICE, BTC, "1.002")
    s.deposit(BOB, USDT, "99")
    s.deposit(CAROL, USDT, "1000")
    s.limit(ALICE, ASK, "1", "160")  # 1
    s.limit(BOB, BID, "1", "99")  # 2: all of BOB's money frozen
    s.limit(ALICE, ASK, "0.002", "200", flags=POST_ONLY)  # 3: all of ALICE's BTC frozen
    s.limit(CAROL, BID, "1", "150")  # 4

    assert s.replace(ALICE, 1, "160", "1.0001").code == Result.BALANCE_NOT_ENOUGH
    assert s.replace(BOB, 2, "99.01", "1").code == Result.BALANCE_NOT_ENOUGH
    assert s.replace(BOB, 2, "98", "1").brief() == [
        ("BAL", BOB, "USDT", "UNFREEZE", "99", "-99"),
        ("BAL", BOB, "USDT", "FREEZE", "-98", "98"),
        ("UPDATE", 2),
    ]
    assert s.replace(ALICE, 3, "200", "0.0005").ok  # shrinking below the minimum is fine
    assert s.replace(ALICE, 3, "200", "0.0008").code == Result.AMOUNT_TOO_SMALL
    assert s.replace(ALICE, 3, "201", "0.0005").ok  # not above the old left
    assert s.replace(ALICE, 3, "150", "0.0005").code == Result.POST_ONLY_WOULD_TAKE
    assert s.replace(CAROL, 1, "100", "1").code == Result.USER_NOT_MATCH


# ------------------------------------------------------------------------ capacities


def test_book_full_when_the_pool_has_no_slot(engine_cls: EngineClass) -> None:
    s = funded(engine_cls, max_orders=2)
    s.limit(ALICE, ASK, "1", "100")
    s.limit(ALICE, ASK, "1", "101")

    assert s.limit(ALICE, ASK, "1", "100").code == Result.BOOK_FULL
    # A GTC order that would be filled at once is refused too: it might rest.
    assert s.limit(BOB, BID, "0.5", "100").code == Result.BOOK_FULL
    assert s.limit(BOB, BID, "0.5", "100", tif=TimeInForce.IOC).ok
    assert s.market_order(BOB, BID, "20").ok  # order 1 keeps 0.3
    assert s.limit(BOB, BID, "0.5", "50").code == Result.BOOK_FULL
    s.cancel(ALICE, 2)
    assert s.limit(BOB, BID, "0.5", "50").ok


def test_book_full_when_a_side_has_max_levels(engine_cls: EngineClass) -> None:
    s = funded(engine_cls, max_levels=2)
    s.limit(ALICE, ASK, "1", "100")  # 1
    s.limit(ALICE, ASK, "1", "101")  # 2

    assert s.limit(ALICE, ASK, "1", "102").code == Result.BOOK_FULL
    assert s.limit(ALICE, ASK, "1", "101").ok  # 3: the level exists
    assert s.limit(BOB, BID, "1", "99").ok
    assert s.limit(BOB, BID, "1", "98").ok
    assert s.limit(BOB, BID, "1", "97").code == Result.BOOK_FULL
    assert s.limit(BOB, BID, "1", "97", tif=TimeInForce.IOC).ok  # never rests

    assert s.replace(ALICE, 1, "102", "1").ok  # its own level (alone) frees up
    assert s.replace(ALICE, 2, "103", "1").code == Result.BOOK_FULL  # 3 stays at 101
    assert s.book_ids(ASK) == [2, 3, 1]


# ------------------------------------------------------------------------ balance.update


def test_balance_update_is_idempotent(engine_cls: EngineClass) -> None:
    s = Scenario(engine_cls)
    first = s.update(ALICE, BTC, "1", business=b"deposit", business_id=7)
    assert first.brief() == [("BAL", ALICE, "BTC", "UPDATE", "1", "0")]

    assert s.update(ALICE, BTC, "5", business=b"deposit", business_id=7).code == (
        Result.REPEAT_UPDATE
    )
    assert s.update(ALICE, BTC, "1", business=b"deposit", business_id=8).ok
    assert s.update(ALICE, ETH, "1", business=b"deposit", business_id=7).ok
    assert s.update(BOB, BTC, "1", business=b"deposit", business_id=7).ok
    assert s.update(ALICE, BTC, "1", business=b"bonus", business_id=7).ok
    assert s.balance(ALICE, BTC) == ("3", "0")


def test_failed_update_can_be_retried(engine_cls: EngineClass) -> None:
    s = Scenario(engine_cls)
    s.deposit(ALICE, USDT, "10")
    assert s.update(ALICE, USDT, "-10.00000001", business_id=99).code == (Result.BALANCE_NOT_ENOUGH)
    assert s.update(BOB, USDT, "-1", business_id=99).code == Result.BALANCE_NOT_ENOUGH
    s.deposit(ALICE, USDT, "1")

    assert s.update(ALICE, USDT, "-10.00000001", business_id=99).ok
    assert s.balance(ALICE, USDT) == ("0.99999999", "0")


def test_frozen_funds_cannot_be_withdrawn(engine_cls: EngineClass) -> None:
    s = Scenario(engine_cls)
    s.deposit(ALICE, BTC, "1")
    s.limit(ALICE, ASK, "0.6", "100")
    assert s.update(ALICE, BTC, "-0.5").code == Result.BALANCE_NOT_ENOUGH
    assert s.update(ALICE, BTC, "-0.4").ok


def test_business_key_counts_32_bytes_and_zero_change(engine_cls: EngineClass) -> None:
    s = Scenario(engine_cls)
    assert s.update(ALICE, BTC, "1", business=b"x" * 32 + b"a", business_id=1).ok
    assert s.update(ALICE, BTC, "1", business=b"x" * 32 + b"b", business_id=1).code == (
        Result.REPEAT_UPDATE
    )
    assert s.update(ALICE, BTC, "1", business=b"x" * 31 + b"b", business_id=1).ok
    zero = s.update(BOB, USDT, "0", business=b"noop", business_id=1)
    assert zero.ok
    assert zero.brief() == [("BAL", BOB, "USDT", "UPDATE", "0", "0")]
    assert s.update(BOB, USDT, "0", business=b"noop", business_id=1).code == (Result.REPEAT_UPDATE)


def test_balance_update_limits(engine_cls: EngineClass) -> None:
    s = Scenario(engine_cls, max_users=2, max_update_keys=4)
    assert s.update_units(ALICE, USDT, MAX_SUPPLY_UNITS, b"d", 1).ok
    assert s.update_units(ALICE, USDT, 1, b"d", 2).code == Result.SUPPLY_LIMIT
    assert s.update_units(ALICE, USDT, -1, b"d", 2).ok
    # ALICE and the fee account fill the user table.
    assert s.update(BOB, BTC, "1").code == Result.USER_TABLE_FULL
    assert s.update(BOB, BTC, "-1").code == Result.BALANCE_NOT_ENOUGH
    assert s.update(FEE, BTC, "1", business_id=3).ok
    assert s.update(ALICE, BTC, "1", business_id=4).ok
    assert s.update(ALICE, BTC, "1", business_id=5).code == Result.KEY_TABLE_FULL
    assert s.update(ALICE, BTC, "1", business_id=4).code == Result.REPEAT_UPDATE


@pytest.mark.parametrize(
    ("user", "asset", "business_id", "change", "code"),
    [
        (-1, BTC, 1, 1, Result.INVALID_ARGUMENT),
        (2**32, BTC, 1, 1, Result.INVALID_ARGUMENT),
        (ALICE, 3, 1, 1, Result.UNKNOWN_ASSET),
        (ALICE, -1, 1, 1, Result.UNKNOWN_ASSET),
        (-1, 9, 1, 1, Result.INVALID_ARGUMENT),  # the user is checked first
        (ALICE, BTC, 2**63, 1, Result.INVALID_ARGUMENT),
        (ALICE, BTC, 1, -(2**63), Result.INVALID_ARGUMENT),
        (ALICE, 9, 1, 2**63, Result.UNKNOWN_ASSET),  # then the asset, then the ranges
    ],
)
def test_bad_balance_updates(
    engine_cls: EngineClass, user: int, asset: int, business_id: int, change: int, code: Result
) -> None:
    s = Scenario(engine_cls)
    assert s.update_units(user, asset, change, b"deposit", business_id).code == code


def test_the_fee_account_collects_but_cannot_trade(engine_cls: EngineClass) -> None:
    s = Scenario(engine_cls)
    s.deposit(FEE, BTC, "1")
    assert s.limit(FEE, ASK, "1", "100").code == Result.FEE_ACCOUNT_CANNOT_TRADE
    assert s.market_order(FEE, ASK, "1").code == Result.FEE_ACCOUNT_CANNOT_TRADE
    assert s.cancel_all(FEE).value == 0
    assert s.update(FEE, BTC, "-1").ok  # fees can be withdrawn


# ------------------------------------------------------------------------ queries


def test_queries(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    s.limit(ALICE, BID, "1", "100")  # 1
    s.limit(ALICE, BID, "1", "99")  # 2
    s.limit(ALICE, ASK, "1", "200")  # 3
    s.limit(BOB, BID, "2", "98")  # 4
    s.limit(ALICE, BID, "1", "97", source=b"q")  # 5
    s.limit(BOB, ASK, "1", "200.5")  # 6
    s.limit(CAROL, ASK, "2", "201")  # 7
    s.limit(CAROL, ASK, "1", "203")  # 8

    total, mine = s.engine.pending(ALICE, BTC_USDT, 0, 10)
    assert (total, [o.id for o in mine]) == (4, [5, 3, 2, 1])
    assert [o.id for o in s.engine.pending(ALICE, BTC_USDT, 1, 2)[1]] == [3, 2]
    assert s.engine.pending(ALICE, ETH_BTC, 0, 10) == (0, [])

    total, bids = s.engine.book(BTC_USDT, BID, 1, 2)
    assert (total, [o.id for o in bids]) == (4, [2, 4])
    assert s.book_ids(ASK) == [3, 6, 7, 8]

    assert s.engine.depth(BTC_USDT, 10, 0) == (
        [(20000, 10**6), (20050, 10**6), (20100, 2 * 10**6), (20300, 10**6)],
        [(10000, 10**6), (9900, 10**6), (9800, 2 * 10**6), (9700, 10**6)],
    )
    # Merged to 2.00: asks round up (200, 202, 202, 204), bids down (100, 98, 98, 96).
    assert s.engine.depth(BTC_USDT, 10, 200) == (
        [(20000, 10**6), (20200, 3 * 10**6), (20400, 10**6)],
        [(10000, 10**6), (9800, 3 * 10**6), (9600, 10**6)],
    )
    assert s.engine.depth(BTC_USDT, 2, 200) == (
        [(20000, 10**6), (20200, 3 * 10**6)],
        [(10000, 10**6), (9800, 3 * 10**6)],
    )

    assert s.engine.market_summary(BTC_USDT) == MarketSummary(4, 5 * 10**6, 4, 5 * 10**6)
    assert s.engine.market_summary(ETH_BTC) == MarketSummary(0, 0, 0, 0)
    frozen_usdt = (100 + 99 + 97) * 10**8 + 196 * 10**8
    assert s.engine.asset_summary(USDT) == AssetSummary(
        total=400_000 * 10**8,
        available_count=4,
        available=400_000 * 10**8 - frozen_usdt,
        frozen_count=2,
        frozen=frozen_usdt,
    )

    view = s.engine.order(BTC_USDT, 5)
    assert view is not None
    assert (view.user, view.side, view.otype, view.price, view.amount, view.left) == (
        ALICE,
        BID,
        OrderType.LIMIT,
        9700,
        10**6,
        10**6,
    )
    assert (view.source, view.tif, view.deal_money) == ("q", TimeInForce.GTC, 0)
    assert s.engine.order(ETH_BTC, 5) is None
    assert s.engine.order(BTC_USDT, 99) is None


# ------------------------------------------------------------------------ batches, agreement


def test_batch_results_index_their_events(engine_cls: EngineClass) -> None:
    s = funded(engine_cls)
    steps = s.run(
        commands.put_limit(ALICE, BTC_USDT, ASK, 10**6, 10000, ts_ns=5),
        commands.put_limit(ALICE, BTC_USDT, ASK, 10**9, 10000, ts_ns=6),
        commands.cancel_all(BOB, BTC_USDT, ts_ns=7),
        commands.put_limit(BOB, BTC_USDT, BID, 10**6, 10000, ts_ns=8),
    )

    assert [(st.code, st.seq, st.order_id) for st in steps] == [
        (OK, 13, 1),
        (Result.BALANCE_NOT_ENOUGH, 0, 0),
        (OK, 0, 0),
        (OK, 14, 2),
    ]
    assert [len(st.events) for st in steps] == [2, 0, 0, 7]


def _mixed_script(config: EngineConfig, seed: int, n: int) -> list[np.ndarray]:
    """A reproducible mix of valid and invalid commands over both markets."""
    rng = random.Random(seed)  # noqa: S311 -- reproducible test data
    users = [ALICE, BOB, CAROL, DAVE, FEE]
    out = []
    for i in range(n):
        ts = 10_000 + i
        user, market = rng.choice(users), rng.choice([0, 0, 1])
        side = rng.choice([ASK, BID])
        m = config.markets[market]
        price = rng.randint(90, 110) * 10 ** max(m.money_prec - 2, 0)
        amount = rng.randint(1, 3000) * m.min_amount // 10
        kind = rng.random()
        if kind < 0.45:
            out.append(
                commands.put_limit(
                    user,
                    market,
                    side,
                    amount,
                    price,
                    rng.randint(0, 30),
                    rng.randint(0, 30),
                    ts_ns=ts,
                    tif=rng.choice([0, 0, 0, 1, 2]),
                    stp=rng.choice([0, 0, 1, 2, 3]),
                    flags=rng.choice([0, 0, 0, 1]),
                    source=rng.choice([b"", b"web", b"api"]),
                )
            )
        elif kind < 0.55:
            money = amount * price * m.deal_scale
            out.append(
                commands.put_market(
                    user,
                    market,
                    side,
                    amount if side == ASK else money,
                    rng.randint(0, 30),
                    ts_ns=ts,
                    stp=rng.choice([0, 2]),
                )
            )
        elif kind < 0.75:
            out.append(commands.cancel(user, market, rng.randint(1, i + 1), ts_ns=ts))
        elif kind < 0.9:
            out.append(
                commands.replace(user, market, rng.randint(1, i + 1), price, amount, ts_ns=ts)
            )
        else:
            out.append(commands.cancel_all(user, market, rng.choice([0, 1, 2]), ts_ns=ts))
    return out


def test_agrees_with_the_reference(engine_cls: EngineClass) -> None:
    config = make_config()
    engines = [ReferenceEngine(config), engine_cls(config)]
    for engine in engines:
        for user in (ALICE, BOB, CAROL, DAVE):
            for asset, amount in ((BTC, 10**11), (ETH, 10**11), (USDT, 10**13)):
                engine.balance_update(user, asset, b"deposit", user, amount, 1)
    script = _mixed_script(config, seed=7, n=400)

    outputs = [engine.execute(commands.batch(*script)) for engine in engines]

    (ref_results, ref_events), (results, events) = outputs
    assert results.tobytes() == ref_results.tobytes()
    assert events.tobytes() == ref_events.tobytes()
    assert engines[1].state_hash() == engines[0].state_hash()
    assert engines[1].counters() == engines[0].counters()
    for market in (BTC_USDT, ETH_BTC):
        for side in (ASK, BID):
            assert engines[1].book(market, side, 0, 1000) == engines[0].book(market, side, 0, 1000)
    assert engines[1].check_invariants() == []
    codes = {int(code) for code in ref_results["code"]}
    assert {OK, Result.BALANCE_NOT_ENOUGH, Result.ORDER_NOT_FOUND} <= codes
