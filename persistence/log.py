"""The append log of matchd: durable, sequenced, checksummed records in segment files.

One ``LogWriter`` (one thread of one process) appends records and commits them in
groups; any number of ``LogReader``s, in any process, follow the log behind it;
registered consumers confirm what they have drained, and ``LogWriter.prune``
deletes only segments that neither the newest snapshot nor a consumer needs.
Each record is ``(seq, rtype, payload)``; the payload is opaque bytes here.

This module is the public surface; the parts live in ``log_config`` (settings),
``log_writer``, ``log_reader``, ``consumers``, ``log_errors`` and ``log_format``
(the on-disk layout, also described in docs/log.md).
"""

from __future__ import annotations

from persistence.consumers import (
    confirm,
    consumer_positions,
    register_consumer,
    unregister_consumer,
)
from persistence.log_config import FsyncPolicy, LogConfig, LogStats
from persistence.log_errors import (
    ConsumerError,
    LogBusy,
    LogCorrupt,
    LogError,
    LogFull,
    LogUnavailable,
    RecordTooLarge,
    SeqPruned,
    SequenceError,
)
from persistence.log_reader import LogReader, Record, read_committed_seq
from persistence.log_writer import LogWriter

__all__ = [
    "ConsumerError",
    "FsyncPolicy",
    "LogBusy",
    "LogConfig",
    "LogCorrupt",
    "LogError",
    "LogFull",
    "LogReader",
    "LogStats",
    "LogUnavailable",
    "LogWriter",
    "Record",
    "RecordTooLarge",
    "SeqPruned",
    "SequenceError",
    "confirm",
    "consumer_positions",
    "read_committed_seq",
    "register_consumer",
    "unregister_consumer",
]
