"""The gateways' ZeroMQ DEALER to the engine's order entry, on the event loop
without ``zmq.asyncio``: frames are sent with ``NOBLOCK`` and replies read by a
reader callback on the socket's file descriptor, so a request costs one future and
no task (``zmq.asyncio`` adds futures, polls and callbacks per send and receive,
which showed as a third of a gateway's time per request).

The frames and the matching of replies are the SDK's (``ipc.client_common.Requests``:
the same checks as ``ipc.client``). ZeroMQ's descriptor is edge-triggered: the reader
drains the socket until it is empty, and runs again after every send (a send may
consume the edge of a reply that arrived meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any, Final, cast

import numpy as np
import zmq
import zmq.asyncio

from core.errors import BrokenError
from ipc.client_common import Answer, CurveKeys, Outcome, Requests
from ipc.wire import Call, WireLimits

logger = logging.getLogger("matchd.gateway")

#: Frames queued in ZeroMQ for the engine before a send is refused (``Busy``).
SEND_HWM: Final = 10_000
_monitors = itertools.count(1)


class SendBusy(Exception):
    """ZeroMQ's send queue to the engine is full."""


def stop_monitor(socket: zmq.Socket[Any], monitor: zmq.Socket[Any]) -> None:
    """Stop ``socket``'s monitor, then close the ``monitor`` PAIR that reads it.

    In this order only: libzmq's I/O thread sends each monitor event with a blocking
    send, so an event sent once the reading PAIR is gone (the peer disconnects, say)
    blocks that thread for ever, and with it every socket of the context: nothing
    connects or moves any more, and terminating the context hangs.
    """
    if not socket.closed:
        with contextlib.suppress(zmq.ZMQError):
            socket.disable_monitor()
    monitor.close(linger=0)


class Dealer:
    """A DEALER connected to ``endpoint`` (see the module docstring).

    ``monitor`` is an asyncio PAIR socket receiving the DEALER's ``monitor_events``
    from before it connects (``daemon.gateway_links.ConnectionWatch`` reads it).
    """

    def __init__(
        self,
        endpoint: str,
        limits: WireLimits,
        *,
        timeout_s: float,
        monitor_events: int,
        curve: CurveKeys | None = None,
        max_in_flight: int = 100_000,
    ) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.requests = Requests(endpoint, limits, max_in_flight)
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._socket: zmq.Socket[bytes] = context.socket(zmq.DEALER)
        self._waiters: dict[int, tuple[asyncio.Future[Answer], asyncio.TimerHandle]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        address = f"inproc://matchd-gateway-monitor-{next(_monitors)}"
        self.monitor: zmq.asyncio.Socket = zmq.asyncio.Context.shadow(context.underlying).socket(
            zmq.PAIR
        )
        try:
            self._socket.setsockopt(zmq.LINGER, 0)
            self._socket.setsockopt(zmq.SNDHWM, SEND_HWM)
            self._socket.setsockopt(zmq.RCVHWM, SEND_HWM)
            if curve is not None:
                curve.apply(self._socket)
            self._socket.monitor(address, monitor_events)
            self.monitor.connect(address)
            self._socket.connect(endpoint)
        except zmq.ZMQError:
            stop_monitor(self._socket, self.monitor)
            self._socket.close(linger=0)
            raise

    @property
    def socket(self) -> zmq.Socket[bytes]:
        """The DEALER itself (for ``stop_monitor``)."""
        return self._socket

    def start(self) -> None:
        """Start reading replies (on the running loop)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._fd(), self._read)

    def _fd(self) -> int:
        return cast(int, self._socket.getsockopt(zmq.FD))

    def send_commands(self, records: np.ndarray) -> asyncio.Future[Answer]:
        """Send ``records`` (``COMMAND_DTYPE``) with their events asked for; the
        future of their RESULTS."""
        rid, frame, request = self.requests.commands_frame(records, True)
        return self._send(rid, frame, request)

    def send_calls(self, calls: list[Call]) -> asyncio.Future[Answer]:
        """Send ``calls``; the future of their REPLIES."""
        rid, frame, request = self.requests.calls_frame(tuple(calls), False)
        return self._send(rid, frame, request)

    def _send(self, rid: int, frame: bytes, request: object) -> asyncio.Future[Answer]:
        loop = self._loop
        if loop is None:
            raise RuntimeError("Dealer.start() first")
        try:
            self._socket.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            raise SendBusy(f"the send queue to {self.endpoint} is full") from None
        self.requests.sent(rid, request)  # type: ignore[arg-type]
        future: asyncio.Future[Answer] = loop.create_future()
        timer = loop.call_later(self.timeout_s, self._expire, rid)
        self._waiters[rid] = (future, timer)
        loop.call_soon(self._read)  # the send may have taken the edge of a reply
        return future

    def _read(self) -> None:
        """Resolve the future of every reply waiting in the socket."""
        socket = self._socket
        while cast(int, socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            try:
                parts = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError as exc:  # closed under us: fail every waiter
                self._fail_all(BrokenError(f"the link to {self.endpoint} failed: {exc}"))
                return
            matched = self.requests.match(parts[-1])
            if matched is not None:
                self._resolve(*matched)

    def _resolve(self, rid: int, outcome: Outcome) -> None:
        self.requests.forget(rid)
        waiter = self._waiters.pop(rid, None)
        if waiter is None:
            return
        future, timer = waiter
        timer.cancel()
        if future.done():
            return
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def _expire(self, rid: int) -> None:
        waiter = self._waiters.pop(rid, None)
        self.requests.forget(rid)  # a late reply is dropped and counted
        if waiter is not None and not waiter[0].done():
            waiter[0].set_exception(TimeoutError(f"no reply to request {rid}"))

    def _fail_all(self, error: Exception) -> None:
        for rid, (future, timer) in list(self._waiters.items()):
            timer.cancel()
            self.requests.forget(rid)
            if not future.done():
                future.set_exception(error)
        self._waiters.clear()

    def close(self) -> None:
        """Stop reading, fail what waits, close the sockets."""
        if self._loop is not None:
            self._loop.remove_reader(self._fd())
            self._loop = None
        self._fail_all(BrokenError(f"the link to {self.endpoint} was closed"))
        stop_monitor(self._socket, self.monitor)
        self._socket.close(linger=0)
