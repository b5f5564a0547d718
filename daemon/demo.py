"""What ``matchd run`` does until the multi-process daemon exists (issue #4).

It builds the in-process engine from the configuration, checks the kernels are
compiled, and walks through a first trade, printing each ViaBTC-style call and its
reply, then the engine's state hash and invariant check.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from core.config import parse_config
from core.engine import Engine
from core.errors import ConfigError
from core.viabtc import Exchange, Reply

logger = logging.getLogger(__name__)


def _show(call: str, reply: Reply) -> None:
    body: Any = reply.result if reply.ok else reply.error()
    print(f"> {call}\n{json.dumps(body, indent=2)}")


def run(config_text: str) -> int:
    """Run the in-process demo on the configuration ``config_text``; returns an exit code."""
    try:
        config = parse_config(config_text)
    except ConfigError as exc:
        print(f"matchd: {exc}", file=sys.stderr)
        return 2
    if not config.markets:
        print("matchd: the configuration has no markets", file=sys.stderr)
        return 2
    started = time.perf_counter()
    ex = Exchange(Engine(config), time.time_ns)
    m = config.markets[0]
    print(
        f"matchd (in-process demo): {len(config.assets)} assets, {len(config.markets)} markets, "
        f"engine ready in {time.perf_counter() - started:.2f} s"
    )
    print("The multi-process daemon (ZeroMQ, HTTP, WebSocket) arrives with issue #4.\n")
    seller, buyer = 101, 102
    steps: list[tuple[str, Callable[[], Reply]]] = [
        (
            f'balance.update {seller} {m.stock.name} "deposit" 1 "2"',
            lambda: ex.balance_update(seller, m.stock.name, "deposit", 1, "2", {}),
        ),
        (
            f'balance.update {buyer} {m.money.name} "deposit" 1 "100000"',
            lambda: ex.balance_update(buyer, m.money.name, "deposit", 1, "100000", {}),
        ),
        (
            f'order.put_limit {seller} {m.name} sell "1.5" @ "100"',
            lambda: ex.put_limit(seller, m.name, 1, "1.5", "100", "0.002", "0.001", "demo"),
        ),
        (
            f'order.put_limit {buyer} {m.name} buy "1" @ "101"',
            lambda: ex.put_limit(buyer, m.name, 2, "1", "101", "0.002", "0.001", "demo"),
        ),
        (f"order.depth {m.name} 10", lambda: ex.order_depth(m.name, 10, "0")),
        (f"balance.query {buyer}", lambda: ex.balance_query(buyer)),
    ]
    for call, step in steps:
        reply = step()
        _show(call, reply)
        if not reply.ok:
            return 1
    problems = ex.engine.check_invariants()
    print(f"\nstate hash {ex.engine.state_hash()}; invariants: {problems or 'all hold'}")
    return 1 if problems else 0
