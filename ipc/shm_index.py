"""The naming, index and liveness of shared-memory instances (``ipc.shm`` maps them).

``/matchd.<instance>.<name>`` names one array; ``/matchd.<instance>.__index__`` lists
every array of the instance and who created it (see ``ipc.shm`` for the layout), so a
set left behind by a crashed run is found (``find_stale``) and removed
(``remove_instance``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import mmap
import os
import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import posix_ipc

from ipc.ring_layout import HEADER_LENGTH as RING_HEADER_LENGTH
from ipc.ring_layout import MAGIC as RING_MAGIC
from ipc.ring_layout import MAGIC_OFFSET as RING_MAGIC_OFFSET
from ipc.ring_layout import unpack_metadata as unpack_ring_metadata

logger = logging.getLogger(__name__)


SHM_DIR = Path("/dev/shm")  # noqa: S108 - where Linux shows POSIX shared memory
PREFIX = "matchd"
INDEX_NAME = "__index__"
MAX_INSTANCE_LENGTH = 64
MAX_NAME_LENGTH = 64
SEGMENT_MODE = 0o600  # the daemon's own user only

INDEX_MAGIC = b"MATCHDIX"
INDEX_VERSION = 1
MAGIC_OFFSET = 0
VERSION_OFFSET = 8
GENERATION_OFFSET = 16
BODY_LENGTH_OFFSET = 24
BODY_OFFSET = 32
INDEX_LENGTH = 256 * 1024  # tmpfs pages are allocated on first touch
MAX_BODY_LENGTH = INDEX_LENGTH - BODY_OFFSET

_READ_ATTEMPTS = 1000
_WORD = re.compile(r"[A-Za-z0-9_-]+")
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


# ------------------------------------------------------------------ names


def check_instance(instance: str) -> str:
    """``instance`` if it is 1..64 of ``[A-Za-z0-9_-]``, else ``ValueError``."""
    if (
        not isinstance(instance, str)
        or not 0 < len(instance) <= MAX_INSTANCE_LENGTH
        or not _WORD.fullmatch(instance)
    ):
        raise ValueError(
            f"shared-memory instance must be 1 to {MAX_INSTANCE_LENGTH} characters of "
            f"A-Z a-z 0-9 _ -; got {instance!r}"
        )
    return instance


def check_name(name: str) -> str:
    """``name`` if it is a valid array name, else ``ValueError``.

    Rules as for instances; names starting with ``__`` are reserved (the index).
    """
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= MAX_NAME_LENGTH
        or not _WORD.fullmatch(name)
    ):
        raise ValueError(
            f"shared-memory array name must be 1 to {MAX_NAME_LENGTH} characters of "
            f"A-Z a-z 0-9 _ -; got {name!r}"
        )
    if name.startswith("__"):
        raise ValueError(f"array names starting with '__' are reserved; got {name!r}")
    return name


def shm_name(instance: str, name: str) -> str:
    """The POSIX name of array ``name`` of ``instance``: ``/matchd.<instance>.<name>``."""
    return f"/{PREFIX}.{instance}.{name}"


# ------------------------------------------------------------------ records


@dataclass(frozen=True, slots=True)
class Creator:
    """The process that created an instance.

    ``start_ticks`` is field 22 of ``/proc/<pid>/stat`` (-1 if unknown): with the pid it
    tells the creator from a later process given the same pid. ``created_ns`` is wall
    clock, for people only.
    """

    pid: int
    boot_id: str
    start_ticks: int
    created_ns: int


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One array of an instance. A 0-byte array has no segment."""

    name: str
    shm_name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True, slots=True)
class InstanceIndex:
    """What the index segment of an instance says."""

    instance: str
    creator: Creator
    arrays: tuple[SegmentInfo, ...]

    def find(self, name: str) -> SegmentInfo | None:
        """The entry of array ``name``, if listed."""
        return next((s for s in self.arrays if s.name == name), None)


# ------------------------------------------------------------------ liveness


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text(encoding="ascii").strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of ``pid`` from /proc, None if no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    return fields[0], int(fields[19])


def current_creator() -> Creator:
    """This process, as an index records it."""
    pid = os.getpid()
    stat = _proc_stat(pid) if Path("/proc/self/stat").exists() else None
    return Creator(pid, _boot_id(), stat[1] if stat else -1, time.time_ns())


def creator_alive(creator: Creator) -> bool:
    """Whether ``creator`` still runs: same boot, and its pid names a live (not zombie)
    process that started when the creator did."""
    boot = _boot_id()
    if creator.boot_id and boot and creator.boot_id != boot:
        return False
    if not Path("/proc/self/stat").exists():  # no /proc: the pid is all we can check
        try:
            os.kill(creator.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    stat = _proc_stat(creator.pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return creator.start_ticks < 0 or stat[1] == creator.start_ticks


# ------------------------------------------------------------------ index


def index_body(instance: str, creator: Creator, arrays: list[SegmentInfo]) -> bytes:
    doc = {
        "instance": instance,
        "creator": {
            "pid": creator.pid,
            "boot_id": creator.boot_id,
            "start_ticks": creator.start_ticks,
            "created_ns": creator.created_ns,
        },
        "arrays": [
            {
                "name": s.name,
                "descr": np.lib.format.dtype_to_descr(s.dtype),
                "shape": list(s.shape),
                "nbytes": s.nbytes,
            }
            for s in arrays
        ],
    }
    body = json.dumps(doc, separators=(",", ":")).encode()
    if len(body) > MAX_BODY_LENGTH:
        raise ValueError(
            f"shared-memory index of {instance!r} is full: {len(arrays)} arrays need "
            f"{len(body)} bytes, the index holds {MAX_BODY_LENGTH}"
        )
    return body


def write_body(mm: mmap.mmap, body: bytes) -> None:
    """Rewrite the body under the sequence lock (only the creator writes)."""
    (gen,) = struct.unpack_from("<Q", mm, GENERATION_OFFSET)
    struct.pack_into("<Q", mm, GENERATION_OFFSET, gen | 1)
    mm[BODY_OFFSET : BODY_OFFSET + len(body)] = body
    struct.pack_into("<Q", mm, BODY_LENGTH_OFFSET, len(body))
    struct.pack_into("<Q", mm, GENERATION_OFFSET, (gen | 1) + 1)


def _read_body(mm: mmap.mmap, what: str) -> bytes:
    if mm[MAGIC_OFFSET : MAGIC_OFFSET + 8] != INDEX_MAGIC:
        raise ValueError(f"{what}: bad magic (not a matchd index, or not yet written)")
    (version,) = struct.unpack_from("<I", mm, VERSION_OFFSET)
    if version != INDEX_VERSION:
        raise ValueError(f"{what}: version {version}, this code reads {INDEX_VERSION}")
    for _ in range(_READ_ATTEMPTS):
        (before,) = struct.unpack_from("<Q", mm, GENERATION_OFFSET)
        (length,) = struct.unpack_from("<Q", mm, BODY_LENGTH_OFFSET)
        if length > MAX_BODY_LENGTH:
            raise ValueError(f"{what}: body length {length} exceeds {MAX_BODY_LENGTH}")
        body = bytes(mm[BODY_OFFSET : BODY_OFFSET + length])
        (after,) = struct.unpack_from("<Q", mm, GENERATION_OFFSET)
        if before == after and not before & 1:
            return body
        os.sched_yield()
    raise ValueError(f"{what}: still being written after {_READ_ATTEMPTS} attempts")


def _int(value: object, what: str, low: int = 0) -> int:
    if type(value) is not int or value < low:
        raise ValueError(f"{what} must be an integer >= {low}; got {value!r}")
    return value


def _parse_creator(raw: Any) -> Creator:
    if not isinstance(raw, dict) or not isinstance(raw.get("boot_id"), str):
        raise ValueError("creator is not an object with a boot_id")
    return Creator(
        _int(raw.get("pid"), "creator pid", 1),
        raw["boot_id"],
        _int(raw.get("start_ticks"), "creator start_ticks", -1),
        _int(raw.get("created_ns"), "creator created_ns"),
    )


def _parse_array(instance: str, raw: Any) -> SegmentInfo:
    if not isinstance(raw, dict) or not isinstance(raw.get("shape"), list):
        raise ValueError(f"array entry {raw!r} is not an object with a shape")
    name = check_name(raw["name"])
    dtype = np.lib.format.descr_to_dtype(raw["descr"])
    shape = tuple(_int(n, f"array {name!r} shape") for n in raw["shape"])
    nbytes = _int(raw.get("nbytes"), f"array {name!r} nbytes")
    if dtype.hasobject or nbytes != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"array {name!r}: {nbytes} bytes do not hold {dtype} {shape}")
    return SegmentInfo(name, shm_name(instance, name), dtype, shape, nbytes)


def _parse_index(instance: str, body: bytes) -> InstanceIndex:
    doc = json.loads(body)
    if not isinstance(doc, dict) or doc.get("instance") != instance:
        raise ValueError(f"index is of instance {doc.get('instance')!r}")
    raw_arrays = doc.get("arrays")
    if not isinstance(raw_arrays, list):
        raise ValueError("index has no array list")
    arrays = tuple(_parse_array(instance, a) for a in raw_arrays)
    if len({a.name for a in arrays}) != len(arrays):
        raise ValueError("index lists an array twice")
    return InstanceIndex(instance, _parse_creator(doc.get("creator")), arrays)


def read_index(instance: str) -> InstanceIndex:
    """The index of ``instance``.

    ``FileNotFoundError`` if it has none; ``ValueError`` (saying what is wrong) if the
    index is damaged or was written by another version.
    """
    name = shm_name(check_instance(instance), INDEX_NAME)
    try:
        shm = posix_ipc.SharedMemory(name, 0, read_only=True)
    except posix_ipc.ExistentialError as exc:
        raise FileNotFoundError(f"no shared-memory instance {instance!r} ({name})") from exc
    try:
        if os.fstat(shm.fd).st_size != INDEX_LENGTH:
            raise ValueError(f"index {name} is not {INDEX_LENGTH} bytes")
        mm = mmap.mmap(shm.fd, INDEX_LENGTH, prot=mmap.PROT_READ)
    finally:
        shm.close_fd()
    with mm:
        body = _read_body(mm, f"index {name}")
    try:
        return _parse_index(instance, body)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:  # bad descr
        raise ValueError(f"index {name} is damaged: {exc}") from exc


# ------------------------------------------------------------------ instances


def list_segments(instance: str) -> list[str]:
    """POSIX names of every segment of ``instance`` present now (Linux: /dev/shm)."""
    check_instance(instance)
    if not SHM_DIR.is_dir():
        raise NotImplementedError(f"listing shared memory needs {SHM_DIR} (Linux)")
    prefix = f"{PREFIX}.{instance}."
    return sorted(
        "/" + entry.name
        for entry in os.scandir(SHM_DIR)
        if entry.name.startswith(prefix) and _WORD.fullmatch(entry.name[len(prefix) :])
    )


def _segment_bytes(name: str) -> int:
    try:
        return (SHM_DIR / name.lstrip("/")).stat().st_size
    except FileNotFoundError:
        return -1


def ring_alive(name: str) -> bool | None:
    """For a ring segment (``ipc.ring``, which shares the naming): True while the
    process that created it runs, False after; None if ``name`` is not a finished
    ring (a ring's magic is written last)."""
    try:
        with (SHM_DIR / name.lstrip("/")).open("rb") as f:
            raw = f.read(RING_HEADER_LENGTH)
    except OSError:
        return None
    if (
        len(raw) < RING_HEADER_LENGTH
        or raw[RING_MAGIC_OFFSET : RING_MAGIC_OFFSET + 8] != RING_MAGIC
    ):
        return None
    h = unpack_ring_metadata(raw)
    return creator_alive(
        Creator(h.creator_pid, h.creator_boot_id, h.creator_start_ticks, h.created_ns)
    )


def find_stale(instance: str) -> list[str]:
    """Segments of ``instance`` that no live process owns. Sorted POSIX names.

    The allocator's segments (the index and the arrays): all of them when the index
    is missing or damaged, its creator has exited, or a segment it lists is missing or
    of another size; none while the creator runs. Rings (``ipc.ring``) have their own
    creator: a ring is stale when its creator has exited.

    Meant for a supervisor at start, before it creates the instance: a creator that is
    between claiming the index and writing it looks damaged for that moment.
    """
    stale: list[str] = []
    names = []
    for name in list_segments(instance):
        alive = ring_alive(name)
        if alive is None:
            names.append(name)
        elif not alive:
            stale.append(name)
    if names:
        try:
            index = read_index(instance)
        except (FileNotFoundError, ValueError):
            return sorted(stale + names)
        if not creator_alive(index.creator) or any(
            _segment_bytes(s.shm_name) != s.nbytes for s in index.arrays if s.nbytes
        ):
            return sorted(stale + names)
    return sorted(stale)


def remove_instance(instance: str) -> list[str]:
    """Unlink every segment of ``instance`` (the index last); the POSIX names removed.

    Forceful: a running instance loses its names (its mappings stay valid until
    closed). Check ``find_stale`` first unless the instance is known to be stopped.
    """
    index = shm_name(instance, INDEX_NAME)
    removed = []
    for name in sorted(list_segments(instance), key=lambda n: n == index):
        is_ring = ring_alive(name) is not None
        try:
            posix_ipc.unlink_shared_memory(name)
        except posix_ipc.ExistentialError:
            continue  # someone else removed it meanwhile
        removed.append(name)
        if is_ring:  # and the ring's doorbell, a semaphore of the same name
            with contextlib.suppress(posix_ipc.ExistentialError):
                posix_ipc.unlink_semaphore(name)
    if removed:
        logger.info("shm instance removed instance=%s segments=%d", instance, len(removed))
    return removed
