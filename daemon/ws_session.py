"""One WebSocket connection of the gateway (docs/websocket.md): who it is, what it
subscribed to, and its bounded send queue.

Everything sent to a client (replies and ``*.update`` notifications) goes through
``Session.push``, into a queue of at most ``send_queue`` messages that one writer
task empties into the socket. The writer waits when the socket does not take more
(the client does not read); the queue then fills, and the push that finds it full
disconnects the client with close code 1008 instead of holding more (DESIGN.md rule
7). Nothing is ever dropped from a connection that stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Hashable
from typing import Any, Final

import msgspec
from aiohttp import WSCloseCode, web
from aiohttp.client_exceptions import ClientConnectionResetError

logger = logging.getLogger("matchd.ws")

#: A subscription's key: a market name (price, today, state, deals), ``(market,
#: interval)`` (kline), ``(market, interval, limit)`` (depth), ``(user, market)``
#: (order) or ``(user, asset)`` (asset).
Key = Hashable
#: How long a close may take (the close frame sent, the client's answer) before the
#: connection is cut.
CLOSE_GRACE_S: Final = 2.0

_encode = msgspec.json.Encoder().encode


def notification(method: str, params: list[Any]) -> str:
    """ViaBTC's notification ``{"method", "params", "id": null}`` as JSON text."""
    return _encode({"method": method, "params": params, "id": None}).decode()


class Session:
    """One connection (see the module docstring).

    Parameters
    ----------
    ws
        The prepared WebSocket.
    ip
        The client's address (rate limits, logs).
    send_queue
        Messages that may wait to be sent.
    on_overflow
        Called once when a push finds the queue full (the gateway disconnects it).
    transport
        The connection's transport (cut off when a close takes too long).
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        ip: str,
        send_queue: int,
        on_overflow: Callable[[Session], None],
        transport: asyncio.BaseTransport | None = None,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.ip = ip
        self.user = 0  #: 0: not authenticated
        self.source = ""
        self.subs: dict[str, frozenset[Key]] = {}  #: kind -> keys (see ws_subscriptions)
        self.overflowed = False
        self.closer: asyncio.Task[None] | None = None  #: the close of an overflowed session
        self.sent = 0
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(send_queue)
        self._on_overflow = on_overflow
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the writer task."""
        self._writer = asyncio.get_running_loop().create_task(self._write())

    def push(self, text: str) -> None:
        """Queue ``text`` for the client; a full queue disconnects it (1008)."""
        if self.overflowed or self.ws.closed:
            return
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            self.overflowed = True
            self._on_overflow(self)

    @property
    def queued(self) -> int:
        """Messages waiting to be sent."""
        return self._queue.qsize()

    def subscriptions(self) -> int:
        """Markets, assets and views subscribed to, over every kind."""
        return sum(len(keys) for keys in self.subs.values())

    async def _write(self) -> None:
        try:
            while True:
                text = await self._queue.get()
                if text is None:  # flush() asked to stop here
                    return
                await self.ws.send_str(text)
                self.sent += 1
        except (ClientConnectionResetError, ConnectionError, RuntimeError):
            return  # the connection is gone or closing; the reader notices it too

    async def flush(self, timeout_s: float) -> None:
        """Let the writer send what is queued (at most ``timeout_s``), then stop it."""
        writer = self._writer
        if writer is None or writer.done():
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(writer), timeout_s)
        await self.stop()

    async def stop(self) -> None:
        """Stop the writer (what is queued is not sent)."""
        writer = self._writer
        if writer is not None and not writer.done():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def close(self, code: int, message: str, transport: asyncio.BaseTransport | None) -> None:
        """Close with ``code``. What is already in the socket's buffer goes first; a
        client that has not taken it all (and the close) within ``CLOSE_GRACE_S`` is
        cut off (``transport`` aborted), so that it holds no memory for long.

        The writer is not cancelled first: it may wait in aiohttp's drain, whose
        future the close waits on too (a cancelled one would fail the close); once
        the close frame is written, its next send fails and it ends."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_GRACE_S
        with contextlib.suppress(TimeoutError, ConnectionError, ClientConnectionResetError):
            await asyncio.wait_for(
                self.ws.close(code=code, message=message.encode()), CLOSE_GRACE_S
            )
        if isinstance(transport, asyncio.WriteTransport):
            while transport.get_write_buffer_size() and loop.time() < deadline:
                await asyncio.sleep(0.02)
            if transport.get_write_buffer_size() or not transport.is_closing():
                transport.abort()
        await self.stop()


__all__ = ["CLOSE_GRACE_S", "Key", "Session", "WSCloseCode", "notification"]
