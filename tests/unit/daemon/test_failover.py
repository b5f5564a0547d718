"""Failover between real ``matchd serve`` processes (TESTING.md scenario 9, CI size):
a primary and a standby in sync mode under load; SIGKILL the primary, promote the
standby, restart the old primary as the new one's standby, and again the other way.
No acknowledged command is lost: every one is in the final primary's log, under its
seq, as it was acknowledged (a seq handed out twice would show there as another
command); a batch without an answer is sent again, and its orders' client ids keep
any of them from being placed twice; the final state hash is a replay's of that log,
and the standby's equals the primary's. The seed and the failover times are printed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core.schema import CommandKind, Result
from ipc.client import Client
from persistence.journal import LOG_DIR
from persistence.replay import replay
from tests.support.recording import RecordingEngine, assert_acknowledged_as_logged
from tests.support.scenario import config_text, make_config
from tests.unit.daemon.test_kill import Loader, fund
from tests.unit.daemon.test_supervisor import ROOT, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 20261206
LIMITS = {"max_orders": 20_000, "max_levels": 500}
#: Failovers per run: 3 in CI; MATCHD_FAILOVER_ROUNDS=200 for the nightly size.
ROUNDS = int(os.environ.get("MATCHD_FAILOVER_ROUNDS", "3"))
REPLICATION = """
[replication]
mode = "sync"
sync_replicas = 1
heartbeat_s = 0.02
lease_s = 0.5
check_every_records = 2000
"""
#: Refusals that mean "not here, try the other engine".
ELSEWHERE = (Result.NOT_PRIMARY, Result.TOO_FEW_REPLICAS)


class FailoverLoader(Loader):
    """The loader of test_kill, going to whichever engine takes its commands: it
    keeps every acknowledgement (a list: a seq acknowledged twice must show). Every
    order has a client id, and a batch without an answer (a time-out, an engine
    down or not the primary) is sent again, the same, to the other engine, until it
    is answered: the safe retry of issue 9."""

    def __init__(self, endpoints: list[str], seed: int) -> None:
        super().__init__(endpoints[0], seed)
        self.endpoints = endpoints
        self.at = 0
        self.log: list[tuple[np.void, np.void]] = []
        self.last_ack = time.monotonic()
        self.next_client_id = 1
        #: (user, client id) -> the order placed with it, as the answers said.
        self.placed: dict[tuple[int, int], int] = {}
        self.repeats = 0  # retried orders answered REPEAT_ORDER: placed the first time

    def batch(self) -> np.ndarray:
        cmds = super().batch()
        puts = np.flatnonzero(cmds["kind"] == CommandKind.PUT_LIMIT)
        cmds["order_id"][puts] = np.arange(len(puts)) + self.next_client_id
        self.next_client_id += len(puts)
        return cmds

    def run(self) -> None:
        client = Client(self.endpoints[self.at], timeout_s=1.0)
        cmds = None
        try:
            while not self.stop:
                if cmds is None:
                    cmds = self.batch()
                try:
                    results, _ = client.submit(cmds)
                    moved = bool(np.isin(results["code"], ELSEWHERE).any())
                except Exception:  # no answer: the other engine, the same batch
                    moved = True
                if moved:
                    self.errors += 1
                    client.close()
                    self.at = (self.at + 1) % len(self.endpoints)
                    client = Client(self.endpoints[self.at], timeout_s=1.0)
                    time.sleep(0.02)
                    continue
                self.last_ack = time.monotonic()
                self.take(cmds, results.copy())
                cmds = None
        finally:
            client.close()

    def take(self, cmds: np.ndarray, results: np.ndarray) -> None:
        for cmd, res in zip(cmds, results, strict=True):
            if res["seq"]:
                self.log.append((cmd, res))
                self.acked[int(res["seq"])] = (cmd, res)
            if cmd["kind"] != CommandKind.PUT_LIMIT:
                continue
            key, code = (int(cmd["user"]), int(cmd["order_id"])), int(res["code"])
            if code == Result.REPEAT_ORDER:
                self.repeats += 1
            if code in (Result.OK, Result.REPEAT_ORDER):
                assert self.placed.setdefault(key, int(res["order_id"])) == res["order_id"]


def serve(config: Path, path: Path, role: str, primary: Path | None) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "daemon.cli", "serve", "--config", str(config),
        "--data-dir", str(path / "data"), "--endpoint", f"ipc://{path}/orders.sock",
        "--metrics", "", "--role", role, "--replication", f"ipc://{path}/repl.sock",
    ]  # fmt: skip
    if primary is not None:
        argv += ["--primary", f"ipc://{primary}/repl.sock"]
    return subprocess.Popen(argv, cwd=ROOT)  # noqa: S603 -- our own command


def test_sigkill_the_primary_and_promote_loses_no_acknowledged_command(tmp_path: Path) -> None:
    config = tmp_path / "matchd.toml"
    config.write_text(config_text(**LIMITS) + REPLICATION, encoding="utf-8")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    procs = {a: serve(config, a, "primary", None), b: serve(config, b, "standby", a)}
    endpoint = {n: f"ipc://{n}/orders.sock" for n in (a, b)}
    loader = FailoverLoader([endpoint[a], endpoint[b]], SEED)
    print(f"seed {SEED}")
    primary, standby = a, b
    try:
        with Client(endpoint[a], timeout_s=2.0) as client:
            wait_for(lambda: _status(endpoint[b]) is not None, 300)
            wait_for(lambda: client.status().replication != {}, 30)
            fund(client)
        loader.thread.start()
        for k in range(ROUNDS):
            loader.wait_for_acks(400)
            procs[primary].send_signal(signal.SIGKILL)
            procs[primary].wait(10)
            t0 = time.monotonic()
            with Client(endpoint[standby], timeout_s=10.0) as client:
                promoted = client.promote()
            took = time.monotonic() - t0
            # Sync with one standby: writes wait for a standby to follow the new primary.
            procs[primary] = serve(config, primary, "standby", standby)
            wait_for(lambda s=standby: _following(endpoint[s]), 120)
            writable = time.monotonic() - t0
            wait_for(lambda t0=t0: loader.last_ack > t0, 120)
            print(
                f"round {k}: killed {primary.name}; {standby.name} primary of epoch "
                f"{promoted.epoch} from seq {promoted.seq + 1} {took * 1e3:.1f} ms later, "
                f"taking writes {writable:.2f} s after the kill (the old primary restarted "
                f"as its standby); the loader acknowledged again after "
                f"{loader.last_ack - t0:.2f} s (its 1 s time-out included)"
            )
            primary, standby = standby, primary
            wait_for(lambda p=primary: _following(endpoint[p]), 120)
        loader.wait_for_acks(200)
        loader.stop = True
        loader.thread.join(30)
        wait_for(lambda: _caught_up(endpoint[primary], endpoint[standby]), 60)
    finally:
        loader.stop = True
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
    assert loader.errors > 0  # the kills were felt
    engine = RecordingEngine(make_config(**LIMITS))
    stats = replay(engine, primary / "data" / LOG_DIR, 1, check_events=True)
    commands = np.array([cmd for cmd, _ in loader.log])
    results = np.array([res for _, res in loader.log])
    assert max(results["seq"]) <= stats.last_seq
    assert assert_acknowledged_as_logged(engine, commands, results) == len(loader.log)
    # Retries placed nothing twice: one logged order per client id, the one answered.
    logged: dict[tuple[int, int], int] = {}
    for cmd, res, _ in engine.by_seq.values():
        if cmd["kind"] == CommandKind.PUT_LIMIT:
            key = (int(cmd["user"]), int(cmd["order_id"]))
            assert key not in logged, f"client id {key} placed twice"
            logged[key] = int(res["order_id"])
    assert all(logged[key] == oid for key, oid in loader.placed.items())
    print(f"{loader.repeats} retried orders answered REPEAT_ORDER (placed the first time)")
    other = RecordingEngine(make_config(**LIMITS))
    replay(other, standby / "data" / LOG_DIR, 1)
    assert other.state_hash() == engine.state_hash()
    assert engine.check_invariants() == []


def _status(endpoint: str) -> object:
    try:
        with Client(endpoint, timeout_s=1.0) as client:
            return client.status()
    except Exception:
        return None


def _following(primary: str) -> bool:
    status = _status(primary)
    return status is not None and bool(getattr(status, "replication", {}))


def _caught_up(primary: str, standby: str) -> bool:
    p, s = _status(primary), _status(standby)
    return p is not None and s is not None and getattr(p, "seq", -1) == getattr(s, "seq", -2)


def test_a_promoted_standby_under_matchd_run_starts_the_log_readers(tmp_path: Path) -> None:
    """``matchd run --role standby`` runs only the server; promoted, its supervisor
    starts the feed of the config and restarts the server as a primary."""
    feed = f'\n[feed]\npub = "ipc://{tmp_path}/pub.sock"\nrpc = "ipc://{tmp_path}/rpc.sock"\n'
    config = tmp_path / "matchd.toml"
    config.write_text(config_text(**LIMITS) + feed + "[replication]\n", encoding="utf-8")
    a, b = tmp_path / "a", tmp_path / "b"
    primary = serve(config, a, "primary", None)
    standby = subprocess.Popen(  # noqa: S603 -- our own command
        [
            sys.executable, "-m", "daemon.cli", "run", "--config", str(config),
            "--data-dir", str(b / "data"), "--endpoint", f"ipc://{b}/orders.sock",
            "--metrics", "", "--role", "standby", "--primary", f"ipc://{a}/repl.sock",
            "--replication", f"ipc://{b}/repl.sock",
        ],
        cwd=ROOT,
    )  # fmt: skip
    run = b / "data" / "run"
    try:
        wait_for(lambda: _status(f"ipc://{b}/orders.sock") is not None, 300)
        time.sleep(1.5)  # a few health checks: nothing else starts beside a standby
        assert sorted(p.name for p in run.glob("*.pid")) == ["server.pid"]
        primary.send_signal(signal.SIGTERM)
        primary.wait(60)
        with Client(f"ipc://{b}/orders.sock", timeout_s=10.0) as client:
            assert client.promote().epoch == 1
        wait_for(lambda: (run / "feed.pid").exists(), 30)
        server = int((run / "server.pid").read_text())
        os.kill(server, signal.SIGKILL)  # restarted as the primary it now is
        wait_for(lambda: int((run / "server.pid").read_text()) != server, 30)
        wait_for(lambda: getattr(_status(f"ipc://{b}/orders.sock"), "role", "") == "primary", 60)
        status = _status(f"ipc://{b}/orders.sock")
        assert getattr(status, "epoch", None) == 1
    finally:
        for proc in (primary, standby):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
    assert standby.returncode == 0


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_a_paused_standby_catches_up(tmp_path: Path, mode: str) -> None:
    """SIGSTOP the standby under load (a partition that keeps the connection): in
    async mode the primary goes on (at most ``window_records`` sent unacknowledged),
    in sync mode it refuses writes once the lease runs out; after SIGCONT the standby
    catches up and holds the primary's log."""
    settings = f'\n[replication]\nmode = "{mode}"\nheartbeat_s = 0.02\nlease_s = 0.3\n'
    config = tmp_path / "matchd.toml"
    config.write_text(config_text(**LIMITS) + settings + "window_records = 256\n", "utf-8")
    a, b = tmp_path / "a", tmp_path / "b"
    procs = [serve(config, a, "primary", None), serve(config, b, "standby", a)]
    loader = FailoverLoader([f"ipc://{a}/orders.sock"], SEED)
    try:
        wait_for(lambda: _following(f"ipc://{a}/orders.sock"), 300)
        with Client(f"ipc://{a}/orders.sock", timeout_s=2.0) as client:
            fund(client)
        loader.thread.start()
        loader.wait_for_acks(300)
        procs[1].send_signal(signal.SIGSTOP)
        time.sleep(0.5)  # past the lease
        before = len(loader.log)
        time.sleep(1.0)
        acked_while_paused = len(loader.log) - before
        procs[1].send_signal(signal.SIGCONT)
        loader.wait_for_acks(300)
        loader.stop = True
        loader.thread.join(30)
        wait_for(lambda: _caught_up(f"ipc://{a}/orders.sock", f"ipc://{b}/orders.sock"), 60)
    finally:
        loader.stop = True
        procs[1].send_signal(signal.SIGCONT)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)
    if mode == "async":
        assert acked_while_paused > 100  # trading went on
    else:
        assert acked_while_paused == 0  # nothing acknowledged that the standby lacks
        assert loader.errors > 0
    primary, standby = (
        RecordingEngine(make_config(**LIMITS)),
        RecordingEngine(make_config(**LIMITS)),
    )
    last = replay(primary, a / "data" / LOG_DIR, 1).last_seq
    assert replay(standby, b / "data" / LOG_DIR, 1).last_seq == last
    assert standby.state_hash() == primary.state_hash()
