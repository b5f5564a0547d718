"""Consumers and retention: prune keeps what the snapshot or any consumer still needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from persistence.log import (
    ConsumerError,
    LogWriter,
    SeqPruned,
    confirm,
    consumer_positions,
    register_consumer,
    unregister_consumer,
)
from persistence.log_format import segment_name
from tests.unit.persistence.helpers import config, make_log, read_all, write_records

NAME_RULE = "1 to 64 characters from a-z, 0-9, '_' and '-', starting with a letter"


@pytest.mark.parametrize(
    "name",
    ["", "Drainer", "1feed", "a" * 65, "a/b", "../up", ".hidden", "a b", "feed.tmp", "é"],
)
def test_bad_consumer_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(
        ConsumerError, match=rf"^consumer name {name!r} is invalid: use {NAME_RULE}$"
    ):
        register_consumer(tmp_path, name)
    with pytest.raises(ConsumerError, match="is invalid"):
        confirm(tmp_path, name, 1)


def test_a_name_must_be_a_string(tmp_path: Path) -> None:
    with pytest.raises(ConsumerError, match="consumer name 5 is invalid"):
        register_consumer(tmp_path, 5)  # type: ignore[arg-type]


def test_register_is_idempotent_and_confirm_moves_forward(tmp_path: Path) -> None:
    make_log(tmp_path, 10)
    assert register_consumer(tmp_path, "drainer") == 0
    assert register_consumer(tmp_path, "feed", confirmed_seq=4) == 4
    confirm(tmp_path, "drainer", 7)
    assert register_consumer(tmp_path, "drainer", confirmed_seq=2) == 7  # keeps its position
    confirm(tmp_path, "drainer", 7)  # the same again is fine
    assert consumer_positions(tmp_path) == {"drainer": 7, "feed": 4}
    with pytest.raises(
        ConsumerError, match="consumer 'drainer' confirmed seq 7; it cannot go back to 6"
    ):
        confirm(tmp_path, "drainer", 6)
    with pytest.raises(
        ConsumerError,
        match="consumer 'drainer' cannot confirm seq 11: the log is committed up to 10",
    ):
        confirm(tmp_path, "drainer", 11)
    with pytest.raises(ConsumerError, match="consumer 'nobody' is not registered"):
        confirm(tmp_path, "nobody", 1)
    with pytest.raises(ConsumerError, match="seq must be from 0 to"):
        confirm(tmp_path, "feed", -1)
    assert sorted(path.name for path in (tmp_path / "consumers").iterdir()) == ["drainer", "feed"]


def test_unregister(tmp_path: Path) -> None:
    register_consumer(tmp_path, "feed")
    unregister_consumer(tmp_path, "feed")
    assert consumer_positions(tmp_path) == {}
    with pytest.raises(ConsumerError, match="consumer 'feed' is not registered"):
        unregister_consumer(tmp_path, "feed")


def test_a_damaged_position_is_an_error_not_a_guess(tmp_path: Path) -> None:
    make_log(tmp_path, 300, log_config=config(segment_bytes=4096))
    register_consumer(tmp_path, "feed")
    (tmp_path / "consumers" / "feed").write_bytes(b"garbage")
    with pytest.raises(ConsumerError, match="consumer 'feed': position file is damaged"):
        consumer_positions(tmp_path)
    with LogWriter.open(tmp_path, config()) as writer, pytest.raises(ConsumerError):
        writer.prune(300)


def segment_firsts(directory: Path) -> list[int]:
    return sorted(int(path.name[:20]) for path in directory.glob("*.log"))


@pytest.fixture
def log_300(tmp_path: Path) -> Path:
    """Records 1..300 over several 4 KiB segments."""
    make_log(tmp_path, 300, log_config=config(segment_bytes=4096))
    return tmp_path


def test_prune_respects_the_snapshot(log_300: Path) -> None:
    firsts = segment_firsts(log_300)
    assert len(firsts) >= 5
    with LogWriter.open(log_300, config(segment_bytes=4096)) as writer:
        assert writer.prune(0) == []
        # Snapshot at the first record of segment 3: segments 1 and 2 hold only
        # records below it.
        assert writer.prune(firsts[2]) == [log_300 / segment_name(f) for f in firsts[:2]]
        assert segment_firsts(log_300) == firsts[2:]
        # One below the first record of the next segment: that segment stays.
        assert writer.prune(firsts[3] - 1) == []
    assert [r.seq for r in read_all(log_300, firsts[2])] == list(range(firsts[2], 301))


def test_prune_respects_every_consumer(log_300: Path) -> None:
    firsts = segment_firsts(log_300)
    register_consumer(log_300, "drainer")
    register_consumer(log_300, "feed")
    with LogWriter.open(log_300, config(segment_bytes=4096)) as writer:
        assert writer.prune(300) == []  # both consumers still need record 1
        confirm(log_300, "drainer", 300)
        confirm(log_300, "feed", firsts[1] - 2)  # still needs the last record of segment 1
        assert writer.prune(300) == []
        confirm(log_300, "feed", firsts[1] - 1)
        assert writer.prune(300) == [log_300 / segment_name(firsts[0])]
        unregister_consumer(log_300, "feed")
        pruned = writer.prune(300)
        assert pruned == [log_300 / segment_name(f) for f in firsts[1:-1]]
        assert segment_firsts(log_300) == [firsts[-1]]  # never the segment being written
        write_records(writer, [301])
    with pytest.raises(SeqPruned):
        read_all(log_300, 1)


def test_prune_checks_its_argument(log_300: Path) -> None:
    with LogWriter.open(log_300, config()) as writer:
        with pytest.raises(ValueError, match="snapshot_seq must be from 0 to durable_seq 300"):
            writer.prune(301)
        with pytest.raises(ValueError, match="got -1"):
            writer.prune(-1)
