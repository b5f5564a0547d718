"""The primary's side of replication: it serves its durable log to standbys.

A ROUTER on ``[replication] listen``. Each standby says ``Hello`` (its log's end and
epoch history); the primary checks that the standby's log is a prefix of its own
(``EpochHistory.common_seq``), then sends every record after it, read from its own
log directory (only durable records: a restart of the primary never takes back
what a standby holds), in runs of whole frames, at most ``window_records`` ahead of
the standby's acknowledgement. A standby whose next record the log no longer holds
(retention) catches up from the newest snapshot first (``SnapshotChunk``).

What this side decides for the server:

- ``replicated_seq``: the sequence durable on at least ``sync_replicas`` standbys
  heard from within ``lease_s`` (sync mode gates every reply on it);
- ``refusal``: NOT_PRIMARY once a standby has told of a higher epoch (this primary
  is deposed: it never writes again), TOO_FEW_REPLICAS in sync mode while fewer
  standbys than needed are fresh.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import zmq

from core.schema import Result
from daemon.auth import SERVER_KEY_NAME, KeyRegistry
from daemon.auth_gate import ZAP_DOMAIN
from daemon.replication_config import ReplicationConfig
from ipc import replication_wire as rw
from persistence.epochs import EpochHistory
from persistence.journal import LOG_DIR, SNAPSHOT_DIR, Journal, config_digest
from persistence.log_errors import LogError, SeqPruned
from persistence.log_format import FRAME_ALIGN, FRAME_HEADER_LENGTH, append_frame
from persistence.log_reader import LogReader, RecordRun
from persistence.snapshot_transfer import MAX_CHUNK_BYTES, SnapshotSource

logger = logging.getLogger(__name__)

#: Records read per run sent.
RUN_RECORDS: Final = 4096
#: A standby not heard from for this long (at least) is forgotten.
FORGET_AFTER_S: Final = 30.0


@dataclass(slots=True)
class _Standby:
    identity: bytes
    node: str
    reader: LogReader
    next_seq: int  #: the next record to send
    acked_seq: int  #: durable on the standby
    heard: float
    sent: float = 0.0
    snapshot: SnapshotSource | None = None
    marks: list[int] = field(default_factory=list)

    def close(self) -> None:
        self.reader.close()
        if self.snapshot is not None:
            self.snapshot.close()
            self.snapshot = None


class Primary:
    """Serves ``journal``'s log to standbys; see the module docstring. Call
    ``handle`` when the socket is readable and ``pump`` after every commit."""

    def __init__(
        self,
        journal: Journal,
        config: ReplicationConfig,
        history: EpochHistory,
        node: str,
        *,
        context: zmq.Context[Any],
        on_deposed: Callable[[int], None],
        auth: KeyRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``auth``: CURVE server with the registry's key pair; only its own server
        key may replicate (the context must have a ZAP handler for it)."""
        self.journal = journal
        self.config = config
        self.history = history
        self.node = node
        self._on_deposed = on_deposed
        self._clock = clock
        self._digest = config_digest(journal.config)
        self._log_dir = Path(journal.jconfig.data_dir) / LOG_DIR
        self._snap_dir = Path(journal.jconfig.data_dir) / SNAPSHOT_DIR
        self._standbys: dict[bytes, _Standby] = {}
        self.socket: zmq.Socket[bytes] = context.socket(zmq.ROUTER)
        try:
            self.socket.setsockopt(zmq.LINGER, 0)
            self.socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
            self.socket.setsockopt(zmq.SNDHWM, 100_000)
            self.socket.setsockopt(zmq.RCVHWM, 100_000)
            if auth is not None:
                self.socket.setsockopt(zmq.CURVE_SERVER, 1)
                self.socket.setsockopt(zmq.CURVE_SECRETKEY, auth.server_secret_key.reveal())
                self.socket.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
            self.socket.bind(config.listen)
        except BaseException:
            self.socket.close(0)
            raise
        self.deposed = False
        self._auth = auth is not None

    @property
    def endpoint(self) -> str:
        """The bound endpoint (with the real port if ``:0`` was asked)."""
        return str(self.socket.getsockopt_string(zmq.LAST_ENDPOINT))

    # ------------------------------------------------------------------ what the server asks

    def refusal(self) -> Result | None:
        """Why writes are refused now, or None."""
        if self.deposed:
            return Result.NOT_PRIMARY
        if self.config.mode == "sync" and len(self._fresh()) < self.config.sync_replicas:
            return Result.TOO_FEW_REPLICAS
        return None

    def replicated_seq(self) -> int:
        """The sequence durable on ``sync_replicas`` fresh standbys (0 if too few)."""
        acked = sorted((s.acked_seq for s in self._fresh()), reverse=True)
        k = self.config.sync_replicas
        return acked[k - 1] if len(acked) >= k else 0

    def _fresh(self) -> list[_Standby]:
        now = self._clock()
        return [s for s in self._standbys.values() if now - s.heard <= self.config.lease_s]

    def standbys(self) -> dict[str, int]:
        """Each standby's node name and the sequence durable there."""
        return {s.node: s.acked_seq for s in self._standbys.values()}

    def mark(self, seq: int) -> None:
        """A snapshot of the state at ``seq`` (the durable sequence) is being
        written: each standby takes one there. The mark follows the records up to
        ``seq`` to each standby, and no run sent crosses it."""
        for s in list(self._standbys.values()):
            if s.next_seq > seq:
                self._send(s, rw.Mark(self.history.known, seq))
            else:
                s.marks.append(seq)

    def hashed(self, seq: int, state_hash: str) -> None:
        """The snapshot at ``seq`` is written, with ``state_hash``: tell the standbys."""
        for s in list(self._standbys.values()):
            self._send(s, rw.Hash(self.history.known, seq, state_hash))

    # ------------------------------------------------------------------ receiving

    def handle(self) -> int:
        """Read every message waiting; returns how many."""
        n = 0
        while True:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return n
            n += 1
            if len(frames) < 2:
                continue
            identity, header = frames[0].bytes, frames[1].bytes
            if self._auth and _key_name(frames[1]) != SERVER_KEY_NAME:
                self._refuse(identity, "only the cluster's server key may replicate")
                continue
            try:
                message = rw.decode(header)
            except rw.ReplicationError as exc:
                logger.warning("replication: unreadable message from a standby: %s", exc)
                continue
            if message.epoch > self.history.known:
                self._deposed(message.epoch)
            if self.deposed:
                self._refuse(identity, "this engine is a deposed primary", deposed=True)
                continue
            self._dispatch(identity, message)

    def _dispatch(self, identity: bytes, message: rw.AnyMessage) -> None:
        if isinstance(message, rw.Hello):
            self._hello(identity, message)
            return
        standby = self._standbys.get(identity)
        if standby is None:
            self._refuse(identity, "say hello first", again=True)
            return
        standby.heard = self._clock()
        if isinstance(message, rw.Ack):
            if message.durable_seq >= standby.next_seq:
                logger.error(
                    "replication: standby %s acknowledged seq %d, only %d sent",
                    standby.node,
                    message.durable_seq,
                    standby.next_seq - 1,
                )
                self._drop(standby)
                return
            standby.acked_seq = max(standby.acked_seq, message.durable_seq)
        elif isinstance(message, rw.FetchSnapshot):
            self._chunk(standby, message)

    def _hello(self, identity: bytes, hello: rw.Hello) -> None:
        old = self._standbys.pop(identity, None)
        if old is not None:
            old.close()
        if hello.version != rw.REPLICATION_VERSION:
            self._refuse(identity, f"replication version {hello.version}, this primary speaks 1")
            return
        if hello.config_digest != self._digest:
            self._refuse(identity, "the standby's engine config differs from the primary's")
            return
        try:
            theirs = EpochHistory(tuple(tuple(e) for e in hello.history), hello.epoch)  # type: ignore[misc]
        except ValueError as exc:
            self._refuse(identity, f"bad epoch history: {exc}")
            return
        durable = self.journal.durable_seq
        keep = self.history.common_seq(theirs, hello.last_seq, durable)
        if keep < hello.last_seq:
            self._refuse(
                identity,
                f"the standby's log diverges after seq {keep} (it ends at {hello.last_seq})",
                keep_seq=keep,
            )
            return
        # Its own durable records, past what the log's other readers may see (sync).
        reader = LogReader(self._log_dir, committed=lambda: self.journal.durable_seq)
        standby = _Standby(identity, hello.node, reader, hello.last_seq + 1, hello.last_seq, 0.0)
        standby.heard = self._clock()
        first = reader.first_seq()
        if first is not None and standby.next_seq < first:
            if not self._offer_snapshot(standby):
                return
        else:
            self._send(standby, self._welcome())
        self._standbys[identity] = standby
        logger.info("replication: standby %s follows from seq %d", standby.node, standby.next_seq)

    def _welcome(self, **snapshot: Any) -> rw.Welcome:
        return rw.Welcome(
            self.history.known,
            self.node,
            [list(e) for e in self.history.entries],  # type: ignore[misc]
            **snapshot,
        )

    def _offer_snapshot(self, standby: _Standby) -> bool:
        """The standby's next record is gone from the log: offer the newest snapshot."""
        source = SnapshotSource.open(self._snap_dir)
        if source is None:
            standby.reader.close()
            self._refuse(standby.identity, "the log no longer holds the standby's next record")
            return False
        standby.snapshot = source
        standby.next_seq = source.seq + 1
        standby.acked_seq = 0  # nothing of the new log yet
        self._send(
            standby,
            self._welcome(
                snapshot=True,
                snapshot_seq=source.seq,
                snapshot_hash=source.state_hash,
                snapshot_bytes=source.size_bytes,
            ),
        )
        return True

    def _chunk(self, standby: _Standby, fetch: rw.FetchSnapshot) -> None:
        source = standby.snapshot
        if source is None or source.seq != fetch.seq or not 0 <= fetch.offset < source.size_bytes:
            self._send(
                standby, rw.SnapshotChunk(self.history.known, fetch.seq, fetch.offset, 0, True)
            )
            return
        data = source.read(fetch.offset, min(MAX_CHUNK_BYTES, source.size_bytes - fetch.offset))
        chunk = rw.SnapshotChunk(self.history.known, source.seq, fetch.offset, source.size_bytes)
        self._send(standby, chunk, data)
        if fetch.offset + len(data) == source.size_bytes:
            source.close()
            standby.snapshot = None

    # ------------------------------------------------------------------ sending

    def pump(self) -> int:
        """Send every standby what is new (within its window), and heartbeats; forget
        standbys long silent. Returns the records sent."""
        now = self._clock()
        durable = self.journal.durable_seq
        sent = 0
        for standby in list(self._standbys.values()):
            if now - standby.heard > max(FORGET_AFTER_S, 10 * self.config.lease_s):
                logger.warning("replication: standby %s silent, forgotten", standby.node)
                self._drop(standby)
                continue
            if standby.snapshot is None:
                sent += self._ship(standby, durable)
            if now - standby.sent >= self.config.heartbeat_s:
                self._send(standby, rw.Heartbeat(self.history.known, durable))
        return sent

    def _ship(self, standby: _Standby, durable: int) -> int:
        sent = self._ship_recent(standby, durable)
        while standby.next_seq <= durable and standby.identity in self._standbys:
            room = self.config.window_records - (standby.next_seq - 1 - standby.acked_seq)
            upto = durable if not standby.marks else min(durable, standby.marks[0])
            limit = min(room, RUN_RECORDS, upto - standby.next_seq + 1)
            if limit <= 0:
                break
            try:
                runs = standby.reader.read_runs(standby.next_seq, limit=limit)
            except SeqPruned:
                self._offer_snapshot(standby)
                return sent
            except LogError as exc:
                logger.error("replication: cannot read the log for %s: %s", standby.node, exc)
                self._drop(standby)
                return sent
            if not runs:
                break
            for run in runs:
                header = rw.Records(self.history.known, run.first_seq, len(run), durable)
                self._send(standby, header, _frames(run))
                standby.next_seq = run.last_seq + 1
                sent += len(run)
            self._send_marks(standby)
        return sent

    def _ship_recent(self, standby: _Standby, durable: int) -> int:
        """Send what the writer still holds in memory of the records from the
        standby's next one (commit by commit: a mark, taken at a commit's end, is
        never crossed), as long as the window allows; the rest is read from the log."""
        pieces = self.journal.writer.recent_frames(standby.next_seq)
        sent = 0
        for first, last, frames in pieces or ():
            room = self.config.window_records - (standby.next_seq - 1 - standby.acked_seq)
            if last - first + 1 > room or standby.identity not in self._standbys:
                break
            self._send(
                standby, rw.Records(self.history.known, first, last - first + 1, durable), frames
            )
            standby.next_seq = last + 1
            sent += last - first + 1
            self._send_marks(standby)
        return sent

    def _send_marks(self, standby: _Standby) -> None:
        while standby.marks and standby.marks[0] < standby.next_seq:
            self._send(standby, rw.Mark(self.history.known, standby.marks.pop(0)))

    def _send(self, standby: _Standby, message: rw.Message, data: bytes | None = None) -> None:
        parts = [standby.identity, rw.encode(message)]
        if data is not None:
            parts.append(data)
        try:
            self.socket.send_multipart(parts, zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # gone (EHOSTUNREACH) or its queue is full (EAGAIN)
            logger.warning("replication: standby %s dropped: %s", standby.node, exc)
            self._drop(standby)
            return
        standby.sent = self._clock()

    def _refuse(
        self,
        identity: bytes,
        reason: str,
        *,
        keep_seq: int | None = None,
        again: bool = False,
        deposed: bool = False,
    ) -> None:
        message = rw.Refuse(
            self.history.known,
            reason,
            diverged=keep_seq is not None,
            keep_seq=keep_seq or 0,
            again=again,
            deposed=deposed,
        )
        if not again:
            logger.warning("replication: standby refused: %s", reason)
        with contextlib.suppress(zmq.ZMQError):  # gone: it says hello again
            self.socket.send_multipart([identity, rw.encode(message)], zmq.NOBLOCK)

    def _drop(self, standby: _Standby) -> None:
        if self._standbys.pop(standby.identity, None) is not None:
            standby.close()

    def _deposed(self, epoch: int) -> None:
        if not self.deposed:
            self.deposed = True
            logger.critical(
                "replication: deposed, epoch %d began elsewhere (this one is %d): writes "
                "refused from now on",
                epoch,
                self.history.known,
            )
            self._on_deposed(epoch)

    def close(self) -> None:
        """Close the socket and every standby's reader."""
        for standby in list(self._standbys.values()):
            self._drop(standby)
        self.socket.close(0)


def _key_name(frame: zmq.Frame) -> str | None:
    """The name the ZAP handler gave the connection's key (None: none)."""
    try:
        name = frame.get("User-Id")
    except zmq.ZMQError:
        return None
    return name if isinstance(name, str) else None


def _frames(run: RecordRun) -> bytes:
    """The log frames of ``run`` as the log holds them (checksums included); a run
    the reader built from one record (its header zeroed) is framed again."""
    start = int(run.starts[0])
    if int.from_bytes(run.data[start + 8 : start + 16], "little") == run.first_seq:
        size = FRAME_HEADER_LENGTH + int(run.lengths[-1])
        return run.data[start : int(run.starts[-1]) + size + (-size % FRAME_ALIGN)]
    out = bytearray()
    for record in run.records():
        append_frame(out, record.seq, record.rtype, 0, record.payload)
    return bytes(out)
