"""``matchd-bench all``: every benchmark, one after the other, into one results folder.

Each benchmark runs as a process of its own (``python -m tools.bench NAME --json ...``)
with a time limit (``--timeout-s``, on the benchmark's whole process group), in the
order of ``BENCHMARKS``, so that a crash or a hang of one leaves the rest running.
``--quick`` gives each small sizes (``QUICK``; about two minutes in all on two cores);
without it each uses its own defaults. A benchmark whose server is not there is
skipped, with the reason: ``drain`` without MariaDB at ``--mysql``; ``feed`` without
Redis at 127.0.0.1:6379 runs without its Redis run (``--no-redis``) and says so.

The results folder (``--out``, default ``results/<UTC time>``) gets each benchmark's
report (``NAME.json``), the plots of those that make one, and ``summary.json``: the
machine, the commit, and per benchmark its status (ok, skipped, failed, timeout), its
seconds, its headline figures (``tools.bench_all_figures``) and, if it did not end well,
its exit code and the tail of its stderr. ``--json`` prints summary.json,
``--markdown`` a table of the headline figures; ``--from DIR`` prints those of an
earlier run instead of running. The exit code is 1 if any benchmark failed or timed
out, else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from tools.bench_all_figures import HEADLINES, markdown, text_table
from tools.bench_args import positive_float

#: Every benchmark, in the order they run (cheapest and least disturbing first).
BENCHMARKS = ("core", "log", "ring", "e2e", "drain", "feed", "http")
#: The benchmarks that take ``--out DIR`` (and write their JSON and plots there).
TAKES_OUT = frozenset({"core", "log", "ring", "e2e", "http"})
#: ``--quick``'s arguments per benchmark.
QUICK: dict[str, tuple[str, ...]] = {
    "core": ("--commands", "1000000"),
    "log": ("--commands", "200000", "--always-commands", "1000", "--snapshot-orders", "200000"),
    "ring": ("--records", "2000000", "--calls", "20000", "--wake-samples", "100"),
    "e2e": ("--commands", "300000", "--open-commands", "100000"),  # open loop: 2 s at 50k/s
    "drain": ("--commands", "100000"),
    "feed": ("--commands", "100000"),
    "http": ("--quick",),
}
REDIS = ("127.0.0.1", 6379)  # where tools.bench_feed finds Redis
DEFAULT_MYSQL = "127.0.0.1:3306"
QUICK_TIMEOUT_S = 600.0
FULL_TIMEOUT_S = 3600.0
STOP_GRACE_S = 10.0  # from SIGTERM to SIGKILL of a timed-out benchmark's processes
STDERR_TAIL_LINES = 20
STDERR_TAIL_CHARS = 4000
_REPO = Path(__file__).resolve().parents[1]

#: ``(host, port) -> None`` if something answers there, else why not.
Probe = Callable[[str, int], "str | None"]


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark(s) {', '.join(unknown) or repr(text)}: choose from "
            f"{','.join(BENCHMARKS)}"
        )
    return names


def _mysql(text: str) -> str:
    try:
        _address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r}") from None
    return text


def add_parser(commands: Any) -> None:
    """The ``all`` subcommand of ``matchd-bench`` (``tools.bench``)."""
    run = commands.add_parser(
        "all",
        help="every benchmark, each in its own process, into one results folder",
        description="Run every benchmark (" + ", ".join(BENCHMARKS) + ") as a process of "
        "its own with a time limit; write each one's JSON and plots and summary.json "
        "(machine, commit, status, seconds and headline figures of each).",
    )
    shown = run.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print summary.json")
    shown.add_argument(
        "--markdown", action="store_true", help="print the headline figures as a markdown table"
    )
    run.add_argument(
        "--out", type=Path, default=None, metavar="DIR",
        help="the results folder (default results/<UTC time>)",
    )  # fmt: skip
    run.add_argument("--quick", action="store_true", help="small sizes: about two minutes in all")
    run.add_argument(
        "--only", type=_names, default=BENCHMARKS, metavar="A,B",
        help="run only these benchmarks (default: all)",
    )  # fmt: skip
    run.add_argument(
        "--skip", type=_names, default=(), metavar="A,B", help="do not run these benchmarks"
    )
    run.add_argument(
        "--timeout-s", type=positive_float, default=None, metavar="S",
        help=f"time limit of each benchmark (default {QUICK_TIMEOUT_S:.0f} with --quick, "
        f"else {FULL_TIMEOUT_S:.0f})",
    )  # fmt: skip
    run.add_argument(
        "--mysql", type=_mysql, default=DEFAULT_MYSQL, metavar="HOST:PORT",
        help=f"the MariaDB server of the drain benchmark (default {DEFAULT_MYSQL})",
    )  # fmt: skip
    run.add_argument(
        "--from", dest="from_dir", type=Path, default=None, metavar="DIR",
        help="run nothing: print the summary.json of an earlier run in DIR",
    )  # fmt: skip


# --------------------------------------------------------------------------- running


@dataclass
class Outcome:
    """How one benchmark ended."""

    name: str
    status: str  # ok | skipped | failed | timeout
    seconds: float = 0.0
    command: str = ""
    exit_code: int | None = None
    reason: str | None = None
    stderr_tail: str | None = None
    report: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_summary(self) -> dict[str, Any]:
        """This benchmark's entry in summary.json."""
        entry: dict[str, Any] = {"status": self.status, "seconds": round(self.seconds, 1)}
        if self.command:
            entry["command"] = self.command
        notes = list(self.notes)
        if self.report is not None:
            entry["headline"], problem = headline(self.name, self.report)
            notes += [problem] if problem else []
        for key in ("exit_code", "reason", "stderr_tail"):
            if getattr(self, key) is not None:
                entry[key] = getattr(self, key)
        if notes:
            entry["notes"] = notes
        return entry


def headline(name: str, report: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The headline figures of benchmark ``name``'s report, and a note if its report
    lacks what they are read from."""
    try:
        return HEADLINES[name](report), None
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        return {}, f"no headline figures: the report has no {exc!r} where expected"


def reachable(host: str, port: int, timeout_s: float = 2.0) -> str | None:
    """None if a TCP connection to ``host:port`` opens, else why it did not."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"nothing answers at {host}:{port} ({exc.strerror or exc})"


def _tail(text: str) -> str | None:
    lines = text.rstrip().splitlines()[-STDERR_TAIL_LINES:]
    return "\n".join(lines)[-STDERR_TAIL_CHARS:] or None


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM, then SIGKILL, the process group of ``proc`` (a session of its own);
    what it had written."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            return proc.communicate(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            continue
    try:
        return proc.communicate(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:  # a process of another session holds the pipes
        proc.kill()
        return "", f"(its output is lost: pipes still open {STOP_GRACE_S:.0f} s after SIGKILL)"


def run_process(name: str, argv: Sequence[str], timeout_s: float, cwd: Path = _REPO) -> Outcome:
    """Run one benchmark's ``argv`` (which prints its report as JSON) to its end or to
    ``timeout_s``; how it ended."""
    t0 = time.monotonic()
    command = " ".join(argv)
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        list(argv), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        encoding="utf-8", errors="replace", start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        out, err = _stop(proc)
        return Outcome(
            name, "timeout", time.monotonic() - t0, command, proc.returncode,
            f"stopped at the time limit of {timeout_s:g} s", _tail(err),
        )  # fmt: skip
    except BaseException:  # KeyboardInterrupt too: never leave a benchmark running
        _stop(proc)
        raise
    seconds = time.monotonic() - t0
    report, problem = _parse_report(out)
    if proc.returncode != 0:
        code = proc.returncode
        return Outcome(name, "failed", seconds, command, code, f"exited with code {code}",
                       _tail(err), report)  # fmt: skip
    if problem is not None:
        return Outcome(name, "failed", seconds, command, 0, problem, _tail(err))
    return Outcome(name, "ok", seconds, command, report=report)


def _parse_report(out: str) -> tuple[dict[str, Any] | None, str | None]:
    """A benchmark's stdout as its JSON report, or why it is not one."""
    try:
        report = json.loads(out)
    except ValueError as exc:
        return None, f"its output is not a JSON report ({exc})"
    if not isinstance(report, dict):
        return None, f"its JSON report is a {type(report).__name__}, not an object"
    return report, None


def _address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``HOST`` (port 3306), as ``matchd-bench drain --mysql`` reads it."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "3306")
    return host or "127.0.0.1", int(port)


def benchmark_argv(name: str, args: argparse.Namespace, out: Path) -> list[str]:
    """``python -m tools.bench NAME --json ...`` as ``args`` asks."""
    argv = [sys.executable, "-m", "tools.bench", name, "--json"]
    if args.quick:
        argv += QUICK[name]
    if name in TAKES_OUT:
        argv += ["--out", str(out)]
    if name == "drain":
        argv += ["--mysql", args.mysql]
    return argv


def run_all(
    args: argparse.Namespace, out: Path, probe: Probe = reachable, log: Any = sys.stderr
) -> list[Outcome]:
    """Run the benchmarks ``args`` selects, writing each one's ``NAME.json`` into
    ``out``; how each ended."""
    timeout_s = args.timeout_s or (QUICK_TIMEOUT_S if args.quick else FULL_TIMEOUT_S)
    outcomes = []
    for name in (n for n in BENCHMARKS if n in args.only and n not in args.skip):
        argv = benchmark_argv(name, args, out)
        notes = []
        if name == "drain" and (why := probe(*_address(args.mysql))):
            outcomes.append(Outcome(name, "skipped", reason=f"no MariaDB: {why}"))
            print(f"{name}: skipped: no MariaDB: {why}", file=log, flush=True)
            continue
        if name == "feed" and (why := probe(*REDIS)):
            argv.append("--no-redis")
            notes.append(f"the run with Redis (feed_redis) skipped: {why}")
        print(f"{name}: running {' '.join(argv[1:])}", file=log, flush=True)
        outcome = run_process(name, argv, timeout_s)
        outcome.notes += notes
        if outcome.report is not None:
            text = json.dumps(outcome.report, indent=2) + "\n"
            (out / f"{name}.json").write_text(text, encoding="utf-8")
        how = f" ({outcome.reason})" if outcome.reason else ""
        print(f"{name}: {outcome.status} after {outcome.seconds:.1f} s{how}", file=log, flush=True)
        outcomes.append(outcome)
    return outcomes


# --------------------------------------------------------------------------- the summary


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _proc_field(path: str, key: str) -> str | None:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith(key)), None)


def machine_facts() -> dict[str, Any]:
    """The machine and the software the figures were measured with."""
    mem = _proc_field("/proc/meminfo", "MemTotal")  # "24562800 kB"
    return {
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or None,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_bytes": int(mem.split()[0]) * 1024 if mem else None,
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "numba": _version("numba"),
        "pyzmq": _version("pyzmq"),
    }


def git_facts(repo: Path = _REPO) -> dict[str, Any]:
    """The commit checked out in ``repo`` and whether tracked files differ from it."""
    exe = shutil.which("git")
    if exe is None:
        return {"commit": None, "dirty": None, "error": "git is not on PATH"}

    def git(*argv: str) -> str:
        done = subprocess.run(  # noqa: S603 - git with fixed arguments
            [exe, *argv], cwd=repo, capture_output=True, text=True, check=True, timeout=30
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError) as exc:
        return {"commit": None, "dirty": None, "error": f"git: {exc}"}
    return {"commit": commit, "dirty": dirty}


def summary(
    args: argparse.Namespace, out: Path, outcomes: list[Outcome], wall_s: float
) -> dict[str, Any]:
    """summary.json's content."""
    return {
        "benchmark": "all",
        "quick": bool(args.quick),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "results": str(out),
        "wall_s": round(wall_s, 1),
        "machine": machine_facts(),
        "git": git_facts(),
        "benchmarks": {o.name: o.to_summary() for o in outcomes},
        "failed": [o.name for o in outcomes if o.status in ("failed", "timeout")],
    }


def _default_out() -> Path:
    return Path("results") / datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")


def _show(args: argparse.Namespace, report: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(report, indent=2))
    elif args.markdown:
        print(markdown(report))
    else:
        print(text_table(report))


def main(args: argparse.Namespace) -> int:
    """Run ``matchd-bench all``; returns 1 if a benchmark failed or timed out, else 0."""
    if args.from_dir is not None:
        path = args.from_dir / "summary.json"
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"matchd-bench all: cannot read {path}: {exc}", file=sys.stderr)
            return 2
        _show(args, report)
        return 1 if report.get("failed") else 0
    out = (args.out or _default_out()).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    outcomes = run_all(args, out)
    report = summary(args, out, outcomes, time.monotonic() - t0)
    (out / "summary.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"matchd-bench all: results in {out}", file=sys.stderr)
    _show(args, report)
    return 1 if report["failed"] else 0


__all__ = ["BENCHMARKS", "QUICK", "Outcome", "add_parser", "headline", "main", "run_process"]
