"""A seeded stream of engine work for the journal tests (not a test module).

``work(seed, n)`` yields batches: either an array of commands or a balance update
(a tuple of its arguments). Orders reference earlier order ids by guess, so some
cancels and replaces miss; prices cluster so that orders trade.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np

from core import commands as C
from core.engine import Engine
from core.schema import Side, StpMode, TimeInForce
from tests.support.scenario import make_config

BTC, USDT = 0, 2
USERS = 8
#: A balance.update: (user, asset, business, business_id, change, ts_ns, detail).
Deposit = tuple[int, int, bytes, int, int, int, bytes]
Work = np.ndarray | Deposit


def engine_config():
    """Small pools, so that books fill and levels come and go."""
    return make_config(max_orders=400, max_levels=200)


def work(seed: int, batches: int, batch: int = 64) -> Iterator[Work]:
    """Deposits for every user first, then random batches, now and then a deposit."""
    rng = random.Random(seed)  # noqa: S311 -- reproducible test data
    ts = 1_700_000_000_000_000_000
    business_id = 0
    for user in range(1, USERS + 1):
        for asset, amount in ((BTC, 10**14), (USDT, 10**16)):
            business_id += 1
            yield (user, asset, b"deposit", business_id, amount, ts, b'{"by":"test"}')
    next_id = 1
    for _ in range(batches):
        if rng.random() < 0.1:
            business_id += 1
            user = rng.randint(1, USERS)
            change = rng.choice((10**12, -(10**9), -(10**20)))  # the last one is refused
            yield (user, rng.choice((BTC, USDT)), b"adjust", business_id, change, ts, b"{}")
            continue
        cmds = []
        for _ in range(batch):
            ts += 1000
            user = rng.randint(1, USERS)
            kind = rng.random()
            side = rng.choice((Side.ASK, Side.BID))
            if kind < 0.45:
                tif = rng.choice((TimeInForce.GTC,) * 4 + (TimeInForce.IOC, TimeInForce.FOK))
                stp = rng.choice((StpMode.NONE,) * 3 + (StpMode.CANCEL_MAKER,))
                cmds.append(
                    C.put_limit(
                        user,
                        0,
                        side,
                        rng.randint(1000, 20_000),
                        rng.randint(9_950, 10_050),
                        20,
                        10,
                        ts_ns=ts,
                        tif=tif,
                        stp=stp,
                        source=rng.choice((b"", b"api", b"web")),
                    )
                )
                next_id += 1
            elif kind < 0.5:
                amount = rng.randint(1000, 5000) if side == Side.ASK else rng.randint(10**9, 10**11)
                cmds.append(C.put_market(user, 0, side, amount, 20, ts_ns=ts))
                next_id += 1
            elif kind < 0.7:
                cmds.append(C.cancel(user, 0, rng.randint(1, next_id), ts_ns=ts))
            elif kind < 0.98:
                cmds.append(
                    C.replace(
                        user,
                        0,
                        rng.randint(1, next_id),
                        rng.randint(9_950, 10_050),
                        rng.randint(1000, 20_000),
                        ts_ns=ts,
                    )
                )
            else:
                cmds.append(C.cancel_all(user, 0, ts_ns=ts))
        yield C.batch(*cmds)


def apply(engine: Engine, item: Work) -> None:
    """Run one item on a plain engine."""
    if isinstance(item, np.ndarray):
        engine.execute(item)
    else:
        engine.balance_update(*item[:6])


def engine_at(seed: int, batches: int, seq: int, batch: int = 64) -> Engine:
    """A plain engine fed the stream command by command until it reaches ``seq``."""
    engine = Engine(engine_config())
    for item in work(seed, batches, batch):
        if engine.counters()[0] >= seq:
            break
        if isinstance(item, np.ndarray):
            for i in range(item.shape[0]):
                engine.execute(item[i : i + 1])
                if engine.counters()[0] >= seq:
                    break
        else:
            apply(engine, item)
    assert engine.counters()[0] == seq, (engine.counters(), seq)
    return engine
