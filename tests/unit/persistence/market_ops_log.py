"""A small log of the market operations (MARKET_STATUS, USER_STATUS, CANCEL_MARKET),
framed by hand as the journal frames records (``persistence.frames.frame_batch``), so
that the log's consumers can be tested without an engine that executes them.

``write_market_ops_log(log_dir)`` writes, in BTC_USDT of ``stream_config``:

==== ============== =========================================================
seq  command        events
==== ============== =========================================================
1    balance.update user 1 deposits 1 BTC
2    balance.update user 2 deposits 1000 USDT
3    PUT_LIMIT      user 1 asks 0.5 at 100.00: ORDER_PUT, FREEZE
4    PUT_LIMIT      user 2 bids 0.25 at 90.00: ORDER_PUT, FREEZE
5    MARKET_STATUS  BTC_USDT open -> halted: MARKET_STATUS
6    USER_STATUS    user 2 active -> blocked: USER_STATUS
7    CANCEL_MARKET  both sides: ORDER_FINISH (cancelled) and UNFREEZE of both orders
8    MARKET_STATUS  BTC_USDT halted -> delisted: MARKET_STATUS
==== ============== =========================================================

The values are consistent (balances after each event, the frozen reserves of
docs/engine.md), as the engine would write them.

``write_limits_log(log_dir)`` writes the risk limit commands, in BTC_USDT too:

==== ============== =========================================================
seq  command        events
==== ============== =========================================================
1    balance.update user 1 deposits 1 BTC
2    USER_LIMIT     user 2's max_notional none -> 1000 USDT: USER_LIMIT
3    USER_LIMIT     user 2's max_order_amount none -> 0.5 BTC: USER_LIMIT
4    MARKET_LIMIT   BTC_USDT's max_order_amount none -> 0.6 BTC: MARKET_LIMIT
5    USER_LIMIT     user 2's max_notional 1000 USDT -> none: USER_LIMIT
==== ============== =========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.engine import Engine
from core.schema import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    RESULT_DTYPE,
    Business,
    CommandKind,
    EventKind,
    FinishReason,
    MarketStatus,
    OrderType,
    RiskLimit,
    Side,
    UserStatus,
)
from persistence.frames import COMMAND_WORDS, EVENT_WORDS, RT_BALANCE, frame_batch, frame_bound
from persistence.journal import Journal, JournalConfig, journal_log_config
from persistence.log_writer import LogWriter
from persistence.replay import encode_balance
from tests.support.steps import Batch, resolve

T0_NS = 1_700_000_000_000_000_000
BTC, USDT = 0, 2
BTC_USDT = 0
ONE_BTC = 10**10  # BTC units (prec 10)
USDT_1000 = 1000 * 10**8  # USDT units (prec 8)
#: BTC_USDT: stock_prec 6 (10**4 BTC units a lot), money_prec 2 (1 USDT unit a tick x lot).
ASK_LOTS, ASK_PRICE = 500_000, 10_000  # 0.5 BTC at 100.00
BID_LOTS, BID_PRICE = 250_000, 9_000  # 0.25 BTC at 90.00
ASK_FROZEN = ASK_LOTS * 10**4  # BTC units
BID_FROZEN = BID_LOTS * BID_PRICE  # USDT units
ORDER_ASK, ORDER_BID = 1, 2
SEQ_HALT, SEQ_BLOCK, SEQ_CANCEL, SEQ_DELIST = 5, 6, 7, 8
LAST_SEQ = 8
#: ``write_limits_log``: user 2's limits, and BTC_USDT's max_order_amount.
LIMITS_USER = 2
USER_NOTIONAL = 1000 * 10**8  # USDT units
USER_LOTS, MARKET_LOTS = 500_000, 600_000  # 0.5 and 0.6 BTC
SEQ_USER_NOTIONAL, SEQ_USER_LOTS, SEQ_MARKET_LOTS, SEQ_USER_NONE = 2, 3, 4, 5
LIMITS_LAST_SEQ = 5


@dataclass(frozen=True, slots=True)
class LoggedCommand:
    """One command record: the command, its result's order id and value, its events."""

    command: np.ndarray  #: COMMAND_DTYPE, shape (1,)
    events: np.ndarray  #: EVENT_DTYPE
    order_id: int = 0
    value: int = 0


def command(kind: CommandKind, ts_ns: int, **fields: int) -> np.ndarray:
    """One COMMAND_DTYPE record (shape (1,))."""
    cmd = np.zeros(1, dtype=COMMAND_DTYPE)
    cmd["kind"] = int(kind)
    cmd["ts_ns"] = ts_ns
    for name, value in fields.items():
        cmd[name] = value
    return cmd


def event(kind: EventKind, **fields: int) -> np.ndarray:
    """One EVENT_DTYPE record (shape (1,)); seq and ts_ns are the frame's."""
    ev = np.zeros(1, dtype=EVENT_DTYPE)
    ev["kind"] = int(kind)
    for name, value in fields.items():
        ev[name] = value
    return ev


def market_status_event(market: int, new: int, old: int) -> np.ndarray:
    """A MARKET_STATUS event as the engine writes it."""
    return event(EventKind.MARKET_STATUS, market=market, reason=new, amount=old)


def user_status_event(user: int, new: int, old: int) -> np.ndarray:
    """A USER_STATUS event as the engine writes it."""
    return event(EventKind.USER_STATUS, user=user, market=-1, reason=new, amount=old)


def user_limit_event(user: int, market: int, limit: int, old: int, new: int) -> np.ndarray:
    """A USER_LIMIT event as the engine writes it."""
    return event(EventKind.USER_LIMIT, user=user, market=market, reason=limit, amount=old,
                 left=new)  # fmt: skip


def market_limit_event(market: int, limit: int, old: int, new: int) -> np.ndarray:
    """A MARKET_LIMIT event as the engine writes it."""
    return event(EventKind.MARKET_LIMIT, market=market, reason=limit, amount=old, left=new)


def _order(kind: EventKind, order_id: int, user: int, side: int, price: int, lots: int,
           ctime_ns: int, **fields: int) -> np.ndarray:  # fmt: skip
    return event(
        kind, order_id=order_id, user=user, market=BTC_USDT, side=side, price=price,
        amount=lots, left=lots, otype=int(OrderType.LIMIT), ctime_ns=ctime_ns,
        mtime_ns=ctime_ns, taker_rate=10, maker_rate=5, **fields,
    )  # fmt: skip


def _balance(business: Business, user: int, asset: int, order_id: int, available: int,
             frozen: int, d_available: int, d_frozen: int) -> np.ndarray:  # fmt: skip
    return event(
        EventKind.BALANCE, user=user, asset=asset, market=BTC_USDT, order_id=order_id,
        reason=int(business), left=available, deal_stock=frozen, deal_money=d_available,
        deal_fee=d_frozen,
    )  # fmt: skip


def market_ops_commands() -> list[LoggedCommand]:
    """The order records of seq 3..8 (see the module docstring)."""
    ts = [T0_NS + k * 1_000_000 for k in range(LAST_SEQ + 1)]
    ask = (ORDER_ASK, 1, int(Side.ASK), ASK_PRICE, ASK_LOTS, ts[3])
    bid = (ORDER_BID, 2, int(Side.BID), BID_PRICE, BID_LOTS, ts[4])
    cancelled = int(FinishReason.CANCELED)
    return [
        LoggedCommand(
            command(CommandKind.PUT_LIMIT, ts[3], user=1, market=BTC_USDT, side=int(Side.ASK),
                    price=ASK_PRICE, amount=ASK_LOTS, taker_rate=10, maker_rate=5),
            np.concatenate([
                _order(EventKind.ORDER_PUT, *ask),
                _balance(Business.FREEZE, 1, BTC, ORDER_ASK, ONE_BTC - ASK_FROZEN, ASK_FROZEN,
                         -ASK_FROZEN, ASK_FROZEN),
            ]),
            order_id=ORDER_ASK,
        ),
        LoggedCommand(
            command(CommandKind.PUT_LIMIT, ts[4], user=2, market=BTC_USDT, side=int(Side.BID),
                    price=BID_PRICE, amount=BID_LOTS, taker_rate=10, maker_rate=5),
            np.concatenate([
                _order(EventKind.ORDER_PUT, *bid),
                _balance(Business.FREEZE, 2, USDT, ORDER_BID, USDT_1000 - BID_FROZEN,
                         BID_FROZEN, -BID_FROZEN, BID_FROZEN),
            ]),
            order_id=ORDER_BID,
        ),
        LoggedCommand(
            command(CommandKind.MARKET_STATUS, ts[5], market=BTC_USDT,
                    amount=int(MarketStatus.HALTED)),
            market_status_event(BTC_USDT, int(MarketStatus.HALTED), int(MarketStatus.OPEN)),
        ),
        LoggedCommand(
            command(CommandKind.USER_STATUS, ts[6], user=2, amount=int(UserStatus.BLOCKED)),
            user_status_event(2, int(UserStatus.BLOCKED), int(UserStatus.ACTIVE)),
        ),
        LoggedCommand(
            command(CommandKind.CANCEL_MARKET, ts[7], market=BTC_USDT, side=0),
            np.concatenate([
                _order(EventKind.ORDER_FINISH, *ask, reason=cancelled),
                _balance(Business.UNFREEZE, 1, BTC, ORDER_ASK, ONE_BTC, 0, ASK_FROZEN,
                         -ASK_FROZEN),
                _order(EventKind.ORDER_FINISH, *bid, reason=cancelled),
                _balance(Business.UNFREEZE, 2, USDT, ORDER_BID, USDT_1000, 0, BID_FROZEN,
                         -BID_FROZEN),
            ]),
            value=2,
        ),
        LoggedCommand(
            command(CommandKind.MARKET_STATUS, ts[8], market=BTC_USDT,
                    amount=int(MarketStatus.DELISTED)),
            market_status_event(BTC_USDT, int(MarketStatus.DELISTED), int(MarketStatus.HALTED)),
        ),
    ]  # fmt: skip


def limit_commands() -> list[LoggedCommand]:
    """The order records of seq 2..5 of ``write_limits_log``."""
    ts = [T0_NS + k * 1_000_000 for k in range(LIMITS_LAST_SEQ + 1)]
    notional, lots = int(RiskLimit.MAX_NOTIONAL), int(RiskLimit.MAX_ORDER_AMOUNT)
    user = LIMITS_USER

    def user_limit(seq: int, limit: int, old: int, new: int) -> LoggedCommand:
        return LoggedCommand(
            command(CommandKind.USER_LIMIT, ts[seq], user=user, market=BTC_USDT, side=limit,
                    amount=new),
            user_limit_event(user, BTC_USDT, limit, old, new),
        )  # fmt: skip

    market_cmd = command(
        CommandKind.MARKET_LIMIT, ts[SEQ_MARKET_LOTS], market=BTC_USDT, side=lots,
        amount=MARKET_LOTS,
    )  # fmt: skip
    return [
        user_limit(SEQ_USER_NOTIONAL, notional, 0, USER_NOTIONAL),
        user_limit(SEQ_USER_LOTS, lots, 0, USER_LOTS),
        LoggedCommand(market_cmd, market_limit_event(BTC_USDT, lots, 0, MARKET_LOTS)),
        user_limit(SEQ_USER_NONE, notional, USER_NOTIONAL, 0),
    ]


def append_commands(writer: LogWriter, logged: list[LoggedCommand]) -> None:
    """Frame ``logged`` after the writer's last record, as the journal frames a batch,
    and commit them."""
    n = len(logged)
    commands = np.concatenate([c.command for c in logged])
    events = np.concatenate([c.events for c in logged])
    results = np.zeros(n, dtype=RESULT_DTYPE)
    start = 0
    for i, c in enumerate(logged):
        results[i]["seq"] = writer.last_seq + 1 + i
        results[i]["order_id"] = c.order_id
        results[i]["value"] = c.value
        results[i]["event_start"] = start
        results[i]["event_count"] = c.events.shape[0]
        start += c.events.shape[0]
    size = frame_bound(n, events.shape[0])
    frames = np.zeros(size + (-size % 8), dtype=np.uint8)
    ends = np.zeros(n, dtype=np.int64)
    seqs = np.zeros(n, dtype=np.int64)
    end, count = frame_batch(
        frames, frames.view(np.int64), 0, commands.view(np.int64).reshape(n, COMMAND_WORDS),
        results, events.view(np.int64).reshape(events.shape[0], EVENT_WORDS),
        writer.next_batch_index, False, ends, seqs,
    )  # fmt: skip
    assert count == n
    writer.append_framed(frames[:end], ends[:count], int(seqs[0]))
    writer.commit()


def append_deposit(writer: LogWriter, user: int, asset: int, change: int, ts_ns: int) -> None:
    """A balance.update record (a deposit of ``change`` units into an empty balance)."""
    ev = _balance(Business.UPDATE, user, asset, 0, change, 0, change, 0)
    ev["market"] = -1
    ev["ctime_ns"] = writer.last_seq + 1  # business_id
    ev["seq"] = writer.last_seq + 1
    ev["ts_ns"] = ts_ns
    payload = encode_balance(
        user, asset, b"deposit", writer.last_seq + 1, change, ts_ns, b'{"note":"test"}', ev
    )
    writer.append(writer.last_seq + 1, RT_BALANCE, payload)
    writer.commit()


def write_market_ops_log(log_dir: Path) -> None:
    """The log of the module docstring in ``log_dir`` (a new directory)."""
    writer = LogWriter.open(log_dir, journal_log_config())
    try:
        append_deposit(writer, 1, BTC, ONE_BTC, T0_NS + 1_000_000)
        append_deposit(writer, 2, USDT, USDT_1000, T0_NS + 2_000_000)
        append_commands(writer, market_ops_commands())
        assert writer.last_seq == LAST_SEQ
    finally:
        writer.close()


def write_limits_log(log_dir: Path) -> None:
    """The risk limits' log of the module docstring in ``log_dir`` (a new directory)."""
    writer = LogWriter.open(log_dir, journal_log_config())
    try:
        append_deposit(writer, 1, BTC, ONE_BTC, T0_NS + 1_000_000)
        append_commands(writer, limit_commands())
        assert writer.last_seq == LIMITS_LAST_SEQ
    finally:
        writer.close()


# ------------------------------------------------------------------ with the engine


@dataclass(frozen=True, slots=True)
class EngineLog:
    """A journal of a random stream with the market operations in it (``write_engine_log``)."""

    engine: Engine  #: the state the log ends at
    #: (seq, market, new, old) of every market status change logged, in order
    market_changes: list[tuple[int, int, int, int]]
    #: seqs of the logged market operations, by command kind
    logged: dict[CommandKind, list[int]]
    refused: int  #: commands the statuses refused (MARKET_HALTED, ... USER_BLOCKED)


def _submit(journal: Journal, cmds: np.ndarray, out: dict[CommandKind, list[int]]) -> np.ndarray:
    results, events = journal.submit(cmds)
    assert (results["code"] == 0).all(), results["code"]
    for cmd, result in zip(cmds, results, strict=True):
        if result["seq"]:
            out.setdefault(CommandKind(int(cmd["kind"])), []).append(int(result["seq"]))
    return events


def _operations(
    journal: Journal, stage: int, ts: int, out: dict[CommandKind, list[int]]
) -> list[np.ndarray]:
    """The market operations of ``stage`` (0, 1, 2); their events."""
    from core import commands as c

    halted, delisted = int(MarketStatus.HALTED), int(MarketStatus.DELISTED)
    notional = int(RiskLimit.MAX_NOTIONAL)
    if stage == 0:  # halt BTC_USDT (twice: the second changes nothing), block user 3
        # and give user 4 a max_notional in ETH_USDT (twice: the same)
        cmds = [c.market_status(0, halted, ts_ns=ts), c.user_status(3, int(UserStatus.BLOCKED),
                ts_ns=ts), c.market_status(0, halted, ts_ns=ts),
                c.user_limit(4, 1, notional, 10**12, ts_ns=ts),
                c.user_limit(4, 1, notional, 10**12, ts_ns=ts)]  # fmt: skip
        return [_submit(journal, c.batch(*cmds), out)]
    if stage == 1:  # empty BTC_USDT and ETH_USDT's asks, max_matches at a time; delist ETH
        events = []
        for market, side in ((0, 0), (1, int(Side.ASK))):
            for _ in range(100):
                got = _submit(journal, c.cancel_market(market, side, ts_ns=ts), out)
                if not got.shape[0]:
                    break
                events.append(got)
        events.append(_submit(journal, c.market_status(1, delisted, ts_ns=ts), out))
        return events
    cmds = [c.market_status(0, int(MarketStatus.OPEN), ts_ns=ts),
            c.market_status(1, int(MarketStatus.OPEN), ts_ns=ts),
            c.user_status(3, int(UserStatus.ACTIVE), ts_ns=ts),
            c.user_limit(4, 1, notional, 0, ts_ns=ts)]  # fmt: skip
    return [_submit(journal, c.batch(*cmds), out)]


def write_engine_log(data_dir: Path, n_commands: int, seed: int = 20261210) -> EngineLog:
    """A journal of a random stream (``tests.unit.persistence.test_drainer.write_log``'s)
    with the market operations at a third, a half and two thirds of it: BTC_USDT halted,
    user 3 blocked and user 4 held to a max_notional in ETH_USDT, then both markets'
    books cancelled (BTC_USDT whole, ETH_USDT's asks) and ETH_USDT delisted, then
    everything open and active again and user 4's limit removed. Needs an engine that
    executes them."""
    from tests.support.streams import random_stream
    from tests.support.world import Limits, stream_config
    from tests.unit.persistence.test_drainer import apply_step

    config = stream_config(Limits())
    journal = Journal.open(config, JournalConfig(data_dir=data_dir, log=journal_log_config()))
    steps = random_stream(np.random.default_rng(seed), config, n_commands)
    stages = {len(steps) // 3: 0, len(steps) // 2: 1, 2 * len(steps) // 3: 2}
    logged: dict[CommandKind, list[int]] = {}
    changes = []
    refused = 0
    ts = T0_NS
    try:
        for i, step in enumerate(steps):
            ts += 1_000_000
            if i in stages:
                for events in _operations(journal, stages[i], ts, logged):
                    changes += [
                        (int(e["seq"]), int(e["market"]), int(e["reason"]), int(e["amount"]))
                        for e in events[events["kind"] == EventKind.MARKET_STATUS]
                    ]
            if isinstance(step, Batch):
                results, _ = journal.submit(resolve(step.commands, journal.engine, ts))
                refused += int(np.isin(results["code"], (2010, 2011, 2012)).sum())
            else:
                apply_step(journal, step, ts)
        return EngineLog(journal.engine, changes, logged, refused)
    finally:
        journal.close()


def write_mixed_log(data_dir: Path, n_commands: int, seed: int = 20261211) -> Engine:
    """A journal of a random stream in which 5 % of the commands are market
    operations, hostile ones included (``Mix(admin=5)``); returns its engine."""
    from tests.support.streams import Mix, random_stream
    from tests.support.world import Limits, stream_config
    from tests.unit.persistence.test_drainer import apply_step

    config = stream_config(Limits())
    journal = Journal.open(config, JournalConfig(data_dir=data_dir, log=journal_log_config()))
    ts = T0_NS
    try:
        for step in random_stream(np.random.default_rng(seed), config, n_commands, Mix(admin=5)):
            ts += 1_000_000
            apply_step(journal, step, ts)
        return journal.engine
    finally:
        journal.close()
