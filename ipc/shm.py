"""Named arrays in POSIX shared memory: an ``Allocator`` (``core.memory``) whose arrays
other processes can map (docs/daemon.md, "Shared memory").

Every array is one segment, ``/matchd.<instance>.<name>``, sized exactly
``prod(shape) * itemsize`` and zero-filled (a new segment is). A sidecar segment,
``/matchd.<instance>.__index__``, records every array (name, dtype, shape, size) and
who created the set (pid, process start time, boot id), so that:

- another process (a worker, ``matchctl``) attaches to the whole set by instance name
  alone (``ShmAllocator(instance, create=False).attach_all()``), with every size
  checked against the index;
- a set left behind by a crashed run is recognised at start (``find_stale``) and
  removed (``remove_instance``).

Index segment layout (``INDEX_LENGTH`` bytes, little-endian)::

    0        8          12         16           24            32
    +--------+----------+----------+------------+-------------+----------------------+
    | magic  | version  | reserved | generation | body length | body: JSON, UTF-8 ...|
    +--------+----------+----------+------------+-------------+----------------------+

``generation`` is a sequence lock: the creator makes it odd while it rewrites the body
and even again after, and a reader retries until it reads the same even value before
and after the body. The body is JSON (dtypes as ``np.lib.format.dtype_to_descr``),
never pickle: reading an index runs no code.

Lifetime: ``close()`` unmaps, ``unlink()`` removes the names (creator only); mappings
that exist survive an unlink until they are closed. A numpy array returned here is a
view of the mapping and holds it open: ``close()`` refuses (``BufferError``, naming the
arrays) while any such array, or a view of one, is still referenced, so no array can
outlive its memory. Drop them (e.g. the ``Engine`` built over them) before closing.

Linux only for listing (``/dev/shm``). A creator is "alive" when a process with its pid
and start time exists in our pid namespace and the boot id is the same; processes that
share ``/dev/shm`` across pid namespaces would need another notion of liveness.
"""

from __future__ import annotations

import contextlib
import logging
import math
import mmap
import os
import struct
from typing import Any

import numpy as np
import posix_ipc

from core.errors import ClosedError
from ipc.lifetime import SharedLifetime
from ipc.shm_index import (
    INDEX_LENGTH,
    INDEX_MAGIC,
    INDEX_NAME,
    INDEX_VERSION,
    MAGIC_OFFSET,
    SEGMENT_MODE,
    SHM_DIR,
    VERSION_OFFSET,
    Creator,
    InstanceIndex,
    SegmentInfo,
    check_instance,
    check_name,
    creator_alive,
    current_creator,
    find_stale,
    index_body,
    list_segments,
    read_index,
    remove_instance,
    ring_alive,
    shm_name,
    write_body,
)

__all__ = [
    "INDEX_NAME",
    "SHM_DIR",
    "Creator",
    "InstanceIndex",
    "SegmentInfo",
    "ShmAllocator",
    "check_instance",
    "check_name",
    "creator_alive",
    "current_creator",
    "find_stale",
    "list_segments",
    "read_index",
    "remove_instance",
    "shm_name",
]

logger = logging.getLogger(__name__)


def _create_segment(name: str, nbytes: int) -> mmap.mmap:
    try:
        shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=SEGMENT_MODE, size=nbytes)
    except posix_ipc.ExistentialError as exc:
        raise FileExistsError(f"shared-memory segment {name} already exists") from exc
    try:
        return mmap.mmap(shm.fd, nbytes)
    except BaseException:
        shm.unlink()
        raise
    finally:
        shm.close_fd()


def _open_segment(info: SegmentInfo, readonly: bool) -> mmap.mmap:
    try:
        shm = posix_ipc.SharedMemory(info.shm_name, 0, read_only=readonly)
    except posix_ipc.ExistentialError as exc:
        raise FileNotFoundError(f"shared-memory segment {info.shm_name} is missing") from exc
    try:
        size = os.fstat(shm.fd).st_size
        if size != info.nbytes:
            raise ValueError(
                f"shared-memory segment {info.shm_name} is {size} bytes; {info.dtype} "
                f"{info.shape} needs {info.nbytes} (another run, or a damaged instance)"
            )
        prot = mmap.PROT_READ if readonly else mmap.PROT_READ | mmap.PROT_WRITE
        return mmap.mmap(shm.fd, info.nbytes, prot=prot)
    finally:
        shm.close_fd()


def _view(info: SegmentInfo, mm: mmap.mmap | None, readonly: bool) -> np.ndarray:
    """An array over ``mm``; it holds the mapping open (``mmap.close`` refuses)."""
    if mm is None:  # 0 bytes: nothing to share
        arr = np.zeros(info.shape, dtype=info.dtype)
        arr.flags.writeable = not readonly
        return arr
    count = math.prod(info.shape)
    return np.frombuffer(mm, dtype=info.dtype, count=count).reshape(info.shape)


def _check_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or not all(
        isinstance(n, int | np.integer) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise ValueError(f"shape must be a tuple of integers >= 0; got {shape!r}")
    return tuple(int(n) for n in shape)


def _check_same(listed: SegmentInfo, wanted: SegmentInfo, instance: str) -> None:
    if listed.dtype != wanted.dtype or listed.shape != wanted.shape:
        raise ValueError(
            f"array {wanted.name!r} of {instance!r} is {listed.dtype} "
            f"{listed.shape}; asked for {wanted.dtype} {wanted.shape}"
        )


# ------------------------------------------------------------------ allocator


class ShmAllocator(SharedLifetime):
    """An ``Allocator`` over POSIX shared memory; see the module docstring.

    ``create=True`` claims ``instance`` (``FileExistsError`` if it exists: in use, or
    stale, which the message says) and creates one segment per ``array`` call.
    ``create=False`` attaches: ``array`` maps the segment the index lists, after
    checking dtype, shape and size; ``readonly`` maps it read-only (arrays not
    writeable; numba compiles read-only arrays separately, so use it for inspection).
    """

    def __init__(self, instance: str, *, create: bool = True, readonly: bool = False) -> None:
        self._instance = check_instance(instance)
        if create and readonly:
            raise ValueError("a creating ShmAllocator cannot be read-only")
        self._create = create
        self._readonly = readonly
        self._closed = False
        self._unlinked = False
        self._infos: dict[str, SegmentInfo] = {}
        self._maps: dict[str, mmap.mmap | None] = {}
        self._index_map: mmap.mmap | None = None
        if create:
            self._creator = current_creator()
            self._index_map = self._claim()
        else:
            self._creator = read_index(instance).creator

    # -------------------------------------------------------- properties

    @property
    def instance(self) -> str:
        """The instance name."""
        return self._instance

    @property
    def creator(self) -> Creator:
        """The process that created the instance (this one, if ``owner``)."""
        return self._creator

    @property
    def owner(self) -> bool:
        """True in the process that created the instance (not in a forked child)."""
        return self._create and self._creator.pid == os.getpid()

    @property
    def allocated_bytes(self) -> int:
        """Bytes of the arrays mapped here."""
        return sum(info.nbytes for info in self._infos.values())

    def segments(self) -> tuple[SegmentInfo, ...]:
        """The arrays created or attached here, in order."""
        return tuple(self._infos.values())

    # -------------------------------------------------------- arrays

    def array(self, name: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        """A zero-filled array in a new segment, or (attaching) the existing one.

        Names are unique within an instance; a creator asking twice gets ``ValueError``.
        """
        if self._closed or self._unlinked:
            raise ClosedError(
                f"shared-memory instance {self._instance!r} was closed or unlinked here"
            )
        shape = _check_shape(shape)
        dtype = np.dtype(dtype)
        if dtype.hasobject:
            raise ValueError(f"array {name!r}: object dtypes cannot live in shared memory")
        info = SegmentInfo(
            check_name(name),
            shm_name(self._instance, name),
            dtype,
            shape,
            math.prod(shape) * dtype.itemsize,
        )
        if self._create:
            self._add(info)
        elif name in self._infos:
            _check_same(self._infos[name], info, self._instance)
        else:
            self._attach(info)
        return _view(self._infos[name], self._maps[name], self._readonly)

    def attach_all(self) -> dict[str, np.ndarray]:
        """Every array of the instance by name (for a creator: those created so far)."""
        if not self._create:
            for info in read_index(self._instance).arrays:
                if info.name not in self._infos:
                    self.array(info.name, info.shape, info.dtype)
        return {
            name: _view(info, self._maps[name], self._readonly)
            for name, info in self._infos.items()
        }

    def _add(self, info: SegmentInfo) -> None:
        assert self._index_map is not None  # noqa: S101 - set whenever _create is
        if info.name in self._infos:
            raise ValueError(f"array {info.name!r} already exists in {self._instance!r}")
        body = index_body(self._instance, self._creator, [*self._infos.values(), info])
        mm = _create_segment(info.shm_name, info.nbytes) if info.nbytes else None
        try:
            write_body(self._index_map, body)
        except BaseException:
            if mm is not None:
                mm.close()
                posix_ipc.unlink_shared_memory(info.shm_name)
            raise
        self._infos[info.name] = info
        self._maps[info.name] = mm

    def _attach(self, wanted: SegmentInfo) -> None:
        listed = read_index(self._instance).find(wanted.name)
        if listed is None:
            raise FileNotFoundError(
                f"instance {self._instance!r} has no array {wanted.name!r} in its index"
            )
        _check_same(listed, wanted, self._instance)
        mm = _open_segment(listed, self._readonly) if listed.nbytes else None
        self._infos[listed.name] = listed
        self._maps[listed.name] = mm

    def _claim(self) -> mmap.mmap:
        """Create the index exclusively (this claims the instance) and write it."""
        name = shm_name(self._instance, INDEX_NAME)
        try:
            mm = _create_segment(name, INDEX_LENGTH)
        except FileExistsError as exc:
            raise FileExistsError(self._exists_message()) from exc
        try:
            write_body(mm, index_body(self._instance, self._creator, []))
            struct.pack_into("<I", mm, VERSION_OFFSET, INDEX_VERSION)
            mm[MAGIC_OFFSET : MAGIC_OFFSET + 8] = INDEX_MAGIC  # last: the index is valid
            leftovers = [
                n for n in list_segments(self._instance) if n != name and not ring_alive(n)
            ]
            if leftovers:
                raise FileExistsError(
                    f"shared-memory instance {self._instance!r} has leftover segments "
                    f"{leftovers} but no index; remove them with remove_instance()"
                )
        except BaseException:
            mm.close()
            posix_ipc.unlink_shared_memory(name)
            raise
        logger.info("shm instance created instance=%s pid=%d", self._instance, os.getpid())
        return mm

    def _exists_message(self) -> str:
        stale = find_stale(self._instance)
        if stale:
            return (
                f"shared-memory instance {self._instance!r} is left over from a run that "
                f"ended ({len(stale)} stale segments); remove it with remove_instance()"
            )
        try:
            pid: object = read_index(self._instance).creator.pid
        except (FileNotFoundError, ValueError):
            pid = "unknown"
        return f"shared-memory instance {self._instance!r} is in use (creator pid {pid})"

    # -------------------------------------------------------- lifetime

    def close(self) -> None:
        """Unmap every segment; later ``array`` calls raise ``ClosedError``.

        ``BufferError`` naming the arrays still referenced (their mappings stay; call
        ``close`` again once they are gone). Closing does not remove the names.
        """
        self._closed = True
        if self._index_map is not None:
            self._index_map.close()
        busy = []
        for name, mm in self._maps.items():
            if mm is None or mm.closed:
                continue
            try:
                mm.close()
            except BufferError:
                busy.append(name)
        if busy:
            raise BufferError(
                f"arrays {busy} of shared-memory instance {self._instance!r} are still "
                "referenced; drop them (e.g. the Engine over them) before close()"
            )

    def unlink(self) -> list[str]:
        """Remove the instance's names (creator only; ``PermissionError`` otherwise).

        Mappings stay valid until closed. Returns the POSIX names removed.
        """
        if not self.owner:
            raise PermissionError(
                f"only the process that created shared-memory instance {self._instance!r} "
                f"(pid {self._creator.pid}) may unlink it; see remove_instance()"
            )
        if self._unlinked:
            return []
        self._unlinked = True
        names = [i.shm_name for i in self._infos.values() if i.nbytes]
        names.append(shm_name(self._instance, INDEX_NAME))
        removed = []
        for name in names:
            with contextlib.suppress(posix_ipc.ExistentialError):
                posix_ipc.unlink_shared_memory(name)
                removed.append(name)
        logger.info("shm instance unlinked instance=%s", self._instance)
        return removed

    def __repr__(self) -> str:
        role = "creator" if self._create else "attached"
        return f"ShmAllocator({self._instance!r}, {role}, arrays={len(self._infos)})"
