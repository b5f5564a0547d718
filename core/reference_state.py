"""The state of the reference engine (``core.reference``) and everything that reads it.

``ReferenceState`` holds the counters, supply, balances, accounts, update keys and
books; it moves a balance (with its BALANCE event) and writes the events of a command;
and it answers the queries, computes the canonical state and its hash, and checks the
invariants. ``ReferenceEngine`` adds the commands on top. Money is ``decimal.Decimal``
in the asset; conversions to integer units must be exact (else ``InternalError``).
Decisions on points the contract leaves open are marked ``# SPEC:``.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

import numpy as np

from core.catalog import canonical_catalog
from core.config import LIMIT_NAMES, NO_LIMITS, EngineConfig, Market, with_limits
from core.errors import InternalError
from core.reference_book import (
    EXACT,
    ZERO,
    MarketBook,
    RefOrder,
    check_book,
    dec,
    exact_units,
    give_asset,
    order_ints,
    risk_refusal,
)
from core.reference_command import SIDES
from core.schema import (
    EVENT_DTYPE,
    MAX_SUPPLY_UNITS,
    Business,
    EventKind,
    FinishReason,
    MarketStatus,
    Result,
    UserStatus,
)
from core.statehash import (
    CANON_BALANCE_DTYPE,
    CANON_CLIENT_ID_DTYPE,
    CANON_ORDER_DTYPE,
    CANON_USER_LIMIT_DTYPE,
    CANON_USER_STATUS_DTYPE,
    state_hash,
)
from core.views import AssetSummary, MarketSummary, OrderView

Event = dict[str, int | bytes]


class ReferenceState:
    """The reference engine's state, its balance moves and events, and its reads."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._seq = 0
        self._order_id = 0
        self._deal_id = 0
        self._supply: list[Decimal] = [ZERO for _ in config.assets]
        #: (user, asset) -> [available, frozen], in the asset.
        self._balances: dict[tuple[int, int], list[Decimal]] = {}
        # SPEC: the fee account exists from the start and takes one of max_users.
        self._accounts: set[int] = {config.fee_user}
        self._keys: set[bytes] = set()
        #: (user, client id) -> the order placed with it, permanent.
        self._client_ids: dict[tuple[int, int], int] = {}
        self._books = [MarketBook(market) for market in config.markets]
        self._market_status = [MarketStatus.OPEN for _ in config.markets]
        #: The users whose status is not ACTIVE.
        self._user_status: dict[int, UserStatus] = {}
        #: (user, market) -> [max_order_amount lots, max_notional money units], 0: none.
        #: A pair stays once set, also when both are set back to 0 (docs/engine.md,
        #: "User risk limits").
        self._user_limits: dict[tuple[int, int], list[int]] = {}
        self._events: list[Event] = []
        self._ts_ns = 0

    # ------------------------------------------------------------------ balances, events

    def _available(self, user: int, asset: int) -> Decimal:
        entry = self._balances.get((user, asset))
        return entry[0] if entry is not None else ZERO

    def _change(
        self,
        user: int,
        asset: int,
        d_available: Decimal,
        d_frozen: Decimal,
        order: RefOrder | None,
        reason: Business,
        deal_id: int = 0,
        *,
        ctime_ns: int = 0,
    ) -> None:
        """Move a balance and emit its BALANCE event (values after, and the changes)."""
        entry = self._balances.setdefault((user, asset), [ZERO, ZERO])
        entry[0] += d_available
        entry[1] += d_frozen
        if entry[0] < 0 or entry[1] < 0:
            raise InternalError(f"balance of user {user} asset {asset} went negative")
        prec = self.config.assets[asset].prec
        self._emit(
            kind=EventKind.BALANCE,
            reason=reason,
            user=user,
            asset=asset,
            market=-1 if order is None else order.market,
            order_id=0 if order is None else order.id,
            deal_id=deal_id,
            left=exact_units(entry[0], prec),
            deal_stock=exact_units(entry[1], prec),
            deal_money=exact_units(d_available, prec),
            deal_fee=exact_units(d_frozen, prec),
            ctime_ns=ctime_ns,
        )

    def _user_refusal(
        self, book: MarketBook, user: int, amount: Decimal | None, value: Decimal | None
    ) -> Result | None:
        """The user's own limits in ``book``'s market: ``amount`` (stock; None for a
        market bid) against max_order_amount, then ``value`` (money; None for a market
        ask) against max_notional; None if within them (or none is set)."""
        limits = self._user_limits.get((user, book.market.index))
        if limits is None:
            return None
        most, high = limits
        if amount is not None and most and amount > book.scales.lots(most):
            return Result.USER_AMOUNT_TOO_LARGE
        if value is not None and high and value > book.scales.money(high):
            return Result.USER_NOTIONAL_TOO_LARGE
        return None

    def _order_refusal(
        self, book: MarketBook, user: int, price: Decimal, amount: Decimal
    ) -> Result | None:
        """The market's risk limits, then the user's own, for ``amount`` stock at
        ``price`` (a limit order, a replace's new price and left, a quote level)."""
        refusal = risk_refusal(book, price, amount)
        if refusal is not None:
            return refusal
        return self._user_refusal(book, user, amount, price * amount)

    def _emit(self, **fields: int | bytes) -> None:
        fields["seq"] = self._seq
        fields["ts_ns"] = self._ts_ns
        self._events.append(fields)

    def _order_event(
        self, kind: EventKind, order: RefOrder, reason: FinishReason = FinishReason.NONE
    ) -> None:
        ints = order_ints(self._books[order.market].scales, order)
        self._emit(
            kind=kind,
            reason=reason,
            market=order.market,
            order_id=order.id,
            user=order.user,
            side=order.side,
            otype=order.otype,
            price=ints.price,
            amount=ints.amount,
            left=ints.left,
            deal_stock=ints.deal_stock,
            deal_money=ints.deal_money,
            deal_fee=ints.deal_fee,
            taker_rate=ints.taker_rate,
            maker_rate=ints.maker_rate,
            ctime_ns=order.ctime_ns,
            mtime_ns=order.mtime_ns,
            tif=order.tif,
            stp=order.stp,
            flags=order.flags,
            source_len=len(order.source),
            source=order.source,
        )

    def _event_array(self) -> np.ndarray:
        out = np.zeros(len(self._events), dtype=EVENT_DTYPE)
        for i, event in enumerate(self._events):
            for name, value in event.items():
                if isinstance(value, bytes):
                    out[name][i, : len(value)] = np.frombuffer(value, dtype=np.uint8)
                else:
                    out[name][i] = value
        return out

    # ------------------------------------------------------------------ queries

    def counters(self) -> tuple[int, int, int]:
        """``(seq, last order id, last deal id)``."""
        return self._seq, self._order_id, self._deal_id

    def market_status(self, market: int) -> MarketStatus:
        """The market's status (OPEN for a market that is not configured)."""
        if not 0 <= market < len(self._market_status):
            return MarketStatus.OPEN
        return self._market_status[market]

    def current_market(self, market: int) -> Market | None:
        """The configured market with the risk limits it has now; None if unknown."""
        if not 0 <= market < len(self._books):
            return None
        return self._books[market].market

    def user_status(self, user: int) -> UserStatus:
        """The user's status (ACTIVE for a user without one)."""
        return self._user_status.get(user, UserStatus.ACTIVE)

    def user_limits(self, user: int, market: int) -> tuple[int, int]:
        """``(max_order_amount lots, max_notional money units)`` of the user in the
        market (0: none); (0, 0) for a pair without limits or out of range."""
        limits = self._user_limits.get((user, market))
        return (0, 0) if limits is None else (limits[0], limits[1])

    def balance(self, user: int, asset: int) -> tuple[int, int]:
        """``(available, frozen)`` in units; (0, 0) for an unknown user or asset."""
        # SPEC: queries never raise; out-of-range arguments give (0, 0), None, (0, []),
        # ([], []) or zero summaries.
        entry = self._balances.get((user, asset))
        if entry is None or not 0 <= asset < len(self.config.assets):
            return 0, 0
        prec = self.config.assets[asset].prec
        with localcontext(EXACT):
            return exact_units(entry[0], prec), exact_units(entry[1], prec)

    def order(self, market: int, order_id: int) -> OrderView | None:
        """The resting order, or None (also for an unknown market)."""
        if not 0 <= market < len(self._books):
            return None
        order = self._books[market].index.get(order_id)
        return None if order is None else self._view(order)

    def pending(
        self, user: int, market: int, offset: int, limit: int
    ) -> tuple[int, list[OrderView]]:
        """``(total, orders)``: the user's resting orders, newest (highest id) first."""
        if not 0 <= market < len(self._books):
            return 0, []
        mine = [o for o in self._books[market].index.values() if o.user == user]
        mine.sort(key=lambda o: o.id, reverse=True)
        return len(mine), [self._view(o) for o in _page(mine, offset, limit)]

    def book(self, market: int, side: int, offset: int, limit: int) -> tuple[int, list[OrderView]]:
        """``(total, orders)`` of one side in priority order."""
        if not 0 <= market < len(self._books) or side not in SIDES:
            return 0, []
        orders = list(self._books[market].side(side).orders())
        return len(orders), [self._view(o) for o in _page(orders, offset, limit)]

    def depth(
        self, market: int, limit: int, interval: int
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """``(asks, bids)`` as (price ticks, lots); merged to ``interval`` ticks if > 0
        (asks rounded up, bids down); at most ``limit`` levels per side."""
        if not 0 <= market < len(self._books):
            return [], []
        book = self._books[market]
        with localcontext(EXACT):
            # SPEC: an interval <= 0 means no merging.
            step = book.scales.price(interval) if interval > 0 else None
            ticks, lots = book.scales.ticks_of, book.scales.lots_of
            asks = [(ticks(p), lots(q)) for p, q in book.asks.depth(limit, step)]
            bids = [(ticks(p), lots(q)) for p, q in book.bids.depth(limit, step)]
            return asks, bids

    def market_summary(self, market: int) -> MarketSummary:
        """Counts and summed ``left`` (lots) of both sides."""
        if not 0 <= market < len(self._books):
            return MarketSummary(0, 0, 0, 0)
        book = self._books[market]
        with localcontext(EXACT):
            ask_lots = sum((level.total for level in book.asks.levels), ZERO)
            bid_lots = sum((level.total for level in book.bids.levels), ZERO)
            return MarketSummary(
                ask_count=book.asks.count(),
                ask_lots=book.scales.lots_of(ask_lots),
                bid_count=book.bids.count(),
                bid_lots=book.scales.lots_of(bid_lots),
            )

    def asset_summary(self, asset: int) -> AssetSummary:
        """Totals over all accounts and counts of accounts with a non-zero entry."""
        if not 0 <= asset < len(self.config.assets):
            return AssetSummary(0, 0, 0, 0, 0)
        prec = self.config.assets[asset].prec
        with localcontext(EXACT):
            entries = [e for (_, a), e in self._balances.items() if a == asset]
            available = sum((e[0] for e in entries), ZERO)
            frozen = sum((e[1] for e in entries), ZERO)
            # SPEC: total is the sum of available + frozen (== supply when sound).
            return AssetSummary(
                total=exact_units(available + frozen, prec),
                available_count=sum(1 for e in entries if e[0] != 0),
                available=exact_units(available, prec),
                frozen_count=sum(1 for e in entries if e[1] != 0),
                frozen=exact_units(frozen, prec),
            )

    def _view(self, order: RefOrder) -> OrderView:
        with localcontext(EXACT):
            ints = order_ints(self._books[order.market].scales, order)
        return OrderView(
            id=order.id,
            market=order.market,
            user=order.user,
            side=order.side,
            otype=order.otype,
            price=ints.price,
            amount=ints.amount,
            left=ints.left,
            deal_stock=ints.deal_stock,
            deal_money=ints.deal_money,
            deal_fee=ints.deal_fee,
            taker_rate=ints.taker_rate,
            maker_rate=ints.maker_rate,
            ctime_ns=order.ctime_ns,
            mtime_ns=order.mtime_ns,
            tif=order.tif,
            stp=order.stp,
            flags=order.flags,
            source=order.source.decode("utf-8"),
        )

    # ------------------------------------------------------------------ state

    def state_hash(self) -> str:
        """BLAKE2b-128 of the canonical state (core/statehash.py)."""
        with localcontext(EXACT):
            return state_hash(*self.canonical_state())

    def canonical_state(self) -> tuple[np.ndarray, ...]:
        """(counters, supply, balances, key digests, orders, client ids, market
        status, user status, last prices, market limits, user limits, assets,
        markets) as ``state_hash`` takes them; the last two are the catalog, genesis
        and added (``core.catalog.canonical_catalog``)."""
        with localcontext(EXACT):
            counters = np.array([self._seq, self._order_id, self._deal_id], dtype="<i8")
            precs = [a.prec for a in self.config.assets]
            supply = np.array(
                [exact_units(s, p) for s, p in zip(self._supply, precs, strict=True)], dtype="<i8"
            )
            rows = sorted(
                (user, asset, exact_units(e[0], precs[asset]), exact_units(e[1], precs[asset]))
                for (user, asset), e in self._balances.items()
                if e[0] != 0 or e[1] != 0
            )
            balances = np.array(rows, dtype=CANON_BALANCE_DTYPE)
            digests = b"".join(sorted(self._keys))
            keys = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 16).copy()
            resting = [
                order
                for book in self._books
                for side in (book.asks, book.bids)
                for order in side.orders()
            ]
            orders = np.zeros(len(resting), dtype=CANON_ORDER_DTYPE)
            for i, order in enumerate(resting):
                self._canon_order(orders, i, order)
            client_ids = np.array(
                sorted((user, cid, oid) for (user, cid), oid in self._client_ids.items()),
                dtype="<i8",
            ).reshape(-1, 3)
            canon_ids = np.zeros(len(client_ids), dtype=CANON_CLIENT_ID_DTYPE)
            for j, name in enumerate(("user", "client_id", "order_id")):
                canon_ids[name] = client_ids[:, j]
            markets = np.array(self._market_status, dtype="<i8")
            users = np.array(sorted(self._user_status.items()), dtype="<i8").reshape(-1, 2)
            canon_users = np.zeros(len(users), dtype=CANON_USER_STATUS_DTYPE)
            canon_users["user"] = users[:, 0]
            canon_users["status"] = users[:, 1]
            last = np.array(
                [
                    0 if book.last_price is None else book.scales.ticks_of(book.last_price)
                    for book in self._books
                ],
                dtype="<i8",
            )
            limits = np.array(
                [[getattr(book.market, name) for name in LIMIT_NAMES] for book in self._books],
                dtype="<i8",
            ).reshape(-1, len(LIMIT_NAMES))
            # SPEC: every pair in the table, also one whose limits are both 0 again.
            user_limits = np.array(
                sorted(
                    (user, market, *values) for (user, market), values in self._user_limits.items()
                ),
                dtype="<i8",
            ).reshape(-1, 4)
            canon_limits = np.zeros(len(user_limits), dtype=CANON_USER_LIMIT_DTYPE)
            for j, name in enumerate(CANON_USER_LIMIT_DTYPE.names or ()):
                canon_limits[name] = user_limits[:, j]
        catalog_assets, catalog_markets = canonical_catalog(self.config)
        return (
            counters, supply, balances, keys, orders, canon_ids, markets, canon_users, last,
            limits, canon_limits, catalog_assets, catalog_markets,
        )  # fmt: skip

    def _canon_order(self, out: np.ndarray, i: int, order: RefOrder) -> None:
        ints = order_ints(self._books[order.market].scales, order)
        row = {
            "market": order.market,
            "id": order.id,
            "user": order.user,
            "side": order.side,
            "price": ints.price,
            "amount": ints.amount,
            "left": ints.left,
            "deal_money": ints.deal_money,
            "deal_fee": ints.deal_fee,
            "ctime_ns": order.ctime_ns,
            "mtime_ns": order.mtime_ns,
            "taker_rate": ints.taker_rate,
            "maker_rate": ints.maker_rate,
            "tif": order.tif,
            "stp": order.stp,
            "flags": order.flags,
            "source_len": len(order.source),
        }
        for name, value in row.items():
            out[name][i] = value
        out["source"][i, : len(order.source)] = np.frombuffer(order.source, dtype=np.uint8)

    def check_invariants(self) -> list[str]:
        """Violations of the engine's invariants; empty when sound."""
        with localcontext(EXACT):
            problems = self._check_balances()
            for book in self._books:
                problems += check_book(book)
            problems += self._check_reserves()
        if len(self._accounts) > self.config.max_users:
            problems.append(f"{len(self._accounts)} accounts > max_users")
        if len(self._keys) > self.config.max_update_keys:
            problems.append(f"{len(self._keys)} update keys > max_update_keys")
        if len(self._client_ids) > self.config.max_client_ids:
            problems.append(f"{len(self._client_ids)} client order ids > max_client_ids")
        if any(user not in self._accounts for user in self._user_status):
            problems.append("a user with a status has no account")
        return problems + self._check_user_limits() + self._check_catalog()

    def _check_catalog(self) -> list[str]:
        """The catalog (``self.config``) against the lists kept per asset and per
        market, and within its room."""
        config, problems = self.config, []
        if len(config.assets) > config.asset_slots or len(config.markets) > config.market_slots:
            problems.append("the catalog holds more than its room")
        if len(self._supply) != len(config.assets):
            problems.append(f"{len(self._supply)} supplies for {len(config.assets)} assets")
        if not len(self._books) == len(self._market_status) == len(config.markets):
            problems.append(
                f"{len(self._books)} books and {len(self._market_status)} statuses for "
                f"{len(config.markets)} markets"
            )
        for i, asset in enumerate(config.assets):
            if asset.index != i:
                problems.append(f"asset {asset.name} has index {asset.index} at {i}")
        for i, (market, book) in enumerate(zip(config.markets, self._books, strict=False)):
            # Only the risk limits of a book's market may differ (MARKET_LIMIT).
            if market.index != i or with_limits(book.market, NO_LIMITS) != with_limits(
                market, NO_LIMITS
            ):
                problems.append(f"market {market.name} at {i}: its book's market differs")
            if any(asset not in config.assets for asset in (market.stock, market.money)):
                problems.append(f"market {market.name}: its assets are not the catalog's")
        if any(not 0 <= asset < len(config.assets) for _, asset in self._balances):
            problems.append("a balance of an asset outside the catalog")
        return problems

    def _check_user_limits(self) -> list[str]:
        problems = []
        if len(self._user_limits) > self.config.max_user_limits:
            problems.append(f"{len(self._user_limits)} user limit pairs > max_user_limits")
        for (user, market), (most, high) in self._user_limits.items():
            if (
                user == self.config.fee_user
                or not 0 <= market < len(self._books)
                or not 0 <= most <= self._books[market].market.max_amount
                or not 0 <= high <= MAX_SUPPLY_UNITS
            ):
                problems.append(f"user {user} market {market}: user limits out of range")
        return problems

    def _check_balances(self) -> list[str]:
        problems = []
        for asset in self.config.assets:
            entries = [e for (_, a), e in self._balances.items() if a == asset.index]
            total = sum((e[0] + e[1] for e in entries), ZERO)
            if total != self._supply[asset.index]:
                problems.append(
                    f"asset {asset.name}: balances sum to {total}, supply is "
                    f"{self._supply[asset.index]}"
                )
            if self._supply[asset.index] > dec(MAX_SUPPLY_UNITS, asset.prec):
                problems.append(f"asset {asset.name}: supply above the limit")
        for (user, asset_index), (available, frozen) in self._balances.items():
            if available < 0 or frozen < 0:
                problems.append(f"user {user} asset {asset_index}: negative balance")
            if (available != 0 or frozen != 0) and user not in self._accounts:
                problems.append(f"user {user} holds funds without an account")
        return problems

    def _check_reserves(self) -> list[str]:
        reserved: dict[tuple[int, int], Decimal] = {}
        problems = []
        for book in self._books:
            for order in book.index.values():
                key = (order.user, give_asset(book.market, order.side))
                reserved[key] = reserved.get(key, ZERO) + order.reserve()
                if order.id > self._order_id:
                    problems.append(f"order {order.id} is above the order id counter")
        for key in set(reserved) | set(self._balances):
            frozen = self._balances.get(key, [ZERO, ZERO])[1]
            if frozen != reserved.get(key, ZERO):
                problems.append(
                    f"user {key[0]} asset {key[1]}: frozen {frozen} but resting orders "
                    f"reserve {reserved.get(key, ZERO)}"
                )
        return problems


# ---------------------------------------------------------------------- helpers


def _page(items: list[RefOrder], offset: int, limit: int) -> list[RefOrder]:
    # SPEC: a negative offset or limit counts as 0 (queries never raise).
    start = max(offset, 0)
    return items[start : start + max(limit, 0)]
