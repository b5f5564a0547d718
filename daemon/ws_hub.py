"""The subscriptions of one WebSocket worker, fed by the feed's ZeroMQ publisher
(docs/websocket.md, "Subscriptions").

A worker holds one SUB socket on ``[feed] pub`` and subscribes to exactly the topics
its connections need: a topic is subscribed when the first connection wants one of
its keys and unsubscribed when the last one leaves (``Hub.subscribe``, ``Hub.clear``,
``Hub.drop``). Each kind of subscription belongs to a ``Channel`` (ws_channels,
ws_depth) that keeps what it needs of the topic (a depth book, recent deals, the last
ticker) and turns each message into ViaBTC's ``*.update`` notifications, each encoded
once and pushed to every connection subscribed. A topic's messages carry the feed's
``epoch`` and a ``seq`` per topic: a gap (messages dropped for this worker) or a new
epoch (the feed restarted) is reported to the channel, which resynchronises from the
methods (``ViabtcMethods``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import zmq
import zmq.asyncio

from daemon.gateway_links import BackendError
from daemon.viabtc_methods import Answer, ViabtcMethods
from daemon.ws_session import Key, Session

logger = logging.getLogger("matchd.ws")

#: Messages the SUB socket may hold before the feed drops more for this worker.
SUB_HWM: Final = 100_000
#: How soon the SUB socket tries again to reach a feed that is not there (ZeroMQ's
#: default is 100 ms: subscriptions made meanwhile would miss more).
RECONNECT_MS: Final = 10

_decode = msgspec.json.Decoder()


class Channel:
    """The subscriptions of some kinds over the feed's topics (see the module
    docstring). Subclasses say which topic a key needs and what to push."""

    kinds: tuple[str, ...] = ()

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def topic(self, kind: str, key: Key) -> bytes:
        """The feed topic ``key`` of ``kind`` needs."""
        raise NotImplementedError

    def started(self, kind: str, key: Key) -> None:
        """The first connection of this worker subscribed to ``key``."""

    def stopped(self, kind: str, key: Key) -> None:
        """The last connection left ``key``."""

    def joined(self, kind: str, key: Key, session: Session) -> None:
        """``session`` subscribed to ``key`` (push what it gets at once)."""

    def message(self, topic: bytes, body: dict[str, Any], gap: bool) -> None:
        """A message of ``topic``; ``gap``: messages before it were lost."""
        raise NotImplementedError


@dataclass
class HubStats:
    """Counters of a worker's subscriptions."""

    messages: int = 0  #: feed messages received
    gaps: int = 0  #: topic sequence gaps (messages the feed dropped for us) and restarts
    malformed: int = 0
    pushed: int = 0  #: notifications queued to connections
    failed_queries: int = 0  #: resynchronisations a backend could not answer


class Hub:
    """The worker's subscriptions (see the module docstring).

    Parameters
    ----------
    methods
        The ViaBTC methods (initial pushes and resynchronisation).
    pub
        The feed's publisher endpoint; None: market data is not configured.
    context
        The ZeroMQ context (the process's by default).
    """

    def __init__(
        self,
        methods: ViabtcMethods,
        pub: str | None,
        context: zmq.asyncio.Context | None = None,
    ) -> None:
        self.methods = methods
        self.pub = pub
        self.stats = HubStats()
        self._channels: dict[str, Channel] = {}
        self._members: dict[tuple[str, Key], set[Session]] = {}
        self._refs: dict[bytes, int] = {}
        self._routes: dict[bytes, Channel] = {}
        self._seqs: dict[bytes, tuple[int, int]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._sub: zmq.asyncio.Socket | None = None
        if pub is not None:
            ctx = context or zmq.asyncio.Context.instance()
            self._sub = ctx.socket(zmq.SUB)
            self._sub.setsockopt(zmq.RCVHWM, SUB_HWM)
            self._sub.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)  # a restarted feed: soon
            self._sub.setsockopt(zmq.LINGER, 0)
            self._sub.connect(pub)

    @property
    def available(self) -> bool:
        """False when there is no feed to subscribe to."""
        return self._sub is not None

    def add(self, channel: Channel) -> None:
        """Serve ``channel.kinds`` with ``channel``."""
        for kind in channel.kinds:
            self._channels[kind] = channel

    def start(self) -> None:
        """Start reading the feed."""
        if self._sub is not None and self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read())

    # ------------------------------------------------------------ membership

    def members(self, kind: str, key: Key) -> set[Session]:
        """The connections subscribed to ``key`` of ``kind`` (do not change it)."""
        return self._members.get((kind, key), _NOBODY)

    def subscribe(self, session: Session, kind: str, keys: frozenset[Key]) -> None:
        """Make ``keys`` the subscription of ``session`` to ``kind`` (replacing the
        earlier one); each key gets its initial push."""
        old = session.subs.get(kind, frozenset())
        for key in old - keys:
            self._leave(session, kind, key)
        if keys:
            session.subs[kind] = keys
        else:
            session.subs.pop(kind, None)
        channel = self._channels[kind]
        for key in keys:
            if key not in old:
                self._join(session, kind, key)
            channel.joined(kind, key, session)

    def clear(self, session: Session, kind: str) -> None:
        """End the subscription of ``session`` to ``kind``."""
        self.subscribe(session, kind, frozenset())

    def drop(self, session: Session) -> None:
        """End every subscription of ``session`` (it is gone)."""
        for kind in list(session.subs):
            self.clear(session, kind)

    def _join(self, session: Session, kind: str, key: Key) -> None:
        members = self._members.setdefault((kind, key), set())
        members.add(session)
        if len(members) == 1:
            channel = self._channels[kind]
            self._acquire(channel.topic(kind, key), channel)
            channel.started(kind, key)

    def _leave(self, session: Session, kind: str, key: Key) -> None:
        members = self._members.get((kind, key))
        if members is None:
            return
        members.discard(session)
        if not members:
            del self._members[(kind, key)]
            channel = self._channels[kind]
            channel.stopped(kind, key)
            self._release(channel.topic(kind, key))

    def _acquire(self, topic: bytes, channel: Channel) -> None:
        refs = self._refs.get(topic, 0)
        self._refs[topic] = refs + 1
        if refs == 0 and self._sub is not None:
            self._routes[topic] = channel
            self._sub.setsockopt(zmq.SUBSCRIBE, topic)

    def _release(self, topic: bytes) -> None:
        refs = self._refs.get(topic, 0) - 1
        if refs > 0:
            self._refs[topic] = refs
            return
        self._refs.pop(topic, None)
        self._routes.pop(topic, None)
        self._seqs.pop(topic, None)
        if self._sub is not None:
            self._sub.setsockopt(zmq.UNSUBSCRIBE, topic)

    @property
    def topics(self) -> dict[bytes, int]:
        """The topics subscribed to, with the keys that need each (a copy)."""
        return dict(self._refs)

    # ------------------------------------------------------------ pushes and queries

    def push(self, sessions: set[Session] | list[Session], text: str) -> None:
        """Queue ``text`` to each of ``sessions``."""
        for session in list(sessions):
            session.push(text)
        self.stats.pushed += len(sessions)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background (cancelled at close)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def query(self, method: str, params: list[Any]) -> Any | None:
        """The result of ``method(*params)``, or None (logged) if it failed."""
        try:
            answer: Answer = await self.methods.call(method, params)
        except BackendError as exc:
            self.stats.failed_queries += 1
            logger.warning("ws: %s %s failed: %s", method, params, exc)
            return None
        if answer.error is not None:
            self.stats.failed_queries += 1
            logger.warning("ws: %s %s answered %s", method, params, answer.error)
            return None
        return answer.result_value()

    # ------------------------------------------------------------ the feed

    async def _read(self) -> None:
        assert self._sub is not None  # noqa: S101 -- started only with a socket
        with contextlib.suppress(asyncio.CancelledError, zmq.ZMQError):
            while True:
                frames = await self._sub.recv_multipart()
                if len(frames) == 2:
                    self.dispatch(frames[0], frames[1])
                else:
                    self.stats.malformed += 1

    def dispatch(self, topic: bytes, payload: bytes) -> None:
        """Hand one feed message to its channel (a topic subscribed by prefix only, e.g.
        ``depth.X.1`` under ``depth.X``, is not ours and is skipped)."""
        channel = self._routes.get(topic)
        if channel is None:
            return
        self.stats.messages += 1
        try:
            body = _decode.decode(payload)
        except (msgspec.DecodeError, RecursionError):
            body = None
        if not isinstance(body, dict):
            self.stats.malformed += 1
            return
        epoch, seq = body.get("epoch"), body.get("seq")
        gap = False
        if isinstance(epoch, int) and isinstance(seq, int):
            last = self._seqs.get(topic)
            gap = last is not None and last != (epoch, seq - 1)
            self._seqs[topic] = (epoch, seq)
        if gap:
            self.stats.gaps += 1
        try:
            channel.message(topic, body, gap)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            self.stats.malformed += 1
            logger.warning("ws: a %s message the gateway cannot use: %s", topic, exc)

    async def aclose(self) -> None:
        """Stop reading and close the socket."""
        tasks = list(self._tasks)
        if self._reader is not None:
            tasks.append(self._reader)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._sub is not None:
            self._sub.close(linger=0)


_NOBODY: Final[set[Session]] = set()
