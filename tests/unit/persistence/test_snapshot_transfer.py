"""Sending a snapshot file in chunks and installing it on the other side: round trips,
damage in transit, refused chunks and announcements, aborts, pruning on both ends,
and failing system calls (persistence/snapshot_transfer.py)."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.errors import ClosedError
from persistence.log_format import MAX_SEQ
from persistence.snapshot import (
    SnapshotCorrupt,
    SnapshotFailed,
    SnapshotInfo,
    list_snapshots,
    load_newest_valid,
    prune_snapshots,
    snapshot_name,
    write_snapshot,
)
from persistence.snapshot_format import BLOCK_BYTES, HEADER_LENGTH, TRAILER_LENGTH
from persistence.snapshot_transfer import MAX_CHUNK_BYTES, SnapshotSink, SnapshotSource
from tests.unit.persistence.helpers import FaultyIO
from tests.unit.persistence.test_snapshot import (
    HASH,
    ORDER_DTYPE,
    Arrays,
    assert_same_arrays,
    damage,
    make_snapshots,
    snapshot_files,
    write,
)

SEQ = 4711
MAX_BYTES = 64 << 20


def primary_arrays() -> Arrays:
    """A few arrays, one of them sparse: 4 blocks of which the first and last are stored."""
    orders = np.zeros(7, ORDER_DTYPE)
    orders["id"] = np.arange(1, 8)
    sparse = np.zeros(3 * BLOCK_BYTES + 100, np.uint8)
    sparse[0] = 1
    sparse[-1] = 2
    return {
        "balances": np.arange(-12, 12, dtype=np.int64).reshape(6, 4) * 1_000_000_007,
        "orders": orders,
        "sparse": sparse,
        "empty": np.zeros((0, 3), np.int32),
    }


def write_primary(directory: Path, arrays: Arrays | None = None) -> SnapshotInfo:
    return write_snapshot(
        directory, SEQ, HASH, arrays or primary_arrays(), {"pair": "BTC_USDT"}, created_ns=123
    )


def open_source(directory: Path) -> SnapshotSource:
    source = SnapshotSource.open(directory)
    assert source is not None
    return source


def sink_for(source: SnapshotSource, directory: Path, **kwargs: Any) -> SnapshotSink:
    return SnapshotSink(
        directory, source.seq, source.state_hash, source.size_bytes, max_bytes=MAX_BYTES, **kwargs
    )


def send(
    source: SnapshotSource,
    sink: SnapshotSink,
    chunk_bytes: int,
    *,
    start: int = 0,
    stop: int | None = None,
    change: Callable[[int, bytearray], None] | None = None,
) -> None:
    """Send ``[start, stop)`` of the source in chunks; ``change(offset, chunk)`` may
    damage a chunk in transit."""
    stop = source.size_bytes if stop is None else stop
    for offset in range(start, stop, chunk_bytes):
        chunk = bytearray(source.read(offset, min(chunk_bytes, stop - offset)))
        if change is not None:
            change(offset, chunk)
        sink.write(offset, chunk)


def receive(
    source: SnapshotSource,
    directory: Path,
    *,
    start: int = 0,
    stop: int | None = None,
    **kwargs: Any,
) -> SnapshotInfo:
    """One transfer in a ``with`` block: ``[start, stop)`` in chunks, then ``finish``."""
    with sink_for(source, directory, **kwargs) as sink:
        send(source, sink, 4096, start=start, stop=stop)
        return sink.finish()


def tmp_name(seq: int = SEQ) -> str:
    return snapshot_name(seq) + ".tmp"


# ------------------------------------------------------------------ round trip


@pytest.mark.parametrize(
    "chunk_bytes", [1, 4096, BLOCK_BYTES + 3, None], ids=["1", "4096", "block+3", "whole"]
)
def test_a_snapshot_sent_in_chunks_arrives_byte_identical_and_loadable(
    tmp_path: Path, chunk_bytes: int | None
) -> None:
    sent = write_primary(tmp_path / "primary")
    replica = tmp_path / "replica"
    with open_source(tmp_path / "primary") as source:
        assert (source.path, source.seq, source.state_hash) == (sent.path, SEQ, HASH)
        assert source.size_bytes == sent.bytes
        with sink_for(source, replica) as sink:
            send(source, sink, chunk_bytes or source.size_bytes)
            assert sink.received_bytes == sent.bytes
            info = sink.finish()
    assert info == SnapshotInfo(replica / snapshot_name(SEQ), SEQ, HASH, 123, sent.bytes)
    assert info.path.read_bytes() == sent.path.read_bytes()
    assert snapshot_files(replica) == [snapshot_name(SEQ)]
    loaded = load_newest_valid(replica)
    assert loaded is not None
    assert loaded[0] == info
    assert_same_arrays(loaded[1], primary_arrays())
    assert loaded[2] == {"pair": "BTC_USDT"}


def test_a_snapshot_larger_than_one_chunk_goes_in_max_size_chunks_of_any_buffer(
    tmp_path: Path,
) -> None:
    dense = {"dense": np.arange(1, (5 << 20) // 8, dtype=np.int64)}  # 5 MiB, every block stored
    sent = write_primary(tmp_path / "primary", dense)
    assert sent.bytes > MAX_CHUNK_BYTES
    with open_source(tmp_path / "primary") as source, sink_for(source, tmp_path / "b") as sink:
        with pytest.raises(ValueError, match=f"chunks are 1 to {MAX_CHUNK_BYTES} bytes"):
            source.read(0, MAX_CHUNK_BYTES + 1)
        sink.write(0, memoryview(source.read(0, MAX_CHUNK_BYTES)))
        sink.write(MAX_CHUNK_BYTES, bytearray(source.read(MAX_CHUNK_BYTES, 8)))
        send(source, sink, MAX_CHUNK_BYTES, start=MAX_CHUNK_BYTES + 8)
        info = sink.finish()
    assert info.path.read_bytes() == sent.path.read_bytes()


def test_an_existing_snapshot_of_the_same_seq_is_replaced(tmp_path: Path) -> None:
    replica = tmp_path / "replica"
    other_hash = "f" * 32
    write_snapshot(replica, SEQ, other_hash, {"v": np.arange(5)})
    sent = write_primary(tmp_path / "primary")
    with open_source(tmp_path / "primary") as source, sink_for(source, replica) as sink:
        send(source, sink, 4096)
        sink.finish()
    assert snapshot_files(replica) == [snapshot_name(SEQ)]
    assert (replica / snapshot_name(SEQ)).read_bytes() == sent.path.read_bytes()
    assert [info.state_hash for info in list_snapshots(replica)] == [HASH]


# ------------------------------------------------------------------ damage in transit


def flip_at(where: int) -> Callable[[int, bytearray], None]:
    def change(offset: int, chunk: bytearray) -> None:
        if offset <= where < offset + len(chunk):
            chunk[where - offset] ^= 0x01

    return change


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        (lambda size: 0, "not a matchd snapshot"),
        (lambda size: 20, "header checksum mismatch"),  # inside seq
        (lambda size: HEADER_LENGTH + 3, "meta checksum mismatch"),
        (lambda size: size // 2, "array 'sparse': data checksum mismatch"),
        (lambda size: size - TRAILER_LENGTH - 1, "array 'empty': nonzero footer"),
        (lambda size: size - 1, "trailer checksum of the checksums mismatch"),
    ],
    ids=["magic", "seq", "meta", "sparse data", "footer", "trailer"],
)
def test_a_byte_flipped_in_transit_is_found_at_finish_and_nothing_is_left(
    tmp_path: Path, where: Callable[[int], int], reason: str
) -> None:
    replica = tmp_path / "replica"
    older = make_snapshots(replica, [10])[10]
    write_primary(tmp_path / "primary")
    with open_source(tmp_path / "primary") as source:
        sink = sink_for(source, replica)
        send(source, sink, 4096, change=flip_at(where(source.size_bytes)))
        with pytest.raises(SnapshotCorrupt, match=reason):
            sink.finish()
    assert snapshot_files(replica) == [snapshot_name(10)]
    loaded = load_newest_valid(replica)
    assert loaded is not None
    assert loaded[0] == older
    with pytest.raises(ClosedError, match="aborted"):
        sink.finish()


@pytest.mark.parametrize(
    ("seq", "state_hash", "reason"),
    [
        (SEQ, "f" * 32, f"header says state_hash {HASH}, the sender announced f{{32}}"),
        (SEQ + 1, HASH, f"header says seq {SEQ}, the sender announced {SEQ + 1}"),
        (SEQ - 1, HASH, f"header says seq {SEQ}, the sender announced {SEQ - 1}"),
    ],
    ids=["state_hash", "seq above", "seq below"],
)
def test_a_file_that_is_not_the_announced_snapshot_is_refused(
    tmp_path: Path, seq: int, state_hash: str, reason: str
) -> None:
    write_primary(tmp_path / "primary")
    replica = tmp_path / "replica"
    with open_source(tmp_path / "primary") as source:
        sink = SnapshotSink(replica, seq, state_hash, source.size_bytes, max_bytes=MAX_BYTES)
        send(source, sink, 4096)
        with pytest.raises(SnapshotCorrupt, match=reason):
            sink.finish()
    assert snapshot_files(replica) == []


# ------------------------------------------------------------------ refused calls


def test_chunks_out_of_order_too_large_or_past_the_end_are_refused_and_change_nothing(
    tmp_path: Path,
) -> None:
    sent = write_primary(tmp_path / "primary")
    replica = tmp_path / "replica"
    size = sent.bytes
    with open_source(tmp_path / "primary") as source:
        sink = sink_for(source, replica)
        first = source.read(0, 4096)
        with pytest.raises(ValueError, match="chunk at offset 4096, expected offset 0 "):
            sink.write(4096, source.read(4096, 4096))
        sink.write(0, first)
        with pytest.raises(ValueError, match="chunk at offset 0, expected offset 4096 "):
            sink.write(0, first)  # sent twice
        with pytest.raises(ValueError, match="chunk of 0 bytes; chunks are 1 to"):
            sink.write(4096, b"")
        with pytest.raises(ValueError, match=f"chunk of {MAX_CHUNK_BYTES + 1} bytes; chunks"):
            sink.write(4096, bytes(MAX_CHUNK_BYTES + 1))
        with pytest.raises(ValueError, match=f"ends at {size + 1}, past the announced size_bytes"):
            sink.write(4096, bytes(size - 4096 + 1))
        with pytest.raises(ValueError, match=f"received 4096 of {size} bytes; cannot finish"):
            sink.finish()
        assert sink.received_bytes == 4096
        assert snapshot_files(replica) == [tmp_name()]  # nothing installed
        assert list_snapshots(replica) == []
        send(source, sink, 4096, start=4096)  # the refusals changed nothing
        info = sink.finish()
    assert info.path.read_bytes() == sent.path.read_bytes()


def test_a_refused_chunk_inside_a_with_block_leaves_nothing(tmp_path: Path) -> None:
    write_primary(tmp_path / "primary")
    replica = tmp_path / "replica"
    with open_source(tmp_path / "primary") as source:
        with pytest.raises(ValueError, match="chunk at offset 1, expected offset 0"):
            receive(source, replica, start=1)
        with pytest.raises(ValueError, match="cannot finish"):
            receive(source, replica, stop=source.size_bytes - 1)
    assert snapshot_files(replica) == []


@pytest.mark.parametrize(
    ("announced", "match"),
    [
        ({"size_bytes": 1001, "max_bytes": 1000}, "snapshot 7: 1001 bytes, over max_bytes 1000"),
        ({"max_bytes": -1}, "max_bytes must be an integer >= 0; got -1"),
        ({"size_bytes": 111}, "size_bytes must be an integer >= 112 .*; got 111"),
        ({"size_bytes": 1000.0}, "size_bytes must be an integer"),
        ({"seq": -1}, "seq must be an integer from 0"),
        ({"seq": MAX_SEQ + 1}, "seq must be an integer from 0"),
        ({"seq": True}, "seq must be an integer from 0"),
        ({"state_hash": HASH.upper()}, "32 lowercase hex digits"),
        ({"state_hash": HASH[:-1]}, "32 lowercase hex digits"),
    ],
    ids=[
        "over max_bytes",
        "negative max_bytes",
        "smaller than any snapshot",
        "float size",
        "negative seq",
        "seq too large",
        "bool seq",
        "uppercase hash",
        "short hash",
    ],
)
def test_an_unusable_announcement_is_refused_before_any_io(
    tmp_path: Path, announced: dict[str, Any], match: str
) -> None:
    arguments: dict[str, Any] = {
        "seq": 7,
        "state_hash": HASH,
        "size_bytes": 1000,
        "max_bytes": 1000,
        **announced,
    }
    with pytest.raises(ValueError, match=match):
        SnapshotSink(tmp_path / "replica", **arguments)
    assert not (tmp_path / "replica").exists()


def test_max_bytes_is_the_largest_size_accepted(tmp_path: Path) -> None:
    write_primary(tmp_path / "primary")
    with open_source(tmp_path / "primary") as source:
        size = source.size_bytes
        with pytest.raises(ValueError, match=f"{size} bytes, over max_bytes {size - 1}"):
            SnapshotSink(tmp_path / "replica", SEQ, HASH, size, max_bytes=size - 1)
        with SnapshotSink(tmp_path / "replica", SEQ, HASH, size, max_bytes=size) as sink:
            send(source, sink, 4096)
            assert sink.finish().bytes == size


def test_abort_leaves_nothing_and_can_be_repeated(tmp_path: Path) -> None:
    write_primary(tmp_path / "primary")
    replica = tmp_path / "replica"
    with open_source(tmp_path / "primary") as source:
        sink = sink_for(source, replica)
        sink.write(0, source.read(0, 100))
        assert snapshot_files(replica) == [tmp_name()]
        sink.abort()
        sink.abort()
        assert snapshot_files(replica) == []
        with pytest.raises(ClosedError, match="transfer is aborted; cannot write"):
            sink.write(100, b"x")
        with sink_for(source, replica) as sink:  # left without finish: aborted
            sink.write(0, source.read(0, 100))
        assert snapshot_files(replica) == []
        with sink_for(source, replica) as sink:
            send(source, sink, 4096)
            sink.finish()
            sink.abort()  # after finish: nothing to undo
        with pytest.raises(ClosedError, match="transfer is finished; cannot finish"):
            sink.finish()
    assert snapshot_files(replica) == [snapshot_name(SEQ)]


# ------------------------------------------------------------------ both ends and pruning


def test_a_prune_during_a_receive_keeps_the_temporary_file(tmp_path: Path) -> None:
    replica = tmp_path / "replica"
    older = make_snapshots(replica, [10, 20])
    stale = replica / tmp_name(30)
    stale.write_bytes(b"left by a killed writer")  # nobody holds its lock
    write_primary(tmp_path / "primary")
    with open_source(tmp_path / "primary") as source, sink_for(source, replica) as sink:
        half = source.size_bytes // 2
        send(source, sink, 4096, stop=half)
        assert prune_snapshots(replica, 1) == [stale, older[10].path]
        assert snapshot_files(replica) == [snapshot_name(20), tmp_name()]
        send(source, sink, 4096, start=half)
        info = sink.finish()
    assert prune_snapshots(replica, 1) == [older[20].path]
    loaded = load_newest_valid(replica)
    assert loaded is not None
    assert loaded[0] == info


def test_a_second_receiver_of_the_same_seq_fails_and_leaves_the_first_alone(
    tmp_path: Path,
) -> None:
    sent = write_primary(tmp_path / "primary")
    replica = tmp_path / "replica"
    with open_source(tmp_path / "primary") as source, sink_for(source, replica) as sink:
        send(source, sink, 4096, stop=4096)
        with pytest.raises(SnapshotFailed) as caught:
            sink_for(source, replica)
        assert (caught.value.operation, caught.value.errno) == ("lock", errno.EAGAIN)
        with pytest.raises(SnapshotFailed, match="snapshot failed: lock"):
            write(replica, SEQ)  # the replica's own snapshotter, same seq
        send(source, sink, 4096, start=4096)
        info = sink.finish()
    assert info.path.read_bytes() == sent.path.read_bytes()


def test_a_source_stays_readable_after_its_file_is_pruned(tmp_path: Path) -> None:
    primary = tmp_path / "primary"
    sent = write_primary(primary)
    expected = sent.path.read_bytes()
    with open_source(primary) as source, sink_for(source, tmp_path / "replica") as sink:
        half = source.size_bytes // 2
        send(source, sink, 4096, stop=half)
        make_snapshots(primary, [SEQ + 1, SEQ + 2])
        assert prune_snapshots(primary, 1) == [primary / snapshot_name(s) for s in (SEQ + 1, SEQ)]
        assert not sent.path.exists()
        send(source, sink, 4096, start=half)
        info = sink.finish()
    assert info.path.read_bytes() == expected


def test_open_skips_a_damaged_newest_snapshot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert SnapshotSource.open(tmp_path / "missing") is None
    assert SnapshotSource.open(tmp_path) is None
    infos = make_snapshots(tmp_path, [10, 20])
    (tmp_path / tmp_name(30)).write_bytes(b"partial")  # never a candidate
    damage(infos[20])
    with caplog.at_level(logging.WARNING), open_source(tmp_path) as source:
        assert (source.path, source.seq, source.size_bytes) == (
            infos[10].path,
            10,
            infos[10].bytes,
        )
        assert source.info == infos[10]
    assert f"snapshot damaged, skipped: path={infos[20].path} offset=" in caplog.text
    damage(infos[10])
    assert SnapshotSource.open(tmp_path) is None


def test_source_reads_stay_within_the_file_and_end_at_close(tmp_path: Path) -> None:
    sent = write_primary(tmp_path)
    data = sent.path.read_bytes()
    source = open_source(tmp_path)
    size = source.size_bytes
    assert source.read(0, 8) == b"MATCHDSN"
    assert source.read(size - 1, 1) == data[-1:]
    for offset, length, match in [
        (-1, 1, "outside snapshot"),
        (size, 1, "outside snapshot"),
        (size - 10, 11, "outside snapshot"),
        (0, 0, "read length 0: chunks are 1 to"),
        (0, -1, "read length -1"),
    ]:
        with pytest.raises(ValueError, match=match):
            source.read(offset, length)
    source.close()
    source.close()
    with pytest.raises(ClosedError, match="is closed"):
        source.read(0, 1)


# ------------------------------------------------------------------ failing disk


@pytest.mark.parametrize(
    ("call", "operation", "installed"),
    [
        ("open", "open", False),
        ("ftruncate", "write", False),
        ("write", "write", False),
        ("fsync", "fsync", False),
        ("replace", "rename", False),
        ("close", "close", True),  # after the rename: installed, as for write_snapshot
        ("fsync_dir", "fsync directory", True),
    ],
)
def test_a_failing_system_call_raises_snapshot_failed_and_removes_the_temporary_file(
    tmp_path: Path, call: str, operation: str, installed: bool
) -> None:
    replica = tmp_path / "replica"
    make_snapshots(replica, [10])
    write_primary(tmp_path / "primary")
    io = FaultyIO(real_syncs=False)
    io.fail(call, errno.EIO)
    with open_source(tmp_path / "primary") as source, pytest.raises(SnapshotFailed) as caught:
        receive(source, replica, io=io)
    assert (caught.value.operation, caught.value.errno) == (operation, errno.EIO)
    expected = [snapshot_name(10), snapshot_name(SEQ)] if installed else [snapshot_name(10)]
    assert snapshot_files(replica) == expected
    loaded = load_newest_valid(replica)
    assert loaded is not None
    assert loaded[0].seq == (SEQ if installed else 10)
