"""An engine's replication role: primary (serves its log) or standby (follows one),
and promotion from one to the other (docs/operations.md).

The server owns one ``Replication`` when the config has ``[replication]``: it polls
its socket with its own, calls ``step`` every loop, asks ``refusal`` before it runs
a write and, in sync mode, holds every reply until ``replicated_seq`` covers what
the reply depends on.

Promotion (``matchctl promote``, or a standby's primary silent for
``failover_after_s``) starts a new epoch, above every epoch this node has heard of,
at the next sequence, saved durably before the first write; the standby's socket
closes and the primary's binds. A primary that hears of a higher epoch is deposed:
it refuses every write from then on (NOT_PRIMARY), and a restart keeps it that way
(its history knows the higher epoch) until it is started as a standby.

Security. The link carries the whole log, and a hello of a higher epoch deposes a
primary, so: without a key registry the primary binds and the standby connects to
local endpoints only (``ConfigError`` otherwise); with one (``--keys``) the link is
CURVE, in a ZeroMQ context of its own with its own ZAP handler, and the primary
takes messages only from the registry's own server key (the engines of a cluster
share one key file, as the gateways and clients need anyway to reach whichever is
the primary).
"""

from __future__ import annotations

import hashlib
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import msgspec
import zmq

from core.errors import ConfigError
from core.schema import Result
from daemon.auth import KeyRegistry, is_local_endpoint
from daemon.auth_gate import ZapHandler
from daemon.replication_config import ReplicationConfig
from daemon.replication_primary import Primary
from daemon.replication_standby import Standby
from persistence.epochs import EpochHistory, load_epochs, save_epochs
from persistence.journal import Journal
from persistence.snapshot import SnapshotInfo

logger = logging.getLogger(__name__)

Role = Literal["primary", "standby"]
#: Bytes of the newest durable frames the primary keeps in memory to send.
RECENT_BYTES = 16 << 20
#: What ``Replication.role`` reports: a deposed primary is neither.
Report = Literal["primary", "standby", "deposed"]


class Replication:
    """The role of the engine over ``journal``; see the module docstring."""

    def __init__(
        self,
        journal: Journal,
        config: ReplicationConfig,
        *,
        role: Role,
        primary: str | None = None,
        context: zmq.Context[Any] | None = None,
        auth: KeyRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``primary``: the endpoint a standby follows (required for one; several,
        separated by commas). ``auth``: the key registry (CURVE on the link).
        ``ConfigError`` for an endpoint beyond this machine without ``auth``."""
        if role == "standby" and not primary:
            raise ValueError("a standby needs the primary's replication endpoint")
        check_replication_exposure(config, primary, curve=auth is not None)
        self.journal = journal
        self.config = config
        self._data_dir = Path(journal.jconfig.data_dir)
        self.node = config.node or default_node(self._data_dir)
        self.auth = auth
        self._own_context = auth is not None
        self._zap: ZapHandler | None = None
        if auth is not None:  # a ZAP handler of its own: one per context
            context = zmq.Context()
            self._zap = ZapHandler(context, auth)
        self._context = context if context is not None else zmq.Context.instance()
        self._clock = clock
        self.history = load_epochs(self._data_dir)
        self.primary: Primary | None = None
        self.standby: Standby | None = None
        if primary is not None and role == "standby":
            self.standby = Standby(
                journal,
                config,
                primary,
                self.history,
                self.node,
                context=self._context,
                save_history=self._save,
                curve=auth.server_keys() if auth is not None else None,
                clock=clock,
            )
        else:
            primary_role = self._become_primary()
            if self.history.known > self.history.epoch:  # heard of a newer primary
                primary_role.deposed = True
                logger.critical(
                    "replication: epoch %d began elsewhere; this engine (epoch %d) takes no "
                    "writes: start it as a standby",
                    self.history.known,
                    self.history.epoch,
                )

    @property
    def role(self) -> Report:
        """What this engine is now."""
        if self.primary is None:
            return "standby"
        return "deposed" if self.primary.deposed else "primary"

    @property
    def epoch(self) -> int:
        """The highest epoch this engine knows."""
        return self.history.known

    def sockets(self) -> list[zmq.Socket[bytes]]:
        """The sockets to poll (the role's, and the ZAP handler's)."""
        own = self.primary.socket if self.primary is not None else self._standby().socket
        return [own] if self._zap is None else [own, self._zap.socket]

    # ------------------------------------------------------------------ loop

    def step(self) -> None:
        """Read what came, send what is due; promote a standby whose primary is
        silent for ``failover_after_s``."""
        if self._zap is not None:
            self._zap.handle()
        if self.primary is not None:
            self.primary.handle()
            self.primary.pump()
            return
        standby = self._standby()
        standby.handle()
        standby.tick()
        after = self.config.failover_after_s
        if after and standby.silent_s >= after and standby.promotable:
            logger.warning(
                "replication: primary silent for %.2f s; promoting this standby", standby.silent_s
            )
            self.promote()

    def refusal(self) -> Result | None:
        """Why a write would be refused now (None: it may run)."""
        if self.primary is None:
            return Result.NOT_PRIMARY
        return self.primary.refusal()

    def replicated_seq(self) -> int | None:
        """In sync mode, the sequence replies may depend on; None: no holding."""
        if self.primary is None or self.config.mode != "sync":
            return None
        return self.primary.replicated_seq()

    def snapshot_started(self, seq: int) -> None:
        """The server started a snapshot of the state at ``seq``."""
        if self.primary is not None:
            self.primary.mark(seq)

    def snapshot_written(self, info: SnapshotInfo) -> None:
        """The snapshot ``info`` is written (the server reaps every snapshot)."""
        if self.primary is not None:
            self.primary.hashed(info.seq, info.state_hash)
        else:
            self._standby().snapshot_written(info)

    def status(self) -> dict[str, int]:
        """The standbys and the sequence durable on each (primary); the primary's
        durable sequence as last heard (standby)."""
        if self.primary is not None:
            return self.primary.standbys()
        return {self._standby().primary_node or "primary": self._standby().primary_committed}

    # ------------------------------------------------------------------ promotion

    def promote(self) -> int:
        """Make this standby the primary of a new epoch; returns the epoch. A
        primary returns its epoch (nothing changes); a deposed one raises."""
        if self.primary is not None:
            if self.primary.deposed:
                raise PermissionError(
                    "a deposed primary cannot be promoted: restart it as a standby"
                )
            return self.history.epoch
        standby = self._standby()
        if not standby.promotable:
            raise PermissionError(
                "this standby has not caught up since it moved its state aside: it holds no "
                "primary's state to take over with"
            )
        epoch = self.history.known + 1
        first_seq = self.journal.writer.last_seq + 1
        self._save(self.history.begin(epoch, first_seq))
        standby.announce(self.history)  # the old primary, if it hears, is deposed now
        standby.close()
        self.standby = None
        self._become_primary()
        logger.warning("replication: promoted: epoch %d from seq %d", epoch, first_seq)
        return epoch

    def _become_primary(self) -> Primary:
        # What was just made durable goes to the standbys from memory, not read back.
        self.journal.writer.keep_recent(RECENT_BYTES)
        self.primary = Primary(
            self.journal,
            self.config,
            self.history,
            self.node,
            context=self._context,
            on_deposed=self._deposed,
            auth=self.auth,
            clock=self._clock,
        )
        return self.primary

    def _deposed(self, epoch: int) -> None:
        self._save(self.history.heard(epoch))

    def _save(self, history: EpochHistory) -> None:
        """Save ``history`` and make it the role's: the standby saves through here
        too, so ``self.history`` is always the one on disk."""
        save_epochs(self._data_dir, history)
        self.history = history
        if self.primary is not None:
            self.primary.history = history

    def _standby(self) -> Standby:
        if self.standby is None:  # pragma: no cover -- callers ask for it by role
            raise RuntimeError("not a standby")
        return self.standby

    def close(self) -> None:
        """Close the role's socket (and the link's own context, with CURVE)."""
        if self.primary is not None:
            self.primary.close()
        if self.standby is not None:
            self.standby.close()
        if self._zap is not None:
            self._zap.close()
        if self._own_context:
            self._context.term()


def check_replication_exposure(
    config: ReplicationConfig, primary: str | None, *, curve: bool
) -> None:
    """Without CURVE the link's endpoints (``listen``, the standby's primaries) must
    be local: ``ConfigError`` otherwise."""
    for endpoint in [config.listen, *(primary or "").split(",")]:
        if endpoint.strip() and not curve and not is_local_endpoint(endpoint.strip()):
            raise ConfigError(
                f"replication endpoint {endpoint.strip()} is reachable from other machines: "
                "without a key registry (--keys) the link would carry the log in clear and "
                "anyone could depose the primary; local endpoints only"
            )


def default_node(data_dir: Path) -> str:
    """The host name and a digest of the data directory: the same across restarts,
    distinct for two engines on one host."""
    digest = hashlib.blake2b(str(data_dir.resolve()).encode(), digest_size=3).hexdigest()
    return f"{socket.gethostname()[:50]}-{digest}"


def with_listen(config: ReplicationConfig, listen: str | None) -> ReplicationConfig:
    """``config`` with ``listen`` replaced (the command line's ``--replication``)."""
    return config if not listen else msgspec.structs.replace(config, listen=listen)
