"""Small helpers for table-like scenario tests of the engines.

``Scenario`` wraps an engine built from a two-market config (``config_text``), takes
amounts and prices as decimal strings in the market's terms, and checks after every
step what must always hold: the invariants, conservation of every asset against the
deposits made, contiguous events carrying their command's seq and time, and that a
rejected command changes nothing (state hash and counters).

``Step.brief()`` writes events compactly, in human units::

    ("BAL", user, "USDT", "FEE", "-16", "0")  # change of available, change of frozen
    ("DEAL", taker_order, maker_order, "8000", "1")
    ("PUT", 1), ("UPDATE", 1), ("FINISH", 1, "FILLED")
    ("ULIMIT", user, market, "MAX_NOTIONAL", 0, 100)  # a user's limit: old, new
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core import commands
from core.catalog import CatalogRefused, new_asset, new_market, with_asset, with_market
from core.config import AssetConfig, EngineConfig, Market, MarketConfig, parse_config
from core.fixed import format_units, is_exact, parse_decimal, to_units
from core.schema import (
    EVENT_DTYPE,
    RESULT_DTYPE,
    Business,
    EventKind,
    FinishReason,
    MarketStatus,
    Result,
    RiskLimit,
    StpMode,
    TimeInForce,
    UserStatus,
)
from tests.support.engines import EngineClass

FEE = 0  #: the fee account of the test config
ALICE, BOB, CAROL, DAVE = 1, 2, 3, 4
BTC, ETH, USDT = 0, 1, 2
BTC_USDT, ETH_BTC = 0, 1
ASK, BID = 1, 2

_CONFIG = """
[engine]
fee_user = 0
max_users = {max_users}
max_update_keys = {max_update_keys}
max_matches = {max_matches}
max_user_limits = {max_user_limits}
{catalog}
[[assets]]
name = "BTC"
prec = 10

[[assets]]
name = "ETH"
prec = 10

[[assets]]
name = "USDT"
prec = 8

# stock_scale 10**4 BTC units per lot, deal_scale 1 USDT unit per tick x lot
[[markets]]
name = "BTC_USDT"
stock = "BTC"
money = "USDT"
stock_prec = 6
money_prec = 2
fee_prec = 4
min_amount = "0.001"
max_orders = {max_orders}
max_levels = {max_levels}
{btc_usdt}
# stock_scale 10**6 ETH units per lot, deal_scale 10 BTC units per tick x lot
[[markets]]
name = "ETH_BTC"
stock = "ETH"
money = "BTC"
stock_prec = 4
money_prec = 5
fee_prec = 3
min_amount = "0.01"
"""


def config_text(
    *,
    max_orders: int = 1000,
    max_levels: int = 100,
    max_users: int = 100,
    max_update_keys: int = 1000,
    max_matches: int = 10_000,
    max_user_limits: int = 65_536,
    btc_usdt: str = "",
    max_assets: int | None = None,
    max_markets: int | None = None,
    added_market_orders: int | None = None,
    added_market_levels: int | None = None,
) -> str:
    """TOML of the test config: BTC_USDT (index 0, with the given capacities and the
    TOML lines ``btc_usdt``) and ETH_BTC (index 1); assets BTC, ETH (prec 10) and USDT
    (prec 8); fee account 0. The catalog's room (``max_assets`` ... ``added_market_levels``,
    docs/engine.md, "Adding assets and markets") is written only when given."""
    room = {
        "max_assets": max_assets,
        "max_markets": max_markets,
        "added_market_orders": added_market_orders,
        "added_market_levels": added_market_levels,
    }
    return _CONFIG.format(
        catalog="".join(f"{key} = {value}\n" for key, value in room.items() if value is not None),
        btc_usdt=btc_usdt,
        max_orders=max_orders,
        max_levels=max_levels,
        max_users=max_users,
        max_update_keys=max_update_keys,
        max_matches=max_matches,
        max_user_limits=max_user_limits,
    )


def make_config(btc_usdt: str = "", **limits: int) -> EngineConfig:
    """The parsed test config (keyword arguments as for ``config_text``)."""
    return parse_config(config_text(btc_usdt=btc_usdt, **limits))


def _units(text: str, places: int) -> int:
    value = parse_decimal(text)
    if not is_exact(value, places):
        raise ValueError(f"{text!r} has more than {places} decimal places")
    return to_units(value, places)


def event_fields(event: np.void) -> dict[str, object]:
    """The non-zero fields of one event record (``source`` as bytes)."""
    out: dict[str, object] = {}
    for name in EVENT_DTYPE.names or ():
        if name == "source":
            raw = bytes(event["source"])
            if raw.strip(b"\0"):
                out[name] = raw.rstrip(b"\0")
        elif int(event[name]) != 0:
            out[name] = int(event[name])
    return out


@dataclass
class Step:
    """The outcome of one command: its result record and its events."""

    scenario: Scenario
    code: Result
    seq: int
    order_id: int
    value: int
    events: np.ndarray = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.code == Result.OK

    def brief(self, *, balances: bool = True) -> list[tuple[object, ...]]:
        """The events in compact form (see the module docstring); ``balances=False``
        leaves BALANCE events out."""
        out = []
        for event in self.events:
            kind = int(event["kind"])
            if kind == EventKind.BALANCE and not balances:
                continue
            out.append(self.scenario.describe(event))
        return out

    def deals(self) -> list[tuple[object, ...]]:
        return [e[1:] for e in self.brief(balances=False) if e[0] == "DEAL"]

    def event(self, index: int) -> dict[str, object]:
        return event_fields(self.events[index])


class Scenario:
    """An engine under test plus the bookkeeping that checks it after every step."""

    def __init__(self, engine_cls: EngineClass, btc_usdt: str = "", **limits: int) -> None:
        """``btc_usdt``: more TOML lines for BTC_USDT (e.g. its risk limits)."""
        self.config = make_config(btc_usdt, **limits)
        self.engine = engine_cls(self.config)
        self.deposits = [0] * len(self.config.assets)
        self.ts_ns = 1_000_000
        self._business_id = 0

    # ---------------------------------------------------------------- units

    def market(self, index: int) -> Market:
        return self.config.markets[index]

    def lots(self, text: str, market: int = BTC_USDT) -> int:
        return _units(text, self.market(market).stock_prec)

    def ticks(self, text: str, market: int = BTC_USDT) -> int:
        return _units(text, self.market(market).money_prec)

    def rate(self, text: str, market: int = BTC_USDT) -> int:
        return _units(text, self.market(market).fee_prec)

    def units(self, text: str, asset: int) -> int:
        return _units(text, self.config.assets[asset].prec)

    def text(self, units: int, asset: int) -> str:
        return format_units(units, self.config.assets[asset].prec)

    def next_ts(self) -> int:
        self.ts_ns += 1_000
        return self.ts_ns

    # ---------------------------------------------------------------- commands

    def limit(
        self,
        user: int,
        side: int,
        amount: str,
        price: str,
        *,
        market: int = BTC_USDT,
        taker: str = "0",
        maker: str = "0",
        tif: int = TimeInForce.GTC,
        stp: int = StpMode.NONE,
        flags: int = 0,
        source: bytes = b"",
        client_id: int = 0,
    ) -> Step:
        """PUT_LIMIT of ``amount`` stock at ``price`` (decimal strings)."""
        return self.run1(
            commands.put_limit(
                user,
                market,
                side,
                self.lots(amount, market),
                self.ticks(price, market),
                self.rate(taker, market),
                self.rate(maker, market),
                ts_ns=self.next_ts(),
                tif=tif,
                stp=stp,
                flags=flags,
                source=source,
                client_id=client_id,
            )
        )

    def market_order(
        self,
        user: int,
        side: int,
        amount: str,
        *,
        market: int = BTC_USDT,
        taker: str = "0",
        stp: int = StpMode.NONE,
    ) -> Step:
        """PUT_MARKET: an ask sells ``amount`` stock, a bid spends ``amount`` money."""
        m = self.market(market)
        units = self.lots(amount, market) if side == ASK else self.units(amount, m.money.index)
        return self.run1(
            commands.put_market(
                user, market, side, units, self.rate(taker, market), ts_ns=self.next_ts(), stp=stp
            )
        )

    def cancel(self, user: int, order_id: int, *, market: int = BTC_USDT) -> Step:
        return self.run1(commands.cancel(user, market, order_id, ts_ns=self.next_ts()))

    def cancel_all(self, user: int, side: int = 0, *, market: int = BTC_USDT) -> Step:
        return self.run1(commands.cancel_all(user, market, side, ts_ns=self.next_ts()))

    def market_status(self, status: int, *, market: int = BTC_USDT) -> Step:
        return self.run1(commands.market_status(market, status, ts_ns=self.next_ts()))

    def user_status(self, user: int, status: int) -> Step:
        return self.run1(commands.user_status(user, status, ts_ns=self.next_ts()))

    def market_limit(self, limit: int, value: int, *, market: int = BTC_USDT) -> Step:
        return self.run1(commands.market_limit(market, limit, value, ts_ns=self.next_ts()))

    def user_limit(self, user: int, limit: int, value: int, *, market: int = BTC_USDT) -> Step:
        """USER_LIMIT: the user's own ``limit`` (a ``RiskLimit``) in the market, in
        engine units (lots, money units)."""
        return self.run1(commands.user_limit(user, market, limit, value, ts_ns=self.next_ts()))

    def cancel_market(self, side: int = 0, *, market: int = BTC_USDT) -> Step:
        return self.run1(commands.cancel_market(market, side, ts_ns=self.next_ts()))

    def replace(
        self, user: int, order_id: int, price: str, left: str, *, market: int = BTC_USDT
    ) -> Step:
        return self.run1(
            commands.replace(
                user,
                market,
                order_id,
                self.ticks(price, market),
                self.lots(left, market),
                ts_ns=self.next_ts(),
            )
        )

    def quote(
        self,
        user: int,
        bids: list[tuple[str, str]],
        asks: list[tuple[str, str]],
        *,
        market: int = BTC_USDT,
        taker: str = "0",
        maker: str = "0",
        source: bytes = b"",
        asks_first: bool = False,
    ) -> list[Step]:
        """A mass quote of (price, amount) levels, bids then asks (``asks_first``: the
        other way round); the header's step first, then one per level."""
        sides = [(ASK, asks), (BID, bids)] if asks_first else [(BID, bids), (ASK, asks)]
        levels = [
            (side, self.ticks(price, market), self.lots(amount, market))
            for side, ladder in sides
            for price, amount in ladder
        ]
        cmd = commands.quote(
            user,
            market,
            levels,
            self.rate(taker, market),
            self.rate(maker, market),
            ts_ns=self.next_ts(),
            source=source,
        )
        return self.run(cmd)

    def update(
        self,
        user: int,
        asset: int,
        change: str,
        *,
        business: bytes = b"deposit",
        business_id: int | None = None,
    ) -> Step:
        """balance.update of ``change`` (decimal string) with an idempotency key."""
        if business_id is None:
            self._business_id += 1
            business_id = self._business_id
        return self.update_units(user, asset, self.units(change, asset), business, business_id)

    def update_units(
        self, user: int, asset: int, change: int, business: bytes, business_id: int
    ) -> Step:
        """balance.update with the raw integer arguments."""
        before = self._snapshot()
        ts_ns = self.next_ts()
        results, events = self.engine.balance_update(
            user, asset, business, business_id, change, ts_ns
        )
        steps = self._steps(results, events, [ts_ns], before)
        if steps[0].ok:
            self.deposits[asset] += change
        self.check()
        return steps[0]

    def deposit(self, user: int, asset: int, amount: str) -> None:
        step = self.update(user, asset, amount)
        assert step.ok, step.code

    def add_asset(self, raw: AssetConfig) -> Step:
        """ADD_ASSET; the scenario's ``config`` follows the engine's catalog."""
        try:
            expected: EngineConfig | Result = with_asset(self.config, new_asset(self.config, raw))
        except CatalogRefused as refused:
            expected = refused.code
        return self._catalog_step(self.engine.add_asset, raw, expected)

    def add_market(self, raw: MarketConfig) -> Step:
        """ADD_MARKET; the scenario's ``config`` follows the engine's catalog."""
        try:
            expected: EngineConfig | Result = with_market(self.config, new_market(self.config, raw))
        except CatalogRefused as refused:
            expected = refused.code
        return self._catalog_step(self.engine.add_market, raw, expected)

    def _catalog_step(
        self,
        add: Callable[[Any], tuple[np.ndarray, np.ndarray]],
        raw: AssetConfig | MarketConfig,
        expected: EngineConfig | Result,
    ) -> Step:
        """Run an add and check it against ``core.catalog``'s verdict (``expected``: the
        catalog after it, or the refusal's code): one result and no events; accepted,
        the next seq and the new index as ``value``; refused, no seq and nothing
        changed."""
        before = self._snapshot()
        results, events = add(raw)
        assert results.dtype == RESULT_DTYPE
        assert events.dtype == EVENT_DTYPE
        assert (len(results), len(events)) == (1, 0)
        result = results[0]
        step = Step(
            self,
            Result(int(result["code"])),
            int(result["seq"]),
            int(result["order_id"]),
            int(result["value"]),
            events,
        )
        assert (int(result["event_start"]), int(result["event_count"]), step.order_id) == (0, 0, 0)
        if isinstance(expected, Result):
            assert step.code == expected, f"{step.code.name}, core.catalog: {expected.name}"
            assert (step.seq, step.value) == (0, 0)
            assert self._snapshot() == before, "a refused add changed the state"
            assert self.engine.config == self.config
        else:
            assert step.ok, f"refused ({step.code.name}) what core.catalog accepts"
            assert step.seq == before[1][0] + 1
            assert self.engine.counters()[0] == step.seq
            assert self.engine.config == expected
            grown = len(expected.assets) - len(self.config.assets)
            assert step.value == (len(expected.assets) if grown else len(expected.markets)) - 1
            self.config = expected
            self.deposits += [0] * grown
        self.check()
        return step

    def run1(self, command: np.ndarray) -> Step:
        return self.run(command)[0]

    def run(self, *cmds: np.ndarray) -> list[Step]:
        """Execute the commands as one batch and check the outcome."""
        batch = commands.batch(*cmds)
        before = self._snapshot()
        results, events = self.engine.execute(batch)
        steps = self._steps(results, events, [int(t) for t in batch["ts_ns"]], before)
        self.check()
        return steps

    # ---------------------------------------------------------------- checks

    def _snapshot(self) -> tuple[str, tuple[int, int, int]]:
        return self.engine.state_hash(), self.engine.counters()

    def _steps(
        self,
        results: np.ndarray,
        events: np.ndarray,
        times: list[int],
        before: tuple[str, tuple[int, int, int]],
    ) -> list[Step]:
        assert results.dtype == RESULT_DTYPE
        assert events.dtype == EVENT_DTYPE
        assert len(results) == len(times)
        steps, position, seq = [], 0, before[1][0]
        for result, ts_ns in zip(results, times, strict=True):
            start, count = int(result["event_start"]), int(result["event_count"])
            assert start == position, "events must be contiguous, in command order"
            mine = events[start : start + count]
            position += count
            code = Result(int(result["code"]))
            if int(result["seq"]) != 0:
                seq += 1
                assert int(result["seq"]) == seq, "seq must grow by one per accepted command"
                assert count > 0
            else:
                assert count == 0, "a command without a seq changes nothing"
            if code not in (Result.OK, Result.REPEAT_ORDER):  # a repeat names its order
                assert int(result["order_id"]) == 0
            assert (mine["seq"] == int(result["seq"])).all()
            assert (mine["ts_ns"] == ts_ns).all()
            steps.append(
                Step(
                    self,
                    code,
                    int(result["seq"]),
                    int(result["order_id"]),
                    int(result["value"]),
                    mine,
                )
            )
        assert position == len(events)
        if all(step.seq == 0 for step in steps):
            assert self._snapshot() == before, "a rejected command changed the state"
        return steps

    def check(self) -> None:
        """Invariants hold and every asset adds up to what was deposited."""
        assert self.engine.check_invariants() == []
        for asset in self.config.assets:
            summary = self.engine.asset_summary(asset.index)
            assert summary.total == self.deposits[asset.index], asset.name
            assert summary.available + summary.frozen == summary.total
            assert summary.available >= 0
            assert summary.frozen >= 0

    # ---------------------------------------------------------------- reading

    def balance(self, user: int, asset: int) -> tuple[str, str]:
        """(available, frozen) as decimal strings."""
        available, frozen = self.engine.balance(user, asset)
        return self.text(available, asset), self.text(frozen, asset)

    def book_ids(self, side: int, market: int = BTC_USDT) -> list[int]:
        """Ids of one side of the book in priority order."""
        return [o.id for o in self.engine.book(market, side, 0, 1000)[1]]

    def describe(self, event: np.void) -> tuple[object, ...]:
        """One event in the compact form of ``Step.brief``."""
        kind = int(event["kind"])
        if kind == EventKind.BALANCE:
            asset = int(event["asset"])
            return (
                "BAL",
                int(event["user"]),
                self.config.assets[asset].name,
                Business(int(event["reason"])).name,
                self.text(int(event["deal_money"]), asset),
                self.text(int(event["deal_fee"]), asset),
            )
        if kind == EventKind.DEAL:
            m = self.market(int(event["market"]))
            return (
                "DEAL",
                int(event["order_id"]),
                int(event["maker_order"]),
                format_units(int(event["price"]), m.money_prec),
                format_units(int(event["amount"]), m.stock_prec),
            )
        if kind == EventKind.ORDER_FINISH:
            return ("FINISH", int(event["order_id"]), FinishReason(int(event["reason"])).name)
        if kind == EventKind.MARKET_STATUS:
            status = MarketStatus(int(event["reason"])).name
            return ("MARKET", int(event["market"]), MarketStatus(int(event["amount"])).name, status)
        if kind == EventKind.MARKET_LIMIT:
            limit = RiskLimit(int(event["reason"])).name
            return ("LIMIT", int(event["market"]), limit, int(event["amount"]), int(event["left"]))
        if kind == EventKind.USER_LIMIT:
            limit = RiskLimit(int(event["reason"])).name
            return (
                "ULIMIT",
                int(event["user"]),
                int(event["market"]),
                limit,
                int(event["amount"]),
                int(event["left"]),
            )
        if kind == EventKind.USER_STATUS:
            status = UserStatus(int(event["reason"])).name
            return ("USER", int(event["user"]), UserStatus(int(event["amount"])).name, status)
        name = "PUT" if kind == EventKind.ORDER_PUT else "UPDATE"
        return (name, int(event["order_id"]))
