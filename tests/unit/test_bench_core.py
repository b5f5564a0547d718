"""``tools.bench_core`` end to end with tiny sizes: generation (``tools.bench_stream``),
measurement, verification."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from core.schema import CommandKind
from tools import bench_core, bench_stream

KEYS = {
    "commands",
    "commands_per_s",
    "ns_per_command",
    "trades",
    "trade_fraction",
    "mix_percent",
    "avg_resting_orders",
    "avg_levels",
    "not_found",
    "peak_rss_bytes",
    "one_at_a_time",
    "reference",
    "batch_sizes",
    "batched_copy",
    "events_per_command",
    "state_hash",
    "machine",
    "date",
    "seed",
    "quotes",
}


def _args(out: Path) -> argparse.Namespace:
    # The warm-up is long enough to fill the book to its ~1,000 orders, so the small
    # stream after it already has the steady-state mix.
    return argparse.Namespace(
        json=True,
        commands=3000,
        seed=7,
        out=out,
        warmup=3000,
        single_prefix=300,
        reference_prefix=200,
        repeats=1,
        quote_rounds=50,
    )


def test_tiny_run_reports_a_verified_benchmark(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = bench_core.main(_args(tmp_path))

    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report.keys() >= KEYS
    assert json.loads((tmp_path / "core.json").read_text(encoding="utf-8")) == report
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "core.png").stat().st_size > 0
    # main() fails (exit 1) unless every numba run ended in the generator's state hash.
    assert len(report["state_hash"]) == 32
    assert report["commands"] == 3000
    assert report["commands_per_s"] > 0
    assert report["ns_per_command"] > 0
    assert set(report["batch_sizes"]) == {"64", "1024", "4096"}
    assert report["batched"]["api"] == "execute_view"
    assert report["batched_copy"]["api"] == "execute"
    assert report["batched_copy"]["commands_per_s"] > 0
    assert report["one_at_a_time"]["commands"] == 300
    ref = report["reference"]
    if "skipped" not in ref:
        assert ref["commands"] == 200
        assert ref["state_hash_match"]
        assert ref["results_match"]
        assert ref["events_match"]
        assert ref["ratio"] > 0
    mix = report["mix_percent"]
    assert sum(mix.values()) == pytest.approx(100.0, abs=0.1)
    assert 5 <= mix["gtc"] <= 14
    assert 1 <= mix["ioc"] <= 6
    assert 2 <= mix["cancel"] <= 11
    assert 74 <= mix["replace"] <= 90
    assert 0.02 <= report["trade_fraction"] <= 0.12
    assert report["trades"] > 0
    assert 600 <= report["avg_resting_orders"] <= 1400
    assert report["avg_levels"] > 300
    assert report["not_found"] < 0.02 * 3000
    assert set(report["rejections"]) <= {"ORDER_NOT_FOUND"}
    assert report["machine"]["cores"] >= 1
    assert report["seed"] == 7
    quotes = report["quotes"]
    assert quotes["reference_agrees"]
    assert quotes["shift"]["commands"] == quotes["replace"]["commands"] == 50
    assert all(ratio > 0 for ratio in quotes["ratios"].values())
    table = bench_core._table(report)
    assert "M commands/s" in table
    assert report["state_hash"] in table


def test_same_seed_same_stream() -> None:
    one = bench_stream.generate(1000, 3, 500, [400], 0)
    two = bench_stream.generate(1000, 3, 500, [400], 0)

    assert one.commands.tobytes() == two.commands.tobytes()
    assert one.final_hash == two.final_hash
    assert one.checkpoint_hashes == two.checkpoint_hashes
    assert set(one.checkpoint_hashes) == {400}


def test_client_ids_give_every_new_order_its_own() -> None:
    plain = bench_stream.generate(1000, 3, 500, [], 0)
    with_ids = bench_stream.generate(1000, 3, 500, [], 0, client_ids=True)

    new = with_ids.commands["kind"] == CommandKind.PUT_LIMIT
    ids = with_ids.commands["order_id"][new]
    assert (ids > 0).all()
    assert len(np.unique(ids)) == len(ids)  # no repeats: each is placed, none refused
    # The same orders otherwise: the same book, the same trades.
    for name in ("ts_ns", "user", "price", "amount", "kind", "side", "tif"):
        assert np.array_equal(with_ids.commands[name], plain.commands[name]), name
    assert with_ids.final_hash != plain.final_hash  # the table is part of the state
