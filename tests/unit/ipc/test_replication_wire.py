"""Replication messages: round trips, and precise refusals of what is not one."""

from __future__ import annotations

import msgspec
import pytest

from ipc import replication_wire as rw

MESSAGES = [
    rw.Hello(3, "b", rw.REPLICATION_VERSION, "d" * 32, 17, [(1, 5), (3, 9)]),
    rw.Welcome(3, "a", [(1, 5)], snapshot=True, snapshot_seq=9, snapshot_hash="0" * 32),
    rw.Refuse(2, "diverged", diverged=True, keep_seq=4),
    rw.Records(1, 10, 3, 12),
    rw.Heartbeat(1, 12),
    rw.Mark(1, 12),
    rw.Hash(1, 12, "f" * 32),
    rw.Ack(1, 12),
    rw.FetchSnapshot(1, 9, 4 << 20),
    rw.SnapshotChunk(1, 9, 0, 100, gone=True),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message: rw.Message) -> None:
    assert rw.decode(rw.encode(message)) == message


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "unreadable"),
        (b"\xc1", "unreadable"),
        (msgspec.msgpack.encode({"t": "nope", "epoch": 1}), "unreadable"),
        (msgspec.msgpack.encode({"t": "ack", "epoch": 1}), "unreadable"),  # no durable_seq
        (msgspec.msgpack.encode({"t": "ack", "epoch": 1, "durable_seq": 1, "x": 2}), "unread"),
        (msgspec.msgpack.encode({"t": "ack", "epoch": -1, "durable_seq": 1}), "negative"),
        (bytes(rw.MAX_HEADER_BYTES + 1), "header of"),
    ],
)
def test_what_is_not_a_message_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(rw.ReplicationError, match=why):
        rw.decode(data)
