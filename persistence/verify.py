"""Offline verification of a data directory (``matchctl verify``).

Two roads to the same state must meet: the way the journal recovers (newest valid
snapshot, then the log after it) and a replay of the whole log from its start (from
the genesis snapshot of seq 0, or an empty engine without one, or from the oldest
snapshot the log still reaches when old segments were pruned). Both replays compare
every command's outcome and events with what the log holds, and the engine's
invariants must hold at the end. Nothing is written: run it on a stopped daemon's
directory, or on a copy.

Both roads start from the config's genesis catalog: the assets and markets added at
run time come from the snapshot a road starts from and from the log's RT_CATALOG
records, which replay applies with the same checks as every other command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.config import EngineConfig
from core.engine import Engine
from persistence._segments import list_segments
from persistence.journal import LOG_DIR, SNAPSHOT_DIR, engine_from_snapshot
from persistence.log_errors import LogError
from persistence.replay import ReplayStats, replay
from persistence.snapshot import SnapshotInfo, list_snapshots, load_newest_valid, read_snapshot


@dataclass(frozen=True, slots=True)
class Verification:
    """What ``verify`` found."""

    recovered_hash: str
    recovered_from: int  #: snapshot sequence of the recovery road (0: empty engine)
    full_hash: str
    full_from: int  #: where the full replay started (0: the genesis snapshot, or empty)
    full: ReplayStats
    last_seq: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        """The two roads met and the invariants hold."""
        return self.recovered_hash == self.full_hash and not self.problems


def _engine_from(config: EngineConfig, info: SnapshotInfo) -> Engine:
    _, arrays, meta = read_snapshot(info.path)
    return engine_from_snapshot(config, info, arrays, meta)


def verify(config: EngineConfig, data_dir: Path) -> Verification:
    """Replay ``data_dir`` both ways and compare; raises ``LogError`` subclasses for
    damage that stops a replay (``LogCorrupt``, ``ReplayMismatch``). Only ``config``'s
    genesis part is used (``EngineConfig.genesis``)."""
    config = config.genesis()
    log_dir = data_dir / LOG_DIR
    snap_dir = data_dir / SNAPSHOT_DIR
    segments = list_segments(log_dir) if log_dir.is_dir() else []
    if not segments:
        raise LogError(f"no log segments in {log_dir}")
    first = segments[0].first_seq
    # The recovery road.
    found = load_newest_valid(snap_dir) if snap_dir.is_dir() else None
    if found is None:
        recovered, recovered_from = Engine(config), 0
    else:
        info, arrays, meta = found
        recovered, recovered_from = engine_from_snapshot(config, info, arrays, meta), info.seq
    tail = replay(recovered, log_dir, recovered_from + 1, check_events=True)
    # The whole-log road: from the genesis snapshot (seq 0, the state the log began
    # with) or an empty engine, or from the oldest snapshot a pruned log still reaches.
    snapshots = list_snapshots(snap_dir) if snap_dir.is_dir() else []
    genesis = [s for s in snapshots if s.seq == 0]
    if first == 1 and genesis:
        full_engine, full_from = _engine_from(config, genesis[0]), 0
    elif first == 1:
        full_engine, full_from = Engine(config), 0
    else:
        reachable = [s for s in snapshots if s.seq >= first - 1]
        if not reachable:
            raise LogError(
                f"the log starts at seq {first} and no snapshot reaches it: the whole log "
                "cannot be replayed"
            )
        oldest = min(reachable, key=lambda s: s.seq)
        full_engine, full_from = _engine_from(config, oldest), oldest.seq
    full = replay(full_engine, log_dir, full_from + 1, check_events=True)
    problems = [f"recovered: {p}" for p in recovered.check_invariants()]
    problems += [f"full replay: {p}" for p in full_engine.check_invariants()]
    if tail.last_seq != full.last_seq:
        problems.append(f"the roads end at seq {tail.last_seq} and {full.last_seq}")
    return Verification(
        recovered_hash=recovered.state_hash(),
        recovered_from=recovered_from,
        full_hash=full_engine.state_hash(),
        full_from=full_from,
        full=full,
        last_seq=full.last_seq,
        problems=problems,
    )
