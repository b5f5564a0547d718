"""A batch of log records decoded at once, for the drainer's bulk rows (docs/history.md).

``RecordDecoder`` decodes one record per Python call (about 9 µs each); the drainer
reads thousands a batch. ``decode_batch`` copies the payloads of a batch's order
records into one frame-aligned buffer and decodes them all in one kernel call
(``decode_frames``, around ``persistence.frames.decode_order``): the commands, the
results and every event of the batch come out as arrays, the events concatenated in
record order with their record's ``seq`` and ``ts_ns`` filled in. The rare
balance.update records go through ``RecordDecoder``. ``DecodedBatch.record(i)``
gives one order record back as a ``DecodedRecord`` for the code that wants one.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.kernels.jit import kernel
from core.schema import COMMAND_DTYPE, EVENT_DTYPE
from persistence.frames import COMMAND_WORDS, EVENT_WORDS, RT_BALANCE, RT_ORDER, decode_order
from persistence.history_rows import DecodedRecord, HistoryRecordError, RecordDecoder
from persistence.log_format import FRAME_HEADER_LENGTH
from persistence.log_reader import Record

_WORD = 8
_HEADER_PAD = bytes(FRAME_HEADER_LENGTH)
_PADS = tuple(bytes(k) for k in range(_WORD))


@kernel
def decode_frames(
    buf: np.ndarray,
    buf64: np.ndarray,
    starts: np.ndarray,
    stops: np.ndarray,
    cmds64: np.ndarray,
    events64: np.ndarray,
    results: np.ndarray,
) -> tuple[int, int]:
    """Decode the RT_ORDER frames [starts[i], stops[i]) into ``cmds64[i]`` and
    ``results[i]`` (n_events, code, order_id, value), their events one after the other
    into ``events64`` while it has room; returns (index of the first frame that does
    not add up or -1, events in all). With more events than rows the caller grows
    ``events64`` and calls again."""
    total = 0
    rows = events64.shape[0]
    for i in range(starts.shape[0]):
        room = events64[min(total, rows) :]
        count, code, order_id, value, problem = decode_order(
            buf, buf64, starts[i], stops[i], cmds64[i], room
        )
        if problem:
            return i, total
        results[i, 0] = count
        results[i, 1] = code
        results[i, 2] = order_id
        results[i, 3] = value
        total += count
    return -1, total


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """Consecutive log records, decoded: the order records as arrays (index i = the
    i-th order record of the batch), the balance.update records one by one."""

    first_seq: int
    last_seq: int
    seqs: np.ndarray  #: int64, per order record
    ts_ns: np.ndarray  #: int64, per order record (its command's time)
    commands: np.ndarray  #: COMMAND_DTYPE, per order record
    order_ids: np.ndarray  #: int64, the result's order id, per order record
    values: np.ndarray  #: int64, the result's value, per order record
    counts: np.ndarray  #: int64, events per order record
    events: np.ndarray  #: EVENT_DTYPE, every order record's events in order
    payloads: list[bytes]  #: per order record, byte for byte
    balances: list[DecodedRecord]  #: the balance.update records

    @property
    def orders(self) -> int:
        """Order records in the batch."""
        return int(self.seqs.shape[0])

    def record(self, i: int) -> DecodedRecord:
        """Order record ``i`` as a ``DecodedRecord``."""
        stop = int(self.counts[: i + 1].sum())
        start = stop - int(self.counts[i])
        return DecodedRecord(
            int(self.seqs[i]), RT_ORDER, int(self.ts_ns[i]), self.events[start:stop],
            self.commands[i], int(self.order_ids[i]), int(self.values[i]), None,
            self.payloads[i],
        )  # fmt: skip


class BatchDecoder:
    """Decodes batches of records, reusing its buffers (grown when a batch needs more)."""

    def __init__(self, events: int = 1 << 16) -> None:
        """Room for ``events`` events per batch at first."""
        self._events = np.zeros((events, EVENT_WORDS), dtype=np.int64)
        self._single = RecordDecoder()

    def decode(self, records: Sequence[Record]) -> DecodedBatch:
        """Decode ``records`` (consecutive sequences, in order); ``HistoryRecordError``
        if they are not, or if one does not decode."""
        if not records:
            raise ValueError("decode_batch needs at least one record")
        for prev, record in itertools.pairwise(records):
            if record.seq != prev.seq + 1:
                raise HistoryRecordError(f"seq {record.seq} after {prev.seq}: not in order")
        orders = [r for r in records if r.rtype == RT_ORDER]
        balances = []
        for r in records:
            if r.rtype == RT_BALANCE:
                balances.append(self._single.decode(r))
            elif r.rtype != RT_ORDER:
                raise HistoryRecordError(f"seq {r.seq}: unknown record type {r.rtype}")
        n = len(orders)
        sizes = np.fromiter(
            (FRAME_HEADER_LENGTH + len(r.payload) for r in orders), dtype=np.int64, count=n
        )
        padded = sizes + (-sizes % _WORD)
        stops = np.cumsum(padded)
        starts = stops - padded
        parts: list[bytes] = []
        for r, pad in zip(orders, (padded - sizes).tolist(), strict=True):
            parts += (_HEADER_PAD, r.payload, _PADS[pad])
        buf = np.frombuffer(b"".join(parts), dtype=np.uint8)
        cmds64 = np.zeros((n, COMMAND_WORDS), dtype=np.int64)
        results = np.zeros((n, 4), dtype=np.int64)
        while True:
            bad, total = decode_frames(
                buf, buf.view(np.int64), starts, stops, cmds64, self._events, results
            )
            if bad >= 0 or total <= self._events.shape[0]:
                break
            self._events = np.zeros((2 * total, EVENT_WORDS), dtype=np.int64)
        if bad >= 0:
            raise HistoryRecordError(f"seq {orders[bad].seq}: order record does not add up")
        refused = np.flatnonzero(results[:, 1])
        if refused.shape[0]:
            seq = orders[int(refused[0])].seq
            raise HistoryRecordError(f"seq {seq}: order record does not add up")
        commands = cmds64.view(COMMAND_DTYPE).reshape(n)
        counts = results[:, 0].copy()
        seqs = np.fromiter((r.seq for r in orders), dtype=np.int64, count=n)
        ts_ns = commands["ts_ns"].astype(np.int64)
        events = self._events[:total].copy().view(EVENT_DTYPE).reshape(total)
        events["seq"] = np.repeat(seqs, counts)
        events["ts_ns"] = np.repeat(ts_ns, counts)
        return DecodedBatch(
            first_seq=records[0].seq, last_seq=records[-1].seq, seqs=seqs, ts_ns=ts_ns,
            commands=commands, order_ids=results[:, 2].copy(), values=results[:, 3].copy(),
            counts=counts, events=events, payloads=[r.payload for r in orders],
            balances=balances,
        )  # fmt: skip
