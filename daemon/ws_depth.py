"""``depth.subscribe``: ViaBTC's ``depth.update [clean, depth, market]`` from the
feed's ``depth.<market>`` and ``depth.<market>.<interval>`` (docs/websocket.md).

The worker keeps one book per ``(market, interval)`` that anyone subscribed to: the
feed's full views replace it, its diffs (the levels that changed, amount ``"0"``:
gone) update it. A book that is new, or that lost messages (a sequence gap), is
seeded from the engine (``order.depth`` with the most levels) at once, so that a new
subscriber need not wait for the feed's next full view; the feed's diffs that follow
carry each level's whole amount, so the book converges on the feed's, and its next
full view replaces it.

The subscribers of one ``(market, interval, limit)`` are a group: the group's top
``limit`` levels are compared with what it was last sent, and one notification is
encoded for all its members: ``clean=true`` with the whole view to a new member and,
when something changed, to everyone at most every ``CLEAN_INTERVAL_S``; else
``clean=false`` with the changed levels of the sides that changed. Since a diff is
made against what the group was sent (not against the feed's last message), a lost
feed message or a reseed never leaves a client's book wrong.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, cast

from core.viabtc_codec import MAX_QUERY_LIMIT
from daemon.ws_hub import Channel, Hub
from daemon.ws_session import Key, Session, notification

#: A changed view is sent whole (``clean=true``) at most this often (ViaBTC's).
CLEAN_INTERVAL_S: Final = 60.0

_View = dict[str, str]  # price -> amount, best first


def _levels(view: _View) -> list[list[str]]:
    return [[p, a] for p, a in view.items()]


def _diff(old: _View, new: _View, descending: bool) -> list[list[str]]:
    """The levels of ``new`` that differ from ``old`` and those gone (``"0"``), best
    first."""
    changed = [[p, a] for p, a in new.items() if old.get(p) != a]
    changed += [[p, "0"] for p in old if p not in new]
    changed.sort(key=lambda level: Decimal(level[0]), reverse=descending)
    return changed


@dataclass
class _Group:
    sent: tuple[_View, _View] | None = None
    cleaned: float = 0.0
    waiting: set[Session] = field(default_factory=set)  #: joined before the book was ready


@dataclass
class _Book:
    market: str
    interval: str
    asks: dict[str, str] = field(default_factory=dict)
    bids: dict[str, str] = field(default_factory=dict)
    ready: bool = False
    seeding: bool = False
    groups: dict[int, _Group] = field(default_factory=dict)

    def replace(self, asks: list[list[str]], bids: list[list[str]]) -> None:
        self.asks = {level[0]: level[1] for level in asks}
        self.bids = {level[0]: level[1] for level in bids}

    def apply(self, asks: list[list[str]], bids: list[list[str]]) -> None:
        for side, levels in ((self.asks, asks), (self.bids, bids)):
            for price, amount in levels:
                if amount.strip("0.") == "":
                    side.pop(price, None)
                else:
                    side[price] = amount

    def views(self, limit: int) -> tuple[_View, _View]:
        asks = sorted(self.asks, key=Decimal)[:limit]
        bids = sorted(self.bids, key=Decimal, reverse=True)[:limit]
        return {p: self.asks[p] for p in asks}, {p: self.bids[p] for p in bids}


def _depth_key(key: Key) -> tuple[str, str, int]:
    return cast(tuple[str, str, int], key)


class DepthChannel(Channel):
    """``depth`` subscriptions, keyed ``(market, interval, limit)`` (see the module
    docstring); ``interval`` is the text of the feed's topic (``"0"``: unmerged)."""

    kinds = ("depth",)

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self._books: dict[tuple[str, str], _Book] = {}

    @staticmethod
    def book_topic(market: str, interval: str) -> bytes:
        """The feed's topic of the view of ``market`` merged to ``interval``."""
        name = f"depth.{market}" if interval == "0" else f"depth.{market}.{interval}"
        return name.encode()

    def topic(self, kind: str, key: Key) -> bytes:
        market, interval, _ = _depth_key(key)
        return self.book_topic(market, interval)

    def started(self, kind: str, key: Key) -> None:
        market, interval, limit = _depth_key(key)
        book = self._books.get((market, interval))
        if book is None:
            book = self._books[(market, interval)] = _Book(market, interval)
            self._seed(book)
        book.groups[limit] = _Group()

    def stopped(self, kind: str, key: Key) -> None:
        market, interval, limit = _depth_key(key)
        book = self._books.get((market, interval))
        if book is not None:
            book.groups.pop(limit, None)
            if not book.groups:
                del self._books[(market, interval)]

    def joined(self, kind: str, key: Key, session: Session) -> None:
        market, interval, limit = _depth_key(key)
        book = self._books[(market, interval)]
        group = book.groups[limit]
        if not book.ready:
            group.waiting.add(session)
            return
        if group.sent is None:
            group.sent, group.cleaned = book.views(limit), time.monotonic()
        session.push(self._clean(book, group.sent))

    def message(self, topic: bytes, body: dict[str, Any], gap: bool) -> None:
        book = self._books.get((body["market"], body["interval"]))
        if book is None:
            return
        if body["full"]:
            book.replace(body["asks"], body["bids"])
            book.ready = True
        elif gap or not book.ready:
            if gap:
                book.ready = False
            self._seed(book)
            book.apply(body["asks"], body["bids"])
            return
        else:
            book.apply(body["asks"], body["bids"])
        self._refresh(book)

    def _seed(self, book: _Book) -> None:
        if not book.seeding:
            book.seeding = True
            self.hub.spawn(self._seed_from_engine(book))

    async def _seed_from_engine(self, book: _Book) -> None:
        try:
            result = await self.hub.query(
                "order.depth", [book.market, MAX_QUERY_LIMIT, book.interval]
            )
        finally:
            book.seeding = False
        if self._books.get((book.market, book.interval)) is not book:
            return
        if isinstance(result, dict):
            book.replace(result["asks"], result["bids"])
            book.ready = True
            self._refresh(book)

    def _refresh(self, book: _Book) -> None:
        """Send each group what changed (see the module docstring)."""
        now = time.monotonic()
        for limit, group in book.groups.items():
            members = self.hub.members("depth", (book.market, book.interval, limit))
            view = book.views(limit)
            waiting, group.waiting = group.waiting & members, set()
            changed = view != group.sent
            if group.sent is None or (changed and now - group.cleaned >= CLEAN_INTERVAL_S):
                group.sent, group.cleaned = view, now
                self.hub.push(members, self._clean(book, view))
                continue
            if changed:
                assert group.sent is not None  # noqa: S101 -- checked above
                diff: dict[str, list[list[str]]] = {}
                asks = _diff(group.sent[0], view[0], descending=False)
                bids = _diff(group.sent[1], view[1], descending=True)
                if asks:
                    diff["asks"] = asks
                if bids:
                    diff["bids"] = bids
                group.sent = view
                text = notification("depth.update", [False, diff, book.market])
                self.hub.push(members - waiting, text)
            if waiting:
                self.hub.push(waiting, self._clean(book, view))

    @staticmethod
    def _clean(book: _Book, view: tuple[_View, _View]) -> str:
        depth = {"asks": _levels(view[0]), "bids": _levels(view[1])}
        return notification("depth.update", [True, depth, book.market])
