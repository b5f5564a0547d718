"""``matchctl`` against a running server: status, balance, book, depth, snapshot."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipc import wire
from tests.unit.daemon.test_server import Running, deposits, orders
from tools import matchctl

pytestmark = pytest.mark.integration


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    r = Running(tmp_path)
    r.request(lambda rid: wire.encode_calls(deposits(), rid))
    r.request(lambda rid: wire.encode_commands(orders(), rid))
    yield r
    r.close()


def ctl(running: Running, capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    endpoint = running.server.endpoint
    assert matchctl.main([argv[0], "--endpoint", endpoint, *argv[1:]]) == 0
    return json.loads(capsys.readouterr().out)


def test_live_commands(running: Running, capsys: pytest.CaptureFixture[str]) -> None:
    status = ctl(running, capsys, "status")
    assert isinstance(status, dict)
    assert status["seq"] == running.journal.durable_seq
    balances = ctl(running, capsys, "balance", "2")
    assert isinstance(balances, list)
    assert {b["asset"] for b in balances} == {0, 1, 2}
    book = ctl(running, capsys, "book", "0", "1")
    assert isinstance(book, dict)
    assert book["total"] == len(book["orders"])
    depth = ctl(running, capsys, "depth", "0", "--limit", "5")
    assert set(depth) == {"asks", "bids"}  # type: ignore[arg-type]
    snapshot = ctl(running, capsys, "snapshot")
    assert isinstance(snapshot, dict)
    assert snapshot["state_hash"] == running.journal.engine.state_hash()


def test_an_absent_daemon_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = matchctl.main(
        ["status", "--endpoint", f"ipc://{tmp_path}/nobody.sock", "--timeout", "0.2"]
    )
    assert code == 1
    assert "matchctl: status:" in capsys.readouterr().err
