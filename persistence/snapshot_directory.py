"""The snapshot directory: list the snapshots, load the newest valid one, prune old
ones and the temporary files of dead writers.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from persistence._io import SysIO
from persistence.snapshot_errors import SnapshotCorrupt, step
from persistence.snapshot_format import (
    MAX_LOGICAL_BYTES,
    TMP_NAME_RE,
    SnapshotInfo,
    check_max_logical_bytes,
    parse_snapshot_name,
)
from persistence.snapshot_reader import Loaded, read_head, read_snapshot, verify_snapshot

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


def _snapshot_files(directory: Path) -> list[tuple[int, Path]]:
    """(seq, path) of the snapshot files by name, newest first; [] if no directory."""
    try:
        with os.scandir(directory) as entries:
            found = [(parse_snapshot_name(e.name), Path(e.path)) for e in entries]
    except FileNotFoundError:
        return []
    return sorted(((seq, path) for seq, path in found if seq is not None), reverse=True)


def list_snapshots(directory: Path) -> list[SnapshotInfo]:
    """The snapshots in ``directory``, newest (highest seq) first, from their names,
    headers and trailers only (cheap: damaged data is found by reading, not here).
    Temporary files are ignored; a file with a bad header or trailer is logged
    and left out."""
    infos = []
    for _, path in _snapshot_files(Path(directory)):
        try:
            infos.append(read_head(path))
        except FileNotFoundError:
            continue  # pruned meanwhile
        except SnapshotCorrupt as exc:
            logger.warning(
                "snapshot damaged, not listed: path=%s offset=%s reason=%s",
                path,
                exc.offset,
                exc.reason,
            )
    return infos


def load_newest_valid(
    directory: Path, *, max_logical_bytes: int = MAX_LOGICAL_BYTES
) -> Loaded | None:
    """Read the newest snapshot that passes every check; None if there is none.

    A damaged snapshot is logged as a warning (path, offset, reason) and skipped
    for an older one. An ``OSError`` other than a vanished file propagates: a
    disk that fails to read is not proof that the newest snapshot is bad.
    """
    check_max_logical_bytes(max_logical_bytes)
    loaded = newest_valid(
        directory, lambda path: read_snapshot(path, max_logical_bytes=max_logical_bytes)
    )
    if loaded is not None:
        info = loaded[0]
        logger.info("snapshot loaded: path=%s seq=%d bytes=%d", info.path, info.seq, info.bytes)
    return loaded


def newest_valid(directory: Path, read: Callable[[Path], _T | None]) -> _T | None:
    """``read`` of the snapshots of ``directory``, newest first, until one gives a
    result: a damaged one (``SnapshotCorrupt``) is logged and skipped for an older
    one, a vanished one (pruned meanwhile) skipped, as is one ``read`` gives None
    for. Any other ``OSError`` propagates: a disk that fails to read is not proof
    that the newest snapshot is bad."""
    for _, path in _snapshot_files(Path(directory)):
        try:
            found = read(path)
        except FileNotFoundError:
            continue
        except SnapshotCorrupt as exc:
            logger.warning(
                "snapshot damaged, skipped: path=%s offset=%s reason=%s",
                path,
                exc.offset,
                exc.reason,
            )
            continue
        if found is not None:
            return found
    return None


def prune_snapshots(
    directory: Path,
    keep: int,
    *,
    verify: bool = True,
    io: SysIO | None = None,
    max_logical_bytes: int = MAX_LOGICAL_BYTES,
) -> list[Path]:
    """Delete the snapshots older than the ``keep`` newest valid ones, and stale
    temporary files; returns the deleted paths.

    Valid means every check of ``read_snapshot`` passes, with this
    ``max_logical_bytes`` (``verify=False``: header and trailer only). A damaged or
    unreadable snapshot newer than those is kept, as evidence, and logged; it goes
    once ``keep`` valid snapshots are newer. Nothing is deleted while fewer than
    ``keep`` valid ones exist, so the newest valid snapshot is never deleted. A
    temporary file is stale when no writer holds its lock.
    """
    if type(keep) is not int or keep < 1:
        raise ValueError(f"prune_snapshots keep must be an integer >= 1; got {keep!r}")
    check_max_logical_bytes(max_logical_bytes)
    directory = Path(directory)
    io = io if io is not None else SysIO()
    deleted = [path for path in _temporary_files(directory) if _remove_if_stale(io, path)]
    valid = 0
    for _, path in _snapshot_files(directory):
        if valid >= keep:
            with step("prune", path):
                io.unlink(path)
            deleted.append(path)
            logger.info("snapshot pruned: path=%s keep=%d", path, keep)
            continue
        try:
            if verify:
                verify_snapshot(path, max_logical_bytes=max_logical_bytes)
            else:
                read_head(path)
        except (SnapshotCorrupt, OSError) as exc:
            logger.warning("snapshot damaged or unreadable, kept: path=%s reason=%s", path, exc)
            continue
        valid += 1
    if deleted:
        with step("fsync directory", directory):
            io.fsync_dir(directory)
    return deleted


def _temporary_files(directory: Path) -> list[Path]:
    try:
        with os.scandir(directory) as entries:
            return [Path(e.path) for e in entries if TMP_NAME_RE.fullmatch(e.name)]
    except FileNotFoundError:
        return []


def _remove_if_stale(io: SysIO, path: Path) -> bool:
    """Delete a temporary file that no live writer holds (a killed one's)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a writer is at work on it
        with step("prune", path):
            io.unlink(path)
    finally:
        os.close(fd)
    logger.info("snapshot removed temporary file: path=%s", path)
    return True
