"""The reference engine: slow, obviously correct, the test oracle of ``core.engine``.

``ReferenceEngine`` implements ``core.api.EngineAPI`` exactly as docs/engine.md
specifies, independently of the numba engine: money is ``decimal.Decimal`` values of
real assets (prices in money per whole stock, amounts in stock, balances in the asset),
books are sorted Python lists of FIFO levels (``core.reference_book``), and integer
units appear only at the edges -- when a command is read, and when an event, a view or
the canonical state is written (every conversion there must be exact, or
``InternalError`` is raised). A scaling bug in the integer engine therefore shows up as
a difference, not as the same mistake twice.

Decisions on points the contract leaves open are marked ``# SPEC:``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext

import numpy as np

from core.config import EngineConfig, Market
from core.errors import InternalError
from core.reference_book import (
    EXACT,
    ZERO,
    MarketBook,
    RefOrder,
    check_book,
    dec,
    exact_units,
    fee_asset,
    fee_of,
    fee_units,
    give_asset,
    order_ints,
)
from core.schema import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    MAX_SUPPLY_UNITS,
    MAX_USER_ID,
    RESULT_DTYPE,
    SOURCE_LENGTH,
    Business,
    CommandKind,
    EventKind,
    FinishReason,
    OrderFlag,
    OrderType,
    Result,
    Side,
    StpMode,
    TimeInForce,
)
from core.statehash import CANON_BALANCE_DTYPE, CANON_ORDER_DTYPE, state_hash
from core.views import AssetSummary, MarketSummary, OrderView, update_key_digest

INT64_MAX = 2**63 - 1
_SIDES = (Side.ASK, Side.BID)
_TIFS = tuple(int(t) for t in TimeInForce)
_STPS = tuple(int(s) for s in StpMode)
_FLAG_MASK = int(OrderFlag.POST_ONLY)
#: Commands that may not be given by the fee account.
_TRADING = (CommandKind.PUT_LIMIT, CommandKind.PUT_MARKET, CommandKind.REPLACE)

Event = dict[str, int | bytes]


@dataclass(frozen=True, slots=True)
class _Command:
    """A ``COMMAND_DTYPE`` record as plain Python ints."""

    ts_ns: int
    user: int
    price: int
    amount: int
    order_id: int
    taker_rate: int
    maker_rate: int
    market: int
    kind: int
    side: int
    tif: int
    stp: int
    flags: int
    source_len: int
    source: bytes

    @classmethod
    def of(cls, rec: np.void) -> _Command:
        ints = {name: int(rec[name]) for name in COMMAND_DTYPE.names or () if name != "source"}
        return cls(source=bytes(rec["source"]), **ints)

    def used_source(self) -> bytes:
        # SPEC: bytes after source_len are ignored (need not be zero); events and the
        # canonical state carry the used bytes zero padded.
        return self.source[: max(self.source_len, 0)]


@dataclass(frozen=True, slots=True)
class _Outcome:
    code: Result
    order_id: int = 0
    value: int = 0


def _as_int(value: object) -> int | None:
    """``value`` as an int if it is an integer of any kind (not bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        return None
    return int(value)


def _source_ok(cmd: _Command) -> bool:
    """0 <= source_len <= 30 and the used bytes are UTF-8 without NUL."""
    if not 0 <= cmd.source_len <= SOURCE_LENGTH:
        return False
    used = cmd.used_source()
    if b"\0" in used:
        return False
    try:
        used.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _fields_ok(cmd: _Command) -> bool:
    """Common check 1 for the fields the command's kind uses.

    SPEC: each command is validated on the parameters its heading in docs/engine.md
    lists and ignores the other fields of the record: PUT_LIMIT (side, tif, stp,
    flags, source), PUT_MARKET (side, stp, source -- its record's tif, flags, price and
    maker_rate are ignored; the order gets IOC, 0, 0, 0), CANCEL_ALL (side 0..2),
    CANCEL and REPLACE (none beyond market and user).
    """
    kind = cmd.kind
    if kind == CommandKind.PUT_LIMIT:
        return (
            cmd.side in _SIDES
            and cmd.tif in _TIFS
            and cmd.stp in _STPS
            and cmd.flags >= 0
            and cmd.flags & ~_FLAG_MASK == 0
            and _source_ok(cmd)
        )
    if kind == CommandKind.PUT_MARKET:
        return cmd.side in _SIDES and cmd.stp in _STPS and _source_ok(cmd)
    if kind == CommandKind.CANCEL_ALL:
        return cmd.side in (0, *_SIDES)
    return True


class ReferenceEngine:
    """Slow pure-Python matching engine with the exact semantics of docs/engine.md."""

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
        self._books = [MarketBook(market) for market in config.markets]
        self._events: list[Event] = []
        self._ts_ns = 0

    # ------------------------------------------------------------------ commands

    def execute(self, commands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply a batch of ``COMMAND_DTYPE`` records in order (see ``EngineAPI``)."""
        if commands.dtype != COMMAND_DTYPE or commands.ndim != 1:
            raise TypeError("execute() takes a 1-d array of COMMAND_DTYPE")
        results = np.zeros(len(commands), dtype=RESULT_DTYPE)
        self._events = []
        with localcontext(EXACT):
            for i in range(len(commands)):
                cmd = _Command.of(commands[i])
                start = len(self._events)
                seq_before = self._seq
                self._ts_ns = cmd.ts_ns
                outcome = self._dispatch(cmd)
                self._record(results, i, outcome, seq_before, start)
        return results, self._event_array()

    def balance_update(
        self, user: int, asset: int, business: bytes, business_id: int, change: int, ts_ns: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """ViaBTC's balance.update in units of the asset (see ``EngineAPI``)."""
        results = np.zeros(1, dtype=RESULT_DTYPE)
        self._events = []
        with localcontext(EXACT):
            seq_before = self._seq
            outcome = self._balance_update(user, asset, business, business_id, change, ts_ns)
            self._record(results, 0, outcome, seq_before, 0)
        return results, self._event_array()

    def _record(
        self, results: np.ndarray, i: int, outcome: _Outcome, seq_before: int, start: int
    ) -> None:
        accepted = self._seq != seq_before
        if outcome.code != Result.OK and (accepted or len(self._events) != start):
            raise InternalError(f"rejected command changed state ({outcome.code.name})")
        results["seq"][i] = self._seq if accepted else 0
        results["order_id"][i] = outcome.order_id
        results["value"][i] = outcome.value
        results["code"][i] = outcome.code
        # SPEC: a command without events has event_start = the number of events the
        # batch had produced before it (where its events would have started).
        results["event_start"][i] = start
        results["event_count"][i] = len(self._events) - start

    def _dispatch(self, cmd: _Command) -> _Outcome:
        # SPEC: an undefined kind is refused before anything else is looked at (even an
        # unknown market): INVALID_ARGUMENT. BALANCE_UPDATE is not a batch command.
        if cmd.kind not in (
            CommandKind.PUT_LIMIT,
            CommandKind.PUT_MARKET,
            CommandKind.CANCEL,
            CommandKind.REPLACE,
            CommandKind.CANCEL_ALL,
        ):
            return _Outcome(Result.INVALID_ARGUMENT)
        if not 0 <= cmd.market < len(self._books):
            return _Outcome(Result.UNKNOWN_MARKET)
        if not 0 <= cmd.user <= MAX_USER_ID or not _fields_ok(cmd):
            return _Outcome(Result.INVALID_ARGUMENT)
        if cmd.kind in _TRADING and cmd.user == self.config.fee_user:
            return _Outcome(Result.FEE_ACCOUNT_CANNOT_TRADE)
        book = self._books[cmd.market]
        if cmd.kind == CommandKind.PUT_LIMIT:
            return self._put_limit(book, cmd)
        if cmd.kind == CommandKind.PUT_MARKET:
            return self._put_market(book, cmd)
        if cmd.kind == CommandKind.CANCEL:
            return self._cancel(book, cmd)
        if cmd.kind == CommandKind.CANCEL_ALL:
            return self._cancel_all(book, cmd)
        return self._replace(book, cmd)

    def _put_limit(self, book: MarketBook, cmd: _Command) -> _Outcome:
        market, scales = book.market, book.scales
        if not (
            1 <= cmd.amount <= market.max_amount
            and 1 <= cmd.price <= market.max_price
            and 0 <= cmd.taker_rate < market.fee_den
            and 0 <= cmd.maker_rate < market.fee_den
        ):
            return _Outcome(Result.INVALID_ARGUMENT)
        amount, price = scales.lots(cmd.amount), scales.price(cmd.price)
        cost = amount if cmd.side == Side.ASK else price * amount
        if cost > self._available(cmd.user, give_asset(market, cmd.side)):
            return _Outcome(Result.BALANCE_NOT_ENOUGH)
        if amount < scales.min_amount:
            return _Outcome(Result.AMOUNT_TOO_SMALL)
        opposite = book.opposite(cmd.side)
        if cmd.flags & OrderFlag.POST_ONLY and opposite.crosses_best(price):
            return _Outcome(Result.POST_ONLY_WOULD_TAKE)
        fok = cmd.tif == TimeInForce.FOK
        if fok and opposite.fok_depth(cmd.user, cmd.stp, price, amount) < amount:
            return _Outcome(Result.FOK_NOT_FILLED)
        # The pool and level checks are pessimistic: a GTC order that would fill at once
        # is refused too. POST_ONLY above ignores stp (the best price alone decides).
        if cmd.tif == TimeInForce.GTC and (
            not book.has_free_slot() or book.lacks_level(cmd.side, price)
        ):
            return _Outcome(Result.BOOK_FULL)
        order = self._new_order(
            cmd,
            OrderType.LIMIT,
            price=price,
            amount=amount,
            maker_rate=scales.rate(cmd.maker_rate),
            tif=cmd.tif,
            flags=cmd.flags,
        )
        stopped = self._match(book, order, price)
        self._conclude(book, order, stopped, replaced=False)
        return _Outcome(Result.OK, order.id)

    def _put_market(self, book: MarketBook, cmd: _Command) -> _Outcome:
        market, scales = book.market, book.scales
        top = market.max_amount if cmd.side == Side.ASK else MAX_SUPPLY_UNITS
        if not (1 <= cmd.amount <= top and 0 <= cmd.taker_rate < market.fee_den):
            return _Outcome(Result.INVALID_ARGUMENT)
        # An ask sells stock (lots); a bid spends money (units of the money asset).
        amount = scales.lots(cmd.amount) if cmd.side == Side.ASK else scales.money(cmd.amount)
        if amount > self._available(cmd.user, give_asset(market, cmd.side)):
            return _Outcome(Result.BALANCE_NOT_ENOUGH)
        best = book.opposite(cmd.side).best()
        if best is None:
            return _Outcome(Result.NO_ENOUGH_TRADER)
        least = scales.min_amount if cmd.side == Side.ASK else best.price * scales.min_amount
        if amount < least:
            return _Outcome(Result.AMOUNT_TOO_SMALL)
        # SPEC: a market order has price 0, maker_rate 0, tif IOC and flags 0.
        order = self._new_order(
            cmd,
            OrderType.MARKET,
            price=ZERO,
            amount=amount,
            maker_rate=ZERO,
            tif=TimeInForce.IOC,
            flags=0,
        )
        stopped = self._match(book, order, None)
        self._conclude(book, order, stopped, replaced=False)
        return _Outcome(Result.OK, order.id)

    def _cancel(self, book: MarketBook, cmd: _Command) -> _Outcome:
        order = book.index.get(cmd.order_id)
        if order is None:
            return _Outcome(Result.ORDER_NOT_FOUND)
        if order.user != cmd.user:
            return _Outcome(Result.USER_NOT_MATCH)
        self._seq += 1
        self._take_off(book, order, FinishReason.CANCELED)
        return _Outcome(Result.OK, order.id)

    def _cancel_all(self, book: MarketBook, cmd: _Command) -> _Outcome:
        mine = sorted(
            (o for o in book.index.values() if o.user == cmd.user and cmd.side in (0, o.side)),
            key=lambda o: o.id,
        )
        if not mine:
            return _Outcome(Result.OK)
        self._seq += 1
        for order in mine:
            self._take_off(book, order, FinishReason.CANCELED)
        # SPEC: the result's order_id is 0 (no single order is addressed).
        return _Outcome(Result.OK, 0, len(mine))

    def _replace(self, book: MarketBook, cmd: _Command) -> _Outcome:
        market, scales = book.market, book.scales
        if not (1 <= cmd.price <= market.max_price and 1 <= cmd.amount <= market.max_amount):
            return _Outcome(Result.INVALID_ARGUMENT)
        order = book.index.get(cmd.order_id)
        if order is None:
            return _Outcome(Result.ORDER_NOT_FOUND)
        if order.user != cmd.user:
            return _Outcome(Result.USER_NOT_MATCH)
        price, left = scales.price(cmd.price), scales.lots(cmd.amount)
        if price == order.price and left <= order.left:
            self._shrink(book, order, left)
            return _Outcome(Result.OK, order.id)
        asset = give_asset(market, order.side)
        new_reserve = left if order.side == Side.ASK else price * left
        if new_reserve > self._available(order.user, asset) + order.reserve():
            return _Outcome(Result.BALANCE_NOT_ENOUGH)
        if left > order.left and left < scales.min_amount:
            return _Outcome(Result.AMOUNT_TOO_SMALL)
        if order.flags & OrderFlag.POST_ONLY and book.opposite(order.side).crosses_best(price):
            return _Outcome(Result.POST_ONLY_WOULD_TAKE)
        if book.lacks_level(order.side, price, moving=order):
            return _Outcome(Result.BOOK_FULL)
        self._seq += 1
        reserve = order.reserve()
        self._change(order.user, asset, reserve, -reserve, order, Business.UNFREEZE)
        book.remove(order)
        order.amount += left - order.left
        order.left = left
        order.price = price
        # SPEC: a replaced order's mtime is the replace's time even if nothing fills.
        order.mtime_ns = self._ts_ns
        stopped = self._match(book, order, price)
        self._conclude(book, order, stopped, replaced=True)
        return _Outcome(Result.OK, order.id)

    def _shrink(self, book: MarketBook, order: RefOrder, left: Decimal) -> None:
        """Replace at the same price with no more left: keeps time priority."""
        self._seq += 1
        before = order.reserve()
        order.amount += left - order.left
        book.side(order.side).set_left(order, left)
        order.mtime_ns = self._ts_ns
        freed = before - order.reserve()
        if freed > 0:
            asset = give_asset(book.market, order.side)
            self._change(order.user, asset, freed, -freed, order, Business.UNFREEZE)
        self._order_event(EventKind.ORDER_UPDATE, order)

    def _balance_update(
        self,
        user_arg: object,
        asset_arg: object,
        business: object,
        business_id_arg: object,
        change_arg: object,
        ts_arg: object,
    ) -> _Outcome:
        user, asset = _as_int(user_arg), _as_int(asset_arg)
        business_id, change, ts_ns = _as_int(business_id_arg), _as_int(change_arg), _as_int(ts_arg)
        if user is None or not 0 <= user <= MAX_USER_ID:
            return _Outcome(Result.INVALID_ARGUMENT)
        if asset is None or not 0 <= asset < len(self.config.assets):
            return _Outcome(Result.UNKNOWN_ASSET)
        # SPEC: after the asset, malformed arguments are INVALID_ARGUMENT: a business
        # that is not bytes, or business_id, change or ts_ns not an integer within
        # -INT64_MAX..INT64_MAX (symmetric, so a change can always be negated).
        if (
            business_id is None
            or change is None
            or ts_ns is None
            or not isinstance(business, bytes | bytearray)
            or not all(-INT64_MAX <= v <= INT64_MAX for v in (business_id, change, ts_ns))
        ):
            return _Outcome(Result.INVALID_ARGUMENT)
        key = update_key_digest(user, asset, bytes(business), business_id)
        if key in self._keys:
            return _Outcome(Result.REPEAT_UPDATE)
        prec = self.config.assets[asset].prec
        amount = dec(change, prec)
        if self._available(user, asset) + amount < 0:
            return _Outcome(Result.BALANCE_NOT_ENOUGH)
        if self._supply[asset] + amount > dec(MAX_SUPPLY_UNITS, prec):
            return _Outcome(Result.SUPPLY_LIMIT)
        if user not in self._accounts and len(self._accounts) >= self.config.max_users:
            return _Outcome(Result.USER_TABLE_FULL)
        if len(self._keys) >= self.config.max_update_keys:
            return _Outcome(Result.KEY_TABLE_FULL)
        self._seq += 1
        self._ts_ns = ts_ns
        self._keys.add(key)
        # SPEC: any successful update creates the account, a change of zero included.
        self._accounts.add(user)
        self._supply[asset] += amount
        self._change(user, asset, amount, ZERO, None, Business.UPDATE, ctime_ns=business_id)
        return _Outcome(Result.OK)

    # ------------------------------------------------------------------ matching

    def _new_order(
        self,
        cmd: _Command,
        otype: OrderType,
        *,
        price: Decimal,
        amount: Decimal,
        maker_rate: Decimal,
        tif: int,
        flags: int,
    ) -> RefOrder:
        """Accept the command: next seq and order id; a new order with left = amount."""
        self._seq += 1
        self._order_id += 1
        scales = self._books[cmd.market].scales
        return RefOrder(
            id=self._order_id,
            market=cmd.market,
            user=cmd.user,
            side=cmd.side,
            otype=otype,
            price=price,
            amount=amount,
            left=amount,
            taker_rate=scales.rate(cmd.taker_rate),
            maker_rate=maker_rate,
            ctime_ns=cmd.ts_ns,
            mtime_ns=cmd.ts_ns,
            tif=tif,
            stp=cmd.stp,
            flags=flags,
            source=cmd.used_source(),
        )

    def _match(self, book: MarketBook, taker: RefOrder, limit: Decimal | None) -> bool:
        """Match ``taker`` against the opposite side; True if stopped by self-trade
        prevention. ``limit`` None: a market order (no price limit)."""
        opposite = book.opposite(taker.side)
        while taker.left > 0:
            maker = opposite.head()
            if maker is None or not opposite.crosses(maker.price, limit):
                return False
            # SPEC: self-trade prevention is decided before the market-bid quantity, so
            # an own maker the money left could not buy from is still cancelled
            # (CANCEL_MAKER / CANCEL_BOTH) or still stops the taker (CANCEL_TAKER).
            if maker.user == taker.user and taker.stp != StpMode.NONE:
                if taker.stp != StpMode.CANCEL_TAKER:
                    self._take_off(book, maker, FinishReason.SELF_TRADE)
                if taker.stp != StpMode.CANCEL_MAKER:
                    return True
                continue
            if taker.counts_money:
                # ViaBTC's rule: the most whole lots whose cost fits the money left.
                lot = book.scales.lot
                quantity = min((taker.left // (maker.price * lot)) * lot, maker.left)
                if quantity == 0:
                    return False
            else:
                quantity = min(taker.left, maker.left)
            self._fill(book, taker, maker, quantity)
        return False

    def _fill(self, book: MarketBook, taker: RefOrder, maker: RefOrder, quantity: Decimal) -> None:
        """One deal of ``quantity`` stock at the maker's price, with its events."""
        market = book.market
        self._deal_id += 1
        deal_id = self._deal_id
        price = maker.price
        deal = price * quantity
        taker_fee = fee_of(market, taker.side, taker.taker_rate, quantity, deal)
        maker_fee = fee_of(market, maker.side, maker.maker_rate, quantity, deal)
        self._emit(
            kind=EventKind.DEAL,
            market=market.index,
            side=taker.side,
            order_id=taker.id,
            user=taker.user,
            maker_order=maker.id,
            maker_user=maker.user,
            price=book.scales.ticks_of(price),
            amount=book.scales.lots_of(quantity),
            deal_money=book.scales.money_units_of(deal),
            deal_fee=fee_units(market, taker.side, taker_fee),
            maker_fee=fee_units(market, maker.side, maker_fee),
            deal_id=deal_id,
        )
        self._settle(market, taker, quantity, deal, taker_fee, deal_id, from_frozen=False)
        self._settle(market, maker, quantity, deal, maker_fee, deal_id, from_frozen=True)
        for order, fee in ((taker, taker_fee), (maker, maker_fee)):
            if fee > 0:
                asset = fee_asset(market, order.side)
                fee_user = self.config.fee_user
                # SPEC: a FEE_INCOME event's order_id is the order that paid the fee.
                self._change(fee_user, asset, fee, ZERO, order, Business.FEE_INCOME, deal_id)
        taker.left -= deal if taker.counts_money else quantity
        book.side(maker.side).set_left(maker, maker.left - quantity)
        for order, fee in ((taker, taker_fee), (maker, maker_fee)):
            order.deal_stock += quantity
            order.deal_money += deal
            order.deal_fee += fee
            order.mtime_ns = self._ts_ns
        if maker.left > 0:
            self._order_event(EventKind.ORDER_UPDATE, maker)
        else:
            book.remove(maker)
            self._order_event(EventKind.ORDER_FINISH, maker, FinishReason.FILLED)

    def _settle(
        self,
        market: Market,
        order: RefOrder,
        quantity: Decimal,
        deal: Decimal,
        fee: Decimal,
        deal_id: int,
        *,
        from_frozen: bool,
    ) -> None:
        """The trade legs of one side of a deal: give, receive, pay the fee."""
        give, get = (quantity, deal) if order.side == Side.ASK else (deal, quantity)
        paid = give_asset(market, order.side)
        if from_frozen:
            self._change(order.user, paid, ZERO, -give, order, Business.TRADE, deal_id)
        else:
            self._change(order.user, paid, -give, ZERO, order, Business.TRADE, deal_id)
        got = fee_asset(market, order.side)  # the asset received is the fee asset
        self._change(order.user, got, get, ZERO, order, Business.TRADE, deal_id)
        if fee > 0:
            self._change(order.user, got, -fee, ZERO, order, Business.FEE, deal_id)

    def _conclude(
        self, book: MarketBook, order: RefOrder, stopped: bool, *, replaced: bool
    ) -> None:
        """After matching: finish the taker, or freeze its reserve and rest it."""
        if order.left == 0:
            self._order_event(EventKind.ORDER_FINISH, order, FinishReason.FILLED)
        elif stopped:
            self._order_event(EventKind.ORDER_FINISH, order, FinishReason.SELF_TRADE)
        elif order.otype == OrderType.MARKET or order.tif != TimeInForce.GTC:
            self._order_event(EventKind.ORDER_FINISH, order, FinishReason.EXPIRED)
        else:
            reserve = order.reserve()
            asset = give_asset(book.market, order.side)
            self._change(order.user, asset, -reserve, reserve, order, Business.FREEZE)
            book.add(order)
            kind = EventKind.ORDER_UPDATE if replaced else EventKind.ORDER_PUT
            self._order_event(kind, order)

    def _take_off(self, book: MarketBook, order: RefOrder, reason: FinishReason) -> None:
        """Cancel a resting order: unfreeze its reserve, remove it, report it as it
        stood (mtime unchanged)."""
        reserve = order.reserve()
        asset = give_asset(book.market, order.side)
        self._change(order.user, asset, reserve, -reserve, order, Business.UNFREEZE)
        book.remove(order)
        self._order_event(EventKind.ORDER_FINISH, order, reason)

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
        if not 0 <= market < len(self._books) or side not in _SIDES:
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

    def canonical_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(counters, supply, balances, key digests, orders) as ``state_hash`` takes them."""
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
        return counters, supply, balances, keys, orders

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
