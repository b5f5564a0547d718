"""The two ways a kernel is compiled, in one place.

Every kernel is ``nopython`` and cached, releases the GIL, and runs without numba's
reference-counting runtime (NRT): kernels never allocate, and without NRT passing a
tuple of arrays costs no atomic increments. ``fastmath`` and ``parallel`` stay off so
results are deterministic and replayable bit for bit. Small helpers are inlined into
their callers at numba's IR level, which measured 2-3x faster on the replace-heavy
benchmark than leaving the calls to LLVM.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numba

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS: dict[str, Any] = {"cache": True, "nogil": True, "_nrt": False}


def kernel(fn: F) -> F:
    """Compile ``fn`` as a kernel (called from Python or from other kernels)."""
    compiled: F = numba.njit(**_OPTIONS)(fn)
    return compiled


def inline(fn: F) -> F:
    """Compile ``fn`` as a kernel that callers inline."""
    compiled: F = numba.njit(inline="always", **_OPTIONS)(fn)
    return compiled


def _move_items_python(arr: Any, dst: int, src: int, count: int) -> None:
    arr[dst : dst + count] = arr[src : src + count].copy()


def _make_move_items() -> Callable[[Any, int, int, int], None]:
    """``move_items(arr, dst, src, count)``: arr[dst:dst+count] = arr[src:src+count] for
    a 1-d contiguous array, overlapping ranges allowed, as one memmove.

    Kernels cannot slice-assign without NRT, and an element loop over a few hundred
    price levels was the largest cost of the book; this is LLVM's memmove intrinsic.
    Under NUMBA_DISABLE_JIT it is a numpy slice copy.
    """
    config: Any = numba.config
    if config.DISABLE_JIT:
        return _move_items_python
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def _memmove(typingctx: Any, arr: Any, dst: Any, src: Any, count: Any) -> Any:
        sig = types.void(arr, types.int64, types.int64, types.int64)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            itemsize = context.get_abi_sizeof(context.get_data_type(signature.args[0].dtype))
            dptr = builder.gep(ary.data, [args[1]], inbounds=True)
            sptr = builder.gep(ary.data, [args[2]], inbounds=True)
            cgutils.raw_memmove(builder, dptr, sptr, args[3], itemsize)
            return context.get_dummy_value()

        return sig, codegen

    memmove: Any = _memmove

    @inline
    def move_items(arr: Any, dst: int, src: int, count: int) -> None:
        if count > 0:
            memmove(arr, dst, src, count)

    return move_items


move_items = _make_move_items()
