"""The order-entry server with pair workers: the sequencer process of DESIGN.md
(docs/daemon.md, "The server with pair workers").

``PipelinedServer`` is the ``Server`` whose commands run through a ``Pipeline``
instead of the journal's own engine: its loop hands every command of every request
frame to the ordering rules, drives the rings, and, once per loop, logs the answers
that came back as **one** batch (``Journal.record``: one write, one fdatasync); a
frame is answered once all its commands are durable. Refusals wait for the same
fsync as the work around them, so no answer ever reflects state that is not on disk.

Calls (queries, single commands, ``balance.update``, ``server.snapshot``) run with
everything before them settled, logged and answered (``Pipeline.quiesce``): they see
the books the workers hold, at rest. That costs one round trip through the workers
per CALLS frame; bulk order flow belongs in COMMANDS frames.

Back-pressure: at most ``max_pending`` commands are in the pipeline (submitted and
not yet durable); beyond it, and while the log is failing, new commands are answered
SERVICE_UNAVAILABLE (code 3) without running (DESIGN.md rule 7).
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from core.engine import Engine
from core.memory import join_records
from core.schema import COMMAND_DTYPE, EVENT_DTYPE, RESULT_DTYPE, Result
from daemon.metrics import ServerMetrics
from daemon.pipeline import Pipeline
from daemon.replication import Replication
from daemon.sequencing import Answer
from daemon.server import Server, ServerConfig, _Frame, _Run, _WriteCall
from ipc import wire
from persistence.journal import Journal, unavailable_results
from persistence.log_errors import LogUnavailable

logger = logging.getLogger(__name__)

_NO_EVENTS = np.zeros(0, dtype=EVENT_DTYPE)


def _results(answers: list[Answer]) -> np.ndarray:
    """RESULT_DTYPE records of ``answers``, their events numbered as if joined."""
    counts = [len(a.events) for a in answers]
    results = np.zeros(len(answers), dtype=RESULT_DTYPE)
    results["seq"] = [a.seq for a in answers]
    results["order_id"] = [a.order_id for a in answers]
    results["value"] = [a.value for a in answers]
    results["code"] = [a.code for a in answers]
    results["event_count"] = counts
    results["event_start"] = np.cumsum(counts) - counts
    return results


@dataclass(slots=True)
class _Request:
    """A COMMANDS frame whose commands are in the pipeline."""

    envelope: list[bytes]
    request_id: int
    want_events: bool
    commands: np.ndarray
    results: np.ndarray
    events: list[np.ndarray]
    remaining: int


@dataclass(slots=True)
class _Batch:
    """Answers logged together, waiting for their batch to be durable."""

    answers: list[tuple[_Request, int]] = field(default_factory=list)


class PipelinedServer(Server):
    """``Server`` over a ``Pipeline``; see the module docstring. The pipeline is the
    caller's (close it after the server)."""

    def __init__(
        self,
        journal: Journal,
        pipeline: Pipeline,
        config: ServerConfig | None = None,
        *,
        max_pending: int | None = None,
        group_commit_s: float = 0.002,
        context: zmq.Context[Any] | None = None,
        clock: Callable[[], int] = time.time_ns,
        metrics: ServerMetrics | None = None,
        auth_clock: Callable[[], int] = time.monotonic_ns,
        replication: Replication | None = None,
    ) -> None:
        """``max_pending``: commands in the pipeline at most (default: four times the
        pipeline's works in flight). ``group_commit_s``: how long settled answers may
        wait for more to share their fsync while work is still out."""
        super().__init__(
            journal,
            config,
            context=context,
            clock=clock,
            metrics=metrics,
            auth_clock=auth_clock,
            replication=replication,
        )
        self.pipeline = pipeline
        self.max_pending = (
            4 * pipeline.pconfig.max_in_flight if max_pending is None else max_pending
        )
        self._next_token = 1
        self._tokens: dict[int, tuple[_Request, int]] = {}
        #: Logged batches the journal holds (the log failed), oldest first.
        self._held_batches: deque[_Batch] = deque()
        self._next_gauges = 0.0
        self._next_check = 0.0
        #: Answers settled and not yet logged: logged together once nothing is in
        #: flight, ``max_batch`` have gathered, or the oldest waited
        #: ``group_commit_s`` (one fsync for all the round trips of a batch).
        self._unlogged: list[Answer] = []
        self._unlogged_since = 0.0
        self.group_commit_s = group_commit_s

    @property
    def pending(self) -> int:
        """Commands in the pipeline: submitted, not yet durable and answered."""
        return len(self._tokens) + sum(len(b.answers) for b in self._held_batches)

    # ------------------------------------------------------------------ loop

    def step(self, timeout_ms: int) -> int:
        """Drive the pipeline, take new requests (waiting up to ``timeout_ms`` only
        when nothing is in flight), drive it again; returns the frames handled."""
        self._advance()
        busy = (
            self.pipeline.busy
            or bool(self._tokens)
            or bool(self._held_batches)
            or bool(self._unlogged)
        )
        handled = super().step(0 if busy else timeout_ms)
        self._advance()
        if busy and not handled:
            os.sched_yield()  # let a woken worker have this core
        if self.metrics is not None:
            now = time.monotonic()
            if now >= self._next_gauges:
                self._next_gauges = now + 0.1
                self.metrics.pipeline(
                    self.pending, self.pipeline.sequencing.in_flight, self.pipeline.ring_stats()
                )
        return handled

    def _advance(self) -> None:
        """Settle what the workers answered; log it (group commit), answer what is
        durable."""
        got = self.pipeline.step()
        answers = self.pipeline.take_answers()
        now = time.monotonic()
        if not got and now >= self._next_check:  # a dead worker never answers
            self._next_check = now + 0.01
            self.pipeline.check_workers()
        if answers:
            if not self._unlogged:
                self._unlogged_since = now
            self._unlogged.extend(answers)
        if self._unlogged and (
            not self.pipeline.busy
            or len(self._unlogged) >= self.config.max_batch
            or now - self._unlogged_since >= self.group_commit_s
        ):
            unlogged, self._unlogged = self._unlogged, []
            self._log(unlogged)

    def _log(self, answers: list[Answer]) -> None:
        batch = _Batch([self._tokens.pop(a.token) for a in answers])
        n = len(answers)
        results = _results(answers)
        # Rows by request: one fancy-indexed copy per request, not one per command.
        rows: dict[int, tuple[_Request, list[int], list[int]]] = {}
        for i, (a, (req, k)) in enumerate(zip(answers, batch.answers, strict=True)):
            req.events[k] = a.events
            entry = rows.get(id(req))
            if entry is None:
                rows[id(req)] = entry = (req, [], [])
            entry[1].append(i)
            entry[2].append(k)
        commands = np.empty(n, dtype=COMMAND_DTYPE)
        for req, at, ks in rows.values():
            commands[at] = req.commands[ks]
            req.results[ks] = results[at]
        events = join_records([a.events for a in answers if len(a.events)], EVENT_DTYPE)
        t0 = time.perf_counter()
        try:
            self.journal.record(commands, results, events)
        except LogUnavailable:
            self._held_batches.append(batch)  # answered when the journal releases it
            return
        if self.metrics is not None:
            self.metrics.batch(time.perf_counter() - t0, n)
            self.metrics.count(commands, results)
        if self._held_batches:  # durable too, and before this one
            self.journal.flush()
            self._release_held()
        self._answer_batch(batch)

    def _answer_batch(self, batch: _Batch) -> None:
        self.commands += len(batch.answers)
        for req, _ in batch.answers:
            req.remaining -= 1
            if req.remaining == 0:
                self._reply(req)

    def _reply(self, req: _Request) -> None:
        results = req.results
        ev = None
        if req.want_events and len(results):
            counts = results["event_count"]
            results["event_start"] = np.cumsum(counts) - counts
            ev = join_records(req.events, EVENT_DTYPE)
        else:
            results["event_start"] = 0
        self._send(req.envelope, wire.encode_results(req.request_id, results, ev))

    def _release_held(self) -> None:
        while self._held_batches:
            self._answer_batch(self._held_batches.popleft())

    def _retry_held(self) -> None:
        super()._retry_held()
        if not self._held_batches:
            return
        try:
            self.journal.flush()
        except LogUnavailable:
            return
        self._release_held()

    # ------------------------------------------------------------------ writes

    def _run_batch(self, batch: list[np.ndarray], entries: list[_Frame | _Run]) -> None:
        if not entries:
            return
        # A request each: the ordering rules' Python per command outweighs a frame's.
        frames = [f for e in entries for f in (e.frames() if isinstance(e, _Run) else [e])]
        commands = join_records(batch, COMMAND_DTYPE)  # a writable copy
        commands["ts_ns"] = self._clock()
        refusal = self._write_refusal()
        if refusal is None and (
            not self.journal.available or self.pending + len(commands) > self.max_pending
        ):
            refusal = Result.SERVICE_UNAVAILABLE
        if refusal is not None:  # refused without running: nothing changed
            self._refuse_entries(entries, refusal)
            return
        for f in frames:
            n = f.stop - f.start
            req = _Request(
                f.envelope,
                f.request_id,
                f.want_events,
                commands[f.start : f.stop],
                np.zeros(n, dtype=RESULT_DTYPE),
                [_NO_EVENTS] * n,
                n,
            )
            if n == 0:
                self._reply(req)
                continue
            tokens = range(self._next_token, self._next_token + n)
            self._next_token += n
            for k, token in enumerate(tokens):
                self._tokens[token] = (req, k)
            self.pipeline.submit_many(tokens, req.commands)
        self.pipeline.step()

    def drain(self) -> None:
        """Settle, log and answer everything in the pipeline, and run every rename:
        the workers' books are then at rest."""
        while True:
            self.pipeline.quiesce()
            answers = [*self._unlogged, *self.pipeline.take_answers()]
            self._unlogged = []
            if not answers:
                return
            self._log(answers)

    # ------------------------------------------------------------------ calls

    def _run_calls(self, envelope: list[bytes], request: wire.CallsFrame) -> None:
        self.drain()
        super()._run_calls(envelope, request)

    def _execute(self, call: _WriteCall) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(call, wire.OrderCall):
            return super()._execute(call)
        refusal = self._write_refusal()
        if refusal is not None:
            results = unavailable_results(1)
            results["code"] = refusal
            return results, np.zeros(0, dtype=EVENT_DTYPE)
        if not self.journal.available:  # not run: the books are ahead of a failing log
            return unavailable_results(1), np.zeros(0, dtype=EVENT_DTYPE)
        cmd = call.record()  # one record, or a mass quote's k + 1: one command
        cmd["ts_ns"] = self._clock()
        self.pipeline.submit_many(range(len(cmd)), cmd)
        self.pipeline.quiesce()
        answers = self.pipeline.take_answers()
        results = _results(answers)
        events = join_records([a.events for a in answers if len(a.events)], EVENT_DTYPE)
        self.journal.record(cmd, results, events, commit=False)
        if self.metrics is not None:
            self.metrics.count(cmd, results)
        return results, events

    def _add_catalog(self, call: wire.CatalogCall) -> tuple[np.ndarray, np.ndarray]:
        """ADD_ASSET or ADD_MARKET alone, with nothing in flight (a CALLS frame runs
        with the pipeline drained; ``drain`` makes sure): the journal runs it on the
        sequencer's engine, then the workers and the ordering rules follow the new
        catalog (``Pipeline.adopt_catalog``) before any work can name a new market
        (docs/daemon.md, "Adding a market")."""
        self.drain()
        results, events = super()._add_catalog(call)
        if results[0]["code"] == Result.OK:
            self.pipeline.adopt_catalog()
        return results, events

    def _book_engine(self, market: int) -> Engine:
        if not 0 <= market < len(self.journal.engine.config.markets):
            return self.journal.engine  # its queries answer an unknown market as empty
        return self.pipeline.market_engine(market)

    def start_snapshot(self) -> bool:
        """Start writing a snapshot of the whole state, composed from the workers'
        books (call it with nothing in flight: after ``drain`` or ``close``)."""
        if not self.journal.available:
            return False
        return self._snapshot_started(self.journal.snapshot(self.pipeline.composed()))

    def _checkpoint(self) -> None:
        self.drain()  # a snapshot needs nothing in flight
        super()._checkpoint()

    def state_hash(self) -> str:
        """The hash of the whole state (drains the pipeline first)."""
        self.drain()
        return self.pipeline.composed().state_hash()

    def close(self) -> None:
        """Finish what is in the pipeline (answered once durable), then close the
        sockets. The pipeline and the journal are the caller's."""
        if self._closed:
            return
        try:
            self.drain()
        except Exception as exc:  # a dead worker: what was not durable is not answered
            logger.error("closing with work in flight: %s", exc)
        super().close()
