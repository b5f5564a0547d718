"""The MySQL history rows of log records (persistence/history_schema.py, docs/history.md).

Every log record holds an accepted command with its result and all its events
(persistence/frames.py), so the history is a pure function of the log: a record's
rows depend on nothing but the record and the catalog (the engine config's, and the
assets and markets added before it). ``HistoryRows`` turns records into rows for
``order_history``, ``deal_history``, ``balance_history``, ``operation_log`` and
``catalog_history``; the drainer inserts them in the transaction that moves its
position past the records.

What each event gives:

* ORDER_FINISH: one ``order_history`` row, whatever the reason (filled, cancelled,
  expired, self-trade), with the order's final state; ViaBTC skipped orders cancelled
  with nothing filled.
* DEAL: two ``deal_history`` rows, the taker's (role 2) and the maker's (role 1), each
  with its own order, side and fee and the other's order and fee.
* BALANCE: a ``balance_history`` row when the total (available + frozen) changed:
  balance.update (its business and detail), the legs and fees of a trade (business
  ``trade``, ViaBTC's detail ``{"a", "i", "m", "p"}`` and ``"f"`` for fees) and the fee
  account's income (business ``trade_fee``); freezing and unfreezing change no total
  and make no row. So the changes of a user's asset add up to its balance.
* MARKET_STATUS, USER_STATUS, MARKET_LIMIT and USER_LIMIT: no row but the record's
  ``operation_log`` row (they change no order, deal or balance). CANCEL_MARKET's
  events are ordinary ORDER_FINISH (an ``order_history`` row each, whoever the
  owner) and UNFREEZE BALANCE events (no row).
* A QUOTE's events are ordinary order events: its quote orders get their
  ``order_history`` row when they finish (a stale one cancelled by the next QUOTE, a
  fill, a cancel), and their freezes and unfreezes make no row; its record (the QUOTE
  and its levels) gives one ``operation_log`` row, ``mass_quote``, with the ladder.
* ADD_ASSET and ADD_MARKET (RT_CATALOG records): a ``catalog_history`` row (kind,
  name, the command's table) and their ``operation_log`` row (``add_asset`` /
  ``add_market``, user 0, params ``[the command's table]``); the new asset or market
  joins the catalog the later rows are made with (``learn``).
* every record: one ``operation_log`` row, its payload byte for byte and a JSON
  description (ViaBTC's operlog ``{"method", "params"}``; matchd's own commands have
  names and params of their own, see ``_operation_row``).

The rows name assets and markets and scale their values by the catalog: the config's
assets and markets, and those added at run time, learnt from their records as they
come (the catalog only grows, in log order) or read back from the history first
(``persistence.drainer`` reads ``catalog_history`` when it starts: the records
before its position are not read again).

Values are decimal strings at their natural scale (prices at the market's money_prec,
amounts at stock_prec, money and fees at their asset's prec, rates at fee_prec),
exact in ``DECIMAL(38,18)``. Times are the command's time, Unix seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.catalog import catalog_payload
from core.config import AssetConfig, EngineConfig, MarketConfig
from core.fixed import format_units
from core.schema import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    Business,
    CommandKind,
    EventKind,
    MarketStatus,
    RiskLimit,
    Side,
    UserStatus,
)
from persistence.frames import (
    COMMAND_WORDS,
    EVENT_WORDS,
    MAX_EXTRA_COMMANDS,
    RT_BALANCE,
    RT_CATALOG,
    RT_ORDER,
    decode_order,
)
from persistence.log_format import FRAME_HEADER_LENGTH
from persistence.log_reader import Record
from persistence.replay import decode_balance, decode_catalog_record

#: Businesses of balance_history rows that are not balance.update's.
TRADE_BUSINESS = "trade"
FEE_INCOME_BUSINESS = "trade_fee"
#: ViaBTC's operlog method names (other commands keep their own names).
_METHODS = {
    CommandKind.PUT_LIMIT: "limit_order",
    CommandKind.PUT_MARKET: "market_order",
    CommandKind.CANCEL: "cancel_order",
    CommandKind.REPLACE: "replace_order",
    CommandKind.CANCEL_ALL: "cancel_all",
    CommandKind.MARKET_STATUS: "market_status",
    CommandKind.USER_STATUS: "user_status",
    CommandKind.CANCEL_MARKET: "cancel_market",
    CommandKind.QUOTE: "mass_quote",
}
#: The ``operation_log`` methods of the catalog commands (RT_CATALOG).
ADD_ASSET_METHOD = "add_asset"
ADD_MARKET_METHOD = "add_market"
_ORDER_KINDS = (int(EventKind.ORDER_PUT), int(EventKind.ORDER_UPDATE), int(EventKind.ORDER_FINISH))
_TOTAL_CHANGES = (
    int(Business.UPDATE),
    int(Business.TRADE),
    int(Business.FEE),
    int(Business.FEE_INCOME),
)


class HistoryRecordError(ValueError):
    """A log record that does not decode: the log is damaged or of another version."""


@dataclass(frozen=True, slots=True)
class DecodedRecord:
    """A log record's command (or balance.update) and its events, whole again."""

    seq: int
    rtype: int
    ts_ns: int
    events: np.ndarray  #: EVENT_DTYPE, seq and ts_ns filled in
    command: np.void | None = None  #: COMMAND_DTYPE (RT_ORDER)
    order_id: int = 0
    value: int = 0
    #: (user, asset, business, business_id, change, ts_ns, detail) (RT_BALANCE)
    balance: tuple[int, int, bytes, int, int, int, bytes] | None = None
    payload: bytes = b""  #: the record's payload, byte for byte
    #: COMMAND_DTYPE: the records the command holds after ``command`` (a QUOTE's k
    #: QUOTE_LEVEL records); empty or None for every other command
    extra: np.ndarray | None = None
    #: the added asset's or market's config table (RT_CATALOG)
    catalog: AssetConfig | MarketConfig | None = None


class RecordDecoder:
    """Decodes log records (from ``LogReader``) into ``DecodedRecord``, reusing its
    buffers (a record's events are sized when it is read)."""

    def __init__(self, events: int = 1024) -> None:
        """Room for ``events`` events at first; grown when a record has more."""
        self._row = np.zeros(COMMAND_WORDS, dtype=np.int64)
        self._extra = np.zeros((MAX_EXTRA_COMMANDS, COMMAND_WORDS), dtype=np.int64)
        self._events = np.zeros((events, EVENT_WORDS), dtype=np.int64)
        self._buf = np.zeros(4096, dtype=np.uint8)

    def decode(self, record: Record) -> DecodedRecord:
        """Decode ``record``; ``HistoryRecordError`` if it does not decode."""
        if record.rtype == RT_BALANCE:
            return _decode_balance(record)
        if record.rtype == RT_CATALOG:
            return _decode_catalog(record)
        if record.rtype != RT_ORDER:
            raise HistoryRecordError(f"seq {record.seq}: unknown record type {record.rtype}")
        return self._decode_order(record)

    def _decode_order(self, record: Record) -> DecodedRecord:
        size = FRAME_HEADER_LENGTH + len(record.payload)
        padded = size + (-size % 8)
        if self._buf.shape[0] < padded:
            self._buf = np.zeros(2 * padded, dtype=np.uint8)
        buf = self._buf[:padded]
        buf[FRAME_HEADER_LENGTH:size] = np.frombuffer(record.payload, dtype=np.uint8)
        buf[size:] = 0
        count, code, order_id, value, extra, problem = decode_order(
            buf, buf.view(np.int64), 0, padded, self._row, self._extra, self._events
        )
        if not problem and count > self._events.shape[0]:  # sized now: read it again
            self._events = np.zeros((count, EVENT_WORDS), dtype=np.int64)
            count, code, order_id, value, extra, problem = decode_order(
                buf, buf.view(np.int64), 0, padded, self._row, self._extra, self._events
            )
        if problem or code != 0:
            raise HistoryRecordError(f"seq {record.seq}: order record does not add up")
        command = self._row.copy().view(COMMAND_DTYPE)[0]
        levels = self._extra[:extra].copy().view(COMMAND_DTYPE).reshape(extra)
        events = self._events[:count].copy().view(EVENT_DTYPE).reshape(count)
        ts_ns = int(command["ts_ns"])
        events["seq"] = record.seq
        events["ts_ns"] = ts_ns
        return DecodedRecord(
            record.seq, RT_ORDER, ts_ns, events, command, int(order_id), int(value), None,
            record.payload, levels,
        )  # fmt: skip


def _decode_balance(record: Record) -> DecodedRecord:
    """An RT_BALANCE record, decoded (``HistoryRecordError`` if it does not)."""
    try:
        balance, event = decode_balance(record.payload)
    except ValueError as exc:
        raise HistoryRecordError(f"seq {record.seq}: {exc}") from exc
    return DecodedRecord(
        record.seq, RT_BALANCE, balance[5], event, balance=balance, payload=record.payload,
    )  # fmt: skip


def _decode_catalog(record: Record) -> DecodedRecord:
    """An RT_CATALOG record (ADD_ASSET, ADD_MARKET), decoded: no events, its command in
    ``catalog`` (``HistoryRecordError`` if it does not decode)."""
    try:
        ts_ns, raw = decode_catalog_record(record.payload)
    except ValueError as exc:
        raise HistoryRecordError(f"seq {record.seq}: catalog record: {exc}") from exc
    return DecodedRecord(
        record.seq, RT_CATALOG, ts_ns, np.zeros(0, dtype=EVENT_DTYPE), payload=record.payload,
        catalog=raw,
    )  # fmt: skip


def decode_record(record: Record) -> DecodedRecord:
    """Decode one record (``RecordDecoder`` reuses its buffers across many)."""
    return RecordDecoder(events=64).decode(record)


@dataclass(slots=True)
class RowBatch:
    """Rows of consecutive records, by table, in the schema's column order."""

    orders: list[tuple[Any, ...]] = field(default_factory=list)
    deals: list[tuple[Any, ...]] = field(default_factory=list)
    balances: list[tuple[Any, ...]] = field(default_factory=list)
    operations: list[tuple[Any, ...]] = field(default_factory=list)
    catalog: list[tuple[Any, ...]] = field(default_factory=list)
    first_seq: int = 0
    last_seq: int = 0

    @property
    def records(self) -> int:
        """Records the batch covers."""
        return self.last_seq - self.first_seq + 1 if self.last_seq else 0

    @property
    def rows(self) -> int:
        """Rows in all tables."""
        tables = (self.orders, self.deals, self.balances, self.operations, self.catalog)
        return sum(len(rows) for rows in tables)


@dataclass(frozen=True, slots=True)
class MarketScales:
    """What the rows need of a market: its name and its scales."""

    name: str
    money_prec: int  #: price places
    stock_prec: int  #: amount places
    fee_prec: int
    stock_places: int  #: the stock asset's prec (units)
    money_places: int  #: the money asset's prec (units)


class HistoryRows:
    """Turns decoded records into rows (see the module docstring)."""

    def __init__(self, config: EngineConfig) -> None:
        """Precompute the names and scales of ``config``'s markets and assets (the
        catalog the rows start with; ``learn`` adds to it)."""
        #: The config the rows were made with (the catalog grows past it: ``assets``,
        #: ``markets``).
        self.config = config
        self._assets = [(a.name, a.prec) for a in config.assets]
        self._markets = [
            MarketScales(m.name, m.money_prec, m.stock_prec, m.fee_prec, m.stock.prec, m.money.prec)
            for m in config.markets
        ]
        self._asset_index = {name: i for i, (name, _) in enumerate(self._assets)}
        self._market_names = {m.name for m in self._markets}

    @property
    def assets(self) -> tuple[tuple[str, int], ...]:
        """The catalog's assets as (name, prec), in index order."""
        return tuple(self._assets)

    @property
    def markets(self) -> tuple[MarketScales, ...]:
        """The catalog's markets, in index order."""
        return tuple(self._markets)

    @property
    def catalog_size(self) -> tuple[int, int]:
        """(assets, markets) in the catalog: it has grown when this has."""
        return len(self._assets), len(self._markets)

    def learn(self, raw: AssetConfig | MarketConfig) -> bool:
        """Take an added asset or market (an RT_CATALOG record's command, accepted by
        the engine) into the catalog as its next entry: the engine gave it the next
        index (the catalog only grows, in log order). One known by name already (a
        batch built again after a failure, or a catalog read back from the history
        first) is left as it is: False. ``HistoryRecordError`` if a market's assets
        are not in the catalog (records are missing)."""
        if isinstance(raw, AssetConfig):
            if raw.name in self._asset_index:
                return False
            self._asset_index[raw.name] = len(self._assets)
            self._assets.append((raw.name, raw.prec))
            return True
        if raw.name in self._market_names:
            return False
        stock, money = self._asset_index.get(raw.stock), self._asset_index.get(raw.money)
        if stock is None or money is None:
            raise HistoryRecordError(
                f"market {raw.name}: asset {raw.stock if stock is None else raw.money!r} is "
                "not in the catalog: the records that added it are missing"
            )
        self._markets.append(
            MarketScales(raw.name, raw.money_prec, raw.stock_prec, raw.fee_prec,
                         self._assets[stock][1], self._assets[money][1])
        )  # fmt: skip
        self._market_names.add(raw.name)
        return True

    def add(self, batch: RowBatch, record: DecodedRecord) -> None:
        """Append ``record``'s rows to ``batch`` (records must come in sequence)."""
        if batch.last_seq and record.seq != batch.last_seq + 1:
            raise HistoryRecordError(f"seq {record.seq} after {batch.last_seq}: not in order")
        if not batch.first_seq:
            batch.first_seq = record.seq
        batch.last_seq = record.seq
        time_s = record.ts_ns / 1e9
        if record.balance is not None:
            self._balance_update(batch, record, time_s)
            return
        if record.catalog is not None:
            self.catalog_command(batch, record, time_s)
            return
        assert record.command is not None  # noqa: S101 -- RT_ORDER records carry one
        events = record.events
        deals = {int(e["deal_id"]): e for e in events if e["kind"] == EventKind.DEAL}
        rates = {
            int(e["order_id"]): (int(e["taker_rate"]), int(e["maker_rate"]))
            for e in events
            if e["kind"] in _ORDER_KINDS
        }
        for idx, e in enumerate(events):
            kind = int(e["kind"])
            if kind == EventKind.ORDER_FINISH:
                batch.orders.append(self._order_row(record.seq, e, time_s))
            elif kind == EventKind.DEAL:
                batch.deals.extend(self._deal_rows(record.seq, e, time_s))
            elif kind == EventKind.BALANCE and int(e["reason"]) in _TOTAL_CHANGES:
                batch.balances.append(
                    self._trade_balance_row(record.seq, idx, e, time_s, deals, rates)
                )
        batch.operations.append(self._operation_row(record, time_s))

    # ------------------------------------------------------------------ orders

    def _order_row(self, seq: int, e: np.void, time_s: float) -> tuple[Any, ...]:
        m = self._markets[int(e["market"])]
        side = int(e["side"])
        market_bid = int(e["otype"]) == 2 and side == Side.BID
        amount_places = m.money_places if market_bid else m.stock_prec
        source = bytes(e["source"][: int(e["source_len"])]).decode(errors="replace")
        return (
            int(e["order_id"]),
            seq,
            int(e["ctime_ns"]) / 1e9,
            time_s,
            int(e["user"]),
            m.name,
            source,
            int(e["otype"]),
            side,
            format_units(int(e["price"]), m.money_prec),
            format_units(int(e["amount"]), amount_places),
            format_units(int(e["taker_rate"]), m.fee_prec),
            format_units(int(e["maker_rate"]), m.fee_prec),
            format_units(int(e["deal_stock"]), m.stock_prec),
            format_units(int(e["deal_money"]), m.money_places),
            format_units(int(e["deal_fee"]), self._fee_places(m, side)),
            int(e["reason"]),
        )

    @staticmethod
    def _fee_places(m: MarketScales, side: int) -> int:
        """A seller pays its fee in money, a buyer in stock."""
        return m.money_places if side == Side.ASK else m.stock_places

    def _deal_rows(self, seq: int, e: np.void, time_s: float) -> list[tuple[Any, ...]]:
        m = self._markets[int(e["market"])]
        taker_side = int(e["side"])
        maker_side = int(Side.BID) if taker_side == Side.ASK else int(Side.ASK)
        deal_id = int(e["deal_id"])
        price = format_units(int(e["price"]), m.money_prec)
        amount = format_units(int(e["amount"]), m.stock_prec)
        deal = format_units(int(e["deal_money"]), m.money_places)
        taker_fee = format_units(int(e["deal_fee"]), self._fee_places(m, taker_side))
        maker_fee = format_units(int(e["maker_fee"]), self._fee_places(m, maker_side))
        taker, maker = int(e["order_id"]), int(e["maker_order"])
        common = (seq, time_s)
        return [
            (deal_id, 1, *common, int(e["maker_user"]), m.name, maker, taker, maker_side,
             price, amount, deal, maker_fee, taker_fee),
            (deal_id, 2, *common, int(e["user"]), m.name, taker, maker, taker_side,
             price, amount, deal, taker_fee, maker_fee),
        ]  # fmt: skip

    # ------------------------------------------------------------------ balances

    def _balance_columns(self, e: np.void) -> tuple[int, str, str, str]:
        asset_name, places = self._assets[int(e["asset"])]
        change = int(e["deal_money"]) + int(e["deal_fee"])  # available and frozen moves
        total = int(e["left"]) + int(e["deal_stock"])  # available and frozen after
        return int(e["user"]), asset_name, format_units(change, places), format_units(total, places)

    def _trade_balance_row(
        self,
        seq: int,
        idx: int,
        e: np.void,
        time_s: float,
        deals: dict[int, np.void],
        rates: dict[int, tuple[int, int]],
    ) -> tuple[Any, ...]:
        user, asset, change, total = self._balance_columns(e)
        m = self._markets[int(e["market"])]
        order_id = int(e["order_id"])
        reason = int(e["reason"])
        deal = deals.get(int(e["deal_id"]))
        detail: dict[str, Any] = {"i": order_id, "m": m.name}
        if deal is not None:
            detail["a"] = format_units(int(deal["amount"]), m.stock_prec)
            detail["p"] = format_units(int(deal["price"]), m.money_prec)
        if reason == Business.FEE and deal is not None:
            taker_rate, maker_rate = rates.get(order_id, (0, 0))
            is_taker = order_id == int(deal["order_id"])
            detail["f"] = format_units(taker_rate if is_taker else maker_rate, m.fee_prec)
        business = FEE_INCOME_BUSINESS if reason == Business.FEE_INCOME else TRADE_BUSINESS
        return (seq, idx, time_s, user, asset, business, change, total, _json(detail))

    def _balance_update(self, batch: RowBatch, record: DecodedRecord, time_s: float) -> None:
        assert record.balance is not None  # noqa: S101 -- the caller checked
        user, asset, business, business_id, change, _ts, detail = record.balance
        e = record.events[0]
        _, asset_name, change_text, total = self._balance_columns(e)
        detail_text = detail.decode(errors="replace") if detail else "{}"
        business_text = business.decode(errors="replace")
        batch.balances.append(
            (record.seq, 0, time_s, user, asset_name, business_text, change_text, total,
             detail_text)
        )  # fmt: skip
        places = self._assets[asset][1]
        params = [user, asset_name, business_text, business_id, format_units(change, places)]
        batch.operations.append(
            (record.seq, time_s, RT_BALANCE, "update_balance", user,
             _json({"method": "update_balance", "params": [*params, _loads(detail_text)]}),
             record.payload)
        )  # fmt: skip

    # ------------------------------------------------------------------ catalog

    def catalog_command(self, batch: RowBatch, record: DecodedRecord, time_s: float) -> None:
        """An ADD_ASSET's or ADD_MARKET's rows: its ``catalog_history`` row (kind, name,
        its table as JSON) and its ``operation_log`` row (``add_asset`` or
        ``add_market``, user 0, ``params`` [its table]); and the new entry joins the
        catalog (``learn``)."""
        raw = record.catalog
        assert raw is not None  # noqa: S101 -- the caller checked
        self.learn(raw)
        kind, table = catalog_table(raw)
        batch.catalog.append((record.seq, time_s, kind, raw.name, _json(table)))
        method = catalog_method(raw)
        batch.operations.append(
            (record.seq, time_s, RT_CATALOG, method, 0,
             _json({"method": method, "params": [table]}), record.payload)
        )  # fmt: skip

    # ------------------------------------------------------------------ operations

    def _operation_row(self, record: DecodedRecord, time_s: float) -> tuple[Any, ...]:
        """The ``operation_log`` row of an order record. ``params`` are ViaBTC's for
        its methods; matchd's own: ``replace_order`` [user, market, order id, amount,
        price], ``cancel_all`` [user, market, side (0: both)], ``market_status`` [market,
        status name], ``market_limit`` [market, limit name, value in engine units],
        ``user_limit`` [user, market, limit name, value in engine units],
        ``user_status`` [user, status name], ``cancel_market`` [market, side (0: both)],
        ``mass_quote`` [user, market, levels, taker fee, maker fee, source] with levels
        [[side, amount, price], ...] in record order."""
        c = record.command
        assert c is not None  # noqa: S101 -- RT_ORDER
        method = method_name(int(c["kind"]))
        params = self._params(c, record.extra)
        detail = _json({"method": method, "params": params, "order_id": record.order_id})
        return (
            record.seq, time_s, RT_ORDER, method, int(c["user"]), detail,
            record.payload,
        )  # fmt: skip

    def _params(self, c: np.void, extra: np.ndarray | None) -> list[Any]:
        """The ``params`` of the command ``c`` (``extra``: its levels, for a QUOTE)."""
        kind = int(c["kind"])
        m = self._markets[int(c["market"])] if 0 <= int(c["market"]) < len(self._markets) else None
        market = m.name if m else int(c["market"])
        params: list[Any] = [int(c["user"]), market]
        if kind in (CommandKind.PUT_LIMIT, CommandKind.PUT_MARKET) and m is not None:
            params += self._put_params(c, kind, m)
        elif kind == CommandKind.QUOTE and m is not None:
            params += self._quote_params(c, extra, m)
        elif kind == CommandKind.REPLACE and m is not None:
            params += [
                int(c["order_id"]),
                format_units(int(c["amount"]), m.stock_prec),
                format_units(int(c["price"]), m.money_prec),
            ]
        elif kind == CommandKind.CANCEL:
            params.append(int(c["order_id"]))
        elif kind == CommandKind.CANCEL_ALL:
            params.append(int(c["side"]))
        else:
            params = _admin_params(c, kind, market, params)
        return params

    @staticmethod
    def _put_params(c: np.void, kind: int, m: MarketScales) -> list[Any]:
        """A put's params after user and market (ViaBTC's order)."""
        side = int(c["side"])
        market_bid = kind == CommandKind.PUT_MARKET and side == Side.BID
        params: list[Any] = [
            side,
            format_units(int(c["amount"]), m.money_places if market_bid else m.stock_prec),
        ]
        if kind == CommandKind.PUT_LIMIT:
            params.append(format_units(int(c["price"]), m.money_prec))
        params.append(format_units(int(c["taker_rate"]), m.fee_prec))
        if kind == CommandKind.PUT_LIMIT:
            params.append(format_units(int(c["maker_rate"]), m.fee_prec))
        params.append(_source(c))
        if int(c["order_id"]):  # the client order id, the optional last param
            params.append(int(c["order_id"]))
        return params

    @staticmethod
    def _quote_params(c: np.void, extra: np.ndarray | None, m: MarketScales) -> list[Any]:
        """A QUOTE's params after user and market: its ladder (each level's side,
        amount and price, in record order), the rates and source of the orders it
        adds."""
        levels = [
            [int(e["side"]), format_units(int(e["amount"]), m.stock_prec),
             format_units(int(e["price"]), m.money_prec)]
            for e in (extra if extra is not None else ())
        ]  # fmt: skip
        return [
            levels,
            format_units(int(c["taker_rate"]), m.fee_prec),
            format_units(int(c["maker_rate"]), m.fee_prec),
            _source(c),
        ]


def _admin_params(c: np.void, kind: int, market: str | int, params: list[Any]) -> list[Any]:
    """The ``params`` of a market operation ``c`` (``params`` for any other kind)."""
    if kind == CommandKind.MARKET_LIMIT:
        return [market, status_name(RiskLimit, int(c["side"])), int(c["amount"])]
    if kind == CommandKind.USER_LIMIT:
        return [int(c["user"]), market, status_name(RiskLimit, int(c["side"])), int(c["amount"])]
    if kind == CommandKind.MARKET_STATUS:
        return [market, status_name(MarketStatus, int(c["amount"]))]
    if kind == CommandKind.USER_STATUS:
        return [int(c["user"]), status_name(UserStatus, int(c["amount"]))]
    if kind == CommandKind.CANCEL_MARKET:
        return [market, int(c["side"])]
    return params


def catalog_method(raw: AssetConfig | MarketConfig) -> str:
    """The ``operation_log`` method of a catalog command."""
    return ADD_ASSET_METHOD if isinstance(raw, AssetConfig) else ADD_MARKET_METHOD


def catalog_table(raw: AssetConfig | MarketConfig) -> tuple[str, dict[str, Any]]:
    """(``asset`` or ``market``, the command's table): its keys as the config file's,
    only those set (a default left out is the config's default)."""
    ((kind, table),) = json.loads(catalog_payload(raw)).items()
    return kind, table


def method_name(kind: int) -> str:
    """The ``operation_log`` method of a command kind (``kind_<n>`` for a kind this
    build does not know: the row is still written, never a crash)."""
    try:
        known = CommandKind(kind)
    except ValueError:
        return f"kind_{kind}"
    return _METHODS.get(known, known.name.lower())


def status_name(
    statuses: type[MarketStatus] | type[UserStatus] | type[RiskLimit], value: int
) -> str | int:
    """``value``'s lower-case name in ``statuses`` (``"halted"``), or the number
    itself if it is none of them."""
    try:
        return statuses(value).name.lower()
    except ValueError:
        return value


def _source(c: np.void) -> str:
    """A command's source tag as text."""
    return bytes(c["source"][: int(c["source_len"])]).decode(errors="replace")


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
