"""``command_outcomes``: each command's own order from a batch's results and events,
the same on the tuple path (a few commands) and the numpy path (many), and the same
as the in-process ``Exchange``'s replies."""

from __future__ import annotations

import numpy as np

from core import commands
from core.config import parse_config
from core.engine import Engine
from core.schema import Result
from core.viabtc_codec import _few_outcomes, _many_outcomes, command_outcomes
from tests.support.scenario import config_text


def _batch(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        user = int(rng.integers(1, 5))
        kind = rng.integers(0, 5)
        if kind == 0:
            out.append(commands.cancel(user, 0, int(rng.integers(1, 40))))
        elif kind == 1:
            out.append(commands.cancel_all(user, 0))
        elif kind == 2:
            out.append(commands.put_market(user, 0, int(rng.integers(1, 3)), 1000))
        else:
            side = int(rng.integers(1, 3))
            price = int(rng.integers(99, 102)) * 100
            out.append(commands.put_limit(user, 0, side, int(rng.integers(1, 50)) * 1000, price,
                                          source=f"s{i}".encode(),
                                          client_id=int(rng.integers(0, 30))))  # fmt: skip
    return commands.batch(*out)


def test_the_tuple_and_numpy_paths_agree_and_find_each_commands_order() -> None:
    engine = Engine(parse_config(config_text()))
    for user in range(1, 5):
        for asset in (0, 2):
            results, _ = engine.balance_update(user, asset, b"d", 1, 10**15, 0)
            assert results[0]["code"] == Result.OK
    for seed in range(20):
        batch = _batch(seed, 1 + seed * 3)
        results, events = engine.execute(batch)
        few, many = _few_outcomes(results, events), _many_outcomes(results, events)
        assert few == many
        assert command_outcomes(results, events) == many
        for res, outcome in zip(results, many, strict=True):
            assert (outcome.code, outcome.order_id) == (res["code"], res["order_id"])
            if res["code"] == Result.OK and res["order_id"]:
                assert outcome.order is not None
                assert outcome.order.id == res["order_id"]
    assert any(o.order is not None and o.order.deal_stock for o in many)  # fills were seen
    repeats = [o for o in many if o.code == Result.REPEAT_ORDER]  # client ids used again
    assert repeats
    assert all(o.order is None and o.order_id > 0 for o in repeats)
