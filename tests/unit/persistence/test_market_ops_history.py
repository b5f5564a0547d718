"""The MySQL history of the market operations (MARKET_STATUS, USER_STATUS,
CANCEL_MARKET, MARKET_LIMIT, USER_LIMIT): their operation_log rows name them with
their params, their status and limit events give no other row, CANCEL_MARKET's
finishes give an order_history row each; the bulk path writes the per-record path's
rows; the drainer stores them once.

The tests marked ``engine`` need an engine that executes the market operations; the
others read a log framed by hand (``market_ops_log``)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.schema import CommandKind, FinishReason, MarketStatus, RiskLimit, UserStatus
from persistence.consumers import unregister_consumer
from persistence.drainer import Drainer
from persistence.frames import RT_ORDER
from persistence.history_batch import BatchDecoder
from persistence.history_bulk import COLUMNS, BulkRows, tsv_row
from persistence.history_rows import (
    DecodedRecord,
    HistoryRows,
    RecordDecoder,
    RowBatch,
    method_name,
    status_name,
)
from persistence.journal import LOG_DIR
from persistence.log_reader import LogReader, Record
from tests.support.mysql import TestDatabase, apply_schema, fresh_database, query, schema_database
from tests.support.world import Limits, stream_config
from tests.unit.persistence import market_ops_log as ops


def _records(log_dir: Path) -> list[Record]:
    with LogReader(log_dir) as reader:
        return list(reader.read(1))


@pytest.fixture
def hand_log(tmp_path: Path) -> Path:
    log_dir = tmp_path / "log"
    ops.write_market_ops_log(log_dir)
    return log_dir


@pytest.fixture
def limits_log(tmp_path: Path) -> Path:
    log_dir = tmp_path / "limits"
    ops.write_limits_log(log_dir)
    return log_dir


def assert_bulk_rows_equal_per_record(
    records: list[Record], size: int, decoder: BatchDecoder
) -> None:
    """The bulk path (``BulkRows`` over ``decoder``, ``size`` records at a time) gives
    the rows the per-record path (``HistoryRows``) gives, table by table."""
    bulk = BulkRows(stream_config(Limits()))
    for start in range(0, len(records), size):
        part = records[start : start + size]
        want = _rows(part)
        text = bulk.build(decoder.decode(part))
        assert (text.first_seq, text.last_seq) == (want.first_seq, want.last_seq)
        for table in COLUMNS:
            assert Counter(text.lines[table]) == Counter(
                tsv_row(row) for row in getattr(want, table)
            ), (table, start)


def _rows(records: list[Record]) -> RowBatch:
    rows = HistoryRows(stream_config(Limits()))
    batch = RowBatch()
    decoder = RecordDecoder()
    for record in records:
        rows.add(batch, decoder.decode(record))
    return batch


def _operations(batch: RowBatch) -> dict[int, tuple[str, int, dict[str, Any]]]:
    """seq -> (method, user_id, detail) of the operation_log rows."""
    return {row[0]: (row[3], row[4], json.loads(row[5])) for row in batch.operations}


def test_the_market_operations_have_names_and_params(hand_log: Path) -> None:
    batch = _rows(_records(hand_log))
    got = _operations(batch)
    assert sorted(got) == list(range(1, ops.LAST_SEQ + 1))
    assert got[ops.SEQ_HALT] == (
        "market_status", 0, {"method": "market_status", "params": ["BTC_USDT", "halted"],
                             "order_id": 0},
    )  # fmt: skip
    assert got[ops.SEQ_BLOCK] == (
        "user_status", 2, {"method": "user_status", "params": [2, "blocked"], "order_id": 0},
    )  # fmt: skip
    assert got[ops.SEQ_CANCEL] == (
        "cancel_market", 0, {"method": "cancel_market", "params": ["BTC_USDT", 0],
                             "order_id": 0},
    )  # fmt: skip
    assert got[ops.SEQ_DELIST][2]["params"] == ["BTC_USDT", "delisted"]
    assert [got[s][0] for s in (1, 2, 3, 4)] == [
        "update_balance", "update_balance", "limit_order", "limit_order",
    ]  # fmt: skip
    # Every operation_log row carries its record byte for byte, with its rtype.
    assert all(row[2] == (RT_ORDER if row[0] > 2 else 2) for row in batch.operations)


def test_the_limit_commands_have_names_and_params_and_give_no_other_row(
    limits_log: Path,
) -> None:
    batch = _rows(_records(limits_log))
    got = _operations(batch)
    assert sorted(got) == list(range(1, ops.LIMITS_LAST_SEQ + 1))
    user = ops.LIMITS_USER
    assert got[ops.SEQ_USER_NOTIONAL] == (
        "user_limit", user, {"method": "user_limit", "order_id": 0,
                             "params": [user, "BTC_USDT", "max_notional", ops.USER_NOTIONAL]},
    )  # fmt: skip
    assert got[ops.SEQ_USER_LOTS][2]["params"] == [
        user, "BTC_USDT", "max_order_amount", ops.USER_LOTS,
    ]  # fmt: skip
    assert got[ops.SEQ_MARKET_LOTS] == (
        "market_limit", 0, {"method": "market_limit", "order_id": 0,
                            "params": ["BTC_USDT", "max_order_amount", ops.MARKET_LOTS]},
    )  # fmt: skip
    assert got[ops.SEQ_USER_NONE][2]["params"] == [user, "BTC_USDT", "max_notional", 0]
    # The limit events change no order, deal or balance: the deposit's row only.
    assert (batch.orders, batch.deals) == ([], [])
    assert [(row[0], row[5]) for row in batch.balances] == [(1, "deposit")]


@pytest.mark.parametrize("size", [1, 2, ops.LIMITS_LAST_SEQ])
def test_bulk_rows_of_the_limit_commands_equal_the_per_record_rows(
    limits_log: Path, size: int
) -> None:
    assert_bulk_rows_equal_per_record(_records(limits_log), size, BatchDecoder())


def test_status_events_give_no_rows_and_cancel_market_finishes_give_one_each(
    hand_log: Path,
) -> None:
    batch = _rows(_records(hand_log))
    assert batch.deals == []
    # The deposits only: freezing and unfreezing change no total.
    assert [(row[0], row[3], row[5]) for row in batch.balances] == [
        (1, 1, "deposit"), (2, 2, "deposit"),
    ]  # fmt: skip
    # The two orders CANCEL_MARKET took off, whoever owned them, as they stood.
    orders = sorted(batch.orders)
    assert [(r[0], r[1], r[4], r[5], r[-1]) for r in orders] == [
        (ops.ORDER_ASK, ops.SEQ_CANCEL, 1, "BTC_USDT", int(FinishReason.CANCELED)),
        (ops.ORDER_BID, ops.SEQ_CANCEL, 2, "BTC_USDT", int(FinishReason.CANCELED)),
    ]
    assert [(r[9], r[10]) for r in orders] == [("100", "0.5"), ("90", "0.25")]


@pytest.mark.parametrize("size", [1, 2, 3, 5, ops.LAST_SEQ])
def test_bulk_rows_equal_the_per_record_rows(hand_log: Path, size: int) -> None:
    decoder = BatchDecoder(events=2)  # grown on the way
    assert_bulk_rows_equal_per_record(_records(hand_log), size, decoder)


def test_unknown_kinds_and_statuses_are_written_as_numbers() -> None:
    assert method_name(int(CommandKind.CANCEL_MARKET)) == "cancel_market"
    assert method_name(42) == "kind_42"
    assert status_name(MarketStatus, 1) == "halted"
    assert status_name(UserStatus, 0) == "active"
    assert status_name(MarketStatus, 9) == 9
    assert method_name(int(CommandKind.USER_LIMIT)) == "user_limit"
    assert method_name(int(CommandKind.MARKET_LIMIT)) == "market_limit"
    assert status_name(RiskLimit, 7) == "max_order_amount"
    assert status_name(RiskLimit, 9) == 9
    rows = HistoryRows(stream_config(Limits()))
    for kind, amount, market, params in (
        (CommandKind.MARKET_STATUS, 9, 1, ["ETH_USDT", 9]),
        (CommandKind.MARKET_STATUS, 0, 7, [7, "open"]),  # a market the config lacks
        (CommandKind.USER_STATUS, -1, 0, [5, -1]),
        (CommandKind.CANCEL_MARKET, 0, 1, ["ETH_USDT", 2]),
        (CommandKind.CANCEL_ALL, 0, 1, [5, "ETH_USDT", 2]),  # the side, too
        (CommandKind.MARKET_LIMIT, 700, 0, ["BTC_USDT", "amount_step", 700]),  # side 2
        (CommandKind.USER_LIMIT, 900, 1, [5, "ETH_USDT", "amount_step", 900]),  # as recorded
        (CommandKind.USER_LIMIT, 0, 7, [5, 7, "amount_step", 0]),  # a market the config lacks
    ):
        cmd = ops.command(kind, ops.T0_NS, user=5, market=market, amount=amount, side=2)
        record = DecodedRecord(9, RT_ORDER, ops.T0_NS, np.zeros(0, dtype=ops.EVENT_DTYPE), cmd[0])
        batch = RowBatch()
        rows.add(batch, record)
        assert json.loads(batch.operations[0][5])["params"] == params


# ------------------------------------------------------------------ MySQL


@pytest.fixture
def db() -> Iterator[TestDatabase]:
    with schema_database() as database:
        yield database


@pytest.mark.integration
@pytest.mark.parametrize("bulk", [True, False])
def test_the_drainer_stores_the_market_operations_once(
    hand_log: Path, db: TestDatabase, bulk: bool
) -> None:
    config = stream_config(Limits())
    for _ in range(2):  # the second finds nothing to do
        drainer = Drainer(hand_log, config, db.connect, batch_records=3, bulk=bulk)
        try:
            drainer.drain_available()
            assert drainer.statistics().position == ops.LAST_SEQ
        finally:
            drainer.close()
    assert query(db, "SELECT seq FROM drain_position WHERE name = 'mysql'") == [(ops.LAST_SEQ,)]
    methods = query(db, "SELECT seq, method, user_id, detail FROM operation_log ORDER BY seq")
    assert [(s, m, u) for s, m, u, _ in methods[4:]] == [
        (5, "market_status", 0), (6, "user_status", 2), (7, "cancel_market", 0),
        (8, "market_status", 0),
    ]  # fmt: skip
    assert json.loads(methods[5][3])["params"] == [2, "blocked"]
    assert query(db, "SELECT id, user_id, status FROM order_history ORDER BY id") == [
        (ops.ORDER_ASK, 1, int(FinishReason.CANCELED)),
        (ops.ORDER_BID, 2, int(FinishReason.CANCELED)),
    ]
    assert query(db, "SELECT COUNT(*) FROM deal_history") == [(0,)]
    assert query(db, "SELECT seq FROM balance_history ORDER BY seq") == [(1,), (2,)]


# ------------------------------------------------------------------ with the engine


@pytest.fixture(scope="module")
def engine_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ops.EngineLog]:
    data_dir = tmp_path_factory.mktemp("engine") / "data"
    return data_dir, ops.write_engine_log(data_dir, 1500)


def test_the_engines_market_operations_are_all_logged(
    engine_log: tuple[Path, ops.EngineLog],
) -> None:
    data_dir, log = engine_log
    kinds: Counter[int] = Counter()
    with LogReader(data_dir / LOG_DIR) as reader:
        decoder = RecordDecoder()
        for record in reader.read(1):
            decoded = decoder.decode(record)
            if decoded.command is not None:
                kinds[int(decoded.command["kind"])] += 1
    # halt, delist, open twice (halting a halted market is not logged); block, unblock
    assert kinds[CommandKind.MARKET_STATUS] == len(log.logged[CommandKind.MARKET_STATUS]) == 4
    assert kinds[CommandKind.USER_STATUS] == len(log.logged[CommandKind.USER_STATUS]) == 2
    assert kinds[CommandKind.CANCEL_MARKET] == len(log.logged[CommandKind.CANCEL_MARKET]) >= 1
    # set, the same again (not logged), removed
    assert kinds[CommandKind.USER_LIMIT] == len(log.logged[CommandKind.USER_LIMIT]) == 2
    assert log.refused > 0  # the halted market and the blocked user refused orders


def test_the_engines_market_operations_give_the_same_rows_in_bulk(
    engine_log: tuple[Path, ops.EngineLog],
) -> None:
    data_dir, _ = engine_log
    records = _records(data_dir / LOG_DIR)
    bulk = BulkRows(stream_config(Limits()))
    decoder = BatchDecoder()
    for start in range(0, len(records), 97):
        part = records[start : start + 97]
        want = _rows(part)
        text = bulk.build(decoder.decode(part))
        for table in COLUMNS:
            assert Counter(text.lines[table]) == Counter(
                tsv_row(row) for row in getattr(want, table)
            ), (table, start)


@pytest.mark.integration
def test_the_engines_market_operations_drain_into_a_history_that_adds_up(
    engine_log: tuple[Path, ops.EngineLog], db: TestDatabase
) -> None:
    from tests.unit.persistence.test_drainer import check_history

    data_dir, log = engine_log
    drainer = Drainer(data_dir / LOG_DIR, log.engine.config, db.connect, batch_records=97)
    try:
        drainer.drain_available()
    finally:
        drainer.close()
    check_history(db, data_dir, log.engine)  # every record once, balances add up
    stored = Counter(m for (m,) in query(db, "SELECT method FROM operation_log"))
    for kind, seqs in log.logged.items():
        assert stored[method_name(int(kind))] == len(seqs)
    cancelled = query(
        db,
        "SELECT COUNT(*) FROM order_history o JOIN operation_log l ON o.seq = l.seq "
        "WHERE l.method = 'cancel_market'",
    )
    assert cancelled[0][0] > 0


@pytest.mark.integration
def test_a_stream_with_random_market_operations_drains_whole_in_bulk_and_not(
    tmp_path: Path,
) -> None:
    """5 % market operations amid random trading: the bulk rows are the per-record
    rows, and both drain paths store a history that adds up to the engine's state."""
    from tests.unit.persistence.test_drainer import check_history

    data_dir = tmp_path / "data"
    engine = ops.write_mixed_log(data_dir, 2000)
    records = _records(data_dir / LOG_DIR)
    kinds = Counter(
        int(RecordDecoder().decode(r).command["kind"])  # type: ignore[index]
        for r in records
        if r.rtype == RT_ORDER
    )
    assert all(kinds[k] > 0 for k in (7, 8, 9)), kinds
    bulk = BulkRows(engine.config)
    text = bulk.build(BatchDecoder().decode(records))
    want = _rows(records)
    for table in COLUMNS:
        assert Counter(text.lines[table]) == Counter(tsv_row(r) for r in getattr(want, table))
    for use_bulk in (True, False):
        with fresh_database() as database:
            apply_schema(database)
            drainer = Drainer(
                data_dir / LOG_DIR, engine.config, database.connect, batch_records=97,
                bulk=use_bulk,
            )  # fmt: skip
            try:
                drainer.drain_available()
            finally:
                drainer.close()
            check_history(database, data_dir, engine)
        unregister_consumer(data_dir / LOG_DIR, "mysql")  # the next drains from the start
