"""The one-process server reads and answers runs of one-command frames many at a time
(``ipc.wire_batch``): a burst of mixed frames, drained in few loops, is answered byte
for byte as the ordinary encoder answers each frame of a plain engine run in order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from core import commands as C
from core.engine import Engine
from core.schema import Side
from daemon.server import Server, ServerConfig
from ipc import wire, wire_batch
from persistence.journal import Journal, JournalConfig, journal_log_config
from tests.unit.daemon.test_server import BTC, TS, USDT, config

pytestmark = pytest.mark.integration

USERS = (1, 2, 3, 4)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    journal = Journal.open(
        config(), JournalConfig(data_dir=tmp_path / "data", log=journal_log_config())
    )
    srv = Server(journal, ServerConfig(endpoint=f"ipc://{tmp_path}/orders.sock"), clock=lambda: TS)
    yield srv
    srv.close()
    journal.close()


def deposit(engine: Engine) -> None:
    for u in USERS:
        for a in (BTC, USDT):
            engine.balance_update(u, a, b"deposit", u, 10**12, TS)


def random_commands(rng: np.random.Generator, n: int) -> np.ndarray:
    out = []
    for _ in range(n):
        user = int(rng.choice(USERS))
        roll = rng.random()
        if roll < 0.7:
            side = Side.ASK if rng.random() < 0.5 else Side.BID
            out.append(
                C.put_limit(user, 0, side, int(rng.integers(1, 50)), int(rng.integers(95, 106)))
            )
        elif roll < 0.8:
            out.append(C.put_market(user, 0, Side.BID, int(rng.integers(100, 5000)), 0))
        else:
            out.append(C.cancel(user, 0, int(rng.integers(1, 200))))
    return C.batch(*out)


def build_requests(rng: np.random.Generator) -> list[tuple[str, object, bool]]:
    """(kind, payload, events?) in sending order: mostly one-command frames, and
    multi-command frames, broken frames and calls between them."""
    cmds = random_commands(rng, 400)
    out: list[tuple[str, object, bool]] = []
    at = 0
    while at < len(cmds):
        roll = rng.random()
        want = bool(rng.random() < 0.5)
        if roll < 0.75:
            out.append(("commands", cmds[at : at + 1], want))
            at += 1
        elif roll < 0.85:
            k = int(rng.integers(2, 5))
            out.append(("commands", cmds[at : at + k], want))
            at += k
        elif roll < 0.92:
            out.append(("broken", cmds[at : at + 1], want))
            at += 1
        else:
            out.append(("calls", [wire.BalanceQuery(user=int(rng.choice(USERS)))], False))
    return out


def encode(kind: str, payload: object, want: bool, rid: int) -> bytes:
    if kind == "calls":
        assert isinstance(payload, list)
        return wire.encode_calls(payload, rid)
    assert isinstance(payload, np.ndarray)
    frame = bytearray(wire.encode_commands(payload, rid, events=want))
    if kind == "broken":
        frame[12] = 87  # record_length: refused whole, with its request id
    return bytes(frame)


def expected_reply(plain: Engine, kind: str, payload: object, want: bool, rid: int) -> bytes:
    frame = encode(kind, payload, want, rid)
    if kind == "broken":
        with pytest.raises(wire.WireError) as refused:
            wire.decode_request(frame)
        return wire.error_reply(refused.value)
    if kind == "calls":
        assert isinstance(payload, list)
        (query,) = payload
        balances = [wire.Balance(a, *plain.balance(query.user, a)) for a in range(3)]
        return wire.encode_replies(rid, [wire.make_reply(query, 0, balances)])
    assert isinstance(payload, np.ndarray)
    cmds = payload.copy()
    cmds["ts_ns"] = TS
    results, events = plain.execute(cmds)
    return wire.encode_results(rid, results, events if want else None)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("delimiter", [False, True], ids=["dealer", "with-delimiter"])
def test_a_burst_is_answered_as_each_frame_alone(
    server: Server, seed: int, delimiter: bool
) -> None:
    run_burst(server, seed, delimiter)


def test_negative_control_a_run_answered_one_frame_off_fails_it(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deliberately broken batch encoder (each result sent under its neighbour's
    request id) must fail the comparison."""
    real = wire_batch.encode_single_results

    def shifted(request_ids: np.ndarray, *args: Any) -> Any:
        return real(np.roll(request_ids, 1), *args)

    monkeypatch.setattr(wire_batch, "encode_single_results", shifted)
    with pytest.raises(AssertionError):
        run_burst(server, 1, False)


def run_burst(server: Server, seed: int, delimiter: bool) -> None:
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    deposit(server.journal.engine)
    plain = Engine(config())
    deposit(plain)
    requests = build_requests(rng)
    context: zmq.Context[bytes] = zmq.Context()
    client = context.socket(zmq.DEALER)
    client.setsockopt(zmq.LINGER, 0)
    client.connect(server.endpoint)
    try:
        for rid, (kind, payload, want) in enumerate(requests, start=1):
            frame = encode(kind, payload, want, rid)
            # An empty delimiter part before the payload, as REQ sockets send: it
            # belongs to the envelope and comes back with the reply.
            client.send_multipart([b"", frame] if delimiter else [frame])
        steps = []
        replies: list[bytes] = []
        while len(replies) < len(requests):
            steps.append(server.step(1000))
            while client.poll(0):
                parts = client.recv_multipart()
                assert parts[:-1] == ([b""] if delimiter else [])
                replies.append(parts[-1])
        assert max(steps) >= 50, steps  # runs of frames, not one frame per loop
        expected = [
            expected_reply(plain, kind, payload, want, rid)
            for rid, (kind, payload, want) in enumerate(requests, start=1)
        ]
        # Refusals are answered at once, the rest once durable: match by request id.
        by_id = {int.from_bytes(r[16:24], "little"): r for r in replies}
        assert len(by_id) == len(requests)
        assert [by_id[rid] for rid in range(1, len(requests) + 1)] == expected
        assert server.journal.engine.state_hash() == plain.state_hash()
    finally:
        client.close(0)
        context.term()
