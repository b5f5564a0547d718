"""POSIX shared-memory arrays (ipc.shm): naming, create/attach, the index, stale
instances, cleanup, and an Engine living in shared memory."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import posix_ipc
import pytest

from core import commands as C
from core.engine import Engine
from core.errors import ClosedError
from core.schema import ORDER_DTYPE, Result, Side
from ipc.shm import (
    INDEX_NAME,
    SHM_DIR,
    Creator,
    ShmAllocator,
    creator_alive,
    current_creator,
    find_stale,
    list_segments,
    read_index,
    remove_instance,
    shm_name,
)
from tests.support.scenario import make_config

ROOT = Path(__file__).resolve().parents[3]
I8 = np.dtype("<i8")
BTC, USDT = 0, 2


@pytest.fixture
def instance() -> Iterator[str]:
    """A fresh instance name; whatever a test leaves of it is removed afterwards."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    yield name
    remove_instance(name)
    assert list_segments(name) == []


def shm_file(instance: str, name: str) -> Path:
    return SHM_DIR / shm_name(instance, name).lstrip("/")


def child(mode: str, instance: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "tests.unit.ipc.shm_child", mode, instance],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out


# ------------------------------------------------------------------ names


@pytest.mark.parametrize("bad", ["", "a.b", "a/b", "a b", "é", "x" * 65, "../x"])
def test_instance_names_are_validated(bad: str) -> None:
    with pytest.raises(ValueError, match="instance must be"):
        ShmAllocator(bad)
    with pytest.raises(ValueError, match="instance must be"):
        find_stale(bad)


@pytest.mark.parametrize("bad", ["", "a.b", "a/b", "x" * 65, "ü"])
def test_array_names_are_validated(instance: str, bad: str) -> None:
    with ShmAllocator(instance) as alloc, pytest.raises(ValueError, match="name must be"):
        alloc.array(bad, (1,), I8)


def test_names_starting_with_two_underscores_are_reserved(instance: str) -> None:
    with ShmAllocator(instance) as alloc, pytest.raises(ValueError, match="reserved"):
        alloc.array(INDEX_NAME, (1,), I8)


# ------------------------------------------------------------------ create and attach


def test_arrays_are_zeroed_segments_of_exact_size(instance: str) -> None:
    with ShmAllocator(instance) as alloc:
        grid = alloc.array("grid", (3, 5), I8)
        orders = alloc.array("orders", (7,), ORDER_DTYPE)
        assert grid.shape == (3, 5)
        assert grid.dtype == I8
        assert not grid.any()
        assert orders.dtype == ORDER_DTYPE
        assert not orders.view(np.uint8).any()
        assert shm_file(instance, "grid").stat().st_size == 3 * 5 * 8
        assert shm_file(instance, "orders").stat().st_size == 7 * ORDER_DTYPE.itemsize
        assert alloc.allocated_bytes == 120 + 7 * ORDER_DTYPE.itemsize
        assert list_segments(instance) == sorted(
            shm_name(instance, n) for n in ("grid", "orders", INDEX_NAME)
        )
        del grid, orders
    assert list_segments(instance) == []


def test_a_zero_byte_array_has_no_segment_but_is_listed(instance: str) -> None:
    with ShmAllocator(instance) as alloc:
        empty = alloc.array("empty", (0, 4), I8)
        assert empty.shape == (0, 4)
        assert list_segments(instance) == [shm_name(instance, INDEX_NAME)]
        attached = ShmAllocator(instance, create=False).attach_all()
        assert attached["empty"].shape == (0, 4)


def test_a_name_is_created_once(instance: str) -> None:
    with ShmAllocator(instance) as alloc:
        alloc.array("a", (1,), I8)
        with pytest.raises(ValueError, match="already exists"):
            alloc.array("a", (1,), I8)


def test_object_arrays_are_refused(instance: str) -> None:
    with ShmAllocator(instance) as alloc, pytest.raises(ValueError, match="object"):
        alloc.array("o", (1,), np.dtype(object))


def test_an_attached_array_shares_memory_and_checks_dtype_and_shape(instance: str) -> None:
    with ShmAllocator(instance) as alloc:
        mine = alloc.array("a", (4,), I8)
        other = ShmAllocator(instance, create=False)
        theirs = other.array("a", (4,), I8)
        mine[2] = 5
        theirs[3] = 6
        assert theirs[2] == 5
        assert mine[3] == 6
        with pytest.raises(ValueError, match=r"is int64 \(4,\); asked for int64 \(5,\)"):
            ShmAllocator(instance, create=False).array("a", (5,), I8)
        with pytest.raises(ValueError, match="asked for int32"):
            ShmAllocator(instance, create=False).array("a", (4,), np.dtype("<i4"))
        with pytest.raises(ValueError, match=r"asked for int64 \(3,\)"):
            other.array("a", (3,), I8)  # checked again when already attached
        with pytest.raises(FileNotFoundError, match="no array 'b'"):
            other.array("b", (4,), I8)
        assert not other.owner
        del mine, theirs


def test_attaching_checks_the_segment_size(instance: str) -> None:
    with ShmAllocator(instance) as alloc:
        alloc.array("a", (4,), I8)
        os.truncate(shm_file(instance, "a"), 16)  # damaged by someone else
        with pytest.raises(ValueError, match="is 16 bytes; int64 \\(4,\\) needs 32"):
            ShmAllocator(instance, create=False).attach_all()
        assert find_stale(instance) == list_segments(instance)


def test_attaching_to_a_missing_instance_fails(instance: str) -> None:
    with pytest.raises(FileNotFoundError, match="no shared-memory instance"):
        ShmAllocator(instance, create=False)


def test_a_read_only_attachment_gives_read_only_arrays(instance: str) -> None:
    with ShmAllocator(instance) as alloc:
        alloc.array("a", (4,), I8)[0] = 3
        arrays = ShmAllocator(instance, create=False, readonly=True).attach_all()
        assert arrays["a"][0] == 3
        assert not arrays["a"].flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            arrays["a"][0] = 4


def test_the_index_records_arrays_and_creator(instance: str) -> None:
    with ShmAllocator(instance) as alloc:
        alloc.array("orders", (3,), ORDER_DTYPE)
        alloc.array("grid", (2, 2), I8)
        index = read_index(instance)
        assert [(s.name, s.dtype, s.shape) for s in index.arrays] == [
            ("orders", ORDER_DTYPE, (3,)),
            ("grid", I8, (2, 2)),
        ]
        assert index.creator.pid == os.getpid()
        assert creator_alive(index.creator)


# ------------------------------------------------------------------ lifetime


def test_close_refuses_while_arrays_are_referenced(instance: str) -> None:
    alloc = ShmAllocator(instance)
    view = alloc.array("a", (4,), I8)[1:3]
    with pytest.raises(BufferError, match=r"\['a'\].*still referenced"):
        alloc.close()
    view[0] = 1  # the mapping is still there
    del view
    alloc.close()
    with pytest.raises(ClosedError):
        alloc.array("b", (1,), I8)
    assert len(alloc.unlink()) == 2


def test_only_the_creator_unlinks(instance: str) -> None:
    with ShmAllocator(instance) as alloc:
        alloc.array("a", (1,), I8)
        attached = ShmAllocator(instance, create=False)
        with pytest.raises(PermissionError, match="only the process that created"):
            attached.unlink()
        assert alloc.owner
    assert list_segments(instance) == []


def test_mappings_survive_unlink(instance: str) -> None:
    alloc = ShmAllocator(instance)
    a = alloc.array("a", (2,), I8)
    alloc.unlink()
    a[1] = 9
    assert a[1] == 9
    assert list_segments(instance) == []
    del a
    alloc.close()


def test_a_live_instance_cannot_be_created_twice(instance: str) -> None:
    with ShmAllocator(instance), pytest.raises(FileExistsError, match="in use"):
        ShmAllocator(instance)


def test_leftover_segments_without_index_block_create(instance: str) -> None:
    stray = shm_name(instance, "orphan")
    posix_ipc.SharedMemory(stray, posix_ipc.O_CREX, size=8).close_fd()
    assert find_stale(instance) == [stray]
    with pytest.raises(FileExistsError, match="leftover segments"):
        ShmAllocator(instance)
    assert list_segments(instance) == [stray]  # the index it claimed is gone again
    assert remove_instance(instance) == [stray]


# ------------------------------------------------------------------ stale detection


def test_nothing_is_stale_while_the_creator_lives(instance: str) -> None:
    assert find_stale(instance) == []
    with ShmAllocator(instance) as alloc:
        alloc.array("a", (1,), I8)
        assert find_stale(instance) == []


def test_a_damaged_index_makes_the_instance_stale(instance: str) -> None:
    with ShmAllocator(instance) as alloc:
        alloc.array("a", (1,), I8)
        with shm_file(instance, INDEX_NAME).open("r+b") as f:
            f.write(b"garbage!")
        with pytest.raises(ValueError, match="bad magic"):
            read_index(instance)
        assert find_stale(instance) == list_segments(instance)
        assert len(remove_instance(instance)) == 2


def test_a_reused_pid_or_another_boot_is_not_the_creator() -> None:
    me = current_creator()
    assert creator_alive(me)
    assert not creator_alive(Creator(me.pid, me.boot_id, me.start_ticks + 1, 0))
    assert not creator_alive(Creator(me.pid, "another-boot", me.start_ticks, 0))


# ------------------------------------------------------------------ engine


def run_session(engine: Engine) -> None:
    for user in (1, 2, 3):
        for asset in (BTC, USDT):
            results, _ = engine.balance_update(user, asset, b"deposit", user, 10**15, 1)
            assert results["code"][0] == Result.OK
    results, events = engine.execute(
        C.batch(
            C.put_limit(1, 0, Side.ASK, 3000, 10_000, 10, 5, ts_ns=2),
            C.put_limit(2, 0, Side.BID, 1000, 10_001, 10, 5, ts_ns=3),
            C.put_limit(3, 0, Side.BID, 1000, 9_000, ts_ns=4),
            C.cancel(3, 0, 3, ts_ns=5),
        )
    )
    assert (results["code"] == Result.OK).all()
    assert len(events) > 4


def test_an_engine_in_shared_memory_matches_one_on_the_heap(instance: str) -> None:
    config = make_config(max_orders=100, max_levels=100)
    heap = Engine(config)
    alloc = ShmAllocator(instance)
    shared = Engine(config, allocator=alloc)
    run_session(heap)
    run_session(shared)
    assert shared.check_invariants() == []
    assert shared.state_hash() == heap.state_hash()
    rebuilt = Engine(config, state=ShmAllocator(instance, create=False).attach_all())
    assert rebuilt.state_hash() == heap.state_hash()
    assert {s.name for s in alloc.segments()} == set(shared.state_arrays())
    del shared
    gc.collect()
    alloc.close()
    alloc.unlink()


# ------------------------------------------------------------------ other processes


@pytest.mark.integration
def test_another_process_sees_writes_both_ways(instance: str) -> None:
    with ShmAllocator(instance) as alloc:
        a = alloc.array("a", (8,), I8)
        a[0] = 41
        assert finish(child("attach", instance)) == "41\n"
        assert a[1] == 99
        del a


@pytest.mark.integration
def test_a_child_created_instance_is_attached_and_removed_by_its_creator(instance: str) -> None:
    proc = child("create", instance)
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    attached = ShmAllocator(instance, create=False)
    arrays = attached.attach_all()
    assert arrays["a"][0] == 7
    assert arrays["b"].shape == (4, 4)
    arrays["a"][1] = 5
    proc.stdin.write("read\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "5\n"
    assert attached.creator.pid == proc.pid
    finish(proc)
    assert list_segments(instance) == []
    del arrays
    attached.close()


@pytest.mark.integration
def test_a_killed_creator_leaves_a_stale_instance(instance: str) -> None:
    proc = child("create", instance)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == "ready\n"
        segments = list_segments(instance)
        assert len(segments) == 3
        assert find_stale(instance) == []
        with pytest.raises(FileExistsError, match=f"in use \\(creator pid {proc.pid}\\)"):
            ShmAllocator(instance)
    finally:
        proc.kill()  # SIGKILL: no cleanup runs
        proc.communicate(timeout=60)
    assert find_stale(instance) == segments
    with pytest.raises(FileExistsError, match="left over from a run that ended"):
        ShmAllocator(instance)
    assert remove_instance(instance) == sorted(segments, key=lambda n: n.endswith(INDEX_NAME))
    assert list_segments(instance) == []
    assert not any(p.name.startswith(f"matchd.{instance}.") for p in SHM_DIR.iterdir())
    with ShmAllocator(instance):  # the name is free again
        pass


@pytest.mark.integration
def test_another_process_sees_the_same_engine_state(instance: str) -> None:
    config = make_config(max_orders=100, max_levels=100)
    with ShmAllocator(instance) as alloc:
        engine = Engine(config, allocator=alloc)
        run_session(engine)
        expected = engine.state_hash()
        assert finish(child("hash", instance)) == f"{expected}\n"
        del engine
        gc.collect()
