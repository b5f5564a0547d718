"""The readhistory methods over the MySQL history (persistence/history_queries.py).

A small scenario is written into the history tables by hand (two users, two markets,
orders finished at different times, deals on both sides and a user trading with
itself, balance changes of several businesses and assets); each method is checked
against it on the real MariaDB: shapes and key order, values, newest first, pages,
filters and their boundaries. Validation, the not-configured object and an
unreachable database need no database; the pool's bounds hold a connection with a
table lock.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import MySQLdb
import pytest

from core.config import parse_config
from core.schema import Result
from persistence.history_queries import (
    NOT_CONFIGURED_MESSAGE,
    HistoryError,
    HistoryNotConfigured,
    HistoryQueries,
    HistoryReader,
    plain_decimal,
)
from tests.support.mysql import TestDatabase as Database
from tests.support.mysql import apply_schema, fresh_database

integration = pytest.mark.integration

CONFIG = parse_config(
    """
[engine]
fee_user = 0

[[assets]]
name = "BTC"
prec = 8

[[assets]]
name = "ETH"
prec = 8

[[assets]]
name = "USDT"
prec = 6

[[markets]]
name = "BTC_USDT"
stock = "BTC"
money = "USDT"
stock_prec = 4
money_prec = 2
min_amount = "0.001"

[[markets]]
name = "ETH_BTC"
stock = "ETH"
money = "BTC"
stock_prec = 4
money_prec = 4
min_amount = "0.01"
"""
)

ALICE, BOB = 1, 2
ASK, BID = 1, 2
LIMIT, MARKET = 1, 2
MAKER, TAKER = 1, 2
FILLED, CANCELLED = 1, 2


def _trade(amount: str, order: int, market: str, price: str, fee: str = "") -> str:
    """ViaBTC's detail of a trade's balance rows (sorted keys; fees add ``f``)."""
    detail: dict[str, Any] = {"a": amount, "i": order, "m": market, "p": price}
    if fee:
        detail["f"] = fee
    return json.dumps(detail, sort_keys=True)


# id, seq, create_time, finish_time, user_id, market, source, t, side, price, amount,
# taker_fee, maker_fee, deal_stock, deal_money, deal_fee, status
ORDERS = [
    (1, 11, 1000.5, 1020.25, ALICE, "BTC_USDT", "web", LIMIT, ASK, "8000", "1",
     "0.002", "0.001", "1", "8000", "8", FILLED),
    (2, 10, 1010.0, 1010.0, BOB, "BTC_USDT", "api", LIMIT, BID, "8000", "0.4",
     "0.002", "0.001", "0.4", "3200", "0.0008", FILLED),
    (3, 11, 1020.25, 1020.25, BOB, "BTC_USDT", "api", MARKET, BID, "0", "4800",
     "0.002", "0", "0.6", "4800", "0.0012", FILLED),
    (4, 14, 1100.0, 1150.0, ALICE, "BTC_USDT", "web", LIMIT, BID, "7900", "0.5",
     "0.002", "0.001", "0.5", "3950", "0.0005", FILLED),
    (5, 14, 1150.0, 1150.0, BOB, "BTC_USDT", "", LIMIT, ASK, "7900", "0.5",
     "0.002", "0.001", "0.5", "3950", "7.9", FILLED),
    (6, 17, 1200.0, 1300.0, ALICE, "ETH_BTC", "web", LIMIT, ASK, "0.05", "3",
     "0.002", "0.001", "2", "0.1", "0.0001", CANCELLED),
    (7, 16, 1210.0, 1210.0, BOB, "ETH_BTC", "api", LIMIT, BID, "0.05", "2",
     "0.002", "0.001", "2", "0.1", "0.004", FILLED),
    # cancelled with nothing filled: matchd records it (ViaBTC does not)
    (8, 18, 1300.0, 1400.0, ALICE, "BTC_USDT", "web", LIMIT, ASK, "9000", "0.1",
     "0.002", "0.001", "0", "0", "0", CANCELLED),
]  # fmt: skip

# deal_id, role, seq, time, user_id, market, order_id, deal_order_id, side, price,
# amount, deal, fee, deal_fee
DEALS = [
    (1, MAKER, 10, 1010.0, ALICE, "BTC_USDT", 1, 2, ASK, "8000", "0.4", "3200", "3.2", "0.0008"),
    (1, TAKER, 10, 1010.0, BOB, "BTC_USDT", 2, 1, BID, "8000", "0.4", "3200", "0.0008", "3.2"),
    (2, MAKER, 11, 1020.25, ALICE, "BTC_USDT", 1, 3, ASK, "8000", "0.6", "4800", "4.8", "0.0012"),
    (2, TAKER, 11, 1020.25, BOB, "BTC_USDT", 3, 1, BID, "8000", "0.6", "4800", "0.0012", "4.8"),
    (3, MAKER, 14, 1150.0, ALICE, "BTC_USDT", 4, 5, BID, "7900", "0.5", "3950", "0.0005", "7.9"),
    (3, TAKER, 14, 1150.0, BOB, "BTC_USDT", 5, 4, ASK, "7900", "0.5", "3950", "7.9", "0.0005"),
    (4, MAKER, 16, 1210.0, ALICE, "ETH_BTC", 6, 7, ASK, "0.05", "2", "0.1", "0.0001", "0.004"),
    (4, TAKER, 16, 1210.0, BOB, "ETH_BTC", 7, 6, BID, "0.05", "2", "0.1", "0.004", "0.0001"),
    # alice's bid 10 takes from her own resting ask 9
    (5, MAKER, 20, 1500.0, ALICE, "ETH_BTC", 9, 10, ASK, "0.06", "0.5", "0.03", "0.00003", "0.001"),
    (5, TAKER, 20, 1500.0, ALICE, "ETH_BTC", 10, 9, BID, "0.06", "0.5", "0.03", "0.001", "0.00003"),
]  # fmt: skip

# seq, idx, time, user_id, asset, business, change, balance, detail
BALANCES = [
    (1, 0, 900.0, ALICE, "BTC", "deposit", "2", "2", '{"tx": "a1"}'),
    (2, 0, 901.0, ALICE, "USDT", "deposit", "10000", "10000", '{"tx": "a2"}'),
    (3, 0, 902.0, BOB, "USDT", "deposit", "20000", "20000", "{}"),
    (4, 0, 903.0, BOB, "BTC", "deposit", "1", "1", "not json"),
    (10, 0, 1010.0, BOB, "BTC", "trade", "0.4", "1.4", _trade("0.4", 2, "BTC_USDT", "8000")),
    (10, 1, 1010.0, BOB, "USDT", "trade", "-3200", "16800", _trade("0.4", 2, "BTC_USDT", "8000")),
    (10, 2, 1010.0, BOB, "BTC", "trade", "-0.0008", "1.3992",
     _trade("0.4", 2, "BTC_USDT", "8000", "0.002")),
    (10, 3, 1010.0, ALICE, "BTC", "trade", "-0.4", "1.6", _trade("0.4", 1, "BTC_USDT", "8000")),
    (10, 4, 1010.0, ALICE, "USDT", "trade", "3200", "13200", _trade("0.4", 1, "BTC_USDT", "8000")),
    (10, 5, 1010.0, ALICE, "USDT", "trade", "-3.2", "13196.8",
     _trade("0.4", 1, "BTC_USDT", "8000", "0.001")),
    (11, 0, 1020.25, ALICE, "BTC", "trade", "-0.6", "1", _trade("0.6", 1, "BTC_USDT", "8000")),
    (11, 1, 1020.25, ALICE, "USDT", "trade", "4800", "17996.8",
     _trade("0.6", 1, "BTC_USDT", "8000")),
    (11, 2, 1020.25, ALICE, "USDT", "trade", "-4.8", "17992",
     _trade("0.6", 1, "BTC_USDT", "8000", "0.001")),
    (14, 0, 1150.0, ALICE, "USDT", "trade", "-3950", "14042", _trade("0.5", 4, "BTC_USDT", "7900")),
    (14, 1, 1150.0, ALICE, "BTC", "trade", "0.5", "1.5", _trade("0.5", 4, "BTC_USDT", "7900")),
    (14, 2, 1150.0, ALICE, "BTC", "trade", "-0.0005", "1.4995",
     _trade("0.5", 4, "BTC_USDT", "7900", "0.001")),
    (15, 0, 1190.0, ALICE, "ETH", "deposit", "5", "5", '{"tx": "a3"}'),
    (16, 0, 1210.0, ALICE, "ETH", "trade", "-2", "3", _trade("2", 6, "ETH_BTC", "0.05")),
    (16, 1, 1210.0, ALICE, "BTC", "trade", "0.1", "1.5995", _trade("2", 6, "ETH_BTC", "0.05")),
    (16, 2, 1210.0, ALICE, "BTC", "trade", "-0.0001", "1.5994",
     _trade("2", 6, "ETH_BTC", "0.05", "0.001")),
    (19, 0, 1600.0, ALICE, "USDT", "withdraw", "-42", "14000", '{"to": "bank"}'),
    (21, 0, 1700.0, ALICE, "BTC", "withdraw", "-0.00000001", "1.59939999", '{"to": "cold"}'),
]  # fmt: skip

BALANCE_KEYS = ["time", "asset", "business", "change", "balance", "detail"]
ORDER_KEYS = [
    "id", "ctime", "ftime", "user", "market", "source", "type", "side", "price", "amount",
    "taker_fee", "maker_fee", "deal_stock", "deal_money", "deal_fee",
]  # fmt: skip
DEAL_KEYS = ["time", "user", "id", "role", "price", "amount", "deal", "fee", "deal_order_id"]
USER_DEAL_KEYS = [
    "time", "user", "id", "side", "role", "price", "amount", "deal", "fee", "deal_order_id",
    "market",
]  # fmt: skip


def expected_balances(
    user: int, asset: str = "", business: str = "", start: int = 0, end: int = 0
) -> list[dict[str, Any]]:
    """The oracle: the scenario's balance rows as balance.history shows them."""
    rows = [
        r
        for r in BALANCES
        if r[3] == user
        and (not asset or r[4] == asset)
        and (not business or r[5] == business)
        and (not start or r[2] >= start)
        and (not end or r[2] < end)
    ]
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    return [
        {
            "time": r[2],
            "asset": r[4],
            "business": r[5],
            "change": r[6],
            "balance": r[7],
            "detail": json.loads(r[8]) if r[8].startswith("{") else {},
        }
        for r in rows
    ]


INSERT_ORDER = (
    "INSERT INTO order_history VALUES"
    " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
INSERT_DEAL = (
    "INSERT INTO deal_history VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
INSERT_BALANCE = "INSERT INTO balance_history VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"


def fill(db: Database) -> None:
    conn = db.connect()
    try:
        cursor = conn.cursor()
        cursor.executemany(INSERT_ORDER, ORDERS)
        cursor.executemany(INSERT_DEAL, DEALS)
        cursor.executemany(INSERT_BALANCE, BALANCES)
        conn.commit()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def scenario_db() -> Iterator[Database]:
    """The scenario, shared by the tests that only read it."""
    with fresh_database() as db:
        apply_schema(db)
        fill(db)
        yield db


@pytest.fixture
def own_db() -> Iterator[Database]:
    """The scenario in a database of the test's own (to drop tables in)."""
    with fresh_database() as db:
        apply_schema(db)
        fill(db)
        yield db


@pytest.fixture
def history(scenario_db: Database) -> Iterator[HistoryQueries]:
    queries = HistoryQueries(scenario_db.connect, CONFIG)
    yield queries
    queries.close()


def refuses(call: Callable[[], object], result_code: Result, message: str) -> HistoryError:
    with pytest.raises(HistoryError) as info:
        call()
    error = info.value
    assert (error.result_code, error.message) == (result_code, message)
    assert error.error() == {"code": error.code, "message": message}
    return error


# ---------------------------------------------------------------- plain decimals


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("0", "0"),
        ("0E-18", "0"),
        ("-0", "0"),
        ("-0E-8", "0"),
        ("0E+5", "0"),
        ("0.000000000000000000", "0"),
        ("1E-8", "0.00000001"),
        ("1.5E-7", "0.00000015"),
        ("-1E-18", "-0.000000000000000001"),
        ("1.10000000", "1.1"),
        ("7000.00", "7000"),
        ("7E+3", "7000"),
        ("100", "100"),
        ("10.0", "10"),
        ("-3.200", "-3.2"),
        ("1E+20", "100000000000000000000"),
        ("12345678901234567890.123456789012345678", "12345678901234567890.123456789012345678"),
        ("99999999999999999999.999999999999999999", "99999999999999999999.999999999999999999"),
        ("1.0000000000E-8", "0.00000001"),
    ],
)
def test_plain_decimal(value: str, text: str) -> None:
    assert plain_decimal(Decimal(value)) == text


@pytest.mark.parametrize("value", ["NaN", "sNaN", "Infinity", "-Infinity"])
def test_plain_decimal_refuses_what_is_not_a_number(value: str) -> None:
    with pytest.raises(ValueError, match="not a finite decimal"):
        plain_decimal(Decimal(value))


# ---------------------------------------------------------------- validation

U32 = "1..4294967295"
I63 = "1..9223372036854775807"
T63 = "0..9223372036854775807"
PAGE = "0..2147483648"

INVALID: list[tuple[str, tuple[Any, ...], Result, str]] = [
    # balance.history: user_id, asset, business, start_time, end_time, offset, limit
    ("balance_history", (0, "", "", 0, 0, 0, 10), Result.INVALID_ARGUMENT,
     f"user_id must be in {U32}"),
    ("balance_history", (2**32, "", "", 0, 0, 0, 10), Result.INVALID_ARGUMENT,
     f"user_id must be in {U32}"),
    ("balance_history", (-1, "", "", 0, 0, 0, 10), Result.INVALID_ARGUMENT,
     f"user_id must be in {U32}"),
    ("balance_history", (True, "", "", 0, 0, 0, 10), Result.INVALID_ARGUMENT,
     "user_id must be an integer"),
    ("balance_history", ("1", "", "", 0, 0, 0, 10), Result.INVALID_ARGUMENT,
     "user_id must be an integer"),
    ("balance_history", (1, None, "", 0, 0, 0, 10), Result.INVALID_ARGUMENT,
     "asset must be a string"),
    ("balance_history", (1, "DOGE", "", 0, 0, 0, 10), Result.UNKNOWN_ASSET,
     "unknown asset 'DOGE'"),
    ("balance_history", (1, "btc", "", 0, 0, 0, 10), Result.UNKNOWN_ASSET,
     "unknown asset 'btc'"),
    ("balance_history", (1, "BTC", 7, 0, 0, 0, 10), Result.INVALID_ARGUMENT,
     "business must be a string"),
    ("balance_history", (1, "BTC", "x" * 256, 0, 0, 0, 10), Result.INVALID_ARGUMENT,
     "business must be at most 255 characters"),
    ("balance_history", (1, "", "", -1, 0, 0, 10), Result.INVALID_ARGUMENT,
     f"start_time must be in {T63}"),
    ("balance_history", (1, "", "", 1.5, 0, 0, 10), Result.INVALID_ARGUMENT,
     "start_time must be an integer"),
    ("balance_history", (1, "", "", 0, -5, 0, 10), Result.INVALID_ARGUMENT,
     f"end_time must be in {T63}"),
    ("balance_history", (1, "", "", 200, 100, 0, 10), Result.INVALID_ARGUMENT,
     "start_time 200 is after end_time 100"),
    ("balance_history", (1, "", "", 0, 0, -1, 10), Result.INVALID_ARGUMENT,
     f"offset must be in {PAGE}"),
    ("balance_history", (1, "", "", 0, 0, 2**31 + 1, 10), Result.INVALID_ARGUMENT,
     f"offset must be in {PAGE}"),
    ("balance_history", (1, "", "", 0, 0, 0, 0), Result.INVALID_ARGUMENT,
     "limit must be in 1..101"),
    ("balance_history", (1, "", "", 0, 0, 0, 102), Result.INVALID_ARGUMENT,
     "limit must be in 1..101"),
    ("balance_history", (1, "", "", 0, 0, 0, None), Result.INVALID_ARGUMENT,
     "limit must be an integer"),
    # order.deals: order_id, offset, limit
    ("order_deals", (0, 0, 10), Result.INVALID_ARGUMENT, f"order_id must be in {I63}"),
    ("order_deals", (2**63, 0, 10), Result.INVALID_ARGUMENT, f"order_id must be in {I63}"),
    ("order_deals", (False, 0, 10), Result.INVALID_ARGUMENT, "order_id must be an integer"),
    ("order_deals", (1, -1, 10), Result.INVALID_ARGUMENT, f"offset must be in {PAGE}"),
    ("order_deals", (1, 0, 102), Result.INVALID_ARGUMENT, "limit must be in 1..101"),
    # order.finished: user_id, market, start_time, end_time, offset, limit, side
    ("order_finished", (0, "BTC_USDT", 0, 0, 0, 10), Result.INVALID_ARGUMENT,
     f"user_id must be in {U32}"),
    ("order_finished", (1, "", 0, 0, 0, 10), Result.UNKNOWN_MARKET, "unknown market ''"),
    ("order_finished", (1, "BTC_EUR", 0, 0, 0, 10), Result.UNKNOWN_MARKET,
     "unknown market 'BTC_EUR'"),
    ("order_finished", (1, 5, 0, 0, 0, 10), Result.INVALID_ARGUMENT, "market must be a string"),
    ("order_finished", (1, "BTC_USDT", 5, 4, 0, 10), Result.INVALID_ARGUMENT,
     "start_time 5 is after end_time 4"),
    ("order_finished", (1, "BTC_USDT", 0, 0, 0, 0), Result.INVALID_ARGUMENT,
     "limit must be in 1..101"),
    ("order_finished", (1, "BTC_USDT", 0, 0, 0, 10, 3), Result.INVALID_ARGUMENT,
     "side must be in 0..2"),
    ("order_finished", (1, "BTC_USDT", 0, 0, 0, 10, -1), Result.INVALID_ARGUMENT,
     "side must be in 0..2"),
    ("order_finished", (1, "BTC_USDT", 0, 0, 0, 10, True), Result.INVALID_ARGUMENT,
     "side must be an integer"),
    # order.finished_detail: order_id
    ("order_finished_detail", (0,), Result.INVALID_ARGUMENT, f"order_id must be in {I63}"),
    ("order_finished_detail", ("7",), Result.INVALID_ARGUMENT, "order_id must be an integer"),
    # market.user_deals: user_id, market, offset, limit
    ("market_user_deals", (0, "BTC_USDT", 0, 10), Result.INVALID_ARGUMENT,
     f"user_id must be in {U32}"),
    ("market_user_deals", (1, "NOPE", 0, 10), Result.UNKNOWN_MARKET, "unknown market 'NOPE'"),
    ("market_user_deals", (1, "BTC_USDT", -3, 10), Result.INVALID_ARGUMENT,
     f"offset must be in {PAGE}"),
    ("market_user_deals", (1, "BTC_USDT", 0, 102), Result.INVALID_ARGUMENT,
     "limit must be in 1..101"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "args", "result_code", "detail"), INVALID)
def test_an_invalid_argument_is_code_1_and_runs_no_query(
    method: str, args: tuple[Any, ...], result_code: Result, detail: str
) -> None:
    connects: list[int] = []

    def connect() -> Any:
        connects.append(1)
        raise AssertionError("an invalid call must not reach the database")

    history = HistoryQueries(connect, CONFIG)
    error = refuses(
        lambda: getattr(history, method)(*args), result_code, f"invalid argument: {detail}"
    )
    assert error.code == 1
    assert connects == []
    assert history.stats().connections == 0


def test_history_not_configured_answers_code_3_to_every_method() -> None:
    history: HistoryReader = HistoryNotConfigured()
    calls: list[Callable[[], object]] = [
        lambda: history.balance_history(1, "", "", 0, 0, 0, 10),
        lambda: history.order_deals(1, 0, 10),
        lambda: history.order_finished(1, "BTC_USDT", 0, 0, 0, 10),
        lambda: history.order_finished(1, "BTC_USDT", 0, 0, 0, 10, 2),
        lambda: history.order_finished_detail(1),
        lambda: history.market_user_deals(1, "BTC_USDT", 0, 10),
    ]
    for call in calls:
        error = refuses(call, Result.SERVICE_UNAVAILABLE, NOT_CONFIGURED_MESSAGE)
        assert error.code == 3
    assert NOT_CONFIGURED_MESSAGE == "history is not configured (no [history] in the config)"
    assert history.stats().pool_size == 0
    history.close()


def test_an_unreachable_database_is_code_3_and_frees_the_slot() -> None:
    def connect() -> Any:
        raise MySQLdb.OperationalError(2003, "Can't connect to MySQL server on '127.0.0.1'")

    history = HistoryQueries(connect, CONFIG, pool_size=1, queue=0)
    for _ in range(2):  # the failed attempt gave its slot back
        error = refuses(
            lambda: history.order_deals(1, 0, 10),
            Result.SERVICE_UNAVAILABLE,
            "service unavailable: cannot connect to the history database",
        )
        assert error.code == 3
    stats = history.stats()
    assert (stats.connections, stats.connect_failures, stats.queries) == (0, 2, 0)


@pytest.mark.parametrize(
    "settings",
    [{"pool_size": 0}, {"queue": -1}, {"timeout_s": 0.0}, {"timeout_s": float("nan")}],
)
def test_pool_settings_are_checked(settings: dict[str, Any]) -> None:
    def connect() -> Any:
        raise AssertionError

    with pytest.raises(ValueError, match="history pool"):
        HistoryQueries(connect, CONFIG, **settings)


# ---------------------------------------------------------------- balance.history


@integration
def test_balance_history_newest_first_with_readhistory_shapes(history: HistoryQueries) -> None:
    result = history.balance_history(ALICE, "", "", 0, 0, 0, 100)
    assert list(result) == ["offset", "limit", "records"]
    assert (result["offset"], result["limit"]) == (0, 100)
    records = result["records"]
    assert all(list(r) == BALANCE_KEYS for r in records)
    assert records[:4] == [
        {"time": 1700.0, "asset": "BTC", "business": "withdraw", "change": "-0.00000001",
         "balance": "1.59939999", "detail": {"to": "cold"}},
        {"time": 1600.0, "asset": "USDT", "business": "withdraw", "change": "-42",
         "balance": "14000", "detail": {"to": "bank"}},
        {"time": 1210.0, "asset": "BTC", "business": "trade", "change": "-0.0001",
         "balance": "1.5994",
         "detail": {"a": "2", "f": "0.001", "i": 6, "m": "ETH_BTC", "p": "0.05"}},
        {"time": 1210.0, "asset": "BTC", "business": "trade", "change": "0.1",
         "balance": "1.5995", "detail": {"a": "2", "i": 6, "m": "ETH_BTC", "p": "0.05"}},
    ]  # fmt: skip
    assert records == expected_balances(ALICE)
    assert len(records) == 17
    assert all(isinstance(r["time"], float) for r in records)
    assert records[-1]["time"] == 900.0


@integration
def test_balance_history_asset_and_business_filters(history: HistoryQueries) -> None:
    def times(asset: str, business: str) -> list[tuple[float, str, str]]:
        got = history.balance_history(ALICE, asset, business, 0, 0, 0, 101)["records"]
        assert got == expected_balances(ALICE, asset, business)
        return [(r["time"], r["asset"], r["change"]) for r in got]

    assert times("USDT", "") == [
        (1600.0, "USDT", "-42"), (1150.0, "USDT", "-3950"), (1020.25, "USDT", "-4.8"),
        (1020.25, "USDT", "4800"), (1010.0, "USDT", "-3.2"), (1010.0, "USDT", "3200"),
        (901.0, "USDT", "10000"),
    ]  # fmt: skip
    assert times("", "deposit") == [
        (1190.0, "ETH", "5"), (901.0, "USDT", "10000"), (900.0, "BTC", "2"),
    ]  # fmt: skip
    assert times("USDT", "trade") == [
        (1150.0, "USDT", "-3950"), (1020.25, "USDT", "-4.8"), (1020.25, "USDT", "4800"),
        (1010.0, "USDT", "-3.2"), (1010.0, "USDT", "3200"),
    ]  # fmt: skip
    assert times("BTC", "withdraw") == [(1700.0, "BTC", "-0.00000001")]
    # business is matched exactly: no prefix, no list, no case folding
    assert times("", "trad") == []
    assert times("", "deposit,withdraw") == []
    assert times("", "Deposit") == []
    # another user's rows never show
    bob = history.balance_history(BOB, "", "", 0, 0, 0, 101)["records"]
    assert bob == expected_balances(BOB)
    assert [r["business"] for r in bob] == ["trade", "trade", "trade", "deposit", "deposit"]


@integration
def test_balance_history_time_window_is_start_inclusive_end_exclusive(
    history: HistoryQueries,
) -> None:
    def window(start: int, end: int) -> list[float]:
        got = history.balance_history(ALICE, "", "", start, end, 0, 101)["records"]
        assert got == expected_balances(ALICE, start=start, end=end)
        return sorted({r["time"] for r in got})

    assert window(1010, 1150) == [1010.0, 1020.25]  # 1010 in, 1150 out
    assert window(1011, 1151) == [1020.25, 1150.0]
    assert window(1150, 0) == [1150.0, 1190.0, 1210.0, 1600.0, 1700.0]
    assert window(0, 901) == [900.0]
    assert window(1700, 1700) == []  # start == end is valid and empty
    assert window(1701, 0) == []
    assert window(0, 0) == sorted({r[2] for r in BALANCES if r[3] == ALICE})


@integration
def test_balance_history_pages(history: HistoryQueries) -> None:
    everything = expected_balances(ALICE)
    for offset, limit in [(0, 1), (0, 5), (3, 4), (15, 5), (16, 1), (5, 101)]:
        result = history.balance_history(ALICE, "", "", 0, 0, offset, limit)
        assert (result["offset"], result["limit"]) == (offset, limit)
        assert result["records"] == everything[offset : offset + limit]
    beyond = history.balance_history(ALICE, "", "", 0, 0, 17, 10)
    assert beyond == {"offset": 17, "limit": 10, "records": []}
    assert history.balance_history(ALICE, "", "", 0, 0, 2**31, 101)["records"] == []
    assert history.balance_history(7, "", "", 0, 0, 0, 10)["records"] == []


@integration
def test_balance_history_detail_is_an_object(history: HistoryQueries) -> None:
    bob = history.balance_history(BOB, "BTC", "deposit", 0, 0, 0, 10)["records"]
    assert [r["detail"] for r in bob] == [{}]  # stored "not json": readhistory shows {}
    usdt = history.balance_history(BOB, "USDT", "deposit", 0, 0, 0, 10)["records"]
    assert usdt[0]["detail"] == {}
    fee = history.balance_history(ALICE, "USDT", "trade", 1010, 1011, 0, 1)["records"][0]
    assert fee["detail"] == {"a": "0.4", "f": "0.001", "i": 1, "m": "BTC_USDT", "p": "8000"}
    assert list(fee["detail"]) == ["a", "f", "i", "m", "p"]


# ---------------------------------------------------------------- orders


ORDER_1 = {
    "id": 1, "ctime": 1000.5, "ftime": 1020.25, "user": ALICE, "market": "BTC_USDT",
    "source": "web", "type": LIMIT, "side": ASK, "price": "8000", "amount": "1",
    "taker_fee": "0.002", "maker_fee": "0.001", "deal_stock": "1", "deal_money": "8000",
    "deal_fee": "8",
}  # fmt: skip
ORDER_8 = {
    "id": 8, "ctime": 1300.0, "ftime": 1400.0, "user": ALICE, "market": "BTC_USDT",
    "source": "web", "type": LIMIT, "side": ASK, "price": "9000", "amount": "0.1",
    "taker_fee": "0.002", "maker_fee": "0.001", "deal_stock": "0", "deal_money": "0",
    "deal_fee": "0",
}  # fmt: skip
ORDER_3 = {
    "id": 3, "ctime": 1020.25, "ftime": 1020.25, "user": BOB, "market": "BTC_USDT",
    "source": "api", "type": MARKET, "side": BID, "price": "0", "amount": "4800",
    "taker_fee": "0.002", "maker_fee": "0", "deal_stock": "0.6", "deal_money": "4800",
    "deal_fee": "0.0012",
}  # fmt: skip


@integration
def test_order_finished_highest_id_first_with_readhistory_shapes(
    history: HistoryQueries,
) -> None:
    result = history.order_finished(ALICE, "BTC_USDT", 0, 0, 0, 10)
    assert list(result) == ["offset", "limit", "records"]
    assert (result["offset"], result["limit"]) == (0, 10)
    records = result["records"]
    assert all(list(r) == ORDER_KEYS for r in records)
    assert [r["id"] for r in records] == [8, 4, 1]
    assert records[0] == ORDER_8
    assert records[2] == ORDER_1
    assert records[1]["side"] == BID
    assert records[1]["deal_fee"] == "0.0005"
    eth = history.order_finished(ALICE, "ETH_BTC", 0, 0, 0, 10)["records"]
    assert [(r["id"], r["deal_stock"], r["amount"]) for r in eth] == [(6, "2", "3")]
    bob = history.order_finished(BOB, "BTC_USDT", 0, 0, 0, 10)["records"]
    assert [r["id"] for r in bob] == [5, 3, 2]
    assert bob[1] == ORDER_3
    assert bob[0]["source"] == ""
    assert history.order_finished(7, "BTC_USDT", 0, 0, 0, 10)["records"] == []


@integration
def test_order_finished_time_window_on_create_time_and_side(history: HistoryQueries) -> None:
    def ids(start: int, end: int, side: int = 0) -> list[int]:
        got = history.order_finished(ALICE, "BTC_USDT", start, end, 0, 10, side)["records"]
        return [r["id"] for r in got]

    assert ids(1100, 1300) == [4]  # create 1100 in, 1300 out (finish times do not count)
    assert ids(1000, 1100) == [1]
    assert ids(1001, 0) == [8, 4]
    assert ids(0, 1000) == []
    assert ids(1100, 0) == [8, 4]
    assert ids(1101, 1301) == [8]
    assert ids(1400, 1500) == []  # order 8 finished at 1400 but was created at 1300
    assert ids(0, 0, ASK) == [8, 1]
    assert ids(0, 0, BID) == [4]
    assert ids(1000, 1300, ASK) == [1]
    assert ids(0, 0, 0) == [8, 4, 1]


@integration
def test_order_finished_pages(history: HistoryQueries) -> None:
    def page(offset: int, limit: int) -> list[int]:
        result = history.order_finished(ALICE, "BTC_USDT", 0, 0, offset, limit)
        assert (result["offset"], result["limit"]) == (offset, limit)
        return [r["id"] for r in result["records"]]

    assert page(0, 1) == [8]
    assert page(1, 1) == [4]
    assert page(1, 5) == [4, 1]
    assert page(2, 101) == [1]
    assert page(3, 1) == []
    assert page(100, 10) == []


@integration
def test_order_finished_detail(history: HistoryQueries) -> None:
    assert history.order_finished_detail(1) == ORDER_1
    detail = history.order_finished_detail(3)
    assert detail == ORDER_3
    assert detail is not None
    assert list(detail) == ORDER_KEYS
    assert history.order_finished_detail(8) == ORDER_8  # cancelled, nothing filled
    assert history.order_finished_detail(9) is None  # still resting
    assert history.order_finished_detail(12345) is None


# ---------------------------------------------------------------- deals


@integration
def test_order_deals_newest_first_with_own_fee_and_other_order(history: HistoryQueries) -> None:
    result = history.order_deals(1, 0, 10)
    assert list(result) == ["offset", "limit", "records"]
    records = result["records"]
    assert all(list(r) == DEAL_KEYS for r in records)
    assert records == [
        {"time": 1020.25, "user": ALICE, "id": 2, "role": MAKER, "price": "8000",
         "amount": "0.6", "deal": "4800", "fee": "4.8", "deal_order_id": 3},
        {"time": 1010.0, "user": ALICE, "id": 1, "role": MAKER, "price": "8000",
         "amount": "0.4", "deal": "3200", "fee": "3.2", "deal_order_id": 2},
    ]  # fmt: skip
    taker = history.order_deals(3, 0, 10)["records"]
    assert taker == [
        {"time": 1020.25, "user": BOB, "id": 2, "role": TAKER, "price": "8000",
         "amount": "0.6", "deal": "4800", "fee": "0.0012", "deal_order_id": 1},
    ]  # fmt: skip
    assert history.order_deals(1, 1, 1) == {"offset": 1, "limit": 1, "records": records[1:]}
    assert history.order_deals(1, 0, 1)["records"] == records[:1]
    assert history.order_deals(1, 2, 10) == {"offset": 2, "limit": 10, "records": []}
    assert history.order_deals(8, 0, 10)["records"] == []
    assert [r["fee"] for r in history.order_deals(9, 0, 10)["records"]] == ["0.00003"]


@integration
def test_market_user_deals_newest_first_with_side_and_market(history: HistoryQueries) -> None:
    result = history.market_user_deals(ALICE, "BTC_USDT", 0, 10)
    assert list(result) == ["offset", "limit", "records"]
    records = result["records"]
    assert all(list(r) == USER_DEAL_KEYS for r in records)
    assert [(r["id"], r["side"], r["role"], r["fee"], r["deal_order_id"]) for r in records] == [
        (3, BID, MAKER, "0.0005", 5),
        (2, ASK, MAKER, "4.8", 3),
        (1, ASK, MAKER, "3.2", 2),
    ]
    assert records[0] == {
        "time": 1150.0, "user": ALICE, "id": 3, "side": BID, "role": MAKER, "price": "7900",
        "amount": "0.5", "deal": "3950", "fee": "0.0005", "deal_order_id": 5,
        "market": "BTC_USDT",
    }  # fmt: skip
    bob = history.market_user_deals(BOB, "BTC_USDT", 0, 10)["records"]
    assert [(r["id"], r["side"], r["role"], r["fee"]) for r in bob] == [
        (3, ASK, TAKER, "7.9"),
        (2, BID, TAKER, "0.0012"),
        (1, BID, TAKER, "0.0008"),
    ]
    # alice's deal with herself: both of her records, the taker's first
    eth = history.market_user_deals(ALICE, "ETH_BTC", 0, 10)["records"]
    assert [(r["id"], r["role"], r["side"], r["market"]) for r in eth] == [
        (5, TAKER, BID, "ETH_BTC"),
        (5, MAKER, ASK, "ETH_BTC"),
        (4, MAKER, ASK, "ETH_BTC"),
    ]
    assert history.market_user_deals(ALICE, "ETH_BTC", 1, 1)["records"] == eth[1:2]
    assert history.market_user_deals(ALICE, "ETH_BTC", 2, 5)["records"] == eth[2:]
    assert history.market_user_deals(ALICE, "ETH_BTC", 3, 5)["records"] == []
    assert history.market_user_deals(7, "ETH_BTC", 0, 5)["records"] == []


# ---------------------------------------------------------------- the pool


class LockedTable:
    """Holds ``LOCK TABLES balance_history WRITE`` so that a balance.history query waits
    on the server, holding its connection."""

    def __init__(self, db: Database) -> None:
        self.conn = db.connect()
        self.conn.cursor().execute("LOCK TABLES balance_history WRITE")

    def release(self) -> None:
        self.conn.cursor().execute("UNLOCK TABLES")
        self.conn.close()


def signalling(db: Database) -> tuple[Callable[[], Any], threading.Event]:
    """A connect that sets an event once a caller holds the pool's (only) slot."""
    connected = threading.Event()

    def connect() -> Any:
        connected.set()
        return db.connect()

    return connect, connected


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def alice_all(history: HistoryQueries) -> dict[str, Any]:
    return history.balance_history(ALICE, "", "", 0, 0, 0, 101)


@integration
def test_a_caller_beyond_the_queue_is_refused_at_once(scenario_db: Database) -> None:
    connect, connected = signalling(scenario_db)
    history = HistoryQueries(connect, CONFIG, pool_size=1, queue=0)
    lock = LockedTable(scenario_db)
    with ThreadPoolExecutor(1) as pool:
        try:
            holder = pool.submit(alice_all, history)
            assert connected.wait(30)
            started = time.monotonic()
            error = refuses(
                lambda: history.order_deals(1, 0, 10),
                Result.SERVICE_UNAVAILABLE,
                "service unavailable: too many history queries waiting (0)",
            )
            assert error.code == 3
            assert time.monotonic() - started < 1.0
            assert not holder.done()
        finally:
            lock.release()
        assert holder.result(30)["records"] == expected_balances(ALICE)
    stats = history.stats()
    assert (stats.connections, stats.idle, stats.refused, stats.queries) == (1, 1, 1, 1)
    history.close()


@integration
def test_a_waiting_caller_gets_the_connection_when_it_is_free(
    scenario_db: Database,
) -> None:
    connect, connected = signalling(scenario_db)
    history = HistoryQueries(connect, CONFIG, pool_size=1, queue=1, timeout_s=60)
    lock = LockedTable(scenario_db)
    with ThreadPoolExecutor(2) as pool:
        try:
            holder = pool.submit(alice_all, history)
            assert connected.wait(30)
            waiter = pool.submit(history.order_deals, 1, 0, 10)
            wait_until(lambda: history.stats().waiting == 1)
            refuses(
                lambda: history.order_deals(1, 0, 10),
                Result.SERVICE_UNAVAILABLE,
                "service unavailable: too many history queries waiting (1)",
            )
        finally:
            lock.release()
        assert holder.result(30)["records"] == expected_balances(ALICE)
        assert [r["id"] for r in waiter.result(30)["records"]] == [2, 1]
    stats = history.stats()
    assert (stats.connections, stats.waiting, stats.refused, stats.queries) == (1, 0, 1, 2)
    history.close()


@integration
def test_a_waiter_gives_up_after_the_timeout(scenario_db: Database) -> None:
    connect, connected = signalling(scenario_db)
    history = HistoryQueries(connect, CONFIG, pool_size=1, queue=5, timeout_s=0.2)
    lock = LockedTable(scenario_db)
    with ThreadPoolExecutor(1) as pool:
        try:
            holder = pool.submit(alice_all, history)
            assert connected.wait(30)
            started = time.monotonic()
            refuses(
                lambda: history.order_finished_detail(1),
                Result.SERVICE_UNAVAILABLE,
                "service unavailable: no history connection free within 0.2 s",
            )
            assert time.monotonic() - started >= 0.2
        finally:
            lock.release()
        assert holder.result(30)["records"] == expected_balances(ALICE)
    assert history.order_finished_detail(1) == ORDER_1  # the connection is free again
    assert history.stats().waiting == 0
    history.close()


@integration
def test_concurrent_callers_share_a_bounded_pool(scenario_db: Database) -> None:
    history = HistoryQueries(scenario_db.connect, CONFIG, pool_size=2, queue=20, timeout_s=60)
    calls: list[Callable[[], object]] = [
        lambda: alice_all(history),
        lambda: history.order_finished(ALICE, "BTC_USDT", 0, 0, 0, 10),
        lambda: history.order_deals(1, 0, 10),
        lambda: history.market_user_deals(ALICE, "ETH_BTC", 0, 10),
        lambda: history.order_finished_detail(3),
    ]
    expected = [call() for call in calls]
    peak = 0

    def work(i: int) -> bool:
        nonlocal peak
        for j in range(10):
            k = (i + j) % len(calls)
            if calls[k]() != expected[k]:
                return False
            peak = max(peak, history.stats().connections)
        return True

    with ThreadPoolExecutor(6) as pool:
        assert all(pool.map(work, range(6)))
    stats = history.stats()
    assert peak <= 2
    assert 1 <= stats.connections <= 2
    assert (stats.queries, stats.refused, stats.errors) == (65, 0, 0)
    history.close()
    assert history.stats().connections == 0


@integration
def test_a_database_error_is_code_2_and_the_pool_goes_on(own_db: Database) -> None:
    history = HistoryQueries(own_db.connect, CONFIG, pool_size=1, queue=0)
    assert len(history.order_deals(1, 0, 10)["records"]) == 2
    admin = own_db.connect()
    admin.cursor().execute("DROP TABLE deal_history")
    admin.close()
    error = refuses(
        lambda: history.order_deals(1, 0, 10),
        Result.INTERNAL_ERROR,
        "internal error: history query failed (MySQL error 1146)",
    )
    assert error.code == 2
    error = refuses(
        lambda: history.market_user_deals(ALICE, "BTC_USDT", 0, 10),
        Result.INTERNAL_ERROR,
        "internal error: history query failed (MySQL error 1356)",  # the view is broken
    )
    # the failed connections were dropped; the next call connects again and works
    assert alice_all(history)["records"] == expected_balances(ALICE)
    stats = history.stats()
    assert (stats.connections, stats.errors, stats.queries) == (1, 2, 2)
    history.close()


@integration
def test_a_connection_the_server_dropped_is_replaced(own_db: Database) -> None:
    history = HistoryQueries(own_db.connect, CONFIG, pool_size=1, queue=0)
    assert history.order_finished_detail(1) == ORDER_1
    admin = own_db.connect()
    cursor = admin.cursor()
    cursor.execute(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
        (own_db.database,),
    )
    (victims,) = zip(*cursor.fetchall(), strict=True)
    assert len(victims) == 1
    cursor.execute("KILL %s", (victims[0],))
    admin.close()
    assert history.order_finished_detail(1) == ORDER_1
    stats = history.stats()
    assert (stats.reconnects, stats.errors, stats.connections) == (1, 0, 1)
    history.close()


@integration
def test_a_closed_history_refuses_with_code_3(scenario_db: Database) -> None:
    history = HistoryQueries(scenario_db.connect, CONFIG)
    assert history.order_finished_detail(1) == ORDER_1
    history.close()
    assert history.stats().connections == 0
    refuses(
        lambda: history.order_finished_detail(1),
        Result.SERVICE_UNAVAILABLE,
        "service unavailable: history queries are closed",
    )
    history.close()


@integration
def test_a_query_sees_rows_committed_after_its_connection_was_made(
    own_db: Database,
) -> None:
    history = HistoryQueries(own_db.connect, CONFIG, pool_size=1)
    assert history.order_finished_detail(9) is None
    writer = own_db.connect()
    writer.cursor().execute(
        INSERT_ORDER,
        (9, 22, 1490.0, 1800.0, ALICE, "ETH_BTC", "web", LIMIT, ASK, "0.06", "1",
         "0.002", "0.001", "0.5", "0.03", "0.00003", CANCELLED),
    )  # fmt: skip
    writer.commit()
    writer.close()
    detail = history.order_finished_detail(9)
    assert detail is not None
    assert (detail["deal_stock"], detail["deal_fee"]) == ("0.5", "0.00003")
    history.close()
