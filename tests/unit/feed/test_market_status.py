"""The feed's consumers of the market operations' events, over a log framed by hand
(``tests.unit.persistence.market_ops_log``): ``MarketData`` keeps each market's
trading status from MARKET_STATUS events (and nothing else changes: no deal, no
kline); ``DepthBook`` takes CANCEL_MARKET's finishes like any cancel and counts no
status event as bad; bad status events are counted and skipped; the status survives
the state's arrays, and a state written before it loads as open."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.schema import EVENT_DTYPE, EventKind, MarketStatus, UserStatus
from daemon.ws_user_feed import UserSubscriptions, UserTopics, log_events
from feed.depth import DepthBook
from feed.market_data import MarketData
from persistence.history_batch import BatchDecoder, DecodedBatch
from persistence.log_reader import LogReader
from tests.support.world import Limits, stream_config
from tests.unit.persistence import market_ops_log as ops

HALTED, DELISTED = int(MarketStatus.HALTED), int(MarketStatus.DELISTED)


@pytest.fixture(scope="module")
def batches(tmp_path_factory: pytest.TempPathFactory) -> list[DecodedBatch]:
    """The hand log, one record a batch."""
    log_dir = tmp_path_factory.mktemp("ops") / "log"
    ops.write_market_ops_log(log_dir)
    with LogReader(log_dir) as reader:
        records = list(reader.read(1))
    decoder = BatchDecoder()
    return [decoder.decode([r]) for r in records]


def test_market_data_keeps_the_status_and_nothing_else(batches: list[DecodedBatch]) -> None:
    md = MarketData(stream_config(Limits()))
    seen = []
    for batch in batches:
        md.add_events(batch.events)
        seen.append(md.trading_status(0)["status"])
    assert seen == ["open"] * 4 + ["halted"] * 3 + ["delisted"]
    assert md.trading_status(0) == {
        "status": "delisted", "log_seq": ops.SEQ_DELIST,
        "time": (ops.T0_NS + ops.SEQ_DELIST * 1_000_000) / 1e9,
    }  # fmt: skip
    assert md.trading_status(1) == {"status": "open", "log_seq": 0, "time": 0.0}
    assert md.take_status_touched() == {0}
    assert md.take_status_touched() == set()
    assert md.status_rejected == 0
    assert md.deal_count(0) == md.deal_count(1) == 0
    assert md.last("BTC_USDT") == "0"
    assert md.kline("BTC_USDT", 1_699_990_000, 1_700_010_000, 60, now=1_700_010_000) == []


def test_add_status_events_returns_those_taken_and_counts_the_rest() -> None:
    md = MarketData(stream_config(Limits()))
    events = np.concatenate([
        ops.market_status_event(1, HALTED, 0),
        ops.market_status_event(2, HALTED, 0),  # no market 2
        ops.market_status_event(-1, HALTED, 0),
        ops.market_status_event(0, 7, 0),  # no status 7
        ops.user_status_event(3, int(UserStatus.BLOCKED), 0),  # not a market's
        ops.event(EventKind.ORDER_PUT, market=0),
    ])  # fmt: skip
    events["seq"] = np.arange(1, events.shape[0] + 1)
    taken = md.add_status_events(events)
    assert taken["market"].tolist() == [1]
    assert md.status_rejected == 3
    assert [md.trading_status(m)["status"] for m in (0, 1)] == ["open", "halted"]
    assert md.trading_status(1)["log_seq"] == 1


def test_the_status_is_part_of_the_state_and_old_states_load_as_open(
    batches: list[DecodedBatch],
) -> None:
    config = stream_config(Limits())
    md = MarketData(config)
    for batch in batches:
        md.add_events(batch.events)
    arrays = md.to_arrays()
    again = MarketData(config)
    again.load_arrays(arrays)
    assert again.trading_status(0) == md.trading_status(0)
    for key, value in again.to_arrays().items():
        assert np.array_equal(value, arrays[key]), key
    old = {k: v for k, v in arrays.items() if not k.startswith("status")}
    older = MarketData(config)
    older.load_arrays(old)  # written before market status: every market open
    assert older.trading_status(0)["status"] == "open"
    with pytest.raises(ValueError, match="unknown statuses"):
        MarketData(config).load_arrays({**arrays, "status": np.array([5, 0], dtype=np.int64)})
    with pytest.raises(ValueError, match="state field status_seq"):
        MarketData(config).load_arrays({**arrays, "status_seq": np.zeros(3, dtype=np.int64)})


def test_depth_takes_cancel_market_like_any_cancel(batches: list[DecodedBatch]) -> None:
    book = DepthBook(2)
    for batch in batches:
        book.apply(batch.events)
        if batch.last_seq == ops.SEQ_BLOCK:  # both orders rest, the market halted
            assert book.depth(0, 10, 0) == (
                [(ops.ASK_PRICE, ops.ASK_LOTS)],
                [(ops.BID_PRICE, ops.BID_LOTS)],
            )
    assert book.depth(0, 10, 0) == ([], [])
    stats = book.statistics()
    assert (stats.orders, stats.order_events, stats.rejected) == (0, 4, 0)


def test_status_events_alone_are_no_order_events() -> None:
    book = DepthBook(2)
    both = np.concatenate([ops.market_status_event(0, HALTED, 0),
                           ops.user_status_event(3, 1, 0)])  # fmt: skip
    assert both.dtype == EVENT_DTYPE
    assert book.apply(both) == 0
    assert book.statistics().rejected == 0


def test_user_topics_carry_cancel_market_and_no_status_event(
    batches: list[DecodedBatch],
) -> None:
    """User 2 (whose status changes too) gets its order's put and finish and its
    balance after each; the status events make no message for anybody."""
    config = stream_config(Limits())
    topics = UserTopics(config)
    wanted = UserSubscriptions()
    wanted.update(b"\x01user.")  # everybody
    got = []
    for batch in batches:
        events = log_events(batch.events, batch.balances)
        got += [(m.topic, m.body.get("event")) for m in
                topics.messages(events, batch.last_seq, wanted)]  # fmt: skip
    assert got == [
        (b"user.1.asset", None), (b"user.2.asset", None),  # deposits
        (b"user.1.order", 1), (b"user.1.asset", None),
        (b"user.2.order", 1), (b"user.2.asset", None),
        (b"user.1.order", 3), (b"user.2.order", 3),  # CANCEL_MARKET, one record
        (b"user.1.asset", None), (b"user.2.asset", None),
    ]  # fmt: skip
    status_only = np.concatenate([b.events for b in batches if b.last_seq in (5, 6, 8)])
    assert topics.messages(status_only, 8, wanted) == []


def test_feed_applies_status_events_from_a_mixed_batch(tmp_path: Path) -> None:
    """The events of several records at once, as the feed reads them."""
    log_dir = tmp_path / "log"
    ops.write_market_ops_log(log_dir)
    with LogReader(log_dir) as reader:
        batch = BatchDecoder().decode(list(reader.read(1)))
    md = MarketData(stream_config(Limits()))
    taken = md.add_status_events(batch.events)
    assert taken["seq"].tolist() == [ops.SEQ_HALT, ops.SEQ_DELIST]
    assert taken["reason"].tolist() == [HALTED, DELISTED]
    assert md.trading_status(0)["status"] == "delisted"


def test_the_limit_events_are_ignored_by_every_consumer(tmp_path: Path) -> None:
    """MARKET_LIMIT and USER_LIMIT events (``write_limits_log``) change no status,
    depth or deal, count as nothing bad, and make no user message."""
    log_dir = tmp_path / "limits"
    ops.write_limits_log(log_dir)
    with LogReader(log_dir) as reader:
        records = list(reader.read(1))
    decoder = BatchDecoder()
    batches = [decoder.decode([r]) for r in records]
    limits = np.concatenate([b.events for b in batches[1:]])
    assert sorted(set(limits["kind"].tolist())) == [EventKind.MARKET_LIMIT, EventKind.USER_LIMIT]
    config = stream_config(Limits())
    md = MarketData(config)
    for batch in batches:
        md.add_events(batch.events)
    assert md.add_status_events(limits).shape[0] == 0
    assert (md.status_rejected, md.take_status_touched()) == (0, set())
    assert [md.trading_status(m)["status"] for m in (0, 1)] == ["open", "open"]
    assert md.deal_count(0) == 0
    book = DepthBook(2)
    assert book.apply(limits) == 0
    stats = book.statistics()
    assert (stats.orders, stats.order_events, stats.rejected, stats.malformed) == (0, 0, 0, 0)
    topics = UserTopics(config)
    wanted = UserSubscriptions()
    wanted.update(b"\x01user.")  # everybody
    got = []
    for batch in batches:
        events = log_events(batch.events, batch.balances)
        got += [m.topic for m in topics.messages(events, batch.last_seq, wanted)]
    assert got == [b"user.1.asset"]  # the deposit only
