"""Settings of the log writer (``LogConfig``) and its counters (``LogStats``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.errors import ConfigError
from persistence.log_format import MAX_RECORD_BYTES_LIMIT, frame_length

DEFAULT_SEGMENT_BYTES = 64 << 20
MIN_SEGMENT_BYTES = 4096
MAX_SEGMENT_BYTES = 1 << 30
DEFAULT_MAX_RECORD_BYTES = 1 << 20
DEFAULT_MAX_PENDING_BYTES = 64 << 20
MAX_PENDING_BYTES_LIMIT = 1 << 30


class FsyncPolicy(StrEnum):
    """When a commit is durable: after each record, once per commit, or never synced."""

    ALWAYS = "always"
    BATCH = "batch"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Settings of a log writer; checked on construction (``ConfigError`` if bad).

    ``fsync``: durability level (a ``FsyncPolicy`` or its name). ``segment_bytes``:
    a segment is closed when the next commit would take it past this size (a commit
    larger than this gets a segment of its own). ``max_record_bytes``: largest
    payload. ``max_pending_bytes``: most bytes appended and not yet committed.
    """

    fsync: FsyncPolicy = FsyncPolicy.BATCH
    segment_bytes: int = DEFAULT_SEGMENT_BYTES
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES

    def __post_init__(self) -> None:
        if not isinstance(self.fsync, FsyncPolicy):
            try:
                object.__setattr__(self, "fsync", FsyncPolicy(self.fsync))
            except ValueError:
                raise ConfigError(
                    f"log fsync must be one of always, batch, none; got {self.fsync!r}"
                ) from None
        _check_setting("segment_bytes", self.segment_bytes, MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES)
        _check_setting("max_record_bytes", self.max_record_bytes, 1, MAX_RECORD_BYTES_LIMIT)
        _check_setting(
            "max_pending_bytes",
            self.max_pending_bytes,
            frame_length(self.max_record_bytes),
            MAX_PENDING_BYTES_LIMIT,
        )


def _check_setting(name: str, value: int, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise ConfigError(f"log {name} must be an integer from {low} to {high}; got {value!r}")


@dataclass(frozen=True, slots=True)
class LogStats:
    """A snapshot of a writer's counters (since it was opened)."""

    last_seq: int
    durable_seq: int
    pending_records: int
    pending_bytes: int
    commits: int
    syncs: int
    bytes_written: int
    segments_created: int
    failures: int
    torn_tail_bytes_truncated: int
