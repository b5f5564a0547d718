"""The parts of ``matchd-loadgen`` that need no server: reading answers, the ledgers,
the soak arithmetic, user and business-id blocks, pacing across processes, and the
command line's refusals."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction

import pytest

from tools import loadgen
from tools.loadgen_drivers import Outcome, error_key, outcome_of
from tools.loadgen_latency import NS_PER_S, Schedule
from tools.loadgen_model import MODELS, Op, TrafficModel
from tools.loadgen_report import daemon_processes, merge, progress_line
from tools.loadgen_run import combine_ledgers, process_business_ids
from tools.loadgen_soak import Balances, SoakReport, _levels, check_funds, fees_paid
from tools.loadgen_worker import Ledger, Recorders, model_block


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, b'{"error":null,"result":{"status":"success"},"id":1}',
         Outcome({"status": "success"}, None)),
        (200, b'{"error":{"code":10,"message":"balance not enough"},"result":null,"id":1}',
         Outcome(None, "10")),
        (404, b'{"error":{"code":4,"message":"method not found"},"result":null,"id":1}',
         Outcome(None, "4")),
        (500, b"", Outcome(None, "http 500")),
        (400, b"", Outcome(None, "http 400")),
        (200, b"not json", Outcome(None, "bad reply")),
        (200, b'{"error":{"code":"x"},"id":1}', Outcome(None, "bad error")),
    ],
)  # fmt: skip
def test_an_http_answer_becomes_a_result_or_an_error_key(
    status: int, body: bytes, outcome: Outcome
) -> None:
    assert outcome_of(status, body) == outcome


def test_error_keys_are_codes() -> None:
    assert error_key({"code": 3, "message": "service unavailable"}) == "3"
    assert error_key("boom") == "bad error"


def test_each_process_gets_its_own_block_of_users() -> None:
    model = TrafficModel(makers=2, takers=3, first_user=100)
    blocks = [model_block(model, i) for i in range(3)]
    assert [b.first_user for b in blocks] == [100, 105, 110]
    assert all(b.makers == 2 and b.takers == 3 for b in blocks)


def test_business_ids_of_processes_never_meet() -> None:
    start = 1_764_000_000_000_000
    firsts = [process_business_ids(start, i) for i in range(64)]
    assert all(b - a == 10**15 for a, b in itertools.pairwise(firsts))
    assert firsts[-1] < 2**63 - 10**15


def test_the_processes_schedules_interleave_into_the_whole_rate() -> None:
    rate, processes, start = Fraction(1000), 4, 10**12
    times = sorted(
        Schedule(rate / processes, start + int(k * NS_PER_S / rate)).intended_ns(i)
        for k in range(processes)
        for i in range(250)
    )
    assert times == [start + i * 1_000_000 for i in range(1000)]


def test_the_ledger_keeps_acknowledged_orders_and_net_changes() -> None:
    ledger = Ledger()
    ok = {"status": "success"}
    put = Op("order.put_limit", (7, "BTC_USDT", 2, "0.01", "100", "0.002", "0.001", ""))
    ledger.note(put, {"id": 41})
    ledger.note(put, {"id": 42})
    ledger.note(Op("balance.update", (7, "USDT", "deposit", 1, "10.5", {})), ok)
    ledger.note(Op("balance.update", (7, "USDT", "withdraw", 2, "-0.5", {})), ok)
    ledger.note(Op("order.cancel", (7, "BTC_USDT", 41)), {"id": 41})
    other = Ledger()
    other.note(Op("balance.update", (8, "USDT", "deposit", 3, "1", {})), ok)
    orders, net = combine_ledgers([ledger.encode(), other.encode()])
    assert orders == {(7, "BTC_USDT"): [41, 42]}
    assert net == {"USDT": Decimal(11)}


def test_fees_are_paid_in_what_an_order_receives() -> None:
    orders = [
        {"market": "BTC_USDT", "side": 2, "deal_fee": "0.00002"},  # a bid receives BTC
        {"market": "BTC_USDT", "side": 1, "deal_fee": "0.3"},  # an ask receives USDT
        {"market": "BTC_USDT", "side": 1, "deal_fee": "0"},
    ]
    fees = fees_paid(orders, {"BTC_USDT": ("BTC", "USDT")})
    assert fees == {"BTC": Decimal("0.00002"), "USDT": Decimal("0.3")}


def _balances(btc: str, usdt: str, unit: str = "0.01") -> Balances:
    return Balances(
        {"BTC": Decimal(btc), "USDT": Decimal(usdt)},
        2,
        dict.fromkeys(("BTC", "USDT"), Decimal(unit)),
    )


def test_funds_pass_when_balances_moved_by_the_net_less_fees_and_fail_otherwise() -> None:
    before = _balances("1", "100")
    net = {"BTC": Decimal(2)}
    fees = {"USDT": Decimal("0.5")}
    good = SoakReport()
    check_funds(good, before, _balances("3", "99.5"), net, fees)
    assert good.ok
    bad = SoakReport()
    check_funds(bad, before, _balances("3", "99.6"), net, fees)
    assert not bad.ok
    assert bad.violations["funds"] == [
        "USDT: balances moved by -0.4; acknowledged changes 0 less fees 0.5 make -0.5 "
        "(tolerance 0.02)"
    ]


def test_funds_allow_what_truncated_balances_hide_and_no_more() -> None:
    before = _balances("1", "100")
    fees = {"USDT": Decimal("0.0049")}  # the users' true USDT: 99.9951, shown 99.99 or so
    within = SoakReport()
    check_funds(within, before, _balances("1", "99.98"), {}, fees)  # short by 0.0151 < 0.02
    assert within.ok, within.violations
    beyond = SoakReport()
    check_funds(beyond, before, _balances("1", "99.97"), {}, fees)  # short by 0.0251
    assert not beyond.ok


def test_levels_sum_left_per_price_best_first() -> None:
    orders = [
        {"price": "10", "left": "1"},
        {"price": "9", "left": "2"},
        {"price": "10", "left": "0.5"},
    ]
    assert _levels(orders, 1) == [[Decimal(9), Decimal(2)], [Decimal(10), Decimal("1.5")]]
    assert _levels(orders, 2) == [[Decimal(10), Decimal("1.5")], [Decimal(9), Decimal(2)]]


def test_a_report_keeps_few_examples() -> None:
    report = SoakReport()
    for i in range(50):
        report.fail("orders", f"order {i}")
    assert len(report.violations["orders"]) == 10
    assert report.to_json()["ok"] is False


def test_recorders_merge_across_processes_per_method() -> None:
    payloads = []
    for k in range(2):
        rec = Recorders(0)
        rec.record("order.put_limit", 0, 2_000_000 * (k + 1), None)
        rec.record("order.cancel", 0, 1_000_000, "10")
        payloads.append(rec.encode())
    merged = merge(payloads, 0)
    assert merged.all.count == 2
    assert merged.methods["order.cancel"].errors == {"10": 2}
    assert merged.methods["order.put_limit"].count == 2
    assert "errors 2 (10: 2)" in progress_line(merged, 1.0)


def test_the_daemon_processes_are_found_with_their_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        found = daemon_processes(os.getpid())
        assert os.getpid() in found
        assert child.pid in found
        assert found[child.pid].startswith("-c import time")
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "no-such-model"], "no traffic model 'no-such-model'"),
        (["--rate", "0"], "must be a positive rate"),
        (["--rate", "fast"], "is not a rate"),
        (["--duration", "-1"], "must be a positive number"),
        (["--duration", "inf"], "not a finite number"),
        (["--ws-query-interval", "-1"], "at least 0"),
        (["--processes", "0"], ""),
        (["--transport", "carrier-pigeon"], "invalid choice"),
        (["--rate", "10", "--closed"], "not allowed with argument"),
    ],
)
def test_the_command_line_refuses_bad_arguments(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = loadgen.main(argv)
    except SystemExit as exc:  # argparse's refusals
        code = int(exc.code or 0)
    assert code == 2
    assert message in capsys.readouterr().err


def test_a_model_beyond_the_user_ids_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert loadgen.main(["--model", "mm-takers", "--processes", str(2**31)]) == 2
    assert "go beyond user id" in capsys.readouterr().err


def test_the_models_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert loadgen.main(["--list-models"]) == 0
    assert capsys.readouterr().out.split() == sorted(MODELS)


class _Recording:
    """A driver that answers every order.finished page empty and remembers it."""

    def __init__(self) -> None:
        self.asked: list[list[object]] = []

    async def start(self) -> None:
        return None

    async def call(self, method: str, params: list[object]) -> Outcome:
        self.asked.append(params)
        return Outcome({"offset": params[4], "limit": params[5], "records": []}, None)

    async def aclose(self) -> None:
        return None


def test_a_transient_error_is_asked_again_and_a_lasting_one_fails() -> None:
    import asyncio

    from tools.loadgen_soak import Limited, SoakQueryError

    class Flaky(_Recording):
        async def call(self, method: str, params: list[object]) -> Outcome:
            self.asked.append(params)
            return Outcome(None, "5") if len(self.asked) < 3 else Outcome("ok", None)

    flaky = Flaky()
    assert asyncio.run(Limited(flaky).call("x", [])) == "ok"
    assert len(flaky.asked) == 3

    class Broken(_Recording):
        async def call(self, method: str, params: list[object]) -> Outcome:
            self.asked.append(params)
            return Outcome(None, "1")

    broken = Broken()
    with pytest.raises(SoakQueryError, match="error 1"):
        asyncio.run(Limited(broken).call("x", []))
    assert len(broken.asked) == 1


def test_the_websocket_readers_recordings_stay_out_of_the_overall_figures() -> None:
    rec = Recorders(0)
    rec.record("order.put_limit", 0, 1_000_000, None)
    rec.record("ws deal delay", 0, 5_000_000, None)
    rec.record("ws depth.query", 0, 2_000_000, "3")
    assert rec.all.count == 1
    assert rec.all.errors == {}
    assert rec.methods["ws deal delay"].count == 1
    assert rec.methods["ws depth.query"].errors == {"3": 1}


def test_a_server_that_is_not_there_fails_the_run_with_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once it is closed
    argv = ["--url", f"http://127.0.0.1:{port}/", "--duration", "1", "--processes", "2"]
    assert loadgen.main([*argv, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "generator 0: http://127.0.0.1:" in err
    assert "ConnectionRefusedError" in err
