"""Where the engine's arrays come from.

Core never maps memory itself: it asks an ``Allocator`` for named arrays. The heap
allocator here serves tests, embedding and a small deployment; ``ipc`` provides one
backed by POSIX shared memory, so that other processes can map the same state.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Allocator(Protocol):
    """Hands out zero-filled arrays by name."""

    def array(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A new zero-filled array; ``name`` is unique within one engine."""
        ...


class HeapAllocator:
    """Arrays on the process heap (``np.zeros``: pages are mapped lazily, on first touch)."""

    def __init__(self) -> None:
        self.allocated_bytes = 0

    def array(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A new zero-filled array."""
        arr = np.zeros(shape, dtype=dtype)
        self.allocated_bytes += arr.nbytes
        return arr


def join_records(parts: list[np.ndarray], dtype: np.dtype[Any]) -> np.ndarray:
    """A new array of the records of ``parts`` (each of ``dtype``), joined as bytes:
    ``np.concatenate`` of record arrays compares the fields of every part (~40 µs
    each), which a loop of one-command frames cannot afford."""
    if not parts:
        return np.zeros(0, dtype=dtype)
    return np.concatenate([np.ascontiguousarray(p).view(np.uint8) for p in parts]).view(dtype)
