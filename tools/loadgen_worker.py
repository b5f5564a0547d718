"""One generator process of ``matchd-loadgen``: its own users, traffic and connections.

The parent gives each process a ``WorkerSpec``: a disjoint block of user ids (the
model's ``first_user`` moved by ``index`` blocks), its own seed and business ids, and
``1/processes`` of the target rate, its schedule shifted by ``index`` slots so that the
processes' sends interleave evenly. A process funds its users, says ``ready``, waits
for ``go`` (the common start time), then sends until the end of the run:

- open loop: every request ``i`` has an intended send time; a wake-up sends all that
  are due, and each latency is measured from its intended time (``Schedule``), so a
  stall of the server counts for every request it held up. At most ``in_flight``
  requests wait at once; beyond that the schedule slips, and the slip counts too.
- closed loop: ``in_flight`` senders, each sending its next request when the
  previous one is answered (latency from the actual send).

It reports its recorders every ``report_every_s`` and once more when done, with what
the soak checks need: the ids of the orders acknowledged, per user and market, and
the net balance changes acknowledged, per asset.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import msgspec

from tools.loadgen_drivers import Driver, DriverError, make_driver
from tools.loadgen_latency import CLOSED_LOOP, NS_PER_S, LatencyRecorder, Pacing, Schedule
from tools.loadgen_model import Op, TrafficGenerator, TrafficModel, model_to_toml, parse_model

#: Funding calls in flight at once, per process.
FUNDING_WINDOW = 64
ORDER_METHODS = ("order.put_limit", "order.put_market")
#: What the WebSocket readers' recordings are named with (``tools.loadgen_ws``).
WS_PREFIX = "ws "


@dataclass(frozen=True)
class WorkerSpec:
    """What one generator process does (see the module docstring); ``model`` has the
    process's own block of users (``model_block``)."""

    index: int
    processes: int
    transport: str
    url: str
    config: str
    engine: str | None
    model: TrafficModel  #: with this process's block of users (``model_block``)
    seed: int
    business_id_start: int
    rate_per_s: Fraction | None  #: the whole run's rate; None: closed loop
    in_flight: int
    connections: int
    duration_s: float
    timeout_s: float
    fund: bool
    ws_url: str | None = None
    ws_sessions: int = 0
    ws_query_interval_s: float = 1.0
    report_every_s: float = 1.0


def model_block(model: TrafficModel, index: int) -> TrafficModel:
    """``model`` with the ``index``-th block of user ids (0: its own)."""
    first_user = model.first_user + index * (model.makers + model.takers)
    return parse_model(model_to_toml(msgspec.structs.replace(model, first_user=first_user)))


class Recorders:
    """The run's recorder (the model's calls) and one per method (also the WebSocket
    readers', named ``ws ...``)."""

    def __init__(self, start_ns: int) -> None:
        self.start_ns = start_ns
        self.all = LatencyRecorder(start_ns)
        self.methods: dict[str, LatencyRecorder] = {}

    def record(self, method: str, start_ns: int, answer_ns: int, error: str | None) -> None:
        rec = self.methods.get(method)
        if rec is None:
            rec = self.methods[method] = LatencyRecorder(self.start_ns)
        overall = not method.startswith(WS_PREFIX)  # the model's calls only
        if error is None:
            rec.record(start_ns, answer_ns)
            if overall:
                self.all.record(start_ns, answer_ns)
        else:
            rec.record_error(error, answer_ns)
            if overall:
                self.all.record_error(error, answer_ns)

    def encode(self) -> dict[str, Any]:
        return {
            "all": self.all.encode(),
            "methods": {m: r.encode() for m, r in sorted(self.methods.items())},
        }


class Ledger:
    """What the server acknowledged: order ids per (user, market), net changes per asset,
    and the funding and other calls that failed."""

    def __init__(self) -> None:
        self.orders: dict[tuple[int, str], list[int]] = defaultdict(list)
        self.net: dict[str, Decimal] = defaultdict(Decimal)
        self.funding_errors = 0

    def note(self, op: Op, result: Any) -> None:
        method, params = op
        if method in ORDER_METHODS and isinstance(result, dict):
            self.orders[(cast(int, params[0]), str(params[1]))].append(int(result["id"]))
        elif method == "balance.update":
            self.net[str(params[1])] += Decimal(str(params[4]))

    def encode(self) -> dict[str, Any]:
        return {
            "orders": [[u, m, ids] for (u, m), ids in sorted(self.orders.items())],
            "net": {asset: str(v) for asset, v in sorted(self.net.items())},
            "funding_errors": self.funding_errors,
        }


class Worker:
    """The sending loop of one process over ``driver``."""

    def __init__(self, spec: WorkerSpec, driver: Driver, start_ns: int) -> None:
        self.spec = spec
        self.driver = driver
        self.generator = TrafficGenerator(
            spec.model, spec.seed, business_id_start=spec.business_id_start
        )
        self.ledger = Ledger()
        self.begin(start_ns)
        self.sent = 0
        self._waiting = 0
        self._slot = asyncio.Event()

    def begin(self, start_ns: int) -> None:
        """Record from ``start_ns`` on, for the run's duration."""
        self.recorders = Recorders(start_ns)
        self.start_ns = start_ns
        self.end_ns = start_ns + int(self.spec.duration_s * NS_PER_S)

    async def fund(self) -> None:
        """Deposit every user's funds (their answers feed the generator)."""
        ops = self.generator.funding_ops()
        for at in range(0, len(ops), FUNDING_WINDOW):
            chunk = ops[at : at + FUNDING_WINDOW]
            outcomes = await asyncio.gather(
                *(self.driver.call(op.method, list(op.params)) for op in chunk)
            )
            for op, (result, error) in zip(chunk, outcomes, strict=True):
                self.generator.on_answer(op, result if error is None else None)
                if error is None:
                    self.ledger.note(op, result)
                else:
                    self.ledger.funding_errors += 1

    async def _one(self, op: Op, start_ns: int) -> None:
        try:
            result, error = await self.driver.call(op.method, list(op.params))
        finally:
            self._waiting -= 1
            self._slot.set()
        answer_ns = time.monotonic_ns()
        self.generator.on_answer(op, result if error is None else None)
        if error is None:
            self.ledger.note(op, result)
        self.recorders.record(op.method, start_ns, answer_ns, error)

    async def run_open(self, schedule: Schedule) -> None:
        """Send on ``schedule`` until the end (see the module docstring)."""
        tasks: set[asyncio.Task[None]] = set()
        i = 0
        while True:
            now = time.monotonic_ns()
            if now >= self.end_ns:
                break
            due = schedule.slots_due(now)
            while i < due and schedule.intended_ns(i) < self.end_ns:
                if self._waiting >= self.spec.in_flight:
                    self._slot.clear()
                    await self._slot.wait()
                    continue
                self._launch(i, schedule, tasks)
                i += 1
            wait_ns = schedule.wait_ns(i, time.monotonic_ns())
            await asyncio.sleep(min(wait_ns, self.end_ns - now) / NS_PER_S if wait_ns else 0)
        await self._drain(tasks)

    def _launch(self, i: int, pacing: Pacing, tasks: set[asyncio.Task[None]]) -> None:
        op = self.generator.next_op()
        self._waiting += 1
        self.sent += 1
        start_ns = pacing.latency_start_ns(i, time.monotonic_ns())
        task = asyncio.get_running_loop().create_task(self._one(op, start_ns))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def run_closed(self) -> None:
        """``in_flight`` senders, each with one request at a time, until the end."""

        async def sender() -> None:
            while time.monotonic_ns() < self.end_ns:
                op = self.generator.next_op()
                self._waiting += 1
                self.sent += 1
                await self._one(op, CLOSED_LOOP.latency_start_ns(0, time.monotonic_ns()))

        await asyncio.gather(*(sender() for _ in range(self.spec.in_flight)))

    async def _drain(self, tasks: set[asyncio.Task[None]]) -> None:
        """Wait for the answers still due (each call ends by its own time-out)."""
        if tasks:
            await asyncio.wait(set(tasks), timeout=self.spec.timeout_s + 5)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def work(spec: WorkerSpec, reports: Any, go: Any, start: Any) -> None:
    """Run one generator process; ``reports`` is the parent's queue, ``go`` an Event,
    ``start`` a shared int64 holding the common start time (monotonic ns)."""
    driver = make_driver(
        spec.transport, url=spec.url, config=Path(spec.config), engine=spec.engine,
        connections=spec.connections, timeout_s=spec.timeout_s,
    )  # fmt: skip
    try:
        await driver.start()
    except DriverError as exc:
        reports.put(("failed", spec.index, str(exc)))
        return
    try:
        worker = Worker(spec, driver, time.monotonic_ns())
        if spec.fund:
            await worker.fund()
        reports.put(("ready", spec.index, worker.ledger.funding_errors))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, go.wait)
        start_ns = int(start.value)
        worker.begin(start_ns)
        cpu0 = cpu_seconds()
        reporter = loop.create_task(_report(worker, reports))
        readers = None
        if spec.ws_url:
            from tools.loadgen_ws import run_sessions

            markets = [m.name for m in spec.model.markets]
            readers = loop.create_task(run_sessions(
                spec.ws_url, spec.ws_sessions, markets, worker.recorders.record, worker.end_ns,
                spec.ws_query_interval_s,
            ))  # fmt: skip
        try:
            if spec.rate_per_s is None:
                await worker.run_closed()
            else:
                rate = spec.rate_per_s / spec.processes
                first = start_ns + int(spec.index * NS_PER_S / spec.rate_per_s)
                await worker.run_open(Schedule(rate, first))
            pushes = await asyncio.wait_for(readers, spec.timeout_s) if readers else {}
        finally:
            reporter.cancel()
            if readers is not None:
                readers.cancel()
        reports.put(("done", spec.index, {
            "recorders": worker.recorders.encode(),
            "ledger": worker.ledger.encode(),
            "sent": worker.sent,
            "cpu_s": cpu_seconds() - cpu0,
            "ws_pushes": pushes,
        }))  # fmt: skip
    finally:
        await driver.aclose()


async def _report(worker: Worker, reports: Any) -> None:
    while True:
        await asyncio.sleep(worker.spec.report_every_s)
        reports.put(("progress", worker.spec.index, worker.recorders.encode()))


def worker_main(spec: WorkerSpec, reports: Any, go: Any, start: Any) -> None:
    """A generator process's entry point (multiprocessing, spawn)."""
    import uvloop

    try:
        uvloop.run(work(spec, reports, go, start))
    except Exception as exc:  # the parent must hear of it, not wait for ever
        reports.put(("failed", spec.index, f"{type(exc).__name__}: {exc}"))
        raise
