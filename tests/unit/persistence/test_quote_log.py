"""Mass quotes in the log: a QUOTE and its levels are one record (``frames``), records
written before quotes read as they did, replay gives a group to the engine whole, and
the history (per record, in bulk, in MySQL) has its quote orders and a ``mass_quote``
operation with the ladder.

The tests of the last section run a journal (an engine that executes QUOTE); the
others read records framed by hand (``quote_log``), and those marked ``kernel`` run
under NUMBA_DISABLE_JIT too."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.engine import Engine
from core.schema import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    MAX_QUOTE_LEVELS,
    RESULT_DTYPE,
    CommandKind,
    EventKind,
    FinishReason,
    OrderFlag,
)
from persistence.consumers import unregister_consumer
from persistence.drainer import Drainer
from persistence.frames import (
    AMOUNT_WORD,
    COMMAND_WORDS,
    EVENT_IMPLIED_WORDS,
    EVENT_WORDS,
    MAX_EXTRA_COMMANDS,
    RT_ORDER,
    SCAN_OK,
    decode_order,
    decode_orders,
    frame_batch,
    frame_bound,
    scan_frames,
)
from persistence.history_batch import BatchDecoder
from persistence.history_bulk import COLUMNS, BulkRows, tsv_row
from persistence.history_rows import HistoryRows, RecordDecoder, RowBatch
from persistence.journal import LOG_DIR, Journal, JournalConfig, JournalFailed, journal_log_config
from persistence.log_format import MAX_RECORD_BYTES_LIMIT, SEGMENT_HEADER_LENGTH
from persistence.log_reader import LogReader, Record
from persistence.replay import FrameApplier, replay
from tests.support.mysql import TestDatabase, query, schema_database
from tests.support.world import Limits, stream_config
from tests.unit.persistence import market_ops_log as ops
from tests.unit.persistence import quote_log as q
from tests.unit.persistence.journal_support import apply, engine_config
from tests.unit.persistence.test_market_ops_history import assert_bulk_rows_equal_per_record

NO_EXTRA = np.zeros((0, COMMAND_WORDS), dtype=np.int64)
NO_EVENTS = np.zeros((0, EVENT_WORDS), dtype=np.int64)

#: Two records framed before mass quotes existed (``frame_batch`` of the commit before
#: them, byte for byte): seq 3 and 7 of ``market_ops_log`` (a PUT_LIMIT with its
#: ORDER_PUT and FREEZE; a CANCEL_MARKET with two finishes and two unfreezes, value 2).
OLD_FRAMES = bytes.fromhex(
    "e0000000fb6b44c1030000000000000001000000000000000200000000000000"
    "010000000000000000000000000000006f0000007c846100cc03010000000000"
    "c0c65736fe9c97170100000000000000102700000000000020a1070000000000"
    "0a00000005000000000001010000000001000000000000000100000000000000"
    "102700000000000020a107000000000020a1070000000000c0c65736fe9c9717"
    "0a00000005000000000000000100010100000000c0c65736fe9c971700000000"
    "0100000000000000010000000000000000f2052a0100000000f2052a01000000"
    "000efad5feffffff00f2052a010000000000000005050000400100008f36e37c"
    "0400000000000000010000000100000004000000000000000000000000000000"
    "0200000000000000410000007c8461004c0301007c8461004c03010000000000"
    "c0cf9436fe9c9717000009000000000001000000000000000100000000000000"
    "102700000000000020a107000000000020a1070000000000c0c65736fe9c9717"
    "0a00000005000000000000000302010100000000c0c65736fe9c971700000000"
    "0100000000000000010000000000000000e40b540200000000f2052a01000000"
    "000efad5feffffff000000000506000002000000000000000200000000000000"
    "282300000000000090d003000000000090d003000000000000096736fe9c9717"
    "0a0000000500000000000000030202010000000000096736fe9c971700000000"
    "0200000000000000020000000000000000e876481700000080461c8600000000"
    "80b9e379ffffffff0000020005060000"
)


def _scan(buf: np.ndarray, end: int, first_seq: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, stops) of the frames that fill ``buf[:end]``, from ``first_seq``."""
    cap = 64
    starts = np.zeros(cap, dtype=np.int64)
    seqs = np.zeros(cap, dtype=np.int64)
    types = np.zeros(cap, dtype=np.int64)
    stop, n, problem = scan_frames(
        buf, buf.view(np.int64), 0, end, first_seq, MAX_RECORD_BYTES_LIMIT, starts, seqs, types
    )
    assert (stop, problem) == (end, SCAN_OK)
    assert (types[:n] == RT_ORDER).all()
    assert list(seqs[:n]) == list(range(first_seq, first_seq + n))
    return starts[:n], np.append(starts[1:n], end)


def _decode(
    buf: np.ndarray, start: int, stop: int, events: int
) -> tuple[tuple[int, ...], np.ndarray, np.ndarray, np.ndarray]:
    """decode_order of one frame: (result fields and n_extra, command, extras, events)."""
    cmd = np.zeros(COMMAND_WORDS, dtype=np.int64)
    extra = np.zeros((MAX_EXTRA_COMMANDS, COMMAND_WORDS), dtype=np.int64)
    rows = np.zeros((events, EVENT_WORDS), dtype=np.int64)
    n_ev, code, oid, value, n_extra, bad = decode_order(
        buf, buf.view(np.int64), start, stop, cmd, extra, rows
    )
    assert bad == 0
    return (n_ev, code, oid, value, n_extra), cmd, extra[:n_extra], rows


def _padded(data: bytes) -> np.ndarray:
    buf = np.zeros(len(data) + 64, dtype=np.uint8)
    buf[: len(data)] = np.frombuffer(data, dtype=np.uint8)
    return buf


# ------------------------------------------------------------------ frames


@pytest.mark.kernel
def test_a_quote_is_one_record_holding_its_levels() -> None:
    batch = q.quote_batch()
    frames, ends, count = q.frame(batch)
    assert count == 3  # three QUOTEs; the refused CANCEL and the levels are no record
    buf = _padded(frames.tobytes())
    starts, stops = _scan(buf, int(ends[-1]), q.SEQ_QUOTE)
    assert list(stops) == list(ends)
    cmds64 = batch.commands.view(np.int64).reshape(-1, COMMAND_WORDS)
    ev64 = batch.events.view(np.int64).reshape(-1, EVENT_WORDS).copy()
    ev64[:, :EVENT_IMPLIED_WORDS] = 0
    for k, (row, k_levels) in enumerate(((0, 3), (5, 2), (8, 0))):
        r = batch.results[row]
        got, cmd, extra, events = _decode(buf, int(starts[k]), int(stops[k]), 8)
        assert got == (r["event_count"], 0, r["order_id"], r["value"], k_levels)
        assert np.array_equal(cmd, cmds64[row])
        assert np.array_equal(extra, cmds64[row + 1 : row + 1 + k_levels])
        first = int(r["event_start"])
        assert np.array_equal(events[: r["event_count"]], ev64[first : first + r["event_count"]])
        # The head word: n_events | code << 32 | n_extra << 48.
        head = int(buf.view(np.int64)[int(starts[k]) // 8 + 3])
        assert head == int(r["event_count"]) | k_levels << 48


@pytest.mark.kernel
def test_records_written_before_quotes_read_and_frame_as_they_did() -> None:
    logged = [*ops.market_ops_commands()[:1], *ops.market_ops_commands()[4:5]]
    commands = np.concatenate([c.command for c in logged])
    events = np.concatenate([c.events for c in logged])
    results = np.zeros(2, dtype=RESULT_DTYPE)
    results[0] = (3, logged[0].order_id, 0, 0, 0, logged[0].events.shape[0], 0)
    results[1] = (4, 0, logged[1].value, 0, logged[0].events.shape[0], 4, 0)
    # Framed today: the same bytes (n_extra 0 leaves the head word as it was).
    out = np.zeros(frame_bound(2, events.shape[0]), dtype=np.uint8)
    ends, seqs = np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int64)
    end, count = frame_batch(
        out, out.view(np.int64), 0, commands.view(np.int64).reshape(2, COMMAND_WORDS), results,
        events.view(np.int64).reshape(-1, EVENT_WORDS), 0, False, ends, seqs,
    )  # fmt: skip
    assert (end, count) == (len(OLD_FRAMES), 2)
    assert out[:end].tobytes() == OLD_FRAMES
    # Read today: what was written, no extra record.
    buf = _padded(OLD_FRAMES)
    starts, stops = _scan(buf, len(OLD_FRAMES), 3)
    for k, c in enumerate(logged):
        got, cmd, extra, rows = _decode(buf, int(starts[k]), int(stops[k]), 4)
        assert got == (c.events.shape[0], 0, c.order_id, c.value, 0)
        assert np.array_equal(cmd, c.command.view(np.int64))
        assert extra.shape[0] == 0
        want = c.events.view(np.int64).reshape(-1, EVENT_WORDS).copy()
        assert np.array_equal(rows[: c.events.shape[0]], want)


def _full_quote(levels: int, ts_ns: int) -> np.ndarray:
    """A QUOTE group of ``levels`` levels with every word of every record non-zero."""
    group = q.quote_records(ts_ns, [(1 + i % 2, 10_000 + i, 1000 + i) for i in range(levels)])
    words = group.view(np.int64).reshape(-1, COMMAND_WORDS)
    kind_amount = words[:, [AMOUNT_WORD, 6]].copy()
    words[...] = np.arange(1, words.size + 1).reshape(words.shape)
    words[:, [AMOUNT_WORD, 6]] = kind_amount
    return group


@pytest.mark.kernel
def test_frame_bound_holds_full_quotes_and_events() -> None:
    k = MAX_EXTRA_COMMANDS
    commands = np.concatenate([_full_quote(k, 1), _full_quote(k, 2), _full_quote(1, 3)])
    n = commands.shape[0]
    n_events = 50
    events = np.zeros(n_events, dtype=EVENT_DTYPE)
    events.view(np.int64)[:] = np.arange(1, events.view(np.int64).size + 1)
    results = np.zeros(n, dtype=RESULT_DTYPE)
    for seq, (row, first, count) in enumerate(((0, 0, 20), (k + 1, 20, 30), (2 * k + 2, 50, 0))):
        results[row] = (seq + 1, 0, 0, 0, first, count, 0)
    bound = frame_bound(n, n_events)
    out = np.zeros(bound + 4096, dtype=np.uint8)
    ends, seqs = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    end, count = frame_batch(
        out, out.view(np.int64), 0, commands.view(np.int64).reshape(n, COMMAND_WORDS), results,
        events.view(np.int64).reshape(-1, EVENT_WORDS), 0, False, ends, seqs,
    )  # fmt: skip
    assert count == 3
    assert end <= bound
    assert not out[bound:].any()
    starts, stops = _scan(out, end, 1)
    got, _cmd, extra, _rows = _decode(out, int(starts[0]), int(stops[0]), 20)
    assert got[4] == k
    assert np.array_equal(extra, commands[1 : k + 1].view(np.int64).reshape(k, COMMAND_WORDS))


@pytest.mark.kernel
def test_a_quote_without_its_levels_in_the_batch_is_not_framed() -> None:
    # A CANCEL, then a QUOTE of 3 levels with 2 of them in the batch.
    commands = np.concatenate([ops.command(CommandKind.CANCEL, 1, order_id=1),
                               q.quote_records(2, [(1, 10_000, 1000)] * 3)[:3]])  # fmt: skip
    n = commands.shape[0]
    results = np.zeros(n, dtype=RESULT_DTYPE)
    results["seq"][[0, 1]] = (1, 2)
    out = np.zeros(frame_bound(n, 0), dtype=np.uint8)
    ends, seqs = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    _, count = frame_batch(
        out, out.view(np.int64), 0, commands.view(np.int64).reshape(n, COMMAND_WORDS), results,
        NO_EVENTS, 0, False, ends, seqs,
    )  # fmt: skip
    assert count == -1 - 1  # command 1


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("word", "change"),
    [
        (3, 1 << 48),  # one extra record more than framed
        (3, -(1 << 48)),  # one fewer
        (3, (MAX_EXTRA_COMMANDS + 1 - 3) << 48),  # more than any QUOTE has
        (3, 1 << 32),  # a code: still adds up (the drainer refuses it)
    ],
)
def test_extra_counts_that_do_not_add_up_are_refused(word: int, change: int) -> None:
    frames, ends, _ = q.frame(q.quote_batch())
    buf = _padded(frames.tobytes())
    starts, stops = _scan(buf, int(ends[-1]), q.SEQ_QUOTE)
    buf.view(np.int64)[int(starts[0]) // 8 + word] += change
    cmd = np.zeros(COMMAND_WORDS, dtype=np.int64)
    extra = np.zeros((MAX_EXTRA_COMMANDS, COMMAND_WORDS), dtype=np.int64)
    *_, bad = decode_order(
        buf, buf.view(np.int64), int(starts[0]), int(stops[0]), cmd, extra, NO_EVENTS
    )
    assert bad == (0 if change == 1 << 32 else 1)


@pytest.mark.kernel
def test_a_levels_count_unlike_its_quotes_amount_is_refused() -> None:
    frames, ends, _ = q.frame(q.quote_batch())
    buf = _padded(frames.tobytes())
    starts, stops = _scan(buf, int(ends[-1]), q.SEQ_QUOTE)
    # The second QUOTE (2 levels, 4 events): frame header and head 3 words each, then
    # 7 masks in 4 words, then the QUOTE's non-zero words; its amount is one of them.
    words = buf.view(np.int64)
    at = int(starts[1]) // 8
    mask = int(words[at + 6]) & 0xFFFFFFFF
    amount = at + 6 + 4 + bin(mask & ((1 << AMOUNT_WORD) - 1)).count("1")
    assert words[amount] == 2
    words[amount] = 5  # says 5 levels, holds 2
    cmd = np.zeros(COMMAND_WORDS, dtype=np.int64)
    extra = np.zeros((MAX_EXTRA_COMMANDS, COMMAND_WORDS), dtype=np.int64)
    *_, bad = decode_order(buf, words, int(starts[1]), int(stops[1]), cmd, extra, NO_EVENTS)
    assert bad == 1
    words[amount] = 2
    *_, bad = decode_order(buf, words, int(starts[1]), int(stops[1]), cmd, extra, NO_EVENTS)
    assert bad == 0


@pytest.mark.kernel
def test_replay_decoding_never_splits_a_group() -> None:
    """``decode_orders`` fills its command rows with whole frames only: a frame that
    does not fit is left for the next call."""
    groups = [q.quote_records(i + 1, [(1, 10_000 + j, 1000) for j in range(i % 7)])
              for i in range(40)]  # fmt: skip
    commands = np.concatenate(groups)
    results = np.zeros(commands.shape[0], dtype=RESULT_DTYPE)
    heads_at = np.cumsum([0] + [g.shape[0] for g in groups[:-1]])
    results["seq"][heads_at] = np.arange(1, 41)
    results["value"][heads_at] = np.arange(100, 140)
    n = commands.shape[0]
    out = np.zeros(frame_bound(n, 0), dtype=np.uint8)
    ends, seqs = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    _end, count = frame_batch(
        out, out.view(np.int64), 0, commands.view(np.int64).reshape(n, COMMAND_WORDS), results,
        NO_EVENTS, 0, False, ends, seqs,
    )  # fmt: skip
    assert count == 40
    starts = np.concatenate(([0], ends[: count - 1]))
    stops = ends[:count].copy()
    cmds64 = np.zeros((1 + MAX_EXTRA_COMMANDS, COMMAND_WORDS), dtype=np.int64)
    heads = np.zeros(40, dtype=np.int64)
    expect = np.zeros((40, 4), dtype=np.int64)
    done, calls, decoded = 0, 0, []
    while done < count:
        m, rows, bad = decode_orders(
            out, out.view(np.int64), starts[done:], stops[done:], cmds64, heads, expect,
            NO_EVENTS,
        )  # fmt: skip
        assert bad == -1
        assert m > 0
        assert rows == sum(groups[done + i].shape[0] for i in range(m))
        assert list(heads[:m]) == list(np.cumsum([0] + [groups[done + i].shape[0]
                                                        for i in range(m - 1)]))  # fmt: skip
        assert list(expect[:m, 3]) == list(range(100 + done, 100 + done + m))
        decoded.append(cmds64[:rows].copy())
        done += m
        calls += 1
    assert calls > 1
    assert np.array_equal(
        np.concatenate(decoded), commands.view(np.int64).reshape(n, COMMAND_WORDS)
    )


# ------------------------------------------------------------------ history


@pytest.fixture
def hand_log(tmp_path: Path) -> Path:
    log_dir = tmp_path / "log"
    q.write_quote_log(log_dir)
    return log_dir


def _records(log_dir: Path) -> list[Record]:
    with LogReader(log_dir) as reader:
        return list(reader.read(1))


def _rows(records: list[Record], config: Any = None) -> RowBatch:
    rows = HistoryRows(config or stream_config(Limits()))
    batch = RowBatch()
    decoder = RecordDecoder()
    for record in records:
        rows.add(batch, decoder.decode(record))
    return batch


def test_a_quote_record_decodes_with_its_levels(hand_log: Path) -> None:
    records = _records(hand_log)
    decoder = RecordDecoder(events=1)  # grown on the way
    batch = q.quote_batch()
    for seq, row, k in ((3, 0, 3), (4, 5, 2), (5, 8, 0)):
        decoded = decoder.decode(records[seq - 1])
        assert decoded.command is not None
        assert decoded.extra is not None
        assert decoded.command.tobytes() == batch.commands[row].tobytes()
        assert decoded.extra.tobytes() == batch.commands[row + 1 : row + 1 + k].tobytes()
        assert decoded.value == batch.results[row]["value"]
        assert decoded.events.tobytes() == batch.events[batch.events["seq"] == seq].tobytes()
    # In bulk: the same records, the levels one after the other.
    bulk = BatchDecoder(events=2).decode(records)
    assert list(bulk.extra_counts) == [3, 2, 0]
    assert bulk.extras.tobytes() == batch.commands[[1, 2, 3, 6, 7]].tobytes()
    assert bulk.record(1).extra.tobytes() == batch.commands[[6, 7]].tobytes()  # type: ignore[union-attr]


def test_quote_orders_and_the_ladder_are_in_the_history(hand_log: Path) -> None:
    rows = _rows(_records(hand_log))
    ops_rows = {row[0]: (row[3], row[4], json.loads(row[5])) for row in rows.operations}
    assert ops_rows[q.SEQ_QUOTE] == (
        "mass_quote", q.USER,
        {"method": "mass_quote", "order_id": 0,
         "params": [q.USER, "BTC_USDT", [[1, "0.1", "100"], [1, "0.2", "101"], [2, "0.1", "90"]],
                    "0.002", "0.001", "mm"]},
    )  # fmt: skip
    assert ops_rows[q.SEQ_REQUOTE][2]["params"][2] == [[1, "0.05", "100"], [2, "0.1", "90"]]
    assert ops_rows[q.SEQ_PULL][2]["params"] == [q.USER, "BTC_USDT", [], "0.002", "0.001", "mm"]
    # The quote orders that left the book: order 2 (stale at seq 4), 1 and 3 (seq 5).
    finished = sorted((r[0], r[1], r[4], r[6], r[8], r[9], r[10], r[-1]) for r in rows.orders)
    cancelled = int(FinishReason.CANCELED)
    assert finished == [
        (1, q.SEQ_PULL, q.USER, "mm", 1, "100", "0.05", cancelled),
        (2, q.SEQ_REQUOTE, q.USER, "mm", 1, "101", "0.2", cancelled),
        (3, q.SEQ_PULL, q.USER, "mm", 2, "90", "0.1", cancelled),
    ]
    # Freezing and unfreezing change no total: the deposits only.
    assert [row[0] for row in rows.balances] == [1, 2]
    assert rows.deals == []


@pytest.mark.parametrize("size", [1, 2, 3, q.LAST_SEQ])
def test_bulk_rows_of_quotes_equal_the_per_record_rows(hand_log: Path, size: int) -> None:
    decoder = BatchDecoder(events=2)  # room for no level at first: grown on the way
    assert_bulk_rows_equal_per_record(_records(hand_log), size, decoder)


@pytest.fixture
def db() -> Iterator[TestDatabase]:
    with schema_database() as database:
        yield database


@pytest.mark.integration
@pytest.mark.parametrize("bulk", [True, False])
def test_the_drainer_stores_quotes_once(hand_log: Path, db: TestDatabase, bulk: bool) -> None:
    config = stream_config(Limits())
    drainer = Drainer(hand_log, config, db.connect, batch_records=2, bulk=bulk)
    try:
        drainer.drain_available()
        assert drainer.statistics().position == q.LAST_SEQ
    finally:
        drainer.close()
    methods = query(db, "SELECT seq, method, user_id, detail FROM operation_log ORDER BY seq")
    assert [(s, m, u) for s, m, u, _ in methods] == [
        (1, "update_balance", 1), (2, "update_balance", 1), (3, "mass_quote", 1),
        (4, "mass_quote", 1), (5, "mass_quote", 1),
    ]  # fmt: skip
    assert json.loads(methods[3][3])["params"][2] == [[1, "0.05", "100"], [2, "0.1", "90"]]
    assert query(db, "SELECT id, seq, source, status FROM order_history ORDER BY id") == [
        (1, 5, "mm", 2), (2, 4, "mm", 2), (3, 5, "mm", 2),
    ]  # fmt: skip
    record = query(db, "SELECT record FROM operation_log WHERE seq = 3")[0][0]
    assert bytes(record) == _records(hand_log)[2].payload


def test_levels_are_at_most_twice_max_quote_levels() -> None:
    assert MAX_EXTRA_COMMANDS == 2 * MAX_QUOTE_LEVELS
    assert COMMAND_DTYPE.itemsize == 8 * COMMAND_WORDS


# ------------------------------------------------------------------ with the engine


@dataclass(frozen=True, slots=True)
class QuoteJournal:
    """A journal of ``quote_log.quoting_work`` (``quote_journal``)."""

    data_dir: Path
    engine: Engine  #: a plain engine fed the same work: the state the log must give
    state_hash: str  #: the journal's engine's, when it closed
    quotes: int  #: QUOTE records logged
    levels: int  #: level records in them
    stale: int  #: quote orders those QUOTEs cancelled (their values)
    full: int  #: QUOTE records logged with 2 x MAX_QUOTE_LEVELS levels
    unlogged: int  #: QUOTEs accepted that changed nothing (no seq, no record)


def _jconfig(data_dir: Path) -> JournalConfig:
    return JournalConfig(data_dir=data_dir, log=journal_log_config(segment_bytes=64 << 10))


@pytest.fixture(scope="module")
def quote_journal(tmp_path_factory: pytest.TempPathFactory) -> QuoteJournal:
    data_dir = tmp_path_factory.mktemp("quotes") / "data"
    plain = Engine(engine_config())
    counts: Counter[str] = Counter()
    with Journal.open(engine_config(), _jconfig(data_dir)) as journal:
        for item in q.quoting_work(seed=31, batches=80):
            if isinstance(item, np.ndarray):
                results, _ = journal.submit(item)
                quote = (item["kind"] == CommandKind.QUOTE) & (results["code"] == 0)
                logged = quote & (results["seq"] != 0)
                counts["quotes"] += int(logged.sum())
                counts["levels"] += int(item["amount"][logged].sum())
                counts["stale"] += int(results["value"][logged].sum())
                counts["full"] += int((item["amount"][logged] == MAX_EXTRA_COMMANDS).sum())
                counts["unlogged"] += int((quote & (results["seq"] == 0)).sum())
            else:
                journal.balance_update(*item)
            apply(plain, item)
        state_hash = journal.engine.state_hash()
    return QuoteJournal(data_dir, plain, state_hash, **counts)


def test_the_stream_logged_quotes_that_change_ladders(quote_journal: QuoteJournal) -> None:
    assert quote_journal.quotes > 20
    assert quote_journal.levels > 4 * MAX_QUOTE_LEVELS
    assert quote_journal.full >= 1
    assert quote_journal.stale > MAX_EXTRA_COMMANDS  # the full ladder removed, and more
    assert quote_journal.unlogged >= 1
    assert quote_journal.state_hash == quote_journal.engine.state_hash()


def test_a_journal_with_quotes_recovers_the_same_state(
    quote_journal: QuoteJournal, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"  # a copy: the module's other tests read the log as it is
    shutil.copytree(quote_journal.data_dir, data_dir)
    with Journal.open(engine_config(), _jconfig(data_dir)) as again:
        assert again.recovery is not None
        assert again.recovery.replay.records == quote_journal.engine.counters()[0]
        assert again.engine.state_hash() == quote_journal.state_hash
        assert again.engine.check_invariants() == []
        # And it goes on from there, quoting.
        more = list(q.quoting_work(seed=32, batches=6))[-4:]
        for item in more:
            if isinstance(item, np.ndarray):
                again.submit(item)
        expected = again.engine.state_hash()
    with Journal.open(engine_config(), _jconfig(data_dir)) as third:
        assert third.engine.state_hash() == expected


def test_replay_gives_every_quote_its_events(quote_journal: QuoteJournal) -> None:
    log_dir = quote_journal.data_dir / LOG_DIR
    engine = Engine(engine_config())
    stats = replay(engine, log_dir, 1, check_events=True)
    assert stats.records == quote_journal.engine.counters()[0]
    assert engine.state_hash() == quote_journal.state_hash
    # A replica applying the segments' frames as shipped: the same.
    replica = FrameApplier(Engine(engine_config()), check_events=True)
    segments = sorted(log_dir.glob("*.log"))
    assert len(segments) > 1
    for path in segments:
        buf = np.fromfile(path, dtype=np.uint8)[SEGMENT_HEADER_LENGTH:].copy()
        first = int(path.name.split(".")[0])
        ends = replica.check(buf, first, MAX_RECORD_BYTES_LIMIT, path)
        replica.apply(buf, ends, first, path)
    assert replica.last_seq == stats.last_seq


def test_a_quote_whose_levels_are_missing_stops_the_journal(tmp_path: Path) -> None:
    with Journal.open(engine_config(), _jconfig(tmp_path)) as journal:
        commands = q.quote_records(1, [(1, 10_000, 1000)] * 3)[:3]
        results = np.zeros(3, dtype=RESULT_DTYPE)
        results["seq"][0] = 1
        with pytest.raises(JournalFailed, match="QUOTE"):
            journal.record(commands, results, np.zeros(0, dtype=EVENT_DTYPE))
        assert journal.durable_seq == 0


def test_the_history_of_quotes_in_bulk_is_the_per_record_history(
    quote_journal: QuoteJournal,
) -> None:
    records = _records(quote_journal.data_dir / LOG_DIR)
    config = engine_config()
    want = _rows(records, config)
    methods = Counter(row[3] for row in want.operations)
    assert methods["mass_quote"] == quote_journal.quotes
    ladders = [json.loads(row[5])["params"][2] for row in want.operations
               if row[3] == "mass_quote"]  # fmt: skip
    assert sum(len(ladder) for ladder in ladders) == quote_journal.levels
    # The quote orders that finished have their rows, from their ORDER_FINISH events.
    decoder = RecordDecoder()
    quote_orders = {
        int(e["order_id"])
        for r in records
        for e in decoder.decode(r).events
        if e["kind"] == EventKind.ORDER_FINISH and int(e["flags"]) & int(OrderFlag.QUOTE)
    }
    assert len(quote_orders) >= quote_journal.stale
    assert quote_orders <= {row[0] for row in want.orders}
    bulk = BulkRows(config)
    decoder_bulk = BatchDecoder(events=64)
    for start in range(0, len(records), 389):
        part = records[start : start + 389]
        text = bulk.build(decoder_bulk.decode(part))
        expected = _rows(part, config)
        for table in COLUMNS:
            assert Counter(text.lines[table]) == Counter(
                tsv_row(row) for row in getattr(expected, table)
            ), (table, start)


@pytest.mark.integration
def test_quotes_drain_into_a_history_that_adds_up(
    quote_journal: QuoteJournal, db: TestDatabase
) -> None:
    from tests.unit.persistence.test_drainer import check_history

    log_dir = quote_journal.data_dir / LOG_DIR
    drainer = Drainer(log_dir, engine_config(), db.connect, batch_records=97)
    try:
        drainer.drain_available()
    finally:
        drainer.close()
    unregister_consumer(log_dir, "mysql")  # the module's other tests read the log too
    check_history(db, quote_journal.data_dir, quote_journal.engine)
    assert query(db, "SELECT COUNT(*) FROM operation_log WHERE method = 'mass_quote'") == [
        (quote_journal.quotes,)
    ]
