"""``[replication]``: defaults, and a precise error for every mistake."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from daemon.replication_config import ReplicationConfig, load_replication_config
from daemon.supervisor import primary_argv


def test_no_table_no_replication() -> None:
    assert load_replication_config("[http]\n") is None


def test_defaults() -> None:
    config = load_replication_config("[replication]\n")
    assert config == ReplicationConfig()
    assert (config.mode, config.listen, config.failover_after_s) == (
        "async",
        "tcp://127.0.0.1:7516",
        0.0,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('listen = "localhost:1"', "not a ZeroMQ endpoint"),
        ('mode = "quorum"', "mode"),
        ("sync_replicas = 0", "sync_replicas = 0 is outside"),
        ("lease_s = 0.0", "lease_s"),
        ("heartbeat_s = 2.0", "heartbeat_s = 2.0 must be below lease_s"),
        ("failover_after_s = 0.1", "at least twice heartbeat_s"),
        ("failover_after_s = 3.0", 'needs mode = "sync"'),
        ("window_records = 1", "window_records"),
        ("check_every_records = -1", "check_every_records"),
        ('node = "a b"', "node"),
        ("speed = 1", "speed"),
    ],
)
def test_mistakes_are_refused(body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_replication_config(f"[replication]\n{body}\n")


def test_automatic_failover_in_sync_mode() -> None:
    config = load_replication_config('[replication]\nmode = "sync"\nfailover_after_s = 2.0\n')
    assert config is not None
    assert config.failover_after_s == 2.0


def test_a_promoted_standbys_command_line() -> None:
    argv = ["python", "-m", "daemon.cli", "serve", "--role", "standby", "--primary", "x", "-v"]
    assert primary_argv(argv) == ["python", "-m", "daemon.cli", "serve", "--role", "primary", "-v"]
    assert primary_argv(primary_argv(argv)) == primary_argv(argv)  # a primary's stays
