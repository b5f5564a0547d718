"""``matchd-bench e2e --replication`` end to end with tiny sizes: the standby follows,
the load runs, and the standby ends where the primary's log does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.bench import main

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_e2e_benchmark_with_a_sync_standby_reports_its_catch_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "e2e", "--json", "--commands", "3000", "--open-commands", "500",
            "--rate", "2000", "--replication", "sync", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["replication"] == "sync"
    assert set(report["runs"]) == {"batched", "single", "open_loop"}
    standby = report["standby"]
    assert standby["mode"] == "sync"
    assert standby["seq_matched"]
    # Deposits, warm-up and the three runs: every record reached the standby.
    assert standby["standby_seq"] == standby["primary_durable_seq"] > 3000
    assert standby["catch_up_after_load_s"] is not None
    assert standby["standby_cpu_seconds"] >= 0
