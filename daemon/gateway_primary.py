"""A gateway's link to a cluster of engines: every request goes to the primary
(docs/gateways.md, docs/operations.md).

``PrimaryLink`` holds one ``EngineLink`` per engine (a primary and its standbys,
``--engine tcp://a:7316,tcp://b:7316``) and asks each, every ``probe_interval_s``,
for its ``server.status``: the engine that says it is the primary, of the highest
epoch, gets the requests. A reply NOT_PRIMARY (the engine was deposed, or the
standby was asked before the probe saw the change) makes it probe again at once;
the request itself is answered with that refusal (ViaBTC's 3, service unavailable),
never sent twice, so a command is never duplicated by the switch: the client
retries it. With one endpoint it is the plain ``EngineLink``'s behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

import numpy as np

from core.schema import Result
from core.viabtc_codec import CommandOutcome
from daemon.gateway_links import BackendDown, EngineLink
from ipc import wire

logger = logging.getLogger("matchd.gateway")

DEFAULT_PROBE_INTERVAL_S: Final = 0.25


class PrimaryLink:
    """``EngineLink``'s interface over several engines; see the module docstring."""

    def __init__(
        self,
        endpoints: list[str],
        *,
        probe_interval_s: float = DEFAULT_PROBE_INTERVAL_S,
        **link: Any,
    ) -> None:
        """``link``: the keyword arguments of each ``EngineLink``."""
        if not endpoints:
            raise ValueError("no engine endpoint")
        self.endpoints = endpoints
        self.links = [EngineLink(e, **link) for e in endpoints]
        self.timeout_s: float = self.links[0].timeout_s
        self.probe_interval_s = probe_interval_s
        #: The link requests go to (None: no primary found yet).
        self.current: EngineLink | None = self.links[0] if len(endpoints) == 1 else None
        self.watch = self  # ``wait_connected``, as ``EngineLink.watch`` has
        self._found = asyncio.Event()
        self._again = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self.current is not None and self.current.connected

    async def wait_connected(self, timeout_s: float) -> bool:
        """True once a primary is found and connected, within ``timeout_s``."""
        if len(self.links) == 1:
            return await self.links[0].watch.wait_connected(timeout_s)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._found.wait()
        return self._found.is_set()

    # ------------------------------------------------------------------ requests

    def _link(self) -> EngineLink:
        if self.current is None:
            raise BackendDown("engine", "no primary engine found among " + ",".join(self.endpoints))
        return self.current

    async def call(self, call: wire.Call) -> wire.Reply:
        reply = await self._link().call(call)
        if reply.code == Result.NOT_PRIMARY:
            self._lost()
        return reply

    async def command(self, record: np.ndarray) -> CommandOutcome:
        outcome = await self._link().command(record)
        if outcome.code == Result.NOT_PRIMARY:
            self._lost()
        return outcome

    async def commands(self, records: np.ndarray) -> list[CommandOutcome]:
        outcomes = await self._link().commands(records)
        if any(o.code == Result.NOT_PRIMARY for o in outcomes):
            self._lost()
        return outcomes

    def _lost(self) -> None:
        """The current engine is no primary: look again now."""
        if len(self.links) > 1:
            self._again.set()

    # ------------------------------------------------------------------ probing

    async def _probe_loop(self) -> None:
        while True:
            await self._probe()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.probe_interval_s):
                    await self._again.wait()
            self._again.clear()

    async def _probe(self) -> None:
        """Ask every connected engine its role; the primary of the highest epoch wins."""
        found: list[tuple[int, int]] = []
        for i, link in enumerate(self.links):
            if not link.connected:
                continue
            try:
                reply = await link.call(wire.ServerStatus())
            except Exception:  # noqa: S112 -- down or slow: not the primary now
                continue
            status = reply.result_as(wire.ServerStatus)
            if isinstance(status, wire.Status) and status.role == "primary":
                found.append((status.epoch, i))
        best = self.links[max(found)[1]] if found else None
        if best is not self.current:
            logger.warning(
                "engine primary: %s",
                self.endpoints[self.links.index(best)] if best is not None else "none found",
            )
            self.current = best
        if best is None:
            self._found.clear()
        else:
            self._found.set()

    # ------------------------------------------------------------------ lifetime

    async def start(self) -> None:
        for link in self.links:
            await link.start()
        if len(self.links) > 1:
            self._task = asyncio.get_running_loop().create_task(self._probe_loop())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for link in self.links:
            await link.aclose()
