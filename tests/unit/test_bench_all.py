"""``matchd-bench all``: headline figures from recorded reports, skips, failures and
time limits that do not stop the run, and one real ``all --quick --only core``."""

from __future__ import annotations

import json
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tools import bench_all
from tools.bench import build_parser, main
from tools.bench_all import Outcome, headline
from tools.bench_all_figures import markdown, value_text

# Real reports of `matchd-bench all --quick` (2026-12-05, the 2-core VM), trimmed to
# what the headline figures read and a little around it; EXPECTED is what they give.
SAMPLES: dict[str, dict[str, Any]] = {
    "core": {
        "benchmark": "core",
        "commands": 1000000,
        "commands_per_s": 3267723.6,
        "ns_per_command": 306.0,
        "batched": {
            "api": "execute_view",
            "batch_size": 4096,
            "commands_per_s": 3267723.6,
            "call_ns_per_command": {"p50": 303.1, "p99": 408.8, "max": 444.2},
        },
        "one_at_a_time": {"commands": 200000, "commands_per_s": 326134.2},
        "reference": {"commands": 20000, "commands_per_s": 10348.5, "ratio": 315.8},
    },
    "log": {
        "benchmark": "log",
        "runs": [
            {
                "fsync": "batch",
                "batch_size": 256,
                "commands_per_s": 374159.7,
                "ack_latency": {"p50_us": 641.4, "p99_us": 1427.7},
            },
            {
                "fsync": "batch",
                "batch_size": 4096,
                "commands_per_s": 740748.5,
                "ack_latency": {"p50_us": 5463.1, "p99_us": 6775.7},
            },
            {
                "fsync": "none",
                "batch_size": 256,
                "commands_per_s": 606044.5,
                "ack_latency": {"p50_us": 345.3, "p99_us": 625.7},
            },
            {
                "fsync": "always",
                "batch_size": 256,
                "commands_per_s": 5902.5,
                "ack_latency": {"p50_us": 42984.9, "p99_us": 58428.1},
            },
        ],
        "recovery": {"records": 221636, "replay_records_per_s": 629662.2},
        "snapshot": {"resting_orders": 200000, "stall_ms": 7.29},
    },
    "ring": {
        "benchmark": "ring",
        "runs": [
            {"driver": "numba", "record_bytes": 64, "batch": 1, "records_per_s": 14718876},
            {"driver": "numba", "record_bytes": 64, "batch": 16, "records_per_s": 86572355},
            {"driver": "numba", "record_bytes": 64, "batch": 256, "records_per_s": 33150742},
            {"driver": "numba", "record_bytes": 184, "batch": 1, "records_per_s": 3463047},
            {"driver": "python", "record_bytes": 64, "batch": 1, "records_per_s": 576649},
            {"driver": "python", "record_bytes": 64, "batch": 16, "records_per_s": 4935913},
            {"driver": "python", "record_bytes": 64, "batch": 256, "records_per_s": 24112287},
        ],
        "wakeup": {"samples": 100, "p50_us": 58.5, "p99_us": 104.6},
    },
    "e2e": {
        "benchmark": "e2e",
        "runs": {
            "batched": {
                "orders": 100000,
                "orders_per_s": 381456.1,
                "latency_us": {"p50": 20031, "p99": 26687, "p99_9": 26687, "max": 26687},
            },
            "single": {
                "orders": 100000,
                "orders_per_s": 70375.3,
                "latency_us": {"p50": 3503, "p99": 6579, "p99_9": 7275, "max": 7803},
            },
            "open_loop": {
                "orders": 100000,
                "orders_per_s": 49956.7,
                "latency_us": {"p50": 1430, "p99": 2741, "p99_9": 4419, "max": 5439},
                "target_rate": 50000.0,
            },
        },
    },
    "drain": {
        "benchmark": "drain",
        "commands": 100000,
        "runs": [
            {
                "path": "bulk",
                "records": 121881,
                "rows": 596990,
                "deals": 40038,
                "records_per_s": 19014.6,
                "rows_per_s": 93136.3,
                "deals_per_s": 6246.3,
            }
        ],
    },
    "feed": {
        "benchmark": "feed",
        "records": 121881,
        "deals": 40038,
        "runs": {
            "market_data": {"records_per_s": 3885255.6, "deals_per_s": 1276309.4},
            "feed": {"records_per_s": 508319.4, "deals_per_s": 166983.3},
            "feed_redis": {"records_per_s": 478677.7, "deals_per_s": 157246.0},
        },
    },
    "http": {
        "benchmark": "http",
        "cases": [
            {
                "connections": 1,
                "batch": 1,
                "orders_per_s": 687.3,
                "commands_per_s": 915.1,
                "errors": {},
                "http_errors": {},
                "latency_us": {"p50": 994, "p99": 1175},
            },
            {
                "connections": 4,
                "batch": 1,
                "orders_per_s": 1553.3,
                "commands_per_s": 2063.7,
                "errors": {},
                "http_errors": {},
                "latency_us": {"p50": 1767, "p99": 3017},
            },
            {
                "connections": 1,
                "batch": 100,
                "orders_per_s": 20035.5,
                "commands_per_s": 26647.7,
                "errors": {},
                "http_errors": {},
                "latency_us": {"p50": 3551, "p99": 5847},
            },
            {
                "connections": 4,
                "batch": 100,
                "orders_per_s": 25367.4,
                "commands_per_s": 33560.0,
                "errors": {},
                "http_errors": {},
                "latency_us": {"p50": 10311, "p99": 49471},
            },
        ],
    },
}

EXPECTED: dict[str, dict[str, Any]] = {
    "core": {
        "x4096_commands_per_s": 3267723.6,
        "per_command_ns": 306.0,
        "per_command_p50_ns": 303.1,
        "per_command_p99_ns": 408.8,
        "one_per_call_commands_per_s": 326134.2,
        "over_reference_x": 315.8,
    },
    "log": {
        "fsync_batch_x256_commands_per_s": 374159.7,
        "fsync_batch_x4096_commands_per_s": 740748.5,
        "fsync_none_x256_commands_per_s": 606044.5,
        "fsync_always_x256_commands_per_s": 5902.5,
        "fsync_batch_x256_ack_p50_us": 641.4,
        "fsync_batch_x256_ack_p99_us": 1427.7,
        "recovery_replay_records_per_s": 629662.2,
        "snapshot_stall_ms": 7.29,
    },
    "ring": {
        "numba_64B_x1_records_per_s": 14718876,
        "numba_64B_x256_records_per_s": 33150742,
        "python_64B_x1_records_per_s": 576649,
        "python_64B_x256_records_per_s": 24112287,
        "wakeup_p50_us": 58.5,
        "wakeup_p99_us": 104.6,
    },
    "e2e": {
        "batched_orders_per_s": 381456.1,
        "single_orders_per_s": 70375.3,
        "open_loop_orders_per_s": 49956.7,
        "single_p99_us": 6579,
        "open_loop_asked_per_s": 50000.0,
        "open_loop_p50_us": 1430,
        "open_loop_p99_us": 2741,
        "open_loop_p99_9_us": 4419,
    },
    "drain": {
        "deals_per_s": 6246.3,
        "rows_per_s": 93136.3,
        "records_per_s": 19014.6,
        "deals": 40038,
    },
    "feed": {
        "market_data_deals_per_s": 1276309.4,
        "feed_deals_per_s": 166983.3,
        "feed_redis_deals_per_s": 157246.0,
        "feed_records_per_s": 508319.4,
        "deals": 40038,
    },
    "http": {
        "single_orders_per_s": 1553.3,
        "single_commands_per_s": 2063.7,
        "single_connections": 4,
        "single_p50_us": 1767,
        "single_p99_us": 3017,
        "x100_orders_per_s": 25367.4,
        "x100_commands_per_s": 33560.0,
        "x100_connections": 4,
        "x100_p50_us": 10311,
        "x100_p99_us": 49471,
        "errors": 0,
    },
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("name", bench_all.BENCHMARKS)
def test_headline_figures_of_a_recorded_report(name: str) -> None:
    figures, problem = headline(name, SAMPLES[name])
    assert problem is None
    assert figures == EXPECTED[name]


def test_a_report_without_the_expected_keys_gives_a_note_not_a_crash() -> None:
    figures, problem = headline("e2e", {"benchmark": "e2e", "runs": {}})
    assert figures == {}
    assert problem is not None
    assert "'single'" in problem


def test_values_are_shown_with_their_units() -> None:
    assert value_text("x4096_commands_per_s", 3_705_417.7) == "3.71 M"
    assert value_text("single_p99_us", 6167) == "6.17 ms"
    assert value_text("wakeup_p50_us", 44.9) == "44.9 µs"
    assert value_text("per_command_ns", 269.9) == "270 ns"
    assert value_text("over_reference_x", 327.2) == "327x"
    assert value_text("deals", 40038) == "40,038"
    assert value_text("snapshot_stall_ms", None) == "-"


def _args(*argv: str) -> Any:
    return build_parser().parse_args(["all", *argv])


def test_every_benchmark_runs_in_order_after_a_failure_and_feed_goes_without_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: dict[str, list[str]] = {}

    def fake_run(name: str, argv: list[str], timeout_s: float, cwd: Path = tmp_path) -> Outcome:
        ran[name] = argv
        assert timeout_s == bench_all.QUICK_TIMEOUT_S
        if name == "core":
            return Outcome(name, "failed", 1.0, " ".join(argv), 1, "exited with code 1", "oops")
        return Outcome(name, "ok", 2.0, " ".join(argv), report=SAMPLES[name])

    monkeypatch.setattr(bench_all, "run_process", fake_run)
    redis_down = {bench_all.REDIS: "nothing answers"}
    outcomes = bench_all.run_all(
        _args("--quick", "--skip", "http"), tmp_path, probe=lambda h, p: redis_down.get((h, p))
    )
    assert [o.name for o in outcomes] == ["core", "log", "ring", "e2e", "drain", "feed"]
    assert [o.status for o in outcomes] == ["failed"] + ["ok"] * 5
    assert ran["core"][1:4] == ["-m", "tools.bench", "core"]
    assert ran["core"][4:] == ["--json", *bench_all.QUICK["core"], "--out", str(tmp_path)]
    assert ran["drain"][-2:] == ["--mysql", "127.0.0.1:3306"]
    assert "--out" not in ran["drain"]
    assert ran["feed"][-1] == "--no-redis"
    assert "feed_redis" in outcomes[-1].notes[0]
    assert not (tmp_path / "core.json").exists()  # no report from the failed one
    assert json.loads((tmp_path / "log.json").read_text()) == SAMPLES["log"]


@pytest.mark.integration
def test_drain_is_skipped_without_mariadb_and_a_timeout_does_not_stop_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nowhere = f"127.0.0.1:{_free_port()}"
    argv = ["--json", "--only", "core,log,drain", "--timeout-s", "0.3", "--mysql", nowhere]
    code = main(["all", *argv, "--out", str(tmp_path)])
    assert code == 1  # core and log timed out
    summary = json.loads(capsys.readouterr().out)
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    runs = summary["benchmarks"]
    assert [runs[n]["status"] for n in ("core", "log", "drain")] == ["timeout"] * 2 + ["skipped"]
    assert runs["core"]["exit_code"] == -signal.SIGTERM
    assert "time limit of 0.3 s" in runs["core"]["reason"]
    assert runs["drain"]["reason"].startswith(f"no MariaDB: nothing answers at {nowhere}")
    assert summary["failed"] == ["core", "log"]
    assert summary["git"]["commit"]
    assert summary["machine"]["cores"] >= 1


@pytest.mark.integration
def test_a_failed_benchmark_gives_its_exit_code_and_the_end_of_its_stderr() -> None:
    script = (
        "import sys; print('{}'); print('line 1\\nboom: it broke', file=sys.stderr); sys.exit(3)"
    )
    outcome = bench_all.run_process("ring", [sys.executable, "-c", script], timeout_s=30)
    assert (outcome.status, outcome.exit_code) == ("failed", 3)
    assert outcome.reason == "exited with code 3"
    assert outcome.stderr_tail == "line 1\nboom: it broke"
    no_json = bench_all.run_process("ring", [sys.executable, "-c", "print('hello')"], 30)
    assert (no_json.status, no_json.exit_code) == ("failed", 0)
    assert no_json.reason is not None
    assert no_json.reason.startswith("its output is not a JSON report")


@pytest.mark.integration
def test_a_timed_out_benchmark_is_stopped_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    outcome = bench_all.run_process("e2e", [sys.executable, "-c", script], timeout_s=1.0)
    assert outcome.status == "timeout"
    assert outcome.seconds < 10
    child = Path(f"/proc/{pid_file.read_text()}/stat")
    deadline = time.monotonic() + 5
    while child.exists() and child.read_text().split()[2] != "Z":  # gone, or a zombie
        assert time.monotonic() < deadline, "the benchmark's child is still running"
        time.sleep(0.05)


def test_markdown_from_an_earlier_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outcomes = [Outcome(n, "ok", 3.0, "x", report=SAMPLES[n]) for n in ("core", "drain")]
    outcomes.append(Outcome("http", "timeout", 600.0, "x", -15, "stopped at the time limit"))
    report = bench_all.summary(_args(), tmp_path, outcomes, 606.0)
    (tmp_path / "summary.json").write_text(json.dumps(report))
    assert main(["all", "--markdown", "--from", str(tmp_path)]) == 1  # http timed out
    shown = capsys.readouterr().out
    assert shown == markdown(report) + "\n"
    assert "| benchmark | status | seconds | figure | value |" in shown
    assert "| core | ok | 3.0 | x4096 commands/s |" in shown
    assert "| http | timeout | 600.0 | stopped at the time limit |  |" in shown


@pytest.mark.slow
@pytest.mark.integration
def test_all_quick_only_core_writes_its_report_and_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["all", "--json", "--quick", "--only", "core", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert json.loads(capsys.readouterr().out) == summary
    core = json.loads((tmp_path / "core.json").read_text())
    assert core["benchmark"] == "core"
    assert list(summary["benchmarks"]) == ["core"]
    entry = summary["benchmarks"]["core"]
    assert entry["status"] == "ok"
    assert entry["headline"]["x4096_commands_per_s"] == core["commands_per_s"] > 0
    assert summary["failed"] == []
