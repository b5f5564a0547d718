"""The server's Prometheus metrics: commands by kind and result, batches, log gauges."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from daemon.metrics import ServerMetrics
from ipc import wire
from tests.unit.daemon.test_server import Running, deposits, orders

pytestmark = pytest.mark.integration


def test_metrics_count_what_the_server_did(tmp_path: Path) -> None:
    running = Running(tmp_path)
    metrics = ServerMetrics(running.journal)
    running.server.metrics = metrics
    port = metrics.serve("127.0.0.1:0")
    try:
        running.request(lambda rid: wire.encode_calls(deposits(), rid))
        running.request(lambda rid: wire.encode_commands(orders(), rid))
        running.request(lambda rid: b"XXXX" + bytes(40))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    finally:
        running.close()
        metrics.close()
    assert 'matchd_commands_total{kind="put_limit",result="ok"} 3.0' in text
    assert 'matchd_commands_total{kind="cancel",result="order_not_found"} 1.0' in text
    assert 'matchd_frames_total{kind="error"} 1.0' in text
    assert 'matchd_frames_total{kind="calls"} 1.0' in text
    assert "matchd_batch_seconds_count 1.0" in text
    assert "matchd_log_available 1.0" in text
    assert "matchd_log_lag_records 0.0" in text  # every answered batch is durable
    durable = next(line for line in text.splitlines() if line.startswith("matchd_durable_seq "))
    assert float(durable.split()[1]) > 0


def test_the_market_operations_are_counted_by_name() -> None:
    """Kinds 7..9 (MARKET_STATUS, USER_STATUS, CANCEL_MARKET) and their refusals have
    names, as every other kind and result."""
    from typing import cast

    import numpy as np
    from prometheus_client import generate_latest

    from core.schema import COMMAND_DTYPE, RESULT_DTYPE, CommandKind, Result
    from persistence.journal import Journal

    metrics = ServerMetrics(cast(Journal, None))  # counting reads no journal
    pairs = [
        (CommandKind.MARKET_STATUS, Result.OK), (CommandKind.USER_STATUS, Result.OK),
        (CommandKind.USER_STATUS, Result.OK), (CommandKind.CANCEL_MARKET, Result.OK),
        (CommandKind.PUT_LIMIT, Result.MARKET_HALTED),
        (CommandKind.REPLACE, Result.MARKET_DELISTED),
        (CommandKind.PUT_MARKET, Result.USER_BLOCKED),
    ]  # fmt: skip
    commands = np.zeros(len(pairs), dtype=COMMAND_DTYPE)
    results = np.zeros(len(pairs), dtype=RESULT_DTYPE)
    commands["kind"] = [int(k) for k, _ in pairs]
    results["code"] = [int(r) for _, r in pairs]
    metrics.count(commands, results)
    text = generate_latest(metrics.registry).decode()
    for line in (
        'matchd_commands_total{kind="market_status",result="ok"} 1.0',
        'matchd_commands_total{kind="user_status",result="ok"} 2.0',
        'matchd_commands_total{kind="cancel_market",result="ok"} 1.0',
        'matchd_commands_total{kind="put_limit",result="market_halted"} 1.0',
        'matchd_commands_total{kind="replace",result="market_delisted"} 1.0',
        'matchd_commands_total{kind="put_market",result="user_blocked"} 1.0',
    ):
        assert line in text
