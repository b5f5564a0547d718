"""Mass quotes end to end against a running ``matchd run`` (server, feed, HTTP
gateway; one process, and with pair workers): a two-sided ladder placed over HTTP
JSON-RPC (``order.quote``), over the SDK's call (``Client.quote``) and as binary
records (kinds 11 and 12), requoted (a kept level keeps its order, the others are
shrunk, grown or new, stale ones are cancelled), filled by a taker, removed; the
frozen funds checked with balance.query at each step; and refusals that change
nothing (docs/gateways.md and docs/protocol.md, "Mass quotes")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import count
from typing import Any

import numpy as np
import pytest

from core import commands
from core.schema import OrderFlag, QuoteAction, Result, Side
from ipc import wire
from ipc.client import ApiError, Client
from tests.support.gateway_daemon import Daemon, running_daemon

pytestmark = pytest.mark.integration

MARKET = "BTC_USDT"  # index 0: ticks of 0.01 USDT, lots of 10**-6 BTC, min_amount 0.001
BTC_USDT, BTC, USDT = 0, 0, 2
BID, ASK = int(Side.BID), int(Side.ASK)
KEPT, SHRUNK, GROWN, NEW = QuoteAction.KEPT, QuoteAction.SHRUNK, QuoteAction.GROWN, QuoteAction.NEW
_BUSINESS_IDS = count(1)


@pytest.fixture(scope="module", params=["one-process", "per-market"])
def daemon(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Daemon]:
    """The daemon as one process, and with a pair worker per market."""
    workers = ("--workers", "per-market") if request.param == "per-market" else ()
    tmp = tmp_path_factory.mktemp("quote")
    with running_daemon(tmp, history=False, ws=None, run_args=workers) as d:
        yield d


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Client]:
    with Client(daemon.endpoint, timeout_s=10.0) as c:
        yield c


def deposit(d: Daemon, user: int, asset: str, amount: str) -> None:
    result = d.ok("balance.update", user, asset, "deposit", next(_BUSINESS_IDS), amount, {})
    assert result == {"status": "success"}


def frozen(d: Daemon, user: int) -> dict[str, dict[str, str]]:
    balances: dict[str, dict[str, str]] = d.ok("balance.query", user, "BTC", "USDT")
    return balances


def quote(d: Daemon, user: int, bids: list[list[str]], asks: list[list[str]]) -> Any:
    return d.ok("order.quote", user, MARKET, bids, asks, "0.002", "0.001", "mm")


def levels(result: Any) -> list[tuple[int, str, str, str]]:
    return [(lv["side"], lv["price"], lv["amount"], lv["action"]) for lv in result["levels"]]


def error(answer: dict[str, Any]) -> tuple[int, str]:
    assert answer["result"] is None, answer
    return answer["error"]["code"], answer["error"]["message"]


# --------------------------------------------------------------------------- HTTP


def test_a_ladder_over_http_placed_requoted_filled_and_removed(daemon: Daemon) -> None:
    d, mm, taker = daemon, 101, 102
    deposit(d, mm, "USDT", "10000")
    deposit(d, mm, "BTC", "1")
    deposit(d, taker, "USDT", "10000")

    first = quote(d, mm, [["7999", "0.1"], ["7998", "0.2"]], [["8001", "0.1"], ["8002", "0.2"]])
    assert first["cancelled"] == 0
    assert levels(first) == [
        (BID, "7999", "0.1", "new"), (BID, "7998", "0.2", "new"),
        (ASK, "8001", "0.1", "new"), (ASK, "8002", "0.2", "new"),
    ]  # fmt: skip
    ids = [lv["id"] for lv in first["levels"]]
    assert len(set(ids)) == 4
    assert frozen(d, mm) == {
        "BTC": {"available": "0.7", "freeze": "0.3"},
        "USDT": {"available": "7600.5", "freeze": "2399.5"},  # 799.9 + 1599.6
    }
    detail = d.ok("order.pending_detail", MARKET, ids[2])
    assert (detail["side"], detail["price"], detail["left"]) == (ASK, "8001", "0.1")
    assert (detail["maker_fee"], detail["taker_fee"], detail["source"]) == ("0.001", "0.002", "mm")
    assert d.ok("order.pending", mm, MARKET, 0, 10)["total"] == 4

    again = quote(d, mm, [["7999", "0.1"], ["7998", "0.1"]], [["8001", "0.3"], ["8003", "0.1"]])
    assert levels(again) == [
        (BID, "7999", "0.1", "kept"), (BID, "7998", "0.1", "shrunk"),
        (ASK, "8001", "0.3", "grown"), (ASK, "8003", "0.1", "new"),
    ]  # fmt: skip
    assert [lv["id"] for lv in again["levels"][:3]] == ids[:3]  # the same orders
    assert again["levels"][3]["id"] not in ids
    assert again["cancelled"] == 1  # the ask at 8002: no level of the new ladder
    assert d.ok("order.pending_detail", MARKET, ids[3]) is None
    assert frozen(d, mm) == {
        "BTC": {"available": "0.6", "freeze": "0.4"},
        "USDT": {"available": "8400.3", "freeze": "1599.7"},  # 799.9 + 799.8
    }

    # A taker fills part of a level; the same ladder again puts the level back.
    taken = d.ok("order.put_limit", taker, MARKET, BID, "0.1", "8001", "0.002", "0.001", "t")
    assert taken["left"] == "0"
    assert d.ok("order.pending_detail", MARKET, ids[2])["left"] == "0.2"
    refill = quote(d, mm, [["7999", "0.1"], ["7998", "0.1"]], [["8001", "0.3"], ["8003", "0.1"]])
    assert [lv["action"] for lv in refill["levels"]] == ["kept", "kept", "grown", "kept"]
    assert refill["levels"][2]["id"] == ids[2]
    assert d.ok("order.pending_detail", MARKET, ids[2])["left"] == "0.3"

    removed = d.ok("order.quote", mm, MARKET, [], [], "0", "0", "")
    assert removed == {"cancelled": 4, "levels": []}
    assert d.ok("order.pending", mm, MARKET, 0, 10)["total"] == 0
    balances = frozen(d, mm)
    assert (balances["BTC"]["freeze"], balances["USDT"]["freeze"]) == ("0", "0")
    assert balances["BTC"]["available"] == "0.9"  # 0.1 sold at 8001
    assert balances["USDT"]["available"] == "10799.2999"  # + 800.1, less the maker's 0.1%


def test_refused_quotes_over_http_change_nothing(daemon: Daemon) -> None:
    d, mm, other = daemon, 111, 112
    deposit(d, mm, "USDT", "1000")
    deposit(d, mm, "BTC", "1")
    deposit(d, other, "BTC", "1")
    assert quote(d, mm, [["7000", "0.1"]], [["9000", "0.1"]])["cancelled"] == 0
    d.ok("order.put_limit", other, MARKET, ASK, "0.01", "8500", "0", "0", "")
    before = (frozen(d, mm), d.ok("order.pending", mm, MARKET, 0, 10))

    crossing = d.rpc("order.quote", mm, MARKET, [["8000", "0.1"]], [["7999", "0.1"]],
                     "0", "0", "")  # fmt: skip
    assert error(crossing) == (
        1, "invalid argument: the ladder crosses: the bid at 8000 is at or above the ask at 7999"
    )  # fmt: skip
    takes = d.rpc("order.quote", mm, MARKET, [["8500", "0.01"]], [["9000", "0.1"]], "0", "0", "")
    assert error(takes) == (1, "post-only order would take liquidity")
    poor = d.rpc("order.quote", mm, MARKET, [["7000", "1"]], [], "0", "0", "")
    assert error(poor) == (1, "balance not enough")
    small = d.rpc("order.quote", mm, MARKET, [["7000", "0.0001"]], [], "0", "0", "")
    assert error(small) == (1, "amount too small")
    inexact = d.rpc("order.quote", mm, MARKET, [["7000.001", "0.1"]], [], "0", "0", "")
    assert error(inexact)[1].startswith(
        "invalid argument: bids[0] price '7000.001' has more decimal places than the 2"
    )
    twice = d.rpc("order.quote", mm, MARKET, [["7000", "0.1"], ["7000", "0.2"]], [], "0", "0", "")
    assert error(twice) == (1, "invalid argument: bids has the price 7000 twice")
    too_many = [[str(7000 - i), "0.001"] for i in range(33)]
    many = d.rpc("order.quote", mm, MARKET, too_many, [], "0", "0", "")
    assert error(many) == (1, "invalid argument: bids has 33 levels; a side has at most 32")
    arity = d.rpc("order.quote", mm, MARKET, [], [])
    assert error(arity) == (1, "invalid argument: order.quote takes 7 params, not 4")

    assert (frozen(d, mm), d.ok("order.pending", mm, MARKET, 0, 10)) == before


def test_quotes_in_an_http_batch_run_in_order(daemon: Daemon) -> None:
    d, mm = daemon, 121
    deposit(d, mm, "USDT", "1000")
    batch = [
        {"method": "order.quote", "params": [mm, MARKET, [["7000", "0.01"]], [], "0", "0", ""],
         "id": 1},
        {"method": "order.quote", "params": [mm, MARKET, [["7000", "0.02"]], [], "0", "0", ""],
         "id": 2},
        {"method": "order.pending", "params": [mm, MARKET, 0, 10], "id": 3},
        {"method": "order.quote", "params": [mm, MARKET, [], [], "0", "0", ""], "id": 4},
    ]  # fmt: skip
    status, body = d.post(batch)
    assert status == 200
    answers = json.loads(body)
    assert [a["id"] for a in answers] == [1, 2, 3, 4]
    assert [a["error"] for a in answers] == [None] * 4
    first, grown, pending, removed = (a["result"] for a in answers)
    assert grown["levels"][0]["action"] == "grown"
    assert grown["levels"][0]["id"] == first["levels"][0]["id"]
    assert pending["total"] == 1
    assert removed["cancelled"] == 1


# --------------------------------------------------------------------------- SDK


def test_a_ladder_over_the_sdk_placed_requoted_and_removed(daemon: Daemon, client: Client) -> None:
    d, mm = daemon, 201
    deposit(d, mm, "USDT", "10000")
    deposit(d, mm, "BTC", "1")
    bids = [(799_900, 100_000), (799_800, 200_000)]  # 7999 x 0.1, 7998 x 0.2
    asks = [(800_100, 100_000), (800_200, 200_000)]

    first = client.quote(mm, BTC_USDT, bids, asks, taker_rate=20, maker_rate=10, source="sdk")
    assert first.seq > 0
    assert first.cancelled == 0
    assert [(lv.side, lv.price, lv.amount, lv.action) for lv in first.levels] == [
        (BID, 799_900, 100_000, NEW), (BID, 799_800, 200_000, NEW),
        (ASK, 800_100, 100_000, NEW), (ASK, 800_200, 200_000, NEW),
    ]  # fmt: skip
    ids = [lv.order_id for lv in first.levels]
    order = client.pending_detail(BTC_USDT, ids[0])
    assert order is not None
    assert order.flags == OrderFlag.POST_ONLY | OrderFlag.QUOTE
    assert (order.maker_rate, order.taker_rate, order.source) == (10, 20, "sdk")
    assert frozen(d, mm)["USDT"]["freeze"] == "2399.5"
    assert frozen(d, mm)["BTC"]["freeze"] == "0.3"

    again = client.quote(mm, BTC_USDT, [(799_900, 100_000), (799_700, 100_000)],
                         [(800_100, 50_000), (800_200, 300_000)])  # fmt: skip
    assert [lv.action for lv in again.levels] == [KEPT, NEW, SHRUNK, GROWN]
    assert [lv.order_id for lv in again.levels] == [ids[0], again.levels[1].order_id, *ids[2:]]
    assert again.cancelled == 1  # the bid at 7998
    assert frozen(d, mm) == {
        "BTC": {"available": "0.65", "freeze": "0.35"},
        "USDT": {"available": "8400.4", "freeze": "1599.6"},  # 799.9 + 799.7
    }
    same = client.quote(mm, BTC_USDT, [(799_900, 100_000), (799_700, 100_000)],
                        [(800_100, 50_000), (800_200, 300_000)])  # fmt: skip
    assert (same.seq, same.cancelled) == (0, 0)
    assert [lv.action for lv in same.levels] == [KEPT] * 4

    before = (client.balance_query(mm), client.pending(mm, BTC_USDT))
    with pytest.raises(ApiError) as info:  # the engine refuses a crossing ladder
        client.quote(mm, BTC_USDT, [(800_300, 100_000)], [(800_100, 100_000)])
    assert (info.value.op, info.value.code, info.value.viabtc) == (
        "order.quote", Result.INVALID_ARGUMENT, 1,
    )  # fmt: skip
    with pytest.raises(ApiError) as info:
        client.quote(mm, BTC_USDT, [(799_900, 100_000), (799_900, 100_000)], [])
    assert info.value.code == Result.INVALID_ARGUMENT
    assert (client.balance_query(mm), client.pending(mm, BTC_USDT)) == before

    removed = client.cancel_quote(mm, BTC_USDT)
    assert (removed.cancelled, removed.levels) == (4, [])
    assert client.pending(mm, BTC_USDT).total == 0
    assert [b.freeze for b in client.balance_query(mm, BTC, USDT)] == [0, 0]


def test_a_quote_as_binary_records_among_other_commands(daemon: Daemon, client: Client) -> None:
    d, a, b = daemon, 211, 212
    for user in (a, b):
        deposit(d, user, "USDT", "1000")
    quotes = [
        wire.quote_records(a, BTC_USDT, [(700_000, 10_000), (699_900, 10_000)], []),
        wire.quote_records(b, BTC_USDT, [(699_800, 10_000)], [], 0, 5),
        wire.quote_records(a, BTC_USDT, [(700_000, 10_000)], [(600_000, 10_000)]),  # crosses
    ]
    frame = np.concatenate([*quotes, commands.cancel_all(b, BTC_USDT)])

    results, events = client.submit(frame, events=True)

    ok, refused = int(Result.OK), int(Result.INVALID_ARGUMENT)
    assert results["code"].tolist() == [ok] * 5 + [refused] * 3 + [ok]
    assert results["seq"][[1, 2, 4, 5, 6, 7]].tolist() == [0] * 6  # levels; refused
    assert results["value"][[0, 3]].tolist() == [0, 0]  # no stale order
    assert results["value"][[1, 2, 4]].tolist() == [NEW] * 3
    assert results["value"][8] == 1  # b's cancel_all: its quote order
    head = results[0]
    start = int(head["event_start"])
    assert events[start : start + int(head["event_count"])]["kind"].tolist() == [5, 1, 5, 1]
    done = wire.quote_done(quotes[0], results[:3], events)
    assert [lv.order_id for lv in done.levels] == results["order_id"][1:3].tolist()
    assert [lv.action for lv in done.levels] == [NEW, NEW]
    assert client.pending(a, BTC_USDT).total == 2
    assert client.cancel_quote(a, BTC_USDT).cancelled == 2
    assert frozen(d, a)["USDT"] == {"available": "1000", "freeze": "0"}
