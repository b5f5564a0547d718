"""The MySQL drainer beside the daemon under the e2e load (``matchd-bench e2e --history``).

Issue 5 asks for the drainer's lag under the e2e load of the daemon. ``DrainUnderLoad``
creates a fresh database on the local MariaDB (migrated as ``matchd db migrate``
does), gives the daemon's config its ``[history]`` table, starts ``matchd drain`` on
the daemon's data directory once the daemon runs, and samples ``server.status``
(durable sequence and the drainer's position) every ``SAMPLE_S`` on a thread of its
own. At the end it waits for the drainer to catch up and reports the lag in records
and in seconds (how long ago the log reached the position the drainer was at), the
catch-up time after the load, and what was drained; then it drops the database.
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
from typing import Any, Final

import numpy as np

from ipc.client import Client
from persistence.history_config import HistoryConfig
from persistence.history_db import migrate
from tools.bench_drain import count_rows, drop_database
from tools.bench_feed_load import lag_seconds

SAMPLE_S: Final = 0.1


class DrainUnderLoad:
    """The drainer of one e2e run and its lag samples."""

    def __init__(
        self,
        cpu_seconds: Callable[[int], float],
        host: str = "127.0.0.1",
        port: int = 3306,
        user: str = "root",
        busy_duty: float | None = None,
    ) -> None:
        """Nothing happens until ``create``; ``cpu_seconds(pid)`` reads a process's CPU;
        ``busy_duty`` goes into the drainer's ``[history]`` (None: its default)."""
        self._cpu_seconds = cpu_seconds
        self.busy_duty = busy_duty
        self.config = HistoryConfig(
            host=host, port=port, user=user, database=f"matchd_bench_e2e_{os.getpid()}"
        )
        self._drainer: subprocess.Popen[bytes] | None = None
        self._sampler: threading.Thread | None = None
        self._halt = threading.Event()
        #: (monotonic s, durable seq, drained seq)
        self.samples: list[tuple[float, int, int]] = []

    def create(self) -> str:
        """Create and migrate the database; returns the ``[history]`` table for the
        daemon's config."""
        drop_database(self.config)
        migrate(self.config)
        c = self.config
        duty = "" if self.busy_duty is None else f"busy_duty = {self.busy_duty!r}\n"
        return (
            f'\n[history]\nhost = "{c.host}"\nport = {c.port}\nuser = "{c.user}"\n'
            f'database = "{c.database}"\n{duty}'
        )

    def start(self, config: Path, data_dir: Path, endpoint: str, log: Path) -> None:
        """Start ``matchd drain`` on ``data_dir`` and the sampler (the daemon runs)."""
        with log.open("ab") as out:
            self._drainer = subprocess.Popen(  # noqa: S603 -- our own command
                [
                    sys.executable, "-m", "daemon.cli", "drain", "--config", str(config),
                    "--data-dir", str(data_dir),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        self._sampler = threading.Thread(target=self._sample, args=(endpoint,), daemon=True)
        self._sampler.start()

    def _sample(self, endpoint: str) -> None:
        with Client(endpoint, timeout_s=5.0) as client:
            while not self._halt.is_set():
                status = client.status()
                drained = status.consumers.get("mysql", 0)
                self.samples.append((time.monotonic(), status.durable_seq, drained))
                self._halt.wait(SAMPLE_S)

    def finish(self, timeout_s: float = 600.0) -> dict[str, Any]:
        """Wait for the drainer to catch up, stop it, report, drop the database."""
        t0 = time.monotonic()
        caught_up = None
        while time.monotonic() - t0 < timeout_s:
            if self.samples and self.samples[-1][1] == self.samples[-1][2]:
                caught_up = time.monotonic() - t0
                break
            time.sleep(SAMPLE_S)
        cpu = self._cpu_seconds(self._drainer.pid) if self._drainer is not None else 0.0
        self._stop()
        try:
            counts = count_rows(self.config)
        finally:
            drop_database(self.config)
        return {
            **self.lag(),
            "catch_up_after_load_s": None if caught_up is None else round(caught_up, 2),
            "drainer_cpu_seconds": round(cpu, 2),
            "busy_duty": HistoryConfig().busy_duty if self.busy_duty is None else self.busy_duty,
            "drained": counts,
            "database": f"{self.config.address()} (dropped)",
        }

    def close(self) -> None:
        """Stop the sampler and the drainer and drop the database (after a failure)."""
        self._stop()
        drop_database(self.config)

    def _stop(self) -> None:
        self._halt.set()
        if self._sampler is not None:
            self._sampler.join(30)
        if self._drainer is not None and self._drainer.poll() is None:
            self._drainer.send_signal(signal.SIGTERM)
            self._drainer.wait(60)

    def lag(self) -> dict[str, Any]:
        """Lag in records and in seconds over the samples taken under load."""
        if not self.samples:
            return {"samples": 0}
        t = np.array([s[0] for s in self.samples])
        durable = np.array([s[1] for s in self.samples])
        drained = np.array([s[2] for s in self.samples])
        records = durable - drained
        # How long the oldest record the drainer lacks has been durable.
        seconds = lag_seconds(t, durable, drained)
        return {
            "samples": len(t),
            "lag_records": {
                "p50": int(np.percentile(records, 50)),
                "p99": int(np.percentile(records, 99)),
                "max": int(records.max()),
            },
            "lag_seconds": {
                "p50": round(float(np.percentile(seconds, 50)), 3),
                "p99": round(float(np.percentile(seconds, 99)), 3),
                "max": round(float(seconds.max()), 3),
            },
        }
