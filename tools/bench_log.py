"""``matchd-bench log``: the durable engine (``persistence.journal``) on the core stream.

What it measures, in one process and one run, on the seeded exchange-core stream of
``tools.bench_stream`` (balances and fees settled, every accepted command logged with
its result and events):

1. **Throughput and acknowledgement latency** for ``fsync = batch``, ``always`` and
   ``none``: commands are submitted in batches (``--batch``, default 256; ``batch``
   also with 4,096, trading latency for throughput); a batch's
   commands are acknowledged together when ``Journal.submit`` returns, so each
   command's acknowledgement latency is its batch's submit-to-durable time. Latency
   percentiles are over commands. ``always`` syncs every record, so it runs a shorter
   prefix of the stream (``--always-commands``).
2. **Recovery**: the ``batch`` run's journal is closed and opened again; the report
   gives the records replayed per second and the whole open time, and checks that the
   recovered state hash equals the one before closing.

The logs live in a temporary directory under ``--dir`` (default: the ``--out``
directory, on the working disk, which is what fsync is measured against; ``/tmp``
may be memory) and are deleted after.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.config import parse_config
from core.schema import COMMAND_DTYPE, CommandKind, Side, TimeInForce
from persistence.journal import Journal, JournalConfig, journal_log_config
from persistence.log import FsyncPolicy
from tools.bench_core import machine_info
from tools.bench_stream import Stream, bench_config, config_toml, deposit_all, generate

WARMUP = 20_000
DEFAULT_BATCH = 256
LARGE_BATCH = 4096  #: also measured with fsync=batch: throughput against latency


def _warm(directory: Path, stream: Stream) -> None:
    """Load every kernel (submit, frame, scan, replay) once, untimed."""
    journal = _open(directory, FsyncPolicy.NONE)
    deposit_all(journal)  # type: ignore[arg-type]  # Journal has EngineAPI's writes
    journal.submit(stream.warmup[:DEFAULT_BATCH])
    journal.close()
    _open(directory, FsyncPolicy.NONE).close()
    shutil.rmtree(directory)


def _open(directory: Path, fsync: FsyncPolicy) -> Journal:
    return Journal.open(
        bench_config(), JournalConfig(data_dir=directory, log=journal_log_config(fsync=fsync))
    )


def _percentiles(latencies_ns: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    order = np.argsort(latencies_ns)
    lat = latencies_ns[order]
    cum = np.cumsum(weights[order])
    out = {}
    for name, q in (("p50", 0.5), ("p99", 0.99), ("p99_9", 0.999)):
        i = int(np.searchsorted(cum, q * cum[-1]))
        out[f"{name}_us"] = round(float(lat[min(i, lat.shape[0] - 1)]) / 1e3, 1)
    out["max_us"] = round(float(lat[-1]) / 1e3, 1)
    return out


def measure(
    stream: Stream, directory: Path, fsync: FsyncPolicy, commands: int, batch: int
) -> tuple[dict[str, Any], Journal]:
    """Run ``commands`` of the stream through a fresh journal; returns the figures
    and the (open) journal."""
    journal = _open(directory, fsync)
    deposit_all(journal)  # type: ignore[arg-type]  # Journal has EngineAPI's writes
    for start in range(0, stream.warmup.shape[0], batch):
        journal.submit(stream.warmup[start : start + batch])
    cmds = stream.commands[:commands]
    calls = (commands + batch - 1) // batch
    lat = np.zeros(calls, dtype=np.int64)
    sizes = np.zeros(calls, dtype=np.int64)
    written0 = journal.writer.stats().bytes_written
    gc.collect()
    t0 = time.perf_counter_ns()
    for k, start in enumerate(range(0, commands, batch)):
        chunk = cmds[start : start + batch]
        a = time.perf_counter_ns()
        journal.submit(chunk)
        lat[k] = time.perf_counter_ns() - a
        sizes[k] = chunk.shape[0]
    ns = time.perf_counter_ns() - t0
    stats = journal.writer.stats()
    figures: dict[str, Any] = {
        "fsync": fsync.value,
        "commands": commands,
        "batch_size": batch,
        "commands_per_s": round(commands * 1e9 / ns, 1),
        "ack_latency": _percentiles(lat, sizes),
        "log_bytes_per_command": round((stats.bytes_written - written0) / commands, 1),
        "log_mb_per_s": round((stats.bytes_written - written0) / ns * 1e3, 1),
        "syncs": stats.syncs,
    }
    return figures, journal


def measure_snapshot(directory: Path, orders: int) -> dict[str, Any]:
    """A book of ``orders`` resting asks (1,000 users, 60,000 prices) through a journal
    (fsync none: this is about the snapshot, not the log); then how long
    ``Journal.snapshot`` holds the caller (the fork), how long the child takes to hash
    and write, the file's size, and a recovery from it."""
    config = parse_config(config_toml(max_orders=orders + 1024, max_levels=65536))
    jconfig = JournalConfig(data_dir=directory, log=journal_log_config(fsync=FsyncPolicy.NONE))
    journal = Journal.open(config, jconfig)
    for user in range(1, 1001):
        journal.balance_update(user, 0, b"deposit", 1, 10**15, 1)
    cmds = np.zeros(orders, dtype=COMMAND_DTYPE)
    i = np.arange(orders)
    cmds["kind"] = int(CommandKind.PUT_LIMIT)
    cmds["user"] = 1 + i % 1000
    cmds["side"] = int(Side.ASK)
    cmds["amount"] = 10_000 + i % 7
    cmds["price"] = 3_000_000 + i % 60_000
    cmds["tif"] = int(TimeInForce.GTC)
    cmds["ts_ns"] = 1_700_000_000_000_000_000 + i
    for start in range(0, orders, 65536):
        journal.submit(cmds[start : start + 65536])
    del cmds
    resting = journal.engine.market_summary(0).ask_count
    t0 = time.perf_counter()
    if not journal.snapshot():  # pragma: no cover -- nothing is held or running
        raise RuntimeError("the snapshot did not start")
    stall_ms = journal.snapshot_stall_ns / 1e6
    info = journal.poll_snapshot(timeout_s=600)
    seconds = time.perf_counter() - t0
    journal.close()
    t1 = time.perf_counter()
    again = Journal.open(config, jconfig)
    recover_s = time.perf_counter() - t1
    again.close()
    return {
        "resting_orders": int(resting),
        "stall_ms": round(stall_ms, 2),
        "write_seconds": round(seconds, 3),
        "file_bytes": info.bytes if info else 0,
        "recovery_seconds": round(recover_s, 3),
    }


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; print the report (JSON with ``--json``)."""
    batch: int = args.batch
    stream = generate(args.commands, args.seed, WARMUP, [], 0)
    base = Path(args.dir) if args.dir else Path(args.out)
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="matchd-bench-log-", dir=base))
    runs = []
    recovery: dict[str, Any] = {}
    try:
        _warm(work / "warm", stream)
        for fsync, commands, size in (
            (FsyncPolicy.BATCH, args.commands, batch),
            (FsyncPolicy.BATCH, args.commands, LARGE_BATCH),
            (FsyncPolicy.NONE, args.commands, batch),
            (FsyncPolicy.ALWAYS, min(args.commands, args.always_commands), batch),
        ):
            directory = work / f"{fsync.value}-{size}"
            figures, journal = measure(stream, directory, fsync, commands, size)
            runs.append(figures)
            if fsync is FsyncPolicy.BATCH and size == batch:
                expected = journal.engine.state_hash()
                records = journal.durable_seq
                journal.close()
                t0 = time.perf_counter()
                again = _open(directory, fsync)
                seconds = time.perf_counter() - t0
                if again.recovery is None:  # pragma: no cover -- open always sets it
                    raise RuntimeError("the journal did not report its recovery")
                replay = again.recovery.replay
                recovery = {
                    "records": records,
                    "replay_records_per_s": round(replay.records_per_s, 1),
                    "open_seconds": round(seconds, 3),
                    "open_records_per_s": round(records / seconds, 1),
                    "state_hash_match": again.engine.state_hash() == expected,
                }
                again.close()
            else:
                journal.close()
            shutil.rmtree(directory)
        snapshot = measure_snapshot(work / "snapshot", args.snapshot_orders)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "benchmark": "log",
        "what": "persistence.journal.Journal.submit: execute, frame, append, commit; the "
        "exchange-core stream of matchd-bench core",
        "runs": runs,
        "recovery": recovery,
        "snapshot": snapshot,
        "seed": args.seed,
        "machine": machine_info(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    text = json.dumps(report, indent=2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "log.json").write_text(text + "\n", encoding="utf-8")
    if args.json:
        print(text)
    else:
        for run in runs:
            lat = run["ack_latency"]
            print(
                f"fsync={run['fsync']:<6} {run['commands_per_s'] / 1e6:.3f} M commands/s  ack "
                f"p50 {lat['p50_us']} us p99 {lat['p99_us']} us p99.9 {lat['p99_9_us']} us  "
                f"({run['log_bytes_per_command']} log bytes/command)"
            )
        print(
            f"recovery: {recovery['replay_records_per_s'] / 1e6:.2f} M records/s replayed, "
            f"open {recovery['open_seconds']} s for {recovery['records']:,} records"
        )
        print(
            f"snapshot of {snapshot['resting_orders']:,} resting orders: caller held "
            f"{snapshot['stall_ms']} ms, written in {snapshot['write_seconds']} s "
            f"({snapshot['file_bytes'] / 2**20:.0f} MiB), recovered in "
            f"{snapshot['recovery_seconds']} s"
        )
    return 0 if recovery.get("state_hash_match") else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(argparse.Namespace()))
