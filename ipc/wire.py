"""The ZeroMQ order-entry wire format, version 4: frames in and out (docs/protocol.md).

A frame is a 32-byte little-endian header and a payload. Order commands travel as
``COMMAND_DTYPE`` records and come back as ``RESULT_DTYPE`` records (and, on request,
the batch's ``EVENT_DTYPE`` records), so a batch is one numpy view and costs no
per-record Python. Every other operation is a msgpack "call" (a typed msgspec Struct
tagged by its ``op``), answered by one reply per call, by position.

Decoders trust nothing: a frame that is not exactly what the header says, or too
large, or of an unknown version, kind or flag, raises ``WireError`` carrying a
``Result`` code and a precise message (and the request id when the header had one),
which the server sends back as an ERROR frame. This module checks frames, not
values: command records are validated by the engine, which answers per record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec
import numpy as np

from core.schema import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    MESSAGES,
    RESULT_DTYPE,
    Result,
)
from ipc.wire_calls import *  # noqa: F403 -- ipc.wire is the public surface
from ipc.wire_calls import Call
from ipc.wire_catalog import *  # noqa: F403
from ipc.wire_header import *  # noqa: F403
from ipc.wire_header import (
    ALLOWED_FLAGS,
    DEFAULT_LIMITS,
    EVENT_LENGTH,
    HEADER,
    HEADER_LENGTH,
    MAGIC,
    RECORD_LENGTH,
    REQUEST_KINDS,
    RESULT_LENGTH,
    U32_MAX,
    U64_MAX,
    WIRE_VERSION,
    FrameFlag,
    FrameKind,
    Header,
    WireError,
    WireLimits,
)
from ipc.wire_quote import *  # noqa: F403
from ipc.wire_replies import *  # noqa: F403
from ipc.wire_replies import AnyCall, ErrorBody, RawReply, Reply

# --------------------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class CommandsFrame:
    """A decoded COMMANDS request. ``commands`` is a view into the frame's buffer."""

    request_id: int
    flags: FrameFlag
    commands: np.ndarray

    @property
    def want_events(self) -> bool:
        return bool(self.flags & FrameFlag.EVENTS)


@dataclass(frozen=True, slots=True)
class CallsFrame:
    """A decoded CALLS request: each item is a Call, or the WireError of that call."""

    request_id: int
    flags: FrameFlag
    calls: list[Call | WireError]

    @property
    def want_events(self) -> bool:
        return bool(self.flags & FrameFlag.EVENTS)


@dataclass(frozen=True, slots=True)
class ResultsFrame:
    """A decoded RESULTS reply: views into the frame's buffer."""

    request_id: int
    flags: FrameFlag
    results: np.ndarray
    events: np.ndarray

    @property
    def events_dropped(self) -> bool:
        return bool(self.flags & FrameFlag.EVENTS_DROPPED)


@dataclass(frozen=True, slots=True)
class RepliesFrame:
    request_id: int
    replies: list[Reply]


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """The server refused the request frame whole."""

    request_id: int
    code: int
    message: str


_CALL_DECODER: Final = msgspec.msgpack.Decoder(AnyCall)
_RAWS_DECODER: Final = msgspec.msgpack.Decoder(list[msgspec.Raw])
_REPLIES_DECODER: Final = msgspec.msgpack.Decoder(list[RawReply])
_ERROR_DECODER: Final = msgspec.msgpack.Decoder(ErrorBody)
_ENCODER: Final = msgspec.msgpack.Encoder()


def _bytes_view(frame: bytes | bytearray | memoryview) -> memoryview:
    view = memoryview(frame)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def decode_header(
    frame: bytes | bytearray | memoryview, max_bytes: int, kinds: frozenset[FrameKind]
) -> Header:
    """The checked header of ``frame``, whose kind must be one of ``kinds``."""
    view = _bytes_view(frame)
    size = len(view)
    if size < HEADER_LENGTH:
        raise WireError(f"frame of {size} bytes is shorter than the {HEADER_LENGTH}-byte header")
    h = Header(*HEADER.unpack_from(view))
    if h.magic != MAGIC:
        raise WireError(f"bad magic {h.magic!r}, expected {MAGIC!r}")
    rid = h.request_id

    def fail(message: str) -> WireError:
        return WireError(message, request_id=rid)

    if size > max_bytes:
        raise fail(f"frame of {size} bytes exceeds the limit of {max_bytes} bytes")
    if h.version != WIRE_VERSION:
        raise fail(f"unsupported wire version {h.version}; this side speaks {WIRE_VERSION}")
    if h.kind not in kinds:
        expected = ", ".join(k.name for k in sorted(kinds))
        raise fail(f"frame kind {h.kind} is not accepted here (expected {expected})")
    _check_fields(h, FrameKind(h.kind), size)
    return h


def _check_fields(h: Header, kind: FrameKind, size: int) -> None:
    """The header fields after version and kind: flags, reserved, lengths, event count."""

    def fail(message: str) -> WireError:
        return WireError(message, request_id=h.request_id)

    allowed = ALLOWED_FLAGS[kind]
    if h.flags & ~int(allowed):
        raise fail(f"flags {h.flags:#06x} not allowed on {kind.name} (allowed {int(allowed):#06x})")
    both = FrameFlag.EVENTS | FrameFlag.EVENTS_DROPPED
    if h.flags & both == both:
        raise fail("flags EVENTS and EVENTS_DROPPED are exclusive")
    if h.reserved:
        raise fail(f"reserved header field is {h.reserved}, must be 0")
    if h.payload_length != size - HEADER_LENGTH:
        raise fail(
            f"payload_length is {h.payload_length} but the frame carries "
            f"{size - HEADER_LENGTH} bytes after the header"
        )
    expected_length = RECORD_LENGTH.get(kind, 0)
    if h.record_length != expected_length:
        raise fail(f"record_length {h.record_length} on {kind.name}, must be {expected_length}")
    if h.event_count and not (kind == FrameKind.RESULTS and h.flags & FrameFlag.EVENTS):
        raise fail(f"event_count {h.event_count} without events on {kind.name}")


def _check_count(h: Header, limit: int) -> None:
    low = 0 if h.kind == FrameKind.ERROR else 1
    high = 0 if h.kind == FrameKind.ERROR else limit
    if not low <= h.count <= high:
        raise WireError(
            f"count {h.count} on {FrameKind(h.kind).name}, must be in {low}..{high}",
            request_id=h.request_id,
        )


def _records(view: memoryview, h: Header, dtype: np.dtype[Any], extra: int = 0) -> np.ndarray:
    """The header's ``count`` records of ``dtype`` at the start of the payload."""
    needed = h.count * dtype.itemsize + extra
    if needed != h.payload_length:
        raise WireError(
            f"{h.count} records of {dtype.itemsize} bytes"
            + (f" and {extra} bytes of events" if extra else "")
            + f" need {needed} payload bytes, the frame has {h.payload_length}",
            request_id=h.request_id,
        )
    return np.frombuffer(view, dtype=dtype, count=h.count, offset=HEADER_LENGTH)


def _msgpack(decoder: msgspec.msgpack.Decoder[Any], data: memoryview, h: Header, what: str) -> Any:
    try:
        return decoder.decode(data)
    except (msgspec.MsgspecError, RecursionError) as exc:
        raise WireError(f"{what}: {exc}", request_id=h.request_id) from exc


def _decode_calls(view: memoryview, h: Header) -> CallsFrame:
    raws = _msgpack(_RAWS_DECODER, view[HEADER_LENGTH:], h, "calls")
    if len(raws) != h.count:
        raise WireError(
            f"count is {h.count} but the payload holds {len(raws)} calls", request_id=h.request_id
        )
    calls: list[Call | WireError] = []
    for i, raw in enumerate(raws):
        try:
            calls.append(_CALL_DECODER.decode(raw))
        except (msgspec.MsgspecError, RecursionError) as exc:
            calls.append(WireError(f"call {i}: {exc}", request_id=h.request_id, index=i))
    return CallsFrame(h.request_id, FrameFlag(h.flags), calls)


def decode_request(
    frame: bytes | bytearray | memoryview, limits: WireLimits = DEFAULT_LIMITS
) -> CommandsFrame | CallsFrame:
    """Decode a request frame (server side); raises ``WireError`` if it is refused."""
    view = _bytes_view(frame)
    h = decode_header(view, limits.max_request_bytes, REQUEST_KINDS)
    if h.kind == FrameKind.COMMANDS:
        _check_count(h, limits.max_commands)
        records = _records(view, h, COMMAND_DTYPE)
        return CommandsFrame(h.request_id, FrameFlag(h.flags), records)
    _check_count(h, limits.max_calls)
    return _decode_calls(view, h)


def decode_reply(
    frame: bytes | bytearray | memoryview, limits: WireLimits = DEFAULT_LIMITS
) -> ResultsFrame | RepliesFrame | ErrorFrame:
    """Decode a reply frame (client side); raises ``WireError`` if it is malformed."""
    view = _bytes_view(frame)
    kinds = frozenset({FrameKind.RESULTS, FrameKind.REPLIES, FrameKind.ERROR})
    h = decode_header(view, limits.max_reply_bytes, kinds)
    if h.kind == FrameKind.RESULTS:
        _check_count(h, limits.max_commands)
        results = _records(view, h, RESULT_DTYPE, h.event_count * EVENT_LENGTH)
        offset = HEADER_LENGTH + h.count * RESULT_LENGTH
        events = np.frombuffer(view, dtype=EVENT_DTYPE, count=h.event_count, offset=offset)
        return ResultsFrame(h.request_id, FrameFlag(h.flags), results, events)
    if h.kind == FrameKind.ERROR:
        _check_count(h, 0)
        body = _msgpack(_ERROR_DECODER, view[HEADER_LENGTH:], h, "error body")
        return ErrorFrame(h.request_id, body.code, body.message)
    _check_count(h, limits.max_calls)
    replies = _msgpack(_REPLIES_DECODER, view[HEADER_LENGTH:], h, "replies")
    if len(replies) != h.count:
        raise WireError(
            f"count is {h.count} but the payload holds {len(replies)} replies",
            request_id=h.request_id,
        )
    return RepliesFrame(h.request_id, replies)


# --------------------------------------------------------------------------- encoders


def _header(
    kind: FrameKind, flags: int, count: int, request_id: int, payload: int, events: int = 0
) -> bytes:
    if not 0 <= request_id <= U64_MAX:
        raise WireError(f"request id {request_id} is not a u64")
    record_length = RECORD_LENGTH.get(kind, 0)
    return HEADER.pack(
        MAGIC, WIRE_VERSION, kind, flags, count, record_length, 0, request_id, payload, events
    )


def _array(records: np.ndarray, dtype: np.dtype[Any], what: str) -> np.ndarray:
    if records.dtype != dtype or records.ndim != 1:
        raise WireError(f"{what} must be a 1-D array of {what.upper()}_DTYPE records")
    return np.ascontiguousarray(records)


def _raw(records: np.ndarray) -> memoryview:
    """The bytes of contiguous ``records`` without a copy (a join then copies them once)."""
    return records.view(np.uint8).data


def _bounded(frame: bytes, limit: int) -> bytes:
    if len(frame) > limit:
        raise WireError(f"frame of {len(frame)} bytes exceeds the limit of {limit} bytes")
    return frame


def encode_commands(
    records: np.ndarray,
    request_id: int,
    *,
    events: bool = False,
    limits: WireLimits = DEFAULT_LIMITS,
) -> bytes:
    """A COMMANDS frame of ``records`` (COMMAND_DTYPE), asking for events if told."""
    records = _array(records, COMMAND_DTYPE, "command")
    if not 1 <= len(records) <= limits.max_commands:
        raise WireError(f"{len(records)} commands, must be 1..{limits.max_commands}")
    flags = FrameFlag.EVENTS if events else 0
    head = _header(FrameKind.COMMANDS, flags, len(records), request_id, records.nbytes)
    return _bounded(b"".join((head, _raw(records))), limits.max_request_bytes)


def encode_results(
    request_id: int,
    results: np.ndarray,
    events: np.ndarray | None = None,
    *,
    limits: WireLimits = DEFAULT_LIMITS,
) -> bytes:
    """A RESULTS frame; with ``events``, they follow unless that exceeds max_reply_bytes,
    in which case they are left out and EVENTS_DROPPED is set."""
    results = _array(results, RESULT_DTYPE, "result")
    if not 1 <= len(results) <= limits.max_commands:
        raise WireError(f"{len(results)} results, must be 1..{limits.max_commands}")
    flags = FrameFlag(0)
    parts = [_raw(results)]
    n_events = 0
    if events is not None:
        events = _array(events, EVENT_DTYPE, "event")
        total = HEADER_LENGTH + results.nbytes + events.nbytes
        if total <= limits.max_reply_bytes and len(events) <= U32_MAX:
            flags, n_events = FrameFlag.EVENTS, len(events)
            parts.append(_raw(events))
        else:
            flags = FrameFlag.EVENTS_DROPPED
    payload = results.nbytes + n_events * EVENT_LENGTH
    head = _header(FrameKind.RESULTS, flags, len(results), request_id, payload, n_events)
    return _bounded(b"".join([head, *parts]), limits.max_reply_bytes)


def _encode_msgpack(
    kind: FrameKind, flags: int, count: int, request_id: int, body: bytes, limit: int
) -> bytes:
    return _bounded(_header(kind, flags, count, request_id, len(body)) + body, limit)


def encode_calls(
    calls: list[Call],
    request_id: int,
    *,
    events: bool = False,
    limits: WireLimits = DEFAULT_LIMITS,
) -> bytes:
    """A CALLS frame of ``calls``, answered by one reply each, by position."""
    if not 1 <= len(calls) <= limits.max_calls:
        raise WireError(f"{len(calls)} calls, must be 1..{limits.max_calls}")
    body = _ENCODER.encode(calls)
    flags = FrameFlag.EVENTS if events else 0
    return _encode_msgpack(
        FrameKind.CALLS, flags, len(calls), request_id, body, limits.max_request_bytes
    )


def encode_replies(
    request_id: int, replies: list[Reply], *, limits: WireLimits = DEFAULT_LIMITS
) -> bytes:
    """A REPLIES frame: ``replies[i]`` answers call ``i`` of the request."""
    if not 1 <= len(replies) <= limits.max_calls:
        raise WireError(f"{len(replies)} replies, must be 1..{limits.max_calls}")
    body = _ENCODER.encode(replies)
    return _encode_msgpack(
        FrameKind.REPLIES, 0, len(replies), request_id, body, limits.max_reply_bytes
    )


def encode_error(request_id: int, code: Result, message: str = "") -> bytes:
    """An ERROR frame: the request was refused whole."""
    body = _ENCODER.encode(ErrorBody(int(code), message or MESSAGES[code]))
    return _header(FrameKind.ERROR, 0, 0, request_id, len(body)) + body


def error_reply(error: WireError) -> bytes:
    """The ERROR frame answering a request that raised ``error``."""
    return encode_error(error.request_id, error.code, error.message)
