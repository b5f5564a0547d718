"""``matchd-bench ring`` end to end with tiny sizes, so the tool keeps working (its
figures are docs/daemon.md's, not asserted here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.bench import main

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_ring_benchmark_runs_both_drivers_and_the_wakeup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "ring", "--json", "--records", "50000", "--calls", "1000", "--capacity", "256",
            "--record-bytes", "64", "--batches", "16", "--wake-samples", "5",
            "--out", str(tmp_path),
        ]
    )  # fmt: skip

    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert [(r["driver"], r["batch"], r["records"]) for r in report["runs"]] == [
        ("numba", 16, 50_000),
        ("python", 16, 16_000),
    ]
    assert all(r["records_per_s"] > 0 for r in report["runs"])
    assert report["wakeup"]["samples"] == 5
    assert report["wakeup"]["p50_us"] <= report["wakeup"]["max_us"]
    assert (tmp_path / "ring.json").exists()


def test_ring_benchmark_refuses_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["ring", "--drivers", "java"])
    assert "unknown driver" in capsys.readouterr().err
