"""The feed's user topics (daemon/ws_user_feed.py) over a real journal and ZeroMQ:
``user.<id>.order`` carries every order event of the user, each order object equal
to ``ViabtcCodec.order_object(order_from_event(ev))``, ``user.<id>.asset`` the
user's balances after each batch (the last equal to the engine's); only the users
subscribed to are published, and nothing for a subscriber of everything."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from core.engine import Engine
from core.schema import EventKind, OrderType, Side
from core.viabtc_codec import ViabtcCodec, order_from_event
from daemon.feed import Feed
from daemon.ws_user_feed import UserSubscriptions, UserTopics, log_events
from persistence.history_batch import BatchDecoder
from persistence.journal import LOG_DIR
from persistence.log_reader import LogReader
from tests.unit.daemon.test_feed import drain, make_feed
from tests.unit.persistence.test_drainer import write_log

pytestmark = pytest.mark.integration


def all_events(tmp_path: Path) -> np.ndarray:
    """Every event of the log, balance.update's too, in log order."""
    with LogReader(tmp_path / "data" / LOG_DIR) as reader:
        batch = BatchDecoder().decode(list(reader.read(1)))
    assert batch.balances  # deposits and withdrawals: records of their own
    return log_events(batch.events, batch.balances)


def subscriber(feed: Feed, *prefixes: bytes) -> zmq.Socket[Any]:
    """A SUB socket of ``prefixes`` whose subscriptions the feed has seen."""
    sub = zmq.Context.instance().socket(zmq.SUB)
    for prefix in prefixes:
        sub.setsockopt(zmq.SUBSCRIBE, prefix)
    sub.connect(feed.config.pub)
    for _ in range(500):
        feed._subscriptions()
        if feed.users.any or not any(p.startswith(b"user.") for p in prefixes):
            break
        sub.poll(5)
    return sub


def received(sub: zmq.Socket[Any]) -> Iterator[tuple[bytes, dict[str, Any]]]:
    while sub.poll(200):
        topic, body = sub.recv_multipart()
        yield topic, json.loads(body)


@pytest.fixture
def logged(tmp_path: Path) -> Engine:
    return write_log(tmp_path / "data", 1500)


def test_subscribed_users_get_their_orders_and_balances(tmp_path: Path, logged: Engine) -> None:
    feed = make_feed(tmp_path, logged, redis_db=None, batch_records=40)
    sub = subscriber(feed, b"user.2.", b"user.4.order", b"user.5.asset")
    try:
        assert feed.users.orders.users.tolist() == [2, 4]
        assert feed.users.assets.users.tolist() == [2, 5]
        drain(feed)
        got: dict[bytes, list[dict[str, Any]]] = {}
        for topic, msg in received(sub):
            got.setdefault(topic, []).append(msg)
        assert sorted(got) == [b"user.2.asset", b"user.2.order", b"user.4.order",
                               b"user.5.asset"]  # fmt: skip
        for msgs in got.values():  # one sequence per topic, no gap
            assert [m["seq"] for m in msgs] == list(range(1, len(msgs) + 1))
            assert {m["epoch"] for m in msgs} == {feed.epoch_ns}
        codec = ViabtcCodec(logged.config)
        events = all_events(tmp_path)
        for user in (2, 4):
            mine = events[(events["kind"] <= EventKind.ORDER_FINISH) & (events["user"] == user)]
            want = [
                {"user": user, "market": logged.config.markets[int(ev["market"])].name,
                 "event": int(ev["kind"]), "log_seq": int(ev["seq"]),
                 "order": codec.order_object(order_from_event(ev))}
                for ev in mine
            ]  # fmt: skip
            msgs = got[b"user.%d.order" % user]
            assert len(msgs) == len(want) > 20
            for msg, expected in zip(msgs, want, strict=True):
                assert {k: msg[k] for k in expected} == expected
        for user in (2, 5):
            msgs = got[b"user.%d.asset" % user]
            assert len(msgs) > 5
            final: dict[str, dict[str, str]] = {}
            for msg in msgs:
                assert msg["user"] == user
                final.update(msg["assets"])
            touched = events[(events["kind"] == EventKind.BALANCE) & (events["user"] == user)]
            names = {logged.config.assets[a].name for a in touched["asset"].tolist()}
            assert set(final) == names
            for asset in logged.config.assets:
                if asset.name in final:
                    assert final[asset.name] == codec.balance(
                        asset, *logged.balance(user, asset.index)
                    )
        assert feed.dropped == 0
    finally:
        sub.close(0)
        feed.close()


def test_a_subscriber_of_everything_gets_no_user_topics(tmp_path: Path, logged: Engine) -> None:
    feed = make_feed(tmp_path, logged, redis_db=None)
    sub = subscriber(feed, b"")
    try:
        drain(feed)
        topics = {topic for topic, _ in received(sub)}
        assert any(t.startswith(b"deals.") for t in topics)
        assert not any(t.startswith(b"user.") for t in topics)
        assert not feed.users.any
    finally:
        sub.close(0)
        feed.close()


def test_user_dot_is_every_user_and_leaving_stops_it(tmp_path: Path, logged: Engine) -> None:
    feed = make_feed(tmp_path, logged, redis_db=None)
    sub = subscriber(feed, b"user.")
    try:
        assert feed.users.orders.every
        assert feed.users.assets.every
        drain(feed)
        users = {msg["user"] for topic, msg in received(sub) if topic.endswith(b".order")}
        assert users == {1, 2, 3, 4, 5}
        sub.setsockopt(zmq.UNSUBSCRIBE, b"user.")
        for _ in range(500):
            feed._subscriptions()
            if not feed.users.any:
                break
            sub.poll(5)
        assert not feed.users.any
    finally:
        sub.close(0)
        feed.close()


@pytest.mark.parametrize(
    ("prefixes", "orders", "assets", "every"),
    [
        ([b"user.7.order"], [7], [], False),
        ([b"user.7.asset", b"user.7.as"], [], [7], False),
        ([b"user.7.", b"user.8.o"], [7, 8], [7], False),
        ([b"user.12"], [], [], True),  # users 12, 120, 1234...: conservatively all
        ([b"user."], [], [], True),
        ([b"", b"deals.", b"user", b"usr.1."], [], [], False),  # none names user topics
        ([b"user.x.order", b"user..order", b"user.7.orders"], [], [], False),
    ],
)
def test_which_prefixes_ask_for_which_users(
    prefixes: list[bytes], orders: list[int], assets: list[int], every: bool
) -> None:
    subs = UserSubscriptions()
    for prefix in prefixes:
        subs.update(b"\x01" + prefix)
    assert subs.orders.users.tolist() == orders
    assert subs.assets.users.tolist() == assets
    assert subs.orders.every == subs.assets.every == every
    for prefix in prefixes:
        subs.update(b"\x00" + prefix)
    assert not subs.any
    subs.update(b"\x02user.1.")  # not a subscription message
    subs.update(b"")
    assert not subs.any


def test_order_rows_equal_the_codec_for_every_event(tmp_path: Path, logged: Engine) -> None:
    """The vectorised order objects equal the codec's, field for field, for every
    order event of the log (market bids, fees on both sides, sources)."""
    events = all_events(tmp_path)
    orders = events[events["kind"] <= EventKind.ORDER_FINISH]
    codec = ViabtcCodec(logged.config)
    rows = UserTopics(logged.config).order_rows(orders)
    assert len(rows) == orders.shape[0] > 500
    market_bids = (orders["otype"] == OrderType.MARKET) & (orders["side"] == Side.BID)
    assert market_bids.sum() > 10  # their amounts are money
    assert (orders["source_len"] > 0).sum() > 10
    for row, ev in zip(rows, orders, strict=True):
        assert json.loads(row) == codec.order_object(order_from_event(ev))


def test_every_record_that_moves_a_balance_sends_one(tmp_path: Path, logged: Engine) -> None:
    """One record a batch: each record with a balance event of the user (an order, a
    trade, a deposit or withdrawal) is one message, with its sequence."""
    feed = make_feed(tmp_path, logged, redis_db=None, batch_records=1)
    sub = subscriber(feed, b"user.2.asset")
    try:
        drain(feed)
        seqs = [msg["log_seq"] for _, msg in received(sub)]
        events = all_events(tmp_path)
        mine = events[(events["kind"] == EventKind.BALANCE) & (events["user"] == 2)]
        assert seqs == sorted(set(mine["seq"].tolist()))
        with LogReader(tmp_path / "data" / LOG_DIR) as reader:
            updates = {b.seq for b in BatchDecoder().decode(list(reader.read(1))).balances}
        assert set(seqs) & updates  # balance.update records count too
    finally:
        sub.close(0)
        feed.close()
