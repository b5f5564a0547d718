"""One ``matchd-loadgen`` run in the parent process: the soak baseline, the generator
processes (spawned, funded, started together), live progress, the daemon's CPU, the
merged summary and the soak checks."""

from __future__ import annotations

import argparse
import contextlib
import queue
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from tools.bench_all import git_facts
from tools.loadgen_drivers import Driver, DriverError, make_driver
from tools.loadgen_model import TrafficModel
from tools.loadgen_report import (
    Merged,
    cpu_of,
    daemon_cpu,
    daemon_processes,
    merge,
    progress_line,
    progress_table,
    summarize,
)
from tools.loadgen_soak import Balances
from tools.loadgen_worker import WorkerSpec, model_block, worker_main

READY_TIMEOUT_S = 300.0
START_DELAY_NS = 200_000_000  #: from go to the common start, for every process to wake
PLAIN_PROGRESS_EVERY_S = 5.0
LIVE_EVERY_S = 1.0
#: After the run, how long a process may take to send its last report.
DONE_GRACE_S = 30.0

T = TypeVar("T")


def business_id_start(given: int | None) -> int:
    """The run's first business id: ``given``, or microseconds since the epoch (a later
    run starts beyond what this one used, at under a million deposits per second)."""
    return given if given is not None else time.time_ns() // 1000


def process_business_ids(start: int, index: int) -> int:
    """Process ``index``'s first business id: blocks of 10**15 apart."""
    return start + index * 10**15


def combine_ledgers(
    ledgers: list[dict[str, Any]],
) -> tuple[dict[tuple[int, str], list[int]], dict[str, Decimal]]:
    """Acknowledged orders per (user, market) and net changes per asset, over processes."""
    orders: dict[tuple[int, str], list[int]] = {}
    net: dict[str, Decimal] = {}
    for ledger in ledgers:
        for user, market, ids in ledger["orders"]:
            orders.setdefault((int(user), str(market)), []).extend(int(i) for i in ids)
        for asset, value in ledger["net"].items():
            net[asset] = net.get(asset, Decimal(0)) + Decimal(value)
    return orders, net


def _sum_counts(counts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for one in counts:
        for key, n in one.items():
            total[key] = total.get(key, 0) + int(n)
    return dict(sorted(total.items()))


@dataclass
class Progress:
    """The latest report of each process, and what the run has heard."""

    latest: dict[int, Any] = field(default_factory=dict)
    done: dict[int, Any] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    ready: set[int] = field(default_factory=set)
    funding_errors: int = 0


class Run:
    """A run of ``args`` with ``model``."""

    def __init__(self, args: argparse.Namespace, model: TrafficModel) -> None:
        self.args = args
        self.model = model
        self.models = [model_block(model, i) for i in range(args.processes)]
        self.progress = Progress()
        self.start_ns = 0
        self.merged: Merged = merge([], 0)
        pace = "closed loop" if args.closed else f"{args.rate} calls/s"
        self.title = f"matchd-loadgen {args.transport} {args.model} {pace}, {args.processes} proc"

    # ------------------------------------------------------------ the run

    def execute(self) -> dict[str, Any] | None:
        """Run and return the summary; None (said on stderr) when it could not run."""
        args = self.args
        users = [
            u for m in self.models for u in range(m.first_user, m.first_user + m.makers + m.takers)
        ]
        assets = sorted({a for m in self.model.markets for a in (m.stock, m.money)})
        baseline = None
        if args.soak:
            from tools.loadgen_soak import SoakQueryError

            try:
                baseline = self._call(self._prepare(users, assets))
            except (DriverError, SoakQueryError) as exc:
                print(f"matchd-loadgen: soak baseline: {exc}", file=sys.stderr)
                return None
        outcome = self._generate()
        if outcome is None:
            return None
        summary = self._summary(daemon_cpu(*outcome))
        if args.soak and baseline is not None:
            summary["soak"] = self._soak(users, assets, baseline)
        return summary

    def _generate(self) -> tuple[dict[int, str], dict[int, float], dict[int, float], float] | None:
        """Run the generator processes; the daemon's processes (pid: name), their CPU
        seconds before and after, and the run's seconds; None if they did not start."""
        from multiprocessing import get_context

        args = self.args
        ctx = get_context("spawn")
        reports = ctx.Queue()
        go = ctx.Event()
        start = ctx.Value("q", 0)
        first_id = business_id_start(args.business_id_start)
        procs = []
        for i, model in enumerate(self.models):
            spec = WorkerSpec(
                index=i,
                processes=args.processes,
                transport=args.transport,
                url=args.url,
                config=str(args.config),
                engine=args.engine,
                model=model,
                seed=args.seed * 1_000_003 + i,
                business_id_start=process_business_ids(first_id, i),
                rate_per_s=None if args.closed else args.rate,
                in_flight=args.in_flight,
                connections=args.connections,
                duration_s=args.duration,
                timeout_s=args.timeout,
                fund=not args.no_fund,
                ws_url=args.ws,
                ws_sessions=args.ws_sessions,
                ws_query_interval_s=args.ws_query_interval,
            )
            proc = ctx.Process(target=worker_main, args=(spec, reports, go, start), daemon=True)
            proc.start()
            procs.append(proc)
        try:
            if not self._wait_ready(reports, procs):
                return None
            daemon = daemon_processes(args.daemon_pid)
            cpu_before = cpu_of(daemon)
            self.start_ns = time.monotonic_ns() + START_DELAY_NS
            start.value = self.start_ns
            go.set()
            self._follow(reports, procs)
            cpu_after = cpu_of(daemon)
            seconds = (time.monotonic_ns() - self.start_ns) / 1e9
            return daemon, cpu_before, cpu_after, seconds
        finally:
            for proc in procs:
                if not go.is_set():  # never started: stopped, not let loose
                    proc.terminate()
                proc.join(timeout=5)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(timeout=5)

    def _take(self, reports: Any, timeout_s: float) -> None:
        """Take the waiting reports (waiting up to ``timeout_s`` for the first)."""
        p = self.progress
        try:
            item = reports.get(timeout=timeout_s)
            while True:
                kind, index, payload = item
                if kind == "ready":
                    p.ready.add(index)
                    p.funding_errors += int(payload)
                elif kind == "progress":
                    p.latest[index] = payload
                elif kind == "done":
                    p.done[index] = payload
                    p.latest[index] = payload["recorders"]
                elif kind == "failed":
                    p.failed[index] = str(payload)
                item = reports.get_nowait()
        except queue.Empty:
            pass

    def _wait_ready(self, reports: Any, procs: list[Any]) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_S
        p = self.progress
        while len(p.ready) + len(p.failed) < len(procs):
            self._take(reports, 0.5)
            dead = [i for i, proc in enumerate(procs) if not proc.is_alive() and i not in p.ready]
            for i in dead:
                p.failed.setdefault(i, f"exited with code {procs[i].exitcode}")
            if time.monotonic() > deadline:
                print("matchd-loadgen: the generators were not ready in time", file=sys.stderr)
                return False
        if p.failed:
            for i, why in sorted(p.failed.items()):
                print(f"matchd-loadgen: generator {i}: {why}", file=sys.stderr)
            return False
        return True

    def _follow(self, reports: Any, procs: list[Any]) -> None:
        """Show progress until every process is done (or gone)."""
        args = self.args
        end = self.start_ns / 1e9 + args.duration + args.timeout + DONE_GRACE_S
        live = None
        if not args.quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            live = Live(console=Console(stderr=True), refresh_per_second=1, transient=False)
            live.start()
        show_every_s = LIVE_EVERY_S if live is not None else PLAIN_PROGRESS_EVERY_S
        last_line = time.monotonic()
        try:
            while len(self.progress.done) + len(self.progress.failed) < len(procs):
                self._take(reports, 0.5)
                for i, proc in enumerate(procs):
                    if not proc.is_alive() and i not in self.progress.done:
                        self._take(reports, 0.5)
                        if i not in self.progress.done:
                            self.progress.failed.setdefault(i, f"exited with code {proc.exitcode}")
                if not args.quiet and time.monotonic() - last_line >= show_every_s:
                    # Percentiles cost tens of ms of this core (hdrh iterates in Python):
                    # shown at this pace only, merged only to be shown.
                    self.merged = merge(self.progress.latest.values(), self.start_ns)
                    elapsed = (time.monotonic_ns() - self.start_ns) / 1e9
                    if live is not None:
                        live.update(progress_table(self.merged, elapsed, self.title))
                    else:
                        print(progress_line(self.merged, elapsed), file=sys.stderr)
                    last_line = time.monotonic()
                if time.monotonic() > end:
                    for i in range(len(procs)):
                        if i not in self.progress.done:
                            self.progress.failed.setdefault(i, "no final report in time")
        finally:
            if live is not None:
                live.stop()
        self.merged = merge(self.progress.latest.values(), self.start_ns)

    # ------------------------------------------------------------ results

    def _summary(self, daemon: list[dict[str, Any]]) -> dict[str, Any]:
        args = self.args
        done = self.progress.done
        return {
            "tool": "matchd-loadgen",
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **git_facts(),  # commit, and whether the checkout differs from it
            "transport": args.transport,
            "target": args.url if args.transport == "http" else (args.engine or str(args.config)),
            "model": args.model,
            "seed": args.seed,
            "mode": "closed" if args.closed else "open",
            "target_rate_per_s": None if args.closed else float(args.rate),
            "processes": args.processes,
            "in_flight": args.in_flight,
            "connections": args.connections if args.transport == "http" else None,
            "duration_s": args.duration,
            "sent": sum(int(d["sent"]) for d in done.values()),
            "funding_errors": self.progress.funding_errors,
            "latency": summarize(self.merged),
            "generator_cpu_s": [round(float(done[i]["cpu_s"]), 3) for i in sorted(done)],
            "daemon_cpu": daemon,
            "ws_pushes": _sum_counts(d.get("ws_pushes", {}) for d in done.values()),
            "failed_processes": {str(i): why for i, why in sorted(self.progress.failed.items())},
            "soak": None,
        }

    def closing_line(self, summary: dict[str, Any]) -> str:
        lat = summary["latency"]
        soak = summary["soak"]
        return (
            f"{self.title}: {lat['count']} ok of {summary['sent']} sent "
            f"in {lat['duration_s']:.1f} s ({lat['mean_rate_per_s']:.0f}/s), "
            f"p50 {lat['p50_us'] / 1000:.2f} ms, p99 {lat['p99_us'] / 1000:.2f} ms, "
            f"errors {lat['errors'] or 0}"
            + ("" if soak is None else f", soak {'ok' if soak['ok'] else 'FAILED'}")
        )

    # ------------------------------------------------------------ soak

    def _driver(self) -> Driver:
        a = self.args
        return make_driver(
            a.transport,
            url=a.url,
            config=a.config,
            engine=a.engine,
            connections=8,
            timeout_s=a.timeout,
        )

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        import uvloop

        return uvloop.run(coro)

    def _markets(self) -> list[str]:
        return [m.name for m in self.model.markets]

    async def _prepare(self, users: list[int], assets: list[str]) -> Balances:
        from tools.loadgen_soak import Limited, prepare

        driver = self._driver()
        await driver.start()
        try:
            return await prepare(Limited(driver), users, self._markets(), assets)
        finally:
            await driver.aclose()

    def _soak(self, users: list[int], assets: list[str], baseline: Balances) -> dict[str, Any]:
        from tools.loadgen_soak import SoakQueryError

        orders, net = combine_ledgers([d["ledger"] for d in self.progress.done.values()])
        try:
            report: dict[str, Any] = self._call(self._checks(users, assets, baseline, orders, net))
        except (DriverError, SoakQueryError) as exc:
            return {"ok": False, "checked": {}, "violations": {"query": [str(exc)]}}
        return report

    async def _checks(
        self,
        users: list[int],
        assets: list[str],
        baseline: Balances,
        orders: dict[tuple[int, str], list[int]],
        net: dict[str, Decimal],
    ) -> dict[str, Any]:
        from tools.loadgen_soak import (
            Limited,
            SoakReport,
            balance_sums,
            check_depth,
            check_funds,
            check_orders,
            fees_paid,
        )

        report = SoakReport()
        plain = self._driver()
        await plain.start()
        driver = Limited(plain)
        try:
            settle = self.args.settle
            seen = await check_orders(report, driver, orders, settle)
            await check_depth(report, driver, self._markets(), seen.pending, settle)
            after = await balance_sums(driver, users, assets)
            assets_of = {m.name: (m.stock, m.money) for m in self.model.markets}
            check_funds(report, baseline, after, net, fees_paid(seen.records.values(), assets_of))
        finally:
            with contextlib.suppress(Exception):
                await plain.aclose()
        return report.to_json()
