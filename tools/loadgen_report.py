"""What ``matchd-loadgen`` shows and writes: the generator processes' recorders merged,
live progress, the daemon's CPU per process, the JSON summary and the PNG plot."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.loadgen_latency import LatencyRecorder

#: Percentiles drawn in the latency plot.
PLOT_PERCENTILES = (0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999)


@dataclass
class Merged:
    """The run's recorder and one per method, merged over processes."""

    all: LatencyRecorder
    methods: dict[str, LatencyRecorder]


def merge(payloads: Iterable[Mapping[str, Any]], start_ns: int) -> Merged:
    """Merge ``Recorders.encode()`` payloads of the processes."""
    merged = Merged(LatencyRecorder(start_ns), {})
    for payload in payloads:
        merged.all.merge(LatencyRecorder.decode(payload["all"]))
        for method, encoded in payload["methods"].items():
            rec = merged.methods.setdefault(method, LatencyRecorder(start_ns))
            rec.merge(LatencyRecorder.decode(encoded))
    return merged


def progress_line(merged: Merged, elapsed_s: float, sent: int | None = None) -> str:
    """One line of progress: answers, rate of the last full second, errors, percentiles."""
    s = merged.all.summary()
    last = _last_full_second(s)
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(s["errors"].items(), key=lambda kv: -kv[1]))
    return (
        f"{elapsed_s:6.1f} s  {s['count']:>9} ok  {last:>7}/s  "
        f"p50 {_ms(s['p50_us'])}  p99 {_ms(s['p99_us'])}  p99.9 {_ms(s['p99_9_us'])}  "
        f"max {_ms(s['max_us'])}  errors {s['error_count']}" + (f" ({errors})" if errors else "")
    )


def _last_full_second(summary: Mapping[str, Any]) -> int:
    """Successes in the last full second of a recorder's ``summary`` (the newest
    second is still filling)."""
    counts: list[int] = summary["per_second"]["counts"]
    return counts[-2] if len(counts) > 1 else (counts[-1] if counts else 0)


def _ms(us: int) -> str:
    return f"{us / 1000:.2f} ms"


def progress_table(merged: Merged, elapsed_s: float, title: str) -> Any:
    """A rich Table of the progress, overall and per method (latencies in ms)."""
    from rich.table import Table

    table = Table(title=f"{title}  {elapsed_s:.1f} s", title_justify="left", padding=(0, 1))
    table.add_column("calls", no_wrap=True)
    for column in ("ok", "ok/s", "errors", "p50", "p99", "p99.9", "max"):
        table.add_column(column, justify="right", no_wrap=True)
    rows = [("all", merged.all), *sorted(merged.methods.items())]
    for name, rec in rows:
        s = rec.summary()
        last = _last_full_second(s)
        errors = " ".join(f"{k}:{v}" for k, v in sorted(s["errors"].items())) or "0"
        table.add_row(
            name, str(s["count"]), str(last), errors,
            *(f"{s[key] / 1000:.2f}" for key in ("p50_us", "p99_us", "p99_9_us", "max_us")),
        )  # fmt: skip
    table.caption = "latency in ms; ok/s: the last full second"
    return table


def summarize(merged: Merged) -> dict[str, Any]:
    """The ``latency`` part of the JSON: overall and per method."""
    overall = merged.all.summary()
    return {
        **overall,
        "per_method": {
            m: {k: v for k, v in r.summary().items() if k != "per_second"}
            for m, r in sorted(merged.methods.items())
        },
    }


# ----------------------------------------------------------------- daemon CPU


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of ``pid``, from /proc."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks


def _cmdline(pid: int) -> list[str]:
    text = _read(f"/proc/{pid}/cmdline") or ""
    return [a for a in text.split("\0") if a]


def _is_matchd(argv: list[str]) -> bool:
    names = [os.path.basename(a) for a in argv[:3]]
    return "daemon.cli" in argv[:4] or "matchd" in names


def daemon_processes(root_pid: int | None = None) -> dict[int, str]:
    """The processes of a running matchd (``root_pid`` and its descendants, or every
    matchd process and its descendants): pid -> a short name from its command line."""
    parents: dict[int, int] = {}
    argvs: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                parents[int(entry)] = stat[0]
                argvs[int(entry)] = _cmdline(int(entry))
    roots = {root_pid} if root_pid is not None else {p for p, a in argvs.items() if _is_matchd(a)}
    chosen = set(roots)
    grew = True
    while grew:
        more = {p for p, parent in parents.items() if parent in chosen} - chosen
        chosen |= more
        grew = bool(more)
    return {pid: _name(argvs.get(pid, [])) for pid in sorted(chosen) if pid in parents}


def _name(argv: list[str]) -> str:
    if "daemon.cli" in argv:
        argv = ["matchd", *argv[argv.index("daemon.cli") + 1 :]]
    elif argv and os.path.basename(argv[0]).startswith("python") and len(argv) > 1:
        argv = argv[1:]
    return " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(argv))[:80]


def cpu_of(pids: Iterable[int]) -> dict[int, float]:
    """CPU seconds so far of each pid still there."""
    out = {}
    for pid in pids:
        stat = _stat(pid)
        if stat is not None:
            out[pid] = stat[1]
    return out


def daemon_cpu(names: Mapping[int, str], before: Mapping[int, float],
               after: Mapping[int, float], seconds: float) -> list[dict[str, Any]]:  # fmt: skip
    """Per daemon process: CPU seconds during the run and percent of one core."""
    rows = []
    for pid, name in names.items():
        if pid in before and pid in after:
            used = after[pid] - before[pid]
            pct = round(100 * used / seconds, 1) if seconds > 0 else 0.0
            rows.append({"pid": pid, "name": name, "cpu_s": round(used, 3), "cpu_pct": pct})
    return rows


# ----------------------------------------------------------------- the plot


def plot(merged: Merged, path: Path, title: str) -> None:
    """Latency by percentile (overall and per method) and answers per second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    xs = [1 / (1 - p / 100) for p in PLOT_PERCENTILES]
    for name, rec in [("all", merged.all), *sorted(merged.methods.items())]:
        if rec.count == 0:
            continue
        values = rec.percentile_values(PLOT_PERCENTILES)
        left.plot(xs, [v / 1000 for v in values], marker=".", label=name,
                  linewidth=2.5 if name == "all" else 1)  # fmt: skip
    left.set_xscale("log")
    left.set_xticks(xs[2::2], [f"{p:g}" for p in PLOT_PERCENTILES[2::2]])
    left.set_xlabel("percentile")
    left.set_ylabel("latency (ms, from the intended send time)")
    left.set_title("latency by percentile")
    left.grid(True, which="major", alpha=0.3)
    left.legend(fontsize="small")
    s = merged.all.summary()
    counts = s["per_second"]["counts"]
    right.plot(range(len(counts)), counts, drawstyle="steps-post")
    right.set_xlabel("second of the run")
    right.set_ylabel("successful answers per second")
    right.set_title("rate over time")
    right.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
