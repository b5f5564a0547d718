"""Mass quotes at the order entry's gate (daemon/auth_gate.py; docs/protocol.md,
"Authentication and limits"): a QUOTE and its QUOTE_LEVEL records are a trading
command of the quote's user (a trade key's, for its users), a level acts for the
user of the QUOTE before it, and the ``order.quote`` call costs a token per record
it makes, as the same quote sent as records does."""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pytest

from core import commands as C
from core.schema import CommandKind, Result, Side
from daemon.auth_gate import CALL_ACCESS, Access, call_cost
from ipc import wire
from tests.support.keys import Entry, Keys
from tests.unit.daemon.test_auth_registry import FakeClock, calls_frame, commands_frame, gate_for

BID, ASK = int(Side.BID), int(Side.ASK)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    k = Keys(tmp_path)
    k.add("ops", Entry("admin"))
    k.add("alice", Entry("trade", [1, 3]))
    k.add("gateway", Entry("trade", "*", rate_per_s=100, burst=10))
    k.add("monitor", Entry("read"))
    return k


def quote(user: int, levels: int = 2) -> np.ndarray:
    """A QUOTE of ``user`` with ``levels`` bids (and its header)."""
    return wire.quote_records(user, 0, [(100 - i, 5) for i in range(levels)], [])


def test_a_trade_key_quotes_for_its_users_and_nobody_else(keys: Keys) -> None:
    gate, _ = gate_for(keys, FakeClock())
    mine = C.batch(C.put_limit(1, 0, BID, 10, 90), quote(1), quote(3, 0), C.cancel(1, 0, 7))

    assert gate.admit("alice", commands_frame(mine)) is None
    assert gate.admit("alice", commands_frame(quote(1, 0))) is None  # one record: k = 0
    theirs = quote(2)
    refusal = gate.admit("alice", commands_frame(theirs))
    assert refusal is not None
    assert refusal.code == Result.FORBIDDEN
    assert refusal.message == (
        "forbidden: key 'alice' (trade) may not act for user 2 (command 0, QUOTE)"
    )
    assert gate.admit("gateway", commands_frame(theirs)) is None  # users = "*"
    monitor = gate.admit("monitor", commands_frame(mine))
    assert monitor is not None
    assert monitor.message == "forbidden: key 'monitor' (read) may not send order commands"


@pytest.mark.parametrize("who", ["alice", "gateway"])
def test_a_level_acts_for_the_user_of_its_quote(keys: Keys, who: str) -> None:
    gate, _ = gate_for(keys, FakeClock())
    mixed = C.batch(C.cancel(3, 0, 5), quote(1, 3))
    mixed["user"][3] = 3  # a key's user, but not the quote's

    refusal = gate.admit(who, commands_frame(mixed))

    assert refusal is not None
    assert refusal.code == Result.FORBIDDEN
    assert refusal.message.endswith(
        "may not send a QUOTE_LEVEL for user 3 in the QUOTE of user 1 (command 3, of the "
        "QUOTE at command 1)"
    )
    assert gate.admit("ops", commands_frame(mixed)) is None  # an admin key: not checked


def test_a_level_without_a_quote_before_it_is_left_to_the_engine(keys: Keys) -> None:
    gate, _ = gate_for(keys, FakeClock())
    orphans = quote(1, 2)[1:]  # levels of no quote: the engine refuses them
    assert gate.admit("alice", commands_frame(orphans)) is None
    assert gate.admit("alice", commands_frame(orphans[:1])) is None
    theirs = orphans.copy()
    theirs["user"] = 2
    refusal = gate.admit("alice", commands_frame(theirs))
    assert refusal is not None
    assert "may not act for user 2 (command 0, QUOTE_LEVEL)" in refusal.message


@pytest.mark.parametrize("size", [1, 2, 300])
@pytest.mark.parametrize(
    ("user", "kind", "allowed"),
    [
        (1, CommandKind.QUOTE, True), (3, CommandKind.QUOTE_LEVEL, True),
        (2, CommandKind.QUOTE, False), (2, CommandKind.QUOTE_LEVEL, False),
        (1, 13, False), (1, CommandKind.MARKET_LIMIT, False),
    ],
)  # fmt: skip
def test_the_kind_check_takes_the_quote_kinds_at_every_size(
    tmp_path: Path, size: int, user: int, kind: int, allowed: bool
) -> None:
    keys = Keys(tmp_path)
    keys.add("alice", Entry("trade", [1, 3]))
    gate, _ = gate_for(keys, FakeClock())
    cmds = C.batch(*(C.cancel(1, 0, 5) for _ in range(size)))
    cmds["user"][-1] = user
    cmds["kind"][-1] = kind

    refusal = gate.admit("alice", commands_frame(cmds))

    assert (refusal is None) is allowed
    if refusal is not None:
        assert f"(command {size - 1}" in refusal.message


@pytest.mark.parametrize(
    ("who", "user", "allowed"),
    [("alice", 1, True), ("alice", 2, False), ("gateway", 2, True), ("ops", 2, True),
     ("monitor", 1, False)],
)  # fmt: skip
def test_the_quote_call_is_an_order_call_of_its_user(
    keys: Keys, who: str, user: int, allowed: bool
) -> None:
    gate, _ = gate_for(keys, FakeClock())
    call = wire.Quote(user, 0, [(99, 5)], [(101, 5)])

    refusal = gate.admit(who, calls_frame(wire.MarketList(), call))

    assert (refusal is None) is allowed
    if refusal is not None:
        assert refusal.code == Result.FORBIDDEN
        assert "(call 1" in refusal.message
    assert CALL_ACCESS[wire.Quote] == Access.ORDER
    assert wire.Quote in typing.get_args(wire.AnyCall)


def test_a_quote_costs_a_token_per_record_by_call_as_by_records(keys: Keys) -> None:
    clock = FakeClock()
    gate, _ = gate_for(keys, clock)  # gateway: burst 10
    four = wire.Quote(1, 0, [(99, 5), (98, 5)], [(101, 5)])
    assert call_cost(four) == 4 == len(four.record())
    assert call_cost(wire.Quote(1, 0)) == 1 == call_cost(wire.ServerStatus())

    assert gate.admit("gateway", calls_frame(four, wire.ServerStatus())) is None  # 5 of 10
    assert gate.admit("gateway", commands_frame(four.record())) is None  # 4: 9 of 10
    refusal = gate.admit("gateway", calls_frame(wire.Quote(1, 0, [(99, 5)])))  # 2 > 1 left
    assert refusal is not None
    assert refusal.code == Result.TOO_MANY_REQUESTS
    clock.advance(0.01)  # one more token
    assert gate.admit("gateway", calls_frame(wire.Quote(1, 0, [(99, 5)]))) is None
