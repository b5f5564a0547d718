"""The order entry's gate: only registered CURVE keys connect (``ZapHandler``), and
every request frame is checked against its key's role, users and rate limit before
anything of it runs (``Gate``; docs/protocol.md, "Authentication and limits").

ZAP (ZeroMQ RFC 27) is how libzmq asks who may connect: during each CURVE handshake
it sends the client's public key to the REP socket bound at
``inproc://zeromq.zap.01`` in the socket's context and waits for the answer. The
server polls that socket in its own loop (no thread): a registered key is answered
200 with the key's name as the ZAP user id, which libzmq then attaches to every
message of the connection as its ``User-Id`` property; any other key is answered
400 and the handshake fails, so the client never gets a request in.

``Gate.admit`` is called per frame with that name. A frame is refused whole, and
nothing of it runs, when the key is over its rate limit (TOO_MANY_REQUESTS) or any
of its commands or calls is not allowed (FORBIDDEN). The commands of a COMMANDS
frame are checked with numpy, not one by one in Python.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, NamedTuple

import numpy as np
import zmq
import zmq.utils.z85

from core.errors import ConfigError
from core.schema import CommandKind, Result
from daemon.auth import ClientKey, KeyRegistry, Role
from ipc import wire

logger = logging.getLogger(__name__)

ZAP_ENDPOINT: Final = "inproc://zeromq.zap.01"
#: The ZAP domain the server's socket asks in; requests of other domains are refused.
ZAP_DOMAIN: Final = "matchd"
#: Refused handshakes are logged at most this often (a refused client retries
#: every 100 ms or so), with the count since the last line.
REFUSAL_LOG_INTERVAL_S: Final = 10.0
_NS_PER_S: Final = 1_000_000_000
#: The order commands: the only kinds a trade key may send (a mass quote's two kinds
#: are a trading command of its user, like a put). The market operations
#: (MARKET_STATUS, USER_STATUS, CANCEL_MARKET, MARKET_LIMIT, USER_LIMIT) need an
#: admin key, as their calls do.
_ORDER_KINDS: Final = frozenset(
    (
        CommandKind.PUT_LIMIT,
        CommandKind.PUT_MARKET,
        CommandKind.CANCEL,
        CommandKind.REPLACE,
        CommandKind.CANCEL_ALL,
        CommandKind.QUOTE,
        CommandKind.QUOTE_LEVEL,
    )
)
#: Whether a command kind (an int8, so -128..127 index it) is in ``_ORDER_KINDS``.
_ORDER_KIND: Final = np.zeros(256, dtype=np.bool_)
_ORDER_KIND[sorted(_ORDER_KINDS)] = True
_QUOTE: Final = int(CommandKind.QUOTE)
_QUOTE_LEVEL: Final = int(CommandKind.QUOTE_LEVEL)
_ADMIN_KINDS: Final = frozenset(
    (
        CommandKind.MARKET_STATUS,
        CommandKind.USER_STATUS,
        CommandKind.CANCEL_MARKET,
        CommandKind.MARKET_LIMIT,
        CommandKind.USER_LIMIT,
    )
)


# --------------------------------------------------------------------------- token bucket


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` saved up; starts full.

    Exact integer arithmetic: the level is kept in token-nanoseconds, so no
    rounding drifts. ``now_ns`` is any monotonic clock; a clock that goes back is
    treated as standing still.
    """

    __slots__ = ("_capacity", "_last_ns", "_level", "burst", "rate_per_s")

    def __init__(self, rate_per_s: int, burst: int, now_ns: int) -> None:
        if rate_per_s < 1 or burst < 1:
            raise ValueError(f"rate_per_s ({rate_per_s}) and burst ({burst}) must be >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._capacity = burst * _NS_PER_S
        self._level = self._capacity
        self._last_ns = now_ns

    def _refill(self, now_ns: int) -> None:
        elapsed = now_ns - self._last_ns
        if elapsed > 0:
            self._level = min(self._capacity, self._level + elapsed * self.rate_per_s)
            self._last_ns = now_ns

    def take(self, cost: int, now_ns: int) -> bool:
        """Take ``cost`` tokens if there are that many (True); else take none (False)."""
        self._refill(now_ns)
        need = cost * _NS_PER_S
        if need > self._level:
            return False
        self._level -= need
        return True

    def available(self, now_ns: int) -> int:
        """Whole tokens available now."""
        self._refill(now_ns)
        return self._level // _NS_PER_S

    def wait_s(self, cost: int, now_ns: int) -> float:
        """Seconds until ``cost`` tokens are there (0 if now; inf if over the burst)."""
        if cost > self.burst:
            return float("inf")
        self._refill(now_ns)
        missing = max(0, cost * _NS_PER_S - self._level)
        return missing / self.rate_per_s / _NS_PER_S


# --------------------------------------------------------------------------- permissions


class Access(Enum):
    """Who may make a call."""

    PUBLIC = "any key"  #: market data and status
    USER = "a key of the user"  #: a per-user query: any role, for its users
    ORDER = "a trade key of the user"  #: an order command: trade or admin, for its users
    ADMIN = "an admin key"  #: balance.update and control


#: The access each call needs; a call type missing here needs an admin key.
CALL_ACCESS: Final[dict[type[wire.Call], Access]] = {
    **dict.fromkeys(wire.ORDER_CALLS, Access.ORDER),
    wire.BalanceQuery: Access.USER,
    wire.OrderPending: Access.USER,
    wire.UserLimitsCall: Access.USER,  # a user may know the limits it is held to
    wire.OrderDetail: Access.PUBLIC,  # a resting order, as order.book shows it
    wire.OrderBook: Access.PUBLIC,
    wire.OrderDepth: Access.PUBLIC,
    wire.MarketList: Access.PUBLIC,
    wire.MarketSummaryCall: Access.PUBLIC,
    wire.AssetList: Access.PUBLIC,
    wire.AssetSummaryCall: Access.PUBLIC,
    wire.ServerStatus: Access.PUBLIC,
    wire.BalanceUpdate: Access.ADMIN,
    **dict.fromkeys(wire.ADMIN_CALLS, Access.ADMIN),  # market and user status and limits
    **dict.fromkeys(wire.CATALOG_CALLS, Access.ADMIN),  # asset.add, market.add
    wire.ServerSnapshot: Access.ADMIN,
    wire.ServerPromote: Access.ADMIN,
}
_USER_CALLS: Final = (
    wire.PutLimit, wire.PutMarket, wire.Cancel, wire.Replace, wire.CancelAll, wire.Quote,
    wire.BalanceQuery, wire.OrderPending, wire.UserLimitsCall,
)  # fmt: skip


def call_cost(call: wire.Call | wire.WireError) -> int:
    """Tokens a call costs: one, and a mass quote one per record it makes (1 + its
    levels), as the same quote sent as binary records costs."""
    if isinstance(call, wire.Quote):
        return 1 + len(call.bids) + len(call.asks)
    return 1


class Refusal(NamedTuple):
    """Why a frame is refused: the ERROR frame's code and message."""

    code: Result
    message: str


@dataclass(frozen=True, slots=True)
class KeyStats:
    """A key's counters (``Gate.statistics()``)."""

    admitted: int  #: frames let through
    forbidden: int  #: frames refused FORBIDDEN
    limited: int  #: frames refused TOO_MANY_REQUESTS
    tokens: int  #: tokens in its bucket now


@dataclass(frozen=True, slots=True)
class AuthStats:
    """The gate's counters (``Server.auth_statistics()``)."""

    handshakes_accepted: int
    handshakes_refused: int
    keys: dict[str, KeyStats]


class _KeyState:
    """A registered key at run time: its bucket, its users as a sorted array, counters."""

    __slots__ = ("admitted", "bucket", "forbidden", "key", "limited", "users")

    def __init__(self, key: ClientKey, now_ns: int) -> None:
        self.key = key
        self.bucket = TokenBucket(key.limit.rate_per_s, key.limit.burst, now_ns)
        #: The key's users, sorted, and a -1 sentinel (no user id is negative).
        self.users: np.ndarray | None = (
            None if key.users is None else np.array([*sorted(key.users), -1], dtype=np.int64)
        )
        self.admitted = self.forbidden = self.limited = 0

    def who(self) -> str:
        return f"key {self.key.name!r} ({self.key.role})"


class Gate:
    """Per-frame authorisation and rate limits for the keys of ``registry``.

    Memory is bounded: one bucket per registered key, made at start. ``clock`` is a
    monotonic clock in ns (tests pass a fake one).
    """

    def __init__(self, registry: KeyRegistry, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock = clock
        now = clock()
        self._states = {k.name: _KeyState(k, now) for k in registry.entries()}

    def admit(
        self, user_id: str | None, request: wire.CommandsFrame | wire.CallsFrame
    ) -> Refusal | None:
        """None if the frame of the key named ``user_id`` (the ZAP user id) may run;
        else why not. The frame is charged first (a refused frame costs tokens too,
        so a client cannot probe without limit), then checked whole."""
        state = self._states.get(user_id) if user_id else None
        if state is None:
            return Refusal(Result.FORBIDDEN, "forbidden: the connection has no registered key")
        if isinstance(request, wire.CommandsFrame):
            cost = len(request.commands)
        else:
            cost = sum(map(call_cost, request.calls))
        refusal = self._charge(state, cost)
        if refusal is not None:
            return refusal
        if isinstance(request, wire.CommandsFrame):
            detail = _check_commands(state, request.commands)
        else:
            detail = _check_calls(state, request.calls)
        if detail is not None:
            state.forbidden += 1
            return Refusal(Result.FORBIDDEN, f"forbidden: {state.who()} {detail}")
        state.admitted += 1
        return None

    def charge(self, user_id: str | None, cost: int = 1) -> Refusal | None:
        """Charge a frame that does not decode (it costs one token) or anything else."""
        state = self._states.get(user_id) if user_id else None
        if state is None:
            return Refusal(Result.FORBIDDEN, "forbidden: the connection has no registered key")
        return self._charge(state, cost)

    def _charge(self, state: _KeyState, cost: int) -> Refusal | None:
        now = self._clock()
        bucket = state.bucket
        if bucket.take(cost, now):
            return None
        state.limited += 1
        wait = bucket.wait_s(cost, now)
        when = (
            f"a frame of {cost} exceeds the burst and is never accepted: split it"
            if wait == float("inf")
            else f"retry in {wait:.3f} s"
        )
        return Refusal(
            Result.TOO_MANY_REQUESTS,
            f"too many requests: {state.who()} may send {bucket.rate_per_s} commands/s "
            f"with bursts of {bucket.burst}; {when}",
        )

    def statistics(self) -> dict[str, KeyStats]:
        """Counters per key name (the server's own key is ``server``)."""
        now = self._clock()
        return {
            name: KeyStats(s.admitted, s.forbidden, s.limited, s.bucket.available(now))
            for name, s in self._states.items()
        }


def _check_commands(state: _KeyState, commands: np.ndarray) -> str | None:
    """Why some command of the batch is not allowed for the key, or None. Vectorised:
    a handful of numpy operations per frame, whatever its size (a frame of one
    command, the common case of one order per frame, is checked on scalars)."""
    role = state.key.role
    if role == Role.ADMIN:
        return None
    if role != Role.TRADE:
        return "may not send order commands"
    kinds = commands["kind"]
    if len(commands) == 1:
        ok = bool(_ORDER_KIND[kinds[0]]) and state.key.may_act_for(int(commands["user"][0]))
        return None if ok else _why_not(commands, 0)
    allowed = _ORDER_KIND[kinds]  # int8 kinds; a negative one indexes a False slot
    users = state.users
    given = commands["user"]
    if users is not None:
        # ``users`` ends with a -1 sentinel, so an id past the last one finds no match.
        allowed &= users[np.searchsorted(users[:-1], given)] == given
    if _QUOTE in kinds:
        allowed &= _level_user_is_its_quotes(kinds, given)
    if allowed.all():
        return None
    return _why_not(commands, int(np.argmin(allowed)))


def _quote_of(kinds: np.ndarray) -> np.ndarray:
    """For each record, the index of the last QUOTE record at or before it (-1: none)."""
    index = np.where(kinds == _QUOTE, np.arange(len(kinds)), -1)
    return np.maximum.accumulate(index)


def _level_user_is_its_quotes(kinds: np.ndarray, users: np.ndarray) -> np.ndarray:
    """False for a QUOTE_LEVEL record whose ``user`` is not that of the QUOTE record
    before it (a level acts for its quote's user); True for every other record (a
    level with no QUOTE before it is the engine's to refuse)."""
    quote = _quote_of(kinds)
    theirs = users[np.maximum(quote, 0)]
    ok: np.ndarray = (kinds != _QUOTE_LEVEL) | (quote < 0) | (users == theirs)
    return ok


def _why_not(commands: np.ndarray, i: int) -> str:
    """The message for command ``i``, which a trade key may not send."""
    kind = int(commands["kind"][i])
    if kind in _ADMIN_KINDS:
        name = CommandKind(kind).name
        return f"may not send command kind {kind} (command {i}, {name}): it needs an admin key"
    if kind not in _ORDER_KINDS:
        return f"may not send command kind {kind} (command {i})"
    user = int(commands["user"][i])
    if kind == _QUOTE_LEVEL:
        quote = int(_quote_of(commands["kind"][: i + 1])[-1])
        if quote >= 0 and int(commands["user"][quote]) != user:
            theirs = int(commands["user"][quote])
            return (
                f"may not send a QUOTE_LEVEL for user {user} in the QUOTE of user {theirs} "
                f"(command {i}, of the QUOTE at command {quote})"
            )
    return f"may not act for user {user} (command {i}, {CommandKind(kind).name})"


def _check_calls(state: _KeyState, calls: list[wire.Call | wire.WireError]) -> str | None:
    """Why some call of the frame is not allowed for the key, or None. A call that
    did not decode needs nothing: it is answered INVALID_ARGUMENT and does nothing."""
    key = state.key
    if key.role == Role.ADMIN:
        return None
    for i, call in enumerate(calls):
        if isinstance(call, wire.WireError):
            continue
        access = CALL_ACCESS.get(type(call), Access.ADMIN)
        if access == Access.PUBLIC:
            continue
        op = wire.op_of(call)
        if access == Access.ADMIN or (access == Access.ORDER and key.role != Role.TRADE):
            return f"may not call {op} (call {i}): it needs {access.value}"
        if isinstance(call, _USER_CALLS) and not key.may_act_for(call.user):
            return f"may not act for user {call.user} (call {i}, {op})"
    return None


# --------------------------------------------------------------------------- ZAP


class ZapHandler:
    """The ZAP handler of ``context``: answers libzmq's CURVE handshake requests,
    accepting only the keys of ``registry``. Bind it before any CURVE server socket
    of the context binds (a context without a handler lets every key in).

    ``handle()`` answers every waiting request without blocking; poll ``socket``
    for POLLIN to know when to call it. At most one handler per context: a second
    one fails to bind (``ConfigError``).
    """

    def __init__(
        self,
        context: zmq.Context[Any],
        registry: KeyRegistry,
        *,
        domain: str = ZAP_DOMAIN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._names = {zmq.utils.z85.decode(k.public_key): k.name for k in registry.entries()}
        self._domain = domain.encode()
        self._clock = clock
        self.socket: zmq.Socket[bytes] = context.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        try:
            self.socket.bind(ZAP_ENDPOINT)
        except zmq.ZMQError as exc:
            self.socket.close(0)
            raise ConfigError(
                f"cannot bind the ZAP handler at {ZAP_ENDPOINT}: {exc} (a ZeroMQ context "
                "has at most one; give the server a context of its own)"
            ) from exc
        self.accepted = 0
        self.refused = 0
        self._unlogged = 0
        self._logged_at = float("-inf")

    def handle(self) -> int:
        """Answer every waiting ZAP request; returns how many."""
        handled = 0
        while True:
            try:
                request = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return handled
            handled += 1
            self.socket.send_multipart(self._answer(request))

    def _answer(self, request: list[bytes]) -> list[bytes]:
        # version, request id, domain, address, routing id, mechanism, credentials...
        if len(request) < 6 or request[0] != b"1.0":
            self._refused(b"", "malformed ZAP request")
            return [
                b"1.0",
                request[1] if len(request) > 1 else b"",
                b"500",
                b"bad request",
                b"",
                b"",
            ]
        rid, domain, address, mechanism, credentials = (
            request[1], request[2], request[3], request[5], request[6:],
        )  # fmt: skip
        name = None
        if domain == self._domain and mechanism == b"CURVE" and len(credentials) == 1:
            name = self._names.get(credentials[0])
        if name is None:
            key = credentials[0] if mechanism == b"CURVE" and len(credentials) == 1 else b""
            self._refused(address, _z85(key) or mechanism.decode(errors="replace"))
            return [b"1.0", rid, b"400", b"unknown key", b"", b""]
        self.accepted += 1
        return [b"1.0", rid, b"200", b"OK", name.encode(), b""]

    def _refused(self, address: bytes, what: str) -> None:
        """Count a refusal; log it unless one was logged in the last interval."""
        self.refused += 1
        self._unlogged += 1
        now = self._clock()
        if now - self._logged_at >= REFUSAL_LOG_INTERVAL_S:
            logger.warning(
                "handshake refused: address=%s key=%s refusals_since_last_log=%d",
                address.decode(errors="replace") or "-",
                what,
                self._unlogged,
            )
            self._logged_at = now
            self._unlogged = 0

    def close(self) -> None:
        self.socket.close(0)


def _z85(key: bytes) -> str:
    """A 32-byte public key as Z85 text, for logs ('' if it is not 32 bytes)."""
    return zmq.utils.z85.encode(key).decode() if len(key) == 32 else ""
