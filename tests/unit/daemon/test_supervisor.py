"""``matchd run``: the supervisor restarts a killed server at once, the restarted
server has every acknowledged command, and SIGTERM stops everything cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.supervisor import SdNotify
from ipc.client import Client
from tests.support.scenario import config_text

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]


def wait_for(predicate: Callable[[], object], timeout_s: float) -> float:
    """Seconds until ``predicate()`` is true; fails after ``timeout_s``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            if predicate():
                return time.monotonic() - t0
        except Exception:  # noqa: S110 -- not up yet
            pass
        time.sleep(0.02)
    raise AssertionError(f"not true within {timeout_s} s")


def test_a_killed_server_is_restarted_with_every_acknowledged_command(tmp_path: Path) -> None:
    config = tmp_path / "matchd.toml"
    config.write_text(config_text(max_orders=1000, max_levels=100), encoding="utf-8")
    endpoint = f"ipc://{tmp_path}/orders.sock"
    data = tmp_path / "data"
    daemon = subprocess.Popen(  # noqa: S603 -- our own command
        [
            sys.executable,
            "-m",
            "daemon.cli",
            "run",
            "--config",
            str(config),
            "--data-dir",
            str(data),
            "--endpoint",
            endpoint,
            "--metrics",
            "127.0.0.1:0",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pid_file = data / "run" / "server.pid"
    try:
        with Client(endpoint, timeout_s=2.0) as client:
            wait_for(lambda: client.status() is not None, 300)
            client.balance_update(1, 0, "deposit", 1, 10**12)
            client.balance_update(2, 2, "deposit", 1, 10**14)
            placed = client.put_limit(1, 0, 1, 1000, 10_000, source="before-kill")
            acked = client.status().seq
        first = int(pid_file.read_text())
        os.kill(first, signal.SIGKILL)
        restarted = wait_for(lambda: int(pid_file.read_text()) != first, 5)
        assert restarted < 1.5, f"restarted after {restarted:.2f} s"
        with Client(endpoint, timeout_s=2.0) as client:
            serving = wait_for(lambda: client.status() is not None, 120)
            print(f"restart {restarted:.2f} s, serving again {serving:.2f} s after")
            assert client.status().seq == acked
            (order,) = client.book(0, 1).orders
            assert (order.id, order.source) == (placed.order_id, "before-kill")
            assert client.put_limit(2, 0, 2, 1000, 10_000).seq == acked + 1
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
    server = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(server, 0)


def test_sd_notify_sends_datagrams_to_the_notify_socket(tmp_path: Path) -> None:
    import socket

    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        assert SdNotify(path).send("READY=1")
        assert sock.recv(100) == b"READY=1"
    assert not SdNotify("").send("READY=1")


def test_serve_argv_passes_the_key_registry_on(tmp_path: Path) -> None:
    from daemon.supervisor import serve_argv

    plain = serve_argv(tmp_path / "c.toml", tmp_path, "tcp://127.0.0.1:1", "batch")
    keyed = serve_argv(tmp_path / "c.toml", tmp_path, "tcp://127.0.0.1:1", "batch", "", tmp_path)
    assert "--keys" not in plain
    assert keyed[-2:] == ["--keys", str(tmp_path)]


def test_matchd_run_with_keys_checks_health_over_curve(tmp_path: Path) -> None:
    """The supervisor's probe connects with the server's own key: READY=1 comes only
    once it got an answer through CURVE; registered keys work, others get nothing."""
    import socket

    from ipc.client import RequestTimeout
    from tests.support.keys import Entry, Keys

    config = tmp_path / "matchd.toml"
    config.write_text(config_text(max_orders=1000, max_levels=100), encoding="utf-8")
    keys = Keys(tmp_path / "keys")
    keys.add("ops", Entry("admin"))
    keys.add("stranger")
    registry = keys.write_registry()
    endpoint = f"ipc://{tmp_path}/orders.sock"
    notify = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(notify)
        sock.settimeout(300)
        daemon = subprocess.Popen(  # noqa: S603 -- our own command
            [
                sys.executable, "-m", "daemon.cli", "run", "--config", str(config),
                "--data-dir", str(tmp_path / "data"), "--endpoint", endpoint,
                "--metrics", "", "--keys", str(registry),
            ],
            cwd=ROOT,
            env={**os.environ, "NOTIFY_SOCKET": notify},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert sock.recv(100) == b"READY=1"
            with Client(endpoint, timeout_s=5.0, curve=keys.curve("ops")) as ops:
                assert ops.status().seq == 0
            stranger = Client(endpoint, timeout_s=0.3, curve=keys.curve("stranger"))
            with stranger, pytest.raises(RequestTimeout):
                stranger.status()
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(60) == 0
