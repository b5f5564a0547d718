"""What the sync and asyncio clients share (``ipc.client``, ``ipc.client_async``): the
exceptions, the table of requests in flight, the checks of a reply against its
request, and the CURVE keys a client authenticates with. No socket here."""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import numpy as np
import zmq
import zmq.auth

from core.errors import BrokenError, MatchdError, WouldBlock
from core.schema import Result
from ipc.wire import (
    DEFAULT_LIMITS,
    Call,
    ErrorFrame,
    FrameKind,
    RepliesFrame,
    Reply,
    ResultsFrame,
    WireError,
    WireLimits,
    decode_reply,
    encode_calls,
    encode_commands,
    op_of,
)

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT: Final = "tcp://127.0.0.1:7316"
DEFAULT_TIMEOUT_S: Final = 5.0
DEFAULT_MAX_IN_FLIGHT: Final = 1024

#: What a request gets back: the decoded RESULTS or REPLIES frame.
Answer: TypeAlias = ResultsFrame | RepliesFrame
#: An answer, or the exception that receiving it raises.
Outcome: TypeAlias = ResultsFrame | RepliesFrame | MatchdError

# --------------------------------------------------------------------------- errors


class RequestTimeout(MatchdError, TimeoutError):
    """No reply (or no room to send) within the timeout.

    ``request_id`` names the request waited for, or is None when ``receive`` waited
    for any. ``submit``, ``call`` and the operation methods forget their request on a
    timeout (a late reply is dropped and counted); ``wait`` and ``receive`` keep it in
    flight, so the caller may wait again.
    """

    def __init__(self, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class RequestRefused(WireError):
    """The server answered a request with an ERROR frame: it refused the frame whole
    (``code`` 1001 for a malformed frame, 1005 FORBIDDEN for what the client's key
    may not do, 1006 TOO_MANY_REQUESTS over its rate limit, 9002 when overloaded,
    ...); nothing of it was applied. Not raised for a per-record or per-call error."""


class TooManyInFlight(WouldBlock):
    """A new request would exceed ``max_in_flight``; collect replies first
    (``receive`` / ``wait``). Nothing was sent."""


class ApiError(MatchdError):
    """The engine refused an operation called through an operation method
    (``put_limit``, ``balance_query``, ...): ``code`` is the ``Result``, ``viabtc``
    ViaBTC's code for the method. ``call`` and ``submit`` return such codes instead.

    ``order_id`` is 0 except for ``Result.REPEAT_ORDER`` (2004, ViaBTC code 13): a
    ``put_limit`` or ``put_market`` whose ``client_id`` the user already gave to an
    order that was placed. For a retry after a timeout or a lost connection that is
    good news, not a failure: the first attempt reached the engine and placed the
    order, and ``order_id`` is that order (look it up with ``pending_detail``; it
    may have traded or been cancelled since). Nothing was placed twice.
    """

    def __init__(self, op: str, code: int, viabtc: int, message: str, order_id: int = 0) -> None:
        super().__init__(f"{op}: {code} {message}")
        self.op = op
        self.code = code
        self.viabtc = viabtc
        self.message = message
        self.order_id = order_id


def _result_code(code: int) -> Result:
    try:
        return Result(code)
    except ValueError:
        return Result.INTERNAL_ERROR


def refused(frame: ErrorFrame) -> RequestRefused:
    """The exception of an ERROR frame (an unknown code reads as INTERNAL_ERROR)."""
    exc = RequestRefused(
        f"request {frame.request_id} refused: {frame.code} {frame.message}",
        _result_code(frame.code),
        request_id=frame.request_id,
    )
    exc.message = frame.message
    return exc


def unwrap(call: Call, reply: Reply) -> Any:
    """The typed result of a reply to ``call``, or ``ApiError``."""
    if not reply.ok:
        raise ApiError(op_of(call), reply.code, reply.viabtc, reply.message, reply.order_id)
    return reply.result_as(call)


def results_events(answer: Answer) -> tuple[np.ndarray, np.ndarray]:
    """``(results, events)`` of a RESULTS answer."""
    if not isinstance(answer, ResultsFrame):  # pragma: no cover - checked on receipt
        raise BrokenError("a COMMANDS request was not answered by RESULTS")
    return answer.results, answer.events


def replies_of(answer: Answer) -> list[Reply]:
    """The replies of a REPLIES answer."""
    if not isinstance(answer, RepliesFrame):  # pragma: no cover - checked on receipt
        raise BrokenError("a CALLS request was not answered by REPLIES")
    return answer.replies


# --------------------------------------------------------------------------- CURVE keys

#: A CURVE key in Z85 text: 40 characters of this alphabet (32 bytes of key).
Z85_KEY_LENGTH: Final = 40
_Z85_ALPHABET: Final = frozenset(
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)


def check_z85_key(key: bytes | str, what: str) -> bytes:
    """``key`` as Z85 bytes if it is a Z85-encoded CURVE key, else ``ValueError``
    naming ``what`` (the key itself is not repeated: it may be a secret)."""
    raw = key.encode("ascii", "replace") if isinstance(key, str) else bytes(key)
    if len(raw) != Z85_KEY_LENGTH or not set(raw) <= _Z85_ALPHABET:
        raise ValueError(f"{what} is not a CURVE key ({Z85_KEY_LENGTH} characters of Z85)")
    return raw


def read_key_file(path: str | os.PathLike[str]) -> tuple[bytes, bytes | None]:
    """``(public, secret or None)`` Z85 keys of a key file in ZeroMQ's certificate
    format (``matchd keygen``, pyzmq's ``zmq.auth.create_certificates`` and czmq's
    ``zcert`` write it): ``NAME.key`` holds the public key, ``NAME.key_secret`` both.

    ``ValueError`` (naming the file) for a file that holds no valid key or a secret
    key that does not match its public key; ``OSError`` for one that cannot be read.
    """
    try:
        public, secret = zmq.auth.load_certificate(path)
    except ValueError as exc:
        raise ValueError(f"key file {path}: no public key in it") from exc
    public = check_z85_key(public, f"the public key in {path}")
    if secret is None:
        return public, None
    secret = check_z85_key(secret, f"the secret key in {path}")
    if zmq.curve_public(secret) != public:
        raise ValueError(f"key file {path}: its public key does not match its secret key")
    return public, secret


def read_secret_key_file(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """``(public, secret)`` of a ``NAME.key_secret`` file; as ``read_key_file``, and
    ``ValueError`` when the file holds no secret key."""
    public, secret = read_key_file(path)
    if secret is None:
        raise ValueError(f"key file {path} holds no secret key (use the NAME.key_secret file)")
    return public, secret


@dataclass(frozen=True, slots=True)
class CurveKeys:
    """The CURVE keys a client connects with (docs/protocol.md, "Authentication and
    limits"): its own key pair and the server's public key, each 40 bytes of Z85.
    The secret key is left out of ``repr``."""

    public_key: bytes
    secret_key: bytes = field(repr=False)
    server_key: bytes

    def __post_init__(self) -> None:
        check_z85_key(self.public_key, "public_key")
        check_z85_key(self.secret_key, "secret_key")
        check_z85_key(self.server_key, "server_key")
        if zmq.curve_public(self.secret_key) != self.public_key:
            raise ValueError("public_key is not the public key of secret_key")

    @classmethod
    def from_files(
        cls, secret_file: str | os.PathLike[str], server_file: str | os.PathLike[str]
    ) -> CurveKeys:
        """The client's key pair from its ``NAME.key_secret`` file and the server's
        public key from the server's ``.key`` (or ``.key_secret``) file."""
        public, secret = read_secret_key_file(secret_file)
        server, _ = read_key_file(server_file)
        return cls(public, secret, server)

    def apply(self, socket: zmq.Socket[Any]) -> None:
        """Make ``socket`` a CURVE client with these keys (before it connects)."""
        socket.setsockopt(zmq.CURVE_SERVERKEY, self.server_key)
        socket.setsockopt(zmq.CURVE_PUBLICKEY, self.public_key)
        socket.setsockopt(zmq.CURVE_SECRETKEY, self.secret_key)


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class ClientStats:
    """A snapshot of a client's counters (``statistics()``)."""

    in_flight: int  #: requests sent and not yet collected
    peak_in_flight: int
    sent: int  #: requests sent
    received: int  #: replies matched to a request
    dropped: int  #: replies for no request in flight (late after a timeout) or unreadable


@dataclass(frozen=True, slots=True)
class Request:
    """What a reply must match: the kind and size of its request."""

    kind: FrameKind  #: COMMANDS or CALLS
    count: int  #: records or calls, which the reply must match


class Requests:
    """The requests in flight of one client: ids, bounds, and reply checks.

    A request is in flight from its send until its reply is collected (or it is
    forgotten after a timeout); at most ``max_in_flight`` are.
    """

    def __init__(self, endpoint: str, limits: WireLimits, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        self.endpoint = endpoint
        self.limits = limits
        self.max_in_flight = max_in_flight
        self._ids = itertools.count(1)
        self._pending: dict[int, Request] = {}
        self._peak = self._sent = self._received = self._dropped = 0

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._pending

    def _next_id(self) -> int:
        if len(self._pending) >= self.max_in_flight:
            raise TooManyInFlight(
                f"{len(self._pending)} requests in flight to {self.endpoint}, the limit "
                f"(max_in_flight) is {self.max_in_flight}: collect replies first"
            )
        return next(self._ids)

    def commands_frame(self, commands: np.ndarray, events: bool) -> tuple[int, bytes, Request]:
        """A new id and its COMMANDS frame (``WireError`` for bad input: nothing sent)."""
        rid = self._next_id()
        frame = encode_commands(commands, rid, events=events, limits=self.limits)
        return rid, frame, Request(FrameKind.COMMANDS, len(commands))

    def calls_frame(self, calls: tuple[Call, ...], events: bool) -> tuple[int, bytes, Request]:
        """A new id and its CALLS frame (``WireError`` for bad input: nothing sent)."""
        rid = self._next_id()
        frame = encode_calls(list(calls), rid, events=events, limits=self.limits)
        return rid, frame, Request(FrameKind.CALLS, len(calls))

    def sent(self, rid: int, request: Request) -> None:
        """``rid`` is on its way: count it in flight."""
        self._pending[rid] = request
        self._sent += 1
        self._peak = max(self._peak, len(self._pending))

    def forget(self, rid: int) -> None:
        """``rid`` is no longer in flight (collected, or given up after a timeout)."""
        self._pending.pop(rid, None)

    def clear(self) -> list[int]:
        """Forget every request; returns their ids."""
        ids = list(self._pending)
        self._pending.clear()
        return ids

    def match(self, frame: bytes | memoryview) -> tuple[int, Outcome] | None:
        """The request a reply frame answers and its outcome; None (counted as dropped)
        if it answers no request in flight or cannot even be attributed."""
        try:
            reply = decode_reply(frame, self.limits)
        except WireError as exc:
            if exc.request_id in self._pending:
                self._received += 1
                broken = BrokenError(f"malformed reply from {self.endpoint}: {exc.message}")
                broken.__cause__ = exc
                return exc.request_id, broken
            self._dropped += 1
            logger.warning("dropped malformed reply endpoint=%s error=%r", self.endpoint, exc)
            return None
        request = self._pending.get(reply.request_id)
        if request is None:
            self._dropped += 1
            logger.debug("dropped reply endpoint=%s request=%d", self.endpoint, reply.request_id)
            return None
        self._received += 1
        return reply.request_id, self._check(request, reply)

    def _check(self, request: Request, reply: ResultsFrame | RepliesFrame | ErrorFrame) -> Outcome:
        if isinstance(reply, ErrorFrame):
            return refused(reply)
        if isinstance(reply, ResultsFrame) and request.kind == FrameKind.COMMANDS:
            got, what = len(reply.results), "results"
        elif isinstance(reply, RepliesFrame) and request.kind == FrameKind.CALLS:
            got, what = len(reply.replies), "replies"
        else:
            kind = "RESULTS" if isinstance(reply, ResultsFrame) else "REPLIES"
            return BrokenError(
                f"{self.endpoint} answered {request.kind.name} request {reply.request_id} "
                f"with {kind}"
            )
        if got != request.count:
            return BrokenError(
                f"{self.endpoint} answered request {reply.request_id} of {request.count} "
                f"with {got} {what}"
            )
        return reply

    def stats(self) -> ClientStats:
        return ClientStats(
            len(self._pending), self._peak, self._sent, self._received, self._dropped
        )


def timeout_message(endpoint: str, timeout_s: float, rid: int | None) -> str:
    what = "" if rid is None else f" to request {rid}"
    return f"no reply{what} from {endpoint} within {timeout_s:g} s"


def check_timeout(timeout_s: float | None, default: float) -> float:
    """The timeout to use: ``default`` for None; must be >= 0 (``math.inf``: none)."""
    value = default if timeout_s is None else float(timeout_s)
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"timeout_s must be >= 0 (math.inf: no timeout), not {timeout_s}")
    return value


__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_TIMEOUT_S",
    "Answer",
    "ApiError",
    "ClientStats",
    "CurveKeys",
    "Outcome",
    "Request",
    "RequestRefused",
    "RequestTimeout",
    "Requests",
    "TooManyInFlight",
    "check_z85_key",
    "read_key_file",
    "read_secret_key_file",
]
