"""The durable engine: an ``Engine`` whose every state change is in the log before it
is acknowledged, recovered after any crash from the newest valid snapshot plus the log.

``Journal.submit`` executes a batch, frames every accepted command with its result
and events (``persistence.frames``), appends the frames and commits them (one write
and, with ``fsync = batch``, one fdatasync for the whole batch); only then does it
return the results (DESIGN.md rule 2). Rejected commands change nothing and are not
logged; their results are released with the batch.

When the disk fails (``LogUnavailable``), the batch that was executed but not made
durable is held, not acknowledged and never reported as failed (it will be applied:
it is in memory and will be written); ``submit`` raises. While a batch is held, new
batches are refused without being executed (every result ``SERVICE_UNAVAILABLE``)
and queries go on; ``flush`` retries the log and returns the held batches once they
are durable.

A new data directory (no snapshot, an empty log) gets a snapshot at seq 0 at once,
the **genesis snapshot**: the state the log starts from, with the risk limits the
config gave it. So a restart replays the log over that state, not over the config as
it is then, and an edited config's limits are drift (logged; the state's hold), not
a replay that disagrees with the log.

The config is the **genesis catalog** and the layout: assets and markets added at run
time (ADD_ASSET, ADD_MARKET: ``add_catalog``) are in the log and then in the state
(snapshots keep them). Recovery therefore starts from the config's genesis part
(``EngineConfig.genesis``), whatever catalog a caller passes, and the digests that say
which config a snapshot was taken under, or that a standby runs its primary's config,
cover that part only: adding a market changes neither. ``Journal.config`` is the
catalog as it is now (the engine's), ``Journal.genesis_config`` the config's.

A command whose record would exceed the log's record limit cannot be made durable
after it was executed: the journal then stops (``JournalFailed``) and the process
must restart; recovery rebuilds the state without it (it was never acknowledged).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from core.config import NO_LIMITS, AssetConfig, EngineConfig, Market, MarketConfig, with_limits
from core.engine import Engine
from core.schema import COMMAND_DTYPE, EVENT_DTYPE, RESULT_DTYPE, Result
from persistence.consumers import consumer_positions
from persistence.frames import (
    COMMAND_WORDS,
    EVENT_WORDS,
    RT_BALANCE,
    RT_CATALOG,
    frame_batch,
    frame_bound,
    rebatch_frames,
)
from persistence.log_config import FsyncPolicy, LogConfig
from persistence.log_errors import ConsumerError, LogError, LogUnavailable
from persistence.log_format import MAX_RECORD_BYTES_LIMIT
from persistence.log_writer import LogWriter
from persistence.replay import (
    FrameApplier,
    ReplayMismatch,
    ReplayStats,
    decode_catalog_record,
    encode_balance,
    encode_catalog_record,
    replay,
)
from persistence.snapshot import (
    BackgroundSnapshotter,
    SnapshotFailed,
    SnapshotInfo,
    list_snapshots,
    load_newest_valid,
    prune_snapshots,
)

logger = logging.getLogger(__name__)

#: A balance.update's business name and detail are kept in its record for the
#: history; these bound them (ViaBTC stores business as VARCHAR(30)).
MAX_BUSINESS_BYTES = 255
MAX_DETAIL_BYTES = 64 * 1024

LOG_DIR = "log"
SNAPSHOT_DIR = "snapshots"


def journal_log_config(**settings: object) -> LogConfig:
    """Log settings for the journal: records up to the format's limit (a command that
    sweeps many makers writes many events), room for a few of them pending."""
    values: dict[str, object] = {
        "max_record_bytes": MAX_RECORD_BYTES_LIMIT,
        "max_pending_bytes": 4 * MAX_RECORD_BYTES_LIMIT,
    }
    values.update(settings)
    return LogConfig(**values)  # type: ignore[arg-type]


class JournalFailed(LogError):
    """The in-memory state holds a change the log cannot take: restart and recover."""


@dataclass(frozen=True, slots=True)
class JournalConfig:
    """Where and how the journal keeps its files."""

    data_dir: Path
    log: LogConfig = field(default_factory=lambda: journal_log_config())
    keep_snapshots: int = 3
    #: Seconds between snapshots taken by ``tick`` (0: only on demand).
    snapshot_interval_s: float = 0.0
    #: The log's readers see only what they saw before until ``writer.limit_readers``
    #: lets them further (a primary in sync replication).
    hold_readers: bool = False

    def __post_init__(self) -> None:
        if type(self.keep_snapshots) is not int or not 1 <= self.keep_snapshots <= 1000:
            raise ValueError(f"keep_snapshots must be 1..1000; got {self.keep_snapshots!r}")
        if not 0 <= self.snapshot_interval_s <= 7 * 86400:
            raise ValueError(
                f"snapshot_interval_s must be 0..604800; got {self.snapshot_interval_s!r}"
            )


@dataclass(frozen=True, slots=True)
class Recovery:
    """How the journal came up."""

    snapshot_seq: int  #: 0 if it started from an empty state
    replay: ReplayStats
    seconds: float


def config_digest(config: EngineConfig) -> str:
    """A digest of the whole config (a standby must run its primary's: replication
    compares them): of its genesis catalog (``_as_configured``), so that the assets and
    markets added at run time, which are state, change nothing."""
    text = repr(_as_configured(config))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _as_configured(config: EngineConfig) -> EngineConfig:
    """``config`` as its file gives it: the genesis catalog, with the count of its
    entries implicit (``-1``: all), so that the config an engine holds (its counts set
    when it took a state) and the one that was loaded or built directly digest alike."""
    return replace(config.genesis(), genesis_assets=-1, genesis_markets=-1)


def layout_digest(config: EngineConfig) -> str:
    """A digest of everything in the config that shapes the state but the markets'
    risk limits: the config sets those for a new state only, then they are state
    (MARKET_LIMIT changes them, a snapshot keeps its own). A snapshot taken under
    another layout is not loaded."""
    markets = tuple(_without_limits(m) for m in config.markets)
    return config_digest(replace(config, markets=markets))


def _without_limits(market: Market) -> Market:
    return with_limits(market, NO_LIMITS)


def _taken_under(config: EngineConfig, meta: dict[str, str]) -> bool:
    """Whether a snapshot's ``meta`` says it was taken under ``config``'s layout (a
    snapshot written before the risk limits were state: under the same config)."""
    layout = meta.get("layout_digest")
    if layout is not None:
        return layout == layout_digest(config)
    return meta.get("config_digest") == config_digest(config)


class Journal:
    """An ``Engine`` behind the append log. Single-threaded: call it from one thread."""

    def __init__(
        self, config: EngineConfig, jconfig: JournalConfig, engine: Engine, writer: LogWriter
    ) -> None:
        """Use ``Journal.open``."""
        #: The config's part of the catalog, and the layout: what recovery starts from.
        self.genesis_config = config.genesis()
        self.jconfig = jconfig
        self.engine = engine
        self._writer = writer
        self._held: list[tuple[np.ndarray, np.ndarray]] = []
        self._released: list[tuple[np.ndarray, np.ndarray]] = []
        #: Batches appended with ``commit=False``, durable at the next ``commit``.
        self._uncommitted: list[tuple[np.ndarray, np.ndarray]] = []
        self._failed: str | None = None
        self._frames = np.zeros(1 << 20, dtype=np.uint8)
        self._ends = np.zeros(4096, dtype=np.int64)
        self._seqs = np.zeros(4096, dtype=np.int64)
        self.recovery: Recovery | None = None
        self._snap_dir = Path(jconfig.data_dir) / SNAPSHOT_DIR
        self._snapper = BackgroundSnapshotter()
        self._last_snapshot = time.monotonic()
        self._applier: FrameApplier | None = None
        #: Records ``follow`` stored and did not apply yet: (frames, ends, first seq, where).
        self._unapplied: list[tuple[np.ndarray, np.ndarray, int, Path]] = []

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, config: EngineConfig, jconfig: JournalConfig) -> Journal:
        """Recover (newest valid snapshot + the log after it) and open for writing.
        ``config``'s genesis part is taken (``EngineConfig.genesis``): the assets and
        markets added since come from the snapshot and the log."""
        engine, writer, recovery = _recover(config.genesis(), jconfig)
        journal = cls(config, jconfig, engine, writer)
        journal.recovery = recovery
        return journal

    def reopen(self) -> None:
        """Close the log and recover again from what the data directory holds now: a
        standby that replaced its snapshots and log with its primary's snapshot
        (``daemon.replication_standby``). Nothing may be held or uncommitted."""
        self._check_failed()
        if self._held or self._uncommitted:
            raise LogError("reopen with batches not durable")
        if self._snapper.running:
            self._snapper.wait(600.0)
        self._writer.close()
        self.engine, self._writer, self.recovery = _recover(self.genesis_config, self.jconfig)
        self._applier = None
        self._unapplied = []

    # ------------------------------------------------------------------ state

    @property
    def config(self) -> EngineConfig:
        """The catalog as it is now: the config's assets and markets and those added
        since (the engine's config; ``genesis_config`` is the config's part)."""
        return self.engine.config

    @property
    def durable_seq(self) -> int:
        """Every change up to this sequence is in the log."""
        return self._writer.durable_seq

    def consumer_positions(self) -> dict[str, int]:
        """The log's registered consumers and the sequence each has confirmed (empty
        if a position file cannot be read: that is logged)."""
        try:
            return consumer_positions(self._writer.directory)
        except (OSError, ConsumerError) as exc:
            logger.warning("log consumers unreadable: %s", exc)
            return {}

    @property
    def available(self) -> bool:
        """False while a batch is held (the log is failing) or after ``JournalFailed``."""
        return not self._held and self._failed is None

    @property
    def writer(self) -> LogWriter:
        """The log writer (for statistics)."""
        return self._writer

    # ------------------------------------------------------------------ writing

    def submit(self, commands: np.ndarray, *, commit: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Execute ``commands`` and return (results, events) once durable.

        Raises ``LogUnavailable`` if the log fails after the batch was executed (it
        is held: ``flush`` returns it once durable). While the log is unavailable the
        batch is not executed and every result is ``SERVICE_UNAVAILABLE``.
        ``commit=False``: return at once, the batch appended but durable only after
        the next ``commit`` (which holds it if the log fails).
        """
        self._check_failed()
        if not self._retry_held():
            return unavailable_results(commands.shape[0]), np.zeros(0, dtype=EVENT_DTYPE)
        commands = np.ascontiguousarray(commands)
        results, events = self.engine.execute_view(commands)
        self._append_batch(commands, results, events)
        return self._appended((results.copy(), events.copy()), commit)

    def _appended(
        self, out: tuple[np.ndarray, np.ndarray], commit: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """``out``'s batch is appended: make it durable now (``commit``, see ``commit``)
        or with the next ``commit``."""
        self._uncommitted.append(out)
        if commit:
            self.commit()
        return out

    @property
    def uncommitted(self) -> int:
        """Batches appended with ``commit=False`` and not committed yet."""
        return len(self._uncommitted)

    def commit(self) -> None:
        """Make the batches appended with ``commit=False`` durable (one fsync for all).

        Raises ``LogUnavailable`` if the log fails: they are then held, after any
        batch held before them, and ``flush`` returns them, in order, once durable.
        """
        self._check_failed()
        if not self._uncommitted:
            return
        outs, self._uncommitted = self._uncommitted, []
        try:
            self._writer.commit()
        except LogUnavailable:
            self._held.extend(outs)
            raise
        self._released.extend(self._held)  # durable now, in order before these
        self._held = []

    def record(
        self,
        commands: np.ndarray,
        results: np.ndarray,
        events: np.ndarray,
        *,
        commit: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Log commands that ran elsewhere, with their results and events, and return
        (results, events) once durable: the daemon's sequencer settles work that pair
        workers ran (docs/daemon.md) and acknowledges it after this.

        ``results`` (RESULT_DTYPE, one per command; ``event_start`` and
        ``event_count`` index ``events``) must be what ``Engine.execute`` gives for
        ``commands`` on the state the log holds so far: replay checks it. The
        commands have changed the state already, so they are never refused: if the
        log fails the batch is held (``flush`` returns it once durable) and
        ``LogUnavailable`` is raised, as ``submit`` does. ``commit=False`` as submit's.
        """
        self._check_failed()
        if commands.dtype != COMMAND_DTYPE or results.dtype != RESULT_DTYPE:
            raise TypeError("record() takes COMMAND_DTYPE commands and RESULT_DTYPE results")
        if events.dtype != EVENT_DTYPE or commands.shape != results.shape:
            raise TypeError("record() takes EVENT_DTYPE events and one result per command")
        commands = np.ascontiguousarray(commands)
        out = (np.ascontiguousarray(results).copy(), np.ascontiguousarray(events).copy())
        self._append_batch(commands, out[0], out[1])
        return self._appended(out, commit)

    def balance_update(
        self,
        user: int,
        asset: int,
        business: bytes,
        business_id: int,
        change: int,
        ts_ns: int,
        detail: bytes = b"",
        *,
        commit: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``Engine.balance_update``, durable; ``detail`` (the caller's JSON) is kept
        in the record for the history. Raises and refuses as ``submit`` does (a
        refused update is not logged); ``commit=False`` as submit's."""
        self._check_failed()
        if not self._retry_held():
            return unavailable_results(1), np.zeros(0, dtype=EVENT_DTYPE)
        if not isinstance(business, bytes | bytearray) or not isinstance(detail, bytes | bytearray):
            return _invalid(), np.zeros(0, dtype=EVENT_DTYPE)
        if len(business) > MAX_BUSINESS_BYTES or len(detail) > MAX_DETAIL_BYTES:
            return _invalid(), np.zeros(0, dtype=EVENT_DTYPE)
        results, events = self.engine.balance_update(
            user, asset, bytes(business), business_id, change, ts_ns
        )
        if results[0]["code"] != Result.OK:
            return results, events
        payload = encode_balance(
            int(user),
            int(asset),
            bytes(business),
            int(business_id),
            int(change),
            int(ts_ns),
            bytes(detail),
            events[0],
        )
        seq = int(results[0]["seq"])
        try:
            self._writer.append(seq, RT_BALANCE, payload)
        except LogError as exc:
            self._fail(f"balance.update seq {seq} could not be appended: {exc}")
        return self._appended((results, events), commit)

    def add_catalog(
        self, raw: AssetConfig | MarketConfig, ts_ns: int, *, commit: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """ADD_ASSET (``raw`` an ``AssetConfig``) or ADD_MARKET (a ``MarketConfig``),
        durable (docs/engine.md, "Adding assets and markets"): one result (``value`` the
        new index), no events. The engine runs the command as its record holds it (the
        record's JSON, read back), so replay runs the very same one. Raises and refuses
        as ``submit`` does (a refused add is not logged; a command that cannot be a
        record at all is INVALID_ARGUMENT); ``commit=False`` as submit's."""
        self._check_failed()
        if not self._retry_held():
            return unavailable_results(1), np.zeros(0, dtype=EVENT_DTYPE)
        try:
            payload = encode_catalog_record(raw, int(ts_ns))
            _, command = decode_catalog_record(payload)
        except (TypeError, ValueError):
            return _invalid(), np.zeros(0, dtype=EVENT_DTYPE)
        if isinstance(command, AssetConfig):
            results, events = self.engine.add_asset(command)
        else:
            results, events = self.engine.add_market(command)
        if results[0]["code"] != Result.OK:
            return results, events
        seq = int(results[0]["seq"])
        try:
            self._writer.append(seq, RT_CATALOG, payload)
        except LogError as exc:
            self._fail(f"add {command.name!r} seq {seq} could not be appended: {exc}")
        return self._appended((results, events), commit)

    def follow(
        self, frames: bytes | memoryview, first_seq: int, where: Path, *, apply: bool = True
    ) -> int:
        """Store and apply records another log holds: a replica following its
        primary (docs/operations.md). ``frames`` are whole log frames with
        consecutive sequences from ``first_seq``, which must follow this log.

        Every frame is checked (checksum, length, sequence) before anything is
        stored; the frames are appended under their sequences, in this writer's
        commit batch, durable at the next ``writer.commit()``, and each command is
        applied with replay's checks (the outcome its record holds): at once, or
        (``apply=False``) at ``apply_followed``, so that a standby acknowledges what
        is durable before it spends the time to apply it. Returns the last sequence.
        A bad frame raises ``LogCorrupt`` with nothing stored (fetch again). A command
        whose outcome differs from its record's (this state is not the primary's)
        raises ``JournalFailed``: the process must stop (a restart's replay stops at
        the same record, which the primary's log holds too).
        """
        self._check_failed()
        if self._applier is None:
            self._applier = FrameApplier(self.engine)
        if first_seq != self._writer.last_seq + 1:
            raise LogError(
                f"received seq {first_seq} does not follow the log, which ends at seq "
                f"{self._writer.last_seq}"
            )
        buf = np.frombuffer(frames, dtype=np.uint8).copy()  # resealed in place below
        max_payload = self._writer.config.max_record_bytes
        ends = self._applier.check(buf, first_seq, max_payload, where)
        if not ends.shape[0]:
            return first_seq - 1
        starts = np.concatenate(([0], ends[:-1]))
        per_record = self._writer.config.fsync is FsyncPolicy.ALWAYS
        rebatch_frames(
            buf, buf.view(np.int64), starts, ends, self._writer.next_batch_index, per_record
        )
        try:
            self._writer.append_framed(buf, ends, first_seq)
        except LogError as exc:
            self._fail(f"{ends.shape[0]} received records could not be appended: {exc}")
        self._unapplied.append((buf, ends, first_seq, where))
        if apply:
            self.apply_followed()
        return first_seq + int(ends.shape[0]) - 1

    def apply_followed(self) -> int:
        """Apply the records ``follow`` stored and has not applied, in order; returns
        the engine's sequence. ``JournalFailed`` as ``follow``'s."""
        self._check_failed()
        while self._unapplied and self._applier is not None:
            buf, ends, first_seq, where = self._unapplied.pop(0)
            try:
                self._applier.apply(buf, ends, first_seq, where)
            except ReplayMismatch as exc:
                self._fail(f"a received record does not replay: {exc}")
        return self.engine.counters()[0]

    def flush(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Retry a failing log; returns the batches that were held and are durable
        now, in order, to be acknowledged (empty if none). Raises ``LogUnavailable``
        while it still fails. ``submit`` retries too: what it releases is returned
        by the next ``flush``, so call ``flush`` after every ``LogUnavailable``
        until it returns them."""
        self._check_failed()
        if self._held:
            self._writer.commit()
            self._released.extend(self._held)
            self._held = []
        released, self._released = self._released, []
        return released

    def _retry_held(self) -> bool:
        """True if nothing is held (any held batch made durable now, for ``flush``)."""
        if not self._held:
            return True
        try:
            self._writer.commit()
        except LogUnavailable:
            return False
        self._released.extend(self._held)
        self._held = []
        return True

    def _append_batch(self, commands: np.ndarray, results: np.ndarray, events: np.ndarray) -> None:
        n = commands.shape[0]
        need = frame_bound(n, events.shape[0])
        if self._frames.shape[0] < need:
            size = max(need, 2 * self._frames.shape[0])
            self._frames = np.zeros(size + (-size % 8), dtype=np.uint8)
        if self._ends.shape[0] < n:
            self._ends = np.zeros(max(n, 2 * self._ends.shape[0]), dtype=np.int64)
            self._seqs = np.zeros_like(self._ends)
        cmds64 = commands.view(np.int64).reshape(n, COMMAND_WORDS)
        ev64 = events.view(np.int64).reshape(events.shape[0], EVENT_WORDS)
        frames64 = self._frames.view(np.int64)
        end, count = frame_batch(
            self._frames,
            frames64,
            0,
            cmds64,
            results,
            ev64,
            self._writer.next_batch_index,
            self._writer.config.fsync is FsyncPolicy.ALWAYS,
            self._ends,
            self._seqs,
        )
        if count < 0:
            self._fail(
                f"command {-1 - count} of a batch is a QUOTE that got a seq without its "
                "levels in the batch: it cannot be logged"
            )
        if count == 0:
            return
        try:
            self._writer.append_framed(self._frames[:end], self._ends[:count], int(self._seqs[0]))
        except LogError as exc:
            self._fail(f"a batch of {count} records could not be appended: {exc}")

    def _fail(self, reason: str) -> None:
        self._failed = reason
        logger.critical("journal failed: %s; restart to recover from the log", reason)
        raise JournalFailed(reason)

    def _check_failed(self) -> None:
        if self._failed is not None:
            raise JournalFailed(self._failed)

    # ------------------------------------------------------------------ snapshots

    def snapshot(self, engine: Engine | None = None) -> bool:
        """Start writing a snapshot of the current state in the background (a forked
        child hashes and writes it; the caller is held only for the fork). False if
        one is still being written, or a batch is held (the state is ahead of the
        log).

        ``engine``: the state to write instead of the journal's own engine, at the
        same sequence: the daemon's sequencer holds the balances and its workers the
        books, and composes them (``daemon.pipeline``) when nothing is in flight.
        """
        self._check_failed()
        if self._held or self._snapper.running:
            return False
        engine = self.engine if engine is None else engine
        seq = self._writer.durable_seq
        if engine.counters()[0] != seq:
            if engine is not self.engine:
                raise ValueError(f"the engine is at seq {engine.counters()[0]}, the log at {seq}")
            return False  # pragma: no cover -- nothing held: equal
        self._snap_dir.mkdir(parents=True, exist_ok=True)
        self._last_snapshot = time.monotonic()
        # The child hashes its copy-on-write view of the state: the caller only waits
        # for the fork.
        return self._snapper.start(
            self._snap_dir,
            seq,
            engine.state_hash,
            engine.state_arrays(),
            _meta(self.genesis_config),
        )

    @property
    def snapshot_running(self) -> bool:
        """A snapshot is being written (``poll_snapshot`` reaps it)."""
        return self._snapper.running

    @property
    def snapshot_stall_ns(self) -> int:
        """How long the last ``snapshot`` held the caller."""
        return self._snapper.stall_ns

    def poll_snapshot(self, timeout_s: float = 0.0) -> SnapshotInfo | None:
        """The snapshot that has just been written (then old snapshots beyond
        ``keep_snapshots`` and the log segments no kept snapshot and no consumer needs
        are deleted), or None. Raises ``SnapshotFailed`` if writing it failed."""
        info = self._snapper.wait(timeout_s) if timeout_s > 0 else self._snapper.poll()
        if info is None:
            return None
        prune_snapshots(self._snap_dir, self.jconfig.keep_snapshots)
        kept = list_snapshots(self._snap_dir)
        if kept:
            # Keep the log from the oldest kept snapshot on: if the newer ones are
            # damaged, an older one plus more log still recovers.
            self._writer.prune(min(s.seq for s in kept))
        return info

    def tick(self) -> SnapshotInfo | None:
        """Housekeeping for the caller's loop: start a snapshot when the interval has
        passed, and reap a finished one (see ``poll_snapshot``)."""
        interval = self.jconfig.snapshot_interval_s
        if interval > 0 and time.monotonic() - self._last_snapshot >= interval:
            self.snapshot()
        return self.poll_snapshot()

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Close the log (held batches stay unacknowledged: they are not durable).
        A snapshot being written is waited for."""
        try:
            if self._snapper.running:
                self.poll_snapshot(timeout_s=600.0)
        except SnapshotFailed as exc:  # the log is whole: the next start needs no snapshot
            logger.warning("journal closing: the snapshot in progress failed: %s", exc)
        finally:
            self._writer.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _recover(config: EngineConfig, jconfig: JournalConfig) -> tuple[Engine, LogWriter, Recovery]:
    """The engine of the newest valid snapshot plus the log after it, and the log's
    writer. ``config`` is the genesis config: the engine's catalog after it is the
    live one (the snapshot's added entries, then the log's)."""
    t0 = time.perf_counter()
    data_dir = Path(jconfig.data_dir)
    engine, snapshot_seq = _load_snapshot(config, data_dir / SNAPSHOT_DIR)
    genesis = snapshot_seq == 0 and not _any_snapshot(data_dir / SNAPSHOT_DIR)
    writer = LogWriter.open(
        data_dir / LOG_DIR,
        jconfig.log,
        start_seq=snapshot_seq + 1,
        hold_readers=jconfig.hold_readers,
    )
    try:
        if writer.last_seq < snapshot_seq:
            raise LogError(
                f"the snapshot at seq {snapshot_seq} is ahead of the log, which ends at "
                f"seq {writer.last_seq}: records the snapshot holds are missing"
            )
        stats = replay(engine, data_dir / LOG_DIR, snapshot_seq + 1)
        if stats.last_seq != writer.last_seq:
            raise LogError(f"replay ended at seq {stats.last_seq}, the log at {writer.last_seq}")
        if genesis and writer.last_seq == 0:
            _write_genesis(config, engine, data_dir / SNAPSHOT_DIR)
    except BaseException:
        writer.close()
        raise
    recovery = Recovery(snapshot_seq, stats, time.perf_counter() - t0)
    logger.info(
        "journal recovered: snapshot_seq=%d replayed=%d last_seq=%d replay_per_s=%.0f seconds=%.3f",
        snapshot_seq,
        stats.records,
        stats.last_seq,
        stats.records_per_s,
        recovery.seconds,
    )
    return engine, writer, recovery


def _any_snapshot(directory: Path) -> bool:
    return directory.is_dir() and bool(list_snapshots(directory))


def _write_genesis(config: EngineConfig, engine: Engine, directory: Path) -> None:
    """The genesis snapshot of a new data directory (seq 0; the module's docstring),
    written by a forked child as every snapshot is: scanning the (mostly untouched)
    arrays here would map every page of them into this process, and every later
    fork for a snapshot would pay for those mappings."""
    directory.mkdir(parents=True, exist_ok=True)
    snapper = BackgroundSnapshotter()
    snapper.start(directory, 0, engine.state_hash, engine.state_arrays(), _meta(config))
    info = snapper.wait()
    if info is None:  # pragma: no cover -- wait() without a timeout has the result
        raise LogError("the genesis snapshot was not written")
    logger.info("journal genesis snapshot: path=%s bytes=%d", info.path, info.bytes)


def _meta(config: EngineConfig) -> dict[str, str]:
    """A snapshot's ``meta``: the config it was taken under (its genesis part: the
    digests take no other)."""
    return {"config_digest": config_digest(config), "layout_digest": layout_digest(config)}


def unavailable_results(n: int) -> np.ndarray:
    """``n`` results refusing their commands with ``SERVICE_UNAVAILABLE``."""
    results = np.zeros(n, dtype=RESULT_DTYPE)
    results["code"] = Result.SERVICE_UNAVAILABLE
    return results


def _invalid() -> np.ndarray:
    results = np.zeros(1, dtype=RESULT_DTYPE)
    results["code"] = Result.INVALID_ARGUMENT
    return results


def _load_snapshot(config: EngineConfig, directory: Path) -> tuple[Engine, int]:
    """The engine of the newest valid snapshot and its sequence, or a new engine and 0."""
    if not directory.is_dir():
        return Engine(config), 0
    found = load_newest_valid(directory)
    if found is None:
        return Engine(config), 0
    info, arrays, meta = found
    engine = engine_from_snapshot(config, info, arrays, meta)
    for drift in engine.limit_drift():
        logger.warning(
            "journal limit drift: snapshot_seq=%d drift=%r; the state's value holds (the "
            "config sets limits for a new state only: change one with matchctl market limit)",
            info.seq,
            drift,
        )
    return engine, info.seq


def engine_from_snapshot(
    config: EngineConfig, info: SnapshotInfo, arrays: dict[str, np.ndarray], meta: dict[str, str]
) -> Engine:
    """The engine a snapshot holds, after checking it was taken under ``config`` (but
    for the risk limits, which are the state's) and that the rebuilt state has the
    hash the snapshot records (``LogError`` if not). Only ``config``'s genesis part
    counts: the snapshot brings the assets and markets added before it."""
    config = config.genesis()
    if not _taken_under(config, meta):
        raise LogError(
            f"snapshot {info.path} was taken under a different engine config; restore that "
            "config, or move the data directory aside"
        )
    engine = Engine(config, state=arrays)
    got = engine.state_hash()
    if got != info.state_hash:
        raise LogError(
            f"snapshot {info.path}: state hash {got} is not the {info.state_hash} it holds"
        )
    return engine
