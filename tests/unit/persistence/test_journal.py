"""The durable engine: records in frames, recovery by replay, failures never acknowledged."""

from __future__ import annotations

import errno
import random
from pathlib import Path

import numpy as np
import pytest
from crc32c import crc32c as reference_crc

from core.engine import Engine
from core.schema import Result
from persistence.frames import (
    COMMAND_WORDS,
    EVENT_IMPLIED_WORDS,
    EVENT_WORDS,
    RT_ORDER,
    SCAN_OK,
    crc32c,
    decode_order,
    frame_batch,
    frame_bound,
    scan_frames,
)
from persistence.journal import Journal, JournalConfig, journal_log_config
from persistence.log import FsyncPolicy, LogUnavailable
from persistence.log_format import MAX_RECORD_BYTES_LIMIT
from persistence.replay import ReplayMismatch
from tests.unit.persistence.helpers import FaultyIO
from tests.unit.persistence.journal_support import apply, engine_at, engine_config, work

NO_EXTRA = np.zeros((0, COMMAND_WORDS), dtype=np.int64)


def jconfig(path: Path, fsync: FsyncPolicy = FsyncPolicy.BATCH) -> JournalConfig:
    return JournalConfig(
        data_dir=path,
        log=journal_log_config(fsync=fsync, segment_bytes=64 << 10),
    )


def run(journal: Journal, item: object) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(item, np.ndarray):
        return journal.submit(item)
    assert isinstance(item, tuple)
    return journal.balance_update(*item)


@pytest.mark.parametrize("length", [0, 1, 7, 8, 9, 63, 64, 65, 1000])
def test_crc32c_kernel_matches_the_library(length: int) -> None:
    rng = np.random.default_rng(length)
    data = rng.integers(0, 256, size=length + 16, dtype=np.uint8)
    for start in (0, 3, 8):
        chunk = data[start : start + length]
        assert crc32c(data, start, start + length, 0) == reference_crc(chunk.tobytes())
        assert crc32c(data, start, start + length, 12345) == reference_crc(chunk.tobytes(), 12345)


def test_frames_hold_every_command_result_and_event() -> None:
    engine = Engine(engine_config())
    buf = np.zeros(1 << 22, dtype=np.uint8)
    for item in work(seed=5, batches=30):
        if not isinstance(item, np.ndarray):
            apply(engine, item)
            continue
        seq0 = engine.counters()[0]
        results, events = engine.execute(item)
        ends = np.zeros(item.shape[0], dtype=np.int64)
        seqs = np.zeros_like(ends)
        assert frame_bound(item.shape[0], events.shape[0]) < buf.shape[0]
        end, count = frame_batch(
            buf,
            buf.view(np.int64),
            0,
            item.view(np.int64).reshape(-1, COMMAND_WORDS),
            results,
            events.view(np.int64).reshape(-1, EVENT_WORDS),
            0,
            False,
            ends,
            seqs,
        )
        accepted = np.flatnonzero(results["seq"] != 0)
        assert count == accepted.shape[0]
        assert list(seqs[:count]) == list(range(seq0 + 1, seq0 + 1 + count))
        starts = np.zeros(count + 1, dtype=np.int64)
        got_seqs = np.zeros(count + 1, dtype=np.int64)
        types = np.zeros(count + 1, dtype=np.int64)
        stop, n, problem = scan_frames(
            buf,
            buf.view(np.int64),
            0,
            end,
            seq0 + 1,
            MAX_RECORD_BYTES_LIMIT,
            starts,
            got_seqs,
            types,
        )
        assert (stop, n, problem) == (end, count, SCAN_OK)
        assert (types[:n] == RT_ORDER).all()
        stops = np.append(starts[1:n], end)
        ev64 = events.view(np.int64).reshape(-1, EVENT_WORDS)
        for k, i in enumerate(accepted):
            cmd = np.zeros(COMMAND_WORDS, dtype=np.int64)
            r = results[i]
            rows = np.zeros((r["event_count"], EVENT_WORDS), dtype=np.int64)
            n_ev, code, oid, value, extra, bad = decode_order(
                buf, buf.view(np.int64), starts[k], stops[k], cmd, NO_EXTRA, rows
            )
            assert (bad, extra) == (0, 0)
            assert (n_ev, code, oid, value) == (
                r["event_count"],
                r["code"],
                r["order_id"],
                r["value"],
            )
            assert np.array_equal(cmd, item[i : i + 1].view(np.int64))
            want = ev64[r["event_start"] : r["event_start"] + r["event_count"]].copy()
            want[:, :EVENT_IMPLIED_WORDS] = 0
            assert np.array_equal(rows, want)
        # One flipped bit anywhere is caught by the checksum.
        k = random.Random(int(end)).randrange(end)  # noqa: S311
        buf[k] ^= 0x10
        _, _, problem = scan_frames(
            buf,
            buf.view(np.int64),
            0,
            end,
            seq0 + 1,
            MAX_RECORD_BYTES_LIMIT,
            starts,
            got_seqs,
            types,
        )
        assert problem != SCAN_OK
        buf[k] ^= 0x10


def test_recovery_replays_the_log_into_the_same_state(tmp_path: Path) -> None:
    plain = Engine(engine_config())
    with Journal.open(engine_config(), jconfig(tmp_path)) as journal:
        for item in work(seed=7, batches=60):
            _results, _events = run(journal, item)
            apply(plain, item)
        assert journal.durable_seq == plain.counters()[0]
        expected = journal.engine.state_hash()
    assert expected == plain.state_hash()
    with Journal.open(engine_config(), jconfig(tmp_path)) as again:
        assert again.recovery is not None
        assert again.recovery.replay.records == plain.counters()[0]
        assert again.engine.state_hash() == expected
        assert again.engine.check_invariants() == []
        # And it goes on from there.
        more = list(work(seed=8, batches=5))[-3:]
        for item in more:
            run(again, item)
            apply(plain, item)
        assert again.engine.state_hash() == plain.state_hash()


def test_a_record_that_replays_differently_is_refused(tmp_path: Path) -> None:
    with Journal.open(engine_config(), jconfig(tmp_path)) as journal:
        for item in work(seed=9, batches=10):
            run(journal, item)
        last = journal.durable_seq
    # Change the order id the last order record says its command got, and re-seal the
    # frame: the checksum holds, the outcome cannot be reproduced (as if a different
    # engine had written the log).
    segment = sorted((tmp_path / "log").glob("*.log"))[-1]
    buf = np.fromfile(segment, dtype=np.uint8)
    starts = np.zeros(1 << 16, dtype=np.int64)
    seqs = np.zeros_like(starts)
    types = np.zeros_like(starts)
    first = int(segment.name.split(".")[0])
    stop, n, problem = scan_frames(
        buf,
        buf.view(np.int64),
        32,
        buf.shape[0],
        first,
        MAX_RECORD_BYTES_LIMIT,
        starts,
        seqs,
        types,
    )
    assert problem == SCAN_OK
    assert seqs[n - 1] == last
    k = max(i for i in range(n) if types[i] == RT_ORDER)
    at = int(starts[k])
    end = int(starts[k + 1]) if k + 1 < n else stop
    words = buf.view(np.int64)
    words[at // 8 + 4] += 1  # the result's order id
    crc = crc32c(buf, at + 8, end, crc32c(buf, at, at + 4, 0))
    buf[at + 4 : at + 8] = np.frombuffer(int(crc).to_bytes(4, "little"), dtype=np.uint8)
    buf.tofile(segment)
    with pytest.raises(ReplayMismatch, match=f"seq {seqs[k]}"):
        Journal.open(engine_config(), jconfig(tmp_path))


def test_a_failing_disk_acknowledges_nothing_and_recovers(tmp_path: Path) -> None:
    items = list(work(seed=11, batches=20))
    io = FaultyIO()
    journal = Journal.open(engine_config(), jconfig(tmp_path))
    journal._writer._io = io  # the writer's system calls, replaceable for fault tests
    for item in items[:18]:
        run(journal, item)
    acked = journal.durable_seq
    batch = next(i for i in items[18:] if isinstance(i, np.ndarray))
    io.fail("fdatasync", errno.EIO, times=-1)
    with pytest.raises(LogUnavailable):
        journal.submit(batch)
    assert journal.durable_seq == acked
    assert not journal.available
    executed_seq = journal.engine.counters()[0]
    # While the log fails, nothing more is executed: every result says unavailable.
    results, events = journal.submit(batch)
    assert (results["code"] == Result.SERVICE_UNAVAILABLE).all()
    assert events.shape[0] == 0
    assert journal.engine.counters()[0] == executed_seq
    io.clear()
    released = journal.flush()
    assert len(released) == 1
    assert journal.durable_seq == executed_seq
    assert journal.available
    expected = journal.engine.state_hash()
    journal.close()
    with Journal.open(engine_config(), jconfig(tmp_path)) as again:
        assert again.engine.state_hash() == expected


def test_a_torn_unacknowledged_batch_is_dropped_and_the_rest_recovered(tmp_path: Path) -> None:
    journal = Journal.open(engine_config(), jconfig(tmp_path))
    items = list(work(seed=13, batches=25))
    last = max(i for i, item in enumerate(items) if isinstance(item, np.ndarray))
    for item in items[:last]:
        run(journal, item)
    acked = journal.durable_seq
    # The last batch is executed and framed, and a part of it reaches the file before
    # the process dies: no fsync, no acknowledgement.
    batch = items[last]
    assert isinstance(batch, np.ndarray)
    results, events = journal.engine.execute_view(batch)
    journal._append_batch(batch, results, events)
    pending = bytes(journal._writer._pending)
    journal._writer._close_fds()  # killed: no orderly close
    segment = sorted((tmp_path / "log").glob("*.log"))[-1]
    with segment.open("ab") as f:
        f.write(pending[: len(pending) // 2 + 5])
    with Journal.open(engine_config(), jconfig(tmp_path)) as again:
        seq = again.engine.counters()[0]
        # Whole records of the torn batch may survive (each command is one record,
        # applied whole or not at all); nothing acknowledged is lost.
        assert acked <= seq < acked + int((results["seq"] != 0).sum())
        assert again.engine.state_hash() == engine_at(13, 25, seq).state_hash()
        assert again.engine.check_invariants() == []


def test_a_batch_released_by_submit_is_handed_out_by_the_next_flush(tmp_path: Path) -> None:
    items = [i for i in work(seed=12, batches=12) if isinstance(i, np.ndarray)]
    io = FaultyIO()
    journal = Journal.open(engine_config(), jconfig(tmp_path))
    journal._writer._io = io
    deposits = list(work(seed=12, batches=0))
    for item in deposits:
        run(journal, item)
    io.fail("fdatasync", errno.EIO, times=1)
    with pytest.raises(LogUnavailable):
        journal.submit(items[0])
    held_seq = journal.engine.counters()[0]
    # The disk works again: the next submit makes the held batch durable first, then
    # runs its own; the held batch's results come from flush, in order, exactly once.
    results, _ = journal.submit(items[1])
    assert journal.durable_seq == journal.engine.counters()[0] > held_seq
    released = journal.flush()
    assert len(released) == 1
    assert released[0][0]["seq"].max() == held_seq
    assert journal.flush() == []
    assert (results["seq"][results["seq"] != 0] > held_seq).all()
    journal.close()


def test_record_logs_what_ran_elsewhere_and_holds_it_through_a_failing_disk(
    tmp_path: Path,
) -> None:
    # The daemon's sequencer settles work the pair workers ran, on the journal's own
    # state, then has the journal log the results: replay must reproduce them.
    items = list(work(seed=13, batches=30))
    plain = Engine(engine_config())
    io = FaultyIO()
    journal = Journal.open(engine_config(), jconfig(tmp_path))
    journal._writer._io = io
    held_at = len(items) - 4
    for i, item in enumerate(items):
        if not isinstance(item, np.ndarray):
            run(journal, item)
            apply(plain, item)
            continue
        results, events = journal.engine.execute(item)  # "elsewhere": not through submit
        apply(plain, item)
        if i == held_at:
            io.fail("fdatasync", errno.EIO, times=-1)
            with pytest.raises(LogUnavailable):
                journal.record(item, results, events)
            assert not journal.available
            io.clear()
            assert [r["seq"].tolist() for r, _ in journal.flush()] == [results["seq"].tolist()]
            continue
        got, got_events = journal.record(item, results, events)
        assert got.tobytes() == results.tobytes()
        assert got_events.tobytes() == events.tobytes()
    assert journal.durable_seq == plain.counters()[0]
    expected = journal.engine.state_hash()
    assert expected == plain.state_hash()
    journal.close()
    with Journal.open(engine_config(), jconfig(tmp_path)) as again:
        assert again.engine.state_hash() == expected
        wrong = np.zeros(1, dtype=np.int64)
        with pytest.raises(TypeError, match="COMMAND_DTYPE"):
            again.record(wrong, wrong, np.zeros(0))
