"""The epoch history of a data directory: which primary wrote which part of the log.

An epoch is a term of one primary. Promotion starts a new epoch, higher than any
the cluster has seen, at the next sequence; a standby copies its primary's history.
Two logs that agree on the epoch of a sequence hold the same records up to it
(only one primary writes in an epoch, and standbys copy it verbatim), so a standby
that comes back tells from the histories alone whether its log is a prefix of the
primary's or holds records the primary never had (a deposed primary's unreplicated
tail). ``known`` is the highest epoch this node has heard of: a message from a lower
epoch comes from a deposed primary and is refused (fencing).

The file ``DATA_DIR/replication/epochs`` is JSON, replaced atomically (written to a
temporary file, synced, renamed, directory synced) before the node acts on it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import msgspec

from persistence.log_errors import LogError

EPOCHS_DIR: Final = "replication"
EPOCHS_FILE: Final = "epochs"
#: Epochs kept in the history (older ones are merged away: their records are long
#: replicated everywhere).
MAX_ENTRIES: Final = 1000


class EpochHistory(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``entries``: ``(epoch, first_seq)`` pairs, epochs and sequences rising: epoch
    ``e`` wrote the records from its ``first_seq`` to the next entry's. ``known``: the
    highest epoch heard of (at least the last entry's)."""

    entries: tuple[tuple[int, int], ...] = ()
    known: int = 0

    def __post_init__(self) -> None:
        last_epoch, last_seq = -1, 0
        for epoch, first_seq in self.entries:
            if epoch <= last_epoch or first_seq < last_seq or first_seq < 1:
                raise ValueError(f"epoch history out of order at ({epoch}, {first_seq})")
            last_epoch, last_seq = epoch, first_seq
        if self.known < max(last_epoch, 0):
            raise ValueError(f"known epoch {self.known} is below the history's {last_epoch}")

    @property
    def epoch(self) -> int:
        """The epoch of the newest records (0 before any promotion)."""
        return self.entries[-1][0] if self.entries else 0

    def epoch_of(self, seq: int) -> int:
        """The epoch that wrote ``seq`` (0: before the first entry)."""
        found = 0
        for epoch, first_seq in self.entries:
            if first_seq > seq:
                break
            found = epoch
        return found

    def common_seq(self, other: EpochHistory, other_last_seq: int, last_seq: int) -> int:
        """How far a log with history ``other`` ending at ``other_last_seq`` holds
        the same records as this one, ending at ``last_seq``: up to the first
        sequence the two histories give different epochs (epochs only change at
        entries, so only those need comparing), or the shorter log's end."""
        limit = min(other_last_seq, last_seq)
        points = sorted({1} | {f for _, f in self.entries} | {f for _, f in other.entries})
        for seq in points:
            if seq > limit:
                break
            if self.epoch_of(seq) != other.epoch_of(seq):
                return seq - 1
        return limit

    def begin(self, epoch: int, first_seq: int) -> EpochHistory:
        """This history with ``epoch`` starting at ``first_seq`` (a promotion)."""
        if epoch <= self.known:
            raise ValueError(f"epoch {epoch} is not above the known {self.known}")
        entries = (*self.entries, (epoch, first_seq))[-MAX_ENTRIES:]
        return EpochHistory(entries, epoch)

    def heard(self, epoch: int) -> EpochHistory:
        """This history knowing of ``epoch`` (no change if it knew a higher one)."""
        return self if epoch <= self.known else EpochHistory(self.entries, epoch)

    def adopt(self, primary: EpochHistory) -> EpochHistory:
        """A standby's history once it follows ``primary``'s: the primary's entries
        (its own log is a prefix of the primary's), the higher known epoch."""
        return EpochHistory(primary.entries[-MAX_ENTRIES:], max(self.known, primary.known))


def epochs_path(data_dir: Path) -> Path:
    """Where the history of ``data_dir`` lives."""
    return Path(data_dir) / EPOCHS_DIR / EPOCHS_FILE


def load_epochs(data_dir: Path) -> EpochHistory:
    """The history of ``data_dir`` (empty if it has none). ``LogError`` if the file
    is damaged: a node that does not know its epochs must not guess them."""
    path = epochs_path(data_dir)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return EpochHistory()
    except OSError as exc:
        raise LogError(f"cannot read the epoch history {path}: {exc}") from exc
    try:
        return msgspec.json.decode(data, type=EpochHistory)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise LogError(f"epoch history {path} is damaged: {exc}") from None


def save_epochs(data_dir: Path, history: EpochHistory) -> None:
    """Replace the history of ``data_dir`` atomically and durably."""
    path = epochs_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    data = msgspec.json.encode(history)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
