"""SIGTERM and SIGINT as a flag that a process's duty loop polls, and waiting for the
server's directories with it."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path


def stop_on_signals() -> Callable[[], bool]:
    """Catch SIGTERM and SIGINT from now on; the returned function tells whether one
    came (a duty loop's ``should_stop``). Call from the main thread."""
    caught = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal caught
        caught = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return lambda: caught


def wait_for_directory(path: Path, should_stop: Callable[[], bool], poll_s: float = 0.2) -> bool:
    """Wait until ``path`` is a directory (a reader of the log waits for the server to
    create it); False if asked to stop first."""
    while not path.is_dir():
        if should_stop():
            return False
        time.sleep(poll_s)
    return True
