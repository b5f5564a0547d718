"""Risk limits are state (docs/operations.md, "Changing risk limits at run time"): a
restart from a snapshot under a config whose limits differ keeps the snapshot's, and
the journal logs each difference once at WARNING; a config that differs in anything
else still refuses the snapshot."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import persistence.journal
from core import commands as C
from core.config import EngineConfig
from core.schema import Result, RiskLimit, Side
from persistence.journal import (
    Journal,
    JournalConfig,
    config_digest,
    engine_from_snapshot,
    journal_log_config,
    layout_digest,
)
from persistence.log_errors import LogError
from persistence.replay import ReplayMismatch
from persistence.snapshot import list_snapshots, load_newest_valid
from persistence.verify import verify
from tests.support.scenario import make_config

STEPPED = 'price_step = "0.10"\nmax_open_orders = 3\n'


def jconfig(path: Path) -> JournalConfig:
    return JournalConfig(data_dir=path, log=journal_log_config(segment_bytes=16 << 10))


def snapshot_with_a_limit_changed(path: Path, config: EngineConfig) -> int:
    """A journal under ``config`` whose BTC_USDT price_step was set to 5 ticks and then
    snapshotted, and one more command in the log after it; the snapshot's seq."""
    with Journal.open(config, jconfig(path)) as journal:
        journal.balance_update(1, 2, b"deposit", 1, 10**16, 1, b"{}")  # USDT
        assert journal.submit(C.market_limit(0, RiskLimit.PRICE_STEP, 5))[0]["seq"][0] > 0
        assert journal.snapshot()
        info = journal.poll_snapshot(timeout_s=30)
        assert info is not None
        assert journal.submit(C.put_limit(1, 0, Side.BID, 1000, 10_000))[0]["code"][0] == 0
        return info.seq


def drift_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "persistence.journal" and r.levelno == logging.WARNING
    ]


def test_a_restart_under_other_limits_keeps_the_states_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seq = snapshot_with_a_limit_changed(tmp_path, make_config())
    edited = make_config(btc_usdt=STEPPED)  # the operator edits the config
    with caplog.at_level(logging.WARNING, logger="persistence.journal"):
        journal = Journal.open(edited, jconfig(tmp_path))
    with journal:
        assert journal.recovery is not None
        assert journal.recovery.snapshot_seq == seq
        market = journal.engine.current_market(0)
        assert market is not None
        assert (market.price_step, market.max_open_orders) == (5, 0)  # the state's
        assert edited.markets[0].price_step == 10  # the config's, unused
        # The state's step holds: 10_005 is on a 5-tick step, not on a 10-tick one.
        bid = C.put_limit(1, 0, Side.BID, 1000, 10_005)
        assert journal.submit(bid)[0]["code"][0] == Result.OK
    tail = "; the state's value holds (the config sets limits for a new state only: "
    tail += "change one with matchctl market limit)"
    assert drift_lines(caplog) == [
        f"journal limit drift: snapshot_seq={seq} drift='market BTC_USDT: price_step is 5 "
        f"in the state, 10 in the config'{tail}",
        f"journal limit drift: snapshot_seq={seq} drift='market BTC_USDT: max_open_orders "
        f"is 0 in the state, 3 in the config'{tail}",
    ]


def test_no_warning_when_the_config_has_the_states_limits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    snapshot_with_a_limit_changed(tmp_path, make_config())
    same = make_config(btc_usdt='price_step = "0.05"\n')  # what the state has now
    with caplog.at_level(logging.WARNING, logger="persistence.journal"):
        Journal.open(same, jconfig(tmp_path)).close()
        Journal.open(make_config(), jconfig(tmp_path)).close()  # warns: 5 vs 1
    (line,) = drift_lines(caplog)
    assert "price_step is 5 in the state, 1 in the config" in line


def test_a_config_that_differs_in_more_than_the_limits_still_refuses_the_snapshot(
    tmp_path: Path,
) -> None:
    snapshot_with_a_limit_changed(tmp_path, make_config())
    other = make_config(max_orders=2000, btc_usdt=STEPPED)
    with pytest.raises(LogError, match="taken under a different engine config"):
        Journal.open(other, jconfig(tmp_path))


def test_the_layout_digest_leaves_out_the_limits_only() -> None:
    plain, stepped = make_config(), make_config(btc_usdt=STEPPED)
    assert config_digest(plain) != config_digest(stepped)  # replication: the whole config
    assert layout_digest(plain) == layout_digest(stepped) == config_digest(plain)
    assert layout_digest(make_config(max_orders=2000)) != layout_digest(plain)


def test_a_snapshot_written_before_limits_were_state_loads_under_its_own_config(
    tmp_path: Path,
) -> None:
    config = make_config(btc_usdt=STEPPED)
    snapshot_with_a_limit_changed(tmp_path, config)
    found = load_newest_valid(tmp_path / "snapshots")
    assert found is not None
    info, arrays, meta = found
    assert meta["layout_digest"] == layout_digest(config)
    assert meta["config_digest"] == config_digest(config)
    old = {"config_digest": config_digest(config)}  # no layout digest: the exact config
    assert engine_from_snapshot(config, info, arrays, old).state_hash() == info.state_hash
    with pytest.raises(LogError, match="taken under a different engine config"):
        engine_from_snapshot(make_config(), info, arrays, old)


@pytest.mark.parametrize("snapshot", [False, True], ids=["log-only", "snapshot-and-log"])
def test_user_limits_survive_a_restart(tmp_path: Path, snapshot: bool) -> None:
    # docs/engine.md, "User risk limits": the table is state, rebuilt by a replay of
    # the log alone or from a snapshot and the log after it.
    config = make_config()
    with Journal.open(config, jconfig(tmp_path)) as journal:
        journal.balance_update(1, 2, b"deposit", 1, 10**16, 1, b"{}")  # USDT
        assert journal.submit(C.user_limit(1, 0, RiskLimit.MAX_ORDER_AMOUNT, 500))[0]["seq"][0]
        if snapshot:
            assert journal.snapshot()
            assert journal.poll_snapshot(timeout_s=30) is not None
        assert journal.submit(C.user_limit(1, 0, RiskLimit.MAX_NOTIONAL, 10**12))[0]["seq"][0]
        refused = journal.submit(C.put_limit(1, 0, Side.BID, 501, 10_000))[0]
        assert refused["code"][0] == Result.USER_AMOUNT_TOO_LARGE
        live = journal.engine.state_hash()
    with Journal.open(config, jconfig(tmp_path)) as journal:
        assert journal.recovery is not None
        assert journal.recovery.snapshot_seq == (2 if snapshot else 0)
        assert journal.engine.user_limits(1, 0) == (500, 10**12)
        assert journal.engine.state_hash() == live
        again = journal.submit(C.put_limit(1, 0, Side.BID, 501, 10_000))[0]
        assert again["code"][0] == Result.USER_AMOUNT_TOO_LARGE


def _log_under_a_step_then_edit(tmp_path: Path) -> str:
    """A new data directory under price_step 0.10, one order logged at 100.10 and no
    snapshot but the genesis one; the live state hash."""
    with Journal.open(make_config(btc_usdt=STEPPED), jconfig(tmp_path)) as journal:
        journal.balance_update(1, 2, b"deposit", 1, 10**16, 1, b"{}")  # USDT
        assert journal.submit(C.put_limit(1, 0, Side.BID, 1000, 10_010))[0]["code"][0] == 0
        return journal.engine.state_hash()


def test_limits_edited_before_the_first_snapshot_are_drift_not_a_failed_replay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The genesis snapshot holds the limits the state began with: a restart under a
    # config whose price_step (0.50) would refuse the logged order replays over them.
    live = _log_under_a_step_then_edit(tmp_path)
    assert [s.seq for s in list_snapshots(tmp_path / "snapshots")] == [0]
    edited = make_config(btc_usdt='price_step = "0.50"\n')
    with caplog.at_level(logging.WARNING), Journal.open(edited, jconfig(tmp_path)) as journal:
        assert journal.engine.state_hash() == live
        assert journal.engine.current_market(0).price_step == 10  # type: ignore[union-attr]
    assert any("price_step" in line for line in drift_lines(caplog))
    # and matchctl verify's whole-log road starts from the genesis snapshot too
    checked = verify(edited, tmp_path)
    assert checked.ok, checked.problems
    assert checked.full_hash == live


def test_without_the_genesis_snapshot_the_edited_config_breaks_the_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Negative control (TESTING.md): the snapshot is what saves the restart above.
    monkeypatch.setattr(persistence.journal, "_write_genesis", lambda *args: None)
    _log_under_a_step_then_edit(tmp_path)
    edited = make_config(btc_usdt='price_step = "0.50"\n')
    with pytest.raises(ReplayMismatch):
        Journal.open(edited, jconfig(tmp_path))
