"""Rebuild the append log from MySQL's ``operation_log`` when the local disk is lost
(docs/history.md, "Restoring the log from MySQL").

The drainer stores every log record's payload byte for byte, with its sequence and
record type. ``restore_log`` writes them, in sequence, into a new log directory
through ``LogWriter`` (fresh frames and checksums around the same payloads), so that
``Journal.open`` on it replays the same commands to the same state. Every record
type alike: the ADD_ASSET and ADD_MARKET records (RT_CATALOG) too, so the restored
log brings back the assets and markets added at run time under the unchanged config. It stops at the
drainer's position: what the drainer had not applied when the disk was lost is gone
with the disk, which is why the drainer's lag is a metric to watch. The sequence
must be whole from 1 (a gap is refused), and a directory that already holds a log
is refused, so nothing is ever overwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import MySQLdb  # type: ignore[import-untyped]

from persistence.history_db import HistoryUnavailable, server_error
from persistence.journal import journal_log_config
from persistence.log_config import LogConfig
from persistence.log_errors import LogFull
from persistence.log_writer import LogWriter

#: Records fetched per query and committed per fsync.
CHUNK = 4096


class RestoreError(RuntimeError):
    """The log cannot be restored: a gap in the sequence, or a log is already there."""


@dataclass(frozen=True, slots=True)
class Restored:
    """What ``restore_log`` wrote."""

    records: int
    last_seq: int


def restore_log(
    connect: Callable[[], Any],
    log_dir: str | Path,
    config: LogConfig | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> Restored:
    """Write every record of ``operation_log`` (from seq 1 on) into a new log at
    ``log_dir`` (with the journal's log settings unless ``config``); returns how many
    and the last sequence. ``RestoreError`` if ``log_dir`` holds a log already or the
    sequence has a gap; ``HistoryUnavailable`` if MySQL fails (what was written is
    a valid log up to the last commit)."""
    path = Path(log_dir)
    if path.exists() and any(path.iterdir()):
        raise RestoreError(f"{path} is not empty: restore into a new directory")
    conn = connect()
    writer: LogWriter | None = None
    try:
        writer = LogWriter.open(path, config or journal_log_config())
        expected = 1
        cursor = conn.cursor()
        while True:
            cursor.execute(
                "SELECT seq, rtype, record FROM operation_log WHERE seq >= %s "
                "ORDER BY seq LIMIT %s",
                (expected, CHUNK),
            )
            rows = cursor.fetchall()
            if not rows:
                break
            for seq, rtype, record in rows:
                if int(seq) != expected:
                    raise RestoreError(
                        f"operation_log has no record {expected} (next is {seq}): the "
                        "history is not whole; nothing after it can be restored"
                    )
                try:
                    writer.append(expected, int(rtype), bytes(record))
                except LogFull:  # the batch is as large as pending may be: sync it first
                    writer.commit()
                    writer.append(expected, int(rtype), bytes(record))
                expected += 1
            writer.commit()
            if progress is not None:
                progress(expected - 1)
        cursor.close()
        return Restored(expected - 1, writer.last_seq)
    except MySQLdb.Error as exc:
        raise HistoryUnavailable(f"reading operation_log failed: {server_error(exc)}") from exc
    finally:
        if writer is not None:
            writer.close()
        conn.close()
