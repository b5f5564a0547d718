"""The feed's per-user topics, which the WebSocket gateway turns into ViaBTC's
``order.update`` and ``asset.update`` (docs/feed.md, "ZeroMQ topics").

* ``user.<id>.order``: one message per ``ORDER_PUT``, ``ORDER_UPDATE`` and
  ``ORDER_FINISH`` event of the user: ``{"user", "market", "event": 1|2|3, "order",
  "log_seq"}``, ``order`` being ViaBTC's order object (§4.2), equal to
  ``ViabtcCodec.order_object(order_from_event(ev))``;
* ``user.<id>.asset``: once per applied batch for each user whose balances changed
  (by orders, trades or balance.update):
  ``{"user", "assets": {"BTC": {"available", "freeze"}}, "log_seq"}``, the balances
  after the batch cut to ``prec_show`` (as ``ViabtcCodec.balance``).

CANCEL_MARKET's events are ordinary ``ORDER_FINISH`` and ``BALANCE`` events, so each
owner of a cancelled order gets its finish and its balance as after any cancel; the
``MARKET_STATUS``, ``USER_STATUS``, ``MARKET_LIMIT`` and ``USER_LIMIT`` events make no
message here.

They are built only for the users someone subscribed to: the feed's XPUB hands up
every new subscription prefix and every one no subscriber holds any longer
(``UserSubscriptions.update``). Only prefixes that start with ``user.`` count, so a
market-data subscriber of everything (the prefix ``""``) costs the feed nothing here;
``user.`` itself asks for every user. The batch is filtered and formatted with numpy
(``persistence.history_bulk``'s decimal kernel), so the cost is per message sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import numpy as np

from core.config import EngineConfig
from core.schema import EventKind, OrderType, Side
from persistence.history_bulk import decimals, integers, seconds
from persistence.history_rows import DecodedRecord

USER_PREFIX: Final = b"user."
ORDER_TOPIC: Final = b"order"
ASSET_TOPIC: Final = b"asset"

_json = msgspec.json.Encoder()


def order_topic(user: int) -> bytes:
    """The topic of ``user``'s order events."""
    return b"user.%d.order" % user


def asset_topic(user: int) -> bytes:
    """The topic of ``user``'s balance changes."""
    return b"user.%d.asset" % user


def log_events(events: np.ndarray, balance_records: Sequence[DecodedRecord]) -> np.ndarray:
    """Every event of a decoded batch in log order: its order records' ``events`` and
    the events of its balance.update records (``DecodedBatch.balances``)."""
    if not balance_records:
        return events
    every = np.concatenate([events, *(r.events for r in balance_records)])
    return every[np.argsort(every["seq"], kind="stable")]


@dataclass
class WantedUsers:
    """The users whose topics of one kind somebody wants: all, or ``users``."""

    every: bool = False
    users: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def any(self) -> bool:
        """True if some user's topic is wanted."""
        return self.every or self.users.shape[0] > 0

    def mask(self, users: np.ndarray) -> np.ndarray:
        """Which of ``users`` (int64) are wanted."""
        if self.every:
            return np.ones(users.shape[0], dtype=np.bool_)
        return np.isin(users, self.users)


class UserSubscriptions:
    """The users asked for, from the XPUB's subscription messages (see the module
    docstring): ``orders`` for ``user.<id>.order``, ``assets`` for ``user.<id>.asset``."""

    def __init__(self) -> None:
        self._prefixes: set[bytes] = set()
        self.orders = WantedUsers()
        self.assets = WantedUsers()

    @property
    def any(self) -> bool:
        """True if any user topic is wanted (else the feed builds none)."""
        return self.orders.any or self.assets.any

    def update(self, message: bytes) -> None:
        """Apply one message XPUB received: ``\\x01`` + prefix subscribes, ``\\x00`` +
        prefix unsubscribes (the last subscriber of it left); anything else is ignored."""
        if not message or message[0] not in (0, 1) or not message[1:].startswith(USER_PREFIX):
            return
        before = len(self._prefixes)
        if message[0] == 1:
            self._prefixes.add(message[1:])
        else:
            self._prefixes.discard(message[1:])
        if len(self._prefixes) != before:
            self._recompute()

    def _recompute(self) -> None:
        orders, assets = WantedUsers(), WantedUsers()
        order_ids: set[int] = set()
        asset_ids: set[int] = set()
        for prefix in self._prefixes:
            head, dot, tail = prefix[len(USER_PREFIX) :].partition(b".")
            if not head.isdigit() and head:
                continue  # no user id starts so: no topic matches
            if not dot:  # "user." or "user.12": users whose id starts with head
                orders.every = assets.every = True
                continue
            if not head:
                continue
            if ORDER_TOPIC.startswith(tail):
                order_ids.add(int(head))
            if ASSET_TOPIC.startswith(tail):
                asset_ids.add(int(head))
        orders.users = np.array(sorted(order_ids), dtype=np.int64)
        assets.users = np.array(sorted(asset_ids), dtype=np.int64)
        self.orders, self.assets = orders, assets


@dataclass(frozen=True, slots=True)
class UserMessage:
    """One message of a user topic: its topic, the JSON members (``body``) and the
    JSON text of a last member (``raw``, as the feed's ``_send`` takes it)."""

    topic: bytes
    body: dict[str, Any]
    raw: bytes = b""


class UserTopics:
    """Builds the messages of the user topics for batches of events of the markets and
    assets of ``config`` (see the module docstring)."""

    def __init__(self, config: EngineConfig) -> None:
        markets = config.markets
        self.names = [m.name for m in markets]
        self._name_json = [_json.encode(m.name) for m in markets]
        self._money_prec = np.array([m.money_prec for m in markets], dtype=np.int64)
        self._stock_prec = np.array([m.stock_prec for m in markets], dtype=np.int64)
        self._fee_prec = np.array([m.fee_prec for m in markets], dtype=np.int64)
        self._money_units = np.array([m.money.prec for m in markets], dtype=np.int64)
        self._stock_units = np.array([m.stock.prec for m in markets], dtype=np.int64)
        assets = config.assets
        self.asset_names = [a.name for a in assets]
        self._show = np.array([a.prec_show for a in assets], dtype=np.int64)
        self._cut = np.array([10 ** (a.prec - a.prec_show) for a in assets], dtype=np.int64)

    def messages(
        self, events: np.ndarray, log_seq: int, wanted: UserSubscriptions
    ) -> list[UserMessage]:
        """The messages of a batch's ``events`` (``EVENT_DTYPE``) for the users
        ``wanted``: the order events in log order, then the balances after the batch."""
        out: list[UserMessage] = []
        if not wanted.any:
            return out
        kind = events["kind"]
        if wanted.orders.any:
            orders = events[kind <= EventKind.ORDER_FINISH]
            orders = orders[wanted.orders.mask(orders["user"])]
            if orders.shape[0]:
                out += self._order_messages(orders)
        if wanted.assets.any:
            balances = events[kind == EventKind.BALANCE]
            balances = balances[wanted.assets.mask(balances["user"])]
            if balances.shape[0]:
                out += self._asset_messages(balances, log_seq)
        return out

    def _order_messages(self, orders: np.ndarray) -> list[UserMessage]:
        rows = self.order_rows(orders)
        return [
            UserMessage(
                order_topic(user),
                {"user": user, "market": self.names[m], "event": event, "log_seq": seq},
                b'"order":' + row,
            )
            for user, m, event, seq, row in zip(
                orders["user"].tolist(),
                orders["market"].tolist(),
                orders["kind"].tolist(),
                orders["seq"].tolist(),
                rows,
                strict=True,
            )
        ]

    def order_rows(self, orders: np.ndarray) -> list[bytes]:
        """ViaBTC's order objects (JSON) of ``ORDER_*`` events, made a batch at a time."""
        n = orders.shape[0]
        m = orders["market"].astype(np.int64)
        side = orders["side"]
        market_bid = (orders["otype"] == OrderType.MARKET) & (side == Side.BID)
        amount_places = np.where(market_bid, self._money_units[m], self._stock_prec[m])
        fee_places = np.where(side == Side.ASK, self._money_units[m], self._stock_units[m])
        fields = ("price", "amount", "taker_rate", "maker_rate", "left", "deal_stock",
                  "deal_money", "deal_fee")  # fmt: skip
        places = (self._money_prec[m], amount_places, self._fee_prec[m], self._fee_prec[m],
                  amount_places, self._stock_prec[m], self._money_units[m], fee_places)  # fmt: skip
        text = decimals(
            np.concatenate([orders[f].astype(np.int64) for f in fields]), np.concatenate(places)
        )
        cols = [text[i * n : (i + 1) * n] for i in range(len(fields))]
        sources = [
            _json.encode(bytes(src[:length]).decode(errors="replace"))
            for src, length in zip(orders["source"], orders["source_len"].tolist(), strict=True)
        ]
        names = [self._name_json[i] for i in m.tolist()]
        return [
            b'{"id":%s,"market":%s,"source":%s,"type":%d,"side":%d,"user":%s,"ctime":%s,'
            b'"mtime":%s,"price":"%s","amount":"%s","taker_fee":"%s","maker_fee":"%s",'
            b'"left":"%s","deal_stock":"%s","deal_money":"%s","deal_fee":"%s"}' % row
            for row in zip(
                integers(orders["order_id"]),
                names,
                sources,
                orders["otype"].tolist(),
                side.tolist(),
                integers(orders["user"]),
                seconds(orders["ctime_ns"]),
                seconds(orders["mtime_ns"]),
                *cols,
                strict=True,
            )
        ]

    def _asset_messages(self, balances: np.ndarray, log_seq: int) -> list[UserMessage]:
        """One message per user: each asset's balance after its last event here."""
        n_assets = len(self.asset_names)
        key = balances["user"].astype(np.int64) * n_assets + balances["asset"].astype(np.int64)
        _, first_from_end = np.unique(key[::-1], return_index=True)  # sorted by user, asset
        last = key.shape[0] - 1 - first_from_end
        chosen = balances[last]
        asset = chosen["asset"].astype(np.int64)
        places = np.concatenate([self._show[asset], self._show[asset]])
        units = np.concatenate([chosen["left"], chosen["deal_stock"]]) // np.concatenate(
            [self._cut[asset], self._cut[asset]]
        )
        text = decimals(units, places)
        k = chosen.shape[0]
        out: list[UserMessage] = []
        current = -1
        assets: dict[str, dict[str, str]] = {}
        for i, (user, a) in enumerate(zip(chosen["user"].tolist(), asset.tolist(), strict=True)):
            if user != current:
                assets = {}
                current = user
                out.append(
                    UserMessage(asset_topic(user), {"user": user, "assets": assets,
                                                    "log_seq": log_seq})
                )  # fmt: skip
            assets[self.asset_names[a]] = {
                "available": text[i].decode(),
                "freeze": text[k + i].decode(),
            }
        return out
