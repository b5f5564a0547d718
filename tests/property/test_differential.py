"""Differential tests: the numba ``Engine`` against the ``ReferenceEngine`` oracle.

Random command streams (tests/support/streams.py: many users and the fee account, two
markets sharing USDT, every command kind, every TIF, STP mode and the post-only flag,
balance.update with repeated keys, hostile values mixed in; small numbers and numbers
near the int64 limits) run through both engines built from the same config. After every
step (``Harness``):

* results and events are identical record for record, and so is every query answer;
* the state hashes are equal and ``check_invariants()`` is empty in both;
* a twin ``Engine`` given the same commands one per ``execute`` gives the same results
  and events as the batch, and for every command: a rejected one has no seq, and one
  without a seq has no events and leaves the state hash and counters unchanged;
* every asset adds up to the successful balance.update changes (all accounts, and the
  accounts the stream uses one by one), and balance.update gives the code a small
  model of its checks predicts (repeated keys, supply limit, table capacities).

A failure shows the first differing record field by field (or the differing canonical
state sections) and the last commands run, as records. Discrepancies found are kept
as ``@example`` cases and regression tests; two planted bugs show that the harness
catches what it should (TESTING.md, negative controls).
"""

from __future__ import annotations

import os
import re
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.engine import Engine
from core.reference import ReferenceEngine
from core.reference_quote import quote_group
from core.schema import (
    EVENT_DTYPE,
    INT64_MAX,
    MAX_SUPPLY_UNITS,
    MAX_USER_ID,
    Business,
    CommandKind,
    EventKind,
    FinishReason,
    QuoteAction,
    Result,
)
from tests.support.steps import (
    Batch,
    Command,
    Step,
    Update,
    cancel,
    funding,
    limit,
    record_call,
    replace_order,
    resolve,
    run,
)
from tests.support.streams import Mix, random_stream, streams
from tests.support.world import (
    ASK,
    BID,
    BIG,
    BTC,
    BTC_USDT,
    RISKY,
    SMALL,
    TIGHT,
    USDT,
    Limits,
    stream_config,
)

pytestmark = pytest.mark.kernel

DEFAULT_CAPACITY = 1 << 16
#: The users streams use (tests/support/world.py), and the fee account.
USERS_SEEN = (0, 1, 2, 3, 4, 5)
#: Steps per example: the profile's stateful_step_count (tests/property/conftest.py).
MAX_STEPS = settings().stateful_step_count


# --------------------------------------------------------------------------- diffs


def _enum_name(name: str, rec: np.void, value: int) -> str:
    enum: type | None = None
    if name == "code":
        enum = Result
    elif name == "kind" and rec.dtype == EVENT_DTYPE:
        enum = EventKind
    elif name == "reason" and rec.dtype == EVENT_DTYPE:
        enum = Business if int(rec["kind"]) == EventKind.BALANCE else FinishReason
    if enum is None:
        return str(value)
    try:
        return f"{value} ({enum(value).name})"
    except ValueError:
        return str(value)


def _value(name: str, rec: np.void) -> str:
    value = rec[name]
    if isinstance(value, np.ndarray):
        return repr(bytes(value).rstrip(b"\0"))
    return _enum_name(name, rec, int(value))


def record_text(rec: np.void) -> str:
    """The non-zero fields of a record, enums by name."""
    names = rec.dtype.names or ()
    return ", ".join(f"{n}={_value(n, rec)}" for n in names if np.any(rec[n] != 0))


def first_difference(
    what: str, a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("Engine", "ReferenceEngine")
) -> str | None:
    """None if the record arrays are identical, else where they first differ: the
    record, field by field, then both records whole (``names`` label ``a`` and ``b``)."""
    if a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes():
        return None
    lines = [f"{what}: {names[0]} has {len(a)} records, {names[1]} {len(b)}"]
    for i in range(min(len(a), len(b))):
        if a[i].tobytes() == b[i].tobytes():
            continue
        fields = [n for n in a.dtype.names or () if not np.array_equal(a[i][n], b[i][n])]
        lines.append(f"first difference at {what}[{i}], fields {fields}:")
        lines += [
            f"  {n}: {names[0]} {_value(n, a[i])} != {names[1]} {_value(n, b[i])}" for n in fields
        ]
        lines.append(f"  {names[0]}: {record_text(a[i])}")
        lines.append(f"  {names[1]}: {record_text(b[i])}")
        return "\n".join(lines)
    longer, name = (a, names[0]) if len(a) > len(b) else (b, names[1])
    extra = longer[min(len(a), len(b))]
    lines.append(f"the common records agree; the first extra one, in {name}: {record_text(extra)}")
    return "\n".join(lines)


def _canonical_sections(engine: object) -> tuple[np.ndarray, ...] | None:
    """The sections of core/statehash.py, from ``canonical_state()`` (both engines
    have it); None for an object without it."""
    if hasattr(engine, "canonical_state"):
        return tuple(engine.canonical_state())
    return None


def _canonical_diff(fast: object, ref: object) -> list[str]:
    """Which canonical state sections differ (only for a failure message)."""
    a, b = _canonical_sections(fast), _canonical_sections(ref)
    if a is None or b is None:
        return ["(canonical state not available)"]
    names = (
        "counters",
        "supply",
        "balances",
        "update keys",
        "resting orders",
        "client ids",
        "market status",
        "user status",
        "last prices",
        "market limits",
        "user limits",
        "catalog assets",
        "catalog markets",
    )
    out = []
    for name, x, y in zip(names, a, b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape or x.tobytes() != y.tobytes():
            out.append(f"canonical section {name!r} differs: {x.shape} vs {y.shape} entries")
    return out or ["(every canonical section agrees: the hash itself differs)"]


# --------------------------------------------------------------------------- harness


class Harness:
    """Both engines and a one-command-at-a-time twin, checked after every step."""

    def __init__(self, limits: Limits = Limits(), event_capacity: int = DEFAULT_CAPACITY) -> None:  # noqa: B008
        self.config = stream_config(limits)
        self.fast = Engine(self.config, event_capacity=event_capacity)
        self.ref = ReferenceEngine(self.config)
        self.solo = Engine(self.config)
        #: The twin's state hash, kept current (each is computed once).
        self.solo_hash = self.solo.state_hash()
        self.ts_ns = 1_000_000
        self.supply = [0] * len(self.config.assets)
        self.keys: set[tuple[int, int, bytes, int]] = set()
        self.accounts = {self.config.fee_user}
        #: (user, client order id) -> the order placed with it (this harness's model).
        self.client_ids: dict[tuple[int, int], int] = {}
        self.label = ""
        #: The last commands run, for failure messages (a long run keeps only these).
        self.history: deque[str] = deque(maxlen=30)
        self.commands = 0
        self.rejected = 0
        self.accepted = 0
        #: How often each result code came (of order commands).
        self.codes: Counter[int] = Counter()
        #: How often a quote level came to each QuoteAction.
        self.quote_actions: Counter[int] = Counter()

    # ---------------------------------------------------------------- running

    def run(self, steps: list[Step]) -> None:
        for step in steps:
            self.step(step)

    def step(self, step: Step) -> None:
        if isinstance(step, Update):
            self.update(step)
        else:
            self.batch(step)
        self.check()

    def batch(self, step: Batch) -> None:
        records = resolve(step.commands, self.fast, self.ts_ns)
        self.ts_ns += 1000 * (len(records) + 1)
        self.history.extend(f"execute {record_call(r)}" for r in records)
        self.commands += len(records)
        results, events = self.fast.execute(records.copy())
        ref_results, ref_events = self.ref.execute(records.copy())
        self.same("results", results, ref_results)
        self.same("events", events, ref_events)
        i = 0
        while i < len(records):  # a QUOTE and its levels are one command
            group = quote_group(records, i) if records[i]["kind"] == CommandKind.QUOTE else None
            n = 1 + len(group or ())
            self.one_by_one(records[i : i + n], results[i : i + n], events)
            i += n
        self.accepted += int(np.count_nonzero(results["seq"]))
        self.rejected += int(np.count_nonzero(results["code"]))
        self.codes.update(results["code"].tolist())

    def one_by_one(self, record: np.ndarray, expected: np.ndarray, events: np.ndarray) -> None:
        """The batch's results and events for ``record`` (one command: a record, or a
        QUOTE and its levels), alone; and a command without a seq changed nothing."""
        counters_before = self.solo.counters()
        results, mine = self.solo.execute(record)
        start, count = int(expected[0]["event_start"]), int(expected[0]["event_count"])
        want = expected.copy()
        want["event_start"] -= start  # a level's: where its quote's events end
        for got, wanted in zip(results, want, strict=True):
            assert got.tobytes() == wanted.tobytes(), self.explain(
                f"alone {record_text(got)}, in the batch {record_text(wanted)}"
            )
        self.same("events", mine, events[start : start + count], ("alone", "in the batch"))
        self.check_outcome(results[0], mine, record, counters_before)
        for level in results[1:]:
            assert level["seq"] == 0, self.explain("a quote level with a seq")
            assert level["event_count"] == 0, self.explain("a quote level with events")
            ok = level["code"] == Result.OK
            assert ok == (level["order_id"] > 0), self.explain("a quote level's order id")
            if ok:
                self.quote_actions[int(level["value"])] += 1

    def check_outcome(
        self,
        result: np.void,
        events: np.ndarray,
        record: np.ndarray | None,
        counters_before: tuple[int, int, int],
    ) -> None:
        """What any command's outcome must be (the twin engine's, command by command):
        a rejected command has no seq; without a seq, nothing changed."""
        hash_before, engine = self.solo_hash, self.solo
        self.solo_hash = engine.state_hash()
        seq, code = int(result["seq"]), int(result["code"])
        if record is not None:
            self.check_client_id(result, record)
            if int(record["kind"][0]) == CommandKind.USER_STATUS and seq:
                self.accounts.add(int(record["user"][0]))  # blocking makes the account
        if code != Result.OK:
            assert seq == 0, self.explain(f"rejected ({Result(code).name}) but got seq {seq}")
            assert int(result["order_id"]) == 0 or code == Result.REPEAT_ORDER, self.explain(
                "a rejected command has an id"
            )
        assert code not in (Result.INTERNAL_ERROR,), self.explain("INTERNAL_ERROR")
        if seq == 0:
            assert len(events) == 0, self.explain("events without a seq")
            assert engine.counters() == counters_before, self.explain("counters moved")
            assert self.solo_hash == hash_before, self.explain(
                f"state changed by a command without a seq ({Result(code).name})"
            )
        else:
            assert seq == counters_before[0] + 1, self.explain("seq is not the next one")
            assert len(events) > 0, self.explain("an accepted command without events")
            assert (events["seq"] == seq).all(), self.explain("an event with another seq")
            if record is not None:
                assert (events["ts_ns"] == record["ts_ns"][0]).all(), self.explain("event ts")

    def check_client_id(self, result: np.void, record: np.ndarray) -> None:
        """A PUT's client order id against this harness's model: a repeat names the
        order placed with it (unless the command's form or market fails first), and a
        new one is recorded when the order is placed."""
        if int(record["kind"][0]) not in (CommandKind.PUT_LIMIT, CommandKind.PUT_MARKET):
            return
        key = (int(record["user"][0]), int(record["order_id"][0]))
        code, oid = int(result["code"]), int(result["order_id"])
        if key[1] <= 0:
            assert code != Result.REPEAT_ORDER, self.explain("REPEAT_ORDER without a client id")
            return
        placed = self.client_ids.get(key)
        early = (Result.INVALID_ARGUMENT, Result.UNKNOWN_MARKET, Result.FEE_ACCOUNT_CANNOT_TRADE)
        if placed is not None and code not in early:
            assert (code, oid) == (Result.REPEAT_ORDER, placed), self.explain(
                f"client id {key[1]} of user {key[0]} names order {placed}: "
                f"{Result(code).name} {oid}"
            )
        if code == Result.OK:
            assert placed is None, self.explain("an order placed with a used client id")
            self.client_ids[key] = oid

    def update(self, step: Update) -> None:
        ts_ns = self.ts_ns
        self.ts_ns += 1000
        self.history.append(f"balance_update {step}")
        self.commands += 1
        expected = self.expected_update(step)
        args = (step.user, step.asset, step.business, step.business_id, step.change, ts_ns)
        counters_before = self.solo.counters()
        results, events = self.fast.balance_update(*args)
        ref_results, ref_events = self.ref.balance_update(*args)
        solo_results, solo_events = self.solo.balance_update(*args)
        self.same("results", results, ref_results)
        self.same("events", events, ref_events)
        self.same("results", solo_results, results, ("twin Engine", "Engine"))
        self.same("events", solo_events, events, ("twin Engine", "Engine"))
        code = Result(int(results["code"][0]))
        assert code == expected, self.explain(
            f"balance.update gave {code.name}, not {expected.name}"
        )
        self.check_outcome(solo_results[0], solo_events, None, counters_before)
        if code == Result.OK:
            self.supply[step.asset] += step.change
            self.keys.add((step.user, step.asset, step.business[:32], step.business_id))
            self.accounts.add(step.user)
            self.accepted += 1
        else:
            self.rejected += 1

    def expected_update(self, u: Update) -> Result:
        """The code docs/engine.md prescribes for ``u``, from this harness's own model
        (supply, keys and accounts), checks in the documented order."""
        if not 0 <= u.user <= MAX_USER_ID:
            return Result.INVALID_ARGUMENT
        if not 0 <= u.asset < len(self.config.assets):
            return Result.UNKNOWN_ASSET
        if not (-INT64_MAX <= u.change <= INT64_MAX and -INT64_MAX <= u.business_id <= INT64_MAX):
            return Result.INVALID_ARGUMENT
        if (u.user, u.asset, u.business[:32], u.business_id) in self.keys:
            return Result.REPEAT_UPDATE
        if self.ref.balance(u.user, u.asset)[0] + u.change < 0:
            return Result.BALANCE_NOT_ENOUGH
        if self.supply[u.asset] + u.change > MAX_SUPPLY_UNITS:
            return Result.SUPPLY_LIMIT
        if u.user not in self.accounts and len(self.accounts) >= self.config.max_users:
            return Result.USER_TABLE_FULL
        if len(self.keys) >= self.config.max_update_keys:
            return Result.KEY_TABLE_FULL
        return Result.OK

    # ---------------------------------------------------------------- checks

    def check(self) -> None:
        """Same state everywhere, sound, and every asset adds up to its deposits."""
        fast_hash = self.fast.state_hash()
        if fast_hash != self.ref.state_hash():
            raise AssertionError(self.explain("state hashes differ\n" + self.state_diff()))
        assert self.solo_hash == fast_hash, self.explain("batch and one by one differ")
        self.check_queries()
        for name, engine in (("Engine", self.fast), ("ReferenceEngine", self.ref)):
            problems = engine.check_invariants()
            assert problems == [], self.explain(f"{name} invariants: {problems}")
            for asset in self.config.assets:
                summary = engine.asset_summary(asset.index)
                assert summary.total == self.supply[asset.index], self.explain(
                    f"{name}: {asset.name} adds up to {summary.total}, deposits "
                    f"{self.supply[asset.index]}"
                )
                assert summary.available + summary.frozen == summary.total
                held = [engine.balance(user, asset.index) for user in USERS_SEEN]
                assert sum(a + f for a, f in held) == summary.total, self.explain(
                    f"{name}: {asset.name} per account {held} does not add up to {summary}"
                )

    def check_queries(self) -> None:
        """Every query answers the same in both engines (the state hash does not cover
        what is derived from the state, such as a user's orders newest first)."""
        for question, a, b in self.queries():
            assert a == b, self.explain(f"{question}:\n  Engine {a}\n  ReferenceEngine {b}")

    def queries(self) -> Iterator[tuple[str, object, object]]:
        """(question, Engine's answer, the reference's) for in-range arguments (hostile
        ones are test_bad_queries.py's). Pages other than the first are asked of one user
        and one side per step, in turn, to keep the cost down."""
        fast, ref = self.fast, self.ref
        turn = self.commands
        yield "counters()", fast.counters(), ref.counters()
        for a in range(len(self.config.assets)):
            yield f"asset_summary({a})", fast.asset_summary(a), ref.asset_summary(a)
            for user in USERS_SEEN:
                yield f"balance({user}, {a})", fast.balance(user, a), ref.balance(user, a)
        last_id = fast.counters()[1]
        for m in range(len(self.config.markets)):
            yield f"market_summary({m})", fast.market_summary(m), ref.market_summary(m)
            depth = ((m, 100, 0), (m, 2, 0), (m, 100, 3), (m, 3, 1000))[turn % 4]
            yield f"depth{depth}", fast.depth(*depth), ref.depth(*depth)
            side = (ASK, BID)[turn % 2]
            for page in ((m, side, 0, 1000), (m, 3 - side, 1 + turn % 3, 2)):
                yield f"book{page}", fast.book(*page), ref.book(*page)
            for user in USERS_SEEN[1:]:
                page = (user, m, 0, 1000)
                yield f"pending{page}", fast.pending(*page), ref.pending(*page)
            page = (USERS_SEEN[1 + turn % 5], m, 1 + turn % 2, 2)
            yield f"pending{page}", fast.pending(*page), ref.pending(*page)
            for order_id in (last_id - 2, last_id - 1, last_id, last_id + 1):
                yield f"order({m}, {order_id})", fast.order(m, order_id), ref.order(m, order_id)

    def same(
        self,
        what: str,
        a: np.ndarray,
        b: np.ndarray,
        names: tuple[str, str] = ("Engine", "ReferenceEngine"),
    ) -> None:
        problem = first_difference(what, a, b, names)
        if problem is not None:
            raise AssertionError(self.explain(problem))

    def state_diff(self) -> str:
        """Where the two engines' states differ, through the query API."""
        out = []
        if self.fast.counters() != self.ref.counters():
            out.append(f"counters: Engine {self.fast.counters()} != {self.ref.counters()}")
        for user in (0, 1, 2, 3, 4, 5):
            for asset in self.config.assets:
                a, b = self.fast.balance(user, asset.index), self.ref.balance(user, asset.index)
                if a != b:
                    out.append(f"balance({user}, {asset.name}): Engine {a} != {b}")
        for asset in self.config.assets:
            a, b = self.fast.asset_summary(asset.index), self.ref.asset_summary(asset.index)
            if a != b:
                out.append(f"asset_summary({asset.name}): Engine {a} != {b}")
        for m in self.config.markets:
            for side in (ASK, BID):
                a = self.fast.book(m.index, side, 0, 1000)
                b = self.ref.book(m.index, side, 0, 1000)
                if a != b:
                    out.append(f"book({m.name}, side {side}):\n  Engine {a}\n  Reference {b}")
        out += _canonical_diff(self.fast, self.ref)
        return "\n".join(out)

    def explain(self, problem: str) -> str:
        label = f" ({self.label})" if self.label else ""
        return (
            f"{problem}\ncommands so far{label}: {self.commands}, the last "
            f"{len(self.history)}:\n  " + "\n  ".join(self.history)
        )


# --------------------------------------------------------------------------- streams

SETUPS = st.sampled_from(
    [
        (Limits(), DEFAULT_CAPACITY),
        (TIGHT, DEFAULT_CAPACITY),  # BOOK_FULL, USER_TABLE_FULL, KEY_TABLE_FULL happen
        (Limits(), 1),  # the event buffer grows and batches are cut into chunks
        (TIGHT, 7),
        (RISKY, DEFAULT_CAPACITY),  # the markets' risk limits refuse about half
    ]
)


STREAMS = st.one_of(
    streams(stream_config(), MAX_STEPS),
    streams(stream_config(), MAX_STEPS, Mix(world=BIG)),  # int64 products, fees, caps
    streams(stream_config(), MAX_STEPS, Mix(admin=8)),  # halts, delistings, kill switches
    streams(stream_config(), MAX_STEPS, Mix(quote=15)),  # mass quotes among the orders
)


@given(setup=SETUPS, steps=STREAMS)
@example(
    # Found: Engine answered BALANCE_NOT_ENOUGH (available + change wrapped around
    # int64; fixed in c74ae15); docs/engine.md, balance.update: SUPPLY_LIMIT.
    setup=(Limits(), DEFAULT_CAPACITY),
    steps=[Update(1, BTC, 1, b"deposit", 1), Update(1, BTC, INT64_MAX, b"deposit", 2)],
)
@example(
    # Engine: order id INT64_MAX overflows the id index's key + 1 (a RuntimeWarning, so an
    # error, under NUMBA_DISABLE_JIT; undefined behaviour compiled); docs/engine.md,
    # CANCEL and REPLACE: ORDER_NOT_FOUND.
    setup=(Limits(), DEFAULT_CAPACITY),
    steps=[
        *funding(),
        run(limit(1, BTC_USDT, ASK, 20, 1005)),
        run(cancel(1, BTC_USDT, INT64_MAX), replace_order(1, BTC_USDT, INT64_MAX, 1000, 5)),
    ],
)
@example(
    # Found: blocking a user without an account makes one (docs/engine.md, "Market and
    # user status"); the harness's model of the account table did not know it.
    setup=(TIGHT, DEFAULT_CAPACITY),
    steps=[
        run(Command(int(CommandKind.USER_STATUS), 5, 0, amount=1)),
        Update(2, BTC, 100_000, b"deposit", 1),
        Update(4, BTC, 100_000, b"deposit", 1),
        Update(1, BTC, 100_000, b"deposit", 1),
    ],
)
def test_engines_agree_on_random_streams(setup: tuple[Limits, int], steps: list[Step]) -> None:
    limits, capacity = setup
    Harness(limits, capacity).run(steps)


def _commit() -> str:
    """The checked-out commit, read from .git (no subprocess), or "unknown"."""
    git = Path(__file__).resolve().parents[2] / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            return (git / head[5:]).read_text().strip()[:12]
        return head[:12]
    except OSError:
        return "unknown"


LONG_RUN_SEED = int(os.environ.get("MATCHD_SEED", "20251123"))
LONG_RUN_COMMANDS = int(os.environ.get("MATCHD_DIFF_COMMANDS", "5000"))


@pytest.mark.parametrize(
    ("limits", "mix", "share"),
    [
        (Limits(), Mix(world=SMALL), 1.0),
        (TIGHT, Mix(world=BIG), 0.3),
        (RISKY, Mix(world=SMALL), 0.3),
        (Limits(), Mix(world=SMALL, admin=3), 0.3),
        (Limits(), Mix(world=SMALL, quote=20), 0.4),
        (RISKY, Mix(world=SMALL, user_limit=5), 0.4),
        (TIGHT, Mix(world=BIG, user_limit=5), 0.2),
    ],
    ids=[
        "roomy-small",
        "tight-big",
        "risky-small",
        "admin-small",
        "quote-small",
        "user-limits-risky",
        "user-limits-tight",
    ],
)
def test_fixed_seed_long_run(
    limits: Limits, mix: Mix, share: float, capsys: pytest.CaptureFixture[str]
) -> None:
    # TESTING.md: every run prints its seed and commit. MATCHD_SEED and
    # MATCHD_DIFF_COMMANDS (nightly: 1,000,000) change the run.
    n = max(1, int(LONG_RUN_COMMANDS * share))
    label = f"seed {LONG_RUN_SEED}, commit {_commit()}, {n} commands"
    with capsys.disabled():
        print(f"\n[differential long run: {label}, {limits}]")
    rng = np.random.default_rng(LONG_RUN_SEED)
    harness = Harness(limits, event_capacity=64)
    harness.label = label
    harness.run(random_stream(rng, harness.config, n, mix))
    assert harness.accepted > n // 10
    assert harness.rejected > 0
    if limits == TIGHT:  # 24 client ids fill the table
        assert harness.codes[Result.CLIENT_ID_TABLE_FULL] > 0
    else:
        assert harness.codes[Result.REPEAT_ORDER] > 0
    if limits == RISKY:
        risk = (
            Result.PRICE_NOT_ON_STEP,
            Result.AMOUNT_NOT_ON_STEP,
            Result.NOTIONAL_TOO_SMALL,
            Result.NOTIONAL_TOO_LARGE,
            Result.TOO_MANY_OPEN_ORDERS,
            Result.PRICE_OUTSIDE_BAND,
        )
        assert all(harness.codes[code] > 0 for code in risk), harness.codes
    if mix.admin:
        status = (Result.MARKET_HALTED, Result.MARKET_DELISTED, Result.USER_BLOCKED)
        assert all(harness.codes[code] > 0 for code in status), harness.codes
    if mix.user_limit:  # the users' own limits bite, and a full table refuses more
        code = Result.USER_LIMIT_TABLE_FULL if limits == TIGHT else Result.AMOUNT_TOO_LARGE
        user = (Result.USER_AMOUNT_TOO_LARGE, Result.USER_NOTIONAL_TOO_LARGE, code)
        assert all(harness.codes[code] > 0 for code in user), harness.codes
    if mix.quote:  # every action, and the quote's own refusals
        assert all(harness.quote_actions[a] > 0 for a in QuoteAction), harness.quote_actions
        assert harness.codes[Result.POST_ONLY_WOULD_TAKE] > 0, harness.codes


# --------------------------------------------------------------------------- properties


@given(
    steps=streams(stream_config(), MAX_STEPS // 2),
    business_id=st.integers(-INT64_MAX, INT64_MAX),
    change=st.sampled_from((0, 1, -1, INT64_MAX, -INT64_MAX)),
)
def test_a_used_update_key_never_changes_anything(
    steps: list[Step], business_id: int, change: int
) -> None:
    # Arrange: a stream, then one more deposit whose key is remembered.
    harness = Harness()
    harness.run(steps)
    harness.step(Update(2, USDT, 1000, b"again", business_id))
    # Act: every key used so far, again, with another change.
    for user, asset, business, key_id in sorted(harness.keys):
        step = Update(user, asset, change, business, key_id)
        assert harness.expected_update(step) == Result.REPEAT_UPDATE
        harness.update(step)  # Assert: all three engines refuse it and change nothing
    harness.check()


# --------------------------------------------------------------------------- regressions


def test_update_beyond_the_supply_limit_is_supply_limit_not_balance() -> None:
    # docs/engine.md, balance.update: "available + change < 0: BALANCE_NOT_ENOUGH;
    # supply + change > 2^62: SUPPLY_LIMIT". With 1 unit available, a change of
    # INT64_MAX is no withdrawal; Engine computed available + change in int64, which
    # wrapped negative, and answered BALANCE_NOT_ENOUGH (fixed in c74ae15).
    harness = Harness()
    harness.step(Update(1, BTC, 1, b"deposit", 1))
    harness.step(Update(1, BTC, INT64_MAX, b"deposit", 2))


# --------------------------------------------------------------------------- negative controls


class _OffByOneFee(ReferenceEngine):
    """A reference that reports every DEAL's taker fee one unit high."""

    def execute(self, commands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        results, events = super().execute(commands)
        events["deal_fee"][events["kind"] == EventKind.DEAL] += 1
        return results, events


class _SkipsAKey(ReferenceEngine):
    """A reference that forgets update keys (accepts repeats)."""

    def balance_update(
        self, user: int, asset: int, business: bytes, business_id: int, change: int, ts_ns: int
    ) -> tuple[np.ndarray, np.ndarray]:
        self._keys.clear()
        return super().balance_update(user, asset, business, business_id, change, ts_ns)


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (_OffByOneFee, "fields ['deal_fee']"),
        (_SkipsAKey, "canonical section 'update keys' differs"),
    ],
)
def test_the_harness_catches_a_planted_difference(broken: type, message: str) -> None:
    # A test that passes on a broken build proves nothing (TESTING.md).
    harness = Harness()
    harness.ref = broken(harness.config)
    steps = [
        *funding(),
        run(limit(1, BTC_USDT, ASK, 20, 1000, maker_rate=10)),
        run(limit(2, BTC_USDT, BID, 20, 1000, taker_rate=10)),
        Update(2, USDT, 5, b"seed", 1002),
    ]
    with pytest.raises(AssertionError, match=re.escape(message)):
        harness.run(steps)
