"""Interned source tags: one copy of each distinct tag, shared by the orders that hold it.

An order stores a 4-byte tag id instead of its 32-byte tag. Tags are reference
counted: a tag lives while an order (resting, or the taker being matched) holds it,
and its id is reused after. The table has a row for every order the pools can hold
plus the scratch taker, so it cannot fill before the book does. Tag 0 is the empty
tag and is never stored.
"""

from __future__ import annotations

import numpy as np

from core.kernels.hashmap import EMPTY, slot_of, stays
from core.kernels.jit import inline
from core.kernels.layout import (
    B_SRC_DATA,
    B_SRC_IDX,
    B_SRC_REFS,
    B_SRC_STATE,
    NIL,
    SRC_LEN,
    SS_BUMP,
    SS_FREE,
    SS_LIVE,
)

_HASH_MASK = (1 << 40) - 1


@inline
def _hash(src: np.ndarray, n: int) -> int:
    """Hash of the first ``n`` bytes; below 2**40, so no step can overflow."""
    h = np.int64(n)
    for i in range(n):
        h = (h * 257 + src[i]) & _HASH_MASK
    return int(h)


@inline
def _equal(row: np.ndarray, src: np.ndarray, n: int) -> bool:
    if row[SRC_LEN] != n:
        return False
    for i in range(n):  # noqa: SIM110 (numba compiles no generator into all())
        if row[i] != src[i]:
            return False
    return True


@inline
def acquire(book, src: np.ndarray, n: int) -> int:
    """Id of the tag ``src[:n]`` (0..30 bytes), with one more holder."""
    if n == 0:
        return 0
    data = book[B_SRC_DATA]
    refs = book[B_SRC_REFS]
    idx = book[B_SRC_IDX]
    mask = idx.shape[0] - 1
    i = slot_of(_hash(src, n), mask)
    while True:
        v = idx[i]
        if v == EMPTY:
            break
        if _equal(data[v], src, n):
            refs[v] += 1
            return v
        i = (i + 1) & mask
    state = book[B_SRC_STATE]
    v = state[SS_FREE]
    if v == NIL:
        v = state[SS_BUMP]
        state[SS_BUMP] = v + 1
    else:
        state[SS_FREE] = refs[v]
    row = data[v]
    for j in range(SRC_LEN):
        row[j] = src[j] if j < n else 0
    row[SRC_LEN] = n
    refs[v] = 1
    idx[i] = v
    state[SS_LIVE] += 1
    return v


@inline
def release(book, v: int) -> None:
    """One holder of tag ``v`` is gone; the tag is freed with its last holder."""
    if v == 0:
        return
    refs = book[B_SRC_REFS]
    refs[v] -= 1
    if refs[v] > 0:
        return
    data = book[B_SRC_DATA]
    idx = book[B_SRC_IDX]
    mask = idx.shape[0] - 1
    i = slot_of(_hash(data[v], data[v, SRC_LEN]), mask)
    while idx[i] != v:
        i = (i + 1) & mask
    # Shift later entries of the probe run back into the hole (no tombstones).
    j = i
    while True:
        j = (j + 1) & mask
        w = idx[j]
        if w == EMPTY:
            break
        if stays(i, j, slot_of(_hash(data[w], data[w, SRC_LEN]), mask)):
            continue
        idx[i] = w
        i = j
    idx[i] = EMPTY
    state = book[B_SRC_STATE]
    refs[v] = state[SS_FREE]
    state[SS_FREE] = v
    state[SS_LIVE] -= 1


@inline
def copy_to(book, v: int, dst: np.ndarray) -> int:
    """Write tag ``v`` into the 32-byte ``dst`` (zero padded); returns its length."""
    if v == 0:
        for j in range(dst.shape[0]):
            dst[j] = 0
        return 0
    row = book[B_SRC_DATA][v]
    n = row[SRC_LEN]
    for j in range(dst.shape[0]):
        dst[j] = row[j] if j < n else 0
    return n
