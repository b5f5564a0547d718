"""A running order-entry server for tests: a journal in a temp data directory, the
server (one process, or the pipelined server with pair workers) on its own thread,
and an SDK client over real ZeroMQ sockets."""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path

from core.config import EngineConfig
from daemon.pipeline import Pipeline, plan_workers
from daemon.server import Server, ServerConfig
from daemon.server_pipeline import PipelinedServer
from ipc.client import Client
from persistence.journal import Journal, JournalConfig, journal_log_config

#: The commands' receive time the servers stamp.
TS = 1_700_000_000_000_000_000
#: The first engine call may compile kernels (a cold numba cache).
SLOW_S = 120.0
_INSTANCES = itertools.count()


class Served:
    """A server over a journal in ``path`` on its own thread, and an SDK client.

    ``mode`` "one-process" or "workers": the pipelined server, with ``workers`` pair
    workers (None: one per market) over every market slot of ``config``.
    ``restart()`` stops both and opens the same data directory again.
    """

    def __init__(
        self, path: Path, mode: str, config: EngineConfig, workers: int | None = None
    ) -> None:
        self.path = path
        self.mode = mode
        self.config = config
        self.workers = workers
        self.endpoint = f"ipc://{path}/orders.sock"
        self._start()

    def _start(self) -> None:
        cfg = self.config
        self.journal = Journal.open(
            cfg, JournalConfig(data_dir=self.path / "data", log=journal_log_config())
        )
        sconfig = ServerConfig(endpoint=self.endpoint)
        self.pipeline: Pipeline | None = None
        self.server: Server
        if self.mode == "workers":
            plan = plan_workers(len(cfg.markets), self.workers, slots=cfg.market_slots)
            instance = f"srv{os.getpid()}n{next(_INSTANCES)}"
            self.pipeline = Pipeline(self.journal.engine, plan, instance)
            self.server = PipelinedServer(self.journal, self.pipeline, sconfig, clock=lambda: TS)
        else:
            self.server = Server(self.journal, sconfig, clock=lambda: TS)
        self.stop = False
        self.thread = threading.Thread(target=self.server.serve, args=(lambda: self.stop, 20))
        self.thread.start()
        self.client = Client(self.endpoint, timeout_s=SLOW_S)

    def state_hash(self) -> str:
        return self.client.snapshot().state_hash

    def close(self) -> None:
        self.client.close()
        self.stop = True
        self.thread.join(120)
        self.server.close()
        if self.pipeline is not None:
            self.pipeline.close()
        self.journal.close()

    def restart(self) -> None:
        self.close()
        self._start()
