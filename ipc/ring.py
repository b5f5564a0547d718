"""``SpscRing``: one producer process, one consumer process, fixed-size records in
POSIX shared memory, pushed and popped in batches (docs/daemon.md, "Rings").

The segment is ``/matchd.<instance>.<name>`` (the naming of ``ipc.shm``, so
``ipc.shm.remove_instance`` removes rings too) and its layout is ``ipc.ring_layout``;
a POSIX named semaphore of the same name is the consumer's doorbell. The kernels that
move records, and why their memory ordering is sound, are in ``ipc.ring_kernels``;
this module creates, checks, attaches and removes rings, and wraps the kernels for
Python callers. A numba caller passes ``header_words`` and ``records`` to
``push_batch``/``pop_batch`` itself and, as producer, calls ``wake_if_sleeping``
after pushing.

Lifetime follows ``ipc.shm``: ``close()`` unmaps (refused while arrays over the ring
are referenced), ``unlink()`` removes the names (creator only), and a ring whose
creator has exited is *stale*: ``create`` says so, and replaces it when asked.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import posix_ipc

from core.errors import BrokenError, ClosedError
from ipc.lifetime import SharedLifetime
from ipc.ring_kernels import arm_sleep, claim_wake, pop_batch, push_batch
from ipc.ring_layout import (
    CONSUMER_POSITION_WORD,
    CORRUPT,
    FULL_WORD,
    HEADER_LENGTH,
    HEADER_WORDS,
    MAGIC,
    MAGIC_LENGTH,
    MAGIC_OFFSET,
    MAX_CAPACITY,
    PEAK_WORD,
    PRODUCER_POSITION_WORD,
    RECORDS_OFFSET,
    SLEEPING_WORD,
    SLEEPS_WORD,
    VERSION,
    WAKEUPS_WORD,
    RingHeader,
    descr_hash,
    is_power_of_two,
    pack_metadata,
    segment_length,
    unpack_metadata,
)
from ipc.shm_index import (
    SEGMENT_MODE,
    Creator,
    check_instance,
    check_name,
    creator_alive,
    current_creator,
    shm_name,
)

__all__ = [
    "CORRUPT",
    "RingStats",
    "SpscRing",
    "arm_sleep",
    "claim_wake",
    "pop_batch",
    "push_batch",
    "remove_ring",
]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------ segments


@dataclass(frozen=True, slots=True)
class RingStats:
    """A snapshot of a ring's counters (they live in shared memory, so every process
    attached sees the same). ``pushed``/``popped`` are the positions; ``used`` the
    records waiting; ``full`` counts records refused because the ring was full (the
    drops: each was answered "service unavailable" by whoever pushed); ``peak`` the
    highest occupancy the producer saw (exact above half the capacity, see
    ``ipc.ring_layout``); ``wakeups`` the semaphore posts; ``sleeps`` the consumer's
    announcements that it would sleep."""

    capacity: int
    used: int
    peak: int
    pushed: int
    popped: int
    full: int
    wakeups: int
    sleeps: int


def _check_dtype(dtype: Any) -> np.dtype[Any]:
    dt: np.dtype[Any] = np.dtype(dtype)
    if dt.hasobject or dt.itemsize == 0:
        raise ValueError(f"ring records must be fixed-size plain data; got {dt}")
    return dt


def _check_capacity(capacity: int) -> int:
    if (
        not isinstance(capacity, int | np.integer)
        or isinstance(capacity, bool)
        or not is_power_of_two(int(capacity))
        or capacity > MAX_CAPACITY
    ):
        raise ValueError(
            f"ring capacity must be a power of two from 1 to {MAX_CAPACITY}; got {capacity!r}"
        )
    return int(capacity)


def _creator_of(header: RingHeader) -> Creator:
    return Creator(
        header.creator_pid, header.creator_boot_id, header.creator_start_ticks, header.created_ns
    )


def _read_header(fd: int) -> RingHeader | None:
    """The header of an open segment; None if it is too small or not yet written."""
    if os.fstat(fd).st_size < HEADER_LENGTH:
        return None
    raw = os.pread(fd, HEADER_LENGTH, 0)
    if raw[MAGIC_OFFSET : MAGIC_OFFSET + MAGIC_LENGTH] != MAGIC:
        return None
    return unpack_metadata(raw)


def _validate(
    where: str, header: RingHeader | None, size: int, dtype: np.dtype[Any], capacity: int | None
) -> RingHeader:
    if header is None:
        raise ValueError(f"{where}: bad magic (not a matchd ring, or not yet initialised)")
    if header.version != VERSION:
        raise ValueError(f"{where}: layout version {header.version}; this code reads {VERSION}")
    if not is_power_of_two(header.capacity) or header.capacity > MAX_CAPACITY:
        raise ValueError(f"{where}: capacity {header.capacity} is not a power of two")
    if header.record_length != dtype.itemsize:
        raise ValueError(
            f"{where}: records are {header.record_length} bytes; {dtype} is {dtype.itemsize}"
        )
    if header.descr_hash != descr_hash(dtype):
        raise ValueError(f"{where}: the record dtype differs from {dtype} (same itemsize)")
    if header.records_offset != RECORDS_OFFSET:
        raise ValueError(f"{where}: records at {header.records_offset}, not {RECORDS_OFFSET}")
    if capacity is not None and header.capacity != capacity:
        raise ValueError(f"{where}: capacity {header.capacity}; expected {capacity}")
    want = segment_length(header.capacity, header.record_length)
    if size != want:
        raise ValueError(f"{where}: segment is {size} bytes; its header says {want}")
    return header


def _stale_or_in_use(name: str) -> tuple[bool, str]:
    """(stale, description) of the existing segment ``name``."""
    try:
        shm = posix_ipc.SharedMemory(name, 0, read_only=True)
    except posix_ipc.ExistentialError:
        return True, "gone meanwhile"
    try:
        header = _read_header(shm.fd)
    finally:
        shm.close_fd()
    if header is None:
        return True, "left half-created"
    creator = _creator_of(header)
    if creator_alive(creator):
        return False, f"in use (creator pid {creator.pid})"
    return True, f"left over from pid {creator.pid}, which ended"


def remove_ring(instance: str, name: str) -> list[str]:
    """Unlink ring ``name`` of ``instance`` and its semaphore, whoever made them; the
    POSIX names removed (semaphores as ``sem:<name>``). Forceful: use it on a stale or
    stopped ring."""
    posix = shm_name(check_instance(instance), check_name(name))
    removed = []
    with contextlib.suppress(posix_ipc.ExistentialError):
        posix_ipc.unlink_shared_memory(posix)
        removed.append(posix)
    with contextlib.suppress(posix_ipc.ExistentialError):
        posix_ipc.unlink_semaphore(posix)
        removed.append(f"sem:{posix}")
    return removed


# ------------------------------------------------------------------ the ring


class SpscRing(SharedLifetime):
    """A single-producer single-consumer ring of ``dtype`` records in shared memory.

    Build with ``SpscRing.create`` (one process) and ``SpscRing.attach`` (the other).
    One process pushes (``push_nowait``, or ``push_batch`` from a kernel followed by
    ``wake_if_sleeping``), one pops (``pop_nowait`` / ``pop_batch``) and sleeps
    through ``park_prepare``/``park``/``park_done`` (``ipc.idle.BackoffIdle`` drives
    them). Nothing stops two producers from corrupting it: the name is the contract.
    """

    def __init__(
        self,
        instance: str,
        name: str,
        dtype: np.dtype[Any],
        capacity: int,
        mm: mmap.mmap,
        sem: Any,
        creator: Creator,
        owner: bool,
    ) -> None:
        """Internal: use ``create`` or ``attach``."""
        self._instance = instance
        self._name = name
        self._posix = shm_name(instance, name)
        self._dtype = dtype
        self._capacity = capacity
        self._mm: mmap.mmap | None = mm
        self._sem = sem
        self._creator = creator
        self._owner = owner
        self._unlinked = False
        self._header: np.ndarray = np.frombuffer(mm, np.int64, HEADER_WORDS)
        self._records: np.ndarray = np.frombuffer(mm, dtype, capacity, RECORDS_OFFSET)

    # -------------------------------------------------------- construction

    @classmethod
    def create(
        cls,
        instance: str,
        name: str,
        dtype: Any,
        capacity: int,
        *,
        replace_stale: bool = False,
    ) -> SpscRing:
        """Create ring ``/matchd.<instance>.<name>`` and its semaphore, empty.

        ``ValueError`` for a bad name, dtype or capacity (a power of two up to
        ``MAX_CAPACITY``). ``FileExistsError`` if the name exists, saying whether it is
        in use (its creator runs) or stale; with ``replace_stale`` a stale one is
        removed and created anew (a ring whose creator is between creating and
        initialising it looks stale for that moment).
        """
        check_instance(instance)
        check_name(name)
        dt = _check_dtype(dtype)
        cap = _check_capacity(capacity)
        posix = shm_name(instance, name)
        size = segment_length(cap, dt.itemsize)
        try:
            shm = posix_ipc.SharedMemory(posix, posix_ipc.O_CREX, mode=SEGMENT_MODE, size=size)
        except posix_ipc.ExistentialError:
            stale, what = _stale_or_in_use(posix)
            if not (stale and replace_stale):
                hint = "; remove it with remove_ring() or replace_stale=True" if stale else ""
                raise FileExistsError(f"ring {posix} exists: {what}{hint}") from None
            logger.warning("ring stale, replaced ring=%s state=%r", posix, what)
            remove_ring(instance, name)
            return cls.create(instance, name, dt, cap)
        try:
            mm = mmap.mmap(shm.fd, size)
        except BaseException:
            shm.unlink()
            raise
        finally:
            shm.close_fd()
        try:
            creator = current_creator()
            sem = cls._new_semaphore(posix)
            meta = pack_metadata(
                RingHeader(
                    bytes(MAGIC_LENGTH), VERSION, dt.itemsize, cap, descr_hash(dt),
                    RECORDS_OFFSET, creator.pid, creator.start_ticks, creator.boot_id,
                    creator.created_ns,
                )
            )  # fmt: skip
            mm[: len(meta)] = meta
            mm[MAGIC_OFFSET : MAGIC_OFFSET + MAGIC_LENGTH] = MAGIC  # last: the ring is ready
        except BaseException:
            mm.close()
            remove_ring(instance, name)
            raise
        logger.info("ring created ring=%s capacity=%d record_bytes=%d", posix, cap, dt.itemsize)
        return cls(instance, name, dt, cap, mm, sem, creator, owner=True)

    @staticmethod
    def _new_semaphore(posix: str) -> Any:
        # We hold the segment's name exclusively, so a semaphore by that name is a
        # leftover of an earlier ring: it may hold stale posts.
        with contextlib.suppress(posix_ipc.ExistentialError):
            posix_ipc.unlink_semaphore(posix)
        return posix_ipc.Semaphore(posix, posix_ipc.O_CREX, mode=SEGMENT_MODE, initial_value=0)

    @classmethod
    def attach(cls, instance: str, name: str, dtype: Any, capacity: int | None = None) -> SpscRing:
        """Map the existing ring ``name`` of ``instance``.

        Checks magic, layout version, record length and dtype, capacity (a power of
        two, and ``capacity`` if given) and the segment's size: ``ValueError`` saying
        which; ``FileNotFoundError`` if the ring or its semaphore is missing.
        """
        check_instance(instance)
        check_name(name)
        dt = _check_dtype(dtype)
        posix = shm_name(instance, name)
        try:
            shm = posix_ipc.SharedMemory(posix, 0)
        except posix_ipc.ExistentialError as exc:
            raise FileNotFoundError(f"no ring {posix}") from exc
        try:
            size = os.fstat(shm.fd).st_size
            header = _validate(f"ring {posix}", _read_header(shm.fd), size, dt, capacity)
            mm = mmap.mmap(shm.fd, size)
        finally:
            shm.close_fd()
        try:
            sem = posix_ipc.Semaphore(posix, 0)
        except posix_ipc.ExistentialError as exc:
            mm.close()
            raise FileNotFoundError(f"ring {posix} has no semaphore") from exc
        return cls(instance, name, dt, header.capacity, mm, sem, _creator_of(header), False)

    # -------------------------------------------------------- properties

    @property
    def name(self) -> str:
        """The ring's name within its instance."""
        return self._name

    @property
    def posix_name(self) -> str:
        """``/matchd.<instance>.<name>``: the segment's and the semaphore's name."""
        return self._posix

    @property
    def dtype(self) -> np.dtype[Any]:
        """The record dtype."""
        return self._dtype

    @property
    def capacity(self) -> int:
        """Records the ring holds (a power of two)."""
        return self._capacity

    @property
    def creator(self) -> Creator:
        """The process that created the ring."""
        return self._creator

    @property
    def owner(self) -> bool:
        """True in the process that created the ring (not in a forked child)."""
        return self._owner and self._creator.pid == os.getpid()

    @property
    def header_words(self) -> np.ndarray:
        """The header as int64 words (``ipc.ring_layout.*_WORD``), for kernels."""
        self._check_open()
        return self._header

    @property
    def records(self) -> np.ndarray:
        """The record area (``capacity`` records), for kernels."""
        self._check_open()
        return self._records

    # -------------------------------------------------------- hot path

    def _check_array(self, arr: np.ndarray, what: str) -> np.ndarray:
        if self._mm is None:
            raise ClosedError(f"ring {self._posix} was closed here")
        if (
            not isinstance(arr, np.ndarray)
            or arr.dtype != self._dtype
            or arr.ndim != 1
            or not arr.flags.c_contiguous
        ):
            raise TypeError(
                f"ring {self._posix}: {what} must be a 1-d C-contiguous array of {self._dtype}"
            )
        return arr

    def push_nowait(self, records: np.ndarray) -> int:
        """Push as many of ``records`` as fit, in order; how many (0 when full). Never
        blocks. Wakes the consumer if it is sleeping."""
        src = self._check_array(records, "records")
        pushed: int = push_batch(self._header, self._records, src, src.shape[0])
        if pushed < 0:
            raise BrokenError(f"ring {self._posix}: positions are impossible (damaged)")
        if pushed:
            self.wake_if_sleeping()
        return pushed

    def wake_if_sleeping(self) -> bool:
        """Producer: post the semaphore if the consumer announced it sleeps; whether it
        did. Call it after ``push_batch`` from a kernel (``push_nowait`` does)."""
        self._check_open()
        if self._header[SLEEPING_WORD] and claim_wake(self._header):
            self._sem.release()
            return True
        return False

    def pop_nowait(self, out: np.ndarray) -> int:
        """Move up to ``len(out)`` records into ``out[:k]``, oldest first; ``k`` (0 when
        empty). Never blocks."""
        dst = self._check_array(out, "out")
        if not dst.flags.writeable:
            raise TypeError(f"ring {self._posix}: out must be writeable")
        popped: int = pop_batch(self._header, self._records, dst, dst.shape[0])
        if popped < 0:
            raise BrokenError(f"ring {self._posix}: positions are impossible (damaged)")
        return popped

    def warm_up(self) -> None:
        """Compile (or load) the kernels for this dtype without moving anything."""
        empty = self._records[:0]
        push_batch(self._header, self._records, empty, 0)
        pop_batch(self._header, self._records, np.empty(0, self._dtype), 0)
        scratch = self._header.copy()  # the real flags belong to the other side
        claim_wake(scratch)
        arm_sleep(scratch)

    # -------------------------------------------------------- sleeping (consumer)

    def park_prepare(self) -> bool:
        """Announce that the consumer is about to sleep; True if it may (the ring is
        still empty after the announcement). Call ``park_done`` after, either way."""
        self._check_open()
        waiting: int = arm_sleep(self._header)
        return waiting == 0

    def park(self, timeout_s: float) -> bool:
        """Sleep until the producer posts or ``timeout_s`` passes; True if woken."""
        self._check_open()
        try:
            self._sem.acquire(timeout_s)
        except (posix_ipc.BusyError, posix_ipc.SignalError):
            return False
        return True

    def park_done(self) -> None:
        """The consumer is awake again: clear the announcement."""
        self._check_open()
        self._header[SLEEPING_WORD] = 0

    # -------------------------------------------------------- observation

    def stats(self) -> RingStats:
        """The counters now (``used`` from the two positions; advisory while the ring
        moves)."""
        h = self.header_words
        popped = int(h[CONSUMER_POSITION_WORD])  # first: pushed only grows, used >= 0
        pushed = int(h[PRODUCER_POSITION_WORD])
        return RingStats(
            capacity=self._capacity,
            used=max(0, min(self._capacity, pushed - popped)),
            peak=int(h[PEAK_WORD]),
            pushed=pushed,
            popped=popped,
            full=int(h[FULL_WORD]),
            wakeups=int(h[WAKEUPS_WORD]),
            sleeps=int(h[SLEEPS_WORD]),
        )

    # -------------------------------------------------------- lifetime

    def _check_open(self) -> None:
        if self._mm is None:
            raise ClosedError(f"ring {self._posix} was closed here")

    def close(self) -> None:
        """Unmap the ring and close the semaphore; ``BufferError`` while arrays from
        ``header_words`` or ``records`` are still referenced (then call it again)."""
        if self._mm is None:
            return
        del self._header, self._records
        try:
            self._mm.close()
        except BufferError:
            self._header = np.frombuffer(self._mm, np.int64, HEADER_WORDS)
            self._records = np.frombuffer(self._mm, self._dtype, self._capacity, RECORDS_OFFSET)
            raise BufferError(
                f"ring {self._posix}: arrays over it are still referenced; drop them first"
            ) from None
        self._mm = None
        self._sem.close()

    def unlink(self) -> list[str]:
        """Remove the ring's names (creator only: ``PermissionError`` otherwise).
        Mappings stay valid until closed. The names removed."""
        if not self.owner:
            raise PermissionError(
                f"only the process that created ring {self._posix} "
                f"(pid {self._creator.pid}) may unlink it; see remove_ring()"
            )
        if self._unlinked:
            return []
        self._unlinked = True
        return remove_ring(self._instance, self._name)

    def __repr__(self) -> str:
        role = "creator" if self._owner else "attached"
        return f"SpscRing({self._posix!r}, {self._dtype}, capacity={self._capacity}, {role})"
