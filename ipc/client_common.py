"""What the sync and asyncio clients share (``ipc.client``, ``ipc.client_async``): the
exceptions, the table of requests in flight and the checks of a reply against its
request. No socket here."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import numpy as np

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
    (``code`` 1001 for a malformed frame, 9002 when overloaded, ...); nothing of it
    was applied. Not raised for a per-record or per-call error."""


class TooManyInFlight(WouldBlock):
    """A new request would exceed ``max_in_flight``; collect replies first
    (``receive`` / ``wait``). Nothing was sent."""


class ApiError(MatchdError):
    """The engine refused an operation called through an operation method
    (``put_limit``, ``balance_query``, ...): ``code`` is the ``Result``, ``viabtc``
    ViaBTC's code for the method. ``call`` and ``submit`` return such codes instead."""

    def __init__(self, op: str, code: int, viabtc: int, message: str) -> None:
        super().__init__(f"{op}: {code} {message}")
        self.op = op
        self.code = code
        self.viabtc = viabtc
        self.message = message


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
        raise ApiError(op_of(call), reply.code, reply.viabtc, reply.message)
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
    "Outcome",
    "Request",
    "RequestRefused",
    "RequestTimeout",
    "Requests",
    "TooManyInFlight",
]
