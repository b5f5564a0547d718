"""The messages between a primary engine and its standbys (docs/operations.md).

A standby connects a DEALER to the primary's replication ROUTER. Every ZeroMQ
message is one msgpack-encoded message below, optionally followed by one frame of
raw bytes (log frames for ``Records``, snapshot bytes for ``SnapshotChunk``). Every
message carries the sender's epoch: the receiver compares it with its own before it
acts on anything (fencing).

standby -> primary: ``Hello`` (on connect and after any refusal), ``Ack`` (after
each commit, and every heartbeat while idle), ``FetchSnapshot``.
primary -> standby: ``Welcome`` or ``Refuse``, then ``Records``, ``Heartbeat``,
``Mark`` (the primary snapshots at this sequence: so does the standby), ``Hash`` (the
state hash the primary's snapshot recorded there), ``SnapshotChunk``.
"""

from __future__ import annotations

from typing import Final

import msgspec

#: Version of these messages; a peer of another version is refused.
REPLICATION_VERSION: Final = 1
#: The largest message header (the data frame has its own limit).
MAX_HEADER_BYTES: Final = 64 * 1024


class Message(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="t"):
    """Every message: the sender's epoch (its highest known)."""

    epoch: int


class Hello(Message, frozen=True, tag="hello"):
    """A standby introduces itself: its log ends at ``last_seq``, written in the
    epochs of ``history`` (``[epoch, first_seq]`` pairs, oldest first)."""

    node: str
    version: int
    config_digest: str
    last_seq: int
    history: list[tuple[int, int]]


class Welcome(Message, frozen=True, tag="welcome"):
    """The primary accepts: records follow from ``last_seq + 1`` of the Hello, or
    (``snapshot``) the standby must fetch the snapshot at ``snapshot_seq`` first, the
    log before it being gone. ``history`` is the primary's epoch history."""

    node: str
    history: list[tuple[int, int]]
    snapshot: bool = False
    snapshot_seq: int = 0
    snapshot_hash: str = ""
    snapshot_bytes: int = 0


class Refuse(Message, frozen=True, tag="refuse"):
    """The primary will not feed this standby; ``reason`` says why. ``diverged``: the
    standby's log holds records after ``keep_seq`` that the primary's does not.
    ``again``: say hello now (the primary does not know this standby: it restarted).
    ``deposed``: this engine is no primary (look for the primary elsewhere)."""

    reason: str
    diverged: bool = False
    keep_seq: int = 0
    again: bool = False
    deposed: bool = False


class Records(Message, frozen=True, tag="records"):
    """``count`` log frames from ``first_seq`` follow in the data frame; the primary's
    log is durable up to ``committed_seq``."""

    first_seq: int
    count: int
    committed_seq: int


class Heartbeat(Message, frozen=True, tag="heartbeat"):
    """Nothing new; the primary's log is durable up to ``committed_seq``."""

    committed_seq: int


class Mark(Message, frozen=True, tag="mark"):
    """The primary is writing a snapshot of the state at ``seq``: the standby takes
    one at the same sequence, to compare the hashes."""

    seq: int


class Hash(Message, frozen=True, tag="hash"):
    """The state hash of the primary's snapshot at ``seq``."""

    seq: int
    state_hash: str


class Ack(Message, frozen=True, tag="ack"):
    """The standby's log is durable up to ``durable_seq`` (and its state applied)."""

    durable_seq: int


class FetchSnapshot(Message, frozen=True, tag="fetch"):
    """Send the bytes of the snapshot at ``seq`` from ``offset``."""

    seq: int
    offset: int


class SnapshotChunk(Message, frozen=True, tag="chunk"):
    """Bytes of the snapshot at ``seq`` from ``offset`` follow in the data frame
    (``size_bytes`` in all); an empty chunk with ``gone`` set: it is no longer there."""

    seq: int
    offset: int
    size_bytes: int
    gone: bool = False


AnyMessage = (
    Hello | Welcome | Refuse | Records | Heartbeat | Mark | Hash | Ack | FetchSnapshot
    | SnapshotChunk
)  # fmt: skip

_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final[msgspec.msgpack.Decoder[AnyMessage]] = msgspec.msgpack.Decoder(AnyMessage)


class ReplicationError(ValueError):
    """A message that cannot be read (malformed, too large, unknown)."""


def encode(message: Message) -> bytes:
    """The message's header bytes."""
    return _encoder.encode(message)


def decode(data: bytes | memoryview) -> AnyMessage:
    """The message in ``data``; ``ReplicationError`` if it is not one."""
    if len(data) > MAX_HEADER_BYTES:
        raise ReplicationError(f"message header of {len(data)} bytes (at most {MAX_HEADER_BYTES})")
    try:
        message = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ReplicationError(f"unreadable replication message: {exc}") from None
    if message.epoch < 0:
        raise ReplicationError(f"negative epoch {message.epoch}")
    return message
