"""The parameters of the WebSocket methods (docs/websocket.md, "Methods"): the query
methods mapped onto ViaBTC's JSON-RPC methods, and the keys of each ``*.subscribe``.

Every check raises ``core.arguments.ArgumentError`` with a message naming the
parameter; the gateway answers it as code 1 ``invalid argument: <why>``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Final

from core.arguments import ArgumentError, int_arg, str_arg
from core.viabtc_codec import ViabtcCodec
from daemon.feed import PUBLISHED_INTERVALS
from daemon.gateway_config import WsConfig
from daemon.ws_session import Key

#: The WebSocket query methods: (ViaBTC method, params (None: any), needs auth).
#: Those that need auth get the session's user id put first.
QUERIES: Final[dict[str, tuple[str, int | None, bool]]] = {
    "kline.query": ("market.kline", 4, False),
    "depth.query": ("order.depth", 3, False),
    "price.query": ("market.last", 1, False),
    "state.query": ("market.status", 2, False),
    "today.query": ("market.status_today", 1, False),
    "deals.query": ("market.deals", 3, False),
    "order.query": ("order.pending", 3, True),
    "order.history": ("order.finished", 6, True),
    "asset.query": ("balance.query", None, True),
    "asset.history": ("balance.history", 6, True),
}
#: The kinds of subscription (``<kind>.subscribe``, ``<kind>.unsubscribe``).
KINDS: Final = ("kline", "depth", "price", "state", "today", "deals", "order", "asset")
#: The kinds that need an authenticated session.
USER_KINDS: Final = frozenset(("order", "asset"))
MAX_TOKEN_LENGTH: Final = 4096
MAX_SOURCE_BYTES: Final = 31
INT64_MAX: Final = 2**63 - 1


def check_arity(method: str, params: list[Any], count: int | None) -> None:
    """Refuse ``params`` unless there are ``count`` of them (None: any number)."""
    if count is not None and len(params) != count:
        raise ArgumentError(f"{method} takes {count} params, not {len(params)}")


class SubscriptionKeys:
    """The keys ``<kind>.subscribe(params)`` asks for, checked against the markets
    and assets of the catalog (``codec.config``: the config's and those added at run
    time) and the ``[ws]`` settings."""

    def __init__(self, codec: ViabtcCodec, config: WsConfig) -> None:
        self.codec = codec
        self.config = config
        self._merges = [(Decimal(text), text) for text in config.depth_merge]

    def keys(self, kind: str, params: list[Any], user: int) -> frozenset[Key]:
        """The keys of ``kind`` for ``params`` (``user``: the session's)."""
        if kind == "kline":
            check_arity("kline.subscribe", params, 2)
            market = self.codec.market(params[0]).name
            interval = int_arg(params[1], "interval", 1, 2**31)
            if interval not in PUBLISHED_INTERVALS:
                raise ArgumentError(
                    f"interval must be one of {', '.join(map(str, PUBLISHED_INTERVALS))}"
                )
            return frozenset(((market, interval),))
        if kind == "depth":
            check_arity("depth.subscribe", params, 3)
            market = self.codec.market(params[0]).name
            limit = int_arg(params[1], "limit", 1, 101)
            if limit not in self.config.depth_limit:
                raise ArgumentError(f"limit must be one of {list(self.config.depth_limit)}")
            return frozenset(((market, self._merge(params[2]), limit),))
        if kind == "asset":
            names = [a.name for a in self.codec.assets(tuple(params))]
            return frozenset((user, n) for n in names)
        markets = [self.codec.market(m).name for m in params]
        if kind == "order":
            return frozenset((user, m) for m in markets)
        return frozenset(markets)

    def _merge(self, value: object) -> str:
        """The ``depth_merge`` text equal to the interval ``value``."""
        text = str_arg(value, "interval")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ArgumentError("interval must be a decimal string") from None
        for merge, merge_text in self._merges:
            if number == merge:
                return merge_text
        raise ArgumentError(f"interval must be one of {list(self.config.depth_merge)}")


def auth_params(params: list[Any]) -> tuple[str, str]:
    """``server.auth``'s ``(token, source)``."""
    check_arity("server.auth", params, 2)
    token = _header_value(params[0], "token")
    source = str_arg(params[1], "source")
    if len(source.encode()) > MAX_SOURCE_BYTES:
        raise ArgumentError(f"source must be at most {MAX_SOURCE_BYTES} bytes")
    return token, source


def sign_params(params: list[Any]) -> tuple[str, str, int]:
    """``server.sign``'s ``(access_id, authorisation, tonce)``."""
    check_arity("server.sign", params, 3)
    access_id = str_arg(params[0], "access_id")
    if not access_id or len(access_id) > MAX_TOKEN_LENGTH:
        raise ArgumentError(f"access_id must be 1 to {MAX_TOKEN_LENGTH} characters")
    authorisation = _header_value(params[1], "authorisation")
    tonce = int_arg(params[2], "tonce", -INT64_MAX, INT64_MAX)
    if tonce == 0:
        raise ArgumentError("tonce must not be 0")
    return access_id, authorisation, tonce


def _header_value(value: object, what: str) -> str:
    """A string that can travel as an HTTP header value."""
    text = str_arg(value, what)
    if not 1 <= len(text) <= MAX_TOKEN_LENGTH or not text.isprintable():
        raise ArgumentError(f"{what} must be 1 to {MAX_TOKEN_LENGTH} printable characters")
    return text
