"""Small files that hold one sequence number: the ``committed`` marker and consumers.

A new file is written atomically: temporary file, fsync, rename, fsync of the
directory. The ``committed`` marker is then updated in place with ``pwrite`` (it
is for visibility, not durability; see ``LogWriter``), and readers that catch a
write half-done see a checksum mismatch and read again.
"""

from __future__ import annotations

import os
from pathlib import Path

from persistence._io import SysIO
from persistence.log_format import (
    SEQ_FILE_LENGTH,
    TMP_SUFFIX,
    FormatError,
    SeqFile,
    decode_seq_file,
    encode_seq_file,
)

#: Reads of a sequence file that may see a concurrent in-place update half-done.
_READ_ATTEMPTS = 5


def write_seq_file_atomically(
    io: SysIO, path: Path, magic: bytes, seq: int, flags: int = 0
) -> None:
    """Replace ``path`` with a sequence file holding ``seq`` (all or nothing)."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    fd = io.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        data = encode_seq_file(magic, seq, flags)
        if io.pwrite(fd, data, 0) != len(data):
            raise OSError(28, "short write of a 24-byte file")  # ENOSPC is the likely cause
        io.fsync(fd)
    finally:
        io.close(fd)
    io.replace(tmp, path)
    io.fsync_dir(path.parent)


def read_seq_file(path: Path, magic: bytes) -> SeqFile | None:
    """The sequence (and flags) held by ``path``; None if the file does not exist.

    Raises ``FormatError`` if the file stays invalid over several reads (a single
    bad read can be an update in progress).
    """
    error = FormatError(f"{path} unreadable")
    for _ in range(_READ_ATTEMPTS):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            data = os.pread(fd, SEQ_FILE_LENGTH + 1, 0)
        finally:
            os.close(fd)
        try:
            return decode_seq_file(magic, data)
        except FormatError as exc:
            error = FormatError(f"{path}: {exc}")
    raise error
