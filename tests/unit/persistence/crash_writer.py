"""A log writer that runs until killed, for the crash tests (not a test module).

``python -m tests.unit.persistence.crash_writer DIR SEED`` appends ``record_for(seq)``
records in commits of random size and, after each ``commit`` returns, writes the
durable sequence to stdout as one line: the acknowledgements the parent checks.
"""

from __future__ import annotations

import os
import random
import sys

from persistence.log import LogWriter
from tests.unit.persistence.helpers import RTYPE, config, payload_for


def main(directory: str, seed: int) -> None:
    """Write until killed."""
    rng = random.Random(seed)  # noqa: S311 -- reproducible test data
    with LogWriter.open(directory, config(segment_bytes=8192)) as writer:
        seq = writer.last_seq
        os.write(1, f"{writer.durable_seq}\n".encode())
        while True:
            for _ in range(rng.randint(1, 20)):
                seq += 1
                writer.append(seq, RTYPE, payload_for(seq))
            durable = writer.commit()
            os.write(1, f"{durable}\n".encode())


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
