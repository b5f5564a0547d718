"""The feed's state on disk: what it derived from the log up to a sequence
(docs/feed.md, "State and restarts").

The feed keeps its market data in memory and writes it, with the log sequence it
covers, to ``DIR/feed-<seq>.npz`` every few seconds and when it stops: numpy arrays
only (no pickle), written to a temporary file, synced, renamed, and the directory
synced, so that a crash at any moment leaves the previous state whole. On start the
newest state that loads is taken and the log is read from the sequence after it: no
gap and no deal twice. Older files are removed once a newer one is durable (the
newest ``KEEP`` stay).

A state names the markets it was made for; one of other markets (renamed or
reordered) is refused with ``StateError``, since its buckets would land on the wrong
markets; markets added at the end of the config are fine, and so are markets added
at run time (ADD_MARKET): the state holds what they were added with (the caller's
``catalog`` array), and the config's markets begin the state's.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Final

import numpy as np

FORMAT_VERSION: Final = 1
KEEP: Final = 2
_NAME_RE: Final = re.compile(r"feed-(\d{20})\.npz")


class StateError(ValueError):
    """A state file that cannot be used: damaged, of another format version, or made
    for other markets. The message names the file and why."""


def state_path(directory: Path, seq: int) -> Path:
    """The file of the state at ``seq``."""
    return directory / f"feed-{seq:020d}.npz"


def save_state(
    directory: Path, seq: int, markets: list[str], arrays: dict[str, np.ndarray]
) -> Path:
    """Write the state at ``seq`` durably; remove all but the newest ``KEEP``."""
    directory.mkdir(parents=True, exist_ok=True)
    header = {
        "format_version": np.array([FORMAT_VERSION], dtype=np.int64),
        "seq": np.array([seq], dtype=np.int64),
        "markets": np.array(markets, dtype=np.str_),
    }
    fd, tmp = tempfile.mkstemp(prefix=".feed-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            np.savez(out, **header, **arrays)  # type: ignore[arg-type]  # numpy's stub
            out.flush()
            os.fsync(out.fileno())
        final = state_path(directory, seq)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    for old in state_files(directory)[:-KEEP]:
        old.unlink(missing_ok=True)
    return final


def state_seq(path: Path) -> int:
    """The sequence a state file covers, from its name (``feed-<seq>.npz``)."""
    match = _NAME_RE.fullmatch(path.name)
    if match is None:
        raise StateError(f"{path}: not a feed state file name")
    return int(match.group(1))


def state_files(directory: Path) -> list[Path]:
    """The state files in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _NAME_RE.fullmatch(p.name))


def load_state(path: Path, markets: list[str]) -> tuple[int, dict[str, np.ndarray]]:
    """(seq, arrays) of the state file ``path``, made for ``markets``, a prefix of
    them, or ``markets`` and more (added at run time: the caller checks them,
    ``arrays["markets"]`` names them); ``StateError`` if it cannot be used."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise StateError(f"{path}: not a readable feed state ({exc})") from exc
    try:
        version = int(arrays.pop("format_version")[0])
        seq = int(arrays.pop("seq")[0])
        names = [str(x) for x in arrays.pop("markets").tolist()]
    except (KeyError, IndexError, ValueError) as exc:
        raise StateError(f"{path}: no feed state header ({exc})") from exc
    if version != FORMAT_VERSION:
        raise StateError(f"{path}: format version {version}, this build reads {FORMAT_VERSION}")
    if names[: len(markets)] != markets[: len(names)]:
        raise StateError(
            f"{path}: made for the markets {names}, the config has {markets}: a market was "
            "renamed or moved (remove the feed state to rebuild it from the log)"
        )
    arrays["markets"] = np.array(names, dtype=np.str_)
    return seq, arrays


def load_newest(directory: Path, markets: list[str]) -> tuple[int, dict[str, np.ndarray]] | None:
    """The newest state in ``directory`` that loads (older ones are tried when the
    newest is damaged); None if there is none. A state of other markets raises."""
    problems = []
    for path in reversed(state_files(directory)):
        try:
            return load_state(path, markets)
        except StateError as exc:
            if "made for the markets" in str(exc):
                raise
            problems.append(str(exc))
    if problems:
        raise StateError("no feed state loads: " + "; ".join(problems))
    return None
