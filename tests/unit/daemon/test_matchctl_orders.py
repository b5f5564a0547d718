"""``matchctl`` order commands, live markets and metrics against a running server:
decimals in, exact integer units on the wire, error replies as exit 1, usage as 2."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.schema import OrderType, Result, Side
from daemon.metrics import ServerMetrics
from ipc import wire
from tests.unit.daemon.test_server import Running, deposits
from tools import matchctl
from tools.matchctl_live import parse_metrics

pytestmark = pytest.mark.integration

# BTC_USDT (index 0): stock_prec 6 (lots), money_prec 2 (ticks), fee_prec 4; USDT prec 8.
LOT, TICK, USDT_UNIT = 10**6, 10**2, 10**8


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    r = Running(tmp_path)
    r.request(lambda rid: wire.encode_calls(deposits(), rid))
    yield r
    r.close()


class Ctl:
    """``matchctl`` against ``running``: ``ok`` parses stdout, ``fails`` stderr."""

    def __init__(self, running: Running, capsys: pytest.CaptureFixture[str]) -> None:
        self.running = running
        self.capsys = capsys

    def run(self, *argv: str) -> tuple[int, str, str]:
        # A generous timeout: the first order may compile the kernels (cold numba cache).
        endpoint = ["--endpoint", self.running.server.endpoint, "--timeout", "120"]
        code = matchctl.main([*argv, *endpoint])
        out, err = self.capsys.readouterr()
        return code, out, err

    def ok(self, *argv: str) -> Any:
        code, out, err = self.run(*argv)
        assert (code, err) == (0, "")
        return json.loads(out)

    def fails(self, *argv: str) -> dict[str, Any]:
        code, out, err = self.run(*argv)
        assert (code, out) == (1, "")
        body: dict[str, Any] = json.loads(err)
        return body

    def refused(self, *argv: str) -> str:
        code, out, err = self.run(*argv)
        assert (code, out) == (2, "")
        return err


@pytest.fixture
def ctl(running: Running, capsys: pytest.CaptureFixture[str]) -> Ctl:
    return Ctl(running, capsys)


def test_place_a_limit_order_in_decimals_see_it_and_cancel_it(ctl: Ctl) -> None:
    done = ctl.ok("place", "1", "BTC_USDT", "sell", "0.5", "30000.25", "--source", "ops")
    order = done["order"]
    assert done["seq"] > 0
    assert order["id"] == done["order_id"] > 0
    assert (order["side"], order["otype"]) == (Side.ASK, OrderType.LIMIT)
    assert (order["amount"], order["price"]) == (LOT // 2, 3_000_025)
    assert (order["left"], order["source"]) == (LOT // 2, "ops")
    page = ctl.ok("orders", "1", "0")
    assert page["total"] == 1
    assert [o["id"] for o in page["orders"]] == [done["order_id"]]
    assert ctl.ok("book", "BTC_USDT", "sell")["orders"] == [order]
    detail = ctl.ok("order", "BTC_USDT", str(done["order_id"]))
    assert detail == order
    cancelled = ctl.ok("cancel", "1", "0", str(done["order_id"]))
    assert cancelled["order_id"] == done["order_id"]
    assert cancelled["seq"] > done["seq"]
    gone = ctl.fails("order", "0", str(done["order_id"]))
    assert gone["code"] == Result.ORDER_NOT_FOUND
    assert "not found" in gone["message"]
    assert ctl.ok("orders", "1", "BTC_USDT")["total"] == 0


def test_options_cancel_all_and_a_market_order(ctl: Ctl) -> None:
    ctl.ok("place", "1", "0", "sell", "0.5", "30000")
    ctl.ok("place", "1", "0", "sell", "0.25", "30001", "--tif", "gtc", "--maker-fee", "0.001")
    bid = ctl.ok("place", "1", "0", "buy", "0.1", "29000", "--post-only", "--taker-fee", "0.002")
    assert (bid["order"]["flags"], bid["order"]["taker_rate"]) == (1, 20)  # fee_prec 4
    assert ctl.ok("cancel-all", "1", "0", "--side", "buy")["value"] == 1
    # A market buy spends 3000 USDT: 0.1 BTC at 30000.
    done = ctl.ok("place", "2", "0", "buy", "3000", "--market-order", "--taker-fee", "0.001")
    order = done["order"]
    assert order["otype"] == OrderType.MARKET
    assert (order["amount"], order["left"]) == (3000 * USDT_UNIT, 0)
    assert order["deal_money"] == 3000 * USDT_UNIT
    assert ctl.ok("orders", "1", "0", "--limit", "1")["total"] == 2
    assert ctl.ok("cancel-all", "1", "BTC_USDT")["value"] == 2
    assert ctl.ok("orders", "1", "0")["total"] == 0


def test_values_the_market_cannot_take_are_refused_and_nothing_is_sent(ctl: Ctl) -> None:
    seq = ctl.running.journal.durable_seq
    err = ctl.refused("place", "1", "0", "sell", "0.0000001", "30000")
    assert "AMOUNT 0.0000001 is not a multiple of 0.000001" in err
    assert "PRICE 30000.001 is not a multiple of 0.01" in ctl.refused(
        "place", "1", "0", "sell", "1", "30000.001"
    )
    assert "PRICE 0 is out of range" in ctl.refused("place", "1", "0", "sell", "1", "0")
    assert "--taker-fee 1 is out of range" in ctl.refused(
        "place", "1", "0", "sell", "1", "1", "--taker-fee", "1"
    )
    assert "not a decimal number" in ctl.refused("place", "1", "0", "sell", "1e", "1")
    assert "takes no PRICE, --post-only" in ctl.refused(
        "place", "1", "0", "sell", "1", "1", "--market-order", "--post-only"
    )
    assert "needs a PRICE" in ctl.refused("place", "1", "0", "sell", "1")
    assert "--source must be at most 30 bytes" in ctl.refused(
        "place", "1", "0", "sell", "1", "1", "--source", "x" * 31
    )
    assert ctl.running.journal.durable_seq == seq
    with pytest.raises(SystemExit) as exit_info:  # argparse: a side that is not buy/sell
        ctl.run("place", "1", "0", "bid", "1", "1")
    assert exit_info.value.code == 2


def test_a_place_with_a_client_id_placed_again_names_the_first_order(ctl: Ctl) -> None:
    first = ctl.ok("place", "1", "0", "sell", "0.5", "30000", "--client-id", "77")
    again = ctl.fails("place", "1", "0", "sell", "0.5", "30000", "--client-id", "77")
    assert (again["code"], again["viabtc"]) == (Result.REPEAT_ORDER, 13)
    assert again["message"].endswith(f": order {first['order_id']}")
    assert ctl.ok("orders", "1", "0")["total"] == 1
    with pytest.raises(SystemExit):  # argparse: not a client id
        ctl.run("place", "1", "0", "sell", "0.5", "30000", "--client-id", "0")


def test_error_replies_exit_1_with_the_code(ctl: Ctl) -> None:
    poor = ctl.fails("place", "9", "0", "buy", "1", "30000")  # user 9 has no USDT
    assert poor["command"] == "place"
    assert (poor["op"], poor["code"], poor["viabtc"]) == ("order.put_limit", 2001, 10)
    assert poor["message"] == "balance not enough"
    missing = ctl.fails("cancel", "1", "0", "999")
    assert (missing["op"], missing["code"]) == ("order.cancel", Result.ORDER_NOT_FOUND)
    unknown = ctl.fails("orders", "1", "NOPE_USDT")
    assert unknown["code"] == Result.UNKNOWN_MARKET
    assert "0 BTC_USDT" in unknown["message"]


def test_markets_live(ctl: Ctl) -> None:
    markets = ctl.ok("markets")
    assert [(m["index"], m["name"]) for m in markets] == [(0, "BTC_USDT"), (1, "ETH_BTC")]
    assert (markets[0]["stock_prec"], markets[0]["money_prec"]) == (6, 2)
    assert [b["asset"] for b in ctl.ok("balances", "1")] == [0, 1, 2]  # the alias of balance


def test_metrics_of_a_real_endpoint(ctl: Ctl) -> None:
    metrics = ServerMetrics(ctl.running.journal)
    ctl.running.server.metrics = metrics
    port = metrics.serve("127.0.0.1:0")
    try:
        ctl.ok("place", "1", "0", "sell", "1", "30000")
        url = f"http://127.0.0.1:{port}/metrics"
        code = matchctl.main(["metrics", "--url", url, "--grep", "matchd_commands"])
    finally:
        metrics.close()
    out, err = ctl.capsys.readouterr()
    assert (code, err) == (0, "")
    samples = json.loads(out)
    assert samples['matchd_commands_total{kind="put_limit",result="ok"}'] == 1
    assert all(name.startswith("matchd_commands") for name in samples)


def test_an_unreachable_metrics_endpoint_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/metrics"
    assert matchctl.main(["metrics", "--url", url, "--timeout", "2"]) == 1
    assert f"matchctl: metrics: {url}: cannot reach it" in capsys.readouterr().err
    assert matchctl.main(["metrics", "--url", "file:///etc/passwd"]) == 2
    assert "http:// or https://" in capsys.readouterr().err


def test_parse_metrics() -> None:
    text = (
        "# TYPE a counter\n"
        'a_total{k="v",q="x\\"y"} 3.0\n'
        "# TYPE b gauge\n"
        "b 0.5\n"
        "# TYPE c gauge\n"
        "c NaN\n"
        "# TYPE h histogram\n"
        'h_bucket{le="+Inf"} 2.0\n'
        "h_count 2.0\n"
        "h_sum +Inf\n"
    )
    assert parse_metrics(text) == {
        'a_total{k="v",q="x\\"y"}': 3,
        "b": 0.5,
        "c": "NaN",
        'h_bucket{le="+Inf"}': 2,
        "h_count": 2,
        "h_sum": "+Inf",
    }
    assert list(parse_metrics(text, "h_")) == ['h_bucket{le="+Inf"}', "h_count", "h_sum"]
    with pytest.raises(ValueError, match="could not convert"):
        parse_metrics("not metrics at all {\n")
