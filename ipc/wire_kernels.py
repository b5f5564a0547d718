"""The numba kernel that lays many one-command RESULTS frames end to end
(``ipc.wire_batch.encode_single_results``).

``lay_out_replies(prefixes, events, event_first, carried, offsets, out)``: for each
frame ``i``, its 72-byte prefix (header + result, ``prefixes[i]``) goes to
``out[offsets[i]:]``, followed by ``carried[i]`` events (184 bytes each) taken from
``events`` starting at row ``event_first[i]``. All arrays are uint8 rows or int64;
the caller sized ``out`` from ``offsets``. Nothing is checked here: the caller's
offsets come from the same counts.
"""

from __future__ import annotations

from typing import Any

from core.kernels.jit import kernel


@kernel
def lay_out_replies(
    prefixes: Any, events: Any, event_first: Any, carried: Any, offsets: Any, out: Any
) -> int:
    """Copy every frame's prefix and events into ``out``; returns the bytes written."""
    prefix_length = prefixes.shape[1]
    event_length = events.shape[1]
    written = 0
    for i in range(prefixes.shape[0]):
        at = offsets[i]
        for b in range(prefix_length):
            out[at + b] = prefixes[i, b]
        at += prefix_length
        first = event_first[i]
        for e in range(carried[i]):
            row = first + e
            for b in range(event_length):
                out[at + b] = events[row, b]
            at += event_length
        written = at
    return written
