"""The wire format's frame header, limits and error (docs/protocol.md); ``ipc.wire``
builds and checks frames with them."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Final

import msgspec

from core.errors import ConfigError, MatchdError
from core.schema import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    RESULT_DTYPE,
    Result,
)

# --------------------------------------------------------------------------- header

#: 4: MarketInfo's ``max_order_amount``, the admin call user.set_limit and the read
#: user.limits (docs/protocol.md, "Changes in version 4"; the catalog's calls
#: asset.add and market.add came within it: "Additions within version 4"); 3: the admin calls
#: market.set_status, user.set_status, market.cancel_orders, market.set_limit and
#: MarketInfo's ``status`` and risk limits ("Changes in version 3"); 2: order puts
#: carry ``client_id``, replies ``order_id`` ("Changes in version 2").
WIRE_VERSION: Final = 4
MAGIC: Final = b"MDWP"
#: magic, version, kind, flags, count, record_length, reserved, request_id,
#: payload_length, event_count.
HEADER: Final = struct.Struct("<4sBBHIHHQII")
HEADER_LENGTH: Final = 32
MAGIC_OFFSET: Final = 0
VERSION_OFFSET: Final = 4
KIND_OFFSET: Final = 5
FLAGS_OFFSET: Final = 6
COUNT_OFFSET: Final = 8
RECORD_LENGTH_OFFSET: Final = 12
RESERVED_OFFSET: Final = 14
REQUEST_ID_OFFSET: Final = 16
PAYLOAD_LENGTH_OFFSET: Final = 24
EVENT_COUNT_OFFSET: Final = 28
COMMAND_LENGTH: Final = COMMAND_DTYPE.itemsize  # 88
RESULT_LENGTH: Final = RESULT_DTYPE.itemsize  # 40
EVENT_LENGTH: Final = EVENT_DTYPE.itemsize  # 184
U64_MAX: Final = 2**64 - 1
U32_MAX: Final = 2**32 - 1


class FrameKind(IntEnum):
    """What a frame carries (header byte 5)."""

    COMMANDS = 1  #: request: ``count`` COMMAND_DTYPE records
    RESULTS = 2  #: reply: ``count`` RESULT_DTYPE records, then ``event_count`` events
    CALLS = 3  #: request: a msgpack array of ``count`` calls
    REPLIES = 4  #: reply: a msgpack array of ``count`` replies, by position
    ERROR = 5  #: reply: the request frame was refused whole; msgpack ``ErrorBody``


class FrameFlag(IntFlag):
    """Header flags (bytes 6-7). Any bit not allowed for the frame's kind is refused."""

    EVENTS = 1  #: request: send the events; RESULTS: the events follow the results
    EVENTS_DROPPED = 2  #: RESULTS: events were asked for but exceed max_reply_bytes


REQUEST_KINDS: Final = frozenset({FrameKind.COMMANDS, FrameKind.CALLS})
RECORD_LENGTH: Final = {FrameKind.COMMANDS: COMMAND_LENGTH, FrameKind.RESULTS: RESULT_LENGTH}
ALLOWED_FLAGS: Final = {
    FrameKind.COMMANDS: FrameFlag.EVENTS,
    FrameKind.RESULTS: FrameFlag.EVENTS | FrameFlag.EVENTS_DROPPED,
    FrameKind.CALLS: FrameFlag.EVENTS,
    FrameKind.REPLIES: FrameFlag(0),
    FrameKind.ERROR: FrameFlag(0),
}


@dataclass(frozen=True, slots=True)
class Header:
    """The decoded 32-byte frame header (offsets in docs/protocol.md)."""

    magic: bytes
    version: int
    kind: int
    flags: int
    count: int
    record_length: int
    reserved: int
    request_id: int
    payload_length: int
    event_count: int


class WireLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Bounds on frames; a frame beyond any of them is refused before it is decoded."""

    max_commands: int = 16_384  #: COMMAND_DTYPE records in one COMMANDS frame
    max_calls: int = 1_024  #: calls in one CALLS frame
    max_request_bytes: int = 2 * 1024 * 1024  #: a whole request frame, header included
    max_reply_bytes: int = 64 * 1024 * 1024  #: a whole reply frame, header included

    def __post_init__(self) -> None:
        if min(self.max_commands, self.max_calls) < 1:
            raise ConfigError("wire: max_commands and max_calls must be at least 1")
        if self.max_request_bytes < HEADER_LENGTH + COMMAND_LENGTH:
            raise ConfigError(f"wire: max_request_bytes must be at least {HEADER_LENGTH + 88}")
        if self.max_reply_bytes < HEADER_LENGTH + self.max_commands * RESULT_LENGTH:
            raise ConfigError("wire: max_reply_bytes must hold the results of max_commands")


DEFAULT_LIMITS: Final = WireLimits()


class WireError(MatchdError, ValueError):
    """A frame or a call is malformed; ``code`` is the ``Result`` to answer with.

    Raised by the decoders and encoders of this module for bad input, never for a
    bug. ``request_id`` is the request's id when its header could be read (else 0);
    ``index`` is the position of the call inside a CALLS frame, or None for the frame.
    """

    def __init__(
        self,
        message: str,
        code: Result = Result.INVALID_ARGUMENT,
        *,
        request_id: int = 0,
        index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.index = index
