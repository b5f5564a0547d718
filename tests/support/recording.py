"""An engine that remembers what it executed, to compare a replay of the log with what
the daemon acknowledged (tests/unit/daemon/test_kill.py, test_server_equivalence.py)."""

from __future__ import annotations

import numpy as np

from core.engine import Engine
from core.schema import COMMAND_DTYPE

#: Fields of a command that the client chose (the server stamps ``ts_ns``).
CLIENT_FIELDS = [n for n in COMMAND_DTYPE.names or () if n != "ts_ns"]


class RecordingEngine(Engine):
    """Keeps every command it executes with its result and events, by seq."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.by_seq: dict[int, tuple[np.void, np.void, np.ndarray]] = {}

    def execute_view(self, commands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        results, events = super().execute_view(commands)
        for cmd, res in zip(commands.copy(), results.copy(), strict=True):
            if res["seq"]:
                first = int(res["event_start"])
                ev = events[first : first + int(res["event_count"])].copy()
                self.by_seq[int(res["seq"])] = (cmd, res, ev)
        return results, events


def assert_acknowledged_as_logged(
    engine: RecordingEngine, commands: np.ndarray, results: np.ndarray
) -> int:
    """Every command of ``commands`` that ``results`` gave a seq is in ``engine``'s
    replay with the same client fields and result; returns how many."""
    n = 0
    for cmd, res in zip(commands, results, strict=True):
        if not res["seq"]:
            continue  # refused: changed nothing, not logged
        n += 1
        logged_cmd, logged_res, _ = engine.by_seq[int(res["seq"])]
        for name in CLIENT_FIELDS:
            assert np.array_equal(logged_cmd[name], cmd[name]), f"seq {res['seq']}: {name}"
        for name in ("code", "order_id", "value", "event_count"):
            assert logged_res[name] == res[name], f"seq {res['seq']}: {name}"
    return n
