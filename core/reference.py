"""The reference engine: slow, obviously correct, the test oracle of ``core.engine``.

``ReferenceEngine`` implements ``core.api.EngineAPI`` exactly as docs/engine.md
specifies, independently of the numba engine: money is ``decimal.Decimal`` values of
real assets (prices in money per whole stock, amounts in stock, balances in the asset),
books are sorted Python lists of FIFO levels (``core.reference_book``), and integer
units appear only at the edges -- when a command is read, and when an event, a view or
the canonical state is written (every conversion there must be exact, or
``InternalError`` is raised). A scaling bug in the integer engine therefore shows up as
a difference, not as the same mistake twice.

The engine is six modules: this one holds the order commands and the matching,
``core.reference_catalog`` the catalog commands (ADD_ASSET, ADD_MARKET),
``core.reference_admin`` the market operations, ``core.reference_quote`` the mass
quote, ``core.reference_state`` the state with its balance moves, events, queries,
canonical state and invariants, and ``core.reference_command`` the command record
and its field checks. Decisions on points the contract leaves open are marked ``# SPEC:``.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

import numpy as np

from core.config import Market
from core.errors import InternalError
from core.reference_book import (
    EXACT,
    ZERO,
    MarketBook,
    RefOrder,
    amount_refusal,
    dec,
    fee_asset,
    fee_of,
    fee_units,
    give_asset,
    notional_refusal,
    outside_band,
)
from core.reference_catalog import CatalogCommands
from core.reference_command import TRADING, Outcome, RefCommand, as_int, fields_ok
from core.reference_quote import quote_group
from core.schema import (
    COMMAND_DTYPE,
    MAX_SUPPLY_UNITS,
    MAX_USER_ID,
    RESULT_DTYPE,
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
from core.views import update_key_digest

INT64_MAX = 2**63 - 1


class ReferenceEngine(CatalogCommands):
    """Slow pure-Python matching engine with the exact semantics of docs/engine.md."""

    # ------------------------------------------------------------------ commands

    def execute(self, commands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply a batch of ``COMMAND_DTYPE`` records in order (see ``EngineAPI``)."""
        if commands.dtype != COMMAND_DTYPE or commands.ndim != 1:
            raise TypeError("execute() takes a 1-d array of COMMAND_DTYPE")
        results = np.zeros(len(commands), dtype=RESULT_DTYPE)
        self._events = []
        with localcontext(EXACT):
            i = 0
            while i < len(commands):
                cmd = RefCommand.of(commands[i])
                start = len(self._events)
                seq_before = self._seq
                self._ts_ns = cmd.ts_ns
                if cmd.kind == CommandKind.QUOTE:
                    i = self._quote_records(commands, i, results, seq_before, start)
                    continue
                outcome = self._dispatch(cmd)
                self._record(results, i, outcome, seq_before, start)
                i += 1
        return results, self._event_array()

    def _quote_records(
        self, commands: np.ndarray, i: int, results: np.ndarray, seq_before: int, start: int
    ) -> int:
        """Run the QUOTE at ``commands[i]`` with its levels and write their results;
        returns the index after its group (after the header alone if the levels do
        not follow it)."""
        group = quote_group(commands, i)
        outcome, levels = self._quote(RefCommand.of(commands[i]), group)
        self._record(results, i, outcome, seq_before, start)
        end = len(self._events)
        for j, (order_id, action) in enumerate(levels, start=i + 1):
            # SPEC: a level's result has its quote's code, no seq and no events.
            self._record(results, j, Outcome(outcome.code, order_id, action), self._seq, end)
        return i + 1 + len(levels)

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
        self, results: np.ndarray, i: int, outcome: Outcome, seq_before: int, start: int
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

    def _dispatch(self, cmd: RefCommand) -> Outcome:
        # SPEC: an undefined kind is refused before anything else is looked at (even an
        # unknown market): INVALID_ARGUMENT. BALANCE_UPDATE is not a batch command.
        if cmd.kind not in (
            CommandKind.PUT_LIMIT,
            CommandKind.PUT_MARKET,
            CommandKind.CANCEL,
            CommandKind.REPLACE,
            CommandKind.CANCEL_ALL,
        ):
            return self._operation(cmd)
        if not 0 <= cmd.market < len(self._books):
            return Outcome(Result.UNKNOWN_MARKET)
        if not 0 <= cmd.user <= MAX_USER_ID or not fields_ok(cmd):
            return Outcome(Result.INVALID_ARGUMENT)
        if cmd.kind in TRADING and cmd.user == self.config.fee_user:
            return Outcome(Result.FEE_ACCOUNT_CANNOT_TRADE)
        book = self._books[cmd.market]
        if cmd.kind in (CommandKind.PUT_LIMIT, CommandKind.PUT_MARKET):
            return self._put(book, cmd)
        if cmd.kind == CommandKind.CANCEL:
            return self._cancel(book, cmd)
        if cmd.kind == CommandKind.CANCEL_ALL:
            return self._cancel_all(book, cmd)
        return self._replace(book, cmd)

    def _put(self, book: MarketBook, cmd: RefCommand) -> Outcome:
        """Common check 3 (the client order id), the market's and the user's status,
        the kind's own checks, and the client id recorded if the order was placed."""
        cid = cmd.order_id  # a PUT's client order id; 0 = none
        if cid:
            placed = self._client_ids.get((cmd.user, cid))
            if placed is not None:
                return Outcome(Result.REPEAT_ORDER, placed)
            if len(self._client_ids) >= self.config.max_client_ids:
                return Outcome(Result.CLIENT_ID_TABLE_FULL)
        refusal = self._status_refusal(cmd)
        if refusal is not None:
            return Outcome(refusal)
        if cmd.kind == CommandKind.PUT_LIMIT:
            outcome = self._put_limit(book, cmd)
        else:
            outcome = self._put_market(book, cmd)
        if cid and outcome.code == Result.OK:
            self._client_ids[cmd.user, cid] = outcome.order_id
        return outcome

    def _put_limit(self, book: MarketBook, cmd: RefCommand) -> Outcome:
        market, scales = book.market, book.scales
        if not (
            1 <= cmd.amount <= market.max_amount
            and 1 <= cmd.price <= market.max_price
            and 0 <= cmd.taker_rate < market.fee_den
            and 0 <= cmd.maker_rate < market.fee_den
        ):
            return Outcome(Result.INVALID_ARGUMENT)
        amount, price = scales.lots(cmd.amount), scales.price(cmd.price)
        refusal = self._order_refusal(book, cmd.user, price, amount)
        if refusal is not None:
            return Outcome(refusal)
        cost = amount if cmd.side == Side.ASK else price * amount
        if cost > self._available(cmd.user, give_asset(market, cmd.side)):
            return Outcome(Result.BALANCE_NOT_ENOUGH)
        if amount < scales.min_amount:
            return Outcome(Result.AMOUNT_TOO_SMALL)
        if outside_band(book, price):
            return Outcome(Result.PRICE_OUTSIDE_BAND)
        opposite = book.opposite(cmd.side)
        if cmd.flags & OrderFlag.POST_ONLY and opposite.crosses_best(price):
            return Outcome(Result.POST_ONLY_WOULD_TAKE)
        cap = self.config.max_matches
        if opposite.reach(cmd.user, cmd.stp, price, amount, False, cap) > cap:
            return Outcome(Result.TOO_MANY_MATCHES)
        fok = cmd.tif == TimeInForce.FOK
        if fok and opposite.fok_depth(cmd.user, cmd.stp, price, amount) < amount:
            return Outcome(Result.FOK_NOT_FILLED)
        # The pool and level checks are pessimistic: a GTC order that would fill at once
        # is refused too. POST_ONLY above ignores stp (the best price alone decides).
        if cmd.tif == TimeInForce.GTC and (
            not book.has_free_slot() or book.lacks_level(cmd.side, price)
        ):
            return Outcome(Result.BOOK_FULL)
        # SPEC: pessimistic too: a GTC order is refused when its user already has
        # max_open_orders resting in the market, even if it would fill at once.
        most = market.max_open_orders
        if cmd.tif == TimeInForce.GTC and most:
            resting = sum(1 for o in book.index.values() if o.user == cmd.user)
            if resting >= most:
                return Outcome(Result.TOO_MANY_OPEN_ORDERS)
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
        return Outcome(Result.OK, order.id)

    def _put_market(self, book: MarketBook, cmd: RefCommand) -> Outcome:
        market, scales = book.market, book.scales
        top = market.max_amount if cmd.side == Side.ASK else MAX_SUPPLY_UNITS
        if not (1 <= cmd.amount <= top and 0 <= cmd.taker_rate < market.fee_den):
            return Outcome(Result.INVALID_ARGUMENT)
        # An ask sells stock (lots); a bid spends money (units of the money asset).
        amount = scales.lots(cmd.amount) if cmd.side == Side.ASK else scales.money(cmd.amount)
        # SPEC: the risk limits a market order can be held to before it matches: an
        # ask's amount (step, max_order_amount); a bid's spend (its value) against the
        # notional limits. Then the user's own, the same way.
        if cmd.side == Side.ASK:
            refusal = amount_refusal(book, amount) or self._user_refusal(
                book, cmd.user, amount, None
            )
        else:
            refusal = notional_refusal(book, amount) or self._user_refusal(
                book, cmd.user, None, amount
            )
        if refusal is not None:
            return Outcome(refusal)
        if amount > self._available(cmd.user, give_asset(market, cmd.side)):
            return Outcome(Result.BALANCE_NOT_ENOUGH)
        best = book.opposite(cmd.side).best()
        if best is None:
            return Outcome(Result.NO_ENOUGH_TRADER)
        least = scales.min_amount if cmd.side == Side.ASK else best.price * scales.min_amount
        if amount < least:
            return Outcome(Result.AMOUNT_TOO_SMALL)
        cap = self.config.max_matches
        bid = cmd.side == Side.BID
        if book.opposite(cmd.side).reach(cmd.user, cmd.stp, None, amount, bid, cap) > cap:
            return Outcome(Result.TOO_MANY_MATCHES)
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
        return Outcome(Result.OK, order.id)

    def _cancel(self, book: MarketBook, cmd: RefCommand) -> Outcome:
        order = book.index.get(cmd.order_id)
        if order is None:
            return Outcome(Result.ORDER_NOT_FOUND)
        if order.user != cmd.user:
            return Outcome(Result.USER_NOT_MATCH)
        self._seq += 1
        self._take_off(book, order, FinishReason.CANCELED)
        return Outcome(Result.OK, order.id)

    def _cancel_all(self, book: MarketBook, cmd: RefCommand) -> Outcome:
        mine = sorted(
            (o for o in book.index.values() if o.user == cmd.user and cmd.side in (0, o.side)),
            key=lambda o: o.id,
        )
        if not mine:
            return Outcome(Result.OK)
        # SPEC: at most max_matches orders per command, the oldest; the caller repeats.
        mine = mine[: self.config.max_matches]
        self._seq += 1
        for order in mine:
            self._take_off(book, order, FinishReason.CANCELED)
        # SPEC: the result's order_id is 0 (no single order is addressed).
        return Outcome(Result.OK, 0, len(mine))

    def _replace(self, book: MarketBook, cmd: RefCommand) -> Outcome:
        market, scales = book.market, book.scales
        refusal = self._status_refusal(cmd)
        if refusal is not None:
            return Outcome(refusal)
        if not (1 <= cmd.price <= market.max_price and 1 <= cmd.amount <= market.max_amount):
            return Outcome(Result.INVALID_ARGUMENT)
        # SPEC: a replace is held to the risk limits (the market's, then its user's) at
        # its new price and left, before the order is looked up.
        refusal = self._order_refusal(
            book, cmd.user, scales.price(cmd.price), scales.lots(cmd.amount)
        )
        if refusal is not None:
            return Outcome(refusal)
        order = book.index.get(cmd.order_id)
        if order is None:
            return Outcome(Result.ORDER_NOT_FOUND)
        if order.user != cmd.user:
            return Outcome(Result.USER_NOT_MATCH)
        price, left = scales.price(cmd.price), scales.lots(cmd.amount)
        if price == order.price and left <= order.left:
            self._shrink(book, order, left)
            return Outcome(Result.OK, order.id)
        refusal = self._move_refusal(book, order, price, left)
        if refusal is not None:
            return Outcome(refusal)
        self._seq += 1
        asset = give_asset(market, order.side)
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
        return Outcome(Result.OK, order.id)

    def _move_refusal(
        self, book: MarketBook, order: RefOrder, price: Decimal, left: Decimal
    ) -> Result | None:
        """The checks of a replace that moves ``order`` (it loses priority), in
        docs/engine.md's order; None if it may move."""
        if price != order.price and outside_band(book, price):
            return Result.PRICE_OUTSIDE_BAND
        asset = give_asset(book.market, order.side)
        new_reserve = left if order.side == Side.ASK else price * left
        if new_reserve > self._available(order.user, asset) + order.reserve():
            return Result.BALANCE_NOT_ENOUGH
        if left > order.left and left < book.scales.min_amount:
            return Result.AMOUNT_TOO_SMALL
        if order.flags & OrderFlag.POST_ONLY and book.opposite(order.side).crosses_best(price):
            return Result.POST_ONLY_WOULD_TAKE
        cap = self.config.max_matches
        if book.opposite(order.side).reach(order.user, order.stp, price, left, False, cap) > cap:
            return Result.TOO_MANY_MATCHES
        if book.lacks_level(order.side, price, moving=order):
            return Result.BOOK_FULL
        return None

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
    ) -> Outcome:
        user, asset = as_int(user_arg), as_int(asset_arg)
        business_id, change, ts_ns = as_int(business_id_arg), as_int(change_arg), as_int(ts_arg)
        if user is None or not 0 <= user <= MAX_USER_ID:
            return Outcome(Result.INVALID_ARGUMENT)
        if asset is None or not 0 <= asset < len(self.config.assets):
            return Outcome(Result.UNKNOWN_ASSET)
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
            return Outcome(Result.INVALID_ARGUMENT)
        key = update_key_digest(user, asset, bytes(business), business_id)
        if key in self._keys:
            return Outcome(Result.REPEAT_UPDATE)
        prec = self.config.assets[asset].prec
        amount = dec(change, prec)
        if self._available(user, asset) + amount < 0:
            return Outcome(Result.BALANCE_NOT_ENOUGH)
        if self._supply[asset] + amount > dec(MAX_SUPPLY_UNITS, prec):
            return Outcome(Result.SUPPLY_LIMIT)
        if user not in self._accounts and len(self._accounts) >= self.config.max_users:
            return Outcome(Result.USER_TABLE_FULL)
        if len(self._keys) >= self.config.max_update_keys:
            return Outcome(Result.KEY_TABLE_FULL)
        self._seq += 1
        self._ts_ns = ts_ns
        self._keys.add(key)
        # SPEC: any successful update creates the account, a change of zero included.
        self._accounts.add(user)
        self._supply[asset] += amount
        self._change(user, asset, amount, ZERO, None, Business.UPDATE, ctime_ns=business_id)
        return Outcome(Result.OK)

    # ------------------------------------------------------------------ matching

    def _new_order(
        self,
        cmd: RefCommand,
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
        return self._order(
            cmd, otype, price=price, amount=amount, maker_rate=maker_rate, tif=tif, flags=flags
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
        book.last_price = price
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
