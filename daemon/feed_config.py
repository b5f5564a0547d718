"""The feed's settings: the ``[feed]`` and ``[redis]`` tables of the config
(docs/feed.md, "Settings").

Without ``[feed]`` there is no feed process: market data is not published and the
market.* methods are not answered. Without ``[redis]`` the feed publishes over
ZeroMQ only. Every mistake is a ``ConfigError`` naming the table and the key; the
Redis password is a ``Secret`` (never shown), or read from ``$password_env``.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from typing import Final, NoReturn

import msgspec

from core.errors import ConfigError
from persistence.history_config import Secret, optional_table, read_password_env

MAX_INTERVAL_S: Final = 3600.0
MAX_DEPTH_LEVELS: Final = 10_000
MAX_DEPTH_MERGES: Final = 16
_DECIMAL_RE: Final = re.compile(r"(0|[1-9][0-9]{0,17})(\.[0-9]{1,18})?")
_ENDPOINT_RE: Final = re.compile(r"(tcp|ipc|inproc)://\S{1,200}")
_ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class FeedConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[feed]``: where the feed publishes and answers, and how often.

    Parameters
    ----------
    pub
        ZeroMQ endpoint of the market-data publisher (XPUB).
    rpc
        ZeroMQ endpoint (ROUTER) that answers the market.* methods.
    utc_offset_s
        Seconds east of UTC where days, weeks and months start (a multiple of 60).
    publish_interval_s
        How often Redis is written.
    kline_interval_s
        How often klines and tickers of the markets that traded are published
        (each costs a query per published interval and market).
    state_interval_s
        How often the feed's state is written to disk (``DATA_DIR/feed/``).
    send_hwm
        Messages queued per slow subscriber; beyond, messages to it are dropped and
        counted.
    depth_levels
        Levels of each side published (ZeroMQ ``depth.<market>``, Redis).
    depth_merge
        Merge intervals of the depth published (ViaBTC's ``depth_merge``): decimal
        strings, "0" (no merging) first; each other one is a topic of its own.
    depth_interval_s
        How often the depth is published (the levels that changed).
    depth_snapshot_s
        How often the depth is published in full (diffs in between).
    """

    pub: str = "tcp://127.0.0.1:7416"
    rpc: str = "tcp://127.0.0.1:7417"
    utc_offset_s: int = 0
    publish_interval_s: float = 0.02
    kline_interval_s: float = 0.25
    state_interval_s: float = 5.0
    send_hwm: int = 10_000
    depth_levels: int = 100
    depth_merge: tuple[str, ...] = ("0",)
    depth_interval_s: float = 0.1
    depth_snapshot_s: float = 10.0

    def __post_init__(self) -> None:
        for key in ("pub", "rpc"):
            value = getattr(self, key)
            if not _ENDPOINT_RE.fullmatch(value):
                _fail("feed", f"{key} = {value!r} is not a ZeroMQ endpoint (tcp://HOST:PORT)")
        if self.utc_offset_s % 60 or abs(self.utc_offset_s) > 14 * 3600:
            _fail(
                "feed", f"utc_offset_s = {self.utc_offset_s} must be a multiple of 60 within ±14 h"
            )
        _seconds("feed", "publish_interval_s", self.publish_interval_s)
        _seconds("feed", "kline_interval_s", self.kline_interval_s)
        _seconds("feed", "state_interval_s", self.state_interval_s)
        if not 1 <= self.send_hwm <= 10_000_000:
            _fail("feed", f"send_hwm = {self.send_hwm} is outside 1..10000000")
        if not 1 <= self.depth_levels <= MAX_DEPTH_LEVELS:
            _fail("feed", f"depth_levels = {self.depth_levels} is outside 1..{MAX_DEPTH_LEVELS}")
        _check_merge(self.depth_merge)
        _seconds("feed", "depth_interval_s", self.depth_interval_s)
        _seconds("feed", "depth_snapshot_s", self.depth_snapshot_s)


class RedisConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[redis]``: the Redis server the feed writes market data into."""

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    password: Secret = Secret("")
    password_env: str | None = None
    timeout_s: float = 2.0

    def __post_init__(self) -> None:
        if isinstance(self.password, str):
            msgspec.structs.force_setattr(self, "password", Secret(self.password))
        if not 1 <= len(self.host) <= 255 or not self.host.isprintable():
            _fail("redis", f"host = {self.host!r} must be 1 to 255 printable characters")
        if not 1 <= self.port <= 65535:
            _fail("redis", f"port = {self.port} is outside 1..65535")
        if not 0 <= self.db <= 15:
            _fail("redis", f"db = {self.db} is outside 0..15")
        if self.password_env is not None and not _ENV_NAME_RE.fullmatch(self.password_env):
            _fail("redis", f"password_env = {self.password_env!r} is not a variable name")
        _seconds("redis", "timeout_s", self.timeout_s)

    def address(self) -> str:
        """``host:port/db``, for messages (never the password)."""
        return f"{self.host}:{self.port}/{self.db}"


def _fail(table: str, message: str) -> NoReturn:
    raise ConfigError(f"[{table}] {message}")


def _check_merge(intervals: tuple[str, ...]) -> None:
    if not intervals or intervals[0] != "0":
        _fail("feed", f'depth_merge = {list(intervals)} must start with "0" (no merging)')
    if len(intervals) > MAX_DEPTH_MERGES or len(set(intervals)) != len(intervals):
        _fail("feed", f"depth_merge holds at most {MAX_DEPTH_MERGES} different intervals")
    for text in intervals:
        if not _DECIMAL_RE.fullmatch(text):
            _fail("feed", f'depth_merge: {text!r} is not a plain decimal such as "0.01"')


def _seconds(table: str, key: str, value: float) -> None:
    if not (math.isfinite(value) and 0 < value <= MAX_INTERVAL_S):
        _fail(table, f"{key} = {value} must be more than 0 and at most {MAX_INTERVAL_S:g} s")


def load_feed_config(
    text: str, *, environ: Mapping[str, str] | None = None
) -> tuple[FeedConfig | None, RedisConfig | None]:
    """``([feed], [redis])`` of the TOML config ``text``; None for a missing table."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config is not valid TOML: {exc}") from exc
    feed = optional_table(raw, "feed", FeedConfig, _KINDS)
    redis = optional_table(raw, "redis", RedisConfig, _KINDS)
    if redis is not None:
        redis = read_password_env(redis, "[redis]", environ)
    return feed, redis


_KINDS: Final = {
    "pub": "a string",
    "rpc": "a string",
    "utc_offset_s": "an integer",
    "publish_interval_s": "a number of seconds",
    "kline_interval_s": "a number of seconds",
    "state_interval_s": "a number of seconds",
    "send_hwm": "an integer",
    "depth_levels": "an integer",
    "depth_merge": "a list of decimal strings",
    "depth_interval_s": "a number of seconds",
    "depth_snapshot_s": "a number of seconds",
    "host": "a string",
    "port": "an integer",
    "db": "an integer",
    "password": "a string",
    "password_env": "a string",
    "timeout_s": "a number of seconds",
}
