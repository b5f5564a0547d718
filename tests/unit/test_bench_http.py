"""``matchd-bench http`` in its quickest mode against the gateway test daemon, so the
tool keeps working (its figures are not asserted, only the report's shape)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.gateway_daemon import running_daemon
from tools.bench import main

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_http_benchmark_reports_every_case(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_daemon(tmp_path, history=False, ws=None) as daemon:
        code = main(
            [
                "http", "--json", "--quick", "--duration", "0.3", "--batch", "10",
                "--url", daemon.http_url, "--daemon-pid", str(daemon.process.pid),
                "--out", str(tmp_path / "out"),
            ]
        )  # fmt: skip
        assert code == 0
        # What the benchmark left: every deposit, and no resting order of its users.
        summary = daemon.ok("market.summary", "BTC_USDT")[0]
    report = json.loads(capsys.readouterr().out)
    assert report["benchmark"] == "http"
    assert report["market"] == "BTC_USDT"
    assert report["deposits"] == 2 * report["users"]
    cases = report["cases"]
    assert [(c["connections"], c["batch"]) for c in cases] == [(1, 1), (4, 1), (1, 10), (4, 10)]
    for case in cases:
        assert case["orders_per_s"] > 0
        assert case["accepted"] <= case["orders"] <= case["commands"]
        assert case["errors"] == {}
        assert case["http_errors"] == {}
        latency = case["latency_us"]
        assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
        assert case["duration_s"] > 0
        cpu = case["cpu_seconds"]
        assert cpu["client"] >= 0
        assert cpu["daemon"] is not None
        assert any(role.startswith("http-") for role in cpu["daemon_by_process"])
        assert case["busy"]["client"] >= 0
        assert 0 <= case["machine_busy"] <= 1
        assert isinstance(case["bound"], str)
    assert (summary["bid_count"], summary["ask_count"]) == (0, 0)
    assert json.loads((tmp_path / "out" / "http.json").read_text()) == report
