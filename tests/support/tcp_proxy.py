"""A TCP proxy with network faults, for partition tests (TESTING.md: Toxiproxy is not
packaged here, so a small asyncio one): it forwards ``127.0.0.1:port`` to an upstream
address, and on demand **stalls** (connections stay open, no byte moves either way:
a partition the peers only notice by silence), **cuts** (every connection reset, new
ones refused) or passes again."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FaultyProxy:
    """Forwards ``127.0.0.1:port`` to ``upstream_port`` on a thread of its own."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._cut = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proxy", daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> FaultyProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # ------------------------------------------------------------------ faults

    def stall(self) -> None:
        """No byte moves either way; connections stay open."""
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def cut(self) -> None:
        """Reset every connection and refuse new ones."""
        self._loop.call_soon_threadsafe(self._do_cut)

    def heal(self) -> None:
        """Forward again (and accept connections)."""
        self._loop.call_soon_threadsafe(self._do_heal)

    def _do_cut(self) -> None:
        self._cut = True
        for writer in list(self._writers):
            writer.transport.abort()

    def _do_heal(self) -> None:
        self._cut = False
        self._flowing.set()

    # ------------------------------------------------------------------ forwarding

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._flowing.set()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        with contextlib.suppress(Exception):
            self._loop.run_until_complete(self._server.wait_closed())
        self._loop.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            await self._flowing.wait()
            if self._cut:
                break
            writer.write(data)
            await writer.drain()
        writer.transport.abort()
