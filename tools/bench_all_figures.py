"""The headline figures of each benchmark's JSON report, for ``matchd-bench all``.

``HEADLINES[name](report)`` picks the few numbers a reader wants from benchmark
``name``'s report (``matchd-bench NAME --json``) as a flat dict. A key ends in its unit:
``_per_s`` (a rate), ``_us``, ``_ms``, ``_ns``, ``_s`` (times), ``_x`` (a ratio), or
none (a count); ``xN`` in a key is a batch of N. ``markdown`` and ``text_table`` show
summary.json's figures with those units.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Figures = dict[str, Any]


def core(report: dict[str, Any]) -> Figures:
    """Batched commands/s and ns per command (median run, per call p50/p99), one
    command per call, and the speed-up over the reference engine."""
    batched = report["batched"]
    calls = batched.get("call_ns_per_command", {})
    return {
        f"x{batched['batch_size']}_commands_per_s": report["commands_per_s"],
        "per_command_ns": report["ns_per_command"],
        "per_command_p50_ns": calls.get("p50"),
        "per_command_p99_ns": calls.get("p99"),
        "one_per_call_commands_per_s": report["one_at_a_time"]["commands_per_s"],
        "over_reference_x": report["reference"].get("ratio"),  # absent when skipped
    }


def log(report: dict[str, Any]) -> Figures:
    """Commands/s of every fsync setting, the default's acknowledgement p50/p99,
    recovery's replay rate and a snapshot's stall."""
    runs = report["runs"]
    figures: Figures = {}
    for run in runs:
        figures[f"fsync_{run['fsync']}_x{run['batch_size']}_commands_per_s"] = run["commands_per_s"]
    first = runs[0]
    prefix = f"fsync_{first['fsync']}_x{first['batch_size']}"
    figures[f"{prefix}_ack_p50_us"] = first["ack_latency"]["p50_us"]
    figures[f"{prefix}_ack_p99_us"] = first["ack_latency"]["p99_us"]
    figures["recovery_replay_records_per_s"] = report["recovery"].get("replay_records_per_s")
    figures["snapshot_stall_ms"] = report["snapshot"].get("stall_ms")
    return figures


def ring(report: dict[str, Any]) -> Figures:
    """Per driver, records/s of the smallest record at the smallest and the largest
    batch; a sleeping consumer's wake-up p50/p99."""
    figures: Figures = {}
    runs = report["runs"]
    for driver in dict.fromkeys(run["driver"] for run in runs):
        mine = [run for run in runs if run["driver"] == driver]
        nbytes = min(run["record_bytes"] for run in mine)
        sized = [run for run in mine if run["record_bytes"] == nbytes]
        by_batch = {int(run["batch"]): run for run in sized}
        for batch in dict.fromkeys((min(by_batch), max(by_batch))):
            figures[f"{driver}_{nbytes}B_x{batch}_records_per_s"] = by_batch[batch]["records_per_s"]
    wakeup = report.get("wakeup") or {}
    if wakeup:
        figures["wakeup_p50_us"] = wakeup["p50_us"]
        figures["wakeup_p99_us"] = wakeup["p99_us"]
    return figures


def e2e(report: dict[str, Any]) -> Figures:
    """Orders/s of each run (batched, one per frame, open loop) and the open loop's
    latency p50/p99/p99.9 at its asked rate."""
    runs = report["runs"]
    figures: Figures = {f"{name}_orders_per_s": run["orders_per_s"] for name, run in runs.items()}
    single = runs["single"]["latency_us"]
    figures["single_p99_us"] = single["p99"]
    open_loop = runs["open_loop"]
    figures["open_loop_asked_per_s"] = open_loop["target_rate"]
    for p in ("p50", "p99", "p99_9"):
        figures[f"open_loop_{p}_us"] = open_loop["latency_us"][p]
    return figures


def drain(report: dict[str, Any]) -> Figures:
    """The bulk path's deals, rows and records drained per second (and the per-record
    path's deals/s with ``--compare``)."""
    runs = {run["path"]: run for run in report["runs"]}
    bulk = runs["bulk"]
    figures: Figures = {
        "deals_per_s": bulk["deals_per_s"],
        "rows_per_s": bulk["rows_per_s"],
        "records_per_s": bulk["records_per_s"],
        "deals": bulk["deals"],
    }
    if "per-record" in runs:
        figures["per_record_deals_per_s"] = runs["per-record"]["deals_per_s"]
    return figures


def feed(report: dict[str, Any]) -> Figures:
    """Deals/s of each run (MarketData alone, the feed on ZeroMQ, with Redis too)."""
    runs = report["runs"]
    figures: Figures = {f"{name}_deals_per_s": run["deals_per_s"] for name, run in runs.items()}
    figures["feed_records_per_s"] = runs["feed"]["records_per_s"]
    figures["deals"] = report["deals"]
    return figures


def http(report: dict[str, Any]) -> Figures:
    """For single requests and for batches: the case with most orders/s, its
    connections and latency p50/p99; errors over all cases."""
    figures: Figures = {}
    cases = report["cases"]
    for kind, mine in (
        ("single", [c for c in cases if c["batch"] == 1]),
        ("batched", [c for c in cases if c["batch"] > 1]),
    ):
        if not mine:
            continue
        best = max(mine, key=lambda case: float(case["orders_per_s"]))
        name = kind if kind == "single" else f"x{best['batch']}"
        figures[f"{name}_orders_per_s"] = best["orders_per_s"]
        figures[f"{name}_commands_per_s"] = best["commands_per_s"]
        figures[f"{name}_connections"] = best["connections"]
        figures[f"{name}_p50_us"] = best["latency_us"]["p50"]
        figures[f"{name}_p99_us"] = best["latency_us"]["p99"]
    figures["errors"] = sum(
        sum(case["errors"].values()) + sum(case["http_errors"].values()) for case in cases
    )
    return figures


HEADLINES: dict[str, Callable[[dict[str, Any]], Figures]] = {
    "core": core, "log": log, "ring": ring, "e2e": e2e, "drain": drain, "feed": feed,
    "http": http,
}  # fmt: skip

# --------------------------------------------------------------------------- showing

_UNITS = (("_per_s", "/s"), ("_us", ""), ("_ms", ""), ("_ns", ""), ("_s", ""), ("_x", ""))


def label(key: str) -> str:
    """``open_loop_p99_9_us`` -> ``open loop p99.9``; ``x4096_commands_per_s`` ->
    ``x4096 commands/s``."""
    for suffix, shown in _UNITS:
        if key.endswith(suffix):
            key, unit = key[: -len(suffix)], shown
            break
    else:
        unit = ""
    return key.replace("p99_9", "p99.9").replace("_", " ") + unit


def _si(value: float) -> str:
    for scale, prefix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{prefix}"
    return f"{value:.3g}"


def value_text(key: str, value: Any) -> str:
    """``value`` with its unit, from the suffix of ``key``."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    v = float(value)
    if key.endswith("_per_s"):
        return _si(v)
    if key.endswith("_us"):
        return f"{v:.3g} µs" if v < 1000 else f"{v / 1000:.3g} ms"
    if key.endswith("_ms"):
        return f"{v:.3g} ms" if v < 1000 else f"{v / 1000:.3g} s"
    if key.endswith("_ns"):
        return f"{v:,.0f} ns"
    if key.endswith("_s"):
        return f"{v:.3g} s"
    if key.endswith("_x"):
        return f"{v:,.0f}x" if v >= 10 else f"{v:.2g}x"
    return f"{value:,}" if isinstance(value, int) else f"{v:.3g}"


def machine_line(summary: dict[str, Any]) -> str:
    """One line: the command, date, commit, machine and versions of a summary."""
    m, git = summary.get("machine", {}), summary.get("git", {})
    commit = (git.get("commit") or "unknown")[:12] + (" (dirty)" if git.get("dirty") else "")
    memory = m.get("memory_bytes")
    parts = [
        f"matchd-bench all{' --quick' if summary.get('quick') else ''}, {summary.get('date')}",
        f"commit {commit}",
        f"{m.get('cpu')}, {m.get('cores')} cores"
        + (f", {memory / 2**30:.1f} GiB" if memory else ""),
        f"Linux {m.get('kernel')}, Python {m.get('python')}, numpy {m.get('numpy')}, "
        f"numba {m.get('numba')}, pyzmq {m.get('pyzmq')}",
    ]
    return "; ".join(parts)


def _rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(benchmark, status, seconds, figure, value) rows; the first three only on a
    benchmark's first row."""
    rows = []
    for name, entry in summary.get("benchmarks", {}).items():
        head = (name, str(entry.get("status")), f"{entry.get('seconds', 0):.1f}")
        figures = entry.get("headline") or {}
        lines = [(label(k), value_text(k, v)) for k, v in figures.items()]
        if entry.get("reason"):
            lines.append((str(entry["reason"]), ""))
        lines += [(f"note: {note}", "") for note in entry.get("notes", [])]
        for k, (figure, value) in enumerate(lines or [("", "")]):
            rows.append((*(head if k == 0 else ("", "", "")), figure, value))
    return rows


def markdown(summary: dict[str, Any]) -> str:
    """summary.json's headline figures as a markdown table under a line on the machine."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        machine_line(summary),
        "",
        "| benchmark | status | seconds | figure | value |",
        "| --- | --- | ---: | --- | ---: |",
    ]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in _rows(summary)]
    return "\n".join(lines)


def text_table(summary: dict[str, Any]) -> str:
    """summary.json's headline figures as plain text, with the stderr of failures."""
    lines = [machine_line(summary)]
    for name, status, seconds, figure, value in _rows(summary):
        lines.append(f"{name:<6} {status:<8} {seconds:>7}  {figure:<40} {value}".rstrip())
    for name, entry in summary.get("benchmarks", {}).items():
        if entry.get("stderr_tail"):
            lines.append(f"--- {name}: the end of its stderr")
            lines.append(entry["stderr_tail"])
    return "\n".join(lines)
