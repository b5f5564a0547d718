"""The sequencer's ordering rules (``daemon.sequencing``) under random schedules: many
commands in flight, workers answering in random chunks at random times. Whatever the
schedule, the in-process engine given the commands in the order the sequencer
recorded gives the same result for every command, the same events and the same state
hash (docs/daemon.md, "Sequencer and pair workers"). Mass quotes (a QUOTE and its
levels, one command) go through the same schedules."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

import daemon.sequencing
from core import commands
from core.config import EngineConfig
from core.engine import Engine
from core.schema import (
    DONE_DTYPE,
    EVENT_DTYPE,
    CommandKind,
    MarketStatus,
    QuoteAction,
    Result,
    TimeInForce,
)
from daemon.sequencing import Answer, Sequencing, group_spans
from daemon.worker import group_shortfall, run_works
from tests.support.split import composed_state_hash
from tests.support.steps import Batch, Update, limit, replace_order, resolve
from tests.support.streams import Mix, random_stream
from tests.support.world import ASK, BID, BTC, BTC_USDT, RISKY, TIGHT, USDT, Limits, stream_config

SEED = int(os.environ.get("MATCHD_SEED", "20251123"))


def take(into: dict[int, Answer], answers: list[Answer]) -> None:
    """Keep ``answers`` by token; a command is answered once."""
    for a in answers:
        assert a.token not in into
        into[a.token] = a


class Worker:
    """A pair worker without a process: a queue of WORK batches and a book."""

    def __init__(self, config: EngineConfig, fee_acct: int) -> None:
        self.engine = Engine(config)
        self.state = self.engine.kernel_state()
        self.fee_acct = fee_acct
        self.config = config
        self.queue: list[np.ndarray] = []

    def run(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Run up to ``n`` queued works (more to finish a QUOTE group, as the pair
        worker does); their DONE records and events."""
        if not self.queue:
            return np.zeros(0, dtype=DONE_DTYPE), np.zeros(0, dtype=EVENT_DTYPE)
        work = np.concatenate(self.queue)
        n += group_shortfall(work[:n])
        take, rest = work[:n], work[n:]
        self.queue = [rest] if len(rest) else []
        done = np.zeros(len(take), dtype=DONE_DTYPE)
        ev, ne = run_works(
            self.state,
            len(self.config.markets),
            self.config.max_matches,
            self.fee_acct,
            take,
            done,
            np.zeros(256, dtype=EVENT_DTYPE),
        )
        return done, ev[:ne].copy()


class Daemon:
    """The sequencer's state machine, its balances, and one worker per market."""

    def __init__(
        self, config: EngineConfig, rng: np.random.Generator, max_in_flight: int, pace: float
    ) -> None:
        self.config = config
        self.rng = rng
        self.pace = pace
        self.engine = Engine(config)
        state = self.engine.kernel_state()
        self.workers = [Worker(config, state.fee_acct) for _ in config.markets]
        self.sequencing = Sequencing(config, state, self._send, max_in_flight)
        self.answers: dict[int, Answer] = {}

    def _send(self, market: int, work: np.ndarray) -> None:
        self.workers[market].queue.append(work)

    def _take(self, answers: list[Answer]) -> None:
        take(self.answers, answers)

    def submit(self, tokens: Sequence[int], cmds: np.ndarray) -> None:
        """One command: a record, or a QUOTE and its levels (a token each)."""
        if len(cmds) == 1:
            self._take(self.sequencing.submit(tokens[0], cmds))
        else:
            self._take(self.sequencing.submit_batch(tokens, cmds))
        while self.rng.random() < self.pace:  # workers get on at their own pace
            self.step()

    def step(self) -> bool:
        busy = [w for w in self.workers if w.queue]
        if not busy:
            return False
        worker = busy[int(self.rng.integers(len(busy)))]
        done, ev = worker.run(int(self.rng.integers(1, 6)))
        self._take(self.sequencing.complete(done, ev))
        return True

    def drain(self) -> None:
        while self.step():
            pass
        self._take(self.sequencing.pump())
        while self.step():
            pass
        assert self.sequencing.in_flight == 0

    def state_hash(self) -> str:
        for m, worker in enumerate(self.workers):
            worker.queue.append(self.sequencing.pending_renames(m))
            worker.run(10**9)
        return composed_state_hash(self.engine, [w.engine for w in self.workers])


def _same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    if got.tobytes() != want.tobytes():
        raise AssertionError(f"{what}: the daemon gave {got!r}, the engine {want!r}")


class Session:
    """Commands and balance updates through a ``Daemon``, remembered so that the
    in-process engine can be given them in the sequencer's order (``check``)."""

    def __init__(self, config: EngineConfig, daemon: Any) -> None:
        """``daemon``: a ``Daemon``, or anything with its ``engine``, ``sequencing``,
        ``answers``, ``submit`` and ``drain`` (the process test's)."""
        self.config = config
        self.daemon = daemon
        #: The records of each command by its first token (a QUOTE's levels have
        #: the tokens after it).
        self.commands: dict[int, np.ndarray] = {}
        self.tokens = 0
        #: (place in the sequencer's order, update, time)
        self.updates: list[tuple[int, Update, int]] = []
        self.ts = 1_000_000

    def update(self, step: Update) -> None:
        self.daemon.drain()  # here balance.update runs with nothing in flight
        args = (step.user, step.asset, step.business, step.business_id, step.change, self.ts)
        self.daemon.engine.balance_update(*args)
        self.updates.append((len(self.daemon.sequencing.order), step, self.ts))
        self.ts += 1000

    def submit(self, cmd: np.ndarray) -> int:
        """Submit one command (a record, or a QUOTE group); returns its first token."""
        token = self.tokens
        self.tokens += len(cmd)
        self.commands[token] = cmd.copy()
        self.daemon.submit(range(token, self.tokens), self.commands[token])
        return token

    def check(self, books: bool = True) -> None:
        """Drain; then every result, every event and the state hash equal the
        in-process engine's over the same commands in the sequencer's order (without
        ``books``, the workers' books are not compared, only the sequencer's
        balances, keys and counters)."""
        daemon = self.daemon
        daemon.drain()
        order = daemon.sequencing.order
        assert sorted(order) == sorted(daemon.answers) == list(range(self.tokens))
        engine = Engine(self.config)
        pending = list(self.updates)
        for place, token in enumerate([*order, None]):
            while pending and pending[0][0] == place:
                _, step, at = pending.pop(0)
                engine.balance_update(
                    step.user, step.asset, step.business, step.business_id, step.change, at
                )
            if token is None:
                break
            if token not in self.commands:  # a QUOTE's level: checked with its QUOTE
                continue
            cmds = self.commands[token]
            assert order[place : place + len(cmds)] == list(range(token, token + len(cmds)))
            results, events = engine.execute(cmds)
            for j, r in enumerate(results):
                a = daemon.answers[token + j]
                got = (a.code, a.order_id, a.value, a.seq)
                want = (int(r["code"]), int(r["order_id"]), int(r["value"]), int(r["seq"]))
                assert got == want, f"command {token}+{j} {cmds!r}: {got} != {want}"
                assert j == 0 or not len(a.events)
            _same(daemon.answers[token].events, events, f"events of command {token}")
        if books:
            assert daemon.state_hash() == engine.state_hash()
            return
        mine, theirs = daemon.engine, engine
        assert (mine.kernel_state().counters[:3] == theirs.kernel_state().counters[:3]).all()
        assert mine._canonical_balances().tobytes() == theirs._canonical_balances().tobytes()
        assert mine._canonical_keys().tobytes() == theirs._canonical_keys().tobytes()


#: Streams without market operations.
PLAIN = Mix()


def run_stream(
    session: Session, rng: np.random.Generator, n: int, books: bool = True, mix: Mix = PLAIN
) -> None:
    """A random stream of ``n`` commands through ``session``, then ``check``."""
    steps = random_stream(rng, session.config, n, mix)
    shadow = Engine(session.config)  # arrival order, only to draw plausible order ids
    for step in steps:
        if isinstance(step, Update):
            session.update(step)
            shadow.balance_update(
                step.user, step.asset, step.business, step.business_id, step.change, session.ts
            )
            continue
        assert isinstance(step, Batch)
        cmds = resolve(step.commands, shadow, session.ts)
        shadow.execute(cmds)
        for start, stop in group_spans(cmds):
            session.submit(cmds[start:stop])
        session.ts += 1000 * (len(cmds) + 1)
    session.check(books)


def run_schedule(
    limits: Limits, seed: int, n: int, max_in_flight: int, pace: float, mix: Mix = PLAIN
) -> Daemon:
    """A random stream through the daemon on a random schedule (``pace``: the chance
    that a worker gets on after each command), checked against the engine."""
    config = stream_config(limits)
    rng = np.random.default_rng(seed)
    session = Session(config, Daemon(config, rng, max_in_flight, pace))
    run_stream(session, rng, n, mix=mix)
    return session.daemon


@pytest.mark.parametrize(("max_in_flight", "pace"), [(1, 0.5), (4, 0.5), (64, 0.5), (64, 0.1)])
@pytest.mark.parametrize("limits", [Limits(), TIGHT], ids=["roomy", "tight"])
def test_any_schedule_gives_the_engine_s_results(
    limits: Limits, max_in_flight: int, pace: float
) -> None:
    stats = run_schedule(limits, SEED, 2000, max_in_flight, pace).sequencing.stats()
    assert stats.peak_in_flight <= max_in_flight
    if max_in_flight > 1:  # the schedules really pipelined
        assert stats.peak_in_flight > 1
        assert stats.held > 50
    if pace < 0.5 and limits == Limits():
        # and later work met orders still under provisional ids (10 to 30 times per
        # seed; TIGHT's four-order books make it a matter of luck: 0 to 6)
        assert stats.named > 0


def test_risk_limits_give_the_engines_results_in_any_schedule() -> None:
    # The book half's limits (max_open_orders, the price band around the last deal)
    # are judged by the worker at the command's place in history.
    stats = run_schedule(RISKY, SEED, 2000, 64, 0.3).sequencing.stats()
    assert stats.peak_in_flight > 1


@pytest.mark.parametrize("max_in_flight", [4, 64])
def test_market_operations_take_their_place_in_any_schedule(max_in_flight: int) -> None:
    # Halts, delistings and kill switches (3% of the commands) among pipelined work:
    # a status change waits until nothing is out, so what follows sees it.
    daemon = run_schedule(Limits(), SEED, 2000, max_in_flight, 0.3, Mix(admin=3))
    stats = daemon.sequencing.stats()
    assert stats.peak_in_flight > 1
    assert stats.waited_for_ids > 0  # status changes really waited for work out


def test_user_risk_limits_take_their_place_in_any_schedule() -> None:
    # USER_LIMIT (5% of the commands, on RISKY markets) runs in the sequencer alone:
    # the account half of every command after it, and of none before, sees it.
    daemon = run_schedule(RISKY, SEED, 2000, 64, 0.3, Mix(user_limit=5))
    assert daemon.sequencing.stats().peak_in_flight > 1
    codes = Counter(answer.code for answer in daemon.answers.values())
    assert codes[Result.USER_AMOUNT_TOO_LARGE] > 0, codes
    assert codes[Result.USER_NOTIONAL_TOO_LARGE] > 0, codes


def test_a_replace_refused_on_stale_funds_is_dispatched_again_alone() -> None:
    config = stream_config()
    session = Session(config, Daemon(config, np.random.default_rng(0), 64, pace=0.0))
    alice, bob = 1, 2
    session.update(Update(alice, BTC, 10**9, b"deposit", 1))
    session.update(Update(alice, USDT, 10_000, b"deposit", 2))  # a bid of 10 lots at 1000
    session.update(Update(bob, USDT, 10**9, b"deposit", 3))
    bid = session.submit(resolve([limit(alice, BTC_USDT, BID, 10, 1000)], Engine(config), 1)[:1])
    session.submit(resolve([limit(alice, BTC_USDT, ASK, 10, 1100)], Engine(config), 2)[:1])
    session.daemon.drain()
    bid_id = session.daemon.answers[bid].order_id
    # Bob's bid takes Alice's ask, and is in flight when Alice raises her bid, which
    # needs the USDT that fill brings: the worker refuses it on the funds it was sent.
    session.submit(resolve([limit(bob, BTC_USDT, BID, 10, 1100)], Engine(config), 3)[:1])
    raised = session.submit(
        resolve([replace_order(alice, BTC_USDT, bid_id, 2000, 10)], Engine(config), 4)[:1]
    )
    assert session.daemon.sequencing.in_flight == 2
    session.check()
    assert session.daemon.answers[raised].code == Result.OK
    assert session.daemon.sequencing.stats().replaced_again == 1


def _client_id_race(fok_second: bool) -> tuple[Session, list[int]]:
    """Three users place orders with client ids while a table of two has room for
    both orders in flight ahead of the third: the third's check must wait for them."""
    config = stream_config(Limits(max_client_ids=2))
    session = Session(config, Daemon(config, np.random.default_rng(0), 64, pace=0.0))
    for user in (1, 2, 3):
        session.update(Update(user, USDT, 10**6, b"deposit", user))
    engine = Engine(config)
    tif = TimeInForce.FOK if fok_second else TimeInForce.GTC
    tokens = [
        session.submit(
            resolve([limit(user, BTC_USDT, BID, 10, 990, order_id=7, tif=t)], engine, user)[:1]
        )
        for user, t in ((1, TimeInForce.GTC), (2, tif), (3, TimeInForce.GTC))
    ]
    return session, tokens


def _halt_race() -> tuple[Session, list[int]]:
    """A put in flight, a halt of its market, a second put: the halt waits for the
    first put to settle, and the second is refused after it."""
    config = stream_config()
    session = Session(config, Daemon(config, np.random.default_rng(0), 64, pace=0.0))
    for user in (1, 2):
        session.update(Update(user, USDT, 10**6, b"deposit", user))
    engine = Engine(config)
    first = session.submit(resolve([limit(1, BTC_USDT, BID, 10, 990)], engine, 1)[:1])
    halt = session.submit(commands.market_status(BTC_USDT, MarketStatus.HALTED, ts_ns=2))
    second = session.submit(resolve([limit(2, BTC_USDT, BID, 10, 990)], engine, 3)[:1])
    return session, [first, halt, second]


def test_a_status_change_waits_for_the_work_out_and_holds_back_what_follows() -> None:
    session, (first, halt, second) = _halt_race()
    sequencing = session.daemon.sequencing
    assert sequencing.in_flight == 1  # the halt waits, and the second put behind it
    assert halt not in session.daemon.answers
    session.check()
    answers = session.daemon.answers
    assert answers[first].code == Result.OK
    assert answers[halt].seq == answers[first].seq + 1
    assert answers[second].code == Result.MARKET_HALTED
    assert sequencing.order == [first, halt, second]


@pytest.mark.parametrize("fok_second", [False, True], ids=["both-placed", "second-refused"])
def test_a_new_client_id_waits_while_the_orders_in_flight_may_fill_the_table(
    fok_second: bool,
) -> None:
    session, (_, second, third) = _client_id_race(fok_second)
    assert session.daemon.sequencing.in_flight == 2  # the third waits
    session.check()
    answers = session.daemon.answers
    if fok_second:  # refused in the book: its client id was never recorded
        assert answers[second].code == Result.FOK_NOT_FILLED
        assert answers[third].code == Result.OK
    else:
        assert answers[third].code == Result.CLIENT_ID_TABLE_FULL


def test_a_repeated_client_id_is_answered_with_the_first_order() -> None:
    config = stream_config()
    session = Session(config, Daemon(config, np.random.default_rng(0), 64, pace=0.0))
    session.update(Update(1, USDT, 10**6, b"deposit", 1))
    engine = Engine(config)
    put = resolve([limit(1, BTC_USDT, BID, 10, 990, order_id=7)], engine, 1)[:1]
    first, again = session.submit(put), session.submit(put)
    session.check()
    answers = session.daemon.answers
    assert answers[first].code == Result.OK
    assert (answers[again].code, answers[again].order_id) == (
        Result.REPEAT_ORDER,
        answers[first].order_id,
    )


@pytest.mark.parametrize(
    "broken",
    ["no user hold", "no wait for named ids", "no wait for client ids", "status not alone"],
)
def test_the_check_catches_a_broken_rule(monkeypatch: pytest.MonkeyPatch, broken: str) -> None:
    # Negative controls (TESTING.md): each rule matters, and the check sees it go.
    if broken == "no user hold":
        dispatch = Sequencing._dispatch

        def no_hold(self: Sequencing, w: Any, kind: int) -> None:
            dispatch(self, w, kind)
            self._busy.discard(int(w.cmd["user"][0]))

        monkeypatch.setattr(Sequencing, "_dispatch", no_hold)
    elif broken == "status not alone":
        monkeypatch.setattr(Sequencing, "_wait_alone", lambda self, w: False)
        with pytest.raises(AssertionError):
            _halt_race()[0].check()
        return
    elif broken == "no wait for named ids":
        monkeypatch.setattr(daemon.sequencing, "_NAMES_ORDER", ())
    else:
        must_wait = Sequencing._must_wait

        def no_cid_wait(self: Sequencing, kind: int, order_id: int) -> bool:
            return kind != CommandKind.PUT_LIMIT and must_wait(self, kind, order_id)

        monkeypatch.setattr(Sequencing, "_must_wait", no_cid_wait)
        with pytest.raises(AssertionError):
            _client_id_race(fok_second=False)[0].check()
        return
    with pytest.raises(AssertionError):
        _several_schedules()


def _several_schedules() -> None:
    for seed in range(SEED, SEED + 5):
        for limits in (Limits(), TIGHT):
            run_schedule(limits, seed, 2000, 64, 0.1)


# ------------------------------------------------------------------ mass quotes


def _level_actions(daemon: Daemon, session: Session) -> set[int]:
    """The actions (QuoteAction) of the accepted quotes' levels."""
    actions = set()
    for token, cmds in session.commands.items():
        if int(cmds["kind"][0]) == CommandKind.QUOTE and daemon.answers[token].code == Result.OK:
            actions |= {daemon.answers[token + j].value for j in range(1, len(cmds))}
    return actions


@pytest.mark.parametrize(("max_in_flight", "pace"), [(1, 0.5), (4, 0.5), (64, 0.1)])
@pytest.mark.parametrize("limits", [Limits(), TIGHT], ids=["roomy", "tight"])
def test_mass_quotes_take_their_place_in_any_schedule(
    limits: Limits, max_in_flight: int, pace: float
) -> None:
    # Quotes (5% of the commands; now and then hostile) among pipelined work: each
    # waits until nothing is out and goes out alone, whole.
    config = stream_config(limits)
    rng = np.random.default_rng(SEED)
    daemon = Daemon(config, rng, max_in_flight, pace)
    session = Session(config, daemon)
    run_stream(session, rng, 2000, mix=Mix(quote=5))
    stats = daemon.sequencing.stats()
    assert stats.quotes > 20
    if max_in_flight > 1:
        assert stats.peak_in_flight > 1
        assert stats.waited_for_ids > 20  # quotes really waited for the work out
    if limits == Limits():  # ladders were made, kept, shrunk and grown
        assert _level_actions(daemon, session) == set(QuoteAction)


def test_mass_quotes_among_market_operations_and_risk_limits() -> None:
    for limits, mix in ((Limits(), Mix(quote=5, admin=1)), (RISKY, Mix(quote=5))):
        daemon = run_schedule(limits, SEED, 2000, 64, 0.3, mix)
        assert daemon.sequencing.stats().quotes > 10


def _quote_race(pace: float = 0.0) -> tuple[Session, list[int]]:
    """A put in flight, a quote of another user, a third user's put: the quote waits
    for the first put to settle, then goes out alone, and the second put waits for
    it. The quote's new orders take the ids after the first put's."""
    config = stream_config()
    session = Session(config, Daemon(config, np.random.default_rng(0), 64, pace=pace))
    for user in (1, 2, 3):
        session.update(Update(user, USDT, 10**6, b"deposit", user))
    session.update(Update(1, BTC, 10**6, b"deposit", 4))
    engine = Engine(config)
    first = session.submit(resolve([limit(2, BTC_USDT, BID, 10, 990)], engine, 1)[:1])
    quote = session.submit(commands.quote(1, BTC_USDT, [(BID, 980, 10), (ASK, 1020, 10)], ts_ns=2))
    second = session.submit(resolve([limit(3, BTC_USDT, BID, 10, 990)], engine, 3)[:1])
    return session, [first, quote, second]


def test_a_quote_waits_for_the_work_out_and_goes_out_alone() -> None:
    session, (first, quote, second) = _quote_race()
    daemon = session.daemon
    assert daemon.sequencing.in_flight == 1  # the quote waits, and the second put
    assert quote not in daemon.answers
    done, ev = daemon.workers[BTC_USDT].run(1)
    take(daemon.answers, daemon.sequencing.complete(done, ev))
    assert daemon.sequencing.in_flight == 3  # the quote's header and two levels, alone
    assert second not in daemon.answers
    session.check()
    answers = daemon.answers
    assert daemon.sequencing.order == [first, quote, quote + 1, quote + 2, second]
    assert answers[quote].code == Result.OK
    assert answers[quote].seq == answers[first].seq + 1
    put_id = answers[first].order_id
    levels = [answers[quote + 1], answers[quote + 2]]
    assert [(a.order_id, a.value, a.seq) for a in levels] == [
        (put_id + 1, QuoteAction.NEW, 0),
        (put_id + 2, QuoteAction.NEW, 0),
    ]
    assert answers[second].order_id == put_id + 3


def test_the_next_quote_cancels_shrinks_and_grows_the_ladder() -> None:
    config = stream_config()
    session = Session(config, Daemon(config, np.random.default_rng(1), 64, pace=0.3))
    session.update(Update(1, USDT, 10**6, b"deposit", 1))
    session.update(Update(1, BTC, 10**6, b"deposit", 2))
    session.update(Update(2, USDT, 10**6, b"deposit", 3))
    ladder = [(BID, 980, 20), (BID, 970, 20), (ASK, 1020, 20)]
    session.submit(commands.quote(1, BTC_USDT, ladder, ts_ns=1))
    engine = Engine(config)
    session.submit(resolve([limit(2, BTC_USDT, BID, 10, 990)], engine, 2)[:1])
    session.submit(commands.quote(1, BTC_USDT, [(BID, 980, 10), (ASK, 1020, 30)], ts_ns=3))
    session.check()
    answers = session.daemon.answers
    last = max(session.commands)
    assert answers[last].value == 1  # the bid at 970 was stale: cancelled
    assert [answers[last + j].value for j in (1, 2)] == [QuoteAction.SHRUNK, QuoteAction.GROWN]


def test_a_batch_splits_into_the_engine_s_commands() -> None:
    # Whole groups, a QUOTE short of its levels (refused, and the levels after it as
    # strays) and stray levels opening a batch: each record gets the engine's result.
    config = stream_config()
    session = Session(config, Daemon(config, np.random.default_rng(2), 64, pace=0.5))
    session.update(Update(1, USDT, 10**6, b"deposit", 1))
    session.update(Update(1, BTC, 10**6, b"deposit", 2))
    session.update(Update(2, USDT, 10**6, b"deposit", 3))
    engine = Engine(config)
    ladder = [(BID, 980, 10), (ASK, 1020, 10)]
    batches = [
        commands.batch(
            commands.quote(1, BTC_USDT, ladder, ts_ns=1),
            resolve([limit(2, BTC_USDT, BID, 10, 990)], engine, 2)[:1],
            commands.quote(1, BTC_USDT, [], ts_ns=3),
            commands.quote(1, BTC_USDT, ladder, ts_ns=4, k=3),  # short: at the end
        ),
        commands.quote(1, BTC_USDT, ladder, ts_ns=5)[1:],  # two stray levels
        commands.quote(1, BTC_USDT, ladder, ts_ns=6, k=65),
    ]
    for cmds in batches:
        spans = list(group_spans(cmds))
        assert [b for _, b in spans][-1] == len(cmds)
        for start, stop in spans:
            session.submit(cmds[start:stop])
    session.check()
    codes = [session.daemon.answers[t].code for t in range(session.tokens)]
    assert codes[:4] == [Result.OK] * 4  # the first quote, the put
    assert codes[4] == Result.OK  # the empty quote: removes the ladder
    assert set(codes[5:]) == {Result.INVALID_ARGUMENT}


def test_without_the_wait_a_quote_takes_an_id_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    # Negative control: dispatched with a new order in flight, the quote's new orders
    # would take the id that order gets at settlement.
    monkeypatch.setattr(Sequencing, "_wait_alone", lambda self, w: False)
    with pytest.raises(AssertionError):
        _quote_race()[0].check()
