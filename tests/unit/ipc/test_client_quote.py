"""Mass quotes through the client SDK (``Client.quote``, ``AsyncClient.quote``,
``cancel_quote``; docs/protocol.md, "Mass quotes") against a fake gateway over
ipc://: first with a stub engine (the SDK's mechanics), then with the engines
(what a quote does: kept, shrunk, grown and new levels, stale orders, funds)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.engine import Engine
from core.reference import ReferenceEngine
from core.schema import (
    EVENT_DTYPE,
    RESULT_DTYPE,
    CommandKind,
    OrderFlag,
    QuoteAction,
    Result,
    Side,
)
from ipc import wire
from ipc.client import ApiError, Client
from ipc.client_async import AsyncClient
from tests.support.engines import EngineClass
from tests.support.scenario import make_config
from tests.unit.ipc.fake_gateway import BTC, BTC_USDT, USDT, fund, running

pytestmark = pytest.mark.integration

CONFIG = make_config(max_orders=1000, max_levels=100)
BID, ASK = int(Side.BID), int(Side.ASK)
KEPT, SHRUNK, GROWN, NEW = QuoteAction.KEPT, QuoteAction.SHRUNK, QuoteAction.GROWN, QuoteAction.NEW


class StubEngine:
    """Answers a QUOTE as an engine would a first one: each level NEW, its order id
    from 100; a crossing ladder INVALID_ARGUMENT. Keeps what it was sent."""

    def __init__(self) -> None:
        self.sent: list[np.ndarray] = []

    def execute(self, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.sent.append(records.copy())
        results = np.zeros(len(records), dtype=RESULT_DTYPE)
        levels = records[1:]
        bids = levels["price"][levels["side"] == BID]
        asks = levels["price"][levels["side"] == ASK]
        if bids.size and asks.size and bids.max() >= asks.min():
            results["code"] = Result.INVALID_ARGUMENT
        else:
            results[0]["seq"] = 1 if len(levels) else 0
            results["order_id"][1:] = np.arange(100, 100 + len(levels))
            results["value"][1:] = NEW
        return results, np.zeros(0, dtype=EVENT_DTYPE)


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[tuple[StubEngine, str]]:
    engine = StubEngine()
    endpoint = f"ipc://{tmp_path}/gw.sock"
    with running(endpoint, engine):  # type: ignore[arg-type]
        yield engine, endpoint


def test_quote_sends_one_call_and_returns_the_typed_result(
    stub: tuple[StubEngine, str],
) -> None:
    engine, endpoint = stub
    with Client(endpoint, timeout_s=5.0) as c:
        done = c.quote(7, BTC_USDT, [(799_900, 1_000), [799_800, np.int64(2_000)]],
                       [(800_100, 3_000)], taker_rate=20, maker_rate=10, source="mm")  # fmt: skip
        assert isinstance(done, wire.QuoteDone)
        assert (done.seq, done.cancelled, done.events) == (1, 0, None)
        assert done.levels == [
            wire.QuoteLevel(BID, 799_900, 1_000, 100, NEW),
            wire.QuoteLevel(BID, 799_800, 2_000, 101, NEW),
            wire.QuoteLevel(ASK, 800_100, 3_000, 102, NEW),
        ]
        (sent,) = engine.sent
        assert (
            sent.tobytes()
            == wire.Quote(
                7, BTC_USDT, [(799_900, 1_000), (799_800, 2_000)], [(800_100, 3_000)], 20, 10, "mm"
            )
            .record()
            .tobytes()
        )

        with pytest.raises(ApiError) as info:
            c.quote(7, BTC_USDT, [(800_100, 1_000)], [(800_100, 1_000)])
        assert (info.value.op, info.value.code, info.value.viabtc) == (
            "order.quote", Result.INVALID_ARGUMENT, 1,
        )  # fmt: skip

        removed = c.cancel_quote(7, BTC_USDT)
        assert (removed.seq, removed.levels) == (0, [])
        assert engine.sent[-1]["kind"].tolist() == [CommandKind.QUOTE]

        with pytest.raises(ValueError, match="more than 32 levels"):
            c.quote(7, BTC_USDT, [(i + 1, 1) for i in range(33)])
        assert len(engine.sent) == 3  # nothing sent


def test_the_async_client_quotes_the_same(stub: tuple[StubEngine, str]) -> None:
    engine, endpoint = stub

    async def main() -> None:
        async with AsyncClient(endpoint, timeout_s=5.0) as c:
            done, removed = await asyncio.gather(
                c.quote(7, BTC_USDT, [(799_900, 1_000)], [(800_100, 3_000)], source="a"),
                c.cancel_quote(8, BTC_USDT),
            )
            assert [(lv.side, lv.order_id, lv.action) for lv in done.levels] == [
                (BID, 100, NEW), (ASK, 101, NEW),
            ]  # fmt: skip
            assert removed == wire.QuoteDone(0, 0, [])
            with pytest.raises(ApiError, match=r"order\.quote: 1001 invalid argument"):
                await c.quote(7, BTC_USDT, [(800_100, 1)], [(800_000, 1)])

    asyncio.run(main())
    assert len(engine.sent) == 3


# --------------------------------------------------------------------------- engines


@pytest.mark.parametrize("engine_class", [ReferenceEngine, Engine], ids=lambda c: c.__name__)
def test_a_ladder_is_placed_requoted_and_removed(tmp_path: Path, engine_class: EngineClass) -> None:
    engine = engine_class(CONFIG)
    fund(engine)  # users 1..4: 10 BTC and 100,000 USDT each
    endpoint = f"ipc://{tmp_path}/gw.sock"
    with running(endpoint, engine), Client(endpoint, timeout_s=10.0) as c:
        first = c.quote(1, BTC_USDT, [(799_900, 1_000), (799_800, 2_000)],
                        [(800_100, 3_000), (800_200, 4_000)], taker_rate=20, maker_rate=10,
                        source="mm")  # fmt: skip
        assert [lv.action for lv in first.levels] == [NEW] * 4
        assert first.cancelled == 0
        assert first.seq > 0
        ids = [lv.order_id for lv in first.levels]
        assert len(set(ids)) == 4
        order = c.pending_detail(BTC_USDT, ids[0])
        assert order is not None
        assert order.flags == OrderFlag.POST_ONLY | OrderFlag.QUOTE
        assert (order.maker_rate, order.source, order.left) == (10, "mm", 1_000)
        (btc, usdt) = c.balance_query(1, BTC, USDT)
        assert btc.freeze == (3_000 + 4_000) * 10**4  # lots of 10**-6 BTC, BTC prec 10
        assert usdt.freeze == 799_900 * 1_000 + 799_800 * 2_000  # ticks x lots: 10**-8 USDT

        again = c.quote(1, BTC_USDT, [(799_900, 1_000), (799_800, 1_500)],
                        [(800_100, 5_000), (800_300, 1_000)])  # fmt: skip
        assert [lv.action for lv in again.levels] == [KEPT, SHRUNK, GROWN, NEW]
        assert [lv.order_id for lv in again.levels[:3]] == ids[:3]  # same orders
        assert again.levels[3].order_id not in ids
        assert again.cancelled == 1  # the ask at 800_200
        assert c.pending_detail(BTC_USDT, ids[3]) is None
        (btc, usdt) = c.balance_query(1, BTC, USDT)
        assert btc.freeze == (5_000 + 1_000) * 10**4
        assert usdt.freeze == 799_900 * 1_000 + 799_800 * 1_500

        same = c.quote(1, BTC_USDT, [(799_900, 1_000), (799_800, 1_500)],
                       [(800_100, 5_000), (800_300, 1_000)])  # fmt: skip
        assert (same.seq, same.cancelled) == (0, 0)
        assert [lv.action for lv in same.levels] == [KEPT] * 4

        with pytest.raises(ApiError) as info:  # crossing: refused, nothing changes
            c.quote(1, BTC_USDT, [(800_200, 1_000)], [(800_100, 1_000)])
        assert info.value.code == Result.INVALID_ARGUMENT
        assert c.balance_query(1, BTC, USDT) == [btc, usdt]

        removed = c.cancel_quote(1, BTC_USDT)
        assert (removed.cancelled, removed.levels) == (4, [])
        assert c.pending(1, BTC_USDT).total == 0
        assert [b.freeze for b in c.balance_query(1, BTC, USDT)] == [0, 0]


def test_the_protocol_page_quote_example_runs(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "protocol.md").read_text()
    found = re.search(r"## Mass quotes.*?```python\n(.*?)```", text, re.S)
    assert found is not None
    endpoint = f"ipc://{tmp_path}/gw.sock"
    code = found.group(1).replace('"tcp://127.0.0.1:7316"', repr(endpoint))
    out = io.StringIO()
    with running(endpoint, ReferenceEngine(CONFIG)), contextlib.redirect_stdout(out):
        exec(compile(code, "docs/protocol.md", "exec"), {})  # noqa: S102 - our own docs
    assert out.getvalue().splitlines() == ["['NEW', 'NEW', 'NEW'] 0", "1 2"]
