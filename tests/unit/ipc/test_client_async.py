"""The asyncio client SDK (ipc/client_async.py) against a fake gateway over ipc://,
on the default event loop and on uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvloop

from core.errors import ClosedError
from core.reference import ReferenceEngine
from core.schema import COMMAND_DTYPE, Result
from ipc import wire
from ipc.client import ApiError, RequestRefused, RequestTimeout, TooManyInFlight
from ipc.client_async import AsyncClient
from tests.support.scenario import make_config
from tests.unit.ipc.fake_gateway import (
    BTC_USDT,
    FakeGateway,
    deposits,
    fund,
    random_batch,
    running,
)

pytestmark = pytest.mark.integration

CONFIG = make_config(max_orders=1000, max_levels=100)
TIMEOUT_S = 5.0
SHORT_S = 0.05

Run = Callable[[Coroutine[Any, Any, None]], None]
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Run:
    """Run a coroutine to completion on a fresh loop of each kind."""

    def runner(coro: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as r:
            r.run(asyncio.wait_for(coro, 30))

    return runner


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[FakeGateway]:
    with running(f"ipc://{tmp_path}/gw.sock", ReferenceEngine(CONFIG)) as gw:
        yield gw


def client_of(gateway: FakeGateway, **kw: Any) -> AsyncClient:
    return AsyncClient(gateway.endpoint, timeout_s=TIMEOUT_S, **kw)


def test_submit_gives_what_the_engine_gives_directly(gateway: FakeGateway, run: Run) -> None:
    oracle = ReferenceEngine(CONFIG)
    fund(oracle)
    rng = np.random.default_rng(7)

    async def main() -> None:
        async with client_of(gateway) as client:
            replies = await client.call(*deposits())
            assert all(r.ok for r in replies)
            for i in range(6):
                batch = random_batch(rng, 20)
                results, events = await client.submit(batch, events=i % 2 == 0)
                want, want_events = oracle.execute(batch.copy())
                assert results.tobytes() == want.tobytes()
                assert events.tobytes() == (want_events.tobytes() if i % 2 == 0 else b"")

    run(main())
    assert gateway.engine.state_hash() == oracle.state_hash()


def test_many_tasks_share_one_client(gateway: FakeGateway, run: Run) -> None:
    async def main() -> None:
        async with client_of(gateway) as client:
            await client.call(*deposits())

            async def put(i: int) -> int:  # resting asks and bids that never cross
                side = 1 + i % 2
                price = 900_000 + i if side == 1 else 700_000 - i
                done = await client.put_limit(1 + i % 4, BTC_USDT, side, 1_000, price)
                return done.order_id

            ids = await asyncio.gather(*(put(i) for i in range(50)))
            assert sorted(ids) == list(range(1, 51))
            assert (await client.book(BTC_USDT, 1)).total == 25
            with pytest.raises(ApiError, match="order not found"):
                await client.cancel(1, BTC_USDT, 999)
            assert client.in_flight == 0

    run(main())


def test_a_retried_put_raises_repeat_order_naming_the_order_placed(
    gateway: FakeGateway, run: Run
) -> None:
    async def main() -> None:
        async with client_of(gateway) as client:
            await client.call(*deposits())
            first = await client.put_limit(1, BTC_USDT, 1, 1_000, 900_000, client_id=7)
            with pytest.raises(ApiError, match="repeat order") as info:
                await client.put_market(1, BTC_USDT, 1, 1_000, client_id=7)
            assert (info.value.code, info.value.viabtc) == (Result.REPEAT_ORDER, 13)
            assert info.value.order_id == first.order_id

    run(main())


def test_pipelined_requests_are_matched_by_id_whatever_the_reply_order(
    gateway: FakeGateway, run: Run
) -> None:
    oracle = ReferenceEngine(CONFIG)
    rng = np.random.default_rng(3)
    gateway.reverse_batches(100)

    async def main() -> None:
        async with client_of(gateway) as client:
            want: dict[int, bytes] = {}
            for _ in range(100):
                batch = random_batch(rng, 2)
                rid = await client.send_commands(batch)
                want[rid] = oracle.execute(batch.copy())[0].tobytes()
            rids = list(want)
            half = await asyncio.gather(*(client.wait(rid) for rid in rids[:50]))
            got = dict(zip(rids[:50], half, strict=True))
            while client.in_flight:
                rid, answer = await client.receive()
                got[rid] = answer
            assert list(got)[50:] == sorted(rids[50:], reverse=True)
            for rid, answer in got.items():
                assert isinstance(answer, wire.ResultsFrame)
                assert answer.results.tobytes() == want[rid]

    run(main())


def test_the_in_flight_limit_is_enforced(gateway: FakeGateway, run: Run) -> None:
    gateway.hold()

    async def main() -> None:
        async with client_of(gateway, max_in_flight=3) as client:
            rids = [await client.send_calls(wire.ServerStatus()) for _ in range(3)]
            with pytest.raises(TooManyInFlight):
                await client.send_calls(wire.ServerStatus())
            gateway.release()
            assert sorted([(await client.receive())[0] for _ in rids]) == rids
            assert (await client.status()).seq == 0

    run(main())


def test_timeouts(gateway: FakeGateway, run: Run) -> None:
    gateway.hold()

    async def main() -> None:
        async with client_of(gateway) as client:
            with pytest.raises(RequestTimeout, match="no reply to request 1 from ipc://"):
                await client.call(wire.ServerStatus(), timeout_s=SHORT_S)
            assert client.in_flight == 0
            rid = await client.send_calls(wire.ServerStatus())
            with pytest.raises(RequestTimeout, match="no reply from"):
                await client.receive(timeout_s=0)
            with pytest.raises(RequestTimeout):
                await client.wait(rid, timeout_s=SHORT_S)
            gateway.release()
            assert isinstance(await client.wait(rid), wire.RepliesFrame)
            assert client.statistics().dropped == 1  # the late reply to request 1

    run(main())


def test_an_error_frame_raises_request_refused(gateway: FakeGateway, run: Run) -> None:
    gateway.refuse(Result.SERVICE_UNAVAILABLE)

    async def main() -> None:
        async with client_of(gateway) as client:
            with pytest.raises(RequestRefused, match="service unavailable") as info:
                await client.submit(random_batch(np.random.default_rng(1), 2))
            assert (info.value.code, info.value.request_id) == (Result.SERVICE_UNAVAILABLE, 1)
            with pytest.raises(wire.WireError, match="0 commands"):
                await client.submit(np.zeros(0, dtype=COMMAND_DTYPE))
            gateway.refuse(None)
            assert (await client.status()).seq == 0

    run(main())


def test_closing_fails_the_waiters_and_refuses_use(gateway: FakeGateway, run: Run) -> None:
    gateway.hold()

    async def main() -> None:
        client = client_of(gateway)
        waiter = asyncio.ensure_future(client.call(wire.ServerStatus()))
        await asyncio.to_thread(gateway.wait_requests, 1)
        await client.aclose()
        with pytest.raises(ClosedError):
            await waiter
        with pytest.raises(ClosedError):
            await client.send_calls(wire.ServerStatus())
        assert client.closed

    run(main())
