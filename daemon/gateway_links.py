"""The gateways' links to their backends: the engine's ZeroMQ order entry and the
feed's market.* ROUTER, both asyncio, both watched for connection.

``EngineLink`` coalesces the requests made during one turn of the event loop into
one flush, sent in the order they were made: order commands as binary COMMANDS
frames (one group commit each), everything else as CALLS frames. At most
``max_flushes`` flushes are in flight; requests made meanwhile wait and go together
when one is answered, so frames grow with the load (smart batching) while an idle
link sends at once. Many HTTP requests and WebSocket queries cost one ZeroMQ round
trip, and a user's commands reach the sequencer in the order the user sent them.
``FeedLink`` forwards JSON-RPC text to the feed and matches the replies by id.

Both know whether their peer is connected (a ZeroMQ socket monitor): a request made
while it is not fails at once with ``BackendDown``; one that gets no answer within
its time-out fails with ``BackendTimeout``. At most ``max_pending`` requests wait
on each link; one more fails with ``BackendBusy`` (rule 7: never unbounded memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import Callable
from typing import Any, Final, cast

import msgspec
import numpy as np
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from core.arguments import ArgumentError
from core.errors import MatchdError
from core.schema import COMMAND_DTYPE
from core.viabtc_codec import CommandOutcome, command_outcomes
from daemon.gateway_dealer import Dealer, SendBusy, stop_monitor
from ipc.client_common import Answer, CurveKeys, replies_of, results_events
from ipc.wire import DEFAULT_LIMITS, Call, Reply, WireLimits

logger = logging.getLogger("matchd.gateway")

DEFAULT_MAX_PENDING: Final = 100_000
#: Flushes in flight to the engine at once; what comes meanwhile waits and goes as
#: one flush when one is answered ("smart batching": frames grow with the load, and
#: an idle link sends at once).
DEFAULT_MAX_FLUSHES: Final = 2
#: The feed's ROUTER takes messages up to this size (``daemon.feed.MAX_REQUEST_BYTES``:
#: a larger one makes ZeroMQ drop the connection, and every request on it).
FEED_MAX_REQUEST_BYTES: Final = 64 * 1024
_CONNECTION_EVENTS: Final = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED


#: A queued request: a call or a one-element COMMAND_DTYPE array, and its future.
_Item = tuple[Call | np.ndarray, "asyncio.Future[Any]"]


class BackendError(MatchdError):
    """A backend could not answer; ``backend`` names it ("engine", "feed")."""

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(message)
        self.backend = backend


class BackendDown(BackendError):
    """The backend is not connected (ViaBTC: HTTP 500)."""


class BackendTimeout(BackendError):
    """The backend did not answer in time (ViaBTC: HTTP 504, code 5)."""


class BackendBusy(BackendError):
    """Too many requests wait for the backend (code 3)."""


class ConnectionWatch:
    """Whether ``monitored`` has a connected peer, from the events its ``monitor``
    PAIR receives; ``aclose`` stops the monitor before closing the PAIR."""

    def __init__(self, monitored: zmq.Socket[Any], monitor: zmq.asyncio.Socket, name: str) -> None:
        self.name = name
        self.connected = False
        self._monitored = monitored
        self._monitor = monitor
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def wait_connected(self, timeout_s: float) -> bool:
        """True once connected, False if not within ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.connected and loop.time() < deadline:
            await asyncio.sleep(0.01)
        return self.connected

    async def _watch(self) -> None:
        try:
            while True:
                event = parse_monitor_message(await self._monitor.recv_multipart())
                was, self.connected = self.connected, event["event"] == zmq.EVENT_CONNECTED
                if was != self.connected:
                    log = logger.info if self.connected else logger.warning
                    log("%s %s", self.name, "connected" if self.connected else "disconnected")
        except (asyncio.CancelledError, zmq.ZMQError):
            return
        except Exception:  # never leave requests refused for a bug here: time-outs remain
            logger.exception("%s: the connection monitor failed; assuming connected", self.name)
            self.connected = True

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        stop_monitor(self._monitored, self._monitor)


class EngineLink:
    """Calls to the engine, coalesced per event-loop turn (see the module docstring)."""

    def __init__(
        self,
        endpoint: str,
        *,
        timeout_s: float = 1.0,
        max_pending: int = DEFAULT_MAX_PENDING,
        limits: WireLimits = DEFAULT_LIMITS,
        curve: CurveKeys | None = None,
        max_flushes: int = DEFAULT_MAX_FLUSHES,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self.dealer = Dealer(
            endpoint, limits, timeout_s=timeout_s, monitor_events=_CONNECTION_EVENTS,
            curve=curve,
        )  # fmt: skip
        self._max_calls = limits.max_calls
        self._max_commands = limits.max_commands
        self.watch = ConnectionWatch(self.dealer.socket, self.dealer.monitor, f"engine {endpoint}")
        self._queue: list[_Item] = []
        self._waiting = 0
        self._flush_scheduled = False
        #: frames sent and not answered; at ``max_flushes``, requests wait
        self._in_flight = 0
        self.max_flushes = max_flushes

    @property
    def connected(self) -> bool:
        return self.watch.connected

    async def call(self, call: Call) -> Reply:
        """The engine's reply to ``call`` (sent with the others of this loop turn)."""
        reply: Reply = await self._enqueue(call)
        return reply

    async def command(self, record: np.ndarray) -> CommandOutcome:
        """What the command of a one-element ``COMMAND_DTYPE`` array did: the binary
        fast path (one COMMANDS frame, one group commit, for the commands of a loop
        turn)."""
        outcomes: list[CommandOutcome] = await self._enqueue(record, 1)
        return outcomes[0]

    async def commands(self, records: np.ndarray) -> list[CommandOutcome]:
        """What each command of ``records`` (``COMMAND_DTYPE``, applied in order) did:
        one request however many commands (at most ``max_commands``)."""
        if not 1 <= len(records) <= self._max_commands:
            raise ValueError(f"1 to {self._max_commands} commands at once, not {len(records)}")
        outcomes: list[CommandOutcome] = await self._enqueue(records, len(records))
        return outcomes

    async def _enqueue(self, item: Call | np.ndarray, cost: int = 1) -> Any:
        if not self.watch.connected:
            raise BackendDown("engine", "the engine is not connected")
        if self._waiting + cost > self.max_pending:
            raise BackendBusy("engine", f"{self._waiting} requests already wait for the engine")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((item, future))
        self._waiting += cost
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        try:
            return await future
        finally:
            self._waiting -= cost

    def _flush(self) -> None:
        """Send what queued up, in order, one frame per run (unless ``max_flushes``
        frames are in flight: then when one is answered)."""
        self._flush_scheduled = False
        if not self._queue or self._in_flight >= self.max_flushes:
            return
        queue, self._queue = self._queue, []
        for run in self._runs(queue):
            try:
                if isinstance(run[0][0], np.ndarray):
                    raw = b"".join(cast(np.ndarray, r).tobytes() for r, _ in run)
                    sent = self.dealer.send_commands(np.frombuffer(raw, dtype=COMMAND_DTYPE))
                else:
                    sent = self.dealer.send_calls([cast(Call, c) for c, _ in run])
            except SendBusy as exc:
                _fail_all(run, BackendBusy("engine", str(exc)))
                continue
            except (MatchdError, ValueError) as exc:  # a frame the wire refuses
                _fail_all(run, BackendDown("engine", f"the engine link failed: {exc}"))
                continue
            self._in_flight += 1
            sent.add_done_callback(functools.partial(self._answered, run))

    def _runs(self, queue: list[_Item]) -> list[list[_Item]]:
        """``queue`` cut into runs of calls and runs of commands, each one frame
        (at most ``max_calls`` calls or ``max_commands`` command records)."""
        runs: list[list[_Item]] = []
        size = 0
        for item in queue:
            is_records = isinstance(item[0], np.ndarray)
            n = len(item[0]) if is_records else 1  # type: ignore[arg-type]
            if runs:
                last = runs[-1]
                limit = self._max_commands if is_records else self._max_calls
                if isinstance(last[0][0], np.ndarray) == is_records and size + n <= limit:
                    last.append(item)
                    size += n
                    continue
            runs.append([item])
            size = n
        return runs

    def _answered(self, run: list[_Item], sent: asyncio.Future[Answer]) -> None:
        """A frame is answered: its requests get their outcomes; what queued up
        meanwhile goes now."""
        self._in_flight -= 1
        if self._queue and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        error = sent.exception()
        if isinstance(error, TimeoutError):
            _fail_all(run, BackendTimeout("engine", "the engine did not answer in time"))
            return
        if error is not None:  # a refused frame, a broken link
            _fail_all(run, BackendDown("engine", f"the engine link failed: {error}"))
            return
        answer = sent.result()
        if isinstance(run[0][0], np.ndarray):
            outcomes = command_outcomes(*results_events(answer))
            start = 0
            for records, future in run:
                stop = start + len(cast(np.ndarray, records))
                if not future.done():
                    future.set_result(outcomes[start:stop])
                start = stop
            return
        for (_, future), reply in zip(run, replies_of(answer), strict=True):
            if not future.done():
                future.set_result(reply)

    async def start(self) -> None:
        self.dealer.start()
        self.watch.start()

    async def aclose(self) -> None:
        await self.watch.aclose()
        self.dealer.close()


def _fail_all(chunk: list[tuple[Any, asyncio.Future[Any]]], error: Exception) -> None:
    for _, future in chunk:
        if not future.done():
            future.set_exception(error)


class FeedLink:
    """JSON-RPC to the feed's market.* ROUTER (``[feed] rpc``)."""

    def __init__(
        self,
        endpoint: str,
        *,
        timeout_s: float = 1.0,
        max_pending: int = DEFAULT_MAX_PENDING,
        context: zmq.asyncio.Context | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        ctx = context or zmq.asyncio.Context.instance()
        self._socket: zmq.asyncio.Socket = ctx.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SNDHWM, max_pending)
        monitor = self._socket.get_monitor_socket(_CONNECTION_EVENTS)
        self.watch = ConnectionWatch(self._socket, monitor, f"feed {endpoint}")
        self._socket.connect(endpoint)
        self._ids: Callable[[], int] = itertools.count(1).__next__
        self._futures: dict[int, asyncio.Future[bytes]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.watch.start()
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read())

    async def call(self, method: str, params: list[Any]) -> bytes:
        """The feed's JSON reply text to ``method(params)``."""
        if not self.watch.connected:
            raise BackendDown("feed", "the market data feed is not connected")
        if len(self._futures) >= self.max_pending:
            raise BackendBusy("feed", f"{len(self._futures)} requests already wait for the feed")
        rid = self._ids()
        body = _encode({"method": method, "params": params, "id": rid})
        if len(body) > FEED_MAX_REQUEST_BYTES:  # the feed would drop the connection
            raise ArgumentError(
                f"the request is {len(body)} bytes; the feed takes at most {FEED_MAX_REQUEST_BYTES}"
            )
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._futures[rid] = future
        try:
            await self._socket.send(body, flags=zmq.NOBLOCK)
            return await asyncio.wait_for(future, self.timeout_s)
        except zmq.Again:
            raise BackendBusy("feed", "the feed's send queue is full") from None
        except TimeoutError:
            raise BackendTimeout("feed", "the market data feed did not answer in time") from None
        finally:
            self._futures.pop(rid, None)

    async def _read(self) -> None:
        with contextlib.suppress(asyncio.CancelledError, zmq.ZMQError):
            while True:
                body = await self._socket.recv()
                try:
                    rid = _decode_id.decode(body).id
                except msgspec.MsgspecError:
                    logger.warning("feed %s: a reply that is not JSON-RPC", self.endpoint)
                    continue
                future = self._futures.get(rid) if isinstance(rid, int) else None
                if future is not None and not future.done():
                    future.set_result(body)

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.watch.aclose()
        self._socket.close(linger=0)


class _Id(msgspec.Struct):
    id: Any = None


_encode = msgspec.json.Encoder().encode
_decode_id = msgspec.json.Decoder(_Id)

__all__ = [
    "BackendBusy",
    "BackendDown",
    "BackendError",
    "BackendTimeout",
    "EngineLink",
    "FeedLink",
]
