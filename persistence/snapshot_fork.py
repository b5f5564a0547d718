"""The background snapshot writer: a forked child writes the snapshot from its
copy-on-write view of the arrays, so the engine stalls only for the checks and the
fork (docs/log.md, "Background snapshots").
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import os
import select
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy.typing as npt

from core.errors import ConfigError
from persistence._io import SysIO
from persistence.snapshot_errors import SnapshotFailed, step
from persistence.snapshot_format import (
    MAX_LOGICAL_BYTES,
    MAX_LOGICAL_BYTES_LIMIT,
    SnapshotInfo,
)
from persistence.snapshot_writer import Plan, StateHash, prepare, with_state_hash, write_plan

logger = logging.getLogger(__name__)

_MAX_REASON_CHARS = 1000  # keeps the child's result line below PIPE_BUF


@dataclass(frozen=True, slots=True)
class SnapshotterConfig:
    """Settings of the background snapshot process; checked on construction.

    ``nice_increment``: the child lowers its CPU priority by this much (0..19) so
    the engine keeps its core. ``cpus``: CPUs the child may run on; None keeps the
    parent's affinity (with a pinned engine that is the engine's own core).
    ``max_logical_bytes``: the arrays' total size ``start`` accepts (keep it within
    what the readers accept, by default the same).
    """

    nice_increment: int = 10
    cpus: tuple[int, ...] | None = None
    max_logical_bytes: int = MAX_LOGICAL_BYTES

    def __post_init__(self) -> None:
        if type(self.nice_increment) is not int or not 0 <= self.nice_increment <= 19:
            raise ConfigError(
                f"snapshot nice_increment must be an integer from 0 to 19; "
                f"got {self.nice_increment!r}"
            )
        if self.cpus is not None and (
            not isinstance(self.cpus, tuple)
            or not self.cpus
            or not all(type(cpu) is int and cpu >= 0 for cpu in self.cpus)
        ):
            raise ConfigError(
                f"snapshot cpus must be None or a non-empty tuple of CPU numbers; got {self.cpus!r}"
            )
        if (
            type(self.max_logical_bytes) is not int
            or not 0 <= self.max_logical_bytes <= MAX_LOGICAL_BYTES_LIMIT
        ):
            raise ConfigError(
                f"snapshot max_logical_bytes must be an integer from 0 to "
                f"{MAX_LOGICAL_BYTES_LIMIT}; got {self.max_logical_bytes!r}"
            )


class BackgroundSnapshotter:
    """Writes snapshots in a forked child so the engine stalls only for the fork.

    Why fork. The child gets the parent's memory copy-on-write: it sees every array
    exactly as it was at ``start``, however the parent changes them afterwards, and
    nothing is copied up front. The parent pays for the fork (page tables, about
    1 ms for 200 MB here) and then a page fault plus a 4 KiB copy the first time it
    writes each page while the child lives (2 MiB with transparent huge pages).
    Memory: up to twice the arrays' size while a snapshot is written, if the parent
    rewrites everything.

    Caveats.

    - Call it from the single engine thread, with no other thread holding a lock
      (logging, allocators, I/O): the child gets a copy of the locks, not of the
      threads. In the child only ``os``-level I/O runs: no logging, no imports,
      the garbage collector off, inherited descriptors closed, SIGINT and SIGTERM
      back to their defaults, and it leaves through ``os._exit`` (no atexit, no
      finalizers, no flushing of the parent's buffers), whatever happens.
    - Arrays in shared memory (``MAP_SHARED``, e.g. posix-ipc regions) are not
      copied on write: another process, or the parent, changes them under the
      child. ``start`` refuses them (``ValueError``); snapshot a private copy.
    - One snapshot at a time. Collect each result with ``poll`` or ``wait`` (that
      also reaps the child), or ``cancel`` it, before the next ``start``.
    - The child inherits the parent's CPU affinity unless ``cpus`` is set.
    - A ``state_hash`` function passed to ``start`` runs in the child, under these
      rules: no logging, no locks another thread may hold, no threads, no compiling.
    """

    def __init__(self, config: SnapshotterConfig | None = None, *, io: SysIO | None = None) -> None:
        self._config = config if config is not None else SnapshotterConfig()
        self._io = io if io is not None else SysIO()
        self._pid = 0
        self._pipe = -1
        self._path = Path()
        self._seq = 0
        self._started_ns = 0
        self._stall_ns = 0

    @property
    def running(self) -> bool:
        """A snapshot was started and its result not yet collected."""
        return self._pid != 0

    @property
    def pid(self) -> int | None:
        """Process id of the snapshot in flight (until its result is collected)."""
        return self._pid or None

    @property
    def stall_ns(self) -> int:
        """Time the last ``start`` kept the caller (checks, encoding, fork), in ns."""
        return self._stall_ns

    def start(
        self,
        directory: Path,
        seq: int,
        state_hash: StateHash,
        arrays: Mapping[str, npt.NDArray[Any]],
        meta: Mapping[str, str] | None = None,
    ) -> bool:
        """Fork a child that writes this snapshot; False if one is still in flight.

        The arguments are checked here, in the parent (``ValueError``/``TypeError``
        as for ``write_snapshot``); disk errors come later from ``poll``/``wait``.
        ``created_ns`` is the time of this call. The caller may change its arrays as
        soon as this returns.

        ``state_hash`` is the hash itself, or a function that computes it: the child
        calls it, after the fork and before it writes anything, on its copy-on-write
        view of the state, so hashing a large state does not stall the caller. Its
        result ends up in the file and the ``SnapshotInfo``; if it raises or returns
        something other than 32 lowercase hex digits, ``poll``/``wait`` raise
        ``SnapshotFailed`` (``operation`` "state hash") and nothing is written. It
        runs under the child's rules (see the class): it must not log, take locks
        other threads may hold, start threads, or compile (warm it up first).
        """
        began = time.perf_counter_ns()
        if self._pid:
            return False
        plan = prepare(
            Path(directory),
            seq,
            state_hash,
            arrays,
            meta,
            time.time_ns(),
            self._config.max_logical_bytes,
        )
        _refuse_shared_memory(plan)
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            raise SnapshotFailed.from_os_error(plan.directory, "fork", exc) from exc
        if pid == 0:
            _run_child(plan, self._io, self._config, read_fd, write_fd)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self._pid, self._pipe = pid, read_fd
        self._path = plan.path
        self._seq = plan.seq
        self._started_ns = time.monotonic_ns()
        self._stall_ns = time.perf_counter_ns() - began
        logger.info(
            "snapshot started: path=%s seq=%d pid=%d stall_us=%d",
            self._path,
            plan.seq,
            pid,
            self._stall_ns // 1000,
        )
        return True

    def poll(self) -> SnapshotInfo | None:
        """The finished snapshot's info, once; None while it runs or if none was started.

        Raises ``SnapshotFailed`` (once) if the child failed or died.
        """
        if not self._pid:
            return None
        try:
            pid, status = os.waitpid(self._pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: the result line decides
            return self._finish(None)
        if pid == 0:
            return None
        return self._finish(status)

    def wait(self, timeout_s: float | None = None) -> SnapshotInfo | None:
        """Like ``poll``, but waits up to ``timeout_s`` (None: as long as it takes)."""
        deadline = None if timeout_s is None else time.monotonic() + max(0.0, timeout_s)
        poller = select.poll()
        while self._pid:
            result = self.poll()
            if result is not None or not self._pid:
                return result
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                return None
            poller.register(self._pipe, select.POLLIN)
            ready = poller.poll(math.ceil(left * 1000))
            poller.unregister(self._pipe)
            if ready:  # the result line or EOF: the child is exiting
                try:
                    _, status = os.waitpid(self._pid, 0)
                except ChildProcessError:
                    return self._finish(None)
                return self._finish(status)
        return None

    def cancel(self) -> bool:
        """Kill the snapshot in flight (its temporary file stays for ``prune_snapshots``).

        Returns False if none was in flight.
        """
        if not self._pid:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._pid, 0)
        logger.warning("snapshot cancelled: path=%s pid=%d", self._path, self._pid)
        self._reset()
        return True

    def _reset(self) -> None:
        if self._pipe >= 0:
            os.close(self._pipe)
        self._pid, self._pipe = 0, -1

    def _finish(self, status: int | None) -> SnapshotInfo:
        pid = self._pid
        line = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._pipe, 65536):
                line += chunk
        self._reset()
        duration_ms = (time.monotonic_ns() - self._started_ns) / 1e6
        try:
            info = self._result(pid, line, status)
        except SnapshotFailed as exc:
            logger.error("snapshot failed: %s pid=%d duration_ms=%.1f", exc, pid, duration_ms)
            raise
        logger.info(
            "snapshot written: path=%s seq=%d bytes=%d pid=%d duration_ms=%.1f",
            info.path,
            info.seq,
            info.bytes,
            pid,
            duration_ms,
        )
        return info

    def _result(self, pid: int, line: bytes, status: int | None) -> SnapshotInfo:
        try:
            report = json.loads(line.decode("utf-8")) if line else None
        except ValueError:
            report = None
        if isinstance(report, dict) and report.get("ok") is True:
            return SnapshotInfo(
                Path(str(report["path"])),
                int(report["seq"]),
                str(report["state_hash"]),
                int(report["created_ns"]),
                int(report["bytes"]),
            )
        if isinstance(report, dict) and report.get("ok") is False:
            code = report.get("errno")
            raise SnapshotFailed(
                Path(str(report.get("path", self._path))),
                str(report.get("operation", "snapshot process")),
                str(report.get("reason", "unknown")),
                errno=code if isinstance(code, int) else None,
            )
        if status is not None and os.WIFSIGNALED(status):
            how = f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        elif status is not None:
            how = f"exited with code {os.waitstatus_to_exitcode(status)}"
        else:
            how = "was reaped elsewhere"
        raise SnapshotFailed(self._path, "snapshot process", f"process {pid} {how}, no result")


def _refuse_shared_memory(plan: Plan) -> None:
    """``ValueError`` if an array lies in a ``MAP_SHARED`` mapping (not copy-on-write)."""
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            lines = maps.read().splitlines()
    except OSError:
        return  # not Linux: nothing to check with
    shared = []
    for line in lines:
        span, perms = line.split(maxsplit=2)[:2]
        if perms[3:4] == "s":
            start, end = span.split("-")
            shared.append((int(start, 16), int(end, 16)))
    for item in plan.arrays:
        if not item.nbytes or not shared:
            continue
        low = item.data.ctypes.data
        high = low + item.nbytes
        if any(begin < high and low < end for begin, end in shared):
            raise ValueError(
                f"snapshot array {item.name!r} is in shared memory (MAP_SHARED), which "
                "fork does not copy on write; snapshot a private copy (np.array(a))"
            )


def _run_child(
    plan: Plan, io: SysIO, config: SnapshotterConfig, read_fd: int, write_fd: int
) -> NoReturn:
    """The forked child: write the snapshot, report one JSON line, ``os._exit``."""
    status = 1
    try:
        try:
            gc.disable()  # no finalizer may close a descriptor number we reuse
            os.close(read_fd)
            os.closerange(3, write_fd)
            os.closerange(write_fd + 1, os.sysconf("SC_OPEN_MAX"))
            with contextlib.suppress(ValueError):  # only if this is not the main thread
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if config.nice_increment:
                os.nice(config.nice_increment)
            if config.cpus is not None:
                with step("set CPU affinity", plan.directory):
                    os.sched_setaffinity(0, config.cpus)
            info = write_plan(_hashed(plan), io)
            report: dict[str, object] = {
                "ok": True,
                "path": str(info.path),
                "seq": info.seq,
                "state_hash": info.state_hash,
                "created_ns": info.created_ns,
                "bytes": info.bytes,
            }
            status = 0
        except SnapshotFailed as exc:
            report = {
                "ok": False,
                "path": str(exc.path),
                "operation": exc.operation,
                "reason": exc.reason[:_MAX_REASON_CHARS],
                "errno": exc.errno,
            }
        except BaseException as exc:  # anything else: report it, never unwind into the caller
            report = {
                "ok": False,
                "path": str(plan.directory),
                "operation": "snapshot process",
                "reason": f"{type(exc).__name__}: {exc}"[:_MAX_REASON_CHARS],
            }
        os.write(write_fd, json.dumps(report).encode("utf-8") + b"\n")
    finally:
        os._exit(status)


def _hashed(plan: Plan) -> Plan:
    """``plan`` with its state hash computed, if it is a function (in the child)."""
    if isinstance(plan.state_hash, str):
        return plan
    try:
        return with_state_hash(plan, plan.state_hash())
    except Exception as exc:  # the caller's code: report whatever it raised
        reason = f"{type(exc).__name__}: {exc}"[:_MAX_REASON_CHARS]
        raise SnapshotFailed(plan.path, "state hash", reason) from exc
