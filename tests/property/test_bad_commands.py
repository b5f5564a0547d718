"""Hostile input: every field of every command kind.

The engine holds resting orders in both markets, finished orders and funded users
(``steps.held()``). One field of a valid command is replaced by a hostile value
(out of range, int64/int32/int8 extremes, undefined enums, unknown market, bogus order
ids, bad ``source_len``, invalid UTF-8 or NUL in ``source``). A field the command uses
must give the precise code of docs/engine.md, "Commands" -- never OK, never
INTERNAL_ERROR, never an exception -- and change nothing: no seq, no events, the same
state hash and counters. A field the command does not use is ignored: the outcome is
exactly that of the clean command. A hypothesis test then spoils several fields at
once and checks the documented order of the checks. balance.update and the queries
are attacked in test_bad_balance_update.py and test_bad_queries.py.

Every test runs on both engines (``engine_cls``, tests/property/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.api import EngineAPI
from core.config import Market
from core.schema import (
    COMMAND_DTYPE,
    MAX_SUPPLY_UNITS,
    MAX_USER_ID,
    CommandKind,
    OrderFlag,
    Result,
    StpMode,
    TimeInForce,
)
from tests.support.engines import EngineClass
from tests.support.steps import HOLDING_FINISHED, HOLDING_RESTING, Command, held, resolve
from tests.support.world import (
    ASK,
    BAD_FLAGS,
    BAD_KINDS,
    BAD_MARKETS,
    BAD_SIDES,
    BAD_SOURCE_LENS,
    BAD_SOURCES,
    BAD_STPS,
    BAD_TIFS,
    BAD_USERS,
    BID,
    BTC_USDT,
    ETH_USDT,
    FEE_USER,
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    SHAPES,
    stream_config,
)

pytestmark = pytest.mark.kernel

OK = Result.OK
INVALID = Result.INVALID_ARGUMENT
UNKNOWN_MARKET = Result.UNKNOWN_MARKET
FEE = Result.FEE_ACCOUNT_CANNOT_TRADE
NOT_FOUND = Result.ORDER_NOT_FOUND
NOT_MINE = Result.USER_NOT_MATCH
BALANCE = Result.BALANCE_NOT_ENOUGH
SMALL = Result.AMOUNT_TOO_SMALL
#: The field is not one the command uses: the outcome is that of the clean command.
IGNORED = "ignored"
#: CANCEL_ALL with nothing to cancel: OK, but no seq and nothing changed.
NOTHING = "nothing"

TS_NS = 5_000_000_000
NEXT_ID = 1 + max(*HOLDING_RESTING, *HOLDING_FINISHED)


# --------------------------------------------------------------------------- orders


def own_order(market: int) -> int:
    """The id of user 1's resting ask in ``market``."""
    return next(i for i, o in HOLDING_RESTING.items() if o[0] == 1 and o[1] == market)


def others_order(market: int) -> int:
    """The id of user 2's resting bid in ``market``."""
    return next(i for i, o in HOLDING_RESTING.items() if o[0] == 2 and o[1] == market)


# --------------------------------------------------------------------------- clean commands


def _limit(m: Market) -> Command:
    # A post-only bid below the best ask, above the best bid: it would rest.
    return Command(
        int(CommandKind.PUT_LIMIT),
        user=3,
        market=m.index,
        side=BID,
        price=SHAPES[m.index].center - 3,
        amount=m.min_amount + 5,
        taker_rate=10,
        maker_rate=5,
        tif=int(TimeInForce.GTC),
        stp=int(StpMode.CANCEL_MAKER),
        flags=int(OrderFlag.POST_ONLY),
        source=b"bot",
    )


def _market_bid(m: Market) -> Command:
    # Spends enough money for twice the minimum amount at the best ask.
    best_ask = HOLDING_RESTING[own_order(m.index)][4]
    money = 2 * best_ask * m.min_amount * m.deal_scale
    return Command(int(CommandKind.PUT_MARKET), user=3, market=m.index, side=BID, amount=money,
                   taker_rate=10, source=b"bot")  # fmt: skip


def _market_ask(m: Market) -> Command:
    return Command(int(CommandKind.PUT_MARKET), user=3, market=m.index, side=ASK,
                   amount=m.min_amount + 2, taker_rate=10, source=b"bot")  # fmt: skip


def _cancel(m: Market) -> Command:
    return Command(int(CommandKind.CANCEL), user=1, market=m.index, order_id=own_order(m.index))


def _replace(m: Market) -> Command:
    return Command(
        int(CommandKind.REPLACE),
        user=1,
        market=m.index,
        order_id=own_order(m.index),
        price=SHAPES[m.index].center + 6,
        amount=15,
    )


def _cancel_all(m: Market) -> Command:
    return Command(int(CommandKind.CANCEL_ALL), user=1, market=m.index, side=0)


BASES: dict[str, Callable[[Market], Command]] = {
    "limit": _limit,
    "market_bid": _market_bid,
    "market_ask": _market_ask,
    "cancel": _cancel,
    "replace": _replace,
    "cancel_all": _cancel_all,
}
PUTS = ("limit", "market_bid", "market_ask")
#: A PUT's client order ids (its ``order_id``) that fail check 1.
BAD_CLIENT_IDS = (-1, INT64_MIN)
TRADING = (*PUTS, "replace")


def record(base: str, market: int, /, **fields: object) -> np.ndarray:
    """The clean command ``base`` in ``market`` as a record, with ``fields`` set raw
    (``source`` sets the bytes and, unless given, ``source_len`` to their length)."""
    m = stream_config().markets[market]
    cmd = BASES[base](m)
    if "source" in fields:
        src = fields.pop("source")
        assert isinstance(src, bytes)
        cmd = replace(cmd, source=src)
    rec = resolve([cmd], _NoEngine(), TS_NS)
    for name, value in fields.items():
        rec[name] = value
    return rec


class _NoEngine:
    """``resolve`` needs an engine only for ``Ref`` ids; the clean commands have none."""

    config = stream_config()


# --------------------------------------------------------------------------- the table


def _amounts(base: str, m: Market) -> list[tuple[int, object]]:
    top = MAX_SUPPLY_UNITS if base == "market_bid" else m.max_amount
    out: list[tuple[int, object]] = [(v, INVALID) for v in (0, -1, top + 1, INT64_MAX, INT64_MIN)]
    if base in PUTS:
        out += [(top, BALANCE), (1, SMALL)]
    if base == "replace":
        out += [(m.max_amount, BALANCE)]
    if base == "limit":
        out += [(m.min_amount - 1, SMALL)]
    return out


def _cases(base: str, m: Market) -> list[tuple[str, object, object]]:
    """(field, hostile value, expected code or IGNORED) for the clean ``base`` command."""
    uses = {
        "limit": {"side", "tif", "stp", "flags", "source", "price", "amount", "rates"},
        "market_bid": {"side", "stp", "source", "amount", "taker_rate"},
        "market_ask": {"side", "stp", "source", "amount", "taker_rate"},
        "cancel": {"order_id"},
        "replace": {"order_id", "price", "amount"},
        "cancel_all": {"side"},
    }[base]

    def checked(
        name: str, values: tuple[object, ...], code: object
    ) -> list[tuple[str, object, object]]:
        used = (
            name in uses
            or (name.endswith("_rate") and "rates" in uses)
            or (name == "source_len" and "source" in uses)
        )
        return [(name, v, code if used else IGNORED) for v in values]

    out = [("kind", v, INVALID) for v in BAD_KINDS]
    out += [("market", v, UNKNOWN_MARKET) for v in BAD_MARKETS]
    out += [("user", v, INVALID) for v in BAD_USERS]
    fee_code = {"cancel": NOT_MINE, "cancel_all": NOTHING}.get(base, FEE)
    unfunded = {"cancel": NOT_MINE, "replace": NOT_MINE, "cancel_all": NOTHING}.get(base, BALANCE)
    out += [("user", FEE_USER, fee_code), ("user", 99, unfunded), ("user", MAX_USER_ID, unfunded)]
    if base == "cancel_all":
        out += [("side", v, INVALID) for v in BAD_SIDES if v != 0]
    else:
        out += checked("side", BAD_SIDES, INVALID)
    out += checked("tif", BAD_TIFS, INVALID)
    out += checked("stp", BAD_STPS, INVALID)
    out += checked("flags", BAD_FLAGS, INVALID)
    out += checked("source_len", BAD_SOURCE_LENS, INVALID)
    out += checked("source", BAD_SOURCES, INVALID)
    if "source" in uses:  # bytes after source_len do not count
        out += [("source_tail", b"\xff\0\xc3", IGNORED)]
    out += checked("price", (0, -1, m.max_price + 1, INT64_MAX, INT64_MIN), INVALID)
    if base == "limit":  # a bid at the highest price costs more than anyone has
        out += [("price", m.max_price, BALANCE)]
    if "amount" in uses:
        out += [("amount", v, code) for v, code in _amounts(base, m)]
    else:
        out += checked("amount", (0, -1, INT64_MAX, INT64_MIN), INVALID)
    rates = (-1, m.fee_den, INT32_MAX, INT32_MIN)
    out += checked("taker_rate", rates, INVALID) + checked("maker_rate", rates, INVALID)
    if base in PUTS:  # a PUT's order_id is its client order id: 0 (none) or positive
        out += [("order_id", v, INVALID) for v in BAD_CLIENT_IDS]
    else:
        out += checked(
            "order_id", (0, -1, INT64_MAX, INT64_MIN, NEXT_ID, *HOLDING_FINISHED), NOT_FOUND
        )
    if "order_id" in uses:
        elsewhere = own_order(ETH_USDT if m.index == BTC_USDT else BTC_USDT)
        out += [("order_id", elsewhere, NOT_FOUND), ("order_id", others_order(m.index), NOT_MINE)]
    return out


def _params() -> list[object]:
    """One test per (clean command, market, field), over all its hostile values."""
    params = []
    for market in (BTC_USDT, ETH_USDT):
        m = stream_config().markets[market]
        for base in BASES:
            by_field: dict[str, list[tuple[object, object]]] = {}
            for name, value, expected in _cases(base, m):
                by_field.setdefault(name, []).append((value, expected))
            params += [
                pytest.param(base, market, name, cases, id=f"{base}-{m.name}-{name}")
                for name, cases in by_field.items()
            ]
    return params


# --------------------------------------------------------------------------- checks


def assert_refused(engine: EngineAPI, rec: np.ndarray, expected: Result) -> None:
    """``rec`` gives ``expected``, no seq, no id, no events, and changes nothing."""
    before = engine.state_hash(), engine.counters()
    results, events = engine.execute(rec)
    code = int(results["code"][0])
    assert code == expected, f"{Result(code).name}, expected {expected.name}"
    assert int(results["seq"][0]) == 0
    assert int(results["order_id"][0]) == 0
    assert int(results["value"][0]) == 0
    assert int(results["event_count"][0]) == 0
    assert len(events) == 0
    assert (engine.state_hash(), engine.counters()) == before
    assert engine.check_invariants() == []


def assert_as_clean(engine_cls: EngineClass, rec: np.ndarray, clean: np.ndarray) -> None:
    """``rec`` has exactly the outcome of ``clean`` (from the same state)."""
    engine, twin = held(engine_cls), held(engine_cls)
    results, events = engine.execute(rec)
    want_results, want_events = twin.execute(clean)
    assert Result(int(want_results["code"][0])) == OK, "the clean command must be accepted"
    assert results.tobytes() == want_results.tobytes()
    assert events.tobytes() == want_events.tobytes()
    assert engine.state_hash() == twin.state_hash()
    assert engine.check_invariants() == []


def check_hostile(
    engine_cls: EngineClass, base: str, market: int, field: str, value: object, expected: object
) -> None:
    """``base`` with ``field`` set to ``value`` has the ``expected`` outcome."""
    if field == "source":
        rec = record(base, market, source=value)
    elif field == "source_tail":
        rec = record(base, market)
        assert isinstance(value, bytes)
        n = int(rec["source_len"][0])
        rec["source"][0, n : n + len(value)] = np.frombuffer(value, dtype=np.uint8)
    else:
        rec = record(base, market, **{field: value})
    if expected == IGNORED:
        assert_as_clean(engine_cls, rec, record(base, market))
    elif expected == NOTHING:
        engine = held(engine_cls)
        before = engine.state_hash(), engine.counters()
        results, events = engine.execute(rec)
        assert results[["code", "seq", "value", "event_count"]].tolist() == [(0, 0, 0, 0)]
        assert len(events) == 0
        assert (engine.state_hash(), engine.counters()) == before
    else:
        assert isinstance(expected, Result)
        assert_refused(held(engine_cls), rec, expected)


@pytest.mark.parametrize(("base", "market", "field", "cases"), _params())
def test_hostile_field(
    engine_cls: EngineClass,
    base: str,
    market: int,
    field: str,
    cases: list[tuple[object, object]],
) -> None:
    # Every value is tried; the failure lists each one that went wrong, including an
    # engine that raised instead of answering.
    failures = []
    for value, expected in cases:
        try:
            check_hostile(engine_cls, base, market, field, value, expected)
        except Exception as exc:
            failures.append(f"{field}={value!r} (expected {expected}): {type(exc).__name__}: {exc}")
    assert not failures, f"{len(failures)} of {len(cases)} values:\n" + "\n".join(failures)


@pytest.mark.parametrize("base", list(BASES))
def test_clean_commands_are_accepted(engine_cls: EngineClass, base: str) -> None:
    # The table above only means something if each clean command is accepted.
    for market in (BTC_USDT, ETH_USDT):
        engine = held(engine_cls)
        results, _ = engine.execute(record(base, market))
        assert Result(int(results["code"][0])) == OK
        assert int(results["seq"][0]) > 0
        assert engine.check_invariants() == []


@pytest.mark.parametrize("ts_ns", [INT64_MIN, -1, 0, INT64_MAX])
@pytest.mark.parametrize("base", list(BASES))
def test_any_time_is_taken_as_given(engine_cls: EngineClass, base: str, ts_ns: int) -> None:
    # Core has no clock: a command's time is data, carried into its events.
    engine = held(engine_cls)
    results, events = engine.execute(record(base, BTC_USDT, ts_ns=ts_ns))
    assert Result(int(results["code"][0])) == OK
    assert (events["ts_ns"] == ts_ns).all()
    assert engine.check_invariants() == []


# --------------------------------------------------------------------------- precedence

#: Per clean command, its checks in the documented order: (code, spoiled fields that
#: fail it). "fee_user" is the field ``user`` set to the fee account.
STAGES: dict[str, list[tuple[Result, set[str]]]] = {
    "limit": [
        (INVALID, {"kind"}),
        (UNKNOWN_MARKET, {"market"}),
        (INVALID, {"user", "side", "tif", "stp", "flags", "source_len", "source", "order_id"}),
        (FEE, {"fee_user"}),
        (INVALID, {"amount", "price", "taker_rate", "maker_rate"}),
    ],
    "market_bid": [
        (INVALID, {"kind"}),
        (UNKNOWN_MARKET, {"market"}),
        (INVALID, {"user", "side", "stp", "source_len", "source", "order_id"}),
        (FEE, {"fee_user"}),
        (INVALID, {"amount", "taker_rate"}),
    ],
    "cancel": [
        (INVALID, {"kind"}),
        (UNKNOWN_MARKET, {"market"}),
        (INVALID, {"user"}),
        (NOT_FOUND, {"order_id"}),
        (NOT_MINE, {"fee_user"}),
    ],
    "replace": [
        (INVALID, {"kind"}),
        (UNKNOWN_MARKET, {"market"}),
        (INVALID, {"user"}),
        (FEE, {"fee_user"}),
        (INVALID, {"price", "amount"}),
        (NOT_FOUND, {"order_id"}),
    ],
    "cancel_all": [
        (INVALID, {"kind"}),
        (UNKNOWN_MARKET, {"market"}),
        (INVALID, {"user", "side"}),
    ],
}
STAGES["market_ask"] = STAGES["market_bid"]

#: Values a field can hold (its dtype's range), for fields a command ignores.
_RANGES = {
    name: (int(np.iinfo(COMMAND_DTYPE[name]).min), int(np.iinfo(COMMAND_DTYPE[name]).max))
    for name in COMMAND_DTYPE.names or ()
    if name != "source"
}


def _spoilers(base: str, m: Market) -> dict[str, tuple[object, ...]]:
    """Field -> values that fail one of ``base``'s checks without depending on state."""
    out: dict[str, tuple[object, ...]] = {
        "kind": BAD_KINDS,
        "market": BAD_MARKETS,
        "user": BAD_USERS,
        "price": (0, -1, m.max_price + 1, INT64_MAX, INT64_MIN),
        "amount": tuple(v for v, code in _amounts(base, m) if code == INVALID),
        "taker_rate": (-1, m.fee_den, INT32_MAX, INT32_MIN),
        "maker_rate": (-1, m.fee_den, INT32_MAX, INT32_MIN),
        "side": BAD_SIDES if base != "cancel_all" else (3, -1, 127, -128),
        "tif": BAD_TIFS,
        "stp": BAD_STPS,
        "flags": BAD_FLAGS,
        "source_len": BAD_SOURCE_LENS,
        "source": BAD_SOURCES,
        "order_id": (0, -1, INT64_MAX, INT64_MIN, NEXT_ID, *HOLDING_FINISHED),
    }
    if base in PUTS:
        out["order_id"] = BAD_CLIENT_IDS
    if base != "cancel_all":
        out["fee_user"] = (FEE_USER,)
    return out


@st.composite
def spoiled(draw: st.DrawFn) -> tuple[str, np.ndarray, Result]:
    """A clean command with one or more fields spoiled, some ignored fields set at
    random, and the code its first failing check gives."""
    base = draw(st.sampled_from(list(BASES)))
    market = draw(st.sampled_from((BTC_USDT, ETH_USDT)))
    m = stream_config().markets[market]
    stages = STAGES[base]
    checked = set().union(*(fields for _, fields in stages))
    spoilers = {k: v for k, v in _spoilers(base, m).items() if k in checked}
    names = draw(st.sets(st.sampled_from(sorted(spoilers)), min_size=1, max_size=4))
    if "fee_user" in names and "user" in names:
        names.discard("fee_user")
    fields: dict[str, object] = {}
    for name in sorted(names):
        value = draw(st.sampled_from(spoilers[name]))
        fields["user" if name == "fee_user" else name] = value
    ignored = sorted(set(_RANGES) - checked - {"ts_ns", "fee_user"} - {"user", "market", "kind"})
    for name in draw(st.sets(st.sampled_from(ignored), max_size=3)) if ignored else ():
        low, high = _RANGES[name]
        fields.setdefault(name, draw(st.integers(low, high)))
    source = fields.pop("source", None)
    rec = record(base, market, **({"source": source} if source is not None else {}))
    for name, value in fields.items():
        rec[name] = value
    expected = next(code for code, failing in stages if failing & names)
    return base, rec, expected


@given(case=spoiled())
def test_first_failing_check_decides(
    engine_cls: EngineClass, case: tuple[str, np.ndarray, Result]
) -> None:
    _, rec, expected = case
    assert_refused(held(engine_cls), rec, expected)


# --------------------------------------------------------------------------- batches


def test_hostile_commands_do_not_disturb_their_batch(engine_cls: EngineClass) -> None:
    # Arrange: every spoiled command of the table between two clean ones.
    engine, twin = held(engine_cls), held(engine_cls)
    m = stream_config().markets[BTC_USDT]
    bad = [record("limit", BTC_USDT, **{name: value})
           for name, value, code in _cases("limit", m)
           if code == INVALID and name not in ("source", "source_tail")]  # fmt: skip
    clean_a = record("limit", BTC_USDT)
    clean_b = record("market_bid", BTC_USDT)
    # Act
    results, events = engine.execute(np.concatenate([clean_a, *bad, clean_b]))
    want, want_events = twin.execute(np.concatenate([clean_a, clean_b]))
    # Assert: the clean ones did what they do alone; the others are refused.
    assert (results["code"][1:-1] == INVALID).all()
    assert (results["seq"][1:-1] == 0).all()
    assert (
        results[[0, -1]][["seq", "order_id", "code", "event_count"]].tolist()
        == want[["seq", "order_id", "code", "event_count"]].tolist()
    )
    assert events.tobytes() == want_events.tobytes()
    assert engine.state_hash() == twin.state_hash()


def test_empty_and_strided_batches(engine_cls: EngineClass) -> None:
    engine, twin = held(engine_cls), held(engine_cls)
    results, events = engine.execute(np.zeros(0, dtype=COMMAND_DTYPE))
    assert len(results) == 0
    assert len(events) == 0
    mixed = np.concatenate(
        [
            record("limit", BTC_USDT),
            record("limit", BTC_USDT, kind=0),
            record("market_bid", BTC_USDT),
            record("cancel_all", ETH_USDT),
            record("cancel", BTC_USDT),
            record("replace", ETH_USDT),
        ]
    )
    strided = mixed[::2]  # a view with a stride of two records
    assert not strided.flags.c_contiguous
    r1, e1 = engine.execute(strided)
    r2, e2 = twin.execute(strided.copy())
    assert r1.tobytes() == r2.tobytes()
    assert e1.tobytes() == e2.tobytes()
    assert engine.state_hash() == twin.state_hash()
