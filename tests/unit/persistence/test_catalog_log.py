"""ADD_ASSET and ADD_MARKET in the log (RT_CATALOG): logged when accepted only,
recovered from the log alone, from a snapshot taken after them and from the genesis
snapshot taken before them, followed by a standby, verified both ways; a record that
replays otherwise stops the replay; the config digests cover the genesis catalog."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from core.config import AssetConfig, MarketConfig, parse_config
from core.schema import Result
from persistence.frames import RT_CATALOG
from persistence.journal import (
    LOG_DIR,
    SNAPSHOT_DIR,
    config_digest,
    journal_log_config,
    layout_digest,
)
from persistence.log_errors import LogCorrupt
from persistence.log_format import append_frame
from persistence.log_reader import LogReader
from persistence.log_writer import LogWriter
from persistence.replay import (
    ReplayMismatch,
    decode_catalog_record,
    encode_catalog_record,
)
from persistence.verify import verify
from tests.unit.persistence import catalog_support as cs

# ------------------------------------------------------------------ the payload


def test_a_catalog_record_holds_the_time_and_the_commands_json() -> None:
    for raw in (cs.SOL_ASSET, cs.SOL_MARKET, AssetConfig("X", 4, prec_show=2)):
        payload = encode_catalog_record(raw, cs.T0_NS)
        assert struct.unpack_from("<q", payload) == (cs.T0_NS,)
        assert payload[8:].startswith(b'{"asset":' if isinstance(raw, AssetConfig) else b'{"m')
        assert decode_catalog_record(payload) == (cs.T0_NS, raw)
    assert decode_catalog_record(encode_catalog_record(cs.SOL_ASSET, -1))[0] == -1


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"", "shorter than its head"),
        (struct.pack("<q", 1), "shorter than its head"),  # no command
        (b"\x01\x02\x03", "shorter than its head"),
        (struct.pack("<q", 1) + b"not json", "not JSON"),
        (struct.pack("<q", 1) + b"[1, 2]", "is .*asset.* or .*market"),
        (struct.pack("<q", 1) + b'{"coin": {"name": "X"}}', "unknown catalog command 'coin'"),
        (struct.pack("<q", 1) + b'{"asset": {"name": "X"}}', "missing setting 'prec'"),
        (
            struct.pack("<q", 1) + b'{"asset": {"name": "X", "prec": 8, "extra": 1}}',
            "unknown setting 'extra'",
        ),
    ],
)
def test_a_catalog_record_that_does_not_add_up_is_a_value_error(payload: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        decode_catalog_record(payload)


@pytest.mark.parametrize(
    ("raw", "ts_ns", "why"),
    [
        ("SOL", 1, "an AssetConfig or a MarketConfig"),
        (cs.SOL_ASSET, 2**63, "not a catalog record"),
        (AssetConfig("X", np.int64(8)), 1, "not JSON serializable"),  # type: ignore[arg-type]
    ],
)
def test_what_cannot_be_a_catalog_record_is_a_value_error(
    raw: object, ts_ns: int, why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        encode_catalog_record(raw, ts_ns)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the journal


def _state(journal: object) -> tuple[str, object, tuple[int, int, int]]:
    engine = journal.engine  # type: ignore[attr-defined]
    return engine.state_hash(), engine.config, engine.counters()


def _catalog_seqs(log_dir: Path) -> list[int]:
    with LogReader(log_dir) as reader:
        return [r.seq for r in reader.read(1) if r.rtype == RT_CATALOG]


def test_accepted_adds_are_logged_and_refused_ones_are_not(tmp_path: Path) -> None:
    with cs.open_journal(tmp_path) as journal:
        done = cs.populate(journal)
        assert done.refused == 7
        assert [m.name for m in journal.config.markets] == ["BTC_USDT", "ETH_USDT", "SOL_USDT"]
        assert [a.name for a in journal.config.assets] == ["BTC", "ETH", "USDT", "SOL"]
        assert journal.genesis_config == cs.catalog_config().genesis()
        last = journal.durable_seq
    assert _catalog_seqs(tmp_path / LOG_DIR) == done.add_seqs == [2, 3]
    with LogReader(tmp_path / LOG_DIR) as reader:
        records = list(reader.read(1))
    assert records[-1].seq == last
    assert decode_catalog_record(records[2].payload) == (cs.T0_NS + cs.SOL_USDT, cs.SOL_MARKET)


def test_recovery_from_the_genesis_snapshot_taken_before_the_adds(tmp_path: Path) -> None:
    with cs.open_journal(tmp_path) as journal:
        cs.populate(journal)
        live = _state(journal)
    with cs.open_journal(tmp_path) as again:
        assert again.recovery is not None
        assert again.recovery.snapshot_seq == 0  # the genesis snapshot: no added market
        assert _state(again) == live
        assert again.engine.check_invariants() == []
        # It goes on: the added market trades, and the next add takes the next index.
        cs.trade(again, cs.T0_NS + 50_000)
        results = cs.ok(again.add_catalog(cs.SOL_ETH, cs.T0_NS + 60_000))
        assert int(results[0]["value"]) == 3
        live = _state(again)
    with cs.open_journal(tmp_path) as third:
        assert _state(third) == live


def test_recovery_from_the_log_alone(tmp_path: Path) -> None:
    with cs.open_journal(tmp_path) as journal:
        cs.populate(journal)
        live = _state(journal)
    shutil.rmtree(tmp_path / SNAPSHOT_DIR)  # no snapshot at all: an empty engine + the log
    with cs.open_journal(tmp_path) as again:
        assert again.recovery is not None
        assert again.recovery.snapshot_seq == 0
        assert again.recovery.replay.records == live[2][0]
        assert _state(again) == live


def test_recovery_from_a_snapshot_taken_after_the_adds(tmp_path: Path) -> None:
    with cs.open_journal(tmp_path) as journal:
        cs.populate(journal)
        assert journal.snapshot()
        info = journal.poll_snapshot(timeout_s=60)
        assert info is not None
        cs.trade(journal, cs.T0_NS + 20_000)  # in the log after the snapshot
        live = _state(journal)
    # The genesis config, or the catalog as it is now: the genesis part is what counts.
    for config in (cs.catalog_config(), live[1]):
        with cs.open_journal(tmp_path, config) as again:  # type: ignore[arg-type]
            assert again.recovery is not None
            assert again.recovery.snapshot_seq == info.seq > 0
            assert again.recovery.replay.records == live[2][0] - info.seq
            assert _state(again) == live
            assert again.engine.config.markets == live[1].markets  # type: ignore[attr-defined]
            assert again.engine.limit_drift() == []


def test_a_reopened_journal_holds_the_catalog_of_the_data_directory(tmp_path: Path) -> None:
    with cs.open_journal(tmp_path) as journal:
        cs.populate(journal)
        live = _state(journal)
        journal.reopen()  # a standby's reopen: from what the directory holds
        assert _state(journal) == live
        assert journal.config is journal.engine.config


def test_the_config_digests_cover_the_genesis_catalog_only(tmp_path: Path) -> None:
    config = cs.catalog_config()
    with cs.open_journal(tmp_path) as journal:
        cs.populate(journal)
        live = journal.config
    assert len(live.markets) == 3
    assert config_digest(live) == config_digest(config) == config_digest(live.genesis())
    assert layout_digest(live) == layout_digest(config)
    # The layout digest still tells a different room apart.
    other = parse_config(cs.catalog_config_text().replace("max_markets = 4", "max_markets = 5"))
    assert layout_digest(other) != layout_digest(config)


def test_a_standby_following_its_primary_reproduces_the_catalog(tmp_path: Path) -> None:
    primary_dir, standby_dir = tmp_path / "primary", tmp_path / "standby"
    with cs.open_journal(primary_dir) as primary:
        cs.populate(primary)
        live = _state(primary)
    with LogReader(primary_dir / LOG_DIR) as reader:
        records = list(reader.read(1))
    with cs.open_journal(standby_dir) as standby:
        for start in (0, 2, 5):  # the adds in the first buffers, the trades later
            stop = {0: 2, 2: 5, 5: len(records)}[start]
            frames = bytearray()
            for record in records[start:stop]:
                append_frame(frames, record.seq, record.rtype, 0, record.payload)
            assert standby.follow(bytes(frames), start + 1, Path("primary")) == stop
            standby.writer.commit()
        assert _state(standby) == live
    with cs.open_journal(standby_dir) as again:  # its own log holds the records
        assert _state(again) == live


def test_verify_walks_both_roads_over_added_markets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tools import matchctl

    with cs.open_journal(tmp_path) as journal:
        cs.populate(journal)
        assert journal.snapshot()
        assert journal.poll_snapshot(timeout_s=60) is not None
        cs.trade(journal, cs.T0_NS + 30_000)
        live = _state(journal)
    for config in (cs.catalog_config(), live[1]):
        result = verify(config, tmp_path)  # type: ignore[arg-type]
        assert result.ok, result.problems
        assert result.recovered_hash == result.full_hash == live[0]
        assert (result.recovered_from > 0, result.full_from) == (True, 0)
    path = tmp_path / "matchd.toml"
    path.write_text(cs.catalog_config_text(), encoding="utf-8")
    assert matchctl.main(["verify", "--config", str(path), "--data-dir", str(tmp_path)]) == 0
    assert "verify OK" in capsys.readouterr().out


# ------------------------------------------------------------------ records that do not replay


def _append(data_dir: Path, rtype: int, payload: bytes) -> int:
    """Append one record after the log's end, as a foreign writer would; its seq."""
    with LogWriter.open(data_dir / LOG_DIR, journal_log_config(segment_bytes=16 << 10)) as writer:
        seq = writer.last_seq + 1
        writer.append(seq, rtype, payload)
        writer.commit()
    return seq


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (cs.SOL_MARKET, Result.MARKET_EXISTS),
        (cs.SOL_ASSET, Result.ASSET_EXISTS),
        (MarketConfig("DOGE_USDT", "DOGE", "USDT", 2, 2), Result.UNKNOWN_ASSET),
        (MarketConfig("BIG", "SOL", "USDT", 4, 3, max_orders=65), Result.INVALID_ARGUMENT),
    ],
)
def test_an_add_the_engine_refuses_on_replay_is_a_mismatch(
    tmp_path: Path, raw: AssetConfig | MarketConfig, code: Result
) -> None:
    with cs.open_journal(tmp_path) as journal:
        cs.populate(journal)
    seq = _append(tmp_path, RT_CATALOG, encode_catalog_record(raw, cs.T0_NS))
    with pytest.raises(ReplayMismatch, match=rf"seq {seq} .*code {int(code)} \({code.name}\)"):
        cs.open_journal(tmp_path)
    with pytest.raises(ReplayMismatch, match=f"seq {seq}"):
        verify(cs.catalog_config(), tmp_path)


def test_an_add_beyond_the_room_on_replay_is_a_mismatch(tmp_path: Path) -> None:
    # A log written under more room than this config has: the third added asset.
    with cs.open_journal(tmp_path) as journal:
        cs.populate(journal)
        cs.ok(journal.add_catalog(AssetConfig("ADA", 6), cs.T0_NS))
    seq = _append(tmp_path, RT_CATALOG, encode_catalog_record(AssetConfig("DOT", 6), cs.T0_NS))
    with pytest.raises(ReplayMismatch, match=f"seq {seq} .*ASSET_TABLE_FULL"):
        cs.open_journal(tmp_path)


def test_a_catalog_record_that_does_not_decode_is_corrupt(tmp_path: Path) -> None:
    with cs.open_journal(tmp_path) as journal:
        cs.populate(journal)
    seq = _append(tmp_path, RT_CATALOG, struct.pack("<q", 1) + b'{"asset": 7}')
    with pytest.raises(LogCorrupt, match=f"catalog record of seq {seq}"):
        cs.open_journal(tmp_path)
