"""Where the engine's arrays come from.

Core never maps memory itself: it asks an ``Allocator`` for named arrays. The heap
allocator here serves tests, embedding and a small deployment; ``ipc`` provides one
backed by POSIX shared memory, so that other processes can map the same state.
"""

from __future__ import annotations

from typing import Protocol

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
