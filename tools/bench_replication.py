"""A hot standby beside the daemon under the e2e load (``matchd-bench e2e --replication``).

Issue 9 asks what sync replication costs in throughput and p99 latency. With
``--replication async`` or ``sync`` the e2e daemon gets a ``[replication]`` table
(``listen`` an ipc:// endpoint in the run's folder, heartbeats every 20 ms, a 1 s
lease, no periodic hash checks) and ``StandbyUnderLoad`` starts a standby, ``matchd
serve --role standby``, on a data directory of its own, once the daemon runs. The
load starts only once the primary lists the standby (in sync mode it refuses writes
before). At the end it waits for the standby to hold everything the primary made
durable, and reports how long that took, where the standby ended, and its CPU
seconds from the moment it followed. The cost itself is read off the e2e runs: the
same benchmark with ``--replication none`` against ``sync`` (or ``async``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from ipc.client import Client

POLL_S: Final = 0.05
#: How long a standby may take to start and follow: a first start compiles the kernels.
START_TIMEOUT_S: Final = 300.0


class StandbyUnderLoad:
    """The standby of one e2e run (``mode``: ``async`` or ``sync``)."""

    def __init__(self, mode: str, work: Path, cpu_seconds: Callable[[int], float]) -> None:
        """Nothing happens until ``create``; the standby's files go in ``work``;
        ``cpu_seconds(pid)`` reads a process's CPU."""
        if mode not in ("async", "sync"):
            raise ValueError(f"replication mode {mode!r}: async or sync")
        self.mode = mode
        self.work = work
        self._cpu_seconds = cpu_seconds
        self.listen = f"ipc://{work}/repl.sock"
        self.endpoint = f"ipc://{work}/standby.sock"
        self.data_dir = work / "standby-data"
        self._primary_endpoint = ""
        self._standby: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None
        self._cpu_at_follow = 0.0

    def create(self) -> str:
        """The ``[replication]`` table for the daemon's (and the standby's) config."""
        return (
            f'\n[replication]\nlisten = "{self.listen}"\nmode = "{self.mode}"\n'
            "heartbeat_s = 0.02\nlease_s = 1.0\ncheck_every_records = 0\n"
        )

    def start(self, config: Path, data_dir: Path, endpoint: str, log: Path) -> None:
        """Start the standby (the daemon, on ``data_dir``, runs) and wait until the
        primary at ``endpoint`` lists it."""
        del data_dir  # the standby keeps its own log
        self._primary_endpoint = endpoint
        self._log = log
        with log.open("ab") as out:
            self._standby = subprocess.Popen(  # noqa: S603 -- our own command
                [
                    sys.executable, "-m", "daemon.cli", "serve", "--config", str(config),
                    "--data-dir", str(self.data_dir), "--endpoint", self.endpoint,
                    "--metrics", "", "--role", "standby", "--primary", self.listen,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        with Client(endpoint, timeout_s=5.0) as client:
            while not client.status().replication:
                if self._standby.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError("the standby did not follow:\n" + self._log_tail())
                time.sleep(POLL_S)
        self._cpu_at_follow = self._cpu_seconds(self._standby.pid)

    def finish(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait until the standby holds the primary's durable sequence, stop it, report."""
        if self._standby is None:
            raise RuntimeError("the standby was not started")
        t0 = time.monotonic()
        caught_up = None
        with (
            Client(self._primary_endpoint, timeout_s=5.0) as primary,
            Client(self.endpoint, timeout_s=5.0) as standby,
        ):
            while True:
                durable_seq = primary.status().durable_seq
                standby_seq = standby.status().seq
                if standby_seq == durable_seq:
                    caught_up = time.monotonic() - t0
                    break
                if time.monotonic() - t0 > timeout_s:
                    break
                time.sleep(POLL_S)
        cpu = self._cpu_seconds(self._standby.pid) - self._cpu_at_follow
        self.close()
        return {
            "mode": self.mode,
            "standby_cpu_seconds": round(cpu, 2),
            "primary_durable_seq": durable_seq,
            "standby_seq": standby_seq,
            "seq_matched": standby_seq == durable_seq,
            "catch_up_after_load_s": None if caught_up is None else round(caught_up, 3),
        }

    def close(self) -> None:
        """Stop the standby (SIGTERM; killed after 30 s)."""
        if self._standby is None or self._standby.poll() is not None:
            return
        self._standby.send_signal(signal.SIGTERM)
        try:
            self._standby.wait(30)
        except subprocess.TimeoutExpired:
            self._standby.kill()
            self._standby.wait()

    def _log_tail(self) -> str:
        if self._log is None or not self._log.exists():
            return ""
        return self._log.read_text(errors="replace")[-4000:]
