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
