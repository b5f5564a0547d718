"""The ``[replication]`` table: hot standbys (docs/operations.md).

Without the table an engine runs alone, as before. With it, the engine serves its
log to standbys on ``listen`` when it is the primary, and follows a primary when it
is started as a standby (``matchd run --role standby --primary ENDPOINT``).
"""

from __future__ import annotations

import math
import re
import tomllib
from typing import Final, Literal, NoReturn

import msgspec

from core.errors import ConfigError
from persistence.history_config import optional_table

_ENDPOINT_RE: Final = re.compile(r"(tcp|ipc|inproc)://\S{1,200}")
_NODE_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_STANDBYS: Final = 16


class ReplicationConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[replication]``.

    Parameters
    ----------
    listen
        ZeroMQ endpoint (ROUTER) on which the primary serves its log to standbys.
    node
        This engine's name in the cluster (its standbys and logs name it); empty:
        the host name.
    mode
        ``async``: a command is acknowledged once durable on the primary (a failover
        may lose what the standbys had not received). ``sync``: once durable on the
        primary and on ``sync_replicas`` standbys (a failover to the most advanced
        standby loses no acknowledged command).
    sync_replicas
        Standbys that must hold a record durably before it is acknowledged (sync).
    lease_s
        A standby not heard from for this long does not count for ``sync``; with
        fewer than ``sync_replicas`` counted the primary refuses writes
        (TOO_FEW_REPLICAS) instead of holding them for ever.
    heartbeat_s
        How often each side speaks when there is nothing else to say.
    failover_after_s
        A standby promotes itself after hearing nothing from its primary for this
        long; 0: only ``matchctl promote`` promotes.
    window_records
        Records sent to a standby and not yet acknowledged, at most.
    max_snapshot_bytes
        The largest snapshot a standby accepts from its primary.
    check_every_records
        The primary writes a snapshot every this many records, and each standby one
        at the same sequence, to compare state hashes (0: only the snapshots asked
        for, ``matchctl snapshot``).
    """

    listen: str = "tcp://127.0.0.1:7516"
    node: str = ""
    mode: Literal["async", "sync"] = "async"
    sync_replicas: int = 1
    lease_s: float = 1.0
    heartbeat_s: float = 0.1
    failover_after_s: float = 0.0
    window_records: int = 65_536
    max_snapshot_bytes: int = 64 << 30
    check_every_records: int = 1_000_000

    def __post_init__(self) -> None:
        if not _ENDPOINT_RE.fullmatch(self.listen):
            _fail(f"listen = {self.listen!r} is not a ZeroMQ endpoint (tcp://HOST:PORT)")
        if self.node and not _NODE_RE.fullmatch(self.node):
            _fail(f"node = {self.node!r} must be 1 to 64 of A-Z a-z 0-9 _ . -")
        if not 1 <= self.sync_replicas <= MAX_STANDBYS:
            _fail(f"sync_replicas = {self.sync_replicas} is outside 1..{MAX_STANDBYS}")
        for key, low, high in (
            ("lease_s", 0.01, 3600.0),
            ("heartbeat_s", 0.001, 60.0),
            ("failover_after_s", 0.0, 3600.0),
        ):
            value = getattr(self, key)
            if not (math.isfinite(value) and low <= value <= high):
                _fail(f"{key} = {value} is outside {low:g}..{high:g} s")
        if self.heartbeat_s >= self.lease_s:
            _fail(f"heartbeat_s = {self.heartbeat_s} must be below lease_s = {self.lease_s}")
        if self.failover_after_s and self.failover_after_s < 2 * self.heartbeat_s:
            _fail("failover_after_s must be 0 or at least twice heartbeat_s")
        if self.failover_after_s and self.mode != "sync":
            _fail(
                'failover_after_s needs mode = "sync": in async mode a primary that is cut '
                "off, not dead, goes on acknowledging what the promoted standby never gets"
            )
        if not 64 <= self.window_records <= 1 << 24:
            _fail(f"window_records = {self.window_records} is outside 64..16777216")
        if not 0 <= self.check_every_records <= 1 << 40:
            _fail(f"check_every_records = {self.check_every_records} is outside 0..2**40")
        if not 1 << 20 <= self.max_snapshot_bytes <= 1 << 46:
            _fail(f"max_snapshot_bytes = {self.max_snapshot_bytes} is outside 1 MiB..64 TiB")


def _fail(message: str) -> NoReturn:
    raise ConfigError(f"[replication] {message}")


def load_replication_config(text: str) -> ReplicationConfig | None:
    """``[replication]`` of the TOML config ``text``; None without the table."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config is not valid TOML: {exc}") from exc
    return optional_table(raw, "replication", ReplicationConfig, _KINDS)


_KINDS: Final = {
    "listen": "a string",
    "node": "a string",
    "mode": '"async" or "sync"',
    "sync_replicas": "an integer",
    "lease_s": "a number of seconds",
    "heartbeat_s": "a number of seconds",
    "failover_after_s": "a number of seconds",
    "window_records": "an integer",
    "max_snapshot_bytes": "an integer",
    "check_every_records": "an integer",
}
