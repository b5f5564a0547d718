"""``matchd-bench core``: the in-process engine on exchange-core's single-market mix.

What is measured is the whole of ``Engine.execute`` -- matching *and* settlement of
balances and fees, with every event written -- not the matcher alone:

* one market (XBT/USD), 1,000 users, each funded once with a large balance of both
  assets (``balance_update``), so no command is refused for lack of funds;
* about 9% GTC limit orders, 3% IOC limit orders, 6% cancels and 82% replaces (a
  resting order moved to a new price with the same ``left``), about 1,000 resting
  orders over about 750 price levels, about 6% of the commands trading, non-zero
  maker (0.001) and taker (0.002) fees.

How:

1. **Generation** (not timed). The stream is produced block by block (512 commands)
   by running it through a *generator engine*: each block's decisions are drawn with
   numpy from a seeded ``Generator``, looking only at the resting orders known at the
   start of the block (tracked from the ORDER_PUT / ORDER_UPDATE / ORDER_FINISH events),
   so cancels and replaces address real orders; a few go stale within their block (an
   order filled before its turn) and are counted (``not_found``). Prices follow a
   mean-reverting random walk of the mid; new and replaced orders rest 1 + an
   exponential number of ticks away from it on their side, except a third of the new
   GTC orders and every IOC, which are priced through it with small sizes and take
   (replaces trade only where the walk left stale orders). The cancel share is steered
   to hold about 1,000 resting orders; with 9% GTC in and trades taking makers out, it
   settles a little under 6% (the report gives the mix actually generated). A warm-up
   (20,000 commands, mostly GTC until the book is full) reaches the steady state; it is
   executed by every engine but never timed.
2. **Measurement**, each on a fresh engine fed the identical deposits, warm-up and
   stream: batched ``execute_view()`` (4,096 commands per call, repeated; also 1,024
   and 64; results and events stay in the engine's buffers, as the daemon consumes
   them), the same through ``execute()`` (both copied out on every call), one command
   per call over a prefix, and the reference engine on a shorter prefix. numba is run
   once untimed first, so no compilation or cache load is timed.
   Every numba run must end in the generator's state hash with no invariant broken,
   or the benchmark fails; the reference's hash, results and events are compared on
   its prefix and the outcome is reported.

``main(args)`` takes an ``argparse.Namespace`` with ``json``, ``commands``, ``seed`` and
``out`` (``tools.bench`` builds it); smaller runs (tests) may also set ``warmup``,
``single_prefix``, ``reference_prefix`` and ``repeats``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
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

DEFAULT_COMMANDS = 3_000_000
DEFAULT_SEED = 1
DEFAULT_WARMUP = 20_000
DEFAULT_SINGLE_PREFIX = 200_000
DEFAULT_REFERENCE_PREFIX = 20_000
DEFAULT_REPEATS = 3

#: Commands per ``execute()`` call of the headline figure, and the other sizes tried.
MAIN_BATCH = 4096
OTHER_BATCHES = (64, 1024)
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

CONFIG_TOML = f"""
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
max_orders = 65536
max_levels = 16384
"""

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

#: Result fields compared between engines (``event_start`` depends on the batching).
_RESULT_FIELDS = ("seq", "order_id", "value", "code", "event_count")


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


# --------------------------------------------------------------------------- generation


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

    def __init__(self, config: EngineConfig, seed: int, checkpoints: Sequence[int], capture: int):
        self.rng = np.random.default_rng(seed)
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
    n_commands: int, seed: int, warmup: int, checkpoints: Sequence[int], capture: int
) -> Stream:
    """Generate (and run once) deposits, ``warmup`` commands and ``n_commands`` more."""
    t0 = time.perf_counter()
    capture = min(capture, n_commands)
    gen = _Generator(bench_config(), seed, [*checkpoints, capture], capture)
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


# --------------------------------------------------------------------------- measurement


def _run_batches(engine: EngineAPI, cmds: np.ndarray, batch: int) -> None:
    """Execute untimed (deposits and warm-up of a measured engine)."""
    for start in range(0, cmds.shape[0], batch):
        engine.execute(cmds[start : start + batch])


def _prepared(make: Callable[[], EngineAPI], stream: Stream) -> EngineAPI:
    engine = make()
    deposit_all(engine)
    _run_batches(engine, stream.warmup, MAIN_BATCH)
    return engine


def _numba_engine() -> EngineAPI:
    return Engine(bench_config())


def _timed_batches(
    execute: Callable[[np.ndarray], object], cmds: np.ndarray, batch: int
) -> tuple[int, np.ndarray]:
    """Call ``execute`` on ``cmds`` in batches; returns (total ns, ns of each call)."""
    n = cmds.shape[0]
    marks = [0] * ((n + batch - 1) // batch + 1)
    gc.collect()
    marks[0] = time.perf_counter_ns()
    for j, start in enumerate(range(0, n, batch), 1):
        execute(cmds[start : start + batch])
        marks[j] = time.perf_counter_ns()
    return marks[-1] - marks[0], np.diff(np.array(marks, dtype=np.int64))


def _timed_one_at_a_time(engine: Any, cmds: np.ndarray) -> int:
    execute = engine.execute_view
    gc.collect()
    t0 = time.perf_counter_ns()
    for i in range(cmds.shape[0]):
        execute(cmds[i : i + 1])
    return time.perf_counter_ns() - t0


def _verify(engine: EngineAPI, expected_hash: str, what: str) -> None:
    got = engine.state_hash()
    if got != expected_hash:
        raise BenchError(f"{what}: state hash {got} differs from the generator's {expected_hash}")
    problems = engine.check_invariants()
    if problems:
        raise BenchError(f"{what}: invariants broken: {problems[:5]}")


def _rate(commands: int, ns: int) -> dict[str, float | int]:
    return {
        "commands": commands,
        "commands_per_s": round(commands * 1e9 / ns, 1) if ns else 0.0,
        "ns_per_command": round(ns / commands, 1) if commands else 0.0,
    }


def warm_jit(stream: Stream) -> None:
    """Run every kernel path once on a throwaway engine, so no compilation is timed."""
    engine = _prepared(_numba_engine, stream)
    head = stream.commands[:MAIN_BATCH]
    _run_batches(engine, head[: MAIN_BATCH // 2], MAIN_BATCH)
    for i in range(MAIN_BATCH // 2, min(head.shape[0], MAIN_BATCH // 2 + 64)):
        engine.execute(head[i : i + 1])


def measure_batched(
    stream: Stream, batch: int, repeats: int, api: str = "execute_view"
) -> dict[str, Any]:
    """``repeats`` fresh engines over the whole stream in calls of ``batch`` commands.

    ``api`` is ``execute_view`` (results and events left in the engine's buffers: what
    a pipeline stage that consumes them in place, such as the daemon's, calls) or
    ``execute`` (both copied out into new arrays on every call).
    """
    totals: list[int] = []
    per_call: list[np.ndarray] = []
    n = stream.commands.shape[0]
    for r in range(repeats):
        engine = _prepared(_numba_engine, stream)
        total, calls = _timed_batches(getattr(engine, api), stream.commands, batch)
        _verify(engine, stream.final_hash, f"batched {api} ({batch}/call, run {r + 1})")
        totals.append(total)
        per_call.append(calls)
        del engine
    median = sorted(range(repeats), key=lambda i: totals[i])[repeats // 2]
    out: dict[str, Any] = {
        **_rate(n, totals[median]),
        "api": api,
        "batch_size": batch,
        "runs": [_rate(n, t)["commands_per_s"] for t in totals],
    }
    calls = per_call[median]
    full = calls[: n // batch]  # whole batches only
    if full.size:
        per_cmd = full / batch
        out["call_ns_per_command"] = {
            "p50": round(float(np.percentile(per_cmd, 50)), 1),
            "p99": round(float(np.percentile(per_cmd, 99)), 1),
            "max": round(float(per_cmd.max()), 1),
        }
    out["_calls"] = calls
    return out


def measure_one_at_a_time(stream: Stream, prefix: int) -> dict[str, Any]:
    """One ``execute_view()`` call per command over the first ``prefix`` commands."""
    engine = _prepared(_numba_engine, stream)
    ns = _timed_one_at_a_time(engine, stream.commands[:prefix])
    _verify(engine, stream.checkpoint_hashes[prefix], f"one at a time (first {prefix})")
    return {**_rate(prefix, ns), "of": "the first commands of the stream"}


def measure_reference(stream: Stream, prefix: int, numba_cps: float) -> dict[str, Any]:
    """The reference engine over the first ``prefix`` commands (after the same warm-up)."""
    try:
        from core.reference import ReferenceEngine
    except Exception as exc:  # it may be unfinished; the numba figures stand alone
        return {"skipped": f"core.reference does not import: {type(exc).__name__}: {exc}"}
    config = bench_config()
    try:
        engine = _prepared(lambda: ReferenceEngine(config), stream)
        cmds = stream.commands[:prefix]
        results: list[np.ndarray] = []
        events: list[np.ndarray] = []
        gc.collect()
        t0 = time.perf_counter_ns()
        for start in range(0, prefix, MAIN_BATCH):
            res, ev = engine.execute(cmds[start : start + MAIN_BATCH])
            results.append(res)
            events.append(ev)
        ns = time.perf_counter_ns() - t0
        got_hash = engine.state_hash()
        problems = engine.check_invariants()
    except Exception as exc:
        return {"skipped": f"the reference engine failed: {type(exc).__name__}: {exc}"}
    out: dict[str, Any] = _rate(prefix, ns)
    ref_cps = float(out["commands_per_s"])
    out["ratio"] = round(numba_cps / ref_cps, 1) if ref_cps else None
    out["ratio_is"] = "numba batched commands/s / reference commands/s"
    out["state_hash_match"] = got_hash == stream.checkpoint_hashes[prefix]
    ref_results = np.concatenate(results)
    out["results_match"] = all(
        np.array_equal(ref_results[f], stream.prefix_results[f]) for f in _RESULT_FIELDS
    )
    ref_events = np.concatenate(events)
    out["events_match"] = ref_events.tobytes() == stream.prefix_events.tobytes()
    out["invariants"] = problems
    return out


# --------------------------------------------------------------------------- report


def machine_info() -> dict[str, Any]:
    """CPU model, cores and library versions."""
    import numba

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "platform": platform.platform(),
    }


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


def _plot(report: dict[str, Any], calls: np.ndarray, batch: int, path: Path) -> str | None:
    """Write the PNG; returns a note if it could not be made."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: core.png skipped"
    labels: list[str] = []
    values: list[float] = []
    for size, cps in sorted(report["batch_sizes"].items(), key=lambda kv: int(kv[0])):
        labels.append(f"batch {size}")
        values.append(float(cps))
    copying = report["batched_copy"]
    labels.append(f"copy {copying['batch_size']}")
    values.append(float(copying["commands_per_s"]))
    labels.append("1 per call")
    values.append(float(report["one_at_a_time"]["commands_per_s"]))
    ref = report["reference"]
    if "commands_per_s" in ref:
        labels.append("reference")
        values.append(float(ref["commands_per_s"]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax1.bar(labels, values, color="tab:blue")
    ax1.set_yscale("log")
    ax1.set_ylabel("commands / s (log)")
    ax1.set_title(f"throughput by call pattern, {report['commands']:,} commands")
    ax1.tick_params(axis="x", labelsize=8, labelrotation=20)
    for i, v in enumerate(values):
        ax1.text(
            i,
            v,
            f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    whole = calls[: report["commands"] // batch]
    if whole.size:
        ax2.plot(np.arange(whole.size) * batch / 1e6, whole / batch, lw=0.5)
        ax2.set_xlabel("position in stream (M commands)")
        ax2.set_ylabel(f"ns per command (calls of {batch})")
        ax2.set_title("per-call cost over the stream (median run)")
    fig.suptitle(f"matchd core bench, seed {report['seed']}, {report['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def run_benchmark(
    n_commands: int,
    seed: int,
    warmup: int = DEFAULT_WARMUP,
    single_prefix: int = DEFAULT_SINGLE_PREFIX,
    reference_prefix: int = DEFAULT_REFERENCE_PREFIX,
    repeats: int = DEFAULT_REPEATS,
) -> tuple[dict[str, Any], np.ndarray]:
    """Generate, measure and verify; returns the report and the main run's call times."""
    single_prefix = min(single_prefix, n_commands)
    reference_prefix = min(reference_prefix, n_commands)
    stream = generate(n_commands, seed, warmup, [single_prefix, reference_prefix], reference_prefix)
    warm_jit(stream)
    # What the set-up left behind is not garbage; a long-running process freezes its
    # start-up objects the same way, so the collector does not walk them over and over.
    gc.collect()
    gc.freeze()
    main_run = measure_batched(stream, MAIN_BATCH, repeats)
    calls: np.ndarray = main_run.pop("_calls")
    batch_sizes = {str(MAIN_BATCH): main_run["commands_per_s"]}
    for size in OTHER_BATCHES:
        other = measure_batched(stream, size, 1)
        batch_sizes[str(size)] = other["commands_per_s"]
    copying = measure_batched(stream, MAIN_BATCH, repeats, api="execute")
    copying.pop("_calls")
    single = measure_one_at_a_time(stream, single_prefix)
    reference = measure_reference(stream, reference_prefix, float(main_run["commands_per_s"]))
    notes: list[str] = []
    if "skipped" in reference:
        notes.append(f"reference skipped: {reference['skipped']}")
    else:
        notes.extend(
            f"reference engine disagrees with numba on its prefix ({key})"
            for key in ("state_hash_match", "results_match", "events_match")
            if not reference[key]
        )
    report: dict[str, Any] = {
        "benchmark": "core",
        "what": "Engine.execute_view in batches, balances and fees settled, exchange-core "
        "single-market mix",
        "commands": n_commands,
        "warmup_commands": warmup,
        "commands_per_s": main_run["commands_per_s"],
        "ns_per_command": main_run["ns_per_command"],
        "batched": main_run,
        **stream_summary(stream),
        "batched_copy": copying,
        "one_at_a_time": single,
        "reference": reference,
        "batch_sizes": batch_sizes,
        "fees": {"maker_rate": MAKER_RATE, "taker_rate": TAKER_RATE, "fee_prec": 4},
        "state_hash": stream.final_hash,
        "verified": "every numba run ended in the generator's state hash, invariants clean",
        "generation_s": round(stream.generation_s, 2),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "machine": machine_info(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "gc": "gc.freeze() after set-up, before the timed runs",
        "notes": notes,
    }
    return report, calls


def _table(report: dict[str, Any]) -> str:
    mix = report["mix_percent"]
    ref = report["reference"]
    one = report["one_at_a_time"]
    lines = [
        f"matchd core bench  seed {report['seed']}  {report['date']}",
        f"  stream      {report['commands']:,} commands after {report['warmup_commands']:,} "
        f"warm-up; mix GTC {mix['gtc']}% IOC {mix['ioc']}% cancel {mix['cancel']}% "
        f"replace {mix['replace']}%",
        f"  book        {report['avg_resting_orders']:.0f} resting orders on "
        f"{report['avg_levels']:.0f} levels (avg); trades {report['trades']:,}, "
        f"{100 * report['trade_fraction']:.2f}% of commands trade; "
        f"{report['events_per_command']} events/command; not found {report['not_found']}",
        f"  batched     {report['commands_per_s'] / 1e6:.3f} M commands/s  "
        f"{report['ns_per_command']} ns/command  (execute_view, {MAIN_BATCH} per call, "
        f"median of {len(report['batched']['runs'])})",
    ]
    for size, cps in sorted(report["batch_sizes"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"    batch {size:>5}  {cps / 1e6:.3f} M commands/s")
    copying = report["batched_copy"]
    lines.append(
        f"  copying     {copying['commands_per_s'] / 1e6:.3f} M commands/s  "
        f"{copying['ns_per_command']} ns/command  (execute, {copying['batch_size']} per "
        "call, results and events copied out)"
    )
    lines.append(
        f"  1 per call  {one['commands_per_s'] / 1e6:.3f} M commands/s  "
        f"{one['ns_per_command']} ns/command  (first {one['commands']:,})"
    )
    if "skipped" in ref:
        lines.append(f"  reference   skipped: {ref['skipped']}")
    else:
        lines.append(
            f"  reference   {ref['commands_per_s'] / 1e3:.1f} k commands/s (first "
            f"{ref['commands']:,}); numba batched is {ref['ratio']}x; hash match "
            f"{ref['state_hash_match']}, events match {ref['events_match']}"
        )
    lines.append(f"  peak RSS    {report['peak_rss_bytes'] / 2**20:.0f} MiB")
    lines.append(f"  state hash  {report['state_hash']}")
    lines.extend(f"  note: {note}" for note in report["notes"])
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark as ``args`` says (see the module docstring); returns the exit code."""
    try:
        report, calls = run_benchmark(
            int(args.commands),
            int(args.seed),
            warmup=int(getattr(args, "warmup", DEFAULT_WARMUP)),
            single_prefix=int(getattr(args, "single_prefix", DEFAULT_SINGLE_PREFIX)),
            reference_prefix=int(getattr(args, "reference_prefix", DEFAULT_REFERENCE_PREFIX)),
            repeats=int(getattr(args, "repeats", DEFAULT_REPEATS)),
        )
    except BenchError as exc:
        print(f"matchd-bench core: {exc}", file=sys.stderr)
        return 1
    out = getattr(args, "out", None)
    if out is not None:
        directory = Path(out)
        directory.mkdir(parents=True, exist_ok=True)
        note = _plot(report, calls, MAIN_BATCH, directory / "core.png")
        if note:
            report["notes"].append(note)
        (directory / "core.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_table(report))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench_core", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--commands", type=int, default=DEFAULT_COMMANDS, metavar="N")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="S")
    parser.add_argument("--out", default=None, metavar="DIR", help="write core.json, core.png")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, metavar="N")
    parser.add_argument("--single-prefix", type=int, default=DEFAULT_SINGLE_PREFIX, metavar="N")
    parser.add_argument(
        "--reference-prefix", type=int, default=DEFAULT_REFERENCE_PREFIX, metavar="N"
    )
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, metavar="N")
    return parser


if __name__ == "__main__":
    raise SystemExit(main(_parser().parse_args()))
