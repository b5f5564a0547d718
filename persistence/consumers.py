"""Registered consumers of the log (drainer, feed, ...) and how far each has drained.

A consumer registers once under a name, then confirms the sequence up to which it
has durably processed the log (``confirm``). Retention (``LogWriter.prune``) never
deletes a segment that holds a record after a consumer's confirmed sequence.
Positions live in ``<log>/consumers/<name>``, each replaced atomically (temporary
file, fsync, rename, fsync of the folder), so a crash leaves the old or the new
position, never a broken one. Any process may call these functions; one consumer
name must be confirmed by one process at a time.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from persistence._io import SysIO
from persistence._seqfile import read_seq_file, write_seq_file_atomically
from persistence.log_errors import ConsumerError
from persistence.log_format import (
    COMMITTED_FILE,
    COMMITTED_MAGIC,
    CONSUMER_MAGIC,
    CONSUMERS_DIR,
    MAX_SEQ,
    FormatError,
)

_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_NAME_RULE = "1 to 64 characters from a-z, 0-9, '_' and '-', starting with a letter"


def register_consumer(
    directory: str | os.PathLike[str], name: str, *, confirmed_seq: int = 0
) -> int:
    """Register consumer ``name``; returns its confirmed sequence.

    Idempotent: a registered consumer keeps its position (``confirmed_seq`` is used
    only for a new one: records after it are kept for the consumer). Register before
    reading, so that retention keeps what the consumer has not read yet.
    """
    path = _consumer_path(Path(directory), name)
    _check_seq(name, confirmed_seq)
    current = _read_position(path, name)
    if current is not None:
        return current
    folder = path.parent
    if not folder.is_dir():
        folder.mkdir(exist_ok=True)
        SysIO().fsync_dir(folder.parent)
    write_seq_file_atomically(SysIO(), path, CONSUMER_MAGIC, confirmed_seq)
    return confirmed_seq


def confirm(directory: str | os.PathLike[str], name: str, seq: int) -> None:
    """Record that consumer ``name`` has durably processed every record up to ``seq``.

    ``seq`` may not go backwards, nor beyond the log's committed sequence.
    """
    log_dir = Path(directory)
    path = _consumer_path(log_dir, name)
    _check_seq(name, seq)
    current = _read_position(path, name)
    if current is None:
        raise ConsumerError(f"consumer {name!r} is not registered in {log_dir}")
    if seq < current:
        raise ConsumerError(
            f"consumer {name!r} confirmed seq {current}; it cannot go back to {seq}"
        )
    try:
        committed = read_seq_file(log_dir / COMMITTED_FILE, COMMITTED_MAGIC)
    except FormatError:
        committed = None  # being rewritten by a writer that is opening; check skipped
    if committed is not None and seq > committed.seq:
        raise ConsumerError(
            f"consumer {name!r} cannot confirm seq {seq}: "
            f"the log is committed up to {committed.seq}"
        )
    if seq != current:
        write_seq_file_atomically(SysIO(), path, CONSUMER_MAGIC, seq)


def unregister_consumer(directory: str | os.PathLike[str], name: str) -> None:
    """Forget consumer ``name``: retention stops keeping records for it."""
    path = _consumer_path(Path(directory), name)
    try:
        path.unlink()
    except FileNotFoundError:
        raise ConsumerError(f"consumer {name!r} is not registered in {directory}") from None
    SysIO().fsync_dir(path.parent)


def consumer_positions(directory: str | os.PathLike[str]) -> dict[str, int]:
    """Every registered consumer and its confirmed sequence.

    Raises ``ConsumerError`` if a position file is damaged: retention must not guess.
    """
    folder = Path(directory) / CONSUMERS_DIR
    positions: dict[str, int] = {}
    if not folder.is_dir():
        return positions
    for entry in sorted(os.listdir(folder)):
        if _NAME_RE.fullmatch(entry) is None:
            continue  # temporary files of a confirmation in progress
        position = _read_position(folder / entry, entry)
        if position is not None:
            positions[entry] = position
    return positions


def _consumer_path(directory: Path, name: str) -> Path:
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise ConsumerError(f"consumer name {name!r} is invalid: use {_NAME_RULE}")
    return directory / CONSUMERS_DIR / name


def _check_seq(name: str, seq: int) -> None:
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise ConsumerError(f"consumer {name!r}: seq must be from 0 to {MAX_SEQ}; got {seq!r}")


def _read_position(path: Path, name: str) -> int | None:
    try:
        position = read_seq_file(path, CONSUMER_MAGIC)
    except FormatError as exc:
        raise ConsumerError(f"consumer {name!r}: position file is damaged: {exc}") from None
    return None if position is None else position.seq
