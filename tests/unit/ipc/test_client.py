"""The blocking client SDK (ipc/client.py) against a fake gateway over ipc://."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core import commands
from core.engine import Engine
from core.errors import BrokenError, ClosedError
from core.reference import ReferenceEngine
from core.schema import COMMAND_DTYPE, EVENT_DTYPE, RESULT_DTYPE, Result
from ipc import wire
from ipc.client import (
    ApiError,
    Client,
    RequestRefused,
    RequestTimeout,
    TooManyInFlight,
)
from ipc.client_common import Requests
from tests.support.engines import EngineClass
from tests.support.scenario import make_config
from tests.unit.ipc.fake_gateway import (
    BTC,
    BTC_USDT,
    USDT,
    FakeGateway,
    deposits,
    fund,
    random_batch,
    running,
)

pytestmark = pytest.mark.integration

CONFIG = make_config(max_orders=1000, max_levels=100)
TIMEOUT_S = 5.0  #: generous: the tests never wait for it unless they time out on purpose
SHORT_S = 0.05  #: a wait that is meant to time out


@pytest.fixture
def endpoint(tmp_path: Path) -> str:
    return f"ipc://{tmp_path}/gw.sock"


@pytest.fixture
def gateway(endpoint: str) -> Iterator[FakeGateway]:
    with running(endpoint, ReferenceEngine(CONFIG)) as gw:
        yield gw


@pytest.fixture
def client(gateway: FakeGateway) -> Iterator[Client]:
    with Client(gateway.endpoint, timeout_s=TIMEOUT_S) as c:
        yield c


def expected(oracle: ReferenceEngine | Engine, batch: np.ndarray) -> tuple[bytes, bytes]:
    results, events = oracle.execute(batch.copy())
    return results.tobytes(), events.tobytes()


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("engine_class", [ReferenceEngine, Engine], ids=lambda c: c.__name__)
def test_submit_gives_what_the_engine_gives_directly(
    endpoint: str, engine_class: EngineClass
) -> None:
    oracle = ReferenceEngine(CONFIG)
    fund(oracle)
    rng = np.random.default_rng(7)
    with running(endpoint, engine_class(CONFIG)) as gw, Client(endpoint) as client:
        replies = client.call(*deposits())
        assert [r.code for r in replies] == [0] * len(replies)
        for _ in range(8):
            batch = random_batch(rng, 25)
            results, events = client.submit(batch, events=True)
            assert results.dtype == RESULT_DTYPE
            assert events.dtype == EVENT_DTYPE
            assert (results.tobytes(), events.tobytes()) == expected(oracle, batch)
        batch = random_batch(rng, 5)
        results, events = client.submit(batch)
        assert results.tobytes() == expected(oracle, batch)[0]
        assert len(events) == 0
        assert gw.engine.state_hash() == oracle.state_hash()


def test_operation_methods_return_typed_results(client: Client) -> None:
    client.call(*deposits())
    done = client.put_limit(1, BTC_USDT, 1, 2_000, 800_100, taker_rate=10, source="sdk")
    assert isinstance(done, wire.CommandDone)
    assert done.order is not None
    assert (done.order.id, done.order.left, done.order.source) == (done.order_id, 2_000, "sdk")
    taken = client.put_limit(2, BTC_USDT, 2, 1_000, 800_100)
    assert taken.order is not None
    assert taken.order.left == 0
    assert client.book(BTC_USDT, 1).orders[0].left == 1_000
    assert client.depth(BTC_USDT).asks == [(800_100, 1_000)]
    balances = client.balance_query(2, BTC, USDT)
    assert [b.asset for b in balances] == [BTC, USDT]
    assert balances[0].available == 10 * 10**10 + 1_000 * 10**4
    assert client.markets()[BTC_USDT].name == "BTC_USDT"
    assert client.status().seq == 10  # 8 deposits and 2 orders
    assert client.cancel_all(1, BTC_USDT).value == 1


def test_a_refused_operation_raises_api_error_with_both_codes(client: Client) -> None:
    with pytest.raises(ApiError, match="balance not enough") as info:
        client.put_limit(3, BTC_USDT, 2, 1_000, 800_000)
    assert (info.value.code, info.value.viabtc, info.value.op, info.value.order_id) == (
        Result.BALANCE_NOT_ENOUGH, 10, "order.put_limit", 0
    )  # fmt: skip
    replies = client.call(wire.Cancel(3, BTC_USDT, 999), wire.MarketList())
    assert [r.code for r in replies] == [Result.ORDER_NOT_FOUND, 0]


def test_a_retried_put_raises_repeat_order_naming_the_order_placed(client: Client) -> None:
    client.call(*deposits())
    first = client.put_limit(1, BTC_USDT, 2, 1_000, 799_000, client_id=7)
    with pytest.raises(ApiError, match="repeat order") as info:
        client.put_limit(1, BTC_USDT, 2, 1_000, 799_000, client_id=7)
    assert (info.value.code, info.value.viabtc, info.value.order_id) == (
        Result.REPEAT_ORDER, 13, first.order_id
    )  # fmt: skip
    with pytest.raises(ApiError) as info:
        client.put_market(1, BTC_USDT, 2, 10**8, client_id=7)
    assert (info.value.code, info.value.order_id) == (Result.REPEAT_ORDER, first.order_id)
    assert client.book(BTC_USDT, 2).total == 1  # one bid rests: the first
    assert client.put_limit(2, BTC_USDT, 2, 1_000, 799_000, client_id=7).order_id > 0
    with pytest.raises(ApiError, match=r"client_id") as info:
        client.put_limit(1, BTC_USDT, 2, 1_000, 799_000, client_id=-1)
    assert (info.value.code, info.value.order_id) == (Result.INVALID_ARGUMENT, 0)


# --------------------------------------------------------------------------- pipelining


def test_pipelined_requests_are_matched_by_id_whatever_the_reply_order(
    gateway: FakeGateway, client: Client
) -> None:
    oracle = ReferenceEngine(CONFIG)
    fund(oracle)
    client.call(*deposits())
    gateway.reverse_batches(100)
    rng = np.random.default_rng(11)
    want: dict[int, object] = {}
    for i in range(100):
        if i % 10 == 9:
            rid = client.send_calls(wire.ServerStatus())
            want[rid] = oracle.counters()[0]
        else:
            batch = random_batch(rng, 1 + i % 4)
            rid = client.send_commands(batch, events=i % 2 == 0)
            want[rid] = expected(oracle, batch) if i % 2 == 0 else expected(oracle, batch)[0]
    assert client.in_flight == 100
    order = []
    for _ in range(100):
        rid, answer = client.receive()
        order.append(rid)
        if isinstance(answer, wire.ResultsFrame):
            got = answer.results.tobytes()
            if answer.flags & wire.FrameFlag.EVENTS:
                assert (got, answer.events.tobytes()) == want[rid]
            else:
                assert got == want[rid]
        else:
            assert answer.replies[0].result_as(wire.ServerStatus).seq == want[rid]
    assert order == sorted(want, reverse=True)
    assert client.in_flight == 0


def test_wait_picks_one_reply_and_keeps_the_others(gateway: FakeGateway, client: Client) -> None:
    gateway.reverse_batches(3)
    first, second, third = (client.send_calls(wire.ServerStatus()) for _ in range(3))
    assert isinstance(client.wait(second), wire.RepliesFrame)
    assert [client.receive()[0], client.receive()[0]] == [third, first]
    with pytest.raises(ValueError, match="not in flight"):
        client.wait(second)
    with pytest.raises(ValueError, match="no request is in flight"):
        client.receive()


def test_the_in_flight_limit_is_enforced(gateway: FakeGateway, endpoint: str) -> None:
    gateway.hold()
    with Client(endpoint, max_in_flight=4, timeout_s=TIMEOUT_S) as client:
        rids = [client.send_calls(wire.ServerStatus()) for _ in range(4)]
        with pytest.raises(TooManyInFlight, match="max_in_flight"):
            client.send_calls(wire.ServerStatus())
        assert client.in_flight == 4
        gateway.release()
        assert sorted(client.receive()[0] for _ in rids) == rids
        assert client.status().seq == 0
        assert client.statistics().peak_in_flight == 4


# --------------------------------------------------------------------------- failures


def test_a_timeout_raises_and_the_late_reply_is_dropped(
    gateway: FakeGateway, client: Client
) -> None:
    gateway.hold()
    with pytest.raises(RequestTimeout, match="no reply to request 1 from ipc://") as info:
        client.submit(random_batch(np.random.default_rng(1), 3), timeout_s=SHORT_S)
    assert isinstance(info.value, TimeoutError)
    assert info.value.request_id == 1
    assert client.in_flight == 0  # submit forgets its request
    gateway.release()
    assert client.status().seq == 0  # answered after the late reply, which is dropped
    assert client.statistics().dropped == 1


def test_receive_and_wait_time_out_but_keep_the_request(
    gateway: FakeGateway, client: Client
) -> None:
    gateway.hold()
    rid = client.send_calls(wire.ServerStatus())
    with pytest.raises(RequestTimeout, match=r"no reply from ipc://.* within 0 s"):
        client.receive(timeout_s=0)
    with pytest.raises(RequestTimeout):
        client.wait(rid, timeout_s=SHORT_S)
    assert client.in_flight == 1
    gateway.release()
    assert isinstance(client.wait(rid), wire.RepliesFrame)


def test_an_error_frame_raises_request_refused(gateway: FakeGateway, client: Client) -> None:
    gateway.refuse(Result.SERVICE_UNAVAILABLE)
    with pytest.raises(RequestRefused, match="service unavailable") as info:
        client.submit(random_batch(np.random.default_rng(1), 2))
    assert isinstance(info.value, wire.WireError)
    assert (info.value.code, info.value.request_id) == (Result.SERVICE_UNAVAILABLE, 1)
    rid = client.send_calls(wire.ServerStatus())
    with pytest.raises(RequestRefused) as info:
        client.receive()
    assert info.value.request_id == rid
    assert client.in_flight == 0
    gateway.refuse(None)
    assert client.status().seq == 0


def test_bad_input_is_refused_before_anything_is_sent(client: Client) -> None:
    with pytest.raises(wire.WireError, match="0 commands"):
        client.submit(np.zeros(0, dtype=COMMAND_DTYPE))
    with pytest.raises(wire.WireError, match="COMMAND_DTYPE"):
        client.submit(np.zeros(1, dtype=RESULT_DTYPE))
    with pytest.raises(ValueError, match="timeout_s must be >= 0"):
        client.call(wire.ServerStatus(), timeout_s=-1)
    with pytest.raises(ValueError, match="timeout_s must be >= 0"):
        client.submit(commands.cancel(1, 0, 1), timeout_s=float("nan"))
    assert client.statistics().sent == 0


def test_a_closed_client_refuses_use(endpoint: str) -> None:
    client = Client(endpoint)
    client.close()
    client.close()
    assert client.closed
    with pytest.raises(ClosedError):
        client.send_calls(wire.ServerStatus())


def test_a_reply_of_the_wrong_kind_or_size_breaks_only_its_request() -> None:
    requests = Requests("test", wire.WireLimits(), 8)
    rid, _, request = requests.calls_frame((wire.ServerStatus(),), events=False)
    requests.sent(rid, request)
    results = np.zeros(1, dtype=RESULT_DTYPE)
    matched = requests.match(wire.encode_results(rid, results))
    assert matched is not None
    assert isinstance(matched[1], BrokenError)
    assert "with RESULTS" in str(matched[1])
    rid, _, request = requests.commands_frame(commands.cancel(1, 0, 1), events=False)
    requests.sent(rid, request)
    matched = requests.match(wire.encode_results(rid, np.zeros(2, dtype=RESULT_DTYPE)))
    assert matched is not None
    assert "with 2 results" in str(matched[1])
    assert requests.match(b"garbage") is None
    assert requests.match(wire.encode_results(99, results)) is None
    assert requests.stats().dropped == 2


def test_the_protocol_page_example_runs(gateway: FakeGateway) -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "protocol.md").read_text()
    found = re.search(r"### Client SDK.*?```python\n(.*?)```", text, re.S)
    assert found is not None
    code = found.group(1).replace('"tcp://127.0.0.1:7316"', repr(gateway.endpoint))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/protocol.md", "exec"), {})  # noqa: S102 - our own docs
    assert out.getvalue().splitlines() == [
        "order 1 left 150000 seq 2",
        "codes [0, 0] events 4",
        "2001 10 balance not enough",
        "2004 13 True",
    ]
