"""``matchd-bench core``: the in-process engine on exchange-core's single-market mix.

What is measured is the whole of ``Engine.execute`` -- matching *and* settlement of
balances and fees, with every event written -- not the matcher alone, on the stream of
``tools.bench_stream`` (one market, 1,000 funded users, about 9% GTC, 3% IOC, 6%
cancels and 82% replaces, about 1,000 resting orders, non-zero maker and taker fees).

How:

1. **Generation** (not timed): ``tools.bench_stream.generate`` decides the stream and
   runs it once through a generator engine, after a warm-up (20,000 commands) that
   reaches the steady state; the warm-up is executed by every engine but never timed.
2. **Measurement**, each on a fresh engine fed the identical deposits, warm-up and
   stream: batched ``execute_view()`` (4,096 commands per call, repeated; also 1,024
   and 64; results and events stay in the engine's buffers, as the daemon consumes
   them), the same through ``execute()`` (both copied out on every call), one command
   per call over a prefix, and the reference engine on a shorter prefix. numba is run
   once untimed first, so no compilation or cache load is timed.
   Every numba run must end in the generator's state hash with no invariant broken,
   or the benchmark fails; the reference's hash, results and events are compared on
   its prefix and the outcome is reported.

The report's ``quotes`` section (``tools.bench_quote``) measures what a 20-level
two-sided mass quote costs against one REPLACE.

``main(args)`` takes an ``argparse.Namespace`` with ``json``, ``commands``, ``seed`` and
``out`` (``tools.bench`` builds it); smaller runs (tests) may also set ``warmup``,
``single_prefix``, ``reference_prefix``, ``repeats`` and ``quote_rounds``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.api import EngineAPI
from core.engine import Engine
from tools.bench_quote import measure_quotes
from tools.bench_stream import (
    MAKER_RATE,
    TAKER_RATE,
    BenchError,
    Stream,
    bench_config,
    deposit_all,
    generate,
    stream_summary,
)

DEFAULT_COMMANDS = 3_000_000
DEFAULT_SEED = 1
DEFAULT_WARMUP = 20_000
DEFAULT_SINGLE_PREFIX = 200_000
DEFAULT_REFERENCE_PREFIX = 20_000
DEFAULT_REPEATS = 3
DEFAULT_QUOTE_ROUNDS = 2_000

#: Commands per ``execute()`` call of the headline figure, and the other sizes tried.
MAIN_BATCH = 4096
OTHER_BATCHES = (64, 1024)

#: Result fields compared between engines (``event_start`` depends on the batching).
_RESULT_FIELDS = ("seq", "order_id", "value", "code", "event_count")


# --------------------------------------------------------------------------- measurement


def _run_batches(engine: EngineAPI, cmds: np.ndarray, batch: int) -> None:
    """Execute untimed (deposits and warm-up of a measured engine)."""
    for start in range(0, cmds.shape[0], batch):
        engine.execute(cmds[start : start + batch])


def _prepared(make: Callable[[], EngineAPI], stream: Stream) -> EngineAPI:
    engine = make()
    deposit_all(engine)
    _run_batches(engine, stream.warmup, MAIN_BATCH)
    return engine


def _numba_engine() -> EngineAPI:
    return Engine(bench_config())


def _timed_batches(
    execute: Callable[[np.ndarray], object], cmds: np.ndarray, batch: int
) -> tuple[int, np.ndarray]:
    """Call ``execute`` on ``cmds`` in batches; returns (total ns, ns of each call)."""
    n = cmds.shape[0]
    marks = [0] * ((n + batch - 1) // batch + 1)
    gc.collect()
    marks[0] = time.perf_counter_ns()
    for j, start in enumerate(range(0, n, batch), 1):
        execute(cmds[start : start + batch])
        marks[j] = time.perf_counter_ns()
    return marks[-1] - marks[0], np.diff(np.array(marks, dtype=np.int64))


def _timed_one_at_a_time(engine: Any, cmds: np.ndarray) -> int:
    execute = engine.execute_view
    gc.collect()
    t0 = time.perf_counter_ns()
    for i in range(cmds.shape[0]):
        execute(cmds[i : i + 1])
    return time.perf_counter_ns() - t0


def _verify(engine: EngineAPI, expected_hash: str, what: str) -> None:
    got = engine.state_hash()
    if got != expected_hash:
        raise BenchError(f"{what}: state hash {got} differs from the generator's {expected_hash}")
    problems = engine.check_invariants()
    if problems:
        raise BenchError(f"{what}: invariants broken: {problems[:5]}")


def _rate(commands: int, ns: int) -> dict[str, float | int]:
    return {
        "commands": commands,
        "commands_per_s": round(commands * 1e9 / ns, 1) if ns else 0.0,
        "ns_per_command": round(ns / commands, 1) if commands else 0.0,
    }


def warm_jit(stream: Stream) -> None:
    """Run every kernel path once on a throwaway engine, so no compilation is timed."""
    engine = _prepared(_numba_engine, stream)
    head = stream.commands[:MAIN_BATCH]
    _run_batches(engine, head[: MAIN_BATCH // 2], MAIN_BATCH)
    for i in range(MAIN_BATCH // 2, min(head.shape[0], MAIN_BATCH // 2 + 64)):
        engine.execute(head[i : i + 1])


def measure_batched(
    stream: Stream, batch: int, repeats: int, api: str = "execute_view"
) -> dict[str, Any]:
    """``repeats`` fresh engines over the whole stream in calls of ``batch`` commands.

    ``api`` is ``execute_view`` (results and events left in the engine's buffers: what
    a pipeline stage that consumes them in place, such as the daemon's, calls) or
    ``execute`` (both copied out into new arrays on every call).
    """
    totals: list[int] = []
    per_call: list[np.ndarray] = []
    n = stream.commands.shape[0]
    for r in range(repeats):
        engine = _prepared(_numba_engine, stream)
        total, calls = _timed_batches(getattr(engine, api), stream.commands, batch)
        _verify(engine, stream.final_hash, f"batched {api} ({batch}/call, run {r + 1})")
        totals.append(total)
        per_call.append(calls)
        del engine
    median = sorted(range(repeats), key=lambda i: totals[i])[repeats // 2]
    out: dict[str, Any] = {
        **_rate(n, totals[median]),
        "api": api,
        "batch_size": batch,
        "runs": [_rate(n, t)["commands_per_s"] for t in totals],
    }
    calls = per_call[median]
    full = calls[: n // batch]  # whole batches only
    if full.size:
        per_cmd = full / batch
        out["call_ns_per_command"] = {
            "p50": round(float(np.percentile(per_cmd, 50)), 1),
            "p99": round(float(np.percentile(per_cmd, 99)), 1),
            "max": round(float(per_cmd.max()), 1),
        }
    out["_calls"] = calls
    return out


def measure_one_at_a_time(stream: Stream, prefix: int) -> dict[str, Any]:
    """One ``execute_view()`` call per command over the first ``prefix`` commands."""
    engine = _prepared(_numba_engine, stream)
    ns = _timed_one_at_a_time(engine, stream.commands[:prefix])
    _verify(engine, stream.checkpoint_hashes[prefix], f"one at a time (first {prefix})")
    return {**_rate(prefix, ns), "of": "the first commands of the stream"}


def measure_reference(stream: Stream, prefix: int, numba_cps: float) -> dict[str, Any]:
    """The reference engine over the first ``prefix`` commands (after the same warm-up)."""
    try:
        from core.reference import ReferenceEngine
    except Exception as exc:  # it may be unfinished; the numba figures stand alone
        return {"skipped": f"core.reference does not import: {type(exc).__name__}: {exc}"}
    config = bench_config()
    try:
        engine = _prepared(lambda: ReferenceEngine(config), stream)
        cmds = stream.commands[:prefix]
        results: list[np.ndarray] = []
        events: list[np.ndarray] = []
        gc.collect()
        t0 = time.perf_counter_ns()
        for start in range(0, prefix, MAIN_BATCH):
            res, ev = engine.execute(cmds[start : start + MAIN_BATCH])
            results.append(res)
            events.append(ev)
        ns = time.perf_counter_ns() - t0
        got_hash = engine.state_hash()
        problems = engine.check_invariants()
    except Exception as exc:
        return {"skipped": f"the reference engine failed: {type(exc).__name__}: {exc}"}
    out: dict[str, Any] = _rate(prefix, ns)
    ref_cps = float(out["commands_per_s"])
    out["ratio"] = round(numba_cps / ref_cps, 1) if ref_cps else None
    out["ratio_is"] = "numba batched commands/s / reference commands/s"
    out["state_hash_match"] = got_hash == stream.checkpoint_hashes[prefix]
    ref_results = np.concatenate(results)
    out["results_match"] = all(
        np.array_equal(ref_results[f], stream.prefix_results[f]) for f in _RESULT_FIELDS
    )
    ref_events = np.concatenate(events)
    out["events_match"] = ref_events.tobytes() == stream.prefix_events.tobytes()
    out["invariants"] = problems
    return out


# --------------------------------------------------------------------------- report


def machine_info() -> dict[str, Any]:
    """CPU model, cores and library versions."""
    import numba

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "platform": platform.platform(),
    }


def _plot(report: dict[str, Any], calls: np.ndarray, batch: int, path: Path) -> str | None:
    """Write the PNG; returns a note if it could not be made."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: core.png skipped"
    labels: list[str] = []
    values: list[float] = []
    for size, cps in sorted(report["batch_sizes"].items(), key=lambda kv: int(kv[0])):
        labels.append(f"batch {size}")
        values.append(float(cps))
    copying = report["batched_copy"]
    labels.append(f"copy {copying['batch_size']}")
    values.append(float(copying["commands_per_s"]))
    labels.append("1 per call")
    values.append(float(report["one_at_a_time"]["commands_per_s"]))
    ref = report["reference"]
    if "commands_per_s" in ref:
        labels.append("reference")
        values.append(float(ref["commands_per_s"]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax1.bar(labels, values, color="tab:blue")
    ax1.set_yscale("log")
    ax1.set_ylabel("commands / s (log)")
    ax1.set_title(f"throughput by call pattern, {report['commands']:,} commands")
    ax1.tick_params(axis="x", labelsize=8, labelrotation=20)
    for i, v in enumerate(values):
        ax1.text(
            i,
            v,
            f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    whole = calls[: report["commands"] // batch]
    if whole.size:
        ax2.plot(np.arange(whole.size) * batch / 1e6, whole / batch, lw=0.5)
        ax2.set_xlabel("position in stream (M commands)")
        ax2.set_ylabel(f"ns per command (calls of {batch})")
        ax2.set_title("per-call cost over the stream (median run)")
    fig.suptitle(f"matchd core bench, seed {report['seed']}, {report['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def run_benchmark(
    n_commands: int,
    seed: int,
    warmup: int = DEFAULT_WARMUP,
    single_prefix: int = DEFAULT_SINGLE_PREFIX,
    reference_prefix: int = DEFAULT_REFERENCE_PREFIX,
    repeats: int = DEFAULT_REPEATS,
    client_ids: bool = False,
    quote_rounds: int = DEFAULT_QUOTE_ROUNDS,
) -> tuple[dict[str, Any], np.ndarray]:
    """Generate, measure and verify; returns the report and the main run's call times.
    ``client_ids``: every new order carries a client order id (docs/engine.md);
    ``quote_rounds``: requotes of the mass-quote section (``tools.bench_quote``)."""
    single_prefix = min(single_prefix, n_commands)
    reference_prefix = min(reference_prefix, n_commands)
    stream = generate(
        n_commands,
        seed,
        warmup,
        [single_prefix, reference_prefix],
        reference_prefix,
        client_ids=client_ids,
    )
    warm_jit(stream)
    # What the set-up left behind is not garbage; a long-running process freezes its
    # start-up objects the same way, so the collector does not walk them over and over.
    gc.collect()
    gc.freeze()
    main_run = measure_batched(stream, MAIN_BATCH, repeats)
    calls: np.ndarray = main_run.pop("_calls")
    batch_sizes = {str(MAIN_BATCH): main_run["commands_per_s"]}
    for size in OTHER_BATCHES:
        other = measure_batched(stream, size, 1)
        batch_sizes[str(size)] = other["commands_per_s"]
    copying = measure_batched(stream, MAIN_BATCH, repeats, api="execute")
    copying.pop("_calls")
    single = measure_one_at_a_time(stream, single_prefix)
    reference = measure_reference(stream, reference_prefix, float(main_run["commands_per_s"]))
    quotes = measure_quotes(quote_rounds, seed, repeats)
    notes: list[str] = []
    if not quotes["reference_agrees"]:
        notes.append("reference engine disagrees with numba on the mass quotes")
    if "skipped" in reference:
        notes.append(f"reference skipped: {reference['skipped']}")
    else:
        notes.extend(
            f"reference engine disagrees with numba on its prefix ({key})"
            for key in ("state_hash_match", "results_match", "events_match")
            if not reference[key]
        )
    report: dict[str, Any] = {
        "benchmark": "core",
        "what": "Engine.execute_view in batches, balances and fees settled, exchange-core "
        "single-market mix",
        "commands": n_commands,
        "warmup_commands": warmup,
        "client_ids": client_ids,
        "commands_per_s": main_run["commands_per_s"],
        "ns_per_command": main_run["ns_per_command"],
        "batched": main_run,
        **stream_summary(stream),
        "batched_copy": copying,
        "one_at_a_time": single,
        "reference": reference,
        "batch_sizes": batch_sizes,
        "quotes": quotes,
        "fees": {"maker_rate": MAKER_RATE, "taker_rate": TAKER_RATE, "fee_prec": 4},
        "state_hash": stream.final_hash,
        "verified": "every numba run ended in the generator's state hash, invariants clean",
        "generation_s": round(stream.generation_s, 2),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "machine": machine_info(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "gc": "gc.freeze() after set-up, before the timed runs",
        "notes": notes,
    }
    return report, calls


def _table(report: dict[str, Any]) -> str:
    mix = report["mix_percent"]
    ref = report["reference"]
    one = report["one_at_a_time"]
    lines = [
        f"matchd core bench  seed {report['seed']}  {report['date']}",
        f"  stream      {report['commands']:,} commands after {report['warmup_commands']:,} "
        f"warm-up; mix GTC {mix['gtc']}% IOC {mix['ioc']}% cancel {mix['cancel']}% "
        f"replace {mix['replace']}%",
        f"  book        {report['avg_resting_orders']:.0f} resting orders on "
        f"{report['avg_levels']:.0f} levels (avg); trades {report['trades']:,}, "
        f"{100 * report['trade_fraction']:.2f}% of commands trade; "
        f"{report['events_per_command']} events/command; not found {report['not_found']}",
        f"  batched     {report['commands_per_s'] / 1e6:.3f} M commands/s  "
        f"{report['ns_per_command']} ns/command  (execute_view, {MAIN_BATCH} per call, "
        f"median of {len(report['batched']['runs'])})",
    ]
    for size, cps in sorted(report["batch_sizes"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"    batch {size:>5}  {cps / 1e6:.3f} M commands/s")
    copying = report["batched_copy"]
    lines.append(
        f"  copying     {copying['commands_per_s'] / 1e6:.3f} M commands/s  "
        f"{copying['ns_per_command']} ns/command  (execute, {copying['batch_size']} per "
        "call, results and events copied out)"
    )
    lines.append(
        f"  1 per call  {one['commands_per_s'] / 1e6:.3f} M commands/s  "
        f"{one['ns_per_command']} ns/command  (first {one['commands']:,})"
    )
    if "skipped" in ref:
        lines.append(f"  reference   skipped: {ref['skipped']}")
    else:
        lines.append(
            f"  reference   {ref['commands_per_s'] / 1e3:.1f} k commands/s (first "
            f"{ref['commands']:,}); numba batched is {ref['ratio']}x; hash match "
            f"{ref['state_hash_match']}, events match {ref['events_match']}"
        )
    q = report["quotes"]
    for name in ("shift", "resize", "replace"):
        run = q[name]
        lines.append(
            f"  quote {name:<7} {run['ns_per_command_batch_1']:>7} ns/command one per call, "
            f"{run['ns_per_command_batch_64']:>7} in batches of 64"
        )
    lines.append(
        f"  quote/replace  shift {q['ratios']['shift_per_replace_batch_1']}x, resize "
        f"{q['ratios']['resize_per_replace_batch_1']}x (one per call); reference agrees "
        f"{q['reference_agrees']}"
    )
    lines.append(f"  peak RSS    {report['peak_rss_bytes'] / 2**20:.0f} MiB")
    lines.append(f"  state hash  {report['state_hash']}")
    lines.extend(f"  note: {note}" for note in report["notes"])
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark as ``args`` says (see the module docstring); returns the exit code."""
    try:
        report, calls = run_benchmark(
            int(args.commands),
            int(args.seed),
            warmup=int(getattr(args, "warmup", DEFAULT_WARMUP)),
            single_prefix=int(getattr(args, "single_prefix", DEFAULT_SINGLE_PREFIX)),
            reference_prefix=int(getattr(args, "reference_prefix", DEFAULT_REFERENCE_PREFIX)),
            repeats=int(getattr(args, "repeats", DEFAULT_REPEATS)),
            client_ids=bool(getattr(args, "client_ids", False)),
            quote_rounds=int(getattr(args, "quote_rounds", DEFAULT_QUOTE_ROUNDS)),
        )
    except BenchError as exc:
        print(f"matchd-bench core: {exc}", file=sys.stderr)
        return 1
    out = getattr(args, "out", None)
    if out is not None:
        directory = Path(out)
        directory.mkdir(parents=True, exist_ok=True)
        note = _plot(report, calls, MAIN_BATCH, directory / "core.png")
        if note:
            report["notes"].append(note)
        (directory / "core.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_table(report))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench_core", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--commands", type=int, default=DEFAULT_COMMANDS, metavar="N")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="S")
    parser.add_argument("--out", default=None, metavar="DIR", help="write core.json, core.png")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, metavar="N")
    parser.add_argument("--single-prefix", type=int, default=DEFAULT_SINGLE_PREFIX, metavar="N")
    parser.add_argument(
        "--reference-prefix", type=int, default=DEFAULT_REFERENCE_PREFIX, metavar="N"
    )
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, metavar="N")
    parser.add_argument("--client-ids", action="store_true")
    parser.add_argument("--quote-rounds", type=int, default=DEFAULT_QUOTE_ROUNDS, metavar="N")
    return parser


if __name__ == "__main__":
    raise SystemExit(main(_parser().parse_args()))
