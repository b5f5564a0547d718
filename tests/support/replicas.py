"""Engines with a replication role, in threads of the test process: a ``Node`` is a
journal, a ``Replication`` and a ``Server`` on its own thread, with ipc endpoints
in its own directory, and an SDK client to talk to it."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from core.config import EngineConfig
from daemon.auth import KeyRegistry
from daemon.pipeline import Pipeline, plan_workers
from daemon.replication import Replication, Role
from daemon.replication_config import ReplicationConfig
from daemon.server import Server, ServerConfig
from daemon.server_pipeline import PipelinedServer
from ipc.client import Client
from ipc.client_common import CurveKeys
from persistence.journal import Journal, JournalConfig, journal_log_config
from tests.support.scenario import make_config

TS = 1_700_000_000_000_000_000
_INSTANCES = itertools.count()


def engine_config() -> EngineConfig:
    return make_config(max_orders=1000, max_levels=200)


class Node:
    """One engine: ``path/data`` holds its state, ``path/orders.sock`` is its order
    entry, ``path/repl.sock`` its replication endpoint."""

    def __init__(
        self,
        path: Path,
        role: Role,
        *,
        primary: Node | str | None = None,
        segment_bytes: int | None = None,
        auth: KeyRegistry | None = None,
        client_keys: CurveKeys | None = None,
        listen: str | None = None,
        workers: bool = False,
        config: EngineConfig | None = None,
        **settings: Any,
    ) -> None:
        """``auth``: the key registry (CURVE on order entry and replication);
        ``client_keys``: what the test's client connects with then. ``workers``: the
        pipelined server, a pair worker per market (over every market slot).
        ``config``: the engine's (default ``engine_config()``)."""
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        log = journal_log_config(**({"segment_bytes": segment_bytes} if segment_bytes else {}))
        hold = role == "primary" and settings.get("mode") == "sync"
        jconfig = JournalConfig(data_dir=path / "data", log=log, hold_readers=hold)
        self.config = config or engine_config()
        self.journal = Journal.open(self.config, jconfig)
        values: dict[str, Any] = {"heartbeat_s": 0.02, "lease_s": 0.5, "check_every_records": 0}
        values.update(settings)
        self.rconfig = ReplicationConfig(
            listen=listen or f"ipc://{path}/repl.sock", node=path.name, **values
        )
        self.context: zmq.Context[Any] = zmq.Context()
        self.replication = Replication(
            self.journal,
            self.rconfig,
            role=role,
            primary=primary.rconfig.listen if isinstance(primary, Node) else primary,
            context=self.context,
            auth=auth,
        )
        self.endpoint = f"ipc://{path}/orders.sock"
        sconfig = ServerConfig(endpoint=self.endpoint, auth=auth)
        self.pipeline: Pipeline | None = None
        self.server: Server
        if workers:
            plan = plan_workers(len(self.config.markets), slots=self.config.market_slots)
            instance = f"rep{os.getpid()}n{next(_INSTANCES)}"
            self.pipeline = Pipeline(self.journal.engine, plan, instance)
            self.server = PipelinedServer(
                self.journal,
                self.pipeline,
                sconfig,
                clock=lambda: TS,
                context=self.context,
                replication=self.replication,
            )
        else:
            self.server = Server(
                self.journal,
                sconfig,
                clock=lambda: TS,
                context=self.context,
                replication=self.replication,
            )
        self._stop = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, name=path.name, daemon=True)
        self.thread.start()
        self.client = Client(self.endpoint, timeout_s=60.0, context=self.context, curve=client_keys)
        self._closed = False

    def _serve(self) -> None:
        try:
            self.server.serve(lambda: self._stop, 10)
        except BaseException as exc:  # the test looks at it
            self.error = exc

    def stop(self) -> None:
        """Stop serving and close everything (the state stays on disk)."""
        if self._closed:
            return
        self._closed = True
        self._stop = True
        self.thread.join(30)
        self.client.close()
        self.server.close()
        if self.pipeline is not None:
            self.pipeline.close()
        self.replication.close()
        self.journal.close()
        self.context.term()

    @property
    def durable_seq(self) -> int:
        return self.journal.durable_seq


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0, what: str = "") -> None:
    """Poll ``condition`` until true; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.005)
