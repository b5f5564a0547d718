"""ViaBTC's HTTP JSON-RPC against a running ``matchd run`` (server, drainer into
MariaDB, feed into Redis, HTTP gateway): every method's happy path and documented
errors, the transport rules, batches, and answers equal to the in-process engine's
(``core.viabtc.Exchange``) for the same calls.

A ViaBTC client's flow (shared/reference/viabtc-api.md §4 and §5): deposit, a resting
bid, a crossing ask, depth, pending, cancel, deals and balance history, with plain
HTTP requests (urllib) as a third-party client sends them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from core.config import parse_config
from core.engine import Engine
from core.schema import Result
from core.viabtc import Exchange
from ipc.client import ApiError, Client
from tests.support.gateway_daemon import Daemon, running_daemon
from tests.support.scenario import config_text

pytestmark = pytest.mark.integration

MARKET = "BTC_USDT"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("http"), ws=None, http="max_batch = 50\n") as d:
        yield d


_BUSINESS_IDS = count(1)


def deposit(d: Daemon, user: int, asset: str, amount: str) -> None:
    assert d.ok("balance.update", user, asset, "deposit", next(_BUSINESS_IDS), amount, {}) == {
        "status": "success"
    }


def error(answer: dict[str, Any]) -> tuple[int, str]:
    assert answer["result"] is None, answer
    return answer["error"]["code"], answer["error"]["message"]


def eventually(fn: Any, timeout_s: float = 30.0) -> Any:
    """``fn()`` once it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


# --------------------------------------------------------------------------- transport


def test_malformed_envelopes_get_400_with_an_empty_body(daemon: Daemon) -> None:
    for raw in (
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"42",
        b'"a string"',
        b'{"method": "asset.list", "params": []}',  # no id
        b'{"method": 5, "params": [], "id": 1}',
        b'{"method": "asset.list", "params": {}, "id": 1}',
        b'{"params": [], "id": 1}',
        b"[" * 100_000,  # nested too deep to decode
    ):
        assert daemon.post(None, raw=raw) == (400, b""), raw[:40]


def test_unknown_method_is_404_with_code_4_and_the_id(daemon: Daemon) -> None:
    status, body = daemon.post({"method": "order.teleport", "params": [], "id": 77})
    assert status == 404
    assert json.loads(body) == {
        "error": {"code": 4, "message": "method not found"},
        "result": None,
        "id": 77,
    }


def test_extra_keys_are_ignored_and_any_id_is_echoed(daemon: Daemon) -> None:
    for rid in (1, "abc", None, 2**70, 1.5, {"x": [1]}):
        status, body = daemon.post(
            {"jsonrpc": "2.0", "method": "asset.list", "params": [], "id": rid, "x": 1}
        )
        assert status == 200
        answer = json.loads(body)
        assert answer["id"] == rid
        assert answer["error"] is None
        assert list(answer) == ["error", "result", "id"]


def test_a_body_over_the_limit_is_413(daemon: Daemon) -> None:
    big = json.dumps({"method": "asset.list", "params": ["x" * (1 << 20)], "id": 1}).encode()
    status, body = daemon.post(None, raw=big)
    assert status == 413
    code, message = error(json.loads(body))
    assert code == 1
    assert "exceeds the limit of 1048576 bytes" in message


def test_a_batch_is_answered_in_order_and_its_commands_run_in_order(daemon: Daemon) -> None:
    user = 901
    batch = [
        {"method": "balance.update", "params": [user, "USDT", "deposit", 1, "1000", {}], "id": 1},
        {"method": "order.put_limit",
         "params": [user, MARKET, 2, "0.01", "100", "0.001", "0.001", "b"], "id": 2},
        {"method": "order.pending", "params": [user, MARKET, 0, 10], "id": 3},
        {"method": "nope", "params": [], "id": 4},
        {"method": "balance.query", "params": [user, "USDT"], "id": 5},
        "not a request",
        {"method": "order.put_limit", "params": [user, MARKET, 2, 1, "1", "0", "0", ""], "id": 7},
    ]  # fmt: skip
    status, body = daemon.post(batch)
    assert status == 200
    answers = json.loads(body)
    assert [a["id"] for a in answers] == [1, 2, 3, 4, 5, None, 7]
    assert answers[0]["result"] == {"status": "success"}
    order = answers[1]["result"]
    assert order["left"] == "0.01"
    assert answers[2]["result"]["records"][0]["id"] == order["id"]
    assert error(answers[3]) == (4, "method not found")
    assert answers[4]["result"] == {"USDT": {"available": "999", "freeze": "1"}}
    assert error(answers[5])[0] == 1
    assert error(answers[6]) == (1, "invalid argument: amount must be a string")
    daemon.ok("order.cancel", user, MARKET, order["id"])


def test_a_batch_over_the_limit_is_413(daemon: Daemon) -> None:
    batch = [{"method": "asset.list", "params": [], "id": i} for i in range(51)]
    status, body = daemon.post(batch)
    assert status == 413
    assert error(json.loads(body)) == (
        1,
        "invalid argument: a batch of 51 requests exceeds the limit of 50",
    )


# --------------------------------------------------------------------------- a ViaBTC flow


def test_a_viabtc_client_flow(daemon: Daemon) -> None:
    """Deposit, a resting bid, a crossing ask, depth, pending, cancel, history."""
    maker, taker = 11, 12
    deposit(daemon, maker, "USDT", "100000")
    deposit(daemon, taker, "BTC", "10")
    bid = daemon.ok("order.put_limit", maker, MARKET, 2, "2", "30000", "0.002", "0.001", "web")
    assert (bid["type"], bid["side"], bid["left"], bid["deal_stock"]) == (1, 2, "2", "0")
    depth = daemon.ok("order.depth", MARKET, 10, "0")
    assert ["30000", "2"] in depth["bids"]
    ask = daemon.ok("order.put_limit", taker, MARKET, 1, "0.5", "29000", "0.002", "0.001", "api")
    # the ask takes 0.5 at the maker's price; the seller's fee is in money: 15000 * 0.002
    assert (ask["left"], ask["deal_stock"], ask["deal_money"], ask["deal_fee"]) == (
        "0", "0.5", "15000", "30",
    )  # fmt: skip
    pending = daemon.ok("order.pending", maker, MARKET, 0, 10)
    assert pending["total"] == 1
    assert pending["records"][0]["left"] == "1.5"
    assert daemon.ok("order.pending_detail", MARKET, bid["id"])["deal_stock"] == "0.5"
    assert daemon.ok("balance.query", taker, "BTC", "USDT") == {
        "BTC": {"available": "9.5", "freeze": "0"},
        "USDT": {"available": "14970", "freeze": "0"},
    }
    book = daemon.ok("order.book", MARKET, 2, 0, 10)
    assert book["orders"][0]["id"] == bid["id"]
    assert error(daemon.rpc("order.cancel", taker, MARKET, bid["id"])) == (11, "user not match")
    cancelled = daemon.ok("order.cancel", maker, MARKET, bid["id"])
    assert cancelled["left"] == "1.5"
    assert error(daemon.rpc("order.cancel", maker, MARKET, bid["id"])) == (10, "order not found")
    assert daemon.ok("order.pending_detail", MARKET, bid["id"]) is None

    # readhistory's methods, once the drainer has written the rows
    deals = eventually(lambda: daemon.ok("order.deals", bid["id"], 0, 10)["records"])
    assert [(d["role"], d["price"], d["amount"], d["deal"]) for d in deals] == [
        (1, "30000", "0.5", "15000")
    ]
    finished = eventually(
        lambda: daemon.ok("order.finished", maker, MARKET, 0, 0, 0, 10)["records"]
    )
    assert finished[0]["id"] == bid["id"]
    assert daemon.ok("order.finished_detail", bid["id"])["deal_money"] == "15000"
    user_deals = daemon.ok("market.user_deals", taker, MARKET, 0, 10)["records"]
    assert user_deals[0]["side"] == 1
    history = eventually(
        lambda: daemon.ok("balance.history", maker, "USDT", "", 0, 0, 0, 10)["records"]
    )
    assert history[-1]["business"] == "deposit"
    assert history[-1]["change"] == "100000"

    # marketprice's methods, once the feed has the deal
    last = eventually(
        lambda: daemon.ok("market.last", MARKET) != "0" and daemon.ok("market.last", MARKET)
    )
    assert last == "30000.00"  # ViaBTC keeps market.last's scale
    recent = daemon.ok("market.deals", MARKET, 10, 0)
    assert recent[0]["type"] == "sell"
    status = daemon.ok("market.status", MARKET, 86400)
    assert status["volume"] == "0.5"
    today = daemon.ok("market.status_today", MARKET)
    assert today["last"] == "30000"
    now = int(time.time())
    kline = daemon.ok("market.kline", MARKET, now - 3600, now, 60)
    assert kline[-1][1:5] == ["30000", "30000", "30000", "30000"]
    assert kline[-1][7] == MARKET


def test_documented_errors_of_the_engine_methods(daemon: Daemon) -> None:
    user = 21
    deposit(daemon, user, "BTC", "1")
    assert error(daemon.rpc("balance.update", user, "BTC", "w", 1, "-2", {})) == (
        11, "balance not enough",
    )  # fmt: skip
    daemon.ok("balance.update", user, "BTC", "dep", 77, "0.5", {"note": "x"})
    assert error(daemon.rpc("balance.update", user, "BTC", "dep", 77, "0.5", {})) == (
        10, "repeat update",
    )  # fmt: skip
    assert error(daemon.rpc("balance.update", user, "BTC", "dep", 78, "0.5", None))[0] == 1
    assert error(daemon.rpc("order.put_limit", user, MARKET, 2, "1", "1", "0", "0", ""))[0] == 10
    assert error(daemon.rpc("order.put_limit", user, MARKET, 1, "0.0001", "1", "0", "0", "")) == (
        11, "amount too small",
    )  # fmt: skip
    assert error(daemon.rpc("order.put_market", user, "ETH_BTC", 1, "0.1", "0", "")) == (
        10, "balance not enough",
    )  # fmt: skip
    assert error(daemon.rpc("order.put_market", user, MARKET, 1, "0.1", "0", "")) == (
        12, "no enough trader",
    )  # fmt: skip
    assert error(daemon.rpc("balance.query", 0))[0] == 1
    assert error(daemon.rpc("balance.query", user, "DOGE")) == (
        1, "invalid argument: unknown asset 'DOGE'",
    )  # fmt: skip
    assert error(daemon.rpc("order.book", "NOPE", 1, 0, 10)) == (
        1, "invalid argument: unknown market 'NOPE'",
    )  # fmt: skip
    assert error(daemon.rpc("order.book", MARKET, 1, 0, 102)) == (
        1, "invalid argument: limit must be in 0..101",
    )  # fmt: skip
    assert error(daemon.rpc("order.put_limit", user, MARKET, 1, "1", "1", "0", "0"))[1] == (
        "invalid argument: order.put_limit takes 8 or 9 params, not 7"
    )
    assert error(daemon.rpc("order.put_limit", 2**32, MARKET, 1, "1", "1", "0", "0", ""))[0] == 1
    assert error(daemon.rpc("order.put_limit", user, MARKET, 1, "1", "1", "1", "0", ""))[1] == (
        "invalid argument: taker_fee_rate must be below 1"
    )
    assert (
        error(daemon.rpc("order.put_limit", user, MARKET, 1, "1", "1", "0", "0", "x" * 31))[0] == 1
    )
    assert error(daemon.rpc("market.kline", MARKET, 10, 5, 7))[0] == 1
    assert error(daemon.rpc("order.deals", 0, 0, 10))[0] == 1
    assert error(daemon.rpc("balance.history", user, "", "", 0, 0, 0, 0))[1] == (
        "invalid argument: limit must be in 1..101"
    )


REPEAT = "repeat order: the client id names an order already placed"


def test_a_retried_put_with_a_client_id_names_the_order_placed_first(daemon: Daemon) -> None:
    """matchd's optional last param of the puts: a client id already used by an order
    of the user refuses the put with code 13 and the first order's id."""
    user = 903
    deposit(daemon, user, "USDT", "1000")
    put = [user, MARKET, 2, "0.01", "100", "0", "0", "retry"]
    first = daemon.ok("order.put_limit", *put, 7)
    repeat = {"code": 13, "message": REPEAT, "order_id": first["id"]}
    assert daemon.rpc("order.put_limit", *put, 7)["error"] == repeat
    assert daemon.rpc("order.put_market", user, MARKET, 2, "10", "0", "", 7)["error"] == repeat
    pending = daemon.ok("order.pending", user, MARKET, 0, 10)
    assert [o["id"] for o in pending["records"]] == [first["id"]]  # only one order rests
    assert daemon.ok("balance.query", user, "USDT") == {"USDT": {"available": "999", "freeze": "1"}}
    # the same table answers a call on the ZeroMQ order entry (the SDK's ApiError)
    with Client(daemon.endpoint, timeout_s=10.0) as client:
        m = client.markets()[0]
        lots, ticks = 10**m.stock_prec // 100, 100 * 10**m.money_prec
        with pytest.raises(ApiError, match="repeat order") as info:
            client.put_limit(user, m.index, 2, lots, ticks, source="retry", client_id=7)
    assert (info.value.code, info.value.viabtc) == (Result.REPEAT_ORDER, 13)
    assert info.value.order_id == first["id"]
    # the batch path (one COMMANDS frame): a repeat inside the same batch is caught too
    batch = [
        {"method": "order.put_limit", "params": [*put, 8], "id": 1},
        {"method": "order.put_limit", "params": [*put, 8], "id": 2},
        {"method": "order.put_limit", "params": [*put, 7], "id": 3},
        {"method": "order.put_limit", "params": put, "id": 4},
    ]
    status, body = daemon.post(batch)
    assert status == 200
    answers = json.loads(body)
    second = answers[0]["result"]
    assert second["id"] > first["id"]
    assert answers[1]["error"] == {**repeat, "order_id": second["id"]}
    assert answers[2]["error"] == repeat
    assert answers[3]["error"] is None  # no client id: no check
    assert daemon.ok("order.cancel_all", user, MARKET) == {"count": 3}


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("order.put_limit", [1, MARKET, 2, "1", "1", "0", "0", "", 1, 2],
         "order.put_limit takes 8 or 9 params, not 10"),
        ("order.put_market", [1, MARKET, 2, "1", "0", "", 1, 2],
         "order.put_market takes 6 or 7 params, not 8"),
        ("order.put_market", [1, MARKET, 2, "1", "0"],
         "order.put_market takes 6 or 7 params, not 5"),
        ("order.put_limit", [1, MARKET, 2, "1", "1", "0", "0", "", -1],
         "client_id must be in 0..9223372036854775807"),
        ("order.put_limit", [1, MARKET, 2, "1", "1", "0", "0", "", 2**63],
         "client_id must be in 0..9223372036854775807"),
        ("order.put_market", [1, MARKET, 2, "1", "0", "", 1.5], "client_id must be an integer"),
        ("order.put_market", [1, MARKET, 2, "1", "0", "", "7"], "client_id must be an integer"),
        ("order.put_limit", [1, MARKET, 2, "1", "1", "0", "0", "", True],
         "client_id must be an integer"),
        ("order.put_limit", [1, MARKET, 2, "1", "1", "0", "0", "", None],
         "client_id must be an integer"),
    ],
)  # fmt: skip
def test_a_bad_client_id_or_param_count_is_refused_precisely(
    daemon: Daemon, method: str, params: list[Any], message: str
) -> None:
    assert error(daemon.rpc(method, *params)) == (1, f"invalid argument: {message}")


def test_list_and_summary_methods(daemon: Daemon) -> None:
    assert [m["name"] for m in daemon.ok("market.list")] == ["BTC_USDT", "ETH_BTC"]
    assert daemon.ok("market.list", "ignored") == daemon.ok("market.list")
    assert [a["name"] for a in daemon.ok("asset.list")] == ["BTC", "ETH", "USDT"]
    summary = daemon.ok("market.summary", "ETH_BTC")
    assert summary == [
        {"name": "ETH_BTC", "ask_count": 0, "ask_amount": "0", "bid_count": 0, "bid_amount": "0"}
    ]
    assets = daemon.ok("asset.summary", "ETH")
    assert assets[0]["name"] == "ETH"
    assert set(assets[0]) == {
        "name", "total_balance", "available_count", "available_balance",
        "freeze_count", "freeze_balance",
    }  # fmt: skip


def test_decimals_are_plain_never_exponent_form(daemon: Daemon) -> None:
    user = 31
    deposit(daemon, user, "BTC", "0.00000001")
    deposit(daemon, user, "ETH", "1")
    assert daemon.ok("balance.query", user, "BTC")["BTC"]["available"] == "0.00000001"
    order = daemon.ok("order.put_limit", user, "ETH_BTC", 1, "0.01", "0.00001", "0", "0", "")
    assert (order["price"], order["amount"]) == ("0.00001", "0.01")
    assert daemon.ok("order.depth", "ETH_BTC", 10, "0")["asks"] == [["0.00001", "0.01"]]
    assert daemon.ok("order.depth", "ETH_BTC", 10, "0.001")["asks"] == [["0.001", "0.01"]]
    daemon.ok("order.cancel", user, "ETH_BTC", order["id"])


# --------------------------------------------------------------------------- equivalence


def _strip_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_times(v) for k, v in value.items() if k not in ("ctime", "mtime")}
    if isinstance(value, list):
        return [_strip_times(v) for v in value]
    return value


CALLS: list[tuple[str, list[Any]]] = [
    ("balance.update", [41, "USDT", "deposit", 1, "5000.5", {}]),
    ("balance.update", [42, "BTC", "deposit", 1, "3", {}]),
    ("balance.update", [42, "BTC", "deposit", 1, "3", {}]),
    ("order.put_limit", [41, MARKET, 2, "0.1", "20000.01", "0.001", "0.0005", "a"]),
    ("order.put_limit", [41, MARKET, 2, "0.05", "20000.02", "0.001", "0.0005", "b"]),
    ("order.put_limit", [42, MARKET, 1, "0.12", "19000", "0.002", "0.001", "c"]),
    ("order.put_market", [42, MARKET, 1, "0.01", "0.002", "d"]),
    ("order.put_market", [41, MARKET, 2, "100", "0.002", "e"]),
    ("order.put_limit", [42, MARKET, 1, "0.3", "21000", "0.002", "0.001", "f"]),
    ("order.replace", [42, MARKET, 0, "21500", "0.2"]),
    ("order.put_market", [41, MARKET, 2, "1000.123456", "0.002", "g"]),
    ("order.cancel_all", [42, MARKET]),
    ("balance.query", [41]),
    ("balance.query", [42, "BTC"]),
    ("order.pending", [41, MARKET, 0, 101]),
    ("order.book", [MARKET, 1, 0, 101]),
    ("order.book", [MARKET, 2, 0, 101]),
    ("order.depth", [MARKET, 101, "0"]),
    ("order.depth", [MARKET, 5, "10"]),
    ("market.summary", []),
    ("balance.update", [41, "USDT", "withdraw", 2, "-0.5", {}]),
    ("order.put_limit", [41, MARKET, 9, "0.1", "1", "0", "0", ""]),
    ("order.cancel", [41, MARKET, 999999]),
    ("order.put_limit", [41, MARKET, 2, "0.01", "1", "0", "0", "h", 5]),
    ("order.put_limit", [41, MARKET, 2, "0.01", "1", "0", "0", "h", 5]),
    ("order.put_market", [41, MARKET, 2, "1", "0", "i", 5]),
    ("order.put_market", [41, MARKET, 2, "1", "0", "i", -5]),
]


def test_answers_equal_the_in_process_engine(tmp_path: Path) -> None:
    """The same calls through HTTP and through ``core.viabtc.Exchange`` on a fresh
    engine give the same errors and results (times aside)."""
    ticks = count(1_700_000_000_000_000_000, 1_000)
    exchange = Exchange(Engine(parse_config(config_text())), lambda: next(ticks))
    with running_daemon(tmp_path, ws=None, history=False) as d:
        for method, params in CALLS:
            if method == "order.replace":  # the order placed by call "f"
                params = [params[0], params[1], _last_order_of(d, 42), *params[3:]]
            via_http = d.rpc(method, *params)
            local = getattr(exchange, _EXCHANGE[method])(*params)
            assert _strip_times(via_http["result"]) == _strip_times(local.result), method
            assert via_http["error"] == local.error(), method


def _last_order_of(d: Daemon, user: int) -> int:
    records = d.ok("order.pending", user, MARKET, 0, 1)["records"]
    return int(records[0]["id"])


_EXCHANGE = {
    "balance.update": "balance_update",
    "order.put_limit": "put_limit",
    "order.put_market": "put_market",
    "order.replace": "replace",
    "order.cancel_all": "cancel_all",
    "order.cancel": "cancel",
    "balance.query": "balance_query",
    "order.pending": "order_pending",
    "order.book": "order_book",
    "order.depth": "order_depth",
    "market.summary": "market_summary",
}


def test_the_readme_curl_session_answers_what_the_readme_says(daemon: Daemon) -> None:
    text = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = text.split("## A first order over HTTP", 1)[1].split("\n## ", 1)[0]
    bodies = re.findall(r"curl -s localhost:8080 -d '(.*)'", section)
    assert len(bodies) == 5
    answers = [daemon.post(None, raw=body.encode()) for body in bodies]
    assert all(status == 200 for status, _ in answers)
    promised = re.search(r"The last answer is `(.*?)`", section, re.S)
    assert promised is not None
    assert json.loads(answers[-1][1]) == json.loads(promised.group(1))


def test_a_batch_of_order_commands_goes_as_one_and_answers_each(daemon: Daemon) -> None:
    """A batch of order commands only (one COMMANDS frame): each element is answered
    as alone, the refused ones with their own errors, in order."""
    user = 902
    deposit(daemon, user, "USDT", "1000")
    put = ["order.put_limit", [user, MARKET, 2, "0.01", "100", "0", "0", "x"]]
    batch = [
        {"method": put[0], "params": put[1], "id": 1},
        {"method": put[0], "params": [user, MARKET, 2, 0.01, "100", "0", "0", ""], "id": 2},
        {"method": "order.put_limit", "params": [user, MARKET, 2, "1", "100"], "id": 3},
        {"method": put[0], "params": [user, MARKET, 2, "100", "100", "0", "0", ""], "id": 4},
        {"method": "order.cancel", "params": [user, MARKET, 1], "id": 5},
        {"method": put[0], "params": put[1], "id": 6},
        {"method": "order.cancel_all", "params": [user, MARKET], "id": 7},
    ]
    status, body = daemon.post(batch)
    assert status == 200
    answers = json.loads(body)
    assert [a["id"] for a in answers] == [1, 2, 3, 4, 5, 6, 7]
    first, sixth = answers[0]["result"], answers[5]["result"]
    assert first["left"] == sixth["left"] == "0.01"
    assert sixth["id"] > first["id"]
    assert error(answers[1]) == (1, "invalid argument: amount must be a string")
    assert error(answers[2]) == (
        1, "invalid argument: order.put_limit takes 8 or 9 params, not 5",
    )  # fmt: skip
    assert error(answers[3]) == (10, "balance not enough")
    assert error(answers[4])[0] in (10, 11)  # order 1 is not this user's pending order
    assert answers[6]["result"] == {"count": 2}
    assert daemon.ok("balance.query", user, "USDT") == {
        "USDT": {"available": "1000", "freeze": "0"}
    }
