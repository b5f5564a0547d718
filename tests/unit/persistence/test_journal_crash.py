"""A real journal process killed with SIGKILL at random points: after recovery every
acknowledged change is there with its exact effects, and nothing else is half there."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.engine import Engine
from persistence.journal import Journal, JournalConfig, journal_log_config
from persistence.replay import replay
from persistence.verify import verify
from tests.unit.persistence.journal_support import engine_at, engine_config

ROOT = Path(__file__).resolve().parents[3]
BATCHES = 400
CHILD_BATCH = 16  #: commands per batch in journal_crash_child


def run_and_kill(
    directory: Path, seed: int, stream_seed: int, rng: random.Random, snapshot_every: int = 0
) -> tuple[int, int]:
    """Start the child, let it acknowledge some work, kill it; (start seq, last ack)."""
    child = subprocess.Popen(  # noqa: S603 -- our own module, fixed arguments
        [
            sys.executable,
            "-m",
            "tests.unit.persistence.journal_crash_child",
            str(directory),
            str(stream_seed),
            str(BATCHES),
            str(snapshot_every),
        ],
        cwd=ROOT,
        start_new_session=True,  # its own group: the snapshot writer it forks dies too
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    start = acked = -1
    try:
        wanted = rng.randint(3, 120)
        while wanted:
            line = child.stdout.readline().decode()
            if not line or line == "done\n":
                break
            word, value = line.split()
            if word == "start":
                start = acked = int(value)
            else:
                acked = int(value)
                wanted -= 1
        time.sleep(rng.random() * 0.005)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        rest, errors = child.communicate(timeout=60)
    for line in rest.decode().splitlines():
        if line.startswith("ack "):
            acked = int(line.split()[1])
    assert start >= 0, f"seed {seed}: the child did not start: {errors.decode()[-2000:]}"
    return start, acked


def recover(directory: Path) -> Journal:
    return Journal.open(
        engine_config(),
        JournalConfig(data_dir=directory, log=journal_log_config(segment_bytes=32 << 10)),
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_kill_minus_nine_keeps_every_acknowledged_change(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 -- reproducible test data
    # Round one: a fresh journal; the state after recovery must be exactly the stream
    # applied up to the recovered sequence (so every acknowledged command with its
    # exact effects, every command whole or absent).
    _, acked = run_and_kill(tmp_path, seed, stream_seed=seed, rng=rng)
    with recover(tmp_path) as journal:
        seq = journal.durable_seq
        assert seq >= acked, f"seed {seed}: acknowledged {acked}, recovered {seq}"
        assert (
            journal.engine.state_hash() == engine_at(seed, BATCHES, seq, CHILD_BATCH).state_hash()
        )
        assert journal.engine.check_invariants() == []
    # Rounds two and three: the child recovers and goes on with other work, and is
    # killed again; nothing acknowledged is lost, and a replay of the whole log from
    # the start reproduces every logged outcome and event.
    for round_number in (2, 3):
        start, acked = run_and_kill(tmp_path, seed, stream_seed=seed * 10 + round_number, rng=rng)
        assert start >= seq
        with recover(tmp_path) as journal:
            seq = journal.durable_seq
            assert seq >= acked, f"seed {seed} round {round_number}: acked {acked}, recovered {seq}"
            assert journal.engine.check_invariants() == []
            recovered = journal.engine.state_hash()
        fresh = Engine(engine_config())
        stats = replay(fresh, tmp_path / "log", 1, check_events=True)
        assert stats.last_seq == seq
        assert fresh.state_hash() == recovered


@pytest.mark.slow
@pytest.mark.parametrize("seed", [5, 6, 7])
def test_kill_minus_nine_mid_snapshot(tmp_path: Path, seed: int) -> None:
    # The child snapshots every few items; the whole process group (the snapshot
    # writer with it) is killed at random points. Recovery uses the newest complete
    # snapshot (a half-written one is only a temporary file) and the log after it.
    rng = random.Random(seed)  # noqa: S311 -- reproducible test data
    _, acked = run_and_kill(tmp_path, seed, stream_seed=seed, rng=rng, snapshot_every=3)
    with recover(tmp_path) as journal:
        seq = journal.durable_seq
        assert seq >= acked
        expected = engine_at(seed, BATCHES, seq, CHILD_BATCH).state_hash()
        assert journal.engine.state_hash() == expected
    for round_number in (2, 3):
        _, acked = run_and_kill(
            tmp_path, seed, stream_seed=seed * 10 + round_number, rng=rng, snapshot_every=2
        )
        with recover(tmp_path) as journal:
            assert journal.durable_seq >= acked
            assert journal.engine.check_invariants() == []
            recovered = journal.engine.state_hash()
        result = verify(engine_config(), tmp_path)
        assert result.ok, result.problems
        assert result.recovered_hash == recovered
