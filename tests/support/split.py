"""The engine's halves run apart, as the daemon runs them (docs/daemon.md, "Sequencer
and pair workers"), without processes: the data flow of the daemon as a test double.

``SplitEngine`` keeps the accounts, counters and idempotency keys in one ``Engine``'s
arrays (the sequencer's) and every market's book in another ``Engine`` (a pair
worker's, which never sees a balance): one per market, or one per group of markets. A
command runs the account half on the sequencer's balances (``account_batch``; a
status change runs there whole, ``status_command``, and a user's limit change,
``user_limit_command``, and a market's limit change too, then goes to the worker as
a WORK_LIMIT), then
the book half in its market's worker (``book_batch``) on a WORK_DTYPE record, where a
new order gets a provisional id; the sequencer then gives accepted orders their real
id, names the orders in the events (``name_orders``), settles them (``settle``), and
sends the worker a rename before its next command. A mass quote (a QUOTE and its
levels, one command) runs as the daemon runs it: its account half on the whole
group, then, every pending rename of its market delivered first, its k + 1 works in
one batch with the next real order id as the header's ``new_id``; the counter then
passes its NEW levels. Results, events and the state hash (of the one engine
``compose_engine`` makes of the halves) must equal the in-process engine's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.compose import compose_engine
from core.config import EngineConfig
from core.engine import Engine
from core.kernels.account_side import account_batch
from core.kernels.admin import status_command
from core.kernels.client_ids import record_put
from core.kernels.ledger import name_orders, settle
from core.kernels.limits import limit_command
from core.kernels.user_limits import user_limit_command
from core.schema import (
    COMMAND_DTYPE,
    COUNTER_ORDER_ID,
    DONE_DTYPE,
    EVENT_DTYPE,
    PROVISIONAL_ID_BASE,
    RESULT_DTYPE,
    WORK_DTYPE,
    WORK_LIMIT,
    WORK_RENAME,
    CommandKind,
    QuoteAction,
    Result,
)
from daemon.sequencing import group_spans
from daemon.worker import run_works

#: Provisional ids the sequencer remembers (a power of two).
REAL_ID_WINDOW = 1 << 10
_NEW_ORDER = (CommandKind.PUT_LIMIT, CommandKind.PUT_MARKET)
_STATUS = (CommandKind.MARKET_STATUS, CommandKind.USER_STATUS)


class SplitEngine:
    """The sequencer's half and the pair workers, run one command at a time."""

    def __init__(
        self, config: EngineConfig, rename_delay: int = 0, owner: Sequence[int] | None = None
    ) -> None:
        """``rename_delay``: renames wait until a market has more than that many (or
        one is half the id window old, or a CANCEL or REPLACE comes, which may name the
        order), so that later commands meet orders still under provisional ids.
        ``owner[m]``: the worker of market ``m`` (by default, one worker per market)."""
        self.config = config
        self.rename_delay = rename_delay
        self.owner = list(range(len(config.markets)) if owner is None else owner)
        self.sequencer = Engine(config)
        self.workers = [Engine(config) for _ in range(max(self.owner, default=-1) + 1)]
        self.real_ids = np.zeros(REAL_ID_WINDOW, dtype=np.int64)
        self.renames: list[list[np.ndarray]] = [[] for _ in config.markets]
        self.dispatched = 0
        self.renamed = 0
        #: Events that named an order of an earlier command by its provisional id
        #: (it was not renamed yet; the sequencer named it).
        self.provisional_seen = 0

    @property
    def _accounts(self) -> tuple[np.ndarray, ...]:
        return self.sequencer.kernel_state().accounts

    @property
    def _counters(self) -> np.ndarray:
        return self.sequencer.kernel_state().counters

    def balance_update(
        self, user: int, asset: int, business: bytes, business_id: int, change: int, ts_ns: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """balance.update is the sequencer's alone."""
        return self.sequencer.balance_update(user, asset, business, business_id, change, ts_ns)

    def execute(self, commands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run ``commands`` one after the other (a QUOTE with its levels is one);
        results and events as ``Engine``'s."""
        commands = np.ascontiguousarray(commands, dtype=COMMAND_DTYPE)
        results = np.zeros(len(commands), dtype=RESULT_DTYPE)
        events: list[np.ndarray] = []
        start = 0
        for i, stop in group_spans(commands):
            if int(commands["kind"][i]) == CommandKind.QUOTE:
                ev = self._quote(commands[i:stop], results[i:stop])
            else:
                code, oid, value, seq, ev = self._one(commands[i:stop])
                r = results[i]
                r["code"], r["order_id"], r["value"], r["seq"] = code, oid, value, seq
            results["event_start"][i:stop] = start
            results["event_count"][i] = len(ev)
            results["event_start"][i + 1 : stop] = start + len(ev)
            start += len(ev)
            events.append(ev)
        return results, np.concatenate([np.zeros(0, dtype=EVENT_DTYPE), *events])

    def _quote(self, cmds: np.ndarray, results: np.ndarray) -> np.ndarray:
        """A QUOTE (and its levels, if ``cmds`` holds them): writes ``results``'
        code, order id, value and seq; returns its events."""
        n = len(cmds)
        work = np.zeros(n, dtype=WORK_DTYPE)
        codes = np.zeros(n, dtype=np.int32)
        mparams = self.sequencer.kernel_state().mparams
        account_batch(
            self._accounts, self._counters, mparams, cmds, work, codes, len(self.config.markets),
            self.config.fee_user, self.config.max_client_ids,
        )  # fmt: skip
        results["code"] = codes
        if codes[0] != Result.OK:
            return np.zeros(0, dtype=EVENT_DTYPE)
        self.dispatched += n
        work["dispatch"] = np.arange(self.dispatched - n + 1, self.dispatched + 1)
        work["new_id"][0] = self._counters[COUNTER_ORDER_ID] + 1
        m = int(work["market"][0])
        # Every order it meets under its real id: the market's renames go first.
        done, ev = self._work(m, np.concatenate([*self.renames[m], work]))
        self.renamed += int(done["value"][: len(done) - n].sum())
        self.renames[m] = []
        done = done[len(done) - n :]
        for name in ("code", "order_id", "value"):
            results[name] = done[name]
        if done["code"][0] == Result.OK:
            self._counters[COUNTER_ORDER_ID] += int((done["value"][1:] == QuoteAction.NEW).sum())
        results["seq"][0] = settle(self._accounts, ev, 0, len(ev), self._counters)
        return ev

    def _one(self, cmd: np.ndarray) -> tuple[int, int, int, int, np.ndarray]:
        seq_engine = self.sequencer
        work = np.zeros(1, dtype=WORK_DTYPE)
        codes = np.zeros(1, dtype=np.int32)
        n_markets = len(self.config.markets)
        mparams = seq_engine.kernel_state().mparams
        if int(cmd["kind"][0]) in _STATUS:  # the sequencer's alone: no book half
            ev = np.zeros(1, dtype=EVENT_DTYPE)
            code, n = status_command(
                self._accounts, self._counters, cmd, ev, n_markets, self.config.fee_user
            )
            seq = int(settle(self._accounts, ev, 0, n, self._counters))
            return int(code), 0, 0, seq, ev[:n]
        if int(cmd["kind"][0]) == CommandKind.USER_LIMIT:  # the sequencer's alone
            ev = np.zeros(1, dtype=EVENT_DTYPE)
            code, n = user_limit_command(
                self._accounts, self._counters, mparams, cmd, ev, n_markets,
                self.config.fee_user, self.config.max_user_limits,
            )  # fmt: skip
            seq = int(settle(self._accounts, ev, 0, n, self._counters))
            return int(code), 0, 0, seq, ev[:n]
        if int(cmd["kind"][0]) == CommandKind.MARKET_LIMIT:  # the sequencer's, then the worker
            ev = np.zeros(1, dtype=EVENT_DTYPE)
            code, n = limit_command(mparams, cmd, ev, n_markets)
            if n:
                change = np.zeros(1, dtype=WORK_DTYPE)
                change["op"], change["market"] = WORK_LIMIT, cmd["market"][0]
                change["side"], change["amount"] = cmd["side"][0], cmd["amount"][0]
                self._work(int(cmd["market"][0]), change)
            seq = int(settle(self._accounts, ev, 0, n, self._counters))
            return int(code), 0, 0, seq, ev[:n]
        account_batch(
            self._accounts, self._counters, mparams, cmd, work, codes, n_markets,
            self.config.fee_user, self.config.max_client_ids,
        )  # fmt: skip
        if codes[0] != Result.OK:
            named = int(work["new_id"][0]) if codes[0] == Result.REPEAT_ORDER else 0
            return int(codes[0]), named, 0, 0, np.zeros(0, dtype=EVENT_DTYPE)
        self.dispatched += 1
        d = self.dispatched
        w = work[0]
        w["dispatch"] = d
        new_order = int(w["kind"]) in _NEW_ORDER
        if new_order:
            w["new_id"] = PROVISIONAL_ID_BASE + d
        m = int(w["market"])
        renames = self.renames[m]
        if renames and (
            len(renames) > self.rename_delay
            or int(w["kind"]) in (CommandKind.CANCEL, CommandKind.REPLACE)
            or d - int(renames[0]["order_id"][0] - PROVISIONAL_ID_BASE) >= REAL_ID_WINDOW // 2
        ):
            batch = np.concatenate([*renames, work])
            self.renames[m] = []
        else:
            batch = work
        done, ev = self._work(m, batch)
        last = done[-1]
        code, oid, value = int(last["code"]), int(last["order_id"]), int(last["value"])
        self.renamed += int(done["value"][:-1].sum())
        own = PROVISIONAL_ID_BASE + d
        for name in ("order_id", "maker_order"):
            named = ev[name]
            self.provisional_seen += int(((named >= PROVISIONAL_ID_BASE) & (named != own)).sum())
        if code == Result.OK and new_order:
            oid = int(self._counters[COUNTER_ORDER_ID]) + 1
            self._counters[COUNTER_ORDER_ID] = oid
            record_put(self._accounts, self._counters, int(w["user"]), int(w["order_id"]), oid)
            self.real_ids[d % REAL_ID_WINDOW] = oid
            rename = np.zeros(1, dtype=WORK_DTYPE)
            rename["op"] = WORK_RENAME
            rename["market"] = m
            rename["order_id"] = PROVISIONAL_ID_BASE + d
            rename["new_id"] = oid
            self.renames[m].append(rename)
        name_orders(ev, 0, len(ev), self.real_ids, PROVISIONAL_ID_BASE + d)
        seq = int(settle(self._accounts, ev, 0, len(ev), self._counters))
        return code, oid, value, seq, ev

    def _work(self, m: int, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        worker = self.workers[self.owner[m]].kernel_state()
        done = np.zeros(len(batch), dtype=DONE_DTYPE)
        fee_acct = self.sequencer.kernel_state().fee_acct
        n_markets, max_matches = len(self.config.markets), self.config.max_matches
        ev, ne = run_works(
            worker, n_markets, max_matches, fee_acct, batch, done, np.zeros(64, dtype=EVENT_DTYPE)
        )
        return done, ev[:ne].copy()

    def flush(self) -> None:
        """Send every worker the renames it has not had yet (the daemon does so when a
        worker is idle, and before a snapshot)."""
        for m, renames in enumerate(self.renames):
            if renames:
                done, _ = self._work(m, np.concatenate(renames))
                self.renamed += int(done["value"].sum())
                self.renames[m] = []

    def state_hash(self) -> str:
        """The canonical state, renames delivered: the sequencer's counters, balances
        and keys, and every market's resting orders from its worker."""
        self.flush()
        return composed_state_hash(self.sequencer, self.workers, self.owner)


def composed_state_hash(
    sequencer: Engine, workers: Sequence[Engine], owner: Sequence[int] | None = None
) -> str:
    """The state hash of the engine's halves run apart (``compose_engine``):
    ``sequencer``'s counters, balances and keys, and market ``m``'s resting orders from
    ``workers[owner[m]]`` (by default ``workers[m]``). Renames must have been delivered."""
    if owner is None:
        owner = range(len(workers))
    return compose_engine(sequencer.config, sequencer, workers, owner).state_hash()
