"""Snapshot files of the engine state: written atomically, checked on every read.

A snapshot holds the engine's numpy arrays as they were after log record ``seq``,
the engine's state hash, and a few text settings (``meta``). Recovery loads the
newest valid snapshot and replays the log after its ``seq`` (DESIGN.md rule 4).
Arrays are stored as 64 KiB blocks, and blocks of zeros are left out: a mostly
empty engine costs little disk and time. This package knows files and arrays, not
the engine; docs/log.md, "Snapshots", explains the choices.

This module is the public surface; the parts live in ``snapshot_format`` (the
on-disk layout), ``snapshot_dtype`` (dtypes as JSON text), ``snapshot_errors``,
``snapshot_writer``, ``snapshot_reader``, ``snapshot_directory`` (list, load,
prune) and ``snapshot_fork`` (the background writer).
"""

from __future__ import annotations

from persistence.snapshot_directory import list_snapshots, load_newest_valid, prune_snapshots
from persistence.snapshot_errors import SnapshotCorrupt, SnapshotFailed
from persistence.snapshot_fork import BackgroundSnapshotter, SnapshotterConfig
from persistence.snapshot_format import (
    MAX_LOGICAL_BYTES,
    SnapshotInfo,
    parse_snapshot_name,
    snapshot_name,
)
from persistence.snapshot_reader import read_snapshot, verify_snapshot
from persistence.snapshot_writer import StateHash, write_snapshot

__all__ = [
    "MAX_LOGICAL_BYTES",
    "BackgroundSnapshotter",
    "SnapshotCorrupt",
    "SnapshotFailed",
    "SnapshotInfo",
    "SnapshotterConfig",
    "StateHash",
    "list_snapshots",
    "load_newest_valid",
    "parse_snapshot_name",
    "prune_snapshots",
    "read_snapshot",
    "snapshot_name",
    "verify_snapshot",
    "write_snapshot",
]
