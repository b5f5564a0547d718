"""What a mass quote costs against single replaces (part of ``matchd-bench core``).

docs/engine.md, "QUOTE": a market maker's 20-level two-sided ladder is set in one
command. The question the numbers answer: what does a requote cost, compared with the
one REPLACE a maker would send per level it moves?

Set-up (not timed), on the benchmark's one-market config: 200 other users rest 1,000
orders on the 120 ticks about the mid, so that every ladder price has a level with
orders on it; the maker (user 1) rests a 20-level ladder on each side, one tick
apart, 1..20 ticks from the mid.

Timed, each on a fresh copy of that state, one command per ``execute_view`` call (a
maker sends each requote when its price moves, not in batches), then the same in
batches of 64:

* **shift**: the mid walks one tick up or down and the maker requotes the whole
  ladder around it: per side one level is stale (cancelled) and one is new, the other
  19 are kept (2 cancels, 2 new orders, 38 levels untouched);
* **resize**: every level's amount changes (alternately down and up, so half keep
  their priority and half go to the tail): 40 orders changed;
* **replace**: one REPLACE of one of the maker's plain orders by one tick (it loses
  priority), the command a maker without mass quotes sends per level it moves.

Every run ends with the invariants checked, and the shift run's final state hash is
compared with the reference engine's over the same commands (a short prefix), so a
fast wrong answer cannot pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from core import commands as C
from core.api import EngineAPI
from core.engine import Engine
from core.reference import ReferenceEngine
from core.schema import Result
from tools.bench_stream import (
    BASE_PRICE,
    MAKER_RATE,
    MARKET,
    TAKER_RATE,
    BenchError,
    bench_config,
    deposit_all,
)

LEVELS = 20  #: levels a side of the ladder
LOTS = 20_000  #: 0.02 XBT a level
BACKGROUND_USERS = 200
BACKGROUND_ORDERS = 1_000
BACKGROUND_SPAN = 60  #: ticks either side of the mid where the other users rest
MAKER = 1
ASK, BID = 1, 2
BATCH = 64
REFERENCE_PREFIX = 200

E = TypeVar("E", bound=EngineAPI)


def _ladder(mid: int, sizes: list[int] | None = None) -> list[tuple[int, int, int]]:
    sizes = sizes or [LOTS] * (2 * LEVELS)
    bids = [(BID, mid - 1 - j, sizes[j]) for j in range(LEVELS)]
    asks = [(ASK, mid + 1 + j, sizes[LEVELS + j]) for j in range(LEVELS)]
    return bids + asks


def _quote(mid: int, ts_ns: int, sizes: list[int] | None = None) -> np.ndarray:
    return C.quote(MAKER, MARKET, _ladder(mid, sizes), TAKER_RATE, MAKER_RATE, ts_ns=ts_ns)


def _ok(engine: EngineAPI, cmds: np.ndarray, what: str) -> None:
    results, _ = engine.execute(cmds)
    bad = results["code"] != Result.OK
    if bad.any():
        raise BenchError(f"{what}: {Result(int(results['code'][bad][0])).name}")


def _background(engine: EngineAPI, rng: np.random.Generator) -> None:
    """Other users' orders on every tick about the mid, none crossing it."""
    cmds = []
    for k in range(BACKGROUND_ORDERS):
        side = ASK if k % 2 else BID
        away = 1 + int(rng.integers(0, BACKGROUND_SPAN))
        price = BASE_PRICE + away if side == ASK else BASE_PRICE - away
        user = 2 + int(rng.integers(0, BACKGROUND_USERS))
        lots = 10_000 * (1 + int(rng.integers(0, 10)))
        cmds.append(C.put_limit(user, MARKET, side, lots, price, TAKER_RATE, MAKER_RATE))
    _ok(engine, C.batch(*cmds), "background orders")


def _state(make: Callable[[], E], seed: int) -> E:
    engine = make()
    deposit_all(engine, BACKGROUND_USERS + 1)
    _background(engine, np.random.default_rng(seed))
    return engine


def _shifts(rounds: int, seed: int) -> list[np.ndarray]:
    """The first quote, then ``rounds`` requotes as the mid walks a tick at a time."""
    rng = np.random.default_rng(seed)
    mid = BASE_PRICE
    out = [_quote(mid, 1)]
    for r in range(rounds):
        mid += 1 if rng.integers(0, 2) else -1
        mid = min(max(mid, BASE_PRICE - 10), BASE_PRICE + 10)  # stays inside the others'
        out.append(_quote(mid, 2 + r))
    return out


def _resizes(rounds: int) -> list[np.ndarray]:
    """The first quote, then every level resized each round (down, then up)."""
    out = [_quote(BASE_PRICE, 1)]
    for r in range(rounds):
        delta = -1_000 if r % 2 == 0 else 1_000
        sizes = [LOTS + (delta if j % 2 else -delta) for j in range(2 * LEVELS)]
        out.append(_quote(BASE_PRICE, 2 + r, sizes))
    return out


def _replaces(rounds: int) -> list[np.ndarray]:
    """The maker's 40 plain orders (order ids 1001..1040 on a fresh state), then one
    REPLACE a round, by one tick out and back, going round the ladder."""
    first = C.batch(
        *(
            C.put_limit(MAKER, MARKET, side, lots, price, TAKER_RATE, MAKER_RATE, ts_ns=1)
            for side, price, lots in _ladder(BASE_PRICE)
        )
    )
    out = [first]
    for r in range(rounds):
        j = r % (2 * LEVELS)
        side, price, lots = _ladder(BASE_PRICE)[j]
        if (r // (2 * LEVELS)) % 2 == 0:  # one tick out, then back home, in turns
            price += 1 if side == ASK else -1
        out.append(C.replace(MAKER, MARKET, BACKGROUND_ORDERS + 1 + j, price, lots, ts_ns=2 + r))
    return out


def _time(engine: Engine, cmds: list[np.ndarray], batch: int) -> int:
    """Run ``cmds[0]`` untimed, then the rest ``batch`` at a time; returns ns."""
    engine.execute(cmds[0])
    rest = cmds[1:]
    calls = [np.concatenate(rest[i : i + batch]) for i in range(0, len(rest), batch)]
    start = time.perf_counter_ns()
    for call in calls:
        engine.execute_view(call)
    return time.perf_counter_ns() - start


def _measure(name: str, cmds: list[np.ndarray], seed: int, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {"commands": len(cmds) - 1}
    for batch in (1, BATCH):
        best = None
        for _ in range(repeats):
            engine = _state(lambda: Engine(bench_config()), seed)
            ns = _time(engine, cmds, batch)
            problems = engine.check_invariants()
            if problems:
                raise BenchError(f"{name}: {problems[:3]}")
            best = ns if best is None else min(best, ns)
        assert best is not None  # noqa: S101 -- repeats >= 1
        out[f"ns_per_command_batch_{batch}"] = round(best / (len(cmds) - 1))
    return out


def _check_reference(cmds: list[np.ndarray], seed: int) -> bool:
    """The numba engine and the reference agree on a prefix of ``cmds``."""
    prefix = cmds[: REFERENCE_PREFIX + 1]
    engines: list[EngineAPI] = [
        _state(lambda: Engine(bench_config()), seed),
        _state(lambda: ReferenceEngine(bench_config()), seed),
    ]
    outcomes = [[engine.execute(cmd)[0]["code"].tolist() for cmd in prefix] for engine in engines]
    return outcomes[0] == outcomes[1] and engines[0].state_hash() == engines[1].state_hash()


def measure_quotes(rounds: int = 2_000, seed: int = 1, repeats: int = 3) -> dict[str, Any]:
    """The ``quotes`` section of the core benchmark's report."""
    shifts = _shifts(rounds, seed)
    for cmds in (shifts[:3], _replaces(3)):  # compile (or load) outside the timing
        _time(_state(lambda: Engine(bench_config()), seed), cmds, 1)
    shift = _measure("shift", shifts, seed, repeats)
    resize = _measure("resize", _resizes(rounds), seed, repeats)
    replace = _measure("replace", _replaces(rounds), seed, repeats)
    ratio = {
        f"{name}_per_replace_batch_{b}": round(
            run[f"ns_per_command_batch_{b}"] / replace[f"ns_per_command_batch_{b}"], 2
        )
        for name, run in (("shift", shift), ("resize", resize))
        for b in (1, BATCH)
    }
    return {
        "what": f"a {LEVELS}-level two-sided mass quote (41 records) against one REPLACE",
        "levels_per_side": LEVELS,
        "background_orders": BACKGROUND_ORDERS,
        "shift": shift,
        "resize": resize,
        "replace": replace,
        "ratios": ratio,
        "reference_agrees": _check_reference(shifts, seed),
    }
