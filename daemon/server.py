"""The single-process durable server: ZeroMQ order entry in front of a ``Journal``.

One loop, one thread: it drains every request frame waiting on the ROUTER socket
(up to ``max_batch`` commands), stamps the commands with the receive time, runs
them through the journal as **one** batch (one write and one fdatasync for all the
clients' commands: group commit) and only then answers each frame (docs/protocol.md).
Queries are answered from the engine in arrival order with the writes around them.
Without a key registry, runs of one-command frames (one order per message) are
received with two plain ``recv`` calls each, decoded together and answered from one
buffer (``ipc.wire_batch``): about 5 µs of Python per frame instead of 35.
Nothing is queued without bound: the loop takes what fits one batch and leaves the
rest in ZeroMQ's own bounded queues.

When the log fails, the batch that ran is held by the journal and its frames wait
here (never answered as failed: they will be applied); new order commands are
answered SERVICE_UNAVAILABLE without running, queries go on, and every loop retries
the log and answers the held frames once they are durable.

With a key registry (``ServerConfig.auth``) the socket is a CURVE server: the ZAP
handler, polled in this same loop, lets only registered keys connect, and every
frame is checked against its key's role, users and rate limit before anything of it
runs (``daemon.auth_gate``); a refused frame gets an ERROR frame, FORBIDDEN or
TOO_MANY_REQUESTS, and changes nothing. Without one, only a local endpoint binds.

This is the first form of the daemon of issue #4: one process holds balances, books
and log. Pair workers over shared memory come next (docs/daemon.md).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from core.engine import Engine
from core.memory import join_records
from core.schema import COMMAND_DTYPE, EVENT_DTYPE, RESULT_DTYPE, CommandKind, Result
from daemon.auth import KeyRegistry, check_exposure, check_libzmq
from daemon.auth_gate import ZAP_DOMAIN, AuthStats, Gate, ZapHandler
from daemon.metrics import ServerMetrics
from daemon.replication import Replication
from ipc import wire, wire_batch
from persistence.journal import Journal
from persistence.log_errors import LogUnavailable

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:7316"
_QUOTE = int(CommandKind.QUOTE)


def _short_quote(cmds: np.ndarray) -> bool:
    """True if a QUOTE among ``cmds`` (one request's records) claims more levels than
    follow it there. The engine batch must then end with this request: the QUOTE is
    refused, short of its levels, and must not take the next request's records."""
    heads = np.flatnonzero(cmds["kind"] == _QUOTE)
    return len(heads) > 0 and bool((heads + cmds["amount"][heads] >= len(cmds)).any())


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Settings of the order-entry server."""

    endpoint: str = DEFAULT_ENDPOINT
    #: Commands gathered into one journal batch (one fsync) at most.
    max_batch: int = 4096
    #: Frames read per loop at most (a frame of calls counts as one).
    max_frames: int = 1024
    #: ZeroMQ receive and send queue bounds (messages).
    hwm: int = 10_000
    limits: wire.WireLimits = field(default_factory=wire.WireLimits)
    #: The key registry: CURVE, per-key permissions and rate limits. None: no
    #: authentication, which only a local endpoint allows (``check_exposure``).
    auth: KeyRegistry | None = None


@dataclass(slots=True)
class _Frame:
    """A COMMANDS frame in the current batch: who asked, and its slice of the batch."""

    envelope: list[bytes]
    request_id: int
    want_events: bool
    start: int
    stop: int


@dataclass(slots=True)
class _Run:
    """Consecutive one-command frames in the current batch (``ipc.wire_batch``):
    frame ``i`` asked for command ``start + i`` of the batch."""

    envelopes: list[list[bytes]]
    request_ids: np.ndarray
    want_events: np.ndarray
    start: int
    stop: int

    def frames(self) -> list[_Frame]:
        """The same requests, one ``_Frame`` each."""
        return [
            _Frame(envelope, rid, want, self.start + i, self.start + i + 1)
            for i, (envelope, rid, want) in enumerate(
                zip(
                    self.envelopes,
                    self.request_ids.tolist(),
                    self.want_events.tolist(),
                    strict=True,
                )
            )
        ]


@dataclass(slots=True)
class _Calls:
    """A CALLS frame being answered: ``replies`` (None: not yet) and how many of its
    calls still wait, for the log (run, not durable yet) or for a snapshot."""

    envelope: list[bytes]
    request: wire.CallsFrame
    replies: list[wire.Reply | None]
    waiting: int = 0


#: The calls that write: run through the journal, answered once durable.
_WriteCall = wire.OrderCall | wire.BalanceUpdate | wire.CatalogCall
#: A write call of a CALLS frame, run: its index, the call, its results and events.
_RunCall = tuple[int, _WriteCall, np.ndarray, np.ndarray]


@dataclass(slots=True)
class _HeldCall:
    """Call ``index`` of ``frame``, run but not durable: the journal holds its batch."""

    frame: _Calls
    index: int
    call: _WriteCall


def _page(call: wire.OrderPending | wire.OrderBook, total: int, views: list[Any]) -> wire.Page:
    return wire.Page(call.offset, call.limit, total, [wire.Order.from_view(v) for v in views])


class Server:
    """ZeroMQ ROUTER order entry over a journal. Call ``serve`` (or ``step``) from one
    thread; ``close`` when done."""

    def __init__(
        self,
        journal: Journal,
        config: ServerConfig | None = None,
        *,
        context: zmq.Context[Any] | None = None,
        clock: Callable[[], int] = time.time_ns,
        metrics: ServerMetrics | None = None,
        auth_clock: Callable[[], int] = time.monotonic_ns,
        replication: Replication | None = None,
    ) -> None:
        """Check the start-up rules (libzmq version, CURVE, exposure) and bind.

        ``clock`` stamps the commands (Unix ns); ``auth_clock`` (monotonic ns) drives
        the rate limits. With ``config.auth`` and no ``context`` the server makes a
        context of its own (one ZAP handler per context) and terms it on ``close``.
        ``replication``: the engine's role (primary or standby; it is the caller's
        to close, after the server).
        """
        self.journal = journal
        self.replication = replication
        self.metrics = metrics
        self.config = config or ServerConfig()
        self._clock = clock
        auth = self.config.auth
        check_libzmq(curve=auth is not None)
        check_exposure(self.config.endpoint, curve=auth is not None)
        self._own_context = context is None and auth is not None
        if context is None:
            context = zmq.Context() if auth is not None else zmq.Context.instance()
        self._context = context
        #: The per-frame checks; None without a key registry.
        self.gate: Gate | None = None
        self._zap: ZapHandler | None = None
        try:
            if auth is not None:
                self._zap = ZapHandler(context, auth)  # before the ROUTER binds
                self.gate = Gate(auth, auth_clock)
            self._socket = self._bind(context, auth)
        except BaseException:
            self._close_auth()
            raise
        wire_batch.warm_up()
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        if self._zap is not None:
            self._poller.register(self._zap.socket, zmq.POLLIN)
        self._polled: list[zmq.Socket[bytes]] = []
        self._rewire()
        #: Sync replication: replies waiting until the standbys hold what they show,
        #: ``(durable seq when made, messages)``, oldest first.
        self._outbox: deque[tuple[int, list[list[bytes]]]] = deque()
        self._sync_seq: int | None = None
        self._checked_seq = journal.durable_seq
        self._next_gauges_s = 0.0
        #: What waits for each batch the journal holds (the log failed), oldest first:
        #: the COMMANDS frames of a batch, or one call of a CALLS frame.
        self._held: deque[list[_Frame | _Run] | _HeldCall] = deque()
        #: Call frames waiting for a snapshot being written.
        self._snapshot_waiters: list[_Calls] = []
        self.frames = 0
        self.commands = 0
        self._closed = False

    def _bind(self, context: zmq.Context[Any], auth: KeyRegistry | None) -> zmq.Socket[bytes]:
        socket: zmq.Socket[bytes] = context.socket(zmq.ROUTER)
        try:
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.RCVHWM, self.config.hwm)
            socket.setsockopt(zmq.SNDHWM, self.config.hwm)
            if auth is not None:
                socket.setsockopt(zmq.CURVE_SERVER, 1)
                socket.setsockopt(zmq.CURVE_SECRETKEY, auth.server_secret_key.reveal())
                socket.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
            socket.bind(self.config.endpoint)
        except BaseException:
            socket.close(0)
            raise
        return socket

    @property
    def endpoint(self) -> str:
        """The bound endpoint (with the real port if ``tcp://...:0`` was asked)."""
        return str(self._socket.getsockopt_string(zmq.LAST_ENDPOINT))

    def auth_statistics(self) -> AuthStats | None:
        """Handshakes accepted and refused, and each key's counters; None without a
        key registry."""
        if self.gate is None or self._zap is None:
            return None
        return AuthStats(self._zap.accepted, self._zap.refused, self.gate.statistics())

    # ------------------------------------------------------------------ loop

    def serve(self, should_stop: Callable[[], bool], idle_ms: int = 100) -> None:
        """Run until ``should_stop()`` is true (checked at least every ``idle_ms``)."""
        while not should_stop():
            self.step(idle_ms)

    def step(self, timeout_ms: int) -> int:
        """Wait up to ``timeout_ms`` for requests, answer what came; returns the
        number of frames handled."""
        self._retry_held()
        self._reap_snapshot()
        if self.replication is not None:
            self._replicate()
            timeout_ms = min(timeout_ms, int(self.replication.config.heartbeat_s * 1000) or 1)
        if not self._poller.poll(0 if self._held else timeout_ms):
            return 0
        if self._zap is not None:
            self._zap.handle()  # handshakes first: one EAGAIN when none waits
        if self.gate is None:
            envelopes, payloads = self._receive_plain()
            self._handle(envelopes, payloads, None)
        else:
            received = self._receive_keyed()
            envelopes = [r[0] for r in received]
            self._handle(envelopes, [r[1] for r in received], [r[2] for r in received])
        handled = len(envelopes)
        self.frames += handled
        if self.replication is not None:
            self._replicate()  # ship what was just made durable
        if self.metrics is not None:
            self.metrics.refresh(len(self._held))
        return handled

    def _handle(
        self,
        envelopes: list[list[bytes]],
        payloads: list[Any],
        key_names: list[str | None] | None,
    ) -> None:
        """Run the requests received, in order: runs of one-command frames are read
        and answered many at a time (``ipc.wire_batch``; only without a key
        registry, whose checks are per frame), every other frame one by one; calls
        run with the commands before them done. A mass quote never takes records of
        another frame: a frame whose QUOTE is short of its levels ends the engine
        batch (``_short_quote``)."""
        n = len(payloads)
        singles: wire_batch.Singles | None = None
        others = list(range(n))
        if key_names is None and n:
            singles = wire_batch.decode_singles(payloads)
            one = singles.commands  # a one-command QUOTE with levels to come is short
            short = (one["kind"] == _QUOTE) & (one["amount"] > 0)
            others = np.flatnonzero(~singles.ok | short).tolist()
        batch: list[np.ndarray] = []
        entries: list[_Frame | _Run] = []
        size = 0
        at = 0
        for i in [*others, n]:
            if at < i and singles is not None:  # frames at..i-1: one-command frames
                entries.append(
                    _Run(
                        envelopes[at:i],
                        singles.request_ids[at:i],
                        singles.want_events[at:i],
                        size,
                        size + i - at,
                    )
                )
                batch.append(singles.commands[at:i])
                size += i - at
                self._count_frame("commands", i - at)
            at = i + 1
            if i == n:
                break
            name = key_names[i] if key_names is not None else None
            request = self._admit(envelopes[i], payloads[i], name)
            if request is None:
                continue
            if isinstance(request, wire.CommandsFrame):
                self._count_frame("commands")
                cmds = request.commands  # a view of the frame: joined (copied) into the batch
                entries.append(
                    _Frame(
                        envelopes[i],
                        request.request_id,
                        request.want_events,
                        size,
                        size + len(cmds),
                    )
                )
                batch.append(cmds)
                size += len(cmds)
                if _short_quote(cmds):
                    self._run_batch(batch, entries)
                    batch, entries, size = [], [], 0
                continue
            # Calls run in order with the writes around them: finish the batch first.
            self._count_frame("calls")
            self._run_batch(batch, entries)
            batch, entries, size = [], [], 0
            self._run_calls(envelopes[i], request)
        self._run_batch(batch, entries)

    def _receive_plain(self) -> tuple[list[list[bytes]], list[bytes]]:
        """The requests waiting, without a key registry: their envelopes and
        payloads, up to ``max_frames`` frames or about ``max_batch`` commands.
        Two ``recv`` calls per message (``recv_multipart`` costs 5x more)."""
        sock = self._socket
        recv = sock.recv
        envelopes: list[list[bytes]] = []
        payloads: list[bytes] = []
        commands = 0
        while len(payloads) < self.config.max_frames and commands < self.config.max_batch:
            try:
                first = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            # A ROUTER message has the peer's identity and at least one more part, and
            # arrives whole: the rest never waits.
            last = recv(zmq.NOBLOCK)
            envelope = [first]
            while sock.get(zmq.RCVMORE):
                envelope.append(last)
                last = recv(zmq.NOBLOCK)
            envelopes.append(envelope)
            payloads.append(last)
            commands += len(last) // wire.COMMAND_LENGTH or 1
        return envelopes, payloads

    def _receive_keyed(self) -> list[tuple[list[bytes], memoryview, str | None]]:
        """The requests waiting, with a key registry: ``(envelope, frame, key
        name)`` each. Received without a copy, to read the ``User-Id`` that the ZAP
        handler gave the connection (the key's name)."""
        out: list[tuple[list[bytes], memoryview, str | None]] = []
        commands = 0
        while len(out) < self.config.max_frames and commands < self.config.max_batch:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            last = frames[-1]
            try:
                user_id = last.get("User-Id")
            except zmq.ZMQError:  # no ZAP user id: not a registered key
                user_id = None
            name = user_id if isinstance(user_id, str) else None
            out.append(([f.bytes for f in frames[:-1]], last.buffer, name))
            commands += len(last) // wire.COMMAND_LENGTH or 1
        return out

    def _admit(
        self, envelope: list[bytes], payload: bytes | memoryview, user_id: str | None
    ) -> wire.CommandsFrame | wire.CallsFrame | None:
        """The decoded request if it may run; else answer it with an ERROR frame
        (malformed, FORBIDDEN or TOO_MANY_REQUESTS) and return None."""
        try:
            request = wire.decode_request(payload, self.config.limits)
        except wire.WireError as exc:
            # An unreadable frame costs its key one token.
            refusal = self.gate.charge(user_id) if self.gate is not None else None
            self._count_frame("error")
            if refusal is None:
                self._send(envelope, wire.error_reply(exc))
            else:
                self._send(envelope, wire.encode_error(exc.request_id, *refusal))
            return None
        if self.gate is None:
            return request
        refusal = self.gate.admit(user_id, request)
        if refusal is None:
            return request
        self._count_frame(refusal.code.name.lower())
        self._send(envelope, wire.encode_error(request.request_id, *refusal))
        return None

    def _count_frame(self, kind: str, n: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.frames.labels(kind).inc(n)

    # ------------------------------------------------------------------ writes

    def _run_batch(self, batch: list[np.ndarray], entries: list[_Frame | _Run]) -> None:
        if not entries:
            return
        refusal = self._write_refusal()
        if refusal is not None:
            self._refuse_entries(entries, refusal)
            return
        commands = join_records(batch, COMMAND_DTYPE)  # a writable copy
        commands["ts_ns"] = self._clock()
        t0 = time.perf_counter()
        try:
            results, events = self.journal.submit(commands)
        except LogUnavailable:
            self._held.append(entries)  # answered when the journal releases the batch
            return
        if self.metrics is not None:
            self.metrics.batch(time.perf_counter() - t0, len(commands))
            self.metrics.count(commands, results)
        self.commands += len(commands)
        self._answer(entries, results, events)

    def _write_refusal(self) -> Result | None:
        """Why writes may not run now (replication: not the primary, too few
        standbys), or None."""
        return None if self.replication is None else self.replication.refusal()

    def _refuse_entries(self, entries: list[_Frame | _Run], code: Result) -> None:
        """Answer every command of ``entries`` with ``code``, without running any."""
        frames = [f for e in entries for f in (e.frames() if isinstance(e, _Run) else [e])]
        for f in frames:
            results = np.zeros(f.stop - f.start, dtype=RESULT_DTYPE)
            results["code"] = code
            payload = wire.encode_results(f.request_id, results, None)
            self._send(f.envelope, payload, shows_state=code not in _REFUSED_WRITES)
        if self.metrics is None:
            return
        n = sum(f.stop - f.start for f in frames)
        if code in _REFUSED_WRITES:
            self.metrics.refused_replication.labels(code.name).inc(n)
        else:
            self.metrics.refused(n)

    def _answer(
        self, entries: list[_Frame | _Run], results: np.ndarray, events: np.ndarray
    ) -> None:
        for entry in entries:
            if isinstance(entry, _Run):
                self._answer_run(entry, results, events)
                continue
            res = results[entry.start : entry.stop].copy()
            ev = None
            if len(res):  # event_start counts from the frame's own first event
                first = int(res["event_start"][0])
                if entry.want_events:
                    last = int((res["event_start"] + res["event_count"]).max())
                    ev = events[first:last]
                res["event_start"] -= first
            self._send(entry.envelope, wire.encode_results(entry.request_id, res, ev))

    def _answer_run(self, run: _Run, results: np.ndarray, events: np.ndarray) -> None:
        buffer, offsets = wire_batch.encode_single_results(
            run.request_ids,
            run.want_events,
            results[run.start : run.stop],
            events,
            self.config.limits,
        )
        data = buffer.data
        if self._holding():
            messages = [
                [*envelope, bytes(data[a:b])]
                for envelope, a, b in zip(run.envelopes, offsets, offsets[1:], strict=False)
            ]
            self._outbox.append((self.journal.durable_seq, messages))
            return
        send = self._socket.send
        more = zmq.SNDMORE | zmq.NOBLOCK
        try:
            for envelope, a, b in zip(run.envelopes, offsets, offsets[1:], strict=False):
                for part in envelope:
                    send(part, more)
                send(data[a:b], zmq.NOBLOCK)
        except zmq.Again:  # pragma: no cover -- a ROUTER drops rather than blocks
            logger.warning("replies dropped: a client's queue is full")

    def _retry_held(self) -> None:
        if not self._held:
            return
        try:
            released = self.journal.flush()
        except LogUnavailable:
            return
        for results, events in released:
            entry = self._held.popleft()
            if isinstance(entry, _HeldCall):
                want = entry.frame.request.want_events
                reply = self._command_reply(entry.call, results, events, want)
                self._finish_call(entry.frame, entry.index, reply)
            else:
                self.commands += len(results)
                self._answer(entry, results, events)

    # ------------------------------------------------------------------ calls

    def _run_calls(self, envelope: list[bytes], request: wire.CallsFrame) -> None:
        """Run a CALLS frame's calls in order; its write calls share one commit (one
        fsync), and the frame is answered once they are durable and any
        ``server.snapshot`` in it is written."""
        frame = _Calls(envelope, request, [None] * len(request.calls))
        group: list[_RunCall] = []  # run, durable at the commit
        for i, call in enumerate(request.calls):
            if isinstance(call, wire.WireError):
                frame.replies[i] = wire.make_reply(None, call.code, message=call.message)
            elif isinstance(call, _WriteCall):
                before = self.journal.uncommitted
                results, events = self._execute(call)
                if self.journal.uncommitted > before:
                    group.append((i, call, results, events))
                else:  # refused before reaching the log: nothing to wait for
                    frame.replies[i] = self._command_reply(
                        call, results, events, request.want_events
                    )
            elif isinstance(call, wire.ServerSnapshot):
                self._commit_calls(frame, group)  # a snapshot is of durable state only
                group = []
                # One being written (asked for, or a replication check) answers too.
                running = self._snapshot_waiters or self.journal.snapshot_running
                if frame.waiting or not (running or self.start_snapshot()):
                    frame.replies[i] = wire.make_reply(call, Result.SERVICE_UNAVAILABLE)
                else:
                    frame.waiting += 1  # answered when written (_reap_snapshot)
                    if not self._snapshot_waiters or self._snapshot_waiters[-1] is not frame:
                        self._snapshot_waiters.append(frame)
            elif isinstance(call, wire.ServerPromote):
                self._commit_calls(frame, group)
                group = []
                frame.replies[i] = self._promote(call)
            else:
                frame.replies[i] = self._query(call)
        self._commit_calls(frame, group)
        if not frame.waiting:
            self._send_calls(frame)

    def _execute(self, call: _WriteCall) -> tuple[np.ndarray, np.ndarray]:
        """Run a write call, appended to the log and durable at ``journal.commit``
        (a call the journal refuses is not appended)."""
        refusal = self._write_refusal()
        if refusal is not None:
            results = np.zeros(1, dtype=RESULT_DTYPE)
            results["code"] = refusal
            return results, np.zeros(0, dtype=EVENT_DTYPE)
        if isinstance(call, wire.OrderCall):
            cmd = call.record()
            cmd["ts_ns"] = self._clock()
            results, events = self.journal.submit(cmd, commit=False)
            if self.metrics is not None:
                self.metrics.count(cmd, results)
            return results, events
        if isinstance(call, wire.CatalogCall):
            return self._add_catalog(call)
        return self.journal.balance_update(
            call.user,
            call.asset,
            call.business.encode(),
            call.business_id,
            call.change,
            self._clock(),
            json.dumps(call.detail, separators=(",", ":"), sort_keys=True).encode(),
            commit=False,
        )

    def _add_catalog(self, call: wire.CatalogCall) -> tuple[np.ndarray, np.ndarray]:
        """ADD_ASSET or ADD_MARKET (``asset.add``, ``market.add``) through the journal,
        against the catalog as it is now (docs/engine.md, "Adding assets and
        markets"); durable at ``journal.commit``, like ``balance.update``."""
        entry = call.entry(self.journal.engine.config)
        return self.journal.add_catalog(entry, self._clock(), commit=False)

    def _commit_calls(self, frame: _Calls, group: list[_RunCall]) -> None:
        """Commit the write calls run since the last commit and fill in their
        replies, or hold them (the log failed) until the journal releases them."""
        if not group:
            return
        try:
            self.journal.commit()
        except LogUnavailable:
            for i, call, _, _ in group:
                frame.waiting += 1
                self._held.append(_HeldCall(frame, i, call))
            return
        want = frame.request.want_events
        for i, call, results, events in group:
            frame.replies[i] = self._command_reply(call, results, events, want)

    def _finish_call(self, frame: _Calls, index: int, reply: wire.Reply) -> None:
        frame.replies[index] = reply
        frame.waiting -= 1
        if not frame.waiting:
            self._send_calls(frame)

    def _send_calls(self, frame: _Calls) -> None:
        replies = [r for r in frame.replies if r is not None]
        shows_state = any(r.code not in _REFUSED_WRITES for r in replies)
        payload = wire.encode_replies(frame.request.request_id, replies)
        self._send(frame.envelope, payload, shows_state=shows_state)

    def _query(self, call: wire.Call) -> wire.Reply:
        query = _QUERIES.get(type(call))
        if query is None:  # pragma: no cover -- every call type is handled
            return wire.make_reply(call, Result.INVALID_ARGUMENT)
        return wire.make_reply(call, Result.OK, query(self, call))

    def start_snapshot(self) -> bool:
        """Start writing a snapshot (``Journal.snapshot``)."""
        return self._snapshot_started(self.journal.snapshot())

    def _snapshot_started(self, started: bool) -> bool:
        """A snapshot of the durable state was started (``started``): standbys take
        one at the same sequence, to compare hashes."""
        if started and self.replication is not None:
            self.replication.snapshot_started(self.journal.durable_seq)
        return started

    # Queries: the engine's answer in the wire's types.

    def _balances(self, call: wire.BalanceQuery) -> list[wire.Balance]:
        engine = self.journal.engine
        n = len(engine.config.assets)
        assets = call.assets or list(range(n))
        return [wire.Balance(a, *engine.balance(call.user, a)) for a in assets if 0 <= a < n]

    def _book_engine(self, market: int) -> Engine:
        """The engine that holds ``market``'s book (this process's; the pipelined
        server's workers hold theirs)."""
        return self.journal.engine

    def _order(self, call: wire.OrderDetail) -> wire.Order | None:
        view = self._book_engine(call.market).order(call.market, call.order_id)
        return wire.Order.from_view(view) if view else None

    def _pending(self, call: wire.OrderPending) -> wire.Page:
        engine = self._book_engine(call.market)
        page = engine.pending(call.user, call.market, call.offset, call.limit)
        return _page(call, *page)

    def _book(self, call: wire.OrderBook) -> wire.Page:
        page = self._book_engine(call.market).book(call.market, call.side, call.offset, call.limit)
        return _page(call, *page)

    def _depth(self, call: wire.OrderDepth) -> wire.Depth:
        engine = self._book_engine(call.market)
        asks, bids = engine.depth(call.market, call.limit, call.interval)
        return wire.Depth(asks, bids)

    def _markets(self, call: wire.MarketList) -> list[wire.MarketInfo]:
        """Each market with its status and its risk limits as they are now (the
        account half checks puts against both: this process's engine has them)."""
        engine = self.journal.engine
        out = []
        for m in engine.config.markets:
            now = engine.current_market(m.index)
            out.append(wire.MarketInfo.from_market(now or m, engine.market_status(m.index)))
        return out

    def _user_limits(self, call: wire.UserLimitsCall) -> wire.UserLimits:
        """The user's own risk limits in the market (the account half checks puts
        against them: this process's engine has them)."""
        most, notional = self.journal.engine.user_limits(call.user, call.market)
        return wire.UserLimits(call.user, call.market, most, notional)

    def _assets(self, call: wire.AssetList) -> list[wire.AssetInfo]:
        return [wire.AssetInfo.from_asset(a) for a in self.journal.engine.config.assets]

    def _market_summaries(self, call: wire.MarketSummaryCall) -> list[wire.MarketSummary]:
        engine = self.journal.engine
        n = len(engine.config.markets)
        out = []
        for m in call.markets or list(range(n)):
            if 0 <= m < n:
                ms = self._book_engine(m).market_summary(m)
                out.append(
                    wire.MarketSummary(m, ms.ask_count, ms.ask_lots, ms.bid_count, ms.bid_lots)
                )
        return out

    def _asset_summaries(self, call: wire.AssetSummaryCall) -> list[wire.AssetSummary]:
        engine = self.journal.engine
        n = len(engine.config.assets)
        out = []
        for a in call.assets or list(range(n)):
            if 0 <= a < n:
                s = engine.asset_summary(a)
                out.append(
                    wire.AssetSummary(
                        a, s.total, s.available_count, s.available, s.frozen_count, s.frozen
                    )
                )
        return out

    def _status(self, call: wire.ServerStatus) -> wire.Status:
        seq, order_id, deal_id = self.journal.engine.counters()
        return wire.Status(
            seq,
            order_id,
            deal_id,
            durable_seq=self.journal.durable_seq,
            consumers=self.journal.consumer_positions(),
            **self._replication_status(),
        )

    def _replication_status(self) -> dict[str, Any]:
        r = self.replication
        if r is None:
            return {}
        return {"role": r.role, "epoch": r.epoch, "replication": r.status()}

    def _promote(self, call: wire.ServerPromote) -> wire.Reply:
        """Make this standby the primary (``Replication.promote``)."""
        if self.replication is None:
            return wire.make_reply(call, Result.INVALID_ARGUMENT, message="no [replication]")
        try:
            epoch = self.replication.promote()
        except PermissionError as exc:  # deposed, or not caught up
            return wire.make_reply(call, Result.NOT_PRIMARY, message=str(exc))
        self._rewire()
        return wire.make_reply(call, Result.OK, wire.Promoted(epoch, self.journal.durable_seq))

    def _command_reply(
        self, call: wire.Call, results: np.ndarray, events: np.ndarray, want_events: bool
    ) -> wire.Reply:
        """The reply to a write call from the RESULT records of its command (one; a
        quote's k + 1, the header's first) and the batch's events."""
        result = results[0]
        code = Result(int(result["code"]))
        if code != Result.OK:  # REPEAT_ORDER: the reply names the order already placed
            message = self._refusal_message(call, code)
            return wire.make_reply(call, code, message=message, order_id=int(result["order_id"]))
        done = wire.write_done(call, results, events, with_events=want_events)
        return wire.make_reply(call, Result.OK, done)

    def _refusal_message(self, call: wire.Call, code: Result) -> str:
        """The precise message of a refused write call ("": the code's own): a catalog
        call's is ``core.catalog``'s, which names the setting and the reason (it was
        refused by the catalog as it is now: a refusal changes nothing)."""
        if isinstance(call, wire.CatalogCall):
            return call.refusal(self.journal.engine.config, code)
        return ""

    def _reap_snapshot(self) -> None:
        if not self._snapshot_waiters and not (
            self.replication is not None and self.journal.snapshot_running
        ):
            return
        try:
            info = self.journal.poll_snapshot()
        except Exception as exc:  # answered as an error; the journal logged it
            logger.error("snapshot failed: %s", exc)
            code, result = Result.INTERNAL_ERROR, None
        else:
            if info is None:
                return
            code, result = Result.OK, wire.SnapshotDone(info.seq, info.state_hash)
            if self.replication is not None:
                self.replication.snapshot_written(info)
        waiting, self._snapshot_waiters = self._snapshot_waiters, []
        for frame in waiting:
            for i, call in enumerate(frame.request.calls):
                if isinstance(call, wire.ServerSnapshot) and frame.replies[i] is None:
                    self._finish_call(frame, i, wire.make_reply(call, code, result))

    # ------------------------------------------------------------------ replication

    def _replicate(self) -> None:
        """Let the replication role read and send; release the replies the standbys
        now cover (sync); start a snapshot every ``check_every_records``."""
        r = self.replication
        if r is None:  # pragma: no cover -- called only with replication
            return
        r.step()
        self._rewire()
        self._sync_seq = r.replicated_seq()
        self._limit_readers()
        if self._outbox:
            covered = self._sync_seq if self._sync_seq is not None else self.journal.durable_seq
            while self._outbox and self._outbox[0][0] <= covered:
                for message in self._outbox.popleft()[1]:
                    self._send_now(message)
        now = time.monotonic()
        if self.metrics is not None and now >= self._next_gauges_s:
            self._next_gauges_s = now + 0.1
            self.metrics.replication(r.role == "primary", r.epoch, r.status(), len(self._outbox))
        every = r.config.check_every_records
        durable = self.journal.durable_seq
        due = every and r.role == "primary" and durable - self._checked_seq >= every
        if due and not self.journal.snapshot_running and not self._held:
            self._checked_seq = durable
            self._checkpoint()

    def _limit_readers(self) -> None:
        """Sync replication: the log's readers (drainer, feed) see only what the
        standbys hold, never less than before; otherwise everything durable."""
        writer = self.journal.writer
        limit = writer.reader_limit
        if self._sync_seq is not None:
            new = max(self.journal.durable_seq if limit is None else limit, self._sync_seq)
        else:
            new = None
        if new != limit:
            try:
                writer.limit_readers(new)
            except LogUnavailable as exc:  # published again at the next commit
                logger.error("the log's readers cannot be told how far to read: %s", exc)

    def _checkpoint(self) -> None:
        """Start a snapshot to compare hashes with the standbys."""
        self.start_snapshot()

    def _holding(self) -> bool:
        """Replies wait (sync replication) while earlier ones wait, or the standbys
        do not hold everything durable here."""
        return self._sync_seq is not None and (
            bool(self._outbox) or self._sync_seq < self.journal.durable_seq
        )

    def _rewire(self) -> None:
        """Poll the replication role's current socket (promotion changes it)."""
        wanted = [] if self.replication is None else self.replication.sockets()
        if wanted == self._polled:
            return
        for sock in self._polled:  # a closed one too: the poller holds it by identity
            self._poller.unregister(sock)
        for sock in wanted:
            self._poller.register(sock, zmq.POLLIN)
        self._polled = wanted

    # ------------------------------------------------------------------ I/O

    def _send(self, envelope: list[bytes], payload: bytes, *, shows_state: bool = True) -> None:
        """Send a reply (sync replication: once the standbys hold what it shows;
        ``shows_state=False``, a refusal of writes that did not run: at once)."""
        if shows_state and self._holding():
            self._outbox.append((self.journal.durable_seq, [[*envelope, payload]]))
            return
        self._send_now([*envelope, payload])

    def _send_now(self, message: list[bytes]) -> None:
        send = self._socket.send  # plain sends: send_multipart costs several times more
        try:
            for part in message[:-1]:
                send(part, zmq.SNDMORE | zmq.NOBLOCK)
            send(message[-1], zmq.NOBLOCK)
        except zmq.Again:  # the client does not read its replies: it loses them
            logger.warning("reply dropped: the client's queue is full")

    def close(self) -> None:
        """Close the sockets (the journal is the caller's); again: nothing."""
        if self._closed:
            return
        self._closed = True
        self._socket.close(0)
        self._close_auth()

    def _close_auth(self) -> None:
        if self._zap is not None:
            self._zap.close()
        if self._own_context:
            self._context.term()


#: Refusals of writes that did not run because of the replication role: they show
#: nothing of the state, so sync replication does not hold them.
_REFUSED_WRITES = frozenset((Result.NOT_PRIMARY, Result.TOO_FEW_REPLICAS))

#: Query calls and the method that answers each.
_QUERIES: dict[type[wire.Call], Callable[[Server, Any], Any]] = {
    wire.BalanceQuery: Server._balances,
    wire.OrderDetail: Server._order,
    wire.OrderPending: Server._pending,
    wire.OrderBook: Server._book,
    wire.OrderDepth: Server._depth,
    wire.MarketList: Server._markets,
    wire.UserLimitsCall: Server._user_limits,
    wire.AssetList: Server._assets,
    wire.MarketSummaryCall: Server._market_summaries,
    wire.AssetSummaryCall: Server._asset_summaries,
    wire.ServerStatus: Server._status,
}
