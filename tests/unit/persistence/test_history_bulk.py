"""``persistence.history_bulk``: the decimal kernel against ``core.fixed.format_units``,
and the rows of a whole batch, line for line, against ``HistoryRows``' rows of the
same records (so the bulk path writes exactly the values of the per-record path)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from core.fixed import format_units
from core.schema import INT64_MAX
from persistence.frames import RT_BALANCE, RT_ORDER
from persistence.history_batch import BatchDecoder
from persistence.history_bulk import (
    COLUMNS,
    BulkRows,
    decimals,
    escape,
    link_balances,
    seconds,
    tsv_row,
)
from persistence.history_rows import HistoryRecordError, HistoryRows, RecordDecoder, RowBatch
from persistence.journal import LOG_DIR
from persistence.log_reader import LogReader
from tests.support.world import Limits, stream_config

INT64_MIN = -INT64_MAX - 1


def _edge_values() -> list[int]:
    values = [0, 1, -1, 9, 10, -10, 100, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1]
    for k in range(19):
        values += [10**k, -(10**k), 10**k - 1, -(10**k) + 1, 10**k + 1, 5 * 10**k]
    return values


@pytest.mark.kernel
def test_format_decimals_matches_format_units_on_edges_and_every_scale() -> None:
    values = _edge_values()
    for places in range(19):
        got = decimals(np.array(values, dtype=np.int64), np.full(len(values), places))
        assert got == [format_units(v, places).encode() for v in values], places


@pytest.mark.kernel
def test_format_decimals_matches_format_units_on_random_values() -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    values = np.concatenate(
        [
            rng.integers(INT64_MIN, INT64_MAX, size=n, dtype=np.int64, endpoint=True),
            rng.integers(-(10**6), 10**6, size=n, dtype=np.int64),
            rng.integers(0, 10**12, size=n, dtype=np.int64) * 10 ** rng.integers(0, 6, size=n),
        ]
    )
    places = np.asarray(rng.integers(0, 19, size=values.shape[0]), dtype=np.int64)
    got = decimals(values, places)
    want = [
        format_units(v, p).encode() for v, p in zip(values.tolist(), places.tolist(), strict=True)
    ]
    assert got == want


def test_decimals_of_nothing_is_empty() -> None:
    assert decimals(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)) == []


@pytest.mark.kernel
def test_link_balances_finds_the_deal_and_rate_of_its_own_record() -> None:
    # record 0: events 0..3, record 1: events 4..5 (deal 7 again: not record 0's)
    kinds = np.array([1, 4, 5, 5, 5, 3], dtype=np.int64)  # put, deal, balance x3, finish
    from core.schema import EventKind

    kinds = np.array(
        [
            EventKind.ORDER_PUT, EventKind.DEAL, EventKind.BALANCE, EventKind.BALANCE,
            EventKind.BALANCE, EventKind.ORDER_FINISH,
        ],
        dtype=np.int64,
    )  # fmt: skip
    order_ids = np.array([11, 11, 11, 12, 11, 11], dtype=np.int64)
    deal_ids = np.array([0, 7, 7, 7, 7, 0], dtype=np.int64)
    taker = np.array([20, 0, 0, 0, 0, 30], dtype=np.int64)
    maker = np.array([10, 0, 0, 0, 0, 15], dtype=np.int64)
    start = np.array([0, 0, 0, 0, 4, 4], dtype=np.int64)
    stop = np.array([4, 4, 4, 4, 6, 6], dtype=np.int64)
    targets = np.array([2, 3, 4], dtype=np.int64)
    deal = np.empty(3, dtype=np.int64)
    rate = np.empty(3, dtype=np.int64)
    link_balances(kinds, order_ids, deal_ids, taker, maker, start, stop, targets, deal, rate)
    # order 11 took deal 7 (taker rate 20); order 12 has no order event: (0, 0), maker;
    # event 4's record has no deal: maker rate of its record's order 11 (15).
    assert deal.tolist() == [1, 1, -1]
    assert rate.tolist() == [20, 0, 15]


def test_escape_and_tsv_row() -> None:
    assert escape(b"a\tb\nc\\d\0") == b"a\\tb\\nc\\\\d\\0"
    assert tsv_row((1, 0.5, "x\ty", b"\x00\xff")) == b"1\t0.5\tx\\ty\t00ff"
    ns = np.array([1_700_000_000_123_456_789, 0, 1], dtype=np.int64)
    assert seconds(ns) == [repr(int(v) / 1e9).encode() for v in ns.tolist()]


def _drained_log(tmp_path: Path) -> Path:
    from tests.unit.persistence.test_drainer import write_log

    write_log(tmp_path, 1500)
    return tmp_path / LOG_DIR


def test_bulk_rows_equal_the_per_record_rows_line_for_line(tmp_path: Path) -> None:
    config = stream_config(Limits())
    log_dir = _drained_log(tmp_path)
    decoder = RecordDecoder()
    with LogReader(log_dir) as reader:
        raw = list(reader.read(1))
    records = [decoder.decode(r) for r in raw]
    rows = HistoryRows(config)
    bulk = BulkRows(config)
    batches = BatchDecoder(events=16)  # grown on the way
    for size in (1, 7, 512, len(records)):
        for start in range(0, len(records), size):
            part = records[start : start + size]
            batch = RowBatch()
            for record in part:
                rows.add(batch, record)
            text = bulk.build(batches.decode(raw[start : start + size]))
            assert (text.first_seq, text.last_seq) == (batch.first_seq, batch.last_seq)
            for table in COLUMNS:
                want = Counter(tsv_row(row) for row in getattr(batch, table))
                assert Counter(text.lines[table]) == want, (table, start, size)
        if size == len(records):
            assert len(text.lines["deals"]) > 100  # the stream traded
            assert len(text.lines["balances"]) > 100


def test_batch_decoder_refuses_records_out_of_order_or_damaged(tmp_path: Path) -> None:
    log_dir = _drained_log(tmp_path)
    with LogReader(log_dir) as reader:
        records = list(reader.read(1, limit=40))
    decoder = BatchDecoder()
    with pytest.raises(HistoryRecordError, match="not in order"):
        decoder.decode([records[0], records[2]])
    order = next(r for r in records if r.rtype == RT_ORDER)
    with pytest.raises(HistoryRecordError, match=f"seq {order.seq}: order record"):
        decoder.decode([order._replace(payload=order.payload[:-8])])
    with pytest.raises(HistoryRecordError, match="unknown record type"):
        decoder.decode([order._replace(rtype=99)])


def test_batch_decoder_gives_each_record_back_as_the_single_decoder_does(
    tmp_path: Path,
) -> None:
    log_dir = _drained_log(tmp_path)
    with LogReader(log_dir) as reader:
        records = list(reader.read(1))
    batch = BatchDecoder(events=1).decode(records)
    single = RecordDecoder()
    orders = [single.decode(r) for r in records if r.rtype == RT_ORDER]
    assert batch.orders == len(orders)
    assert batch.balances  # the log holds deposits
    assert [b.seq for b in batch.balances] == [r.seq for r in records if r.rtype == RT_BALANCE]
    for i, want in enumerate(orders):
        got = batch.record(i)
        assert (got.seq, got.ts_ns, got.order_id, got.value, got.payload) == (
            want.seq, want.ts_ns, want.order_id, want.value, want.payload,
        )  # fmt: skip
        assert got.command is not None
        assert want.command is not None
        assert got.command.tobytes() == want.command.tobytes()
        assert got.events.tobytes() == want.events.tobytes()


@pytest.mark.integration
def test_load_data_and_insert_paths_store_the_same_tables(tmp_path: Path) -> None:
    """The whole log drained with LOAD DATA, with INSERT (bulk=False) and through a
    connection that refuses LOAD DATA LOCAL (local_infile=0: the fallback) leaves
    three databases with equal tables, value for value."""
    from persistence.drainer import Drainer
    from tests.support.mysql import apply_schema, fresh_database

    config = stream_config(Limits())
    log_dir = _drained_log(tmp_path)
    tables = {
        "order_history": "id",
        "deal_history": "deal_id, role",
        "balance_history": "seq, idx",
        "operation_log": "seq",
    }
    contents = []
    for n, (bulk, local_infile) in enumerate(((True, 1), (False, 1), (True, 0))):
        with fresh_database() as db:
            apply_schema(db)

            def connect(db: object = db, local_infile: int = local_infile) -> object:
                return db.connect(local_infile=local_infile)  # type: ignore[attr-defined]

            drainer = Drainer(log_dir, config, connect, name=f"run{n}", batch_records=97, bulk=bulk)
            try:
                drainer.drain_available()
                assert drainer._load_data is (bulk and local_infile == 1)
            finally:
                drainer.close()
            conn = db.connect()
            try:
                cursor = conn.cursor()
                got = {}
                for table, key in tables.items():
                    cursor.execute(f"SELECT * FROM {table} ORDER BY {key}")  # noqa: S608
                    got[table] = cursor.fetchall()
            finally:
                conn.close()
            contents.append(got)
    assert contents[0] == contents[1] == contents[2]
    assert len(contents[0]["deal_history"]) > 100


def test_decoding_runs_read_in_bulk_equals_decoding_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``decode_runs`` over ``LogReader.read_runs`` (frames decoded where they were
    read, runs cut at chunk ends and one-record runs at segment ends) gives what
    ``decode`` gives over the same records."""
    import persistence.log_reader as log_reader

    log_dir = _drained_log(tmp_path)
    monkeypatch.setattr(log_reader, "RUN_CHUNK_BYTES", 4096)  # many runs
    with LogReader(log_dir) as reader:
        records = list(reader.read(1))
        for start, limit in ((1, 7), (1, 500), (300, 1000), (len(records) - 3, 50)):
            runs = reader.read_runs(start, limit=limit)
            part = records[start - 1 : start - 1 + limit]
            assert sum(len(r) for r in runs) == len(part)
            if limit >= 500:
                assert len(runs) > 3
            got = BatchDecoder(events=8).decode_runs(runs)
            want = BatchDecoder().decode(part)
            assert (got.first_seq, got.last_seq) == (want.first_seq, want.last_seq)
            for name in ("seqs", "ts_ns", "order_ids", "values", "counts"):
                assert np.array_equal(getattr(got, name), getattr(want, name)), name
            assert got.commands.tobytes() == want.commands.tobytes()
            assert got.events.tobytes() == want.events.tobytes()
            assert got.payloads == want.payloads == [r.payload for r in part if r.rtype == 1]
            assert [b.seq for b in got.balances] == [b.seq for b in want.balances]
        assert reader.read_runs(len(records) + 1, limit=10) == []
