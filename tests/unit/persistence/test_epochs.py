"""Epoch histories: which primary wrote which part of the log, and how far two logs
agree (``EpochHistory.common_seq``), saved atomically."""

from __future__ import annotations

from pathlib import Path

import pytest

from persistence.epochs import EpochHistory, epochs_path, load_epochs, save_epochs
from persistence.log_errors import LogError

NONE = EpochHistory()
#: Epoch 1 from seq 11, epoch 3 from seq 21 (epoch 2 never wrote here).
H = EpochHistory(((1, 11), (3, 21)), 3)


def test_epoch_of_a_sequence() -> None:
    assert [H.epoch_of(s) for s in (1, 10, 11, 20, 21, 99)] == [0, 0, 1, 1, 3, 3]
    assert (NONE.epoch, H.epoch) == (0, 3)


@pytest.mark.parametrize(
    ("other", "other_last", "last", "common"),
    [
        (NONE, 5, 30, 5),  # a prefix of epoch 0
        (NONE, 15, 30, 10),  # wrote 11..15 in epoch 0 where H has epoch 1
        (EpochHistory(((1, 11),), 1), 25, 30, 20),  # epoch 1 went on past 20 there
        (EpochHistory(((1, 11),), 1), 18, 30, 18),  # a prefix
        (EpochHistory(((1, 11), (3, 21)), 3), 40, 30, 30),  # longer, same epochs: H's end
        (EpochHistory(((2, 11),), 2), 15, 30, 10),  # an epoch H never had
        (EpochHistory(((1, 12),), 1), 15, 30, 10),  # epoch 1 began elsewhere there
        (NONE, 0, 30, 0),  # an empty log
    ],
)
def test_common_seq(other: EpochHistory, other_last: int, last: int, common: int) -> None:
    assert H.common_seq(other, other_last, last) == common
    assert other.common_seq(H, last, other_last) == common  # symmetric


def test_begin_heard_adopt() -> None:
    h = H.begin(4, 31)
    assert (h.entries[-1], h.known, h.epoch) == ((4, 31), 4, 4)
    with pytest.raises(ValueError, match="not above"):
        H.begin(3, 31)
    assert H.heard(2) is H
    assert H.heard(7).known == 7
    assert H.heard(7).epoch == 3
    standby = EpochHistory((), 5).adopt(H)
    assert (standby.entries, standby.known) == (H.entries, 5)


@pytest.mark.parametrize(
    "entries", [((2, 5), (1, 9)), ((1, 9), (2, 5)), ((1, 0),), ((1, 5), (1, 9))]
)
def test_bad_histories_are_refused(entries: tuple[tuple[int, int], ...]) -> None:
    with pytest.raises(ValueError, match="out of order"):
        EpochHistory(entries, 9)
    with pytest.raises(ValueError, match="below"):
        EpochHistory(((4, 1),), 3)


def test_saved_and_loaded(tmp_path: Path) -> None:
    assert load_epochs(tmp_path) == NONE
    save_epochs(tmp_path, H)
    assert load_epochs(tmp_path) == H
    save_epochs(tmp_path, H.heard(9))
    assert load_epochs(tmp_path).known == 9
    assert [p.name for p in epochs_path(tmp_path).parent.iterdir()] == ["epochs"]


@pytest.mark.parametrize(
    "data", [b"", b"{", b'{"entries": [[2, 5], [1, 9]], "known": 9}', b'{"x": 1}']
)
def test_a_damaged_history_stops_the_node(tmp_path: Path, data: bytes) -> None:
    epochs_path(tmp_path).parent.mkdir(parents=True)
    epochs_path(tmp_path).write_bytes(data)
    with pytest.raises(LogError, match="damaged"):
        load_epochs(tmp_path)
