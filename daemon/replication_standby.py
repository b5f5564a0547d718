"""The standby's side of replication: follow a primary's log, store it, apply it.

A DEALER connected to the primary's replication endpoint. The standby says
``Hello`` with its log's end and epoch history; once welcomed it stores every
record the primary sends in its own log, verbatim under the same sequence, applies
it to its own state with replay's checks (``Journal.follow``), commits (one fsync
for everything that came together) and acknowledges what is durable.

- **Hash checks.** When the primary writes a snapshot it sends ``Mark(seq)``; the
  standby writes one at the same sequence and compares its state hash with the one
  the primary's snapshot records (``Hash``). A mismatch stops the standby (CRITICAL,
  which the alert handler pushes): its state is not the primary's.
- **Catch-up.** A standby whose next record the primary's log no longer holds
  receives the primary's newest snapshot (``persistence.snapshot_transfer``), after
  moving its own snapshots and log aside, then follows the log after it.
- **Divergence.** A standby whose log holds records the primary's does not (a
  deposed primary's unreplicated tail) moves its snapshots and log aside into
  ``DATA_DIR/diverged-<time>/`` (kept: they hold commands no client was told were
  done, but an operator may want them) and catches up from the primary's snapshot.
- **Fencing.** A message from an epoch below the highest this standby knows comes
  from a deposed primary: it is ignored, and the standby says hello again (its
  epoch tells that primary it is deposed). A higher epoch is saved before use.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import zmq

from core.errors import BrokenError
from daemon.replication_config import ReplicationConfig
from ipc import replication_wire as rw
from ipc.client_common import CurveKeys
from persistence.epochs import EPOCHS_DIR, EpochHistory
from persistence.journal import LOG_DIR, SNAPSHOT_DIR, Journal, config_digest
from persistence.log_errors import LogCorrupt, LogUnavailable
from persistence.snapshot import SnapshotInfo
from persistence.snapshot_transfer import MAX_CHUNK_BYTES, SnapshotSink

logger = logging.getLogger(__name__)

#: Snapshot chunks asked for ahead of the one being received.
FETCH_AHEAD: Final = 2
#: Hashes kept per side while waiting for the other side's.
KEEP_HASHES: Final = 16
#: Seconds between hellos while the primary does not answer: ten heartbeats, at
#: least this (a primary across a network answers in far less).
MIN_HELLO_EVERY_S: Final = 0.25
#: A snapshot transfer that hears nothing for this long is abandoned.
TRANSFER_SILENCE_S: Final = 10.0
#: Present while the data directory holds no usable state (moved aside, the
#: primary's snapshot not yet installed): such a standby is never promoted.
INCOMPLETE_FILE: Final = "incomplete"


class StandbyDiverged(BrokenError):
    """The standby's state hash differs from the primary's at the same sequence."""


class Standby:
    """Follows the primary at ``endpoint``; see the module docstring. Call
    ``handle`` when the socket is readable and ``tick`` every loop.

    ``endpoint`` may list several engines, separated by commas (the other engines of
    the cluster): the standby looks for the primary among them in turn, moving on
    when one does not answer a hello within ten heartbeats (0.25 s at least), says it
    is no primary, or falls silent for ``lease_s`` while followed."""

    def __init__(
        self,
        journal: Journal,
        config: ReplicationConfig,
        endpoint: str,
        history: EpochHistory,
        node: str,
        *,
        context: zmq.Context[Any],
        save_history: Callable[[EpochHistory], None],
        curve: CurveKeys | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``curve``: the keys to connect with (the cluster's server key pair)."""
        self.journal = journal
        self.config = config
        self.endpoints = [e.strip() for e in endpoint.split(",") if e.strip()]
        if not self.endpoints:
            raise ValueError("a standby needs the primary's replication endpoint")
        self._at = 0
        self.endpoint = self.endpoints[0]
        self.history = history
        self.node = node
        self._save = save_history
        self._clock = clock
        self._data_dir = Path(journal.jconfig.data_dir)
        self._digest = config_digest(journal.config)
        self.socket: zmq.Socket[bytes] = context.socket(zmq.DEALER)
        try:
            self.socket.setsockopt(zmq.LINGER, 0)
            self.socket.setsockopt(zmq.RCVHWM, 100_000)
            self.socket.setsockopt(zmq.SNDHWM, 1000)
            if curve is not None:
                self.socket.setsockopt(zmq.CURVE_SERVERKEY, curve.server_key)
                self.socket.setsockopt(zmq.CURVE_PUBLICKEY, curve.public_key)
                self.socket.setsockopt(zmq.CURVE_SECRETKEY, curve.secret_key)
            self.socket.connect(self.endpoint)
        except BaseException:
            self.socket.close(0)
            raise
        #: "hello" (waiting for a welcome), "following", "snapshot" (fetching one).
        self.state = "hello"
        self.primary_node = ""
        self.primary_committed = 0
        self.heard = clock()  # silence counts from the start
        self._hello_at = 0.0
        self._ack_at = 0.0
        self._marks: list[int] = []
        self._own: dict[int, str] = {}
        self._theirs: dict[int, str] = {}
        self.checked = 0  #: snapshots whose hashes matched the primary's
        self._sink: SnapshotSink | None = None
        self._fetched = 0
        self._replaced: Path | None = None
        self._keep_replaced = False
        self._incomplete = self._data_dir / EPOCHS_DIR / INCOMPLETE_FILE
        self._hello_every_s = max(MIN_HELLO_EVERY_S, 10 * config.heartbeat_s)
        self._hello()

    @property
    def promotable(self) -> bool:
        """False while this standby's state is not a copy of a primary's (it moved
        its own aside and has not caught up yet, even across a restart)."""
        return not self._incomplete.exists()

    # ------------------------------------------------------------------ loop

    def handle(self) -> int:
        """Read every message waiting, store and apply the records among them (one
        commit for all), acknowledge; returns the messages read."""
        n = 0
        stored = False
        while True:
            try:
                parts = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            n += 1
            try:
                message = rw.decode(parts[0])
            except rw.ReplicationError as exc:
                logger.warning("replication: unreadable message from the primary: %s", exc)
                continue
            if message.epoch < self.history.known:
                continue  # a deposed primary: the next hello tells it
            if message.epoch > self.history.known:
                self._set_history(self.history.heard(message.epoch))
            self.heard = self._clock()
            data = parts[1] if len(parts) > 1 else b""
            if isinstance(message, rw.Records):
                stored |= self._records(message, data)
                continue
            if stored:  # what came before this message is settled first
                self._settle()
                stored = False
            self._dispatch(message, data)
        if stored:
            self._settle()
        return n

    def _settle(self) -> None:
        """Commit what was stored (one fsync), acknowledge it, then apply it, and
        snapshot at a mark it reached."""
        self._commit()
        self.journal.apply_followed()
        if self._marks:
            self._take_marks()

    def tick(self) -> None:
        """Hellos while unanswered, acknowledgements as heartbeats."""
        now = self._clock()
        if self.state == "hello" and now - self._hello_at >= self._hello_every_s:
            self._switch()
            self._hello()
        elif self.state == "snapshot" and self.silent_s >= TRANSFER_SILENCE_S:
            logger.warning("replication: the snapshot transfer stalled; hello again")
            if self._sink is not None:
                self._sink.abort()
                self._sink = None
            self._hello()
        elif self.state == "following" and now - self._ack_at >= self.config.heartbeat_s:
            self._ack()
            silent = self.silent_s >= max(self._hello_every_s, self.config.lease_s)
            if len(self.endpoints) > 1 and silent:
                logger.warning("replication: %s fell silent; looking elsewhere", self.endpoint)
                self._switch()
                self._hello()

    def snapshot_written(self, info: SnapshotInfo) -> None:
        """A snapshot of this state is written (the server reaps snapshots): compare
        its hash with the primary's at the same sequence."""
        self._own[info.seq] = info.state_hash
        self._compare(info.seq)

    @property
    def silent_s(self) -> float:
        """Seconds since the primary was last heard."""
        return self._clock() - self.heard

    # ------------------------------------------------------------------ messages

    def _dispatch(self, message: rw.AnyMessage, data: bytes) -> None:
        """Act on one message other than records."""
        if isinstance(message, rw.Heartbeat):
            self.primary_committed = message.committed_seq
        elif isinstance(message, rw.Welcome):
            self._welcome(message)
        elif isinstance(message, rw.Refuse):
            self._refused(message)
        elif isinstance(message, rw.Mark):
            self._mark(message.seq)
        elif isinstance(message, rw.Hash):
            self._theirs[message.seq] = message.state_hash
            self._compare(message.seq)
        elif isinstance(message, rw.SnapshotChunk):
            self._chunk(message, data)

    def _records(self, message: rw.Records, data: bytes) -> bool:
        """Store the records (applied at ``_settle``); True if any were."""
        if self.state != "following":
            return False
        self.primary_committed = message.committed_seq
        last = self.journal.writer.last_seq
        if message.first_seq != last + 1:  # a gap (lost message) or a repeat: start over
            logger.warning(
                "replication: records from seq %d, the log ends at %d: hello again",
                message.first_seq,
                last,
            )
            self._settle()
            self._hello()
            return False
        where = Path(f"<from {self.endpoint}>")
        try:
            got = self.journal.follow(data, message.first_seq, where, apply=False)
        except LogCorrupt as exc:
            logger.error("replication: damaged records from the primary: %s", exc)
            self._settle()
            self._hello()
            return False
        if got != message.first_seq + message.count - 1:
            logger.error("replication: %d records announced, %d came", message.count, got)
        return True

    def _welcome(self, welcome: rw.Welcome) -> None:
        primary = EpochHistory(tuple((e, s) for e, s in welcome.history), welcome.epoch)
        self.primary_node = welcome.node
        if not welcome.snapshot:
            self._set_history(self.history.adopt(primary))
            self._incomplete.unlink(missing_ok=True)  # a prefix of the primary's log now
            self.state = "following"
            self._ack()
            logger.info(
                "replication: following %s (%s) from seq %d",
                welcome.node,
                self.endpoint,
                self.journal.writer.last_seq + 1,
            )
            return
        self._start_snapshot(welcome, primary)

    def _refused(self, refusal: rw.Refuse) -> None:
        if refusal.again:  # the primary restarted and does not know this standby
            self._hello()
            return
        if refusal.deposed:
            logger.warning("replication: %s is no primary; looking elsewhere", self.endpoint)
            self.state = "hello"
            self._hello_at = self._clock()
            return
        if refusal.diverged:
            logger.warning(
                "replication: this log diverges from the primary's after seq %d; moving it "
                "aside and catching up from the primary (its log, or its snapshot first)",
                refusal.keep_seq,
            )
            self._move_aside("diverged", keep=True)
            self.journal.reopen()
            self._set_history(EpochHistory((), self.history.known))
            self._hello()
            return
        logger.error("replication: the primary refuses: %s", refusal.reason)
        self.state = "hello"
        self._hello_at = self._clock()  # again in a while

    # ------------------------------------------------------------------ hash checks

    def _mark(self, seq: int) -> None:
        if seq < self.journal.writer.last_seq:
            logger.warning("replication: snapshot mark at seq %d is behind this state", seq)
            return
        self._marks.append(seq)
        self._take_marks()

    def _take_marks(self) -> None:
        """Snapshot at a mark the state has reached exactly (committed first)."""
        last = self.journal.writer.last_seq
        while self._marks and self._marks[0] <= last:
            seq = self._marks.pop(0)
            if seq != last:
                continue  # passed already
            if self.journal.durable_seq != last:
                logger.warning("replication: no snapshot at seq %d (the log fails)", seq)
            elif not self.journal.snapshot():
                logger.warning("replication: no snapshot at seq %d (one is being written)", seq)

    def _compare(self, seq: int) -> None:
        mine, theirs = self._own.get(seq), self._theirs.get(seq)
        if mine is not None and theirs is not None:
            del self._own[seq], self._theirs[seq]
            if mine != theirs:
                logger.critical(
                    "replication: state hash at seq %d is %s here, %s on the primary %s: "
                    "this standby stops",
                    seq,
                    mine,
                    theirs,
                    self.primary_node,
                )
                raise StandbyDiverged(f"state hash at seq {seq}: {mine} here, {theirs} on primary")
            self.checked += 1
        for table in (self._own, self._theirs):
            while len(table) > KEEP_HASHES:
                del table[min(table)]

    # ------------------------------------------------------------------ snapshots

    def _start_snapshot(self, welcome: rw.Welcome, primary: EpochHistory) -> None:
        logger.info(
            "replication: catching up from the primary's snapshot at seq %d (%d bytes)",
            welcome.snapshot_seq,
            welcome.snapshot_bytes,
        )
        if self._sink is not None:
            self._sink.abort()
        self._move_aside("replaced", keep=False)
        self._set_history(EpochHistory(primary.entries, max(self.history.known, primary.known)))
        (self._data_dir / SNAPSHOT_DIR).mkdir(parents=True, exist_ok=True)
        self._sink = SnapshotSink(
            self._data_dir / SNAPSHOT_DIR,
            welcome.snapshot_seq,
            welcome.snapshot_hash,
            welcome.snapshot_bytes,
            max_bytes=self.config.max_snapshot_bytes,
        )
        self.state = "snapshot"
        self._fetched = 0
        for k in range(FETCH_AHEAD):
            self._fetch(k * MAX_CHUNK_BYTES)

    def _fetch(self, offset: int) -> None:
        sink = self._sink
        if sink is not None and offset < sink.size_bytes:
            self._send(rw.FetchSnapshot(self.history.known, sink.seq, offset))

    def _chunk(self, chunk: rw.SnapshotChunk, data: bytes) -> None:
        sink = self._sink
        if self.state != "snapshot" or sink is None or chunk.seq != sink.seq:
            return
        if chunk.gone or chunk.offset != self._fetched:
            logger.warning("replication: snapshot transfer broken off; hello again")
            sink.abort()
            self._sink = None
            self._hello()
            return
        sink.write(chunk.offset, data)
        self._fetched += len(data)
        if self._fetched < sink.size_bytes:
            self._fetch(self._fetched + (FETCH_AHEAD - 1) * MAX_CHUNK_BYTES)
            return
        info = sink.finish()
        self._sink = None
        self.journal.reopen()
        logger.info("replication: snapshot at seq %d installed (%s)", info.seq, info.state_hash)
        if self._replaced is not None and not self._keep_replaced:
            shutil.rmtree(self._replaced, ignore_errors=True)
        self._replaced = None
        self._hello()

    def _move_aside(self, why: str, *, keep: bool) -> None:
        """Move the snapshots and the log to ``DATA_DIR/<why>-<time>/`` (the writer
        keeps its open files until the journal reopens)."""
        self._incomplete.parent.mkdir(parents=True, exist_ok=True)
        self._incomplete.touch()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        target = self._data_dir / f"{why}-{stamp}-{time.monotonic_ns() % 1_000_000:06d}"
        target.mkdir(parents=True)
        for name in (LOG_DIR, SNAPSHOT_DIR):
            if (self._data_dir / name).exists():
                (self._data_dir / name).rename(target / name)
        self._replaced, self._keep_replaced = target, keep
        if keep:
            logger.warning("replication: the old snapshots and log are in %s", target)

    # ------------------------------------------------------------------ sending

    def _commit(self) -> None:
        try:
            self.journal.writer.commit()
        except LogUnavailable as exc:  # not acknowledged; retried at the next commit
            logger.error("replication: the log fails: %s", exc)
            return
        self._ack()

    def _ack(self) -> None:
        durable = self.journal.durable_seq
        self._ack_at = self._clock()
        if self.state == "following":
            self._send(rw.Ack(self.history.known, durable))

    def _switch(self) -> None:
        """Look for the primary at the next endpoint of the list (if there are more)."""
        if len(self.endpoints) < 2:
            return
        self.socket.disconnect(self.endpoint)
        self._at = (self._at + 1) % len(self.endpoints)
        self.endpoint = self.endpoints[self._at]
        self.socket.connect(self.endpoint)

    def _hello(self) -> None:
        self.state = "hello"
        self._hello_at = self._clock()
        self._marks.clear()
        self._send(
            rw.Hello(
                self.history.known,
                self.node,
                rw.REPLICATION_VERSION,
                self._digest,
                self.journal.writer.last_seq,
                [(e, s) for e, s in self.history.entries],
            )
        )

    def _send(self, message: rw.Message) -> None:
        try:
            self.socket.send(rw.encode(message), zmq.NOBLOCK)
        except zmq.Again:  # the primary does not read: it will be heard from, or not
            logger.warning("replication: the primary's queue is full; message dropped")

    def _set_history(self, history: EpochHistory) -> None:
        if history != self.history:
            self._save(history)
            self.history = history

    def announce(self, history: EpochHistory) -> None:
        """Tell the primary this standby was promoted (``history`` begins the new
        epoch): a primary that hears it is deposed at once. A primary that does not
        hear it (dead, or cut off) learns it from the first engine of the new epoch
        that talks to it; in sync mode it cannot acknowledge anything meanwhile."""
        self.history = history
        self._hello()
        self.socket.setsockopt(zmq.LINGER, 200)  # let the hello go out at close

    def close(self) -> None:
        """Close the socket (a snapshot being received is abandoned)."""
        if self._sink is not None:
            self._sink.abort()
            self._sink = None
        self.socket.close()
