"""A real writer process killed with SIGKILL at random points loses nothing it
acknowledged, and the log it leaves opens valid (process crashes; power loss is
modelled by the torn-tail and fault tests)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from persistence.log import LogWriter
from tests.unit.persistence.helpers import config, read_all, record_for

ROOT = Path(__file__).resolve().parents[3]
ROUNDS = 3


def run_and_kill(directory: Path, rng: random.Random, seed: int) -> int:
    """Start a writer, let it acknowledge a few commits, kill it; the last ack."""
    child = subprocess.Popen(  # noqa: S603 -- our own module, fixed arguments
        [sys.executable, "-m", "tests.unit.persistence.crash_writer", str(directory), str(seed)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    acked = -1
    try:
        wanted = rng.randint(2, 40)  # the start line, then at least one commit
        for _ in range(wanted):
            line = child.stdout.readline()
            if not line:
                break
            acked = int(line)
        time.sleep(rng.random() * 0.003)
    finally:
        child.send_signal(signal.SIGKILL)
        rest, errors = child.communicate(timeout=10)
    for line in rest.splitlines():  # acknowledged before the kill landed
        acked = int(line)
    assert acked >= 0, f"seed {seed}: the writer did not start: {errors.decode()}"
    assert child.returncode == -signal.SIGKILL, errors.decode()
    return acked


@pytest.mark.parametrize("seed", [11, 22, 33])
def test_kill_minus_nine_loses_no_acknowledged_record(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 -- reproducible test data
    acked = 0
    for round_number in range(ROUNDS):
        acked = max(acked, run_and_kill(tmp_path, rng, seed * 100 + round_number))
        with LogWriter.open(tmp_path, config(segment_bytes=8192)) as writer:
            last = writer.last_seq
        assert last >= acked, f"seed {seed} round {round_number}: acked {acked}, log ends {last}"
        got = read_all(tmp_path)
        assert got == [record_for(seq) for seq in range(1, last + 1)], f"seed {seed}"
    assert acked > 0
