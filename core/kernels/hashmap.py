"""Open-addressing hash maps over preallocated arrays (linear probing).

Keys are non-negative int64 below 2**62. A table stores ``key + 1``, so that 0 marks a
free slot and a freshly mapped (zeroed) table is empty without being written: large
tables cost memory only as they fill. Capacity is a power of two kept at least twice
the number of live keys by the callers, so probes stay short. Deletion shifts entries
back (no tombstones), so the table never degrades.
"""

from __future__ import annotations

import numpy as np

from core.kernels.jit import inline

EMPTY = 0
#: Keys are below this; ``find`` answers "absent" for anything else (hostile input).
MAX_KEY = 1 << 62

_LOW31 = 0x7FFFFFFF
_MUL_LO = 2654435761  # odd 32-bit multipliers (Knuth, Murmur3)
_MUL_HI = 2246822519


@inline
def slot_of(key: int, mask: int) -> int:
    """The ideal slot of a stored key.

    Every product stays below 2**63: signed overflow is undefined behaviour in the
    code numba generates (the same expression could hash differently where it is
    inlined), and plain Python would not wrap at all under NUMBA_DISABLE_JIT.
    """
    k = np.int64(key)  # a narrower integer would overflow below (without JIT)
    lo = k & _LOW31
    hi = (k >> 31) & _LOW31
    h = (lo * _MUL_LO) ^ (hi * _MUL_HI)
    h ^= h >> 29
    return int(h & mask)


@inline
def find(keys: np.ndarray, key: int) -> int:
    """Slot holding ``key``, or -1."""
    if key < 0 or key >= MAX_KEY:
        return -1
    mask = keys.shape[0] - 1
    stored = key + 1
    i = slot_of(stored, mask)
    while True:
        k = keys[i]
        if k == stored:
            return i
        if k == EMPTY:
            return -1
        i = (i + 1) & mask


@inline
def insert_slot(keys: np.ndarray, key: int) -> int:
    """Slot for a new ``key`` (which must be absent); the caller fills the values."""
    mask = keys.shape[0] - 1
    stored = key + 1
    i = slot_of(stored, mask)
    while keys[i] != EMPTY:
        i = (i + 1) & mask
    keys[i] = stored
    return i


@inline
def stays(i: int, j: int, k: int) -> bool:
    """True if an entry at j whose ideal slot is k must not move into the hole at i."""
    if i <= j:
        return i < k <= j
    return i < k or k <= j


@inline
def remove_1(keys: np.ndarray, vals: np.ndarray, slot: int) -> None:
    """Remove the entry at ``slot`` of a map with one value array."""
    mask = keys.shape[0] - 1
    i = slot
    j = slot
    while True:
        j = (j + 1) & mask
        kj = keys[j]
        if kj == EMPTY:
            break
        if stays(i, j, slot_of(kj, mask)):
            continue
        keys[i] = kj
        vals[i] = vals[j]
        i = j
    keys[i] = EMPTY


@inline
def remove_2(keys: np.ndarray, vals_a: np.ndarray, vals_b: np.ndarray, slot: int) -> None:
    """Remove the entry at ``slot`` of a map with two value arrays."""
    mask = keys.shape[0] - 1
    i = slot
    j = slot
    while True:
        j = (j + 1) & mask
        kj = keys[j]
        if kj == EMPTY:
            break
        if stays(i, j, slot_of(kj, mask)):
            continue
        keys[i] = kj
        vals_a[i] = vals_a[j]
        vals_b[i] = vals_b[j]
        i = j
    keys[i] = EMPTY


@inline
def pair_find_or_insert(table: np.ndarray, k0: int, k1: int) -> int:
    """Set of 128-bit keys in an int64[n, 2] table ((0, 0) = free).

    Returns the slot (>= 0) if the key was already present, ``-1 - slot`` after
    inserting it. The caller keeps the table at most half full.
    """
    mask = table.shape[0] - 1
    i = slot_of(k0 & 0x3FFFFFFFFFFFFFFF, mask)
    while True:
        a = table[i, 0]
        b = table[i, 1]
        if a == k0 and b == k1:
            return i
        if a == 0 and b == 0:
            table[i, 0] = k0
            table[i, 1] = k1
            return -1 - i
        i = (i + 1) & mask


@inline
def pair_contains(table: np.ndarray, k0: int, k1: int) -> bool:
    """True if the 128-bit key is in the table."""
    mask = table.shape[0] - 1
    i = slot_of(k0 & 0x3FFFFFFFFFFFFFFF, mask)
    while True:
        a = table[i, 0]
        b = table[i, 1]
        if a == k0 and b == k1:
            return True
        if a == 0 and b == 0:
            return False
        i = (i + 1) & mask


# An index of pool records by their int64 ``id`` field: the table holds ``slot + 1``
# (0 = free) and the key is read from the record, so an entry costs 4 bytes instead
# of 12. Ids are positive.


@inline
def record_find(table: np.ndarray, records: np.ndarray, key: int) -> int:
    """Table position of the record whose id is ``key``, or -1."""
    if key <= 0 or key >= MAX_KEY:
        return -1
    mask = table.shape[0] - 1
    i = slot_of(key, mask)
    while True:
        v = table[i]
        if v == EMPTY:
            return -1
        if records[v - 1]["id"] == key:
            return i
        i = (i + 1) & mask


@inline
def record_insert(table: np.ndarray, key: int, slot: int) -> None:
    """Index ``slot`` under ``key`` (absent); the record must already carry the id."""
    mask = table.shape[0] - 1
    i = slot_of(key, mask)
    while table[i] != EMPTY:
        i = (i + 1) & mask
    table[i] = slot + 1


@inline
def record_remove(table: np.ndarray, records: np.ndarray, pos: int) -> None:
    """Remove the entry at table position ``pos`` (the other records are intact)."""
    mask = table.shape[0] - 1
    i = pos
    j = pos
    while True:
        j = (j + 1) & mask
        v = table[j]
        if v == EMPTY:
            break
        if stays(i, j, slot_of(records[v - 1]["id"], mask)):
            continue
        table[i] = v
        i = j
    table[i] = EMPTY
