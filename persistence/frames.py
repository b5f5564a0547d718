"""Engine records in log frames, built and checked in numba (docs/log.md, "Engine records").

The sequencer hands a whole batch of commands, results and events to ``frame_batch``,
which writes one frame per state-changing command straight into the log writer's
buffer, checksum included; replay hands whole segments to ``scan_frames``, which
checks every frame and pulls the commands back out. Both run at memory speed, so the
log costs what the disk costs, not what Python costs per record.

A command record (``RT_ORDER``) holds, after the frame header::

    0   u32 n_events     events the command caused
    4   u16 code         Result (always OK: rejected commands change nothing, so they
                         are not logged)
    6   u16 n_extra      command records of the command after its first: a QUOTE's
                         k QUOTE_LEVEL records (its ``amount``); 0 for every other kind
    8   i64 order_id     the result's order id
    16  i64 value        the result's value (CANCEL_ALL: orders cancelled)
    24  u32 masks[1 + n_extra + n_events]  which 8-byte words of the command, then of
                         each extra command record, then of each event, are non-zero;
                         zero-padded to a multiple of 8 bytes
    ..  the non-zero words of the command, of each extra record, of each event, in order

The head word (bytes 0..8) is ``n_events | code << 32 | n_extra << 48``. Before mass
quotes it was ``n_events | code << 32`` with ``code`` always 0, so every record written
before reads as ``n_extra`` 0, unchanged. A QUOTE is one command made of k + 1
consecutive records of its batch (docs/engine.md, "QUOTE"): one result, one seq, one
record; its level records' own results have seq 0 and are not framed on their own.

An event's ``seq`` and ``ts_ns`` words are left out (they are the frame's sequence
and the command's time). Most words of a command or an event are zero, so a record
is about half the size of the raw records; a replace with its three events is about
330 bytes instead of 700.

The other record types are written by the journal from Python, one at a time:
``RT_BALANCE`` (a balance.update, ``persistence.replay.encode_balance``) and
``RT_CATALOG`` (an ADD_ASSET or ADD_MARKET, ``persistence.replay.encode_catalog_record``).
"""

from __future__ import annotations

import numpy as np

from core.kernels.jit import inline, kernel
from core.kernels.quote import MAX_GROUP_LEVELS
from core.schema import COMMAND_DTYPE, EVENT_DTYPE, CommandKind
from persistence.log_format import FRAME_HEADER_LENGTH

#: Record types of the engine (frame ``rtype``).
RT_ORDER = 1  #: an order command (COMMAND_DTYPE records), its result and its events
RT_BALANCE = 2  #: a balance.update, its result and its event
#: an ADD_ASSET or ADD_MARKET: the command's time (i64) and the JSON of its config table
#: (``persistence.replay.encode_catalog_record``); its result is the frame's sequence
RT_CATALOG = 3

COMMAND_WORDS = COMMAND_DTYPE.itemsize // 8
EVENT_WORDS = EVENT_DTYPE.itemsize // 8
if COMMAND_DTYPE.itemsize % 8 or EVENT_DTYPE.itemsize % 8 or max(COMMAND_WORDS, EVENT_WORDS) > 32:
    raise ImportError("commands and events must be whole 8-byte words, at most 32 (a u32 mask)")
#: Words of an event implied by its frame (seq, ts_ns): never stored.
EVENT_IMPLIED_WORDS = 2
ORDER_HEAD_BYTES = 24
#: Most extra command records a record may hold (a QUOTE's levels, both sides full);
#: a record that says more does not add up.
MAX_EXTRA_COMMANDS = MAX_GROUP_LEVELS


def _command_offset(name: str) -> int:
    fields = COMMAND_DTYPE.fields
    if fields is None:  # pragma: no cover -- a structured dtype
        raise ImportError("COMMAND_DTYPE has no fields")
    return int(fields[name][1])


#: Where a command's kind (i1) and amount (i8) lie in its int64 words.
KIND_WORD = _command_offset("kind") // 8
KIND_SHIFT = _command_offset("kind") % 8 * 8
AMOUNT_WORD = _command_offset("amount") // 8
if _command_offset("amount") % 8:
    raise ImportError("a command's amount must be a whole word")
_QUOTE = int(CommandKind.QUOTE)
_WORD = 8
_MASK32 = 0xFFFFFFFF
_MASK16 = 0xFFFF


def _crc_tables() -> np.ndarray:
    """Slicing-by-8 tables of CRC32C (Castagnoli, reflected polynomial 0x82F63B78)."""
    t = np.zeros((8, 256), dtype=np.int64)
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t[0, n] = c
    for n in range(256):
        c = int(t[0, n])
        for k in range(1, 8):
            c = int(t[0, c & 0xFF]) ^ (c >> 8)
            t[k, n] = c
    return t


_T = _crc_tables()


@kernel
def crc32c(buf: np.ndarray, start: int, end: int, value: int) -> int:
    """CRC32C of ``buf[start:end]`` (uint8), continuing from the CRC ``value`` (0 to
    start), exactly as ``crc32c.crc32c(data, value)``."""
    t = _T
    c = (value ^ _MASK32) & _MASK32
    i = start
    while i + 8 <= end:
        lo = c ^ (
            np.int64(buf[i])
            | (np.int64(buf[i + 1]) << 8)
            | (np.int64(buf[i + 2]) << 16)
            | (np.int64(buf[i + 3]) << 24)
        )
        c = (
            t[7, lo & 0xFF]
            ^ t[6, (lo >> 8) & 0xFF]
            ^ t[5, (lo >> 16) & 0xFF]
            ^ t[4, (lo >> 24) & 0xFF]
            ^ t[3, buf[i + 4]]
            ^ t[2, buf[i + 5]]
            ^ t[1, buf[i + 6]]
            ^ t[0, buf[i + 7]]
        )
        i += 8
    while i < end:  # np.int64: under NUMBA_DISABLE_JIT, c ^ a uint8 would be a uint8
        c = t[0, (c ^ np.int64(buf[i])) & 0xFF] ^ (c >> 8)
        i += 1
    return int((c ^ _MASK32) & _MASK32)


@inline
def _pack(out64: np.ndarray, w: int, row: np.ndarray, first: int, n: int) -> tuple[int, int]:
    """Append the non-zero words of ``row[first:n]`` at word ``w``; (mask, next w)."""
    mask = 0
    for k in range(first, n):
        v = row[k]
        if v != 0:
            mask |= 1 << k
            out64[w] = v
            w += 1
    return mask, w


@inline
def _set_mask(out64: np.ndarray, masks: int, k: int, mask: int) -> None:
    """Set the u32 mask ``k`` of the masks that start at word ``masks`` (zeroed)."""
    out64[masks + k // 2] |= np.int64(mask) << (32 * (k % 2))


@inline
def _extra_commands(row: np.ndarray) -> int:
    """The command records that follow the command ``row`` (int64 words) as part of
    it: a QUOTE's ``amount`` (k, its levels); 0 for every other kind."""
    if (row[KIND_WORD] >> KIND_SHIFT) & 0xFF == _QUOTE:
        return int(row[AMOUNT_WORD])
    return 0


@inline
def _seal(
    out: np.ndarray, out64: np.ndarray, pos: int, end: int, seq: int, rtype: int, batch_index: int
) -> None:
    """Write the frame header of the frame [pos, end) and its checksum."""
    w = pos // _WORD
    length = end - pos - FRAME_HEADER_LENGTH
    out64[w + 1] = seq
    out64[w + 2] = rtype | (np.int64(batch_index) << 32)
    out64[w] = length
    crc = crc32c(out, pos, pos + 4, 0)
    crc = crc32c(out, pos + 8, end, crc)
    for b in range(4):  # bytes, not a shifted int64: crc << 32 may not fit one
        out[pos + 4 + b] = (crc >> (8 * b)) & 0xFF


@kernel
def frame_batch(
    out: np.ndarray,
    out64: np.ndarray,
    pos: int,
    cmds64: np.ndarray,
    results: np.ndarray,
    ev64: np.ndarray,
    batch_index: int,
    per_record: bool,
    ends: np.ndarray,
    seqs: np.ndarray,
) -> tuple[int, int]:
    """Frame every command of the batch that got a sequence number.

    ``out`` (uint8) and ``out64`` (int64) view the same buffer, with room from byte
    ``pos`` (a multiple of 8) for the worst case (``frame_bound``). ``batch_index`` is
    the writer's next index within its commit batch; ``per_record`` (fsync=always)
    gives every record index 0. A QUOTE's record holds its k level records too (the
    rows after it, whose results have seq 0). Writes each frame's end offset and
    sequence into ``ends`` and ``seqs``; returns (next pos, frames written), or
    (pos, -1 - i) if command i is a QUOTE whose k levels are not in the batch (or
    more than ``MAX_EXTRA_COMMANDS``): an engine cannot have accepted that, and
    nothing of the batch may be logged.
    """
    n = 0
    rows = cmds64.shape[0]
    for i in range(results.shape[0]):
        r = results[i]
        seq = r["seq"]
        if seq == 0:
            continue
        extra = _extra_commands(cmds64[i])
        if extra < 0 or extra > MAX_EXTRA_COMMANDS or i + extra >= rows:
            return pos, -1 - i
        count = r["event_count"]
        first = r["event_start"]
        w = pos // _WORD + FRAME_HEADER_LENGTH // _WORD
        code = np.int64(r["code"]) & _MASK16
        out64[w] = np.int64(count) | (code << 32) | (np.int64(extra) << 48)
        out64[w + 1] = r["order_id"]
        out64[w + 2] = r["value"]
        masks = w + 3  # u32 masks, two per word
        words = masks + (1 + extra + count + 1) // 2
        for k in range(masks, words):
            out64[k] = 0
        wn = words
        for j in range(1 + extra):
            mask, wn = _pack(out64, wn, cmds64[i + j], 0, COMMAND_WORDS)
            _set_mask(out64, masks, j, mask)
        for j in range(count):
            mask, wn = _pack(out64, wn, ev64[first + j], EVENT_IMPLIED_WORDS, EVENT_WORDS)
            _set_mask(out64, masks, 1 + extra + j, mask)
        end = wn * _WORD
        _seal(out, out64, pos, end, seq, RT_ORDER, 0 if per_record else batch_index + n)
        ends[n] = end
        seqs[n] = seq
        n += 1
        pos = end
    return pos, n


@kernel
def rebatch_frames(
    buf: np.ndarray,
    buf64: np.ndarray,
    starts: np.ndarray,
    stops: np.ndarray,
    batch_index: int,
    per_record: bool,
) -> None:
    """Give the frames [starts[i], stops[i]) the batch indexes ``batch_index + i`` (0
    each with ``per_record``) and seal them again. Frames that came from another log
    (a replica storing its primary's records, checked already) join this writer's
    commit batch as if it had framed them: recovery reads batch indexes to tell a
    torn write from damage."""
    for i in range(starts.shape[0]):
        pos = starts[i]
        w = pos // _WORD
        index = 0 if per_record else batch_index + i
        buf64[w + 2] = (buf64[w + 2] & _MASK32) | (np.int64(index) << 32)
        crc = crc32c(buf, pos, pos + 4, 0)
        crc = crc32c(buf, pos + 8, stops[i], crc)
        for b in range(4):
            buf[pos + 4 + b] = (crc >> (8 * b)) & 0xFF


def frame_bound(commands: int, events: int) -> int:
    """Bytes ``frame_batch`` may need for this many command records and events. Each
    record of a batch counts, a QUOTE's levels too: a level framed within its QUOTE's
    record costs a mask and its words, less than a record of its own."""
    per_command = FRAME_HEADER_LENGTH + ORDER_HEAD_BYTES + _WORD + COMMAND_WORDS * _WORD
    return commands * per_command + events * (4 + EVENT_WORDS * _WORD) + _WORD


# ------------------------------------------------------------------ reading back


@inline
def _unpack(src64: np.ndarray, w: int, mask: int, row: np.ndarray, n: int) -> int:
    for k in range(n):
        if (mask >> k) & 1:
            row[k] = src64[w]
            w += 1
        else:
            row[k] = 0
    return w


@inline
def _mask_at(src64: np.ndarray, masks: int, k: int) -> int:
    """The u32 mask ``k`` of the masks that start at word ``masks``."""
    return int((src64[masks + k // 2] >> (32 * (k % 2))) & _MASK32)


@inline
def _take(
    src64: np.ndarray, w: int, last: int, mask: int, row: np.ndarray, keep: bool, n: int
) -> int:
    """Read the words of ``mask`` at word ``w`` into ``row`` (``n`` words) if ``keep``,
    else skip them; the next w, or -1 if they run past word ``last``."""
    m = mask - ((mask >> 1) & 0x55555555)  # the set bits of a u32 (SWAR popcount)
    m = (m & 0x33333333) + ((m >> 2) & 0x33333333)
    bits = ((((m + (m >> 4)) & 0x0F0F0F0F) * 0x01010101) >> 24) & 0xFF
    if w + bits > last:
        return -1
    if keep:
        _unpack(src64, w, mask, row, n)
    return w + bits


@inline
def _take_rows(
    src64: np.ndarray,
    w: int,
    last: int,
    masks: int,
    k0: int,
    count: int,
    rows: np.ndarray,
    n: int,
    spare: np.ndarray,
) -> int:
    """``_take`` of ``count`` records (``n`` words each) with masks ``k0``.. into the
    rows of ``rows`` while it has some (the rest are skipped; ``spare`` is a row of
    the same type, never written); the next w, or -1."""
    for j in range(count):
        keep = j < rows.shape[0]
        row = rows[j] if keep else spare
        w = _take(src64, w, last, _mask_at(src64, masks, k0 + j), row, keep, n)
        if w < 0:
            return -1
    return w


@kernel
def decode_order(
    buf: np.ndarray,
    buf64: np.ndarray,
    pos: int,
    end: int,
    cmd_row: np.ndarray,
    extra_rows: np.ndarray,
    ev_rows: np.ndarray,
) -> tuple[int, int, int, int, int, int]:
    """Decode the RT_ORDER frame [pos, end) (checked already): fills ``cmd_row``
    (int64[COMMAND_WORDS]), the extra command records (a QUOTE's levels) into the rows
    of ``extra_rows`` (int64, COMMAND_WORDS columns) and the events into the rows of
    ``ev_rows`` (int64, EVENT_WORDS columns; seq and ts_ns left 0), each as far as it
    has rows; returns (n_events, code, order_id, value, n_extra, problem), where
    problem is 0, or 1 if the payload does not add up (also: more than
    ``MAX_EXTRA_COMMANDS`` extra records, or not as many as the command says)."""
    w = pos // _WORD + FRAME_HEADER_LENGTH // _WORD
    last = end // _WORD
    if w + 3 > last:
        return 0, 0, 0, 0, 0, 1
    head = buf64[w]
    count = head & _MASK32
    code = (head >> 32) & _MASK16
    extra = (head >> 48) & _MASK16
    masks = w + 3
    wn = masks + (1 + extra + count + 1) // 2
    if extra > MAX_EXTRA_COMMANDS or wn > last:
        return 0, 0, 0, 0, 0, 1
    wn = _take(buf64, wn, last, _mask_at(buf64, masks, 0), cmd_row, True, COMMAND_WORDS)
    if wn < 0 or _extra_commands(cmd_row) != extra:
        return 0, 0, 0, 0, 0, 1
    wn = _take_rows(buf64, wn, last, masks, 1, extra, extra_rows, COMMAND_WORDS, cmd_row)
    if wn >= 0:
        wn = _take_rows(buf64, wn, last, masks, 1 + extra, count, ev_rows, EVENT_WORDS, cmd_row)
    if wn != last:
        return 0, 0, 0, 0, 0, 1
    return count, code, buf64[w + 1], buf64[w + 2], extra, 0


# Problems ``scan_frames`` reports (0 = none).
SCAN_OK = 0
SCAN_SHORT = 1  #: a frame runs past the end of the data
SCAN_LENGTH = 2  #: a length over the limit or not a multiple of 8 with its header
SCAN_CRC = 3  #: checksum mismatch
SCAN_SEQ = 4  #: not the expected sequence
SCAN_TYPE = 5  #: record type 0, or flags set
SCAN_PROBLEMS = (
    "none",
    "frame cut short",
    "bad length",
    "checksum mismatch",
    "sequence gap",
    "bad record type or flags",
)


@inline
def _check_frame(
    buf: np.ndarray, buf64: np.ndarray, pos: int, end: int, expected_seq: int, max_payload: int
) -> tuple[int, int]:
    """(end of the frame at ``pos``, SCAN_OK) if its length fits ``max_payload`` and the
    data, its checksum holds, it has ``expected_seq``, a type and no flags; else
    (pos, the problem)."""
    if pos + FRAME_HEADER_LENGTH > end:
        return pos, SCAN_SHORT
    w = pos // _WORD
    length = buf64[w] & _MASK32
    if length > max_payload:
        return pos, SCAN_LENGTH
    stop = pos + FRAME_HEADER_LENGTH + length
    stop += (_WORD - stop % _WORD) % _WORD
    if stop > end:
        return pos, SCAN_SHORT
    crc = crc32c(buf, pos, pos + 4, 0)
    if crc32c(buf, pos + 8, stop, crc) != (buf64[w] >> 32) & _MASK32:
        return pos, SCAN_CRC
    if buf64[w + 1] != expected_seq:
        return pos, SCAN_SEQ
    meta = buf64[w + 2]
    if meta & 0xFFFF == 0 or (meta >> 16) & 0xFFFF != 0:
        return pos, SCAN_TYPE
    return stop, SCAN_OK


@kernel
def scan_frames(
    buf: np.ndarray,
    buf64: np.ndarray,
    pos: int,
    end: int,
    expected_seq: int,
    max_payload: int,
    starts: np.ndarray,
    seqs: np.ndarray,
    types: np.ndarray,
) -> tuple[int, int, int]:
    """Check frames from byte ``pos`` (8-aligned) up to ``end``, at most
    ``starts.shape[0]`` of them, recording each one's start, sequence and type.

    Returns (pos after the last good frame, frames recorded, problem at pos): the
    frame end of record i is ``starts[i + 1]``, or the returned pos for the last.
    """
    n = 0
    cap = starts.shape[0]
    while n < cap and pos < end:
        stop, problem = _check_frame(buf, buf64, pos, end, expected_seq, max_payload)
        if problem != SCAN_OK:
            return pos, n, problem
        starts[n] = pos
        seqs[n] = expected_seq
        types[n] = buf64[pos // _WORD + 2] & 0xFFFF
        n += 1
        expected_seq += 1
        pos = stop
    return pos, n, SCAN_OK


@kernel
def decode_orders(
    buf: np.ndarray,
    buf64: np.ndarray,
    starts: np.ndarray,
    stops: np.ndarray,
    cmds64: np.ndarray,
    heads: np.ndarray,
    expect: np.ndarray,
    none: np.ndarray,
) -> tuple[int, int, int]:
    """Decode the RT_ORDER frames [starts[i], stops[i]) one after the other into the
    rows of ``cmds64``, each frame's command followed by its extra records (a QUOTE
    and its levels: the batch it was logged from), while they fit: ``heads[i]`` is the
    row of frame i's command, ``expect[i]`` its (n_events, code, order_id, value).
    Returns (frames decoded, rows filled, index of the first frame whose payload does
    not add up or -1). ``cmds64`` must have 1 + ``MAX_EXTRA_COMMANDS`` rows at least, so
    that any frame fits in an empty one; ``none`` is an empty int64 (0, EVENT_WORDS)
    array (the events are not decoded)."""
    row = 0
    cap = cmds64.shape[0]
    for i in range(starts.shape[0]):
        if row >= cap:
            return i, row, -1
        count, code, order_id, value, extra, problem = decode_order(
            buf, buf64, starts[i], stops[i], cmds64[row], cmds64[row + 1 :], none
        )
        if problem:
            return i, row, i
        if row + 1 + extra > cap:  # not whole: the next call takes it
            return i, row, -1
        heads[i] = row
        expect[i, 0] = count
        expect[i, 1] = code
        expect[i, 2] = order_id
        expect[i, 3] = value
        row += 1 + extra
    return starts.shape[0], row, -1


@inline
def _whole_frame(
    buf: np.ndarray,
    buf64: np.ndarray,
    pos: int,
    end: int,
    expected_seq: int,
    max_payload: int,
    prev_batch_index: int,
) -> tuple[int, int]:
    """(end of the frame at ``pos``, its batch index) if it is fully valid (what
    ``_check_frame`` checks, a batch index of 0 or the previous + 1, zero padding);
    else (pos, -1)."""
    stop, problem = _check_frame(buf, buf64, pos, end, expected_seq, max_payload)
    if problem != SCAN_OK:
        return pos, -1
    w = pos // _WORD
    index = (buf64[w + 2] >> 32) & _MASK32
    if index != 0 and index != prev_batch_index + 1:
        return pos, -1
    for b in range(pos + FRAME_HEADER_LENGTH + (buf64[w] & _MASK32), stop):
        if buf[b] != 0:
            return pos, -1
    return stop, index


@kernel
def scan_records(
    buf: np.ndarray,
    buf64: np.ndarray,
    pos: int,
    end: int,
    expected_seq: int,
    max_payload: int,
    prev_batch_index: int,
    starts: np.ndarray,
    lengths: np.ndarray,
    types: np.ndarray,
) -> tuple[int, int, int]:
    """The frames from ``pos`` that ``fast_forward`` would pass (every check it makes),
    at most ``starts.shape[0]`` of them, each one's start, payload length and type
    recorded; returns (pos after them, how many, the last one's batch index). Stops,
    without saying why, at the first frame that is cut short by ``end`` or not valid:
    the caller reads that one the slow way, which says why."""
    n = 0
    while n < starts.shape[0] and pos < end:
        stop, index = _whole_frame(
            buf, buf64, pos, end, expected_seq, max_payload, prev_batch_index
        )
        if index < 0:
            break
        w = pos // _WORD
        starts[n] = pos
        lengths[n] = buf64[w] & _MASK32
        types[n] = buf64[w + 2] & 0xFFFF
        prev_batch_index = index
        expected_seq += 1
        n += 1
        pos = stop
    return pos, n, prev_batch_index


@kernel
def fast_forward(
    buf: np.ndarray,
    buf64: np.ndarray,
    pos: int,
    end: int,
    expected_seq: int,
    max_payload: int,
    prev_batch_index: int,
) -> tuple[int, int, int]:
    """Skip every fully valid frame from ``pos`` (length within the limit and the data,
    checksum, sequence, type, flags, batch index 0 or the previous + 1, zero padding);
    returns (pos, next expected seq, last batch index) at the first frame that is not,
    or at ``end``. The caller says why that frame is not valid."""
    while pos < end:
        stop, index = _whole_frame(
            buf, buf64, pos, end, expected_seq, max_payload, prev_batch_index
        )
        if index < 0:
            break
        prev_batch_index = index
        expected_seq += 1
        pos = stop
    return pos, expected_seq, prev_batch_index
