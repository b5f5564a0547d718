"""The numba kernels of ``SpscRing`` (``ipc.ring``) and the atomics they need.

Kernels (usable from other kernels; integers only; no exceptions, no allocation; a
negative count is ``CORRUPT``: the positions are impossible, nothing was copied)::

    push_batch(header_words, records, src, n) -> int     records pushed (0 when full)
    pop_batch(header_words, records, dst, max_n) -> int  records popped (0 when empty)
    arm_sleep(header_words) -> int      consumer: announce sleep; records waiting
    claim_wake(header_words) -> int     producer: 1 if it must post the semaphore

``header_words`` is the ring header as int64 words (``ipc.ring_layout``), ``records``
the record area (its length is the capacity, a power of two), ``src``/``dst``
C-contiguous 1-d arrays of the record dtype. They compile once per record dtype.

Memory ordering (x86-64). The producer copies the records in, then publishes its
position with a *release* store; the consumer reads that position with an *acquire*
load, copies the records out, then publishes its own position with a release store,
which the producer reads with an acquire load before it reuses slots. x86 (TSO) keeps
stores in order and loads in order, so these are plain ``mov`` instructions; what the
orderings add is a compiler barrier: LLVM may not move a record copy across a position
access, which it could do with numba's plain loads and stores (nothing says the two
arrays do not alias, but nothing forbids reordering non-aliasing ones either). They
are LLVM atomic loads and stores, emitted by the intrinsics below.

The one reordering x86 does make, a load passing an earlier store to another address,
matters for the doorbell alone (Dekker's pattern): the consumer stores ``SLEEPING = 1``
and then loads the producer's position; the producer stores its position and then
loads ``SLEEPING``. Each side puts a full barrier between its store and its load
(``arm_sleep`` sets the flag with a locked ``xchg``; ``push_batch`` ends with ``fence
seq_cst``, a locked instruction, whenever it published), so at least one sees the
other's store: the consumer finds the records and stays awake, or the producer finds
the flag and posts. ``claim_wake`` takes the flag with ``xchg``, so one announcement
gets one post.

Under ``NUMBA_DISABLE_JIT=1`` the kernels and atomics are plain Python over numpy, for
coverage and tracebacks in single-process tests; no ordering is promised then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from core.kernels.jit import kernel
from ipc.ring_layout import (
    CONSUMER_POSITION_WORD,
    CONSUMER_SEEN_WORD,
    CORRUPT,
    FULL_WORD,
    PEAK_WORD,
    PRODUCER_POSITION_WORD,
    PRODUCER_SEEN_WORD,
    SLEEPING_WORD,
    SLEEPS_WORD,
    WAKEUPS_WORD,
)

__all__ = ["CORRUPT", "arm_sleep", "claim_wake", "pop_batch", "push_batch"]


# ------------------------------------------------------------------ atomics, compiled
# Each is a numba intrinsic: a typing function returning (signature, codegen).


def _is_words(arr: Any) -> bool:
    from numba.core import types

    return (
        isinstance(arr, types.Array) and arr.ndim == 1 and arr.dtype == types.int64 and arr.mutable
    )


def _word_ptr(context: Any, builder: Any, arrty: Any, arr: Any, index: Any) -> Any:
    ary = context.make_array(arrty)(context, builder, arr)
    return builder.gep(ary.data, [index], inbounds=True)


def _load_acquire_typing(typingctx: Any, words: Any, index: Any) -> Any:
    """``words[index]``, an acquire load."""
    from numba.core import types

    if not _is_words(words):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr = _word_ptr(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(words, types.int64), codegen


def _store_release_typing(typingctx: Any, words: Any, index: Any, value: Any) -> Any:
    """``words[index] = value``, a release store."""
    from numba.core import types

    if not _is_words(words):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr = _word_ptr(context, builder, sig.args[0], args[0], args[1])
        builder.store_atomic(args[2], ptr, "release", 8)
        return context.get_dummy_value()

    return types.void(words, types.int64, types.int64), codegen


def _exchange_typing(typingctx: Any, words: Any, index: Any, value: Any) -> Any:
    """``old = words[index]; words[index] = value; old``, atomically (``xchg``)."""
    from numba.core import types

    if not _is_words(words):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr = _word_ptr(context, builder, sig.args[0], args[0], args[1])
        return builder.atomic_rmw("xchg", ptr, args[2], "seq_cst")

    return types.int64(words, types.int64, types.int64), codegen


def _full_fence_typing(typingctx: Any) -> Any:
    """``fence seq_cst``: no load after it passes a store before it."""
    from numba.core import types

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


def _copy_items_typing(typingctx: Any, dst: Any, d: Any, src: Any, s: Any, count: Any) -> Any:
    """``dst[d:d+count] = src[s:s+count]`` as one memcpy (numba cannot slice-assign
    without NRT); both C-contiguous 1-d arrays of one dtype."""
    from numba.core import cgutils, types

    arrays = (dst, src)
    if not all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" for a in arrays):
        return None
    if dst.dtype != src.dtype or not dst.mutable:
        return None
    memcpy: Any = cgutils.raw_memcpy

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        dary = context.make_array(sig.args[0])(context, builder, args[0])
        sary = context.make_array(sig.args[2])(context, builder, args[2])
        itemsize = context.get_abi_sizeof(context.get_data_type(sig.args[0].dtype))
        dptr = builder.gep(dary.data, [args[1]], inbounds=True)
        sptr = builder.gep(sary.data, [args[3]], inbounds=True)
        memcpy(builder, dptr, sptr, args[4], itemsize)
        return context.get_dummy_value()

    return types.void(dst, types.int64, src, types.int64, types.int64), codegen


# ------------------------------------------------------------------ atomics, interpreted


def _load_python(words: np.ndarray, index: int) -> int:
    return int(words[index])


def _store_python(words: np.ndarray, index: int, value: int) -> None:
    words[index] = value


def _exchange_python(words: np.ndarray, index: int, value: int) -> int:
    old = int(words[index])
    words[index] = value
    return old


def _fence_python() -> None:
    pass


def _copy_python(dst: np.ndarray, d: int, src: np.ndarray, s: int, count: int) -> None:
    dst[d : d + count] = src[s : s + count]


def _atomics() -> tuple[Callable[..., Any], ...]:
    config: Any = numba.config
    if config.DISABLE_JIT:
        return (_load_python, _store_python, _exchange_python, _fence_python, _copy_python)
    from numba.extending import intrinsic

    typings = (
        _load_acquire_typing,
        _store_release_typing,
        _exchange_typing,
        _full_fence_typing,
        _copy_items_typing,
    )
    return tuple(intrinsic(t) for t in typings)


_load_acquire, _store_release, _exchange, _full_fence, _copy_items = _atomics()


# ------------------------------------------------------------------ kernels


@kernel
def push_batch(header_words: Any, records: Any, src: Any, n: int) -> int:
    """Copy ``src[:n]`` (as many as fit, at most ``len(src)``) into the ring; the count
    pushed. Producer only. Records that do not fit are added to ``FULL``.

    It reads the consumer's position (its cache line) only when the one it read last
    leaves the ring more than half full after this push, and then records the
    occupancy in ``PEAK``: exact above half the capacity. Ends with a full fence when
    it published, so a later load of ``SLEEPING`` (``claim_wake``, even from Python)
    cannot pass the position store. ``CORRUPT`` if the positions are impossible.
    """
    cap: int = records.shape[0]
    if n > src.shape[0]:
        n = src.shape[0]
    if n <= 0:
        return 0
    head: int = header_words[PRODUCER_POSITION_WORD]
    used: int = head - header_words[CONSUMER_SEEN_WORD]  # >= the real occupancy
    if used < 0 or used > cap:
        return CORRUPT
    fresh = used + n > cap >> 1
    if fresh:  # it may be more than half full after this push: look again
        tail: int = _load_acquire(header_words, CONSUMER_POSITION_WORD)
        header_words[CONSUMER_SEEN_WORD] = tail
        used = head - tail
        if used < 0 or used > cap:
            return CORRUPT
    k = cap - used
    if k >= n:
        k = n
        if fresh and used + k > header_words[PEAK_WORD]:
            header_words[PEAK_WORD] = used + k
    else:  # full (and fresh: a push that fits in half the ring always fits)
        header_words[FULL_WORD] += n - k
        header_words[PEAK_WORD] = cap
    if k == 0:
        return 0
    index = head & (cap - 1)
    first = cap - index
    if first > k:
        first = k
    _copy_items(records, index, src, 0, first)
    _copy_items(records, 0, src, first, k - first)
    _store_release(header_words, PRODUCER_POSITION_WORD, head + k)
    _full_fence()
    return k


@kernel
def pop_batch(header_words: Any, records: Any, dst: Any, max_n: int) -> int:
    """Copy up to ``max_n`` records (at most ``len(dst)``) out of the ring into
    ``dst[:k]``, oldest first; ``k``. Consumer only. Reads the producer's position (its
    cache line) only when the one it read last shows fewer than ``max_n`` records.
    ``CORRUPT`` if the positions are impossible."""
    cap: int = records.shape[0]
    if max_n > dst.shape[0]:
        max_n = dst.shape[0]
    if max_n <= 0:
        return 0
    tail: int = header_words[CONSUMER_POSITION_WORD]
    k: int = header_words[PRODUCER_SEEN_WORD] - tail
    if k < max_n:  # the last producer position read is not enough: read it again
        head: int = _load_acquire(header_words, PRODUCER_POSITION_WORD)
        header_words[PRODUCER_SEEN_WORD] = head
        k = head - tail
    if k < 0 or k > cap:
        return CORRUPT
    if k > max_n:
        k = max_n
    if k == 0:
        return 0
    index = tail & (cap - 1)
    first = cap - index
    if first > k:
        first = k
    _copy_items(dst, 0, records, index, first)
    _copy_items(dst, first, records, 0, k - first)
    _store_release(header_words, CONSUMER_POSITION_WORD, tail + k)
    return k


@kernel
def arm_sleep(header_words: Any) -> int:
    """Consumer, before it sleeps: set ``SLEEPING`` (a locked exchange: a full barrier),
    count the announcement, then return how many records are waiting. Sleep only
    on 0; clear ``SLEEPING`` after, either way."""
    _exchange(header_words, SLEEPING_WORD, 1)
    header_words[SLEEPS_WORD] += 1
    head: int = _load_acquire(header_words, PRODUCER_POSITION_WORD)
    tail: int = header_words[CONSUMER_POSITION_WORD]
    return head - tail


@kernel
def claim_wake(header_words: Any) -> int:
    """Producer, after a push: 1 if the consumer announced sleep and this call took
    the flag (post the semaphore then, and ``WAKEUPS`` counts it), else 0."""
    if header_words[SLEEPING_WORD] == 0:
        return 0
    if _exchange(header_words, SLEEPING_WORD, 0) == 0:
        return 0
    header_words[WAKEUPS_WORD] += 1
    return 1
