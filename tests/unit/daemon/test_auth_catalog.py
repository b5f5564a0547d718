"""The catalog's calls with a key registry, over real CURVE on loopback TCP, in one
process and with two pair workers: only an admin key adds an asset or a market; every
other key is refused FORBIDDEN, the whole frame, and nothing changes; every key sees
what the admin key added (docs/protocol.md, "Authentication and limits")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from core.schema import Result, Side
from ipc import wire
from tests.support.scenario import make_config
from tests.unit.daemon.test_auth import ALICE, Secured, refused
from tools import matchctl

pytestmark = pytest.mark.integration


@pytest.fixture(params=[0, 2], ids=["one-process", "workers"])
def secured(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Secured]:
    config = make_config(
        max_orders=1000, max_levels=200, max_assets=4, max_markets=4, added_market_orders=100,
        added_market_levels=20,
    )  # fmt: skip
    s = Secured(tmp_path, config, workers=int(request.param))
    yield s
    s.close()


def test_only_an_admin_key_adds_to_the_catalog(secured: Secured) -> None:
    before = secured.state_hash()
    for name, role in (("alice", "trade"), ("gateway", "trade"), ("viewer", "read")):
        key = secured.client(name)
        messages = [
            refused(Result.FORBIDDEN, partial(key.add_asset, "DOGE", 8)),
            refused(Result.FORBIDDEN, partial(key.add_market, "ETH_USDT", "ETH", "USDT", 4, 2)),
            # hidden behind a call the key may make: the frame is refused whole
            refused(Result.FORBIDDEN, partial(key.call, wire.AssetList(), wire.AssetAdd("X", 2))),
        ]
        assert messages[0] == (
            f"forbidden: key '{name}' ({role}) may not call asset.add (call 0): "
            "it needs an admin key"
        )
        assert "may not call market.add (call 0)" in messages[1]
        assert "may not call asset.add (call 1)" in messages[2]
    assert secured.state_hash() == before
    ops, alice = secured.client("ops"), secured.client("alice")
    assert ops.add_asset("DOGE", 8).value == 3
    assert ops.add_market("DOGE_USDT", "DOGE", "USDT", 2, 4).value == 2
    assert [m.name for m in secured.client("viewer").markets()][-1] == "DOGE_USDT"
    ops.balance_update(ALICE, 3, "deposit", 1, 10**10)
    assert alice.put_limit(ALICE, 2, Side.ASK, 100, 1500).order is not None


def test_matchctl_needs_an_admin_key_to_add(
    secured: Secured, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = secured.keys.directory
    base = ["--endpoint", secured.endpoint, "--timeout", "60"]

    def key(name: str) -> list[str]:
        return ["--key", str(keys / f"{name}.key_secret"), "--server-key", str(keys / "server.key")]

    add = ["asset", "add", "DOGE", "8", *base]
    assert matchctl.main([*add, *key("gateway")]) == 1
    assert json.loads(capsys.readouterr().err)["code"] == Result.FORBIDDEN
    assert matchctl.main([*add, *key("ops")]) == 0
    assert json.loads(capsys.readouterr().out)["index"] == 3
    market = ["market", "add", "DOGE_USDT", "DOGE", "USDT", "2", "4", *base]
    assert matchctl.main([*market, *key("alice")]) == 1
    assert json.loads(capsys.readouterr().err)["code"] == Result.FORBIDDEN
    assert matchctl.main([*market, *key("ops")]) == 0
    assert json.loads(capsys.readouterr().out)["index"] == 2
