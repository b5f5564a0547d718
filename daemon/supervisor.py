"""The supervisor: ``matchd run`` starts it; it starts the daemon's processes, pins
them, checks their health, restarts a dead or hung one at once, and speaks to
systemd (docs/daemon.md, "Supervisor").

It runs the server (``matchd serve``: journal and ZeroMQ order entry, and with
``--workers`` the sequencer that starts its own pair workers, which die with it) and,
with ``[history]`` in the config, the MySQL drainer (``matchd drain``); the feed
joins them when it lands. A child that
exits while the daemon is running is restarted after ``restart_delay_s`` (0.2 s;
at most 1 s even when it keeps failing), and its recovery brings back every
acknowledged command (the journal). Health is the server answering
``server.status`` over its own socket: a child that does not answer for
``hang_s`` is killed and restarted. Under systemd (``NOTIFY_SOCKET`` set) it sends
READY=1 once the server answers, WATCHDOG=1 after every healthy check, and
STOPPING=1 on the way out. SIGTERM or SIGINT stop it: the children get SIGTERM
(they close the log cleanly), then SIGKILL after ``stop_timeout_s``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ipc.client_common import CurveKeys

logger = logging.getLogger(__name__)


class SdNotify:
    """systemd's notify protocol (sd_notify(3)) without a library: one datagram per
    message to ``NOTIFY_SOCKET``; nothing when it is not set."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET")

    def send(self, message: str) -> bool:
        """Send ``message`` (e.g. ``READY=1``); False when not under systemd or it failed."""
        if not self.address:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode(), target)
        except OSError as exc:
            logger.warning("sd_notify %s failed: %s", message, exc)
            return False
        return True

    @staticmethod
    def watchdog_interval_s() -> float | None:
        """Half of systemd's watchdog timeout (WATCHDOG_USEC), or None without one."""
        usec = os.environ.get("WATCHDOG_USEC")
        if not usec or not usec.isdigit() or int(usec) == 0:
            return None
        return int(usec) / 2e6


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    cpus: set[int] | None = None
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    failures: list[float] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """Timings of the supervisor."""

    restart_delay_s: float = 0.2
    max_restart_delay_s: float = 1.0
    check_interval_s: float = 0.05
    health_interval_s: float = 1.0
    hang_s: float = 30.0
    #: A child that has just started may take this long to answer (recovery; a first
    #: run also compiles the kernels).
    start_grace_s: float = 300.0
    stop_timeout_s: float = 30.0


class Supervisor:
    """Starts ``children``, keeps them running, stops them."""

    def __init__(
        self,
        children: Sequence[Child],
        health: Callable[[], bool | str],
        config: SupervisorConfig | None = None,
        *,
        notify: SdNotify | None = None,
        pid_dir: Path | None = None,
        dormant: Sequence[Child] = (),
    ) -> None:
        """``health`` answers truthy when the server is healthy: its role
        ("primary", "standby" or "deposed") or True. ``dormant``: children that run
        only beside a primary (the log's readers and the gateways of a standby). When
        a standby server first reports "primary" (it was promoted) they start, and
        the server's command line becomes a primary's, so that a restart stays one."""
        self.children = list(children)
        self.dormant = list(dormant)
        self.health = health
        self.config = config or SupervisorConfig()
        self.notify = notify or SdNotify()
        self.pid_dir = pid_dir
        self.ready = False
        self._last_healthy = time.monotonic()
        self._lock = threading.Lock()
        self._probes: list[bool | str] = []  # results of the probe thread, not yet acted on

    def start(self, child: Child) -> None:
        """Start (or restart) ``child``."""
        child.process = subprocess.Popen(child.argv)  # noqa: S603 -- our own commands
        child.started = time.monotonic()
        if child.cpus:
            try:
                os.sched_setaffinity(child.process.pid, child.cpus)
            except OSError as exc:
                logger.warning("cannot pin %s to %s: %s", child.name, sorted(child.cpus), exc)
        if self.pid_dir is not None:
            self.pid_dir.mkdir(parents=True, exist_ok=True)
            (self.pid_dir / f"{child.name}.pid").write_text(f"{child.process.pid}\n")
        logger.info("started %s: pid=%d restarts=%d", child.name, child.process.pid, child.restarts)

    def run(self, should_stop: Callable[[], bool]) -> int:
        """Supervise until ``should_stop()``; then stop the children. Returns 0.

        The health probe runs on a thread of its own, so that a probe waiting for a
        dead server never delays the restart (children are looked at every
        ``check_interval_s``)."""
        for child in self.children:
            self.start(child)
        interval = SdNotify.watchdog_interval_s() or self.config.health_interval_s
        done = threading.Event()
        prober = threading.Thread(
            target=self._probe_loop, args=(interval, done), name="health", daemon=True
        )
        prober.start()
        try:
            while not should_stop():
                now = time.monotonic()
                for child in self.children:
                    self._check(child, now)
                self._check_health(now)
                time.sleep(self.config.check_interval_s)
        finally:
            done.set()
            self.notify.send("STOPPING=1")
            self.stop()
            prober.join(5)
        return 0

    def _probe_loop(self, interval: float, done: threading.Event) -> None:
        """Probe every ``interval`` s; each result is taken by ``_check_health``."""
        while not done.is_set():
            try:
                healthy: bool | str = self.health()
            except Exception as exc:  # a failing probe is an unhealthy child, not a crash
                logger.warning("health check failed: %s", exc)
                healthy = False
            with self._lock:
                self._probes.append(healthy)
            done.wait(interval)

    def _check(self, child: Child, now: float) -> None:
        process = child.process
        if process is None or process.poll() is None:
            return
        code = process.returncode
        child.failures = [t for t in child.failures if now - t < 10.0] + [now]
        delay = min(
            self.config.restart_delay_s * len(child.failures), self.config.max_restart_delay_s
        )
        logger.error(
            "%s (pid %d) exited with %s; restarting in %.1f s", child.name, process.pid, code, delay
        )
        time.sleep(delay)
        child.restarts += 1
        self.start(child)

    def _check_health(self, now: float) -> None:
        """Act on the probes that finished since the last call."""
        with self._lock:
            probes, self._probes = self._probes, []
        for healthy in probes:
            self._act_on_probe(healthy, now)

    def _act_on_probe(self, healthy: bool | str, now: float) -> None:
        if healthy == "primary" and self._standby_server():
            self._promoted()
        if healthy:
            self._last_healthy = now
            if not self.ready:
                self.ready = True
                self.notify.send("READY=1")
                logger.info("ready")
            self.notify.send("WATCHDOG=1")
            return
        starting = any(now - c.started < self.config.start_grace_s for c in self.children)
        if not starting and now - self._last_healthy > self.config.hang_s:
            for child in self.children:
                if child.process is not None and child.process.poll() is None:
                    logger.error("%s does not answer: killing it", child.name)
                    child.process.kill()
            self._last_healthy = now

    def _standby_server(self) -> bool:
        return any(c.name == "server" and primary_argv(c.argv) != c.argv for c in self.children)

    def _promoted(self) -> None:
        logger.warning("the server is the primary now: starting %s", [c.name for c in self.dormant])
        for child in self.children:
            if child.name == "server":
                child.argv = primary_argv(child.argv)
        for child in self.dormant:
            self.start(child)
        self.children += self.dormant
        self.dormant = []

    def stop(self) -> None:
        """SIGTERM every child, wait, then SIGKILL what is left."""
        live = [c.process for c in self.children if c.process and c.process.poll() is None]
        for p in live:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.stop_timeout_s
        for p in live:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("pid %d did not stop in time: killing it", p.pid)
                p.kill()
                p.wait()


def serve_argv(
    config: Path,
    data_dir: Path,
    endpoint: str,
    fsync: str,
    metrics: str = "",
    keys: Path | None = None,
) -> list[str]:
    """The command line of the server child (``keys``: its key registry)."""
    argv = [
        sys.executable, "-m", "daemon.cli", "serve", "--config", str(config),
        "--data-dir", str(data_dir), "--endpoint", endpoint, "--fsync", fsync,
        "--metrics", metrics,
    ]  # fmt: skip
    if keys is not None:
        argv += ["--keys", str(keys)]
    return argv


def primary_argv(argv: list[str]) -> list[str]:
    """A standby server's command line as its promoted self's: ``--role primary``,
    no ``--primary``."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg == "--primary":
            skip = True
        elif arg == "--role" and i + 1 < len(argv):
            out += ["--role", "primary"]
            skip = True
        else:
            out.append(arg)
    return out


def status_probe(
    endpoint: str, timeout_s: float = 1.0, curve: CurveKeys | None = None
) -> Callable[[], str]:
    """A health check: the server at ``endpoint`` answers ``server.status``; returns
    its role (``curve``: the keys to connect with when the server has a key registry;
    the server's own key pair, ``KeyRegistry.server_keys()``, may ask for its status)."""

    def probe() -> str:
        from ipc.client import Client

        with Client(endpoint, timeout_s=timeout_s, curve=curve) as client:
            return client.status().role

    return probe
