"""Hostile balance.update: user, asset, change, business_id and time out of range or
of the wrong type, repeated keys, the supply limit, full tables.

The engine starts in the ``steps.held()`` state. A refused update gives the precise
code of docs/engine.md -- never an exception -- and changes nothing: no seq, no events,
the same state hash and counters. Every test runs on both engines (``engine_cls``,
tests/property/conftest.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from core.api import EngineAPI
from core.schema import MAX_SUPPLY_UNITS, MAX_USER_ID, Result
from tests.support.engines import EngineClass
from tests.support.steps import held
from tests.support.world import BTC, ETH, INT64_MAX, INT64_MIN, USDT, Limits

pytestmark = pytest.mark.kernel

OK = Result.OK
INVALID = Result.INVALID_ARGUMENT
BALANCE = Result.BALANCE_NOT_ENOUGH


_UPDATE_ARGS = ("user", "asset", "business", "business_id", "change", "ts_ns")


def _update(engine: EngineAPI, *args: object) -> tuple[np.ndarray, np.ndarray]:
    return engine.balance_update(*args)  # type: ignore[arg-type]


UPDATE_CASES = [
    # user
    *[
        ((u, BTC, b"b", 1, 5, 0), INVALID)
        for u in (-1, MAX_USER_ID + 1, INT64_MAX, INT64_MIN, 2**64, -(2**64))
    ],
    # asset
    *[((1, a, b"b", 1, 5, 0), Result.UNKNOWN_ASSET) for a in (-1, 3, 2**15, 2**63, INT64_MIN)],
    # change beyond int64 (and int64's minimum, which has no negation)
    *[((1, BTC, b"b", 1, c, 0), INVALID) for c in (2**63, INT64_MIN, 2**64, -(2**64), 2**100)],
    # business_id and the time beyond int64
    *[((1, BTC, b"b", i, 5, 0), INVALID) for i in (2**63, INT64_MIN, 2**64, -(2**100))],
    *[((1, BTC, b"b", 1, 5, t), INVALID) for t in (2**63, INT64_MIN)],
    # within int64 but beyond what accounts can hold or have
    ((1, BTC, b"b", 1, INT64_MAX, 0), Result.SUPPLY_LIMIT),
    ((1, BTC, b"b", 1, MAX_SUPPLY_UNITS, 0), Result.SUPPLY_LIMIT),
    ((1, BTC, b"b", 1, -INT64_MAX, 0), BALANCE),
    ((4, USDT, b"b", 1, -1, 0), BALANCE),  # a user who never had anything
    # the holding state's own deposit keys, again (only 32 bytes of business count)
    ((1, BTC, b"seed", 1001, 5, 0), Result.REPEAT_UPDATE),
    ((1, BTC, b"seed", 1001, -INT64_MAX, 0), Result.REPEAT_UPDATE),
    ((3, ETH, b"seed", 1003, 0, 0), Result.REPEAT_UPDATE),
    # precedence: user, asset, malformed, repeated, balance, supply
    ((-1, 99, b"b", 2**63, 2**63, 0), INVALID),
    ((1, 99, b"b", 2**63, 2**63, 0), Result.UNKNOWN_ASSET),
    ((1, BTC, b"seed", 1001, 2**63, 0), INVALID),
    ((1, BTC, b"seed", 1001, INT64_MAX, 0), Result.REPEAT_UPDATE),
]


def _update_id(value: object) -> str:
    if isinstance(value, Result):
        return value.name
    return "(" + ",".join(repr(v) for v in value) + ")"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("args", "expected"), UPDATE_CASES, ids=_update_id)
def test_hostile_balance_update(
    engine_cls: EngineClass, args: tuple[object, ...], expected: Result
) -> None:
    engine = held(engine_cls)
    before = engine.state_hash(), engine.counters()
    results, events = _update(engine, *args)
    code = int(results["code"][0])
    assert code == expected, f"{Result(code).name}, expected {expected.name}"
    assert int(results["seq"][0]) == 0
    assert len(events) == 0
    assert (engine.state_hash(), engine.counters()) == before


def test_supply_limit_is_exact(engine_cls: EngineClass) -> None:
    engine = held(engine_cls)
    room = MAX_SUPPLY_UNITS - engine.asset_summary(BTC).total
    assert _update(engine, 4, BTC, b"b", 1, room + 1, 0)[0]["code"][0] == Result.SUPPLY_LIMIT
    assert _update(engine, 4, BTC, b"b", 1, room, 0)[0]["code"][0] == OK
    assert engine.asset_summary(BTC).total == MAX_SUPPLY_UNITS
    assert _update(engine, 4, BTC, b"b", 2, 1, 0)[0]["code"][0] == Result.SUPPLY_LIMIT
    assert engine.check_invariants() == []


def test_business_beyond_32_bytes_does_not_count(engine_cls: EngineClass) -> None:
    engine = held(engine_cls)
    assert _update(engine, 1, BTC, b"k" * 32 + b"first", 9, 5, 0)[0]["code"][0] == OK
    before = engine.state_hash()
    assert (
        _update(engine, 1, BTC, b"k" * 32 + b"other", 9, 5, 0)[0]["code"][0] == Result.REPEAT_UPDATE
    )
    assert engine.state_hash() == before


def test_user_and_key_tables_full(engine_cls: EngineClass) -> None:
    # Arrange: the fee account and users 1..3 fill a table of 4; 9 + 1 keys of 10.
    engine = held(engine_cls, Limits(max_users=4, max_update_keys=10))
    assert _update(engine, 1, BTC, b"b", 1, 5, 0)[0]["code"][0] == OK
    before = engine.state_hash(), engine.counters()
    # Act / Assert: a new user, then a new key of a known user.
    assert _update(engine, 4, BTC, b"b", 1, 5, 0)[0]["code"][0] == Result.USER_TABLE_FULL
    assert _update(engine, 1, BTC, b"b", 2, 5, 0)[0]["code"][0] == Result.KEY_TABLE_FULL
    assert _update(engine, 1, BTC, b"b", 1, 5, 0)[0]["code"][0] == Result.REPEAT_UPDATE
    assert (engine.state_hash(), engine.counters()) == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param((True, BTC, b"b", 1, 5, 0), INVALID, id="user-bool"),
        pytest.param((1.0, BTC, b"b", 1, 5, 0), INVALID, id="user-float"),
        pytest.param((1, BTC, b"b", 1, 100.7, 0), INVALID, id="change-float"),
        pytest.param((1, BTC, b"b", 1, 5.0, 0), INVALID, id="change-whole-float"),
        pytest.param((1, BTC, b"b", 1.5, 5, 0), INVALID, id="business_id-float"),
        pytest.param((1, BTC, b"b", 1, 5, 0.0), INVALID, id="ts_ns-float"),
        pytest.param((1, BTC, "b", 1, 5, 0), INVALID, id="business-str"),
        pytest.param((1, BTC, None, 1, 5, 0), INVALID, id="business-none"),
        # docs/engine.md: "user 0..2^32-1 and asset known (INVALID_ARGUMENT /
        # UNKNOWN_ASSET)": an asset that is not an index is not a known asset.
        pytest.param((1, 0.0, b"b", 1, 5, 0), Result.UNKNOWN_ASSET, id="asset-float"),
        pytest.param((1, "BTC", b"b", 1, 5, 0), Result.UNKNOWN_ASSET, id="asset-str"),
    ],
)
def test_balance_update_refuses_what_is_not_an_integer(
    engine_cls: EngineClass, args: tuple[object, ...], expected: Result
) -> None:
    # balance.update takes Python values (not a record): a float amount must never be
    # truncated into units, nor a wrong type raise out of the engine.
    engine = held(engine_cls)
    before = engine.state_hash(), engine.counters()
    results, events = _update(engine, *args)
    assert Result(int(results["code"][0])) == expected
    assert len(events) == 0
    assert (engine.state_hash(), engine.counters()) == before


_CONVERSIONS = [
    *[(i, kind) for i in (0, 1, 3, 4, 5) for kind in (np.int64, np.int32, np.uint32)],
    (2, bytearray),
]


@pytest.mark.parametrize(
    ("position", "kind"),
    _CONVERSIONS,
    ids=[f"{_UPDATE_ARGS[i]}-{kind.__name__}" for i, kind in _CONVERSIONS],
)
def test_balance_update_takes_numpy_integers_and_bytearray(
    engine_cls: EngineClass, position: int, kind: type
) -> None:
    # Integers read from records (a log being replayed, a numpy batch) are numpy
    # integers, and a business may come as a bytearray: the same update as plain
    # Python values, with the same key.
    args: list[object] = [1, BTC, b"np", 77, 5, 123]
    args[position] = kind(args[position])  # type: ignore[operator]
    engine, twin = held(engine_cls), held(engine_cls)
    results, events = _update(engine, *args)
    want, want_events = _update(twin, 1, BTC, b"np", 77, 5, 123)
    assert Result(int(results["code"][0])) == OK
    assert results.tobytes() == want.tobytes()
    assert events.tobytes() == want_events.tobytes()
    assert engine.state_hash() == twin.state_hash()
    assert _update(engine, 1, BTC, b"np", 77, 5, 124)[0]["code"][0] == Result.REPEAT_UPDATE
