"""One-command COMMANDS frames decoded and answered many at a time (docs/protocol.md).

A client that sends one order per message costs the server a Python decode and a
Python encode per frame, about 30 µs between them, which caps such flow near 30,000
orders/s. Frames of exactly one command all have the same 120 bytes, so a server
loop that drained N of them joins them and reads them as one numpy array of
``SINGLE_DTYPE`` (header + command): the header checks are N-wide comparisons, the
commands one byte copy. Their RESULTS frames are built the same way, into one
buffer that the server slices per frame. The bytes are exactly those of
``ipc.wire.decode_request`` / ``encode_results`` (the tests compare them); a frame
that is not a valid one-command frame is only flagged here, and the caller decodes it
the ordinary way, which gives its precise error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from core.schema import COMMAND_DTYPE, EVENT_DTYPE, RESULT_DTYPE
from ipc.wire_header import (
    COMMAND_LENGTH,
    EVENT_LENGTH,
    HEADER_LENGTH,
    MAGIC,
    RESULT_LENGTH,
    U32_MAX,
    WIRE_VERSION,
    FrameFlag,
    FrameKind,
    WireLimits,
)
from ipc.wire_kernels import lay_out_replies

#: The 32-byte header as a record (offsets in ipc.wire_header / docs/protocol.md).
HEADER_FIELDS: Final = [
    ("magic", "S4"),
    ("version", "u1"),
    ("kind", "u1"),
    ("flags", "<u2"),
    ("count", "<u4"),
    ("record_length", "<u2"),
    ("reserved", "<u2"),
    ("request_id", "<u8"),
    ("payload_length", "<u4"),
    ("event_count", "<u4"),
]
#: A whole one-command COMMANDS frame.
SINGLE_DTYPE: Final = np.dtype([*HEADER_FIELDS, ("command", COMMAND_DTYPE)])
SINGLE_LENGTH: Final = HEADER_LENGTH + COMMAND_LENGTH  # 120
#: The fixed part of the RESULTS frame answering one command: header + result.
REPLY_PREFIX_DTYPE: Final = np.dtype([*HEADER_FIELDS, ("result", RESULT_DTYPE)])
REPLY_PREFIX_LENGTH: Final = HEADER_LENGTH + RESULT_LENGTH  # 72

_BLANK: Final = bytes(SINGLE_LENGTH)  # stands in for a frame of another length: bad magic
_EVENTS: Final = int(FrameFlag.EVENTS)
_DROPPED: Final = int(FrameFlag.EVENTS_DROPPED)


@dataclass(frozen=True, slots=True)
class Singles:
    """``n`` request frames read as one-command frames, by position.

    ``ok[i]``: frame ``i`` is a valid one-command COMMANDS frame; only then do
    ``commands[i]``, ``request_ids[i]`` and ``want_events[i]`` mean anything.
    ``commands`` is a contiguous, writable COMMAND_DTYPE array of its own.
    """

    ok: np.ndarray
    commands: np.ndarray
    request_ids: np.ndarray
    want_events: np.ndarray

    def __len__(self) -> int:
        return len(self.ok)


def decode_singles(payloads: Sequence[bytes]) -> Singles:
    """Read ``payloads`` (request frames) as one-command COMMANDS frames.

    A frame is ``ok`` when ``ipc.wire.decode_request`` would return it as a COMMANDS
    frame of one record (any limits allow one command of 120 bytes); every other
    frame, valid or not, is left to that decoder.
    """
    n = len(payloads)
    lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=n)
    right_size = lengths == SINGLE_LENGTH
    if right_size.all():
        joined = b"".join(payloads)
    else:
        joined = b"".join(
            p if size else _BLANK for p, size in zip(payloads, right_size.tolist(), strict=True)
        )
    frames = np.frombuffer(joined, dtype=SINGLE_DTYPE, count=n)
    flags = frames["flags"]
    ok = (
        right_size
        & (frames["magic"] == MAGIC)
        & (frames["version"] == WIRE_VERSION)
        & (frames["kind"] == FrameKind.COMMANDS)
        & ((flags & ~np.uint16(_EVENTS)) == 0)
        & (frames["count"] == 1)
        & (frames["record_length"] == COMMAND_LENGTH)
        & (frames["reserved"] == 0)
        & (frames["payload_length"] == COMMAND_LENGTH)
        & (frames["event_count"] == 0)
    )
    raw = np.frombuffer(joined, dtype=np.uint8).reshape(n, SINGLE_LENGTH)
    commands = raw[:, HEADER_LENGTH:].copy().view(COMMAND_DTYPE).reshape(n)
    return Singles(ok, commands, frames["request_id"].copy(), (flags & _EVENTS) != 0)


def encode_singles(commands: np.ndarray, request_ids: np.ndarray, *, events: bool) -> np.ndarray:
    """One-command COMMANDS frames, one per record of ``commands`` (COMMAND_DTYPE),
    asking for events if told: row ``i`` of the returned ``(n, 120)`` uint8 array is
    the frame ``ipc.wire.encode_commands(commands[i:i+1], request_ids[i])`` makes."""
    frames = np.zeros(len(commands), dtype=SINGLE_DTYPE)
    frames["magic"] = MAGIC
    frames["version"] = WIRE_VERSION
    frames["kind"] = FrameKind.COMMANDS
    frames["flags"] = _EVENTS if events else 0
    frames["count"] = 1
    frames["record_length"] = COMMAND_LENGTH
    frames["request_id"] = request_ids
    frames["payload_length"] = COMMAND_LENGTH
    frames["command"] = commands
    return frames.view(np.uint8).reshape(len(commands), SINGLE_LENGTH)


def encode_single_results(
    request_ids: np.ndarray,
    want_events: np.ndarray,
    results: np.ndarray,
    events: np.ndarray,
    limits: WireLimits,
) -> tuple[np.ndarray, list[int]]:
    """The RESULTS frames answering one command each, laid end to end.

    ``results[i]`` (RESULT_DTYPE) answers request ``request_ids[i]``; its
    ``event_start`` indexes ``events`` (EVENT_DTYPE, the batch's events). Frame ``i``
    carries its events when ``want_events[i]``, exactly as ``ipc.wire.encode_results``
    would (EVENTS_DROPPED when they would exceed ``limits.max_reply_bytes``), and its
    result's ``event_start`` counts from the frame's own events (0). Returns the buffer
    (uint8) and the ``len + 1`` offsets of the frames in it.
    """
    k = len(results)
    counts = results["event_count"].astype(np.int64)
    want = np.asarray(want_events, dtype=bool)
    fits = (REPLY_PREFIX_LENGTH + counts * EVENT_LENGTH <= limits.max_reply_bytes) & (
        counts <= U32_MAX
    )
    carried = np.where(want & fits, counts, 0)
    prefix = np.zeros(k, dtype=REPLY_PREFIX_DTYPE)
    prefix["magic"] = MAGIC
    prefix["version"] = WIRE_VERSION
    prefix["kind"] = FrameKind.RESULTS
    prefix["flags"] = np.where(want, np.where(fits, _EVENTS, _DROPPED), 0)
    prefix["count"] = 1
    prefix["record_length"] = RESULT_LENGTH
    prefix["request_id"] = request_ids
    prefix["payload_length"] = RESULT_LENGTH + carried * EVENT_LENGTH
    prefix["event_count"] = carried
    prefix["result"] = results
    prefix["result"]["event_start"] = 0
    sizes = REPLY_PREFIX_LENGTH + carried * EVENT_LENGTH
    offsets = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    total_events = int(carried.sum())
    if total_events == 0:
        return prefix.view(np.uint8), offsets.tolist()
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    event_bytes = np.ascontiguousarray(events, dtype=EVENT_DTYPE).view(np.uint8)
    lay_out_replies(
        prefix.view(np.uint8).reshape(k, REPLY_PREFIX_LENGTH),
        event_bytes.reshape(len(events), EVENT_LENGTH),
        results["event_start"].astype(np.int64),
        carried,
        offsets,
        out,
    )
    return out, offsets.tolist()


def warm_up() -> None:
    """Compile (or load from numba's cache) the reply kernel, so the first burst a
    server answers does not pay for it."""
    results = np.zeros(1, dtype=RESULT_DTYPE)
    results["event_count"] = 1
    encode_single_results(
        np.zeros(1, dtype=np.uint64),
        np.ones(1, dtype=bool),
        results,
        np.zeros(1, dtype=EVENT_DTYPE),
        WireLimits(),
    )


__all__ = [
    "REPLY_PREFIX_DTYPE",
    "REPLY_PREFIX_LENGTH",
    "SINGLE_DTYPE",
    "SINGLE_LENGTH",
    "Singles",
    "decode_singles",
    "encode_single_results",
    "encode_singles",
    "warm_up",
]
