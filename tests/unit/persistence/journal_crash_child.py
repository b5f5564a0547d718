"""A journal under load until killed, for the crash tests (not a test module).

``python -m tests.unit.persistence.journal_crash_child DIR SEED BATCHES SNAPSHOT_EVERY``
opens (and so recovers) the journal in DIR, prints ``start <seq>``, then runs
``journal_support.work(SEED, BATCHES)`` and prints ``ack <seq>`` each time an item is
durable: the acknowledgements the parent checks. Every SNAPSHOT_EVERY items (0:
never) it starts a background snapshot, so that kills land mid-snapshot too. It
prints ``done`` at the end.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from persistence.journal import Journal, JournalConfig, journal_log_config
from tests.unit.persistence.journal_support import engine_config, work


def main(directory: str, seed: int, batches: int, snapshot_every: int) -> None:
    """Run until killed (or the stream ends)."""
    config = JournalConfig(data_dir=Path(directory), log=journal_log_config(segment_bytes=32 << 10))
    with Journal.open(engine_config(), config) as journal:
        os.write(1, f"start {journal.durable_seq}\n".encode())
        for i, item in enumerate(work(seed, batches, batch=16), 1):
            if isinstance(item, np.ndarray):
                journal.submit(item)
            else:
                journal.balance_update(*item)
            os.write(1, f"ack {journal.durable_seq}\n".encode())
            if snapshot_every and i % snapshot_every == 0:
                journal.snapshot()
            journal.poll_snapshot()
        os.write(1, b"done\n")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
