"""The daemon with pair workers against the in-process engine, through the real server
and ZeroMQ: random streams from several pipelining clients; then a replay of the log
by the in-process engine (which checks every logged result and event) gives exactly
what each client was acknowledged, results and events, and the state hash the daemon
reports (docs/daemon.md, "The server with pair workers")."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

from core.engine import Engine
from core.schema import EVENT_DTYPE
from daemon.pipeline import Pipeline, plan_workers
from daemon.server import ServerConfig
from daemon.server_pipeline import PipelinedServer
from ipc import wire
from persistence.journal import LOG_DIR, Journal, JournalConfig, journal_log_config
from persistence.replay import ReplayMismatch, replay
from tests.support.recording import RecordingEngine, assert_acknowledged_as_logged
from tests.support.steps import Batch, Update, resolve
from tests.support.streams import random_stream
from tests.support.world import Limits, stream_config

pytestmark = pytest.mark.integration

SEED = 4_2026_11_23
_INSTANCES = itertools.count()


class Daemon:
    """A pipelined server on its own thread."""

    def __init__(self, path: Path, workers: int | None) -> None:
        self.config = stream_config(Limits())
        self.journal = Journal.open(
            self.config, JournalConfig(data_dir=path / "data", log=journal_log_config())
        )
        plan = plan_workers(len(self.config.markets), workers)
        self.pipeline = Pipeline(self.journal.engine, plan, f"eq{os.getpid()}n{next(_INSTANCES)}")
        self.endpoint = f"ipc://{path}/orders.sock"
        self.server = PipelinedServer(
            self.journal, self.pipeline, ServerConfig(endpoint=self.endpoint), max_pending=512
        )
        self.stop = False
        self.thread = threading.Thread(target=self.server.serve, args=(lambda: self.stop, 20))
        self.thread.start()

    def close(self) -> None:
        self.stop = True
        self.thread.join(120)
        self.server.close()
        self.pipeline.close()
        self.journal.close()


@pytest.fixture(params=[None, 1], ids=["per-market", "one-worker"])
def daemon(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Daemon]:
    d = Daemon(tmp_path, request.param)
    yield d
    d.close()


def _socket(context: zmq.Context[bytes], endpoint: str) -> zmq.Socket[bytes]:
    s = context.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    return s


def _client(endpoint: str, frames: list[np.ndarray], out: list[tuple[np.ndarray, object]]) -> None:
    """Send ``frames`` with up to 8 in flight; keep (commands, reply) of each."""
    context: zmq.Context[bytes] = zmq.Context()
    sock = _socket(context, endpoint)
    sent: dict[int, np.ndarray] = {}
    try:
        rid = 0
        while frames or sent:
            while frames and len(sent) < 8:
                rid += 1
                sent[rid] = frames.pop(0)
                sock.send(wire.encode_commands(sent[rid], rid, events=True))
            assert sock.poll(120_000), "no reply"
            reply = wire.decode_reply(sock.recv())
            out.append((sent.pop(reply.request_id), reply))
    finally:
        sock.close(0)
        context.term()


def _encodable(step: Update) -> bool:
    try:
        step.business.decode()
    except UnicodeDecodeError:
        return False
    return all(-(2**63) <= v < 2**63 for v in (step.change, step.business_id, step.user))


def test_concurrent_clients_get_what_a_replay_of_the_log_gives(daemon: Daemon) -> None:
    run_and_compare(daemon, SEED)


@pytest.mark.parametrize("daemon", [None], indirect=True, ids=["per-market"])
def test_negative_control_orders_left_under_provisional_ids_fail_it(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deliberately broken sequencer (orders never named by their real ids in
    the events) must fail the comparison."""
    monkeypatch.setattr("daemon.sequencing.name_orders", lambda *args: 0)
    with pytest.raises(ReplayMismatch, match="events of seq"):
        run_and_compare(daemon, SEED)


def run_and_compare(daemon: Daemon, seed: int) -> None:
    """A random stream from three pipelining clients, checked against a replay."""
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    shadow = Engine(daemon.config)  # only to draw plausible order ids
    calls: list[wire.BalanceUpdate] = []
    frames: list[np.ndarray] = []
    ts = 1_000_000
    for step in random_stream(rng, daemon.config, 4000):
        if isinstance(step, Update):
            if not _encodable(step):
                continue  # hostile updates: the wire's own tests cover them
            shadow.balance_update(
                step.user, step.asset, step.business, step.business_id, step.change, ts
            )
            calls.append(
                wire.BalanceUpdate(
                    user=step.user,
                    asset=step.asset,
                    business=step.business.decode(),
                    business_id=step.business_id,
                    change=step.change,
                )
            )
            continue
        assert isinstance(step, Batch)
        cmds = resolve(step.commands, shadow, ts)
        shadow.execute(cmds)
        frames.append(cmds)
        ts += 1000 * (len(cmds) + 1)
    context: zmq.Context[bytes] = zmq.Context()
    admin = _socket(context, daemon.endpoint)
    try:
        admin.send(wire.encode_calls(calls, 1))  # the deposits, first
        assert admin.poll(120_000)
        # Some are refused (a withdrawal beyond the balance, a repeated id): no matter.
        assert len(wire.decode_reply(admin.recv()).replies) == len(calls)
        outs: list[list[tuple[np.ndarray, object]]] = [[], [], []]
        threads = [
            threading.Thread(target=_client, args=(daemon.endpoint, frames[i::3], outs[i]))
            for i in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        admin.send(wire.encode_calls([wire.ServerSnapshot()], 2))
        assert admin.poll(120_000)
        done = wire.decode_reply(admin.recv()).replies[0].result_as(wire.ServerSnapshot)
    finally:
        admin.close(0)
        context.term()
    acked = [pair for out in outs for pair in out]
    assert sum(len(c) for c, _ in acked) == sum(len(f) for f in frames)
    engine = RecordingEngine(daemon.config)
    stats = replay(engine, daemon.journal.jconfig.data_dir / LOG_DIR, 1, check_events=True)
    assert stats.last_seq == done.seq
    assert engine.state_hash() == done.state_hash
    assert engine.check_invariants() == []
    settled = 0
    for cmds, reply in acked:
        assert isinstance(reply, wire.ResultsFrame)
        settled += assert_acknowledged_as_logged(engine, cmds, reply.results)
        for res in reply.results[reply.results["seq"] != 0]:
            first = int(res["event_start"])
            got = reply.events[first : first + int(res["event_count"])]
            assert got.dtype == EVENT_DTYPE
            assert got.tobytes() == engine.by_seq[int(res["seq"])][2].tobytes()
    assert settled > 1000
    stats_seq = daemon.pipeline.sequencing.stats()
    assert stats_seq.peak_in_flight > 1  # the clients' commands were pipelined
