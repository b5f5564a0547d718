"""A minimal HTTP/1.1 keep-alive client for load tools: ``Target`` builds a JSON POST's
bytes, ``HttpClientProtocol`` sends them on one connection and frames the responses
(Content-Length only), in order, to a ``Listener``. No task and no future per request:
the fastest way found to keep a gateway busy from one core (aiohttp's client cost about
three times as much per request). Used by ``matchd-bench http`` and ``matchd-loadgen``.
"""

from __future__ import annotations

import asyncio
import time
import typing
import urllib.parse
from dataclasses import dataclass

_MAX_HEAD = 64 * 1024


class HttpFailure(Exception):
    """An HTTP exchange that failed; ``kind`` counts it in ``http_errors``."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, Content-Length, Connection: close) of a response head (without its
    final empty line); raises HttpFailure for one the client cannot frame."""
    if not head.startswith(b"HTTP/1.") or head[12:13] not in (b" ", b"\r", b""):
        raise HttpFailure("bad status line")
    try:
        status = int(head[9:12])
    except ValueError:
        raise HttpFailure("bad status line") from None
    lower = head.lower()
    if b"\r\ntransfer-encoding:" in lower:
        raise HttpFailure("Transfer-Encoding")
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        raise HttpFailure("no Content-Length")
    at += 17
    end = lower.find(b"\r\n", at)
    try:
        length = int(head[at : end if end >= 0 else len(head)])
    except ValueError:
        length = -1
    if length < 0:
        raise HttpFailure("bad Content-Length")
    close = head.startswith(b"HTTP/1.0")  # keeps the connection only when it says so
    at = lower.find(b"\r\nconnection:")
    if at >= 0:
        end = lower.find(b"\r\n", at + 13)
        tokens = [t.strip() for t in lower[at + 13 : end if end >= 0 else len(lower)].split(b",")]
        close = b"close" in tokens or (close and b"keep-alive" not in tokens)
    return status, length, close


class Listener(typing.Protocol):
    """What an HttpClientProtocol tells about the requests it sent."""

    def response(self, status: int, body: bytes, close: bool) -> None:
        """The oldest request unanswered is answered (``close``: the response said
        ``Connection: close``; the connection is closed already)."""

    def failed(self, kind: str) -> None:
        """The connection ended with requests unanswered (each is, once)."""


class HttpClientProtocol(asyncio.Protocol):
    """A minimal HTTP/1.1 keep-alive client connection: ``send`` writes a request's
    bytes; the responses, framed by Content-Length only, answer the requests in order
    (to ``listener.response``). A response it cannot frame, one that answers nothing, the
    peer closing, ``fail`` or ``Connection: close`` end the connection (``closed`` says
    why); the requests still unanswered then fail (``listener.failed``)."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.unanswered = 0
        self.sent_ns = 0  #: when the oldest request unanswered was sent (perf_counter)
        self.closed: str | None = None
        self._chunks: list[bytes] = []  # what came of a response not complete yet
        self._have = 0
        self._need = 0  # bytes of it to wait for before parsing again (0: any)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail("connection lost")

    def send(self, payload: bytes) -> None:
        """Write a request (the connection must be open: ``closed`` None)."""
        if self.transport is None or self.closed is not None:
            raise HttpFailure(self.closed or "not connected")
        if not self.unanswered:
            self.sent_ns = time.perf_counter_ns()
        self.unanswered += 1
        self.transport.write(payload)

    def fail(self, kind: str) -> None:
        """End the connection; the requests unanswered fail with ``kind``."""
        self._close(kind)
        if self.unanswered:
            self.unanswered = 0
            self.listener.failed(kind)

    def data_received(self, data: bytes) -> None:
        if self.closed is not None:
            return
        if self._chunks:
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                return
            data = b"".join(self._chunks)
            self._chunks = []
        # Frame every complete response first, so that one answering nothing is seen
        # before a listener sends another request it would seem to answer.
        responses, failure = self._frame(data)
        if len(responses) > self.unanswered:
            del responses[self.unanswered :]
            failure = failure or "unexpected response"
        for status, body, close in responses:
            self.unanswered -= 1
            self.sent_ns = time.perf_counter_ns()
            if close:  # closed before the listener hears of it (and sends no more here)
                failure = "Connection: close"
                self._close(failure)
            self.listener.response(status, body, close)
        if failure:
            self.fail(failure)

    def _close(self, kind: str) -> None:
        if self.closed is None:
            self.closed = kind
            self._chunks = []
            if self.transport is not None:
                self.transport.abort()

    def _frame(self, data: bytes) -> tuple[list[tuple[int, bytes, bool]], str]:
        """The complete responses in ``data`` (what is left of one is kept for the next
        data) and why the connection cannot go on after them (else "")."""
        responses: list[tuple[int, bytes, bool]] = []
        pos, size, failure = 0, len(data), ""
        while pos < size:
            head_end = data.find(b"\r\n\r\n", pos)
            if head_end < 0:
                if size - pos > _MAX_HEAD:
                    failure = "response head too long"
                else:
                    self._keep(data, pos, 0)
                break
            try:
                status, length, close = parse_head(data[pos:head_end])
            except HttpFailure as exc:
                failure = exc.kind
                break
            start = head_end + 4
            stop = start + length
            if stop > size:  # the body is still coming: wait for all of it
                self._keep(data, pos, stop - pos)
                break
            responses.append((status, data[start:stop], close))
            pos = stop
            if close:
                break
        return responses, failure

    def _keep(self, data: bytes, pos: int, need: int) -> None:
        self._chunks = [data[pos:]]
        self._have = len(data) - pos
        self._need = need


@dataclass(frozen=True)
class Target:
    """Where the raw client sends its requests: ``http://host[:port][/path]``."""

    host: str
    port: int
    head: bytes  #: the request head up to Content-Length's value

    @classmethod
    def of(cls, url: str) -> Target:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the raw client speaks http:// only, not {url!r}")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        )
        return cls(parts.hostname, parts.port or 80, head.encode("latin-1"))

    def request(self, body: bytes) -> bytes:
        """A request's bytes: the head with the body's length, then the body."""
        return b"%b%d\r\n\r\n%b" % (self.head, len(body), body)
