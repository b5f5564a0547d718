"""A journal under load until killed, for the crash tests (not a test module).

``python -m tests.unit.persistence.journal_crash_child DIR SEED BATCHES`` opens (and
so recovers) the journal in DIR, prints ``start <seq>``, then runs
``journal_support.work(SEED, BATCHES)`` and prints ``ack <seq>`` each time an item is
durable: the acknowledgements the parent checks. It prints ``done`` at the end.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from persistence.journal import Journal, JournalConfig, journal_log_config
from tests.unit.persistence.journal_support import engine_config, work


def main(directory: str, seed: int, batches: int) -> None:
    """Run until killed (or the stream ends)."""
    config = JournalConfig(data_dir=Path(directory), log=journal_log_config(segment_bytes=32 << 10))
    with Journal.open(engine_config(), config) as journal:
        os.write(1, f"start {journal.durable_seq}\n".encode())
        for item in work(seed, batches, batch=16):
            if isinstance(item, np.ndarray):
                journal.submit(item)
            else:
                journal.balance_update(*item)
            os.write(1, f"ack {journal.durable_seq}\n".encode())
        os.write(1, b"done\n")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
