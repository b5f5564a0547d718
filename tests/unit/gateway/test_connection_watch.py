"""``ConnectionWatch`` and ``stop_monitor``: a closed watch leaves its context working.

libzmq's I/O thread sends each socket-monitor event with a blocking send. If the PAIR
that reads the events is closed while the monitored socket lives on, the next event
(the peer going away, say) blocks that thread for ever, and with it every socket of
the context: nothing connects or moves, and terminating the context hangs. That once
wedged the test process's shared context and failed every later test that used it.
Each test here has its own context, so a regression fails only that test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

from daemon.gateway_dealer import stop_monitor
from daemon.gateway_links import ConnectionWatch

pytestmark = pytest.mark.integration

EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED


async def context_still_moves(ctx: zmq.asyncio.Context, endpoint: str, seconds: float) -> bool:
    """Whether a fresh DEALER → ROUTER pair on ``ctx`` delivers a message every 50 ms
    for ``seconds`` (each within 2 s)."""
    router = ctx.socket(zmq.ROUTER)
    dealer = ctx.socket(zmq.DEALER)
    try:
        router.bind(endpoint)
        dealer.connect(endpoint)
        for i in range(int(seconds / 0.05)):
            await dealer.send(b"%d" % i)
            if not await router.poll(2000):
                return False
            await router.recv_multipart()
            await asyncio.sleep(0.05)
        return True
    finally:
        dealer.close(linger=0)
        router.close(linger=0)


Scenario = Callable[[zmq.asyncio.Context, Path], Coroutine[Any, Any, bool]]


def run_on_private_context(scenario: Scenario, tmp_path: Path) -> None:
    ctx = zmq.asyncio.Context()
    moved = asyncio.run(scenario(ctx, tmp_path))
    assert moved, "the context's I/O thread is blocked"
    ctx.destroy(linger=0)  # only when not wedged: terminating a wedged context hangs


def test_a_peer_leaving_after_the_watch_closed_does_not_wedge_the_context(
    tmp_path: Path,
) -> None:
    async def scenario(ctx: zmq.asyncio.Context, tmp: Path) -> bool:
        peer = ctx.socket(zmq.ROUTER)
        peer.bind(f"ipc://{tmp}/peer.sock")
        watched = ctx.socket(zmq.DEALER)
        watch = ConnectionWatch(watched, watched.get_monitor_socket(EVENTS), "test")
        watched.connect(f"ipc://{tmp}/peer.sock")
        watch.start()
        assert await watch.wait_connected(5)
        await watch.aclose()
        peer.close(linger=0)  # DISCONNECTED: sent into a dead PAIR unless stopped first
        moved = await context_still_moves(ctx, f"ipc://{tmp}/fresh.sock", 0.5)
        watched.close(linger=0)
        return moved

    run_on_private_context(scenario, tmp_path)


def test_the_watch_sees_the_peer_come_and_go(tmp_path: Path) -> None:
    async def scenario(ctx: zmq.asyncio.Context, tmp: Path) -> bool:
        watched = ctx.socket(zmq.DEALER)
        watch = ConnectionWatch(watched, watched.get_monitor_socket(EVENTS), "test")
        watched.connect(f"ipc://{tmp}/peer.sock")
        watch.start()
        assert not await watch.wait_connected(0.1)
        peer = ctx.socket(zmq.ROUTER)
        peer.bind(f"ipc://{tmp}/peer.sock")
        assert await watch.wait_connected(5)
        peer.close(linger=0)
        for _ in range(500):
            if not watch.connected:
                break
            await asyncio.sleep(0.01)
        assert not watch.connected
        await watch.aclose()
        watched.close(linger=0)
        return await context_still_moves(ctx, f"ipc://{tmp}/fresh.sock", 0.1)

    run_on_private_context(scenario, tmp_path)


def test_stop_monitor_on_a_closed_socket_only_closes_the_reader() -> None:
    ctx = zmq.Context()
    socket = ctx.socket(zmq.DEALER)
    reader = socket.get_monitor_socket(EVENTS)
    socket.close(linger=0)
    stop_monitor(socket, reader)
    assert reader.closed
    ctx.destroy(linger=0)
