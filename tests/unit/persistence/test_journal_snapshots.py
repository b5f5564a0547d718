"""The journal's snapshots: recovery from the newest valid one plus the log after it,
an older one when the newest is damaged, retention of snapshots and log segments, and
the offline verification of both roads."""

from __future__ import annotations

from pathlib import Path

from core import commands as C
from core.engine import Engine
from core.schema import MarketStatus, Result, RiskLimit, Side, UserStatus
from persistence.journal import Journal, JournalConfig, journal_log_config
from persistence.snapshot import list_snapshots
from persistence.verify import verify
from tests.unit.persistence.journal_support import apply, engine_config, work


def jconfig(path: Path, keep: int = 2) -> JournalConfig:
    return JournalConfig(
        data_dir=path, log=journal_log_config(segment_bytes=16 << 10), keep_snapshots=keep
    )


def run(journal: Journal, item: object) -> None:
    if isinstance(item, tuple):
        journal.balance_update(*item)
    else:
        journal.submit(item)  # type: ignore[arg-type]


def fill(path: Path, plain: Engine, rounds: int, keep: int = 2) -> list[int]:
    """Work in rounds with a snapshot after each; returns the snapshot sequences."""
    items = list(work(seed=21, batches=20 * rounds))
    per_round = len(items) // rounds
    seqs = []
    with Journal.open(engine_config(), jconfig(path, keep)) as journal:
        for r in range(rounds):
            for item in items[r * per_round : (r + 1) * per_round]:
                run(journal, item)
                apply(plain, item)
            assert journal.snapshot()
            info = journal.poll_snapshot(timeout_s=30)
            assert info is not None
            assert info.seq == journal.durable_seq
            seqs.append(info.seq)
        for item in items[rounds * per_round :]:
            run(journal, item)
            apply(plain, item)
    return seqs


def test_recovery_starts_from_the_newest_snapshot(tmp_path: Path) -> None:
    plain = Engine(engine_config())
    seqs = fill(tmp_path, plain, rounds=3)
    with Journal.open(engine_config(), jconfig(tmp_path)) as journal:
        assert journal.recovery is not None
        assert journal.recovery.snapshot_seq == seqs[-1]
        assert journal.recovery.replay.first_seq == seqs[-1] + 1
        assert journal.engine.state_hash() == plain.state_hash()
    assert [s.seq for s in list_snapshots(tmp_path / "snapshots")] == seqs[:-3:-1]


def test_a_damaged_newest_snapshot_falls_back_to_an_older_one_and_more_log(
    tmp_path: Path,
) -> None:
    plain = Engine(engine_config())
    seqs = fill(tmp_path, plain, rounds=3)
    newest = list_snapshots(tmp_path / "snapshots")[0]
    data = bytearray(newest.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.path.write_bytes(bytes(data))
    with Journal.open(engine_config(), jconfig(tmp_path)) as journal:
        assert journal.recovery is not None
        assert journal.recovery.snapshot_seq == seqs[-2]
        assert journal.engine.state_hash() == plain.state_hash()


def test_the_log_is_kept_from_the_oldest_kept_snapshot(tmp_path: Path) -> None:
    plain = Engine(engine_config())
    seqs = fill(tmp_path, plain, rounds=4)
    segments = sorted(int(p.name.split(".")[0]) for p in (tmp_path / "log").glob("*.log"))
    assert segments[0] > 1  # old segments went
    oldest_kept = seqs[-2]
    assert segments[0] <= oldest_kept + 1  # but not one the oldest kept snapshot needs


def test_verify_walks_both_roads(tmp_path: Path) -> None:
    plain = Engine(engine_config())
    fill(tmp_path, plain, rounds=3)
    result = verify(engine_config(), tmp_path)
    assert result.ok, result.problems
    assert result.recovered_hash == plain.state_hash()
    assert result.full_from > 0  # the log was pruned: from the oldest reachable snapshot


def test_client_order_ids_survive_a_restart_from_a_snapshot_and_the_log(tmp_path: Path) -> None:
    # TESTING.md 6: client order ids are permanent, across restarts (unlike ViaBTC's
    # 24 h window): one recorded before the snapshot, one in the log after it.
    deposit = (1, 2, b"deposit", 1, 10**16, 1, b"{}")  # user 1, USDT
    bid = C.put_limit(1, 0, Side.BID, 1000, 10_000, client_id=5)
    again = C.put_limit(1, 0, Side.BID, 1000, 10_000, client_id=6)
    with Journal.open(engine_config(), jconfig(tmp_path)) as journal:
        journal.balance_update(*deposit)
        first = int(journal.submit(bid)[0]["order_id"][0])
        assert journal.snapshot()
        assert journal.poll_snapshot(timeout_s=30) is not None
        second = int(journal.submit(again)[0]["order_id"][0])
    with Journal.open(engine_config(), jconfig(tmp_path)) as journal:
        assert journal.recovery is not None
        assert journal.recovery.replay.records == 1  # the second put, after the snapshot
        for cmd, placed in ((bid, first), (again, second)):
            results, events = journal.submit(cmd)
            assert (results["code"][0], results["order_id"][0]) == (Result.REPEAT_ORDER, placed)
            assert len(events) == 0
        assert journal.engine.check_invariants() == []


def test_statuses_and_limits_survive_a_restart_from_a_snapshot_and_the_log(
    tmp_path: Path,
) -> None:
    # Market operations are journaled (issue 10): a halt before the snapshot, a block,
    # a delisting and a risk limit after it; the restarted engine refuses as the first
    # did.
    bid = C.put_limit(1, 0, Side.BID, 1000, 10_000)
    with Journal.open(engine_config(), jconfig(tmp_path)) as journal:
        journal.balance_update(1, 2, b"deposit", 1, 10**16, 1, b"{}")  # USDT
        journal.balance_update(1, 0, b"deposit", 2, 10**16, 1, b"{}")  # BTC, ETH_BTC's money
        assert journal.submit(C.put_limit(1, 1, Side.BID, 100, 10))[0]["code"][0] == Result.OK
        assert journal.submit(C.market_status(0, MarketStatus.HALTED))[0]["seq"][0] > 0
        assert journal.snapshot()
        assert journal.poll_snapshot(timeout_s=30) is not None
        assert journal.submit(C.user_status(1, UserStatus.BLOCKED))[0]["seq"][0] > 0
        assert journal.submit(C.market_status(1, MarketStatus.DELISTED))[0]["seq"][0] > 0
        assert journal.submit(C.cancel_market(1))[0]["value"][0] == 1
        step = C.market_limit(0, RiskLimit.PRICE_STEP, 100)
        assert journal.submit(step)[0]["seq"][0] > 0
        want = journal.engine.state_hash()
    with Journal.open(engine_config(), jconfig(tmp_path)) as journal:
        assert journal.recovery is not None
        assert journal.recovery.replay.records == 4
        assert journal.engine.state_hash() == want
        assert journal.engine.current_market(0).price_step == 100  # the state's, not 1
        assert journal.submit(bid)[0]["code"][0] == Result.MARKET_HALTED
        assert journal.engine.market_status(1) == MarketStatus.DELISTED
        assert journal.engine.user_status(1) == UserStatus.BLOCKED
        assert journal.engine.pending(1, 1, 0, 10)[0] == 0
        assert journal.engine.check_invariants() == []
