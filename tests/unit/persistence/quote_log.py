"""A small log with mass quotes in it, framed by hand as the journal frames records
(``persistence.frames.frame_batch``), so that the log's consumers can be tested
without an engine that executes QUOTE (not a test module).

``write_quote_log(log_dir)`` writes, in BTC_USDT of ``stream_config``, for user 1:

==== =============== ===================================================================
seq  command         events
==== =============== ===================================================================
1    balance.update  deposits 1 BTC
2    balance.update  deposits 1000 USDT
3    QUOTE, 3 levels ask 0.1 at 100.00, ask 0.2 at 101.00, bid 0.1 at 90.00: NEW orders
                     1, 2, 3 (FREEZE, ORDER_PUT each)
-    CANCEL          refused (order 9 not found): not logged
4    QUOTE, 2 levels ask 0.05 at 100.00 (order 1 SHRUNK), bid 0.1 at 90.00 (order 3
                     KEPT): order 2 is stale (UNFREEZE, ORDER_FINISH cancelled), then
                     order 1's UNFREEZE and ORDER_UPDATE; value 1
5    QUOTE, 0 levels orders 1 and 3 stale (UNFREEZE, ORDER_FINISH cancelled each); value 2
==== =============== ===================================================================

Seq 3 to 5 are framed from one batch of 9 command records, the refused CANCEL amid
them. The values are consistent (balances after each event, frozen reserves), as the
engine would write them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import commands as C
from core.schema import (
    MAX_QUOTE_LEVELS,
    RESULT_DTYPE,
    Business,
    CommandKind,
    EventKind,
    FinishReason,
    OrderFlag,
    OrderType,
    Result,
    Side,
)
from persistence.frames import COMMAND_WORDS, EVENT_WORDS, frame_batch, frame_bound
from persistence.journal import journal_log_config
from persistence.log_writer import LogWriter
from tests.unit.persistence.journal_support import Work, work
from tests.unit.persistence.market_ops_log import (
    BTC,
    BTC_USDT,
    ONE_BTC,
    T0_NS,
    USDT,
    USDT_1000,
    append_deposit,
    command,
    event,
)

USER = 1
LOT_UNITS = 10**4  #: BTC units a lot (stock_prec 6, BTC prec 10)
TAKER_RATE, MAKER_RATE = 20, 10
SOURCE = b"mm"
#: (order id, side, price ticks, lots) of the first quote's levels.
LEVELS_1 = ((1, int(Side.ASK), 10_000, 100_000), (2, int(Side.ASK), 10_100, 200_000),
            (3, int(Side.BID), 9_000, 100_000))  # fmt: skip
SHRUNK_LOTS = 50_000  #: order 1's new left (seq 4)
SEQ_QUOTE, SEQ_REQUOTE, SEQ_PULL = 3, 4, 5
LAST_SEQ = 5
QUOTE_FLAGS = int(OrderFlag.POST_ONLY) | int(OrderFlag.QUOTE)


@dataclass(frozen=True, slots=True)
class QuoteBatch:
    """A batch of command records as the engine returns it: the records, their results
    and the batch's events."""

    commands: np.ndarray  #: COMMAND_DTYPE
    results: np.ndarray  #: RESULT_DTYPE
    events: np.ndarray  #: EVENT_DTYPE (seq and ts_ns filled in)


def quote_records(
    ts_ns: int, levels: list[tuple[int, int, int]], *, user: int = USER
) -> np.ndarray:
    """A QUOTE group in BTC_USDT (``core.commands.quote``): the header (``amount`` = k)
    and one QUOTE_LEVEL record per (side, price, lots) of ``levels``."""
    return C.quote(user, BTC_USDT, levels, TAKER_RATE, MAKER_RATE, ts_ns=ts_ns, source=SOURCE)


def _order(kind: EventKind, order_id: int, side: int, price: int, lots: int, left: int,
           ctime_ns: int, mtime_ns: int, **fields: int) -> np.ndarray:  # fmt: skip
    ev = event(
        kind, order_id=order_id, user=USER, market=BTC_USDT, side=side, price=price,
        amount=lots, left=left, otype=int(OrderType.LIMIT), ctime_ns=ctime_ns,
        mtime_ns=mtime_ns, taker_rate=TAKER_RATE, maker_rate=MAKER_RATE, flags=QUOTE_FLAGS,
        source_len=len(SOURCE), **fields,
    )  # fmt: skip
    ev["source"][0, : len(SOURCE)] = np.frombuffer(SOURCE, dtype=np.uint8)
    return ev


def _reserve(side: int, price: int, lots: int) -> tuple[int, int]:
    """(asset, units) an order of ``lots`` at ``price`` keeps frozen."""
    return (BTC, lots * LOT_UNITS) if side == Side.ASK else (USDT, lots * price)


class _Balances:
    """User 1's balances, giving the BALANCE events of freezes and unfreezes."""

    def __init__(self) -> None:
        self.available = {BTC: ONE_BTC, USDT: USDT_1000}
        self.frozen = {BTC: 0, USDT: 0}

    def move(self, business: Business, order_id: int, asset: int, units: int) -> np.ndarray:
        d = units if business == Business.FREEZE else -units
        self.available[asset] -= d
        self.frozen[asset] += d
        return event(
            EventKind.BALANCE, user=USER, asset=asset, market=BTC_USDT, order_id=order_id,
            reason=int(business), left=self.available[asset], deal_stock=self.frozen[asset],
            deal_money=-d, deal_fee=d,
        )  # fmt: skip


def quote_batch(first_seq: int = SEQ_QUOTE) -> QuoteBatch:
    """The batch of seq 3..5 (see the module docstring), its results and events."""
    ts = [T0_NS + k * 1_000_000 for k in range(LAST_SEQ + 2)]
    cancelled = int(FinishReason.CANCELED)
    bal = _Balances()
    quote = []  # seq 3: three NEW levels
    for order_id, side, price, lots in LEVELS_1:
        quote += [
            bal.move(Business.FREEZE, order_id, *_reserve(side, price, lots)),
            _order(EventKind.ORDER_PUT, order_id, side, price, lots, lots, ts[3], ts[3]),
        ]
    o1, o2, o3 = LEVELS_1
    requote = [  # seq 4: order 2 stale, order 1 shrunk, order 3 kept
        bal.move(Business.UNFREEZE, 2, *_reserve(*o2[1:])),
        _order(EventKind.ORDER_FINISH, 2, *o2[1:], o2[3], ts[3], ts[4], reason=cancelled),
        bal.move(Business.UNFREEZE, 1, BTC, (o1[3] - SHRUNK_LOTS) * LOT_UNITS),
        _order(EventKind.ORDER_UPDATE, 1, o1[1], o1[2], SHRUNK_LOTS, SHRUNK_LOTS, ts[3], ts[4]),
    ]
    pull = [  # seq 5: orders 1 and 3 stale
        bal.move(Business.UNFREEZE, 1, BTC, SHRUNK_LOTS * LOT_UNITS),
        _order(EventKind.ORDER_FINISH, 1, o1[1], o1[2], SHRUNK_LOTS, SHRUNK_LOTS, ts[3], ts[5],
               reason=cancelled),
        bal.move(Business.UNFREEZE, 3, *_reserve(*o3[1:])),
        _order(EventKind.ORDER_FINISH, 3, *o3[1:], o3[3], ts[3], ts[5], reason=cancelled),
    ]  # fmt: skip
    assert bal.frozen == {BTC: 0, USDT: 0}
    commands = np.concatenate([
        quote_records(ts[3], [lv[1:] for lv in LEVELS_1]),
        command(CommandKind.CANCEL, ts[4], user=USER, market=BTC_USDT, order_id=9),
        quote_records(ts[4], [(*o1[1:3], SHRUNK_LOTS), o3[1:]]),
        quote_records(ts[5], []),
    ])  # fmt: skip
    results = np.zeros(commands.shape[0], dtype=RESULT_DTYPE)
    results["code"][4] = int(Result.ORDER_NOT_FOUND)
    # (row, seq, order id, value, events): the headers; the levels' rows after them
    heads = ((0, quote, 0), (5, requote, 1), (8, pull, 2))
    start = 0
    for k, (row, evs, value) in enumerate(heads):
        results[row] = (first_seq + k, 0, value, 0, start, len(evs), 0)
        start += len(evs)
    for row, (order_id, action) in zip((1, 2, 3, 6, 7), ((1, 3), (2, 3), (3, 3), (1, 1), (3, 0)),
                                       strict=True):  # fmt: skip
        results[row]["order_id"] = order_id
        results[row]["value"] = action
    events = np.concatenate(quote + requote + pull)
    events["seq"] = np.repeat(results["seq"][[0, 5, 8]], [len(quote), len(requote), len(pull)])
    events["ts_ns"] = np.repeat([ts[3], ts[4], ts[5]], [len(quote), len(requote), len(pull)])
    return QuoteBatch(commands, results, events)


def frame(batch: QuoteBatch, batch_index: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """``frame_batch`` of ``batch``: (buffer, frame ends, frames)."""
    n = batch.commands.shape[0]
    size = frame_bound(n, batch.events.shape[0])
    frames = np.zeros(size + (-size % 8), dtype=np.uint8)
    ends = np.zeros(n, dtype=np.int64)
    seqs = np.zeros(n, dtype=np.int64)
    end, count = frame_batch(
        frames, frames.view(np.int64), 0, batch.commands.view(np.int64).reshape(n, COMMAND_WORDS),
        batch.results, batch.events.view(np.int64).reshape(-1, EVENT_WORDS), batch_index,
        False, ends, seqs,
    )  # fmt: skip
    assert count >= 0
    return frames[:end], ends[:count], count


def write_quote_log(log_dir: Path) -> None:
    """The log of the module docstring in ``log_dir`` (a new directory)."""
    writer = LogWriter.open(log_dir, journal_log_config())
    try:
        append_deposit(writer, USER, BTC, ONE_BTC, T0_NS + 1_000_000)
        append_deposit(writer, USER, USDT, USDT_1000, T0_NS + 2_000_000)
        frames, ends, _ = frame(quote_batch(), writer.next_batch_index)
        writer.append_framed(frames, ends, SEQ_QUOTE)
        writer.commit()
        assert writer.last_seq == LAST_SEQ
    finally:
        writer.close()


# ------------------------------------------------------------------ with the engine

#: Prices of the quote ladders in ``quoting_work``: just outside the stream's 9,950 ..
#: 10,050, so that the quotes rest (post-only) and market orders reach them now and then.
ASK_PRICES = tuple(range(10_060, 10_160, 20))
BID_PRICES = tuple(range(9_860, 9_960, 20))
MAKERS = (1, 2, 3)


def full_ladder(user: int, ts_ns: int) -> np.ndarray:
    """A QUOTE group of ``user`` in BTC_USDT with 32 levels a side."""
    asks = [(int(Side.ASK), 10_060 + 10 * j, 1000 + j) for j in range(MAX_QUOTE_LEVELS)]
    bids = [(int(Side.BID), 9_940 - 10 * j, 1000 + j) for j in range(MAX_QUOTE_LEVELS)]
    return C.quote(user, 0, asks + bids, 20, 10, ts_ns=ts_ns, source=SOURCE)


def random_quote(rng: random.Random, user: int, ts_ns: int) -> np.ndarray:
    """A QUOTE group of ``user`` in BTC_USDT: 0..4 levels a side from the ladder prices
    (so that a user's next quote keeps, shrinks, grows, adds and drops levels)."""
    levels = [
        (int(side), price, rng.choice((1000, 2000, 3000)))
        for side, prices in ((Side.ASK, ASK_PRICES), (Side.BID, BID_PRICES))
        for price in rng.sample(prices, rng.randint(0, 4))
    ]
    rng.shuffle(levels)
    return C.quote(user, 0, levels, 20, 10, ts_ns=ts_ns, source=SOURCE)


def quoting_work(seed: int, batches: int) -> Iterator[Work]:
    """``journal_support.work(seed, batches)`` with mass quotes: after about half of
    its command batches, a batch of 1..4 QUOTE groups of users 1..3 (``random_quote``;
    a user may quote twice in one batch), a put and a cancel amid them. User 4 quotes
    a full ladder in the third such batch, the same again in the fourth (kept as it
    rests: no record, unless a taker came between) and none in the sixth."""
    rng = random.Random(seed)  # noqa: S311 -- reproducible test data
    quoted = 0
    for item in work(seed, batches):
        yield item
        if not isinstance(item, np.ndarray) or rng.random() < 0.5:
            continue
        quoted += 1
        ts = int(item["ts_ns"].max()) + 1
        parts = [random_quote(rng, rng.choice(MAKERS), ts) for _ in range(rng.randint(1, 4))]
        if quoted in (3, 4):
            parts.append(full_ladder(4, ts))
        elif quoted == 6:
            parts.append(C.quote(4, 0, [], 20, 10, ts_ns=ts, source=SOURCE))
        side = rng.choice((Side.ASK, Side.BID))
        put = C.put_limit(
            rng.randint(4, 8), 0, side, rng.randint(1000, 5000), rng.randint(9_950, 10_050),
            20, 10, ts_ns=ts,
        )  # fmt: skip
        cancel = C.cancel(rng.choice(MAKERS), 0, rng.randint(1, 400), ts_ns=ts)
        for single in (put, cancel):
            parts.insert(rng.randint(0, len(parts)), single)
        yield np.concatenate(parts)
