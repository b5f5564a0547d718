"""A child process for the shared-memory tests: ``python -m tests.unit.ipc.shm_child MODE
INSTANCE``. Talks to the test over stdin/stdout, one line at a time.

- ``create``: creates arrays ``a`` (8 x int64, ``a[0] = 7``) and ``b`` (4 x 4 int32),
  prints ``ready``; then for each ``read`` line prints ``a[1]``; at end of input
  unlinks the instance and exits.
- ``attach``: attaches to every array, prints ``a[0]``, sets ``a[1] = 99``, exits.
- ``hash``: attaches read-only and prints the state hash of an ``Engine`` rebuilt from
  the arrays (config ``make_config(max_orders=100, max_levels=100)``).
"""

from __future__ import annotations

import sys

import numpy as np

from ipc.shm import ShmAllocator


def create(instance: str) -> None:
    with ShmAllocator(instance) as alloc:
        a = alloc.array("a", (8,), np.dtype("<i8"))
        alloc.array("b", (4, 4), np.dtype("<i4"))
        a[0] = 7
        print("ready", flush=True)
        for line in sys.stdin:
            if line.strip() == "read":
                print(int(a[1]), flush=True)
        del a


def attach(instance: str) -> None:
    alloc = ShmAllocator(instance, create=False)
    arrays = alloc.attach_all()
    print(int(arrays["a"][0]), flush=True)
    arrays["a"][1] = 99
    del arrays
    alloc.close()


def engine_hash(instance: str) -> None:
    from core.engine import Engine  # only this mode needs numba
    from tests.support.scenario import make_config

    alloc = ShmAllocator(instance, create=False, readonly=True)
    engine = Engine(make_config(max_orders=100, max_levels=100), state=alloc.attach_all())
    print(engine.state_hash(), flush=True)


if __name__ == "__main__":
    mode, name = sys.argv[1:3]
    {"create": create, "attach": attach, "hash": engine_hash}[mode](name)
