"""Mass quotes through the order-entry server, in one process and with pair workers:
a QUOTE and its levels are one command of its frame, and never take another frame's
records, however the server batches the frames (docs/daemon.md). Each frame is
answered as the in-process engine answers that frame run alone, in order."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

import daemon.server
from core import commands as C
from core.engine import Engine
from core.schema import QuoteAction, Result, Side
from daemon.pipeline import Pipeline, plan_workers
from daemon.server import Server, ServerConfig
from daemon.server_pipeline import PipelinedServer
from ipc import wire
from persistence.journal import Journal, JournalConfig, journal_log_config
from tests.unit.daemon.test_server import BTC, TS, USDT, config

pytestmark = pytest.mark.integration

_INSTANCES = itertools.count()
ASK, BID = Side.ASK, Side.BID
LADDER = [(BID, 9_990, 2000), (ASK, 10_010, 2000)]  # min_amount: 1000 lots


class Served:
    """A server (``mode``: "one-process" or "workers") stepped by the test, and a
    client over inproc: frames sent before a step arrive together."""

    def __init__(self, path: Path, mode: str) -> None:
        self.journal = Journal.open(
            config(), JournalConfig(data_dir=path / "data", log=journal_log_config())
        )
        for user in (1, 2):
            for asset in (BTC, USDT):
                self.journal.balance_update(user, asset, b"deposit", user, 10**12, TS, b"{}")
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sconfig = ServerConfig(endpoint=f"inproc://quotes-{os.getpid()}-{next(_INSTANCES)}")
        self.pipeline: Pipeline | None = None
        self.server: Server
        if mode == "workers":
            instance = f"q{os.getpid()}n{next(_INSTANCES)}"
            plan = plan_workers(len(config().markets))
            self.pipeline = Pipeline(self.journal.engine, plan, instance)
            self.server = PipelinedServer(
                self.journal, self.pipeline, sconfig, context=self.context, clock=lambda: TS
            )
        else:
            self.server = Server(self.journal, sconfig, context=self.context, clock=lambda: TS)
        self.client = self.context.socket(zmq.DEALER)
        self.client.setsockopt(zmq.LINGER, 0)
        self.client.connect(self.server.endpoint)

    def run(self, frames: list[np.ndarray]) -> list[wire.ResultsFrame]:
        """Send every frame, then step the server until each is answered."""
        for rid, cmds in enumerate(frames, start=1):
            self.client.send(wire.encode_commands(cmds, rid, events=True))
        replies: dict[int, wire.ResultsFrame] = {}
        for _ in range(10_000):
            if len(replies) == len(frames):
                break
            self.server.step(100)
            while self.client.poll(0):
                reply = wire.decode_reply(self.client.recv())
                assert isinstance(reply, wire.ResultsFrame)
                replies[reply.request_id] = reply
        return [replies[rid] for rid in range(1, len(frames) + 1)]

    def close(self) -> None:
        self.client.close(0)
        self.server.close()
        if self.pipeline is not None:
            self.pipeline.close()
        self.journal.close()
        self.context.term()


@pytest.fixture(params=["one-process", "workers"])
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    s = Served(tmp_path, str(request.param))
    yield s
    s.close()


def frames() -> list[np.ndarray]:
    """Whole quotes, QUOTEs short of their levels at a frame's end (one-command frames
    too) followed by frames that open with levels, and orders around them. One user:
    the pipelined server keeps a user's commands in arrival order, not those of
    different users (a quote goes ahead of another user's held command)."""
    return [
        C.quote(1, 0, LADDER),  # whole: two new orders
        C.quote(1, 0, LADDER, k=1)[:1],  # a one-command frame, short of its level
        C.quote(1, 0, LADDER)[1:2],  # a stray level: not the previous frame's
        C.batch(C.put_limit(1, 0, BID, 1000, 9_980), C.quote(1, 0, LADDER, k=3)[:3]),  # short
        C.batch(C.quote(1, 0, LADDER)[2:], C.put_limit(1, 0, ASK, 1000, 10_020)),
        C.quote(1, 0, [(BID, 9_990, 1500), (ASK, 10_010, 3000)]),  # shrunk, grown
        C.quote(1, 0, []),  # the ladder removed
    ]


def expected(frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    plain = Engine(config())
    for user in (1, 2):
        for asset in (BTC, USDT):
            plain.balance_update(user, asset, b"deposit", user, 10**12, TS)
    out = []
    for cmds in frames:
        stamped = cmds.copy()
        stamped["ts_ns"] = TS
        out.append(plain.execute(stamped))
    return out


def check(replies: list[wire.ResultsFrame], frames: list[np.ndarray]) -> None:
    for i, (reply, (results, events)) in enumerate(zip(replies, expected(frames), strict=True)):
        assert np.array_equal(reply.results, results), (i, reply.results, results)
        assert np.array_equal(reply.events, events), i


def test_a_quote_never_takes_another_frame_s_records(served: Served) -> None:
    fs = frames()
    replies = served.run(fs)
    check(replies, fs)
    codes = [r.results["code"].tolist() for r in replies]
    assert codes[0] == [Result.OK] * 3
    assert codes[1] == codes[2] == [Result.INVALID_ARGUMENT]
    assert codes[3] == [Result.OK, *[Result.INVALID_ARGUMENT] * 3]
    assert codes[4] == [Result.INVALID_ARGUMENT, Result.OK]
    assert replies[5].results["value"].tolist() == [0, QuoteAction.SHRUNK, QuoteAction.GROWN]
    assert replies[6].results["value"].tolist() == [2]  # both quote orders cancelled


def test_negative_control_a_batch_not_ended_after_a_short_quote_fails_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the cut, the one-command QUOTE and the stray level after it run in one
    # engine batch, where they make a whole quote.
    monkeypatch.setattr(daemon.server, "_short_quote", lambda cmds: False)
    s = Served(tmp_path, "one-process")
    try:
        fs = frames()
        with pytest.raises(AssertionError):
            check(s.run(fs), fs)
    finally:
        s.close()
