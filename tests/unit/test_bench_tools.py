"""``matchd-bench log``, ``e2e`` and ``drain`` end to end with tiny sizes, so the
tools keep working (their figures are docs/benchmarks.md's, not asserted here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tools.bench import main

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_log_benchmark_runs_and_recovers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "log", "--json", "--commands", "3000", "--always-commands", "200",
            "--snapshot-orders", "5000", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["fsync"] for r in report["runs"]] == ["batch", "batch", "none", "always"]
    assert all(r["commands_per_s"] > 0 for r in report["runs"])
    assert report["recovery"]["state_hash_match"]
    assert report["snapshot"]["resting_orders"] == 5000
    assert (tmp_path / "log.json").exists()


def test_e2e_benchmark_runs_against_a_real_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "e2e", "--json", "--commands", "3000", "--open-commands", "500",
            "--rate", "2000", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["runs"]) == {"batched", "single", "open_loop"}
    for run in report["runs"].values():
        assert run["orders_per_s"] > 0
        assert run["latency_us"]["p50"] <= run["latency_us"]["max"]
    assert report["runs"]["batched"]["orders"] == 1000
    assert report["replication"] == "none"
    assert "standby" not in report


def test_e2e_benchmark_with_the_drainer_reports_its_lag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "e2e", "--json", "--commands", "3000", "--open-commands", "500",
            "--rate", "2000", "--history", "--busy-duty", "0.5", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    drain = report["history_drain"]
    assert drain["busy_duty"] == 0.5
    assert drain["catch_up_after_load_s"] is not None  # caught up
    assert drain["samples"] > 0
    assert drain["lag_records"]["max"] >= drain["lag_records"]["p50"] >= 0
    # Every record of the run is in MySQL: deposits, warm-up and the three runs.
    assert drain["drained"]["operation_log"] > 3000
    assert drain["database"].endswith("(dropped)")


def test_e2e_benchmark_with_the_feed_reports_its_delays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "e2e", "--json", "--commands", "3000", "--open-commands", "500",
            "--rate", "2000", "--feed", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert code == 0
    feed = json.loads(capsys.readouterr().out)["feed"]
    assert feed["catch_up_after_load_s"] is not None
    assert feed["deals_seen"] > 10  # every deal of the runs, over ZeroMQ
    assert feed["zmq_delay_ms"]["p99"] >= feed["zmq_delay_ms"]["p50"] > 0
    assert feed["redis_delay_ms"]["p50"] is not None


def test_e2e_busy_duty_needs_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["e2e", "--busy-duty", "0.5", "--out", str(tmp_path)]) == 2
    assert "--busy-duty needs --history" in capsys.readouterr().err


def test_drain_benchmark_drains_into_mariadb(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["drain", "--json", "--commands", "2000", "--batch-records", "500", "--compare"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in report["runs"]] == ["per-record", "bulk"]
    old, new = report["runs"]
    assert old["rows_by_table"] == new["rows_by_table"]  # the same rows either way
    assert new["deals"] > 100
    assert new["deals_per_s"] > 0
    assert new["rows_by_table"]["operation_log"] == new["records"]
    assert report["stream"]["mix_percent"]["ioc"] > 30


def test_feed_benchmark_runs_the_feed_with_and_without_redis(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["feed", "--json", "--commands", "2000", "--redis-db", "15"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["runs"]) == {"market_data", "feed", "feed_redis"}
    assert report["deals"] > 100
    for run in report["runs"].values():
        assert run["deals_per_s"] > 0
    assert report["runs"]["feed"]["messages"] > 0
    assert report["runs"]["feed"]["dropped"] == 0


def test_lag_seconds_is_how_long_the_oldest_missing_record_has_been_durable() -> None:
    from tools.bench_feed_load import lag_seconds

    t = np.array([0.0, 1, 2, 3, 4, 5])
    durable = np.array([0, 0, 10, 20, 20, 30])
    assert lag_seconds(t, durable, np.array([0, 0, 0, 0, 0, 20])).tolist() == [0, 0, 0, 1, 2, 0]
    assert lag_seconds(t, durable, durable).tolist() == [0] * 6  # caught up throughout
