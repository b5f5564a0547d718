"""``matchd run`` with ``[history]``: the supervisor runs the MySQL drainer beside the
server; the drainer applies every durable record, its position shows in
``server.status``, and SIGKILLed under load it is restarted and catches up with
nothing lost or doubled. ``matchd drain`` refuses a config without ``[history]``."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from daemon import cli
from ipc.client import Client
from persistence.history_config import load_history_config
from persistence.history_db import migrate
from persistence.history_schema import MIGRATIONS
from tests.support.mysql import TestDatabase, fresh_database
from tests.support.scenario import config_text
from tests.unit.daemon.test_kill import SEED, Loader, fund, kill_child_under_load, start_run
from tests.unit.daemon.test_supervisor import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def count(db: TestDatabase, sql: str) -> int:
    conn = db.connect()
    try:
        cursor = conn.cursor()
        cursor.execute(sql)
        return int(cursor.fetchone()[0])
    finally:
        conn.close()


def test_drain_without_history_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "matchd.toml"
    config.write_text(config_text(), encoding="utf-8")
    assert cli.main(["drain", "--config", str(config), "--data-dir", str(tmp_path)]) == 2
    assert "history is not configured" in capsys.readouterr().err
    assert cli.main(["drain", "--config", str(tmp_path / "none.toml")]) == 2
    with fresh_database() as db:
        config.write_text(config_text() + db.history_toml(), encoding="utf-8")
        bad = ["drain", "--config", str(config), "--data-dir", str(tmp_path), "--nice", "20"]
        assert cli.main(bad) == 2
        assert "--nice must be 0..19" in capsys.readouterr().err


def test_the_supervised_drainer_applies_the_log_and_survives_sigkill(tmp_path: Path) -> None:
    with fresh_database() as db:
        text = config_text(max_orders=20_000, max_levels=500) + db.history_toml(batch_records=64)
        history = load_history_config(text)
        assert history is not None
        assert migrate(history) == [m.version for m in MIGRATIONS]
        config = tmp_path / "matchd.toml"
        config.write_text(text, encoding="utf-8")
        endpoint = f"ipc://{tmp_path}/orders.sock"
        data = tmp_path / "data"
        daemon = start_run(config, data, endpoint)
        pid_file = data / "run" / "drainer.pid"
        loader = Loader(endpoint, SEED)
        print(f"seed {SEED}")
        try:
            with Client(endpoint, timeout_s=2.0) as client:
                fund(client)
                wait_for(lambda: "mysql" in client.status().consumers, 120)
                kill_child_under_load(loader, pid_file)

                def caught_up() -> bool:
                    status = client.status()
                    return status.consumers.get("mysql") == status.durable_seq

                wait_for(caught_up, 120)
                status = client.status()
        finally:
            loader.stop = True
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(120) == 0
        assert status.durable_seq == status.seq
        # Every record once, none missing.
        assert count(db, "SELECT COUNT(*) FROM operation_log") == status.seq
        assert count(db, "SELECT COUNT(DISTINCT seq) FROM operation_log") == status.seq
        assert count(db, "SELECT MAX(seq) FROM operation_log") == status.seq
        assert count(db, "SELECT seq FROM drain_position WHERE name = 'mysql'") == status.seq
        assert count(db, "SELECT COUNT(*) FROM order_history") > 0
