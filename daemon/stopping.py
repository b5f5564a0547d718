"""SIGTERM and SIGINT as a flag that a process's duty loop polls."""

from __future__ import annotations

import signal
from collections.abc import Callable


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
