"""The MySQL history of ADD_ASSET and ADD_MARKET (RT_CATALOG records): an
``operation_log`` row each (``add_asset`` / ``add_market``, user 0, the command's
table) and a ``catalog_history`` row; the rows after them name the added asset and
market at their scales; the bulk path writes the per-record path's rows; a drainer
that starts again past the adds reads the catalog back; the log restored from MySQL
recovers the same state."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config import AssetConfig, MarketConfig
from core.engine import Engine
from persistence.drainer import Drainer
from persistence.frames import RT_BALANCE, RT_CATALOG
from persistence.history_batch import BatchDecoder
from persistence.history_bulk import COLUMNS, BulkRows, tsv_row
from persistence.history_rows import (
    HistoryRecordError,
    HistoryRows,
    RecordDecoder,
    RowBatch,
)
from persistence.journal import LOG_DIR, Journal, JournalConfig, journal_log_config
from persistence.log_reader import LogReader, Record
from tests.support.mysql import TestDatabase, query, schema_database
from tests.support.world import Limits, stream_config
from tests.unit.persistence import catalog_support as cs
from tests.unit.persistence.test_market_ops_history import assert_bulk_rows_equal_per_record

SOL_TABLE = {"name": "SOL", "prec": 8}
SOL_USDT_TABLE = {
    "name": "SOL_USDT", "stock": "SOL", "money": "USDT", "stock_prec": 4, "money_prec": 3,
    "fee_prec": 4, "min_amount": "0.001", "max_orders": 64, "max_levels": 16,
    "price_step": "0.005",
}  # fmt: skip


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Engine]:
    """A data directory with the adds and trades of ``catalog_support.populate``."""
    data_dir = tmp_path_factory.mktemp("catalog") / "data"
    with cs.open_journal(data_dir) as journal:
        cs.populate(journal)
        return data_dir, journal.engine


def _records(log_dir: Path) -> list[Record]:
    with LogReader(log_dir) as reader:
        return list(reader.read(1))


def _rows(records: list[Record], rows: HistoryRows | None = None) -> RowBatch:
    rows = rows or HistoryRows(stream_config(Limits()))
    batch = RowBatch()
    decoder = RecordDecoder()
    for record in records:
        rows.add(batch, decoder.decode(record))
    return batch


# ------------------------------------------------------------------ rows


def test_the_adds_have_an_operation_row_and_a_catalog_row(
    populated: tuple[Path, Engine],
) -> None:
    data_dir, _ = populated
    records = _records(data_dir / LOG_DIR)
    assert [r.seq for r in records if r.rtype == RT_CATALOG] == [2, 3]
    batch = _rows(records)
    operations = {row[0]: row for row in batch.operations}
    for seq, method, table in ((2, "add_asset", SOL_TABLE), (3, "add_market", SOL_USDT_TABLE)):
        seq_, time_s, rtype, method_, user, detail, payload = operations[seq]
        assert (seq_, rtype, method_, user) == (seq, RT_CATALOG, method, 0)
        assert time_s == (cs.T0_NS + seq - 1) / 1e9  # the command's time
        assert json.loads(detail) == {"method": method, "params": [table]}
        assert payload == records[seq - 1].payload  # byte for byte
    assert [(s, k, n, json.loads(d)) for s, _, k, n, d in batch.catalog] == [
        (2, "asset", "SOL", SOL_TABLE), (3, "market", "SOL_USDT", SOL_USDT_TABLE),
    ]  # fmt: skip
    assert [row[1] for row in batch.catalog] == [operations[2][1], operations[3][1]]


def test_the_rows_after_the_adds_name_them_at_their_scales(populated: tuple[Path, Engine]) -> None:
    data_dir, _ = populated
    batch = _rows(_records(data_dir / LOG_DIR))
    assert [(r[3], r[4], r[5], r[6]) for r in batch.balances if r[5] == "deposit"] == [
        (cs.SELLER, "USDT", "deposit", "10000"),
        (cs.SELLER, "SOL", "deposit", "100"),
        (cs.BUYER, "USDT", "deposit", "10000"),
    ]
    # The taker bought 150 lots (0.015 SOL) at the maker's 100.000 (3 places).
    deals = sorted(batch.deals)
    assert [(d[1], d[4], d[5], d[9], d[10]) for d in deals] == [
        (1, cs.SELLER, "SOL_USDT", "100", "0.015"),
        (2, cs.BUYER, "SOL_USDT", "100", "0.015"),
    ]
    finished = [(o[4], o[5], o[9], o[10]) for o in batch.orders]
    assert finished == [(cs.BUYER, "SOL_USDT", "100.005", "0.015")]
    trades = {(r[3], r[4], r[5]) for r in batch.balances if r[5] != "deposit"}
    assert (cs.BUYER, "SOL", "trade") in trades
    operations = {row[0]: row for row in batch.operations}
    put = json.loads(operations[max(operations) - 1][5])  # the taker
    assert put["method"] == "limit_order"
    assert put["params"][:4] == [cs.BUYER, "SOL_USDT", 2, "0.015"]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 1000])
def test_bulk_rows_over_the_adds_equal_the_per_record_rows(
    populated: tuple[Path, Engine], size: int
) -> None:
    """Batches of any size, each path with its own catalog (as a drainer keeps it
    across batches): the added market's rows are the same both ways."""
    data_dir, _ = populated
    records = _records(data_dir / LOG_DIR)
    bulk = BulkRows(stream_config(Limits()))
    rows = HistoryRows(stream_config(Limits()))
    decoder = BatchDecoder(events=2)  # grown on the way
    for start in range(0, len(records), size):
        part = records[start : start + size]
        want = _rows(part, rows)
        text = bulk.build(decoder.decode(part))
        for table in COLUMNS:
            assert Counter(text.lines[table]) == Counter(
                tsv_row(row) for row in getattr(want, table)
            ), (table, start)
    assert [m.name for m in bulk.rows.markets] == [m.name for m in rows.markets]
    assert [m.name for m in rows.markets][-1] == "SOL_USDT"
    # The whole log at once, through the market operations' helper.
    assert_bulk_rows_equal_per_record(records, len(records), BatchDecoder())


def test_a_batch_keeps_the_catalog_records_apart(populated: tuple[Path, Engine]) -> None:
    data_dir, _ = populated
    records = _records(data_dir / LOG_DIR)
    batch = BatchDecoder().decode(records)
    assert [r.seq for r in batch.catalog] == [2, 3]
    assert [r.catalog for r in batch.catalog] == [cs.SOL_ASSET, cs.SOL_MARKET]
    assert [r.seq for r in batch.balances] == [r.seq for r in records if r.rtype == RT_BALANCE]
    assert batch.orders == sum(1 for r in records if r.rtype not in (RT_BALANCE, RT_CATALOG))
    only = BatchDecoder().decode(records[1:3])  # nothing but catalog records
    assert (only.orders, only.events.shape[0], len(only.catalog)) == (0, 0, 2)
    assert BulkRows(stream_config(Limits())).build(only).rows == 4


def test_the_catalog_is_learnt_once_and_in_order() -> None:
    rows = HistoryRows(stream_config(Limits()))
    assert rows.learn(cs.SOL_ASSET)
    assert not rows.learn(cs.SOL_ASSET)  # known: a batch built again, or read back
    assert rows.learn(cs.SOL_MARKET)
    assert not rows.learn(cs.SOL_MARKET)
    assert rows.catalog_size == (4, 3)
    market = rows.markets[2]
    assert (market.name, market.stock_places, market.money_places) == ("SOL_USDT", 8, 8)
    with pytest.raises(HistoryRecordError, match="'DOGE' is not in the catalog"):
        rows.learn(MarketConfig("DOGE_USDT", "DOGE", "USDT", 2, 2))
    assert rows.catalog_size == (4, 3)
    assert rows.learn(AssetConfig("DOGE", 6))


def test_a_catalog_record_that_does_not_decode_is_a_history_error() -> None:
    with pytest.raises(HistoryRecordError, match="seq 9: catalog record"):
        RecordDecoder().decode(Record(9, RT_CATALOG, b"\x00" * 8 + b"{}"))


# ------------------------------------------------------------------ MySQL


@pytest.fixture
def db() -> Iterator[TestDatabase]:
    with schema_database() as database:
        yield database


def _drain(log_dir: Path, db: TestDatabase, *, bulk: bool = True, local_infile: int = 1) -> None:
    def connect() -> Any:
        return db.connect(local_infile=local_infile)

    drainer = Drainer(log_dir, cs.catalog_config(), connect, batch_records=2, bulk=bulk)
    try:
        drainer.drain_available()
    finally:
        drainer.close()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("bulk", "local_infile"), [(True, 1), (False, 1), (True, 0)], ids=["load", "insert", "refused"]
)
def test_the_drainer_stores_the_adds_and_the_rows_that_name_them(
    tmp_path: Path, db: TestDatabase, bulk: bool, local_infile: int
) -> None:
    from tests.unit.persistence.test_drainer import check_history

    data_dir = tmp_path / "data"
    with cs.open_journal(data_dir) as journal:
        cs.populate(journal)
    _drain(data_dir / LOG_DIR, db, bulk=bulk, local_infile=local_infile)
    check_history(db, data_dir, journal.engine, min_trades=0)  # balances of SOL too
    adds = query(db, "SELECT seq, rtype, method, user_id FROM operation_log WHERE rtype = 3")
    assert adds == [(2, RT_CATALOG, "add_asset", 0), (3, RT_CATALOG, "add_market", 0)]
    stored = query(db, "SELECT seq, kind, name, detail FROM catalog_history ORDER BY seq")
    assert [(s, k, n, json.loads(d)) for s, k, n, d in stored] == [
        (2, "asset", "SOL", SOL_TABLE), (3, "market", "SOL_USDT", SOL_USDT_TABLE),
    ]  # fmt: skip
    assert query(db, "SELECT DISTINCT market FROM deal_history") == [("SOL_USDT",)]


@pytest.mark.integration
@pytest.mark.parametrize("bulk", [True, False])
def test_a_drainer_started_past_the_adds_reads_the_catalog_back(
    tmp_path: Path, db: TestDatabase, bulk: bool
) -> None:
    """The records that added SOL and SOL_USDT were applied by an earlier drainer: a
    new one (the config file's catalog only) learns them from catalog_history, and
    the trades after its position land with the right names and scales."""
    from tests.unit.persistence.test_drainer import check_history

    data_dir = tmp_path / "data"
    with cs.open_journal(data_dir) as journal:
        cs.populate(journal)
    _drain(data_dir / LOG_DIR, db, bulk=bulk)
    drained = query(db, "SELECT seq FROM drain_position")[0][0]
    with cs.open_journal(data_dir) as journal:
        cs.trade(journal, cs.T0_NS + 40_000)
        cs.ok(journal.add_catalog(cs.SOL_ETH, cs.T0_NS + 41_000))
        cs.ok(journal.balance_update(cs.BUYER, cs.ETH, b"deposit", 9, 10**10, cs.T0_NS, b"{}"))
    _drain(data_dir / LOG_DIR, db, bulk=bulk)
    check_history(db, data_dir, journal.engine, min_trades=0)
    later = {
        (seq > drained, market) for seq, market in query(db, "SELECT seq, market FROM deal_history")
    }
    assert later == {(False, "SOL_USDT"), (True, "SOL_USDT")}
    assert query(db, "SELECT name FROM catalog_history ORDER BY seq") == [
        ("SOL",), ("SOL_USDT",), ("SOL_ETH",),
    ]  # fmt: skip


@pytest.mark.integration
def test_the_log_restored_from_mysql_recovers_the_added_markets(
    tmp_path: Path, db: TestDatabase
) -> None:
    from persistence.history_restore import restore_log

    data_dir = tmp_path / "data"
    with cs.open_journal(data_dir) as journal:
        cs.populate(journal)
    _drain(data_dir / LOG_DIR, db)
    restored_dir = tmp_path / "restored"
    restored = restore_log(db.connect, restored_dir / LOG_DIR)
    assert restored.last_seq == journal.engine.counters()[0]
    config = JournalConfig(data_dir=restored_dir, log=journal_log_config())
    with Journal.open(cs.catalog_config(), config) as again:
        assert again.engine.state_hash() == journal.engine.state_hash()
        assert again.config.markets == journal.engine.config.markets


@pytest.mark.integration
def test_the_history_queries_answer_for_an_added_market_once_told(
    populated: tuple[Path, Engine], db: TestDatabase
) -> None:
    from persistence.history_queries import HistoryError, HistoryQueries

    data_dir, engine = populated
    _drain(data_dir / LOG_DIR, db)
    queries = HistoryQueries(db.connect, cs.catalog_config())  # the config file's catalog
    try:
        with pytest.raises(HistoryError, match="unknown market 'SOL_USDT'"):
            queries.market_user_deals(cs.BUYER, "SOL_USDT", 0, 10)
        queries.use_catalog(engine.config)
        deals = queries.market_user_deals(cs.BUYER, "SOL_USDT", 0, 10)["records"]
        assert [(d["market"], d["price"], d["amount"]) for d in deals] == [
            ("SOL_USDT", "100", "0.015")
        ]
        page = queries.balance_history(cs.SELLER, "SOL", "", 0, 0, 0, 10)["records"]
        assert [r["business"] for r in page] == ["trade", "deposit"]
    finally:
        queries.close()
