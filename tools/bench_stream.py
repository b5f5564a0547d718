"""The command stream of ``matchd-bench core`` (``tools.bench_core``): exchange-core's
single-market mix, decided by a seeded generator and run once through an ``Engine``.

* one market (XBT/USD), 1,000 users, each funded once with a large balance of both
  assets (``balance_update``), so no command is refused for lack of funds;
* about 9% GTC limit orders, 3% IOC limit orders, 6% cancels and 82% replaces (a
  resting order moved to a new price with the same ``left``), about 1,000 resting
  orders over about 750 price levels, about 6% of the commands trading, non-zero
  maker (0.001) and taker (0.002) fees.

The stream is produced block by block (512 commands) by running it through a
*generator engine*: each block's decisions are drawn with numpy from a seeded
``Generator``, looking only at the resting orders known at the start of the block
(tracked from the ORDER_PUT / ORDER_UPDATE / ORDER_FINISH events), so cancels and
replaces address real orders; a few go stale within their block (an order filled before
its turn) and are counted (``not_found``). Prices follow a mean-reverting random walk of
the mid; new and replaced orders rest 1 + an exponential number of ticks away from it on
their side, except a third of the new GTC orders and every IOC, which are priced through
it with small sizes and take (replaces trade only where the walk left stale orders). The
cancel share is steered to hold about 1,000 resting orders; with 9% GTC in and trades
taking makers out, it settles a little under 6% (``stream_summary`` gives the mix
actually generated). A warm-up (20,000 commands by default, mostly GTC until the book is
full) reaches the steady state. The generator records the state hash at checkpoints and
at the end, and the results and events of a prefix, for the measured engines to match.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.api import EngineAPI
from core.config import EngineConfig, parse_config
from core.engine import Engine
from core.schema import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    RESULT_DTYPE,
    CommandKind,
    EventKind,
    Result,
    TimeInForce,
)

#: Commands decided at once by the generator (from the book as it stood before them).
GEN_BLOCK = 512
#: Resting-level counts are sampled every this many generator blocks.
LEVEL_SAMPLE_BLOCKS = 8

USERS = 1000  #: users 1..USERS trade; user 0 is the fee account
TARGET_ORDERS = 1000  #: resting orders the cancel share is steered towards
MAKER_RATE = 10  #: 0.001 at fee_prec 4
TAKER_RATE = 20  #: 0.002 at fee_prec 4

# Generator shape (ticks are 0.01 USD, lots 0.000001 XBT). Tuned so that the stream
# has the published shape (see ``stream_summary`` in the report for what it does have).
BASE_PRICE = 3_000_000  #: 30,000.00 USD
PASSIVE_SPREAD = 420.0  #: mean distance in ticks (beyond 1) of a resting price from the mid
CROSS_DEPTH = 20.0  #: mean depth in ticks (beyond 1) of a taking price through the mid
AGGRESSIVE_GTC = 0.33  #: share of new GTC orders priced to take (every IOC is)
WALK_STEP_P = 0.1  #: chance per command that the mid moves one tick (up or down)
WALK_REVERSION = 0.002  #: per block, the mid is pulled back this share towards BASE_PRICE
MIN_LOTS = 10_000  #: resting order sizes: uniform 0.01 .. 0.1 XBT
MAX_LOTS = 100_000
TAKER_MIN_LOTS = 1_000  #: orders priced to take: uniform 0.001 .. 0.005 XBT
TAKER_MAX_LOTS = 5_000
DEPOSIT_STOCK = 10**13  #: 1,000 XBT per user (prec 10)
DEPOSIT_MONEY = 10**15  #: 10,000,000 USD per user (prec 8)
TS_START = 1_700_000_000_000_000_000
TS_STEP = 1_000


def config_toml(max_orders: int = 65536, max_levels: int = 16384) -> str:
    """The benchmark's one-market config, with room for ``max_orders`` resting orders."""
    return f"""
[engine]
fee_user = 0
max_users = {USERS + 24}
max_update_keys = 4096

[[assets]]
name = "XBT"
prec = 10

[[assets]]
name = "USD"
prec = 8

[[markets]]
name = "XBT_USD"
stock = "XBT"
money = "USD"
stock_prec = 6
money_prec = 2
fee_prec = 4
min_amount = "0.000001"
max_orders = {max_orders}
max_levels = {max_levels}
"""


CONFIG_TOML = config_toml()

MARKET = 0
STOCK = 0
MONEY = 1
ASK = 1
BID = 2

# Generator decisions, in the order of their probabilities.
GTC, IOC, CANCEL, REPLACE = 0, 1, 2, 3
MIX_NAMES = ("gtc", "ioc", "cancel", "replace")

_ORDER_PUT = int(EventKind.ORDER_PUT)
_ORDER_UPDATE = int(EventKind.ORDER_UPDATE)
_ORDER_FINISH = int(EventKind.ORDER_FINISH)
_DEAL = int(EventKind.DEAL)
_EVENT_KINDS = {int(k) for k in EventKind}


class BenchError(Exception):
    """The benchmark cannot give an honest figure (engines disagree, bad events...)."""


def bench_config() -> EngineConfig:
    """The one-market configuration of the benchmark."""
    return parse_config(CONFIG_TOML)


def deposit_all(engine: EngineAPI, users: int = USERS) -> None:
    """Fund users 1..``users`` with both assets (not timed, identical for every engine)."""
    for user in range(1, users + 1):
        for asset, change in ((STOCK, DEPOSIT_STOCK), (MONEY, DEPOSIT_MONEY)):
            results, _ = engine.balance_update(user, asset, b"deposit", user, change, TS_START)
            if int(results["code"][0]) != Result.OK:
                raise BenchError(
                    f"deposit for user {user} refused: {Result(int(results['code'][0])).name}"
                )


@dataclass
class StreamStats:
    """What the generator saw while producing the timed part of the stream."""

    events: int = 0
    deals: int = 0
    commands_with_deal: int = 0
    codes: dict[int, int] = field(default_factory=dict)
    resting_samples: list[int] = field(default_factory=list)
    ask_level_samples: list[int] = field(default_factory=list)
    bid_level_samples: list[int] = field(default_factory=list)


@dataclass
class Stream:
    """A generated benchmark stream and what any engine fed it must end with."""

    warmup: np.ndarray
    commands: np.ndarray
    final_hash: str
    #: state hash after deposits + warm-up + the first n stream commands
    checkpoint_hashes: dict[int, str]
    #: results and events of the first ``capture`` stream commands (for the reference)
    capture: int
    prefix_results: np.ndarray
    prefix_events: np.ndarray
    stats: StreamStats
    generation_s: float


class _Generator:
    """Decides commands block by block and runs them through its own ``Engine``."""

    def __init__(
        self,
        config: EngineConfig,
        seed: int,
        checkpoints: Sequence[int],
        capture: int,
        mix: Sequence[float] | None = None,
        client_ids: bool = False,
    ):
        self.rng = np.random.default_rng(seed)
        #: the next client order id, or 0: new orders carry none
        self.next_client_id = 1 if client_ids else 0
        #: the timed part's (gtc, ioc, cancel, replace) shares; None: the exchange-core mix
        self.fixed_mix = list(mix) if mix is not None else None
        self.engine = Engine(config)
        deposit_all(self.engine)
        #: resting orders: id -> (user, side, left), as of the end of the last block
        self.live: dict[int, tuple[int, int, int]] = {}
        self.mid = float(BASE_PRICE)
        self.ts = TS_START
        self.checkpoints = sorted({c for c in checkpoints if c > 0})
        self.capture = capture
        self.hashes: dict[int, str] = {}
        self.captured_results: list[np.ndarray] = []
        self.captured_events: list[np.ndarray] = []
        self.stats = StreamStats()
        self.blocks = 0

    # ------------------------------------------------------------ decisions

    def _mix(self, warm: bool) -> list[float]:
        live = len(self.live)
        if warm and live < TARGET_ORDERS:
            # Fill the book first: mostly GTC, no cancels.
            p = [0.5, 0.01, 0.0, 0.49]
        elif self.fixed_mix is not None and not warm:
            p = list(self.fixed_mix)
        else:
            fill = live / TARGET_ORDERS
            cancel = min(0.3, 0.06 * fill**4)
            p = [0.09, 0.03, cancel, 0.88 - cancel]
        if live == 0:
            p = [p[GTC] + p[CANCEL] + p[REPLACE], p[IOC], 0.0, 0.0]
        return p

    def _block(self, n: int, warm: bool) -> np.ndarray:
        rng = self.rng
        what = rng.choice(4, size=n, p=self._mix(warm))
        # The mid: a random walk of one tick steps, pulled back towards BASE_PRICE.
        steps = np.where(rng.random(n) < WALK_STEP_P, rng.choice((-1, 1), size=n), 0)
        mid = np.rint(self.mid + np.cumsum(steps)).astype(np.int64)
        self.mid = float(mid[-1]) - WALK_REVERSION * (float(mid[-1]) - BASE_PRICE)

        side = rng.integers(ASK, BID + 1, size=n)
        user = rng.integers(1, USERS + 1, size=n)
        amount = rng.integers(MIN_LOTS, MAX_LOTS + 1, size=n)
        order_id = np.zeros(n, dtype=np.int64)
        targeted = np.flatnonzero(what >= CANCEL)
        if targeted.size:
            live_ids = np.fromiter(self.live.keys(), dtype=np.int64, count=len(self.live))
            live_vals = np.array(list(self.live.values()), dtype=np.int64).reshape(-1, 3)
            pick = rng.choice(
                live_ids.size, size=targeted.size, replace=targeted.size > live_ids.size
            )
            order_id[targeted] = live_ids[pick]
            user[targeted] = live_vals[pick, 0]
            side[targeted] = live_vals[pick, 1]
            amount[targeted] = live_vals[pick, 2]  # a replace keeps ``left``

        # Prices: resting orders 1 + Exp ticks away from the mid on their side (a
        # replace too); a third of new GTC orders and every IOC 1 + Exp ticks through
        # it, with small sizes, so they take.
        passive = 1 + np.floor(rng.exponential(PASSIVE_SPREAD, size=n)).astype(np.int64)
        through = 1 + np.floor(rng.exponential(CROSS_DEPTH, size=n)).astype(np.int64)
        share = np.choose(what, (AGGRESSIVE_GTC, 1.0, 0.0, 0.0))
        aggressive = rng.random(n) < share
        amount[aggressive] = rng.integers(
            TAKER_MIN_LOTS, TAKER_MAX_LOTS + 1, size=int(np.count_nonzero(aggressive))
        )
        away = np.where(aggressive, -through, passive)
        price = np.where(side == ASK, mid + away, mid - away)
        np.maximum(price, 1, out=price)

        cmds = np.zeros(n, dtype=COMMAND_DTYPE)
        cmds["ts_ns"] = self.ts + TS_STEP * np.arange(1, n + 1, dtype=np.int64)
        self.ts += TS_STEP * n
        cmds["user"] = user
        cmds["market"] = MARKET
        cmds["side"] = side
        cmds["price"] = price
        cmds["amount"] = amount
        if self.next_client_id:  # every new order's own client id
            new_orders = np.flatnonzero(what <= IOC)
            order_id[new_orders] = self.next_client_id + np.arange(new_orders.size)
            self.next_client_id += new_orders.size
        cmds["order_id"] = order_id
        kind = np.full(n, int(CommandKind.PUT_LIMIT), dtype=np.int8)
        kind[what == CANCEL] = int(CommandKind.CANCEL)
        kind[what == REPLACE] = int(CommandKind.REPLACE)
        cmds["kind"] = kind
        new = what <= IOC
        cmds["tif"] = np.where(what == IOC, int(TimeInForce.IOC), int(TimeInForce.GTC))
        cmds["taker_rate"] = np.where(new, TAKER_RATE, 0)
        cmds["maker_rate"] = np.where(new, MAKER_RATE, 0)
        cmds["side"][what == CANCEL] = 0
        cmds["price"][what == CANCEL] = 0
        cmds["amount"][what == CANCEL] = 0
        return cmds

    # ------------------------------------------------------------ outcomes

    def _track(self, events: np.ndarray) -> None:
        """Apply a piece's order events to the set of resting orders."""
        kinds = events["kind"]
        orders = events[(kinds == _ORDER_PUT) | (kinds == _ORDER_UPDATE) | (kinds == _ORDER_FINISH)]
        if not orders.size:
            return
        # The last event of each order says whether (and how) it still rests.
        rev = orders[::-1]
        _, first = np.unique(rev["order_id"], return_index=True)
        last = rev[first]
        live = self.live
        for oid, kind, user, side, left in zip(
            last["order_id"].tolist(),
            last["kind"].tolist(),
            last["user"].tolist(),
            last["side"].tolist(),
            last["left"].tolist(),
            strict=True,
        ):
            if kind == _ORDER_FINISH:
                live.pop(oid, None)
            else:
                live[oid] = (user, side, left)

    def _count(self, results: np.ndarray, events: np.ndarray) -> None:
        st = self.stats
        st.events += events.size
        codes, counts = np.unique(results["code"], return_counts=True)
        for code, count in zip(codes.tolist(), counts.tolist(), strict=True):
            st.codes[code] = st.codes.get(code, 0) + count
        is_deal = events["kind"] == _DEAL
        st.deals += int(np.count_nonzero(is_deal))
        owner = np.repeat(np.arange(results.size), results["event_count"])
        st.commands_with_deal += int(np.unique(owner[is_deal]).size)

    def _sample(self) -> None:
        summary = self.engine.market_summary(MARKET)
        self.stats.resting_samples.append(summary.ask_count + summary.bid_count)
        if self.blocks % LEVEL_SAMPLE_BLOCKS == 0:
            limit = self.engine.config.markets[MARKET].max_levels
            asks, bids = self.engine.depth(MARKET, limit, 0)
            self.stats.ask_level_samples.append(len(asks))
            self.stats.bid_level_samples.append(len(bids))

    def _execute(self, cmds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        results, events = self.engine.execute(cmds)
        if events.size and not set(np.unique(events["kind"]).tolist()) <= _EVENT_KINDS:
            raise BenchError(
                "the engine returned events of no defined kind (blank records): are the "
                "event writers in core/kernels/events.py disabled?"
            )
        if int(results["event_count"].sum()) != events.size:
            raise BenchError("results' event counts do not add up to the events returned")
        return results, events

    def run(self, out: np.ndarray, warm: bool) -> None:
        """Fill ``out`` with commands, executing them as they are decided."""
        total = out.shape[0]
        pos = 0
        while pos < total:
            n = min(GEN_BLOCK, total - pos)
            if not warm:
                self._sample()
            block = self._block(n, warm)
            out[pos : pos + n] = block
            cuts = [c - pos for c in self.checkpoints if not warm and pos < c < pos + n]
            start = 0
            for end in [*cuts, n]:
                results, events = self._execute(block[start:end])
                self._track(events)
                if not warm:
                    self._count(results, events)
                    if pos + end <= self.capture:
                        self.captured_results.append(results)
                        self.captured_events.append(events)
                    if pos + end in self.checkpoints:
                        self.hashes[pos + end] = self.engine.state_hash()
                start = end
            pos += n
            self.blocks += 1


def generate(
    n_commands: int,
    seed: int,
    warmup: int,
    checkpoints: Sequence[int],
    capture: int,
    mix: Sequence[float] | None = None,
    *,
    client_ids: bool = False,
) -> Stream:
    """Generate (and run once) deposits, ``warmup`` commands and ``n_commands`` more.

    ``mix`` fixes the timed commands' shares of (gtc, ioc, cancel, replace) (summing to
    1) instead of the exchange-core mix, whose cancel share steers the book size.
    ``client_ids``: every new order carries its own client order id (1, 2, ...).
    """
    t0 = time.perf_counter()
    capture = min(capture, n_commands)
    gen = _Generator(bench_config(), seed, [*checkpoints, capture], capture, mix, client_ids)
    warm = np.zeros(warmup, dtype=COMMAND_DTYPE)
    gen.run(warm, warm=True)
    commands = np.zeros(n_commands, dtype=COMMAND_DTYPE)
    gen.run(commands, warm=False)
    problems = gen.engine.check_invariants()
    if problems:
        raise BenchError(f"generator engine broke invariants: {problems[:5]}")
    if gen.captured_results:
        prefix_results = np.concatenate(gen.captured_results)
        prefix_events = np.concatenate(gen.captured_events)
    else:
        prefix_results = np.zeros(0, dtype=RESULT_DTYPE)
        prefix_events = np.zeros(0, dtype=EVENT_DTYPE)
    return Stream(
        warmup=warm,
        commands=commands,
        final_hash=gen.engine.state_hash(),
        checkpoint_hashes=gen.hashes,
        capture=capture,
        prefix_results=prefix_results,
        prefix_events=prefix_events,
        stats=gen.stats,
        generation_s=time.perf_counter() - t0,
    )


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def _mean(values: list[int]) -> float:
    return round(float(np.mean(values)), 1) if values else 0.0


def stream_summary(stream: Stream) -> dict[str, Any]:
    """The shape of the timed stream: mix, trades, book size, refusals."""
    cmds = stream.commands
    n = cmds.shape[0]
    kind = cmds["kind"]
    limit = kind == int(CommandKind.PUT_LIMIT)
    counts = {
        "gtc": int(np.count_nonzero(limit & (cmds["tif"] == int(TimeInForce.GTC)))),
        "ioc": int(np.count_nonzero(limit & (cmds["tif"] == int(TimeInForce.IOC)))),
        "cancel": int(np.count_nonzero(kind == int(CommandKind.CANCEL))),
        "replace": int(np.count_nonzero(kind == int(CommandKind.REPLACE))),
    }
    st = stream.stats
    codes = {Result(c).name: k for c, k in sorted(st.codes.items()) if c != Result.OK}
    asks, bids = st.ask_level_samples, st.bid_level_samples
    return {
        "mix_percent": {name: _pct(counts[name], n) for name in MIX_NAMES},
        "trades": st.deals,
        "trade_fraction": round(st.commands_with_deal / n, 4) if n else 0.0,
        "events": st.events,
        "events_per_command": round(st.events / n, 3) if n else 0.0,
        "users": USERS,
        "avg_resting_orders": _mean(st.resting_samples),
        "avg_levels": _mean([a + b for a, b in zip(asks, bids, strict=True)]),
        "avg_levels_per_side": {"ask": _mean(asks), "bid": _mean(bids)},
        "not_found": st.codes.get(int(Result.ORDER_NOT_FOUND), 0),
        "rejections": codes,
    }
