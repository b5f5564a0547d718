"""SIGKILL each kind of child of ``matchd run`` under load (TESTING.md scenario 1, CI
size): the supervisor restarts it, every acknowledged command is in the log as it was
acknowledged, a replay of the whole log reaches the state hash the daemon reports,
and SIGTERM then stops everything and removes the shared memory.

Kinds: a pair worker (its sequencer fail-stops, since the worker's book is lost, and
recovers every book from snapshot + log) and the server (the sequencer; its workers
die with it). The seed and the times are printed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from core import commands as C
from core.schema import CommandKind, Result
from daemon.cli import instance_name
from ipc.client import Client
from ipc.shm import list_segments
from persistence.journal import LOG_DIR, SNAPSHOT_DIR
from persistence.replay import replay
from persistence.snapshot import list_snapshots
from tests.support.recording import RecordingEngine, assert_acknowledged_as_logged
from tests.support.scenario import config_text, make_config
from tests.unit.daemon.test_supervisor import ROOT, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 20261123
USERS = range(1, 7)


class Loader:
    """One client sending random batches; keeps what was acknowledged, by seq."""

    def __init__(self, endpoint: str, seed: int) -> None:
        self.endpoint = endpoint
        self.rng = np.random.default_rng(seed)
        self.acked: dict[int, tuple[np.void, np.void]] = {}
        self.ids: list[tuple[int, int, int]] = []  # (user, market, order id)
        self.errors = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)

    def batch(self) -> np.ndarray:
        rng = self.rng
        cmds = []
        for _ in range(16):
            if self.ids and rng.random() < 0.25:
                user, market, oid = self.ids.pop(int(rng.integers(len(self.ids))))
                cmds.append(C.cancel(user, market, oid))
                continue
            user = int(rng.choice(USERS))
            market = int(rng.integers(2))
            side = int(rng.integers(1, 3))
            price = int(rng.integers(9_950, 10_050))
            cmds.append(C.put_limit(user, market, side, int(rng.integers(1, 50)) * 1000, price))
        return C.batch(*cmds)

    def run(self) -> None:
        client = Client(self.endpoint, timeout_s=2.0)
        try:
            while not self.stop:
                cmds = self.batch()
                try:
                    results, _ = client.submit(cmds)
                except Exception:  # the server is down: a new client, the same load
                    self.errors += 1
                    client.close()
                    client = Client(self.endpoint, timeout_s=2.0)
                    continue
                for cmd, res in zip(cmds, results.copy(), strict=True):
                    if res["seq"]:
                        self.acked[int(res["seq"])] = (cmd, res)
                    if res["code"] == Result.OK and cmd["kind"] == CommandKind.PUT_LIMIT:
                        key = (int(cmd["user"]), int(cmd["market"]), int(res["order_id"]))
                        self.ids.append(key)
        finally:
            client.close()

    def wait_for_acks(self, n: int, timeout_s: float = 120) -> None:
        target = len(self.acked) + n
        wait_for(lambda: len(self.acked) >= target, timeout_s)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


def start_run(config: Path, data: Path, endpoint: str, *extra: str) -> subprocess.Popen[bytes]:
    """``matchd run`` with ``config`` on ``data``, order entry at ``endpoint``."""
    return subprocess.Popen(  # noqa: S603 -- our own command
        [
            sys.executable, "-m", "daemon.cli", "run", "--config", str(config),
            "--data-dir", str(data), "--endpoint", endpoint, "--metrics", "", *extra,
        ],
        cwd=ROOT,
    )  # fmt: skip


def fund(client: Client) -> None:
    """Deposit every asset for the loader's users, once the server answers."""
    wait_for(lambda: client.status() is not None, 300)
    for user in USERS:
        for asset in (0, 1, 2):
            client.balance_update(user, asset, "deposit", 1, 10**16)


def kill_child_under_load(
    loader: Loader, pid_file: Path, acks: int = 300, ready: Callable[[], bool] = lambda: True
) -> None:
    """Start ``loader``; after ``acks`` acknowledgements and ``ready()``, SIGKILL the
    supervised child whose pid is in ``pid_file``; wait for ``acks`` more and for its
    replacement; stop the loader."""
    loader.thread.start()
    loader.wait_for_acks(acks)
    wait_for(ready, 60)
    first = int(pid_file.read_text())
    os.kill(first, signal.SIGKILL)  # under load
    loader.wait_for_acks(acks)
    wait_for(lambda: pid_file.exists() and int(pid_file.read_text()) != first, 30)
    loader.stop = True
    loader.thread.join(60)


@pytest.mark.parametrize("victim", ["worker", "server"])
def test_sigkill_under_load_loses_no_acknowledged_command(tmp_path: Path, victim: str) -> None:
    limits = {"max_orders": 20_000, "max_levels": 500}
    config = tmp_path / "matchd.toml"
    config.write_text(config_text(**limits), encoding="utf-8")
    endpoint = f"ipc://{tmp_path}/orders.sock"
    data = tmp_path / "data"
    daemon = start_run(config, data, endpoint, "--workers", "per-market", "--snapshot-on-stop")
    pid_file = data / "run" / "server.pid"
    loader = Loader(endpoint, SEED)
    print(f"seed {SEED}, victim {victim}")
    try:
        with Client(endpoint, timeout_s=2.0) as client:
            fund(client)
        loader.thread.start()
        loader.wait_for_acks(500)
        server = int(pid_file.read_text())
        target = server if victim == "server" else children(server)[0]
        assert target != server or victim == "server"
        before = len(loader.acked)
        os.kill(target, signal.SIGKILL)
        t0 = time.monotonic()
        wait_for(lambda: int(pid_file.read_text()) != server, 10)
        restarted = time.monotonic() - t0
        wait_for(lambda: len(loader.acked) > before + 50, 120)
        serving = time.monotonic() - t0
        print(f"restarted after {restarted:.2f} s, acknowledging again after {serving:.2f} s")
        assert restarted < 1.5, f"restarted after {restarted:.2f} s"
        loader.wait_for_acks(300)
        loader.stop = True
        loader.thread.join(30)
        with Client(endpoint, timeout_s=10.0) as client:
            last_seq = client.status().seq
    finally:
        loader.stop = True
        daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            raise
    assert code == 0
    assert list_segments(instance_name(data)) == []
    # SIGTERM wrote a snapshot of the state the log ends at (--snapshot-on-stop).
    newest = max(list_snapshots(data / SNAPSHOT_DIR), key=lambda info: info.seq)
    assert newest.seq == last_seq
    live_hash = newest.state_hash
    assert loader.errors > 0  # the kill was felt
    # Every acknowledged command is in the log, as it was acknowledged.
    engine = RecordingEngine(make_config(**limits))
    stats = replay(engine, data / LOG_DIR, 1, check_events=True)
    assert stats.last_seq == last_seq
    assert max(loader.acked) <= last_seq
    commands = np.array([cmd for cmd, _ in loader.acked.values()])
    results = np.array([res for _, res in loader.acked.values()])
    assert assert_acknowledged_as_logged(engine, commands, results) == len(loader.acked)
    assert engine.state_hash() == live_hash
    assert engine.check_invariants() == []
