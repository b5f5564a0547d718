"""The sequencer's ordering rules (docs/daemon.md, "Sequencer and pair workers"), as a
state machine without I/O: commands come in, WORK records go out to the market's
pair worker, the workers' DONE records and events come back in each worker's order,
and answers come out. The processes and rings around it are someone else's.

What it guarantees: the commands it settles, in the order it settles them, and the
commands it refuses, at the point it refuses them, give exactly the results and
events the in-process engine gives for that sequence (``order`` records it, for
tests); a replay of the log is the in-process engine over the settled commands. The
rules:

* **Dispatch order is history.** Work is numbered as it is dispatched and settled
  strictly in that order (a reorder buffer over the workers): sequence numbers,
  deal ids and real order ids are given at settlement.
* **One command of a user at a time.** A user's next command waits in the user's
  queue until the previous one is settled: its funds check then sees the effects
  (the pipelining trap of DESIGN.md).
* **Funds checks on settled balances.** The account half runs on the settled
  balances, which are the state right after the last settled command: a command it
  refuses takes its place in history there (it changes nothing; the work in flight
  comes after it). One it passes is dispatched and takes its place after the work
  in flight, where the user's available balance can only be higher (other users'
  commands only credit it, and the user has nothing in flight), so it passes there
  too.
* **REPLACE funds.** The worker checks a REPLACE's funds with the available
  balances of its dispatch; if work was in flight ahead of it, a refusal for funds
  may be stale (that work may credit the user), so the command is dispatched again,
  alone: nothing else is dispatched until it is settled.
* **Orders named before their id exists.** A CANCEL or REPLACE naming an id that a
  new order in flight may still get (beyond the last id given, within the number of
  new orders in flight) waits until what is out is settled; if the id is still open
  then, it is dispatched alone, once nothing is out.
* **Client order ids.** A PUT's client id is checked against its user's recorded ids,
  complete because the user has nothing in flight; the pair is recorded at
  settlement, when the order gets its real id. A new client id while the new orders
  in flight might fill the table waits as above: the table's count at its place in
  history is known only once they are settled.
* **Status and limit changes alone.** MARKET_STATUS, USER_STATUS, MARKET_LIMIT and
  USER_LIMIT change what the halves refuse, and have no book half: each waits until
  nothing is out (nothing else is dispatched meanwhile), then runs and settles here,
  in its place; a market's limit change is handed to the market's worker too
  (WORK_LIMIT), ahead of its next work (a user's limits are the account half's
  alone).
* **Provisional ids.** A new order rests in its worker under ``PROVISIONAL_ID_BASE +
  dispatch``; at settlement it gets its real id, the events are named
  (``ledger.name_orders``), and the worker is sent a rename ahead of its next work.
* **Mass quotes alone.** A QUOTE and its k QUOTE_LEVEL records are one command of
  the header's user (``enqueue_batch`` finds the groups of a batch as the engine
  does, ``group_spans``). It waits until nothing is out, then its account half runs
  on the settled balances and its k + 1 works go out together (after the market's
  pending renames); nothing else is dispatched until it is settled. So its funds
  check sees exact balances, and the header's ``new_id`` is the next real order id
  (the new levels take it and the ids after it, in record order): no provisional
  ids, and a quote order always rests under its real id. At settlement the
  header's DONE brings the group's events (one seq), each level's DONE its order
  and action, and the order id counter advances by the NEW levels. The cost: a
  quote drains the pipeline, a round trip through the worker with nothing else in
  flight.
* **The catalog grows alone.** ADD_ASSET and ADD_MARKET are not records: the server
  runs them on the sequencer's engine with nothing out (a CALLS frame runs drained),
  and ``adopt_catalog`` then takes the grown catalog, so the account half judges the
  new markets from the next command on (before, a command naming one was refused
  UNKNOWN_MARKET at its place in history, as the in-process engine refuses it).
* **Bounded.** At most ``max_in_flight`` works are out (less than half the id
  window; a quote, alone, may take its k + 1 above it); more commands wait in the
  intake, whose bound is the caller's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from core.config import EngineConfig
from core.engine import KernelState
from core.kernels.account_side import account_batch
from core.kernels.admin import status_command
from core.kernels.client_ids import record_put
from core.kernels.ledger import name_orders, settle
from core.kernels.limits import limit_command
from core.kernels.quote import MAX_GROUP_LEVELS, group_levels
from core.kernels.user_limits import user_limit_command
from core.schema import (
    COMMAND_DTYPE,
    COUNTER_CLIENT_IDS,
    COUNTER_ORDER_ID,
    EVENT_DTYPE,
    PROVISIONAL_ID_BASE,
    WORK_DTYPE,
    WORK_LIMIT,
    WORK_RENAME,
    CommandKind,
    QuoteAction,
    Result,
)

#: Real ids of provisional ones, by dispatch number modulo this (a power of two).
ID_WINDOW = 1 << 16
_NEW_ORDER = (int(CommandKind.PUT_LIMIT), int(CommandKind.PUT_MARKET))
_NAMES_ORDER = (int(CommandKind.CANCEL), int(CommandKind.REPLACE))
_STATUS = (int(CommandKind.MARKET_STATUS), int(CommandKind.USER_STATUS))
_LIMIT = int(CommandKind.MARKET_LIMIT)
_USER_LIMIT = int(CommandKind.USER_LIMIT)
#: Run here alone, with nothing out (``_change``).
_ALONE = (*_STATUS, _LIMIT, _USER_LIMIT)
_QUOTE = int(CommandKind.QUOTE)
_QUOTE_LEVEL = int(CommandKind.QUOTE_LEVEL)
_NO_EVENTS = np.zeros(0, dtype=EVENT_DTYPE)


def group_spans(cmds: np.ndarray) -> Iterator[tuple[int, int]]:
    """The commands of a batch (COMMAND_DTYPE) as ``(start, stop)`` record ranges: a
    QUOTE with its levels is one; a QUOTE whose levels do not follow, and a
    QUOTE_LEVEL outside a group, are one record each (the engine refuses them). The
    groups are the engine's own (``core.kernels.quote.group_levels``), so a batch
    splits into the same commands here and in ``Engine.execute``."""
    i = 0
    n = len(cmds)
    while i < n:
        stop = i + 1 + max(group_levels(cmds, i), 0)
        yield i, stop
        i = stop


@dataclass(frozen=True, slots=True)
class Answer:
    """What a command came to: its result and its (settled) events."""

    token: int
    code: int
    order_id: int = 0
    value: int = 0
    seq: int = 0
    events: np.ndarray = field(default_factory=lambda: _NO_EVENTS)


@dataclass(frozen=True, slots=True)
class SequencingStats:
    """Counters of ``Sequencing`` (``stats()``)."""

    dispatched: int  #: works sent to workers (renames not counted)
    settled: int
    refused: int  #: commands the account half refused
    peak_in_flight: int
    held: int  #: commands that waited behind one of their user's in flight
    waited_for_ids: int  #: CANCEL/REPLACE that waited for orders in flight, and
    #: status changes and quotes that waited for everything out
    replaced_again: int  #: REPLACEs dispatched again after a stale funds refusal
    named: int  #: events that named an order by its provisional id
    quotes: int = 0  #: QUOTE groups dispatched (each alone)


@dataclass(slots=True)
class _Waiting:
    token: int
    #: One COMMAND_DTYPE record (a 1-element array), or a QUOTE and its levels.
    cmd: np.ndarray
    #: Dispatch only once everything dispatched up to this number is settled.
    after: int = 0
    #: Already waited once for the work ahead (a CANCEL or REPLACE naming an id
    #: that a new order in flight may get).
    waited: bool = False
    #: A QUOTE's levels' tokens (``cmd[1:]``'s), in record order.
    levels: Sequence[int] = ()


@dataclass(slots=True)
class _Out:
    """Work dispatched and not yet settled."""

    token: int
    cmd: np.ndarray
    market: int
    kind: int
    #: Work was in flight ahead of it when it was dispatched.
    behind: bool
    done: np.void | None = None
    events: np.ndarray | None = None
    #: Works of the command: a QUOTE's k + 1 (its levels are out under the next
    #: dispatch numbers), else 1.
    size: int = 1


class Sequencing:
    """The ordering rules over the sequencer's balances (``state``: an engine's
    kernel state, whose books it never touches); ``send(market, work)`` hands WORK
    records to that market's worker."""

    def __init__(
        self,
        config: EngineConfig,
        state: KernelState,
        send: Callable[[int, np.ndarray], None],
        max_in_flight: int = 4096,
    ) -> None:
        if not 0 < max_in_flight < ID_WINDOW // 2:
            raise ValueError(f"max_in_flight must be in 1..{ID_WINDOW // 2 - 1}")
        self.config = config
        self._state = state
        self._send = send
        self.max_in_flight = max_in_flight
        self._intake: deque[_Waiting] = deque()
        #: Per user with commands waiting (behind one in flight, or held): them, in
        #: arrival order. A user leaves when the queue empties.
        self._users: dict[int, deque[_Waiting]] = {}
        self._busy: set[int] = set()
        #: A command to dispatch alone (a REPLACE to check again): nothing else goes
        #: out until it has.
        self._barrier: _Waiting | None = None
        #: A QUOTE is out: nothing else goes out until it is settled.
        self._quote_out = False
        self._out: dict[int, _Out] = {}
        self._dispatched = 0
        self._settled = 0
        self._new_in_flight = 0  # PUT_LIMIT and PUT_MARKET dispatched, not settled
        self._cids_in_flight = 0  # of them, those with a client order id
        self._real = np.zeros(ID_WINDOW, dtype=np.int64)
        self._renames: list[list[tuple[int, int]]] = [[] for _ in config.markets]
        self._work = np.zeros(1, dtype=WORK_DTYPE)
        self._codes = np.zeros(1, dtype=np.int32)
        self._group_work = np.zeros(1 + MAX_GROUP_LEVELS, dtype=WORK_DTYPE)
        self._group_codes = np.zeros(1 + MAX_GROUP_LEVELS, dtype=np.int32)
        self._quotes = 0
        self._refused = 0
        self._peak = 0
        self._held = 0
        self._waited = 0
        self._again = 0
        self._named = 0
        #: The commands in the order their results hold: settled ones as settled,
        #: refused ones where they were refused (tokens; for tests and replay).
        self.order: list[int] = []

    def warm_up(self) -> None:
        """Load (or compile) the kernels the rules call, changing nothing: the first
        command after a start then pays no compilation (STYLE.md C)."""
        state = self._state
        none = np.zeros(1, dtype=COMMAND_DTYPE)[:0]
        account_batch(
            state.accounts,
            state.counters,
            state.mparams,
            none,
            self._work,
            self._codes,
            len(self.config.markets),
            self.config.fee_user,
            self.config.max_client_ids,
        )
        events = np.zeros(1, dtype=EVENT_DTYPE)[:0]
        name_orders(events, 0, 0, self._real, 0)
        settle(state.accounts, events, 0, 0, state.counters)
        record_put(state.accounts, state.counters, 0, 0, 0)  # (client id 0: records nothing)
        nothing = np.zeros(1, dtype=COMMAND_DTYPE)
        nothing["kind"] = CommandKind.MARKET_STATUS
        nothing["market"] = -1  # refused as an unknown market: changes nothing
        status_command(state.accounts, state.counters, nothing, events, 0, 0)
        nothing["kind"] = CommandKind.MARKET_LIMIT
        limit_command(state.mparams, nothing, events, 0)
        nothing["kind"] = CommandKind.USER_LIMIT
        user_limit_command(state.accounts, state.counters, state.mparams, nothing, events, 0, 0, 0)
        group_levels(nothing, 0)  # not a QUOTE: -1

    @property
    def in_flight(self) -> int:
        """Works dispatched and not yet settled."""
        return self._dispatched - self._settled

    def adopt_catalog(self, config: EngineConfig) -> None:
        """Take ``config``, the catalog after ADD_ASSET or ADD_MARKET ran with nothing
        out (its markets those of ``self.config`` and new ones after them): the
        account half's market count and the per-market renames grow with it. Each
        new market's worker must have its parameters before any work for it goes out
        (``Pipeline.adopt_catalog``)."""
        if self.in_flight:
            raise RuntimeError("adopt_catalog() with work in flight")
        names = [m.name for m in self.config.markets]
        if [m.name for m in config.markets[: len(names)]] != names:
            raise ValueError("adopt_catalog() takes the catalog grown, never another one")
        self.config = config
        self._renames.extend([] for _ in range(len(config.markets) - len(self._renames)))

    def stats(self) -> SequencingStats:
        """A snapshot of the counters."""
        return SequencingStats(
            self._dispatched,
            self._settled,
            self._refused,
            self._peak,
            self._held,
            self._waited,
            self._again,
            self._named,
            self._quotes,
        )

    def submit(self, token: int, cmd: np.ndarray) -> list[Answer]:
        """Take one command (a 1-element COMMAND_DTYPE array, copied); answers of
        commands it refused at once."""
        self.enqueue(token, cmd.copy())
        return self.pump()

    def submit_batch(self, tokens: Sequence[int], cmds: np.ndarray) -> list[Answer]:
        """``enqueue_batch`` of a copy of ``cmds``, then ``pump``."""
        self.enqueue_batch(tokens, cmds.copy())
        return self.pump()

    def enqueue(self, token: int, cmd: np.ndarray) -> None:
        """Take one command without dispatching anything yet (``pump`` does): a
        batch of commands costs one pump. ``cmd`` (a 1-element COMMAND_DTYPE array,
        e.g. a row of the caller's batch) becomes the sequencer's: not copied, and
        not to be changed by the caller."""
        if cmd.dtype != COMMAND_DTYPE or cmd.shape != (1,):
            raise TypeError("enqueue() takes a 1-element COMMAND_DTYPE array")
        self._intake.append(_Waiting(token, cmd))

    def enqueue_batch(self, tokens: Sequence[int], cmds: np.ndarray) -> None:
        """Take a batch of records (COMMAND_DTYPE, e.g. a request frame's; not copied,
        as ``enqueue``), record ``i`` answered under ``tokens[i]``. Each record is a
        command, except that a QUOTE whose levels follow it takes them along
        (``group_spans``): one command, each of whose records is answered. A group
        never spans two batches: a QUOTE at the end of one, short of its levels, is
        refused, and so are the levels that open the next."""
        if cmds.dtype != COMMAND_DTYPE or cmds.ndim != 1 or len(tokens) != len(cmds):
            raise TypeError("enqueue_batch() takes COMMAND_DTYPE records, one token each")
        intake = self._intake
        if not (cmds["kind"] == _QUOTE).any():
            intake.extend(_Waiting(tokens[k], cmds[k : k + 1]) for k in range(len(cmds)))
            return
        for start, stop in group_spans(cmds):
            intake.append(
                _Waiting(tokens[start], cmds[start:stop], levels=tokens[start + 1 : stop])
            )

    def pump(self) -> list[Answer]:
        """Dispatch what the rules allow, in arrival order per user."""
        answers: list[Answer] = []
        progress = True
        while progress:
            progress = False
            for user in [u for u in self._users if u not in self._busy]:
                queue = self._users[user]
                if self._try(queue[0], answers):
                    queue.popleft()
                    if not queue:
                        del self._users[user]  # only users with commands waiting
                    progress = True
            while self._intake and self.in_flight < self.max_in_flight:
                w = self._intake.popleft()
                user = int(w.cmd["user"][0])
                if user in self._users or user in self._busy:
                    self._held += 1
                    self._users.setdefault(user, deque()).append(w)
                elif not self._try(w, answers):
                    self._users[user] = deque([w])
                progress = True
        return answers

    def _try(self, w: _Waiting, answers: list[Answer]) -> bool:
        """Dispatch or refuse ``w`` now; False if it must wait."""
        if self._quote_out or w.after > self._settled or self.in_flight >= self.max_in_flight:
            return False
        if self._barrier is not None:
            if w is not self._barrier or self.in_flight:
                return False
            self._barrier = None
        state = self._state
        cmd = w.cmd
        kind = int(cmd["kind"][0])
        if kind in _ALONE:
            if self._wait_alone(w):
                return False
            answers.append(self._change(w, kind))
            return True
        if kind == _QUOTE and len(w.levels) == int(cmd["amount"][0]):  # a whole group
            if self._wait_alone(w):
                return False
            self._quote(w, answers)
            return True
        if self._must_wait(kind, int(cmd["order_id"][0])):
            # Wait until what is out now is settled, and the second time until
            # nothing is out at all.
            if w.waited:
                if self._barrier is None:
                    self._barrier = w
            else:
                w.after, w.waited = self._dispatched, True
            self._waited += 1
            return False
        account_batch(
            state.accounts,
            state.counters,
            state.mparams,
            cmd,
            self._work,
            self._codes,
            len(self.config.markets),
            self.config.fee_user,
            self.config.max_client_ids,
        )
        code = int(self._codes[0])
        if code != Result.OK:
            self._refused += 1
            self.order.append(w.token)
            named = int(self._work["new_id"][0]) if code == Result.REPEAT_ORDER else 0
            answers.append(Answer(w.token, code, named))
            return True
        self._dispatch(w, kind)
        return True

    def _wait_alone(self, w: _Waiting) -> bool:
        """True if work is out: ``w`` then waits until it is settled, and nothing
        else is dispatched meanwhile."""
        if not self.in_flight:
            return False
        if self._barrier is None:
            self._barrier = w
        self._waited += 1
        return True

    def _change(self, w: _Waiting, kind: int) -> Answer:
        """Run a status or limit change with nothing out."""
        if kind == _LIMIT:
            return self._set_limit(w)
        if kind == _USER_LIMIT:
            return self._set_user_limit(w)
        return self._set_status(w)

    def _set_user_limit(self, w: _Waiting) -> Answer:
        """Run a USER_LIMIT with nothing out: the account half of what follows sees
        it, and no worker needs it."""
        state = self._state
        events = np.zeros(1, dtype=EVENT_DTYPE)
        code, n = user_limit_command(
            state.accounts,
            state.counters,
            state.mparams,
            w.cmd,
            events,
            len(self.config.markets),
            self.config.fee_user,
            self.config.max_user_limits,
        )
        return self._took_place(w, int(code), events[:n])

    def _set_status(self, w: _Waiting) -> Answer:
        """Run a MARKET_STATUS or USER_STATUS with nothing out: it takes its place in
        history here, and the account half of what follows sees it."""
        state = self._state
        events = np.zeros(1, dtype=EVENT_DTYPE)
        code, n = status_command(
            state.accounts,
            state.counters,
            w.cmd,
            events,
            len(self.config.markets),
            self.config.fee_user,
        )
        return self._took_place(w, int(code), events[:n])

    def _took_place(self, w: _Waiting, code: int, events: np.ndarray) -> Answer:
        """Settle a command run here (its ``events``, if any, get the next seq), in
        its place in history."""
        state = self._state
        seq = int(settle(state.accounts, events, 0, len(events), state.counters))
        if code != Result.OK:
            self._refused += 1
        self.order.append(w.token)
        return Answer(w.token, code, 0, 0, seq, events)

    def _set_limit(self, w: _Waiting) -> Answer:
        """Run a MARKET_LIMIT with nothing out, on the sequencer's market parameters,
        and hand the change to the market's worker, which applies it before its next
        work."""
        state = self._state
        events = np.zeros(1, dtype=EVENT_DTYPE)
        code, n = limit_command(state.mparams, w.cmd, events, len(self.config.markets))
        if n:
            m = int(w.cmd["market"][0])
            change = np.zeros(1, dtype=WORK_DTYPE)
            change["op"] = WORK_LIMIT
            change["market"] = m
            change["side"] = w.cmd["side"][0]
            change["amount"] = w.cmd["amount"][0]
            self._send(m, np.concatenate([self.pending_renames(m), change]))
        return self._took_place(w, int(code), events[:n])

    def _quote(self, w: _Waiting, answers: list[Answer]) -> None:
        """The account half of a QUOTE group, with nothing out; dispatch it if it
        passes, else answer each of its records with the refusal."""
        state = self._state
        n = len(w.cmd)
        work, codes = self._group_work[:n], self._group_codes[:n]
        account_batch(
            state.accounts,
            state.counters,
            state.mparams,
            w.cmd,
            work,
            codes,
            len(self.config.markets),
            self.config.fee_user,
            self.config.max_client_ids,
        )
        code = int(codes[0])
        if code != Result.OK:
            self._refused += 1
            self.order.append(w.token)
            self.order.extend(w.levels)
            answers.append(Answer(w.token, code))
            answers.extend(Answer(token, code) for token in w.levels)
            return
        self._quotes += 1
        d = self._dispatched + 1
        self._dispatched += n
        self._peak = max(self._peak, self.in_flight)
        works = work.view(np.uint8).copy().view(WORK_DTYPE)  # as bytes: see _dispatch
        works["dispatch"] = np.arange(d, d + n)
        # Nothing is out: the next real id is known, and the new levels take it and
        # the ids after it (the worker ignores the levels' new_id).
        works["new_id"][0] = state.counters[COUNTER_ORDER_ID] + 1
        m = int(works["market"][0])
        self._busy.add(int(w.cmd["user"][0]))
        self._quote_out = True
        self._out[d] = _Out(w.token, w.cmd, m, _QUOTE, False, size=n)
        for j, token in enumerate(w.levels, 1):
            self._out[d + j] = _Out(token, w.cmd[j : j + 1], m, _QUOTE_LEVEL, False)
        self._send(m, np.concatenate([self.pending_renames(m), works]))  # renames first

    def _must_wait(self, kind: int, order_id: int) -> bool:
        """True if the account half could judge the command otherwise than the
        in-process engine will at its place in history, because of the work in
        flight: a CANCEL or REPLACE naming an id that a new order in flight may get,
        or a new client order id while the orders in flight may fill the table."""
        state = self._state
        if kind in _NAMES_ORDER:
            last = int(state.counters[COUNTER_ORDER_ID])
            return last < order_id <= last + self._new_in_flight
        if kind in _NEW_ORDER and order_id > 0:
            used = int(state.counters[COUNTER_CLIENT_IDS])
            return used + self._cids_in_flight >= self.config.max_client_ids > used
        return False

    def _dispatch(self, w: _Waiting, kind: int) -> None:
        behind = self.in_flight > 0
        self._dispatched += 1
        self._peak = max(self._peak, self.in_flight)
        d = self._dispatched
        # As bytes: copying a record array with a sub-array field takes numpy's slow
        # path (~10 µs).
        work = self._work.view(np.uint8).copy().view(WORK_DTYPE)
        work["dispatch"] = d
        if kind in _NEW_ORDER:
            work["new_id"] = PROVISIONAL_ID_BASE + d
            self._new_in_flight += 1
            self._cids_in_flight += int(w.cmd["order_id"][0]) > 0
        m = int(work["market"][0])
        user = int(w.cmd["user"][0])
        self._busy.add(user)
        self._out[d] = _Out(w.token, w.cmd, m, kind, behind)
        if self._renames[m]:
            self._send(m, np.concatenate([self.pending_renames(m), work]))
        else:
            self._send(m, work)

    def complete(self, done: np.ndarray, events: np.ndarray) -> list[Answer]:
        """A worker's DONE records (renames included) and their events, in order.
        Both arrays become the sequencer's (answers hold views of ``events``)."""
        start = 0
        counts = done["event_count"].tolist()
        for i, dispatch in enumerate(done["dispatch"].tolist()):
            n = counts[i]
            out = self._out.get(dispatch)
            if out is not None and dispatch > self._settled:
                # Views: the caller hands over ``done`` and ``events`` (copies of
                # what it popped) and does not touch them again.
                out.done = done[i]
                out.events = events[start : start + n]
            start += n
        answers: list[Answer] = []
        while True:
            d = self._settled + 1
            out = self._out.get(d)
            if out is None or out.done is None or out.events is None:
                break
            levels = [self._out[d + j] for j in range(1, out.size)]
            if any(level.done is None for level in levels):
                break  # a QUOTE settles with all its records
            for j in range(out.size):
                del self._out[d + j]
            self._settled += out.size
            if out.kind == _QUOTE:
                answers.extend(self._settle_quote(out, out.done, out.events, levels))
            else:
                answers.extend(self._settle(d, out, out.done, out.events))
        answers.extend(self.pump())
        return answers

    def _settle_quote(
        self, out: _Out, done: np.void, ev: np.ndarray, levels: list[_Out]
    ) -> list[Answer]:
        """Settle a QUOTE: its events (naming only quote orders, which rest under real
        ids) get one seq; the order id counter passes the ids of its new levels."""
        state = self._state
        code = int(done["code"])
        self._busy.discard(int(out.cmd["user"][0]))
        self._quote_out = False
        seq = int(settle(state.accounts, ev, 0, len(ev), state.counters)) if len(ev) else 0
        answers = [Answer(out.token, code, int(done["order_id"]), int(done["value"]), seq, ev)]
        new = 0
        for level in levels:
            assert level.done is not None  # noqa: S101 -- checked by complete()
            value = int(level.done["value"])
            new += code == Result.OK and value == QuoteAction.NEW
            answers.append(Answer(level.token, code, int(level.done["order_id"]), value))
        state.counters[COUNTER_ORDER_ID] += new
        self.order.extend(a.token for a in answers)
        return answers

    def _settle(self, d: int, out: _Out, done: np.void, ev: np.ndarray) -> list[Answer]:
        state = self._state
        code = int(done["code"])
        user = int(out.cmd["user"][0])
        self._busy.discard(user)
        cid = int(out.cmd["order_id"][0]) if out.kind in _NEW_ORDER else 0
        if out.kind in _NEW_ORDER:
            self._new_in_flight -= 1
            self._cids_in_flight -= cid > 0
        if code == Result.BALANCE_NOT_ENOUGH and out.behind:
            # The worker judged a REPLACE's funds before what was ahead settled.
            again = _Waiting(out.token, out.cmd)
            self._users.setdefault(user, deque()).appendleft(again)
            if self._barrier is None:
                self._barrier = again
            self._again += 1
            return []
        oid = int(done["order_id"])
        if code == Result.OK and out.kind in _NEW_ORDER:
            oid = int(state.counters[COUNTER_ORDER_ID]) + 1
            state.counters[COUNTER_ORDER_ID] = oid
            record_put(state.accounts, state.counters, user, cid, oid)
            self._real[d % ID_WINDOW] = oid
            self._renames[out.market].append((PROVISIONAL_ID_BASE + d, oid))
        seq = 0
        if len(ev):
            self._named += int(name_orders(ev, 0, len(ev), self._real, PROVISIONAL_ID_BASE + d))
            seq = int(settle(state.accounts, ev, 0, len(ev), state.counters))
        self.order.append(out.token)
        return [Answer(out.token, code, oid, int(done["value"]), seq, ev)]

    def pending_renames(self, market: int) -> np.ndarray:
        """The renames not yet sent to ``market``'s worker, as WORK records (and
        forgotten): send them before a snapshot or a state hash of the worker."""
        renames = self._renames[market]
        batch = np.zeros(len(renames), dtype=WORK_DTYPE)
        for i, (provisional, real) in enumerate(renames):
            batch[i]["op"] = WORK_RENAME
            batch[i]["market"] = market
            batch[i]["order_id"] = provisional
            batch[i]["new_id"] = real
        renames.clear()
        return batch
