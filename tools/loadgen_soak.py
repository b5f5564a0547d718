"""The soak checks of ``matchd-loadgen --soak``: after the run, through the public API
only (the same driver as the load), the server must show that

1. **funds are conserved**: per asset, the sum of available + freeze over the model's
   users changed by exactly the net of the ``balance.update`` calls it acknowledged
   less the fees its orders paid (``deal_fee``, in the asset the order receives): trades
   only move funds between the users, fees only to the fee account (which ViaBTC's
   API does not show when it is user 0);
2. **no order is lost**: every order id it acknowledged is pending (order.pending of
   its user) or finished (order.finished_detail, once the history has caught up),
   never both;
3. **depth is the book**: order.depth equals, level by level, the sum of ``left`` over
   every order in the book (order.book, both sides, all pages), and each pending order
   of the model's users is in the book with the same ``left``.

``prepare`` empties the model's markets before the run: it cancels every resting order
in them, whoever placed it (a previous run's quotes would trade with the model's users
from outside the ledger), then takes the baseline. The checks assume that nothing
else trades in those markets during the run: soak a server of your own. History
(order.finished) and depth may lag the engine by a moment: what does not match yet is
asked again until ``settle_s`` has passed.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tools.loadgen_drivers import Driver

PAGE = 100  #: order.pending / order.finished page size (ViaBTC's limit is 101)
BOOK_PAGE = 101
DEPTH_LEVELS = 101
WINDOW = 32  #: queries in flight at once
RETRIES = 5
#: Errors worth asking again: ViaBTC's "service unavailable" and "service timeout".
TRANSIENT = frozenset({"3", "5", "timeout"})

#: Report at most this many examples per check.
MAX_EXAMPLES = 10


class SoakQueryError(Exception):
    """A query the checks need failed (the server, not an invariant)."""


@dataclass
class SoakReport:
    """Per check: ``ok`` and, if not, examples of what is wrong."""

    checked: dict[str, Any] = field(default_factory=dict)
    violations: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    def fail(self, check: str, example: str) -> None:
        examples = self.violations.setdefault(check, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(example)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "violations": self.violations}


class Limited:
    """A driver with at most ``WINDOW`` queries in flight, and retries of the errors
    that say "not now" (a busy or slow history right after the run)."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self._slots = asyncio.Semaphore(WINDOW)

    async def call(self, method: str, params: list[Any]) -> Any:
        """The result of ``method(*params)``; ``SoakQueryError`` if it fails for good."""
        async with self._slots:
            for attempt in range(RETRIES):
                result, error = await self.driver.call(method, params)
                if error is None:
                    return result
                if error not in TRANSIENT:
                    break
                await asyncio.sleep(0.2 * 2**attempt)
        raise SoakQueryError(f"{method}{params}: error {error}")


async def _gather(calls: Sequence[Any]) -> list[Any]:
    """Await the coroutines ``calls`` (``Limited`` bounds those in flight), in order."""
    return list(await asyncio.gather(*calls))


@dataclass
class Balances:
    """Per asset, the sum of the shown available + freeze of some users, how many
    balances it adds up, and the unit they are shown in."""

    sums: dict[str, Decimal]
    count: int
    unit: dict[str, Decimal]


async def balance_sums(driver: Limited, users: Iterable[int], assets: Sequence[str]) -> Balances:
    """Per asset, the sum of available + freeze over ``users``, and the unit balances
    are shown in (asset.list's ``prec``, ViaBTC's ``prec_show``)."""
    listed = await driver.call("asset.list", [])
    precs = {str(a["name"]): int(a["prec"]) for a in listed}
    answers = await _gather([driver.call("balance.query", [u, *assets]) for u in users])
    sums: dict[str, Decimal] = dict.fromkeys(assets, Decimal(0))
    for answer in answers:
        for asset in assets:
            sums[asset] += Decimal(answer[asset]["available"]) + Decimal(answer[asset]["freeze"])
    unit = {asset: Decimal(1).scaleb(-precs[asset]) for asset in assets}
    return Balances(sums, 2 * len(answers), unit)


def check_funds(
    report: SoakReport,
    before: Balances,
    after: Balances,
    net: Mapping[str, Decimal],
    fees: Mapping[str, Decimal],
) -> None:
    """Check 1: ``after - before == net - fees`` for every asset, within what showing
    balances truncated can hide: balance.query shows each balance cut to the asset's
    display precision (ViaBTC's ``prec_show``), so each sum can fall short of the true
    one by less than a shown unit per balance."""
    checked: dict[str, Any] = {}
    for asset in sorted(after.sums):
        moved = after.sums[asset] - before.sums[asset]
        expected = net.get(asset, Decimal(0)) - fees.get(asset, Decimal(0))
        tolerance = max(before.count, after.count) * max(before.unit[asset], after.unit[asset])
        checked[asset] = {
            "moved": str(moved),
            "net": str(net.get(asset, 0)),
            "fees": str(fees.get(asset, 0)),
            "tolerance": format(tolerance, "f"),
        }
        if abs(moved - expected) >= tolerance:
            report.fail(
                "funds",
                f"{asset}: balances moved by {moved}; acknowledged changes "
                f"{net.get(asset, 0)} less fees {fees.get(asset, 0)} make {expected} "
                f"(tolerance {tolerance:f})",
            )
    report.checked["funds"] = checked


async def _pages(
    driver: Limited, method: str, head: list[Any], tail: list[Any], key: str, limit: int = PAGE
) -> list[dict[str, Any]]:
    """Every record of a paged query ``method(*head, offset, limit, *tail)``."""
    records: list[dict[str, Any]] = []
    while True:
        page = await driver.call(method, [*head, len(records), limit, *tail])
        got = page[key]
        records.extend(got)
        if len(got) < limit:
            return records


async def pending_orders(driver: Limited, user: int, market: str) -> list[dict[str, Any]]:
    return await _pages(driver, "order.pending", [user, market], [], "records")


async def finished_detail(driver: Limited, order_id: int) -> dict[str, Any] | None:
    """order.finished_detail: the finished order ``order_id``, or None."""
    record: dict[str, Any] | None = await driver.call("order.finished_detail", [order_id])
    return record


async def prepare(
    driver: Limited, users: Sequence[int], markets: Sequence[str], assets: Sequence[str]
) -> Balances:
    """Cancel every order resting in ``markets``, whoever placed it; the baseline
    balances of ``users``."""
    resting = [
        (market, order)
        for market in markets
        for side in (1, 2)
        for order in await _pages(driver, "order.book", [market, side], [], "orders", BOOK_PAGE)
    ]
    cancels = [driver.call("order.cancel", [o["user"], m, o["id"]]) for m, o in resting]
    await _gather(cancels)
    return await balance_sums(driver, users, assets)


def fees_paid(
    orders: Iterable[Mapping[str, Any]], assets_of: Mapping[str, tuple[str, str]]
) -> dict[str, Decimal]:
    """Per asset, the ``deal_fee`` of ``orders``: a bid pays in stock, an ask in money."""
    fees: dict[str, Decimal] = defaultdict(Decimal)
    for order in orders:
        stock, money = assets_of[order["market"]]
        fees[stock if int(order["side"]) == 2 else money] += Decimal(order["deal_fee"])
    return dict(fees)


@dataclass
class Orders:
    """What check 2 saw: the pending orders per (user, market) and the acknowledged
    orders' records (pending or finished) by id."""

    pending: dict[tuple[int, str], list[dict[str, Any]]]
    records: dict[int, dict[str, Any]]


async def check_orders(
    report: SoakReport,
    driver: Limited,
    orders: Mapping[tuple[int, str], Sequence[int]],
    settle_s: float,
) -> Orders:
    """Check 2 (see the module docstring). Each order not pending is looked up by id
    (order.finished_detail: a primary-key read, where paging a user's whole history
    grows with its square), and so is each pending one, which must not be finished."""
    keys = sorted(orders)
    pending = dict(
        zip(keys, await _gather([pending_orders(driver, u, m) for u, m in keys]), strict=True)
    )
    records = {int(o["id"]): o for key in keys for o in pending[key]}
    owner = {i: key for key in keys for i in orders[key]}
    for order_id in await _finished_among(driver, sorted(records)):
        report.fail(
            "orders",
            f"order {order_id} of user {owner.get(order_id, ('?',))[0]} is pending and finished",
        )
    missing = sorted(set(owner) - records.keys())
    deadline = time.monotonic() + settle_s
    while missing:
        found = await _gather([finished_detail(driver, i) for i in missing])
        records.update({i: r for i, r in zip(missing, found, strict=True) if r is not None})
        missing = [i for i, r in zip(missing, found, strict=True) if r is None]
        if not missing or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.5)  # the history may still be draining
    lost: dict[tuple[int, str], list[int]] = defaultdict(list)
    for order_id in missing:
        lost[owner[order_id]].append(order_id)
    for (user, market), ids in sorted(lost.items()):
        report.fail(
            "orders",
            f"{len(ids)} acknowledged order(s) of user {user} in {market} "
            f"neither pending nor finished, e.g. {ids[:5]}",
        )
    report.checked["orders"] = len(owner)
    return Orders(pending, {i: r for i, r in records.items() if i in owner})


async def _finished_among(driver: Limited, order_ids: Sequence[int]) -> list[int]:
    found = await _gather([finished_detail(driver, i) for i in order_ids])
    return [i for i, r in zip(order_ids, found, strict=True) if r is not None]


def _levels(orders: Iterable[Mapping[str, Any]], side: int) -> list[list[Decimal]]:
    """Price levels (``[price, sum of left]``) of ``orders``, best first."""
    sums: dict[Decimal, Decimal] = defaultdict(Decimal)
    for order in orders:
        sums[Decimal(order["price"])] += Decimal(order["left"])
    prices = sorted(sums, reverse=side == 2)
    return [[p, sums[p]] for p in prices]


async def check_depth(
    report: SoakReport,
    driver: Limited,
    markets: Sequence[str],
    pending: Mapping[tuple[int, str], Sequence[Mapping[str, Any]]],
    settle_s: float,
) -> None:
    """Check 3 for every market in ``markets``."""
    deadline = time.monotonic() + settle_s
    levels_checked = 0
    for market in markets:
        while True:
            problems, book, levels = await _compare_depth(driver, market)
            if not problems or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.5)
        levels_checked += levels
        for problem in problems:
            report.fail("depth", problem)
        for (user, name), orders in sorted(pending.items()):
            if name != market:
                continue
            for order in orders:
                left = book.get(int(order["id"]))
                if left != Decimal(order["left"]):
                    report.fail(
                        "depth",
                        f"{market}: pending order {order['id']} of user {user} "
                        f"left {order['left']} is {left} in the book",
                    )
    report.checked["depth_levels"] = levels_checked


async def _compare_depth(driver: Limited, market: str) -> tuple[list[str], dict[int, Decimal], int]:
    depth = await driver.call("order.depth", [market, DEPTH_LEVELS, "0"])
    problems: list[str] = []
    book: dict[int, Decimal] = {}
    levels = 0
    for side, name in ((1, "asks"), (2, "bids")):
        orders = await _pages(driver, "order.book", [market, side], [], "orders", BOOK_PAGE)
        book.update({int(o["id"]): Decimal(o["left"]) for o in orders})
        want = _levels(orders, side)[:DEPTH_LEVELS]
        got = [[Decimal(p), Decimal(a)] for p, a in depth[name]]
        levels += len(got)
        if got != want:
            first = next(
                (i for i, (g, w) in enumerate(zip(got, want, strict=False)) if g != w),
                min(len(got), len(want)),
            )
            problems.append(
                f"{market} {name}: depth has {len(got)} levels, the book {len(want)}; first "
                f"difference at level {first}: depth {_at(got, first)}, book {_at(want, first)}"
            )
    return problems, book, levels


def _at(levels: list[list[Decimal]], i: int) -> str:
    return f"{levels[i][1]} at {levels[i][0]}" if i < len(levels) else "none"
