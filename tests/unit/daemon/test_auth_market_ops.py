"""The market operations with a key registry, over real CURVE on loopback TCP: only
an admin key halts, delists, blocks or sets a risk limit (a market's or a user's
own), by call or by binary record (kinds 7, 8, 9, 10, 13); every other key is
refused FORBIDDEN, the whole frame, and the state hash does not move; a key of a
user reads the user's own limits (docs/protocol.md, "Authentication and limits")."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from core import commands as C
from core.schema import MarketStatus, Result, RiskLimit, Side, UserStatus
from ipc import wire
from ipc.client import ApiError, Client
from tests.unit.daemon.test_auth import ALICE, BOB, Secured, fund, refused
from tools import matchctl

pytestmark = pytest.mark.integration


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Secured]:
    s = Secured(tmp_path)
    yield s
    s.close()


def attacks(k: Client) -> list[Callable[[], object]]:
    """Every market operation through ``k``."""
    return [
        lambda: k.halt_market(0),
        lambda: k.resume_market(0),
        lambda: k.set_market_status(0, "delisted"),
        lambda: k.cancel_market_orders(0),
        lambda: k.delist_market(0),
        lambda: k.block_user(ALICE),
        lambda: k.unblock_user(ALICE),
        lambda: k.set_user_status(BOB, UserStatus.BLOCKED),
        # hidden behind a call the key may make: the frame is refused whole
        lambda: k.call(wire.MarketList(), wire.MarketSetStatus(0, "halted")),
        lambda: k.set_market_limit(0, "price_step", 100),
        lambda: k.call(wire.MarketList(), wire.MarketSetLimit(0, "max_open_orders", 1)),
        lambda: k.set_user_limit(ALICE, 0, "max_notional", 100),
        lambda: k.call(wire.MarketList(), wire.UserSetLimit(BOB, 0, "max_order_amount", 1)),
    ]


def test_only_an_admin_key_may_call_the_market_operations(secured: Secured) -> None:
    fund(secured)
    alice = secured.client("alice")
    mine = alice.put_limit(ALICE, 0, Side.ASK, 1000, 20_000).order_id
    before = secured.state_hash()
    for name, role in (("alice", "trade"), ("gateway", "trade"), ("viewer", "read")):
        key = secured.client(name)
        messages = [refused(Result.FORBIDDEN, attack) for attack in attacks(key)]
        assert messages[0] == (
            f"forbidden: key '{name}' ({role}) may not call market.set_status (call 0): "
            "it needs an admin key"
        )
        assert "may not call market.cancel_orders (call 0)" in messages[3]
        assert "may not call user.set_status (call 0)" in messages[5]
        assert "may not call market.set_status (call 1)" in messages[8]
        assert messages[9] == (
            f"forbidden: key '{name}' ({role}) may not call market.set_limit (call 0): "
            "it needs an admin key"
        )
        assert "may not call market.set_limit (call 1)" in messages[10]
        assert messages[11] == (
            f"forbidden: key '{name}' ({role}) may not call user.set_limit (call 0): "
            "it needs an admin key"
        )
        assert "may not call user.set_limit (call 1)" in messages[12]
    assert secured.state_hash() == before
    assert alice.pending_detail(0, mine) is not None
    stats = secured.server.auth_statistics()
    assert stats is not None
    assert stats.keys["gateway"].forbidden == 13
    assert [m.price_step for m in secured.client("viewer").markets()] == [1, 1]


@pytest.mark.parametrize(
    ("record", "kind"),
    [
        (C.market_status(0, MarketStatus.HALTED), "7 (command 1, MARKET_STATUS)"),
        (C.user_status(ALICE, UserStatus.BLOCKED), "8 (command 1, USER_STATUS)"),
        (C.cancel_market(0), "9 (command 1, CANCEL_MARKET)"),
        (C.market_limit(0, RiskLimit.PRICE_STEP, 100), "10 (command 1, MARKET_LIMIT)"),
        (C.user_limit(ALICE, 0, RiskLimit.MAX_NOTIONAL, 100), "13 (command 1, USER_LIMIT)"),
    ],
)
def test_a_trade_key_may_not_send_admin_records(
    secured: Secured, record: np.ndarray, kind: str
) -> None:
    fund(secured)
    alice, gateway = secured.client("alice"), secured.client("gateway")
    mine = alice.put_limit(ALICE, 0, Side.ASK, 1000, 20_000).order_id
    before = secured.state_hash()
    own = C.cancel(ALICE, 0, mine)  # would succeed on its own
    for key, name in ((alice, "alice"), (gateway, "gateway")):
        message = refused(Result.FORBIDDEN, partial(key.submit, C.batch(own, record)))
        assert message == (
            f"forbidden: key '{name}' (trade) may not send command kind {kind}: "
            "it needs an admin key"
        )
    viewer = secured.client("viewer")
    message = refused(Result.FORBIDDEN, lambda: viewer.submit(C.batch(record)))
    assert message == "forbidden: key 'viewer' (read) may not send order commands"
    assert secured.state_hash() == before
    assert alice.pending_detail(0, mine) is not None


def test_an_admin_key_runs_them_by_call_and_by_record(secured: Secured) -> None:
    fund(secured)
    ops, alice, bob = secured.client("ops"), secured.client("alice"), secured.client("bob")
    alice.put_limit(ALICE, 0, Side.ASK, 1000, 20_000)
    alice.put_limit(ALICE, 1, Side.BID, 100, 100_000)
    bob.put_limit(BOB, 0, Side.BID, 1000, 10_000)
    # Records: halt market 1 and block Bob in one COMMANDS frame.
    results, _ = ops.submit(
        C.batch(C.market_status(1, MarketStatus.HALTED), C.user_status(BOB, UserStatus.BLOCKED))
    )
    assert results["code"].tolist() == [Result.OK, Result.OK]
    assert [m.status for m in ops.markets()][:2] == ["open", "halted"]
    with pytest.raises(ApiError) as info:
        alice.put_limit(ALICE, 1, Side.BID, 100, 100_000)
    assert info.value.code == Result.MARKET_HALTED
    with pytest.raises(ApiError) as info:
        bob.put_limit(BOB, 0, Side.BID, 1000, 10_000)
    assert info.value.code == Result.USER_BLOCKED
    # A blocked user's own key still cancels.
    assert bob.cancel_all(BOB, 0).value == 1
    # Calls: the compositions.
    assert ops.block_user(ALICE) == 2
    assert ops.delist_market(0) == 0
    assert ops.resume_market(1).seq > 0
    assert ops.unblock_user(ALICE).seq > 0
    assert ops.unblock_user(BOB).seq > 0
    assert alice.put_limit(ALICE, 1, Side.BID, 100, 100_000).order is not None
    # A risk limit, by call and by record.
    assert ops.set_market_limit(1, "amount_step", 100).seq > 0
    (result,), _ = ops.submit(C.batch(C.market_limit(1, RiskLimit.PRICE_STEP, 10)))
    assert (int(result["code"]), int(result["seq"]) > 0) == (Result.OK, True)
    assert [(m.amount_step, m.price_step) for m in alice.markets()] == [(1, 1), (100, 10)]
    with pytest.raises(ApiError) as info:
        alice.put_limit(ALICE, 1, Side.BID, 150, 100_000)
    assert info.value.code == Result.AMOUNT_NOT_ON_STEP
    # A user's own limit, by call and by record; a key of the user reads it.
    assert ops.set_user_limit(ALICE, 1, "max_order_amount", 100).seq > 0
    (result,), _ = ops.submit(C.batch(C.user_limit(BOB, 1, RiskLimit.MAX_NOTIONAL, 10**6)))
    assert (int(result["code"]), int(result["seq"]) > 0) == (Result.OK, True)
    assert alice.user_limits(ALICE, 1) == wire.UserLimits(ALICE, 1, 100, 0)
    assert secured.client("viewer").user_limits(ALICE, 1).max_order_amount == 100
    assert bob.user_limits(BOB, 1) == wire.UserLimits(BOB, 1, 0, 10**6)
    assert ops.user_limits(BOB, 1).max_notional == 10**6
    message = refused(Result.FORBIDDEN, lambda: bob.user_limits(ALICE, 1))
    assert message == "forbidden: key 'bob' (trade) may not act for user 1 (call 0, user.limits)"
    with pytest.raises(ApiError) as info:
        alice.put_limit(ALICE, 1, Side.BID, 200, 100_000)
    assert info.value.code == Result.USER_AMOUNT_TOO_LARGE


def test_matchctl_needs_an_admin_key_for_them(
    secured: Secured, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = secured.keys.directory
    base = ["--endpoint", secured.endpoint, "--timeout", "30"]

    def key(name: str) -> list[str]:
        return ["--key", str(keys / f"{name}.key_secret"), "--server-key", str(keys / "server.key")]

    assert matchctl.main(["market", "halt", "BTC_USDT", *base, *key("alice")]) == 1
    assert json.loads(capsys.readouterr().err)["code"] == Result.FORBIDDEN
    assert matchctl.main(["user", "block", str(BOB), *base, *key("gateway")]) == 1
    assert json.loads(capsys.readouterr().err)["code"] == Result.FORBIDDEN
    assert matchctl.main(["market", "halt", "BTC_USDT", *base, *key("ops")]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "halted"
    assert matchctl.main(["markets", *base, *key("viewer")]) == 0  # a read key sees it
    assert json.loads(capsys.readouterr().out)[0]["status"] == "halted"
    limit = ["user", "limit", str(ALICE), "BTC_USDT", "max_notional", "10"]
    assert matchctl.main([*limit, *base, *key("alice")]) == 1
    assert json.loads(capsys.readouterr().err)["code"] == Result.FORBIDDEN
    assert matchctl.main([*limit, *base, *key("ops")]) == 0
    assert json.loads(capsys.readouterr().out)["units"] == 10 * 10**8
    shown = ["user", "limits", str(ALICE), "BTC_USDT", *base]
    assert matchctl.main([*shown, *key("viewer")]) == 0  # a read key of the user
    assert json.loads(capsys.readouterr().out)["limits"]["max_notional"] == "10"
