"""Retention: which closed segments of the log nobody needs any more.

A segment may go only when every record in it is below both the sequence of the
oldest snapshot recovery may still use and, for every registered consumer, its
confirmed sequence + 1; the segment being written never goes, and only a prefix of
the log does (no holes). ``LogWriter.prune`` calls this under its failure handling.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

from persistence._io import SysIO
from persistence._segments import list_segments
from persistence.consumers import consumer_positions

logger = logging.getLogger(__name__)


def prune_segments(directory: Path, io: SysIO, snapshot_seq: int) -> list[Path]:
    """Delete the prefix of segments that lie wholly below the limit; returns them.
    ``OSError`` passes up (the writer turns it into ``LogUnavailable``)."""
    limit = snapshot_seq
    for position in consumer_positions(directory).values():
        limit = min(limit, position + 1)
    deleted: list[Path] = []
    segments = list_segments(directory)
    for segment, following in itertools.pairwise(segments):
        if following.first_seq > limit:
            break  # ``segment`` holds records at or after the limit
        io.unlink(segment.path)
        deleted.append(segment.path)
        logger.info(
            "log segment pruned: path=%s last_seq=%d limit=%d",
            segment.path,
            following.first_seq - 1,
            limit,
        )
    if deleted:
        io.fsync_dir(directory)
    return deleted
