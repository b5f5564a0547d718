"""History rows of a whole batch of records at once, as ``LOAD DATA`` text (docs/history.md).

``persistence.history_rows.HistoryRows`` builds rows one event at a time in Python;
that costs more than MySQL takes to store them. ``BulkRows`` builds the same rows,
value for value, for a whole batch decoded at once (``persistence.history_batch``: the
events of all its records in one ``EVENT_DTYPE`` array); the ``ORDER_FINISH``,
``DEAL`` and ``BALANCE`` rows are selected with masks, decimal columns are written by
the ``format_decimals`` kernel, integers and times by numpy, and each table's rows come out as the
tab-separated text of ``LOAD DATA`` (``TableText``). The ``operation_log`` rows of
records that are rare (balance.update, and commands other than put, cancel and
replace: cancel-all, QUOTE with its ladder, and the market operations MARKET_STATUS,
USER_STATUS, CANCEL_MARKET, MARKET_LIMIT and USER_LIMIT; the catalog commands
ADD_ASSET and ADD_MARKET) come from ``HistoryRows`` and are converted with
``tsv_row``; their events go through the masks like any other (the status and limit
events match none of them). The catalog commands of a batch are taken first: the
assets and markets they add join the catalog (``HistoryRows.learn``), and the arrays
of names and scales are made again, before any row of the batch is made (a record
can name an asset or a market only after the one that added it).

Text columns are escaped for ``LOAD DATA``'s defaults (``FIELDS TERMINATED BY '\\t'
ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'``); the ``record`` of ``operation_log``
travels as hexadecimal and is loaded with ``UNHEX``. Times are the same doubles as
``HistoryRows``' (``ts_ns / 1e9``), written as the shortest text that reads back as
that double.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

import numpy as np

from core.kernels.jit import kernel
from core.schema import Business, CommandKind, EventKind, Side
from persistence.history_batch import DecodedBatch
from persistence.history_rows import (
    FEE_INCOME_BUSINESS,
    TRADE_BUSINESS,
    HistoryRows,
    RowBatch,
)

#: Bytes of one formatted decimal: an int64 at up to 18 places needs at most 21.
DECIMAL_WIDTH: Final = 24
MAX_PLACES: Final = 18
#: Distinct order sources whose texts are kept between batches.
SOURCE_CACHE_ENTRIES: Final = 4096

_ORDER_FINISH = int(EventKind.ORDER_FINISH)
_DEAL = int(EventKind.DEAL)
_BALANCE = int(EventKind.BALANCE)
_ORDER_PUT = int(EventKind.ORDER_PUT)
_ORDER_UPDATE = int(EventKind.ORDER_UPDATE)
_FEE = int(Business.FEE)
_FEE_INCOME = int(Business.FEE_INCOME)
_TOTAL_CHANGES = np.array(
    [int(Business.UPDATE), int(Business.TRADE), _FEE, _FEE_INCOME], dtype=np.int64
)
_ASK = int(Side.ASK)
_BID = int(Side.BID)
_TSV_ESCAPES = ((b"\\", b"\\\\"), (b"\t", b"\\t"), (b"\n", b"\\n"), (b"\0", b"\\0"))

#: The tables, their columns in ``LOAD DATA`` order, and the SET clause.
COLUMNS: Final = {
    "orders": (
        "order_history",
        "id, seq, create_time, finish_time, user_id, market, source, t, side, price, amount, "
        "taker_fee, maker_fee, deal_stock, deal_money, deal_fee, status",
        "",
    ),
    "deals": (
        "deal_history",
        "deal_id, role, seq, time, user_id, market, order_id, deal_order_id, side, price, "
        "amount, deal, fee, deal_fee",
        "",
    ),
    "balances": (
        "balance_history",
        "seq, idx, time, user_id, asset, business, `change`, balance, detail",
        "",
    ),
    "operations": (
        "operation_log",
        "seq, time, rtype, method, user_id, detail, @record",
        " SET record = UNHEX(@record)",
    ),
    "catalog": ("catalog_history", "seq, time, kind, name, detail", ""),
}


# ------------------------------------------------------------------ kernels


@kernel
def format_decimals(  # noqa: C901 -- one flat kernel loop, on purpose
    values: np.ndarray, places: np.ndarray, out: np.ndarray, digits: np.ndarray
) -> None:
    """Write ``values[i]`` * 10**-``places[i]`` into row i of ``out`` (uint8, width at
    least 22, zero-filled by the caller) exactly as ``core.fixed.format_units`` does:
    plain notation, trailing zeros after the point and a bare point removed, ``-``
    for negative values. ``places`` in 0..18; ``digits`` is scratch (uint8, 20)."""
    for i in range(values.shape[0]):
        v = values[i]
        p = places[i]
        negative = v < 0
        n = 0  # digits of |v|, least significant first (|INT64_MIN| done digit by digit)
        while True:
            d = v % 10
            if negative and d != 0:
                d = 10 - d
            digits[n] = d
            n += 1
            v = v // 10
            if negative and d != 0:
                v += 1
            if v == 0:
                break
        if n < p + 1:  # leading zeros: at least one digit before the point
            for k in range(n, p + 1):
                digits[k] = 0
            n = p + 1
        low = 0  # trailing fraction zeros dropped
        while low < p and digits[low] == 0:
            low += 1
        w = 0
        if negative:
            out[i, w] = 45  # '-'
            w += 1
        for k in range(n - 1, p - 1, -1):
            out[i, w] = 48 + digits[k]
            w += 1
        if low < p:
            out[i, w] = 46  # '.'
            w += 1
            for k in range(p - 1, low - 1, -1):
                out[i, w] = 48 + digits[k]
                w += 1


@kernel
def link_balances(
    kinds: np.ndarray,
    order_ids: np.ndarray,
    deal_ids: np.ndarray,
    taker_rates: np.ndarray,
    maker_rates: np.ndarray,
    record_start: np.ndarray,
    record_stop: np.ndarray,
    targets: np.ndarray,
    deal_out: np.ndarray,
    rate_out: np.ndarray,
) -> None:
    """For each balance event ``targets[j]``, the index of its record's last DEAL of
    the same ``deal_id`` (-1: none) and the fee rate that ``HistoryRows`` gives it: the
    taker or maker rate of its record's last order event of the same order (0, 0 when
    there is none), as its order took or made the deal. ``record_start`` and
    ``record_stop`` are per event: the range of its record's events."""
    for j in range(targets.shape[0]):
        i = targets[j]
        lo = record_start[i]
        found = -1
        for k in range(record_stop[i] - 1, lo - 1, -1):
            if kinds[k] == _DEAL and deal_ids[k] == deal_ids[i]:
                found = k
                break
        deal_out[j] = found
        taker = 0
        maker = 0
        for k in range(record_stop[i] - 1, lo - 1, -1):
            kind = kinds[k]
            if (kind == _ORDER_PUT or kind == _ORDER_UPDATE or kind == _ORDER_FINISH) and order_ids[  # noqa: SIM109 -- numba
                k
            ] == order_ids[i]:
                taker = taker_rates[k]
                maker = maker_rates[k]
                break
        if found >= 0 and order_ids[i] == order_ids[found]:
            rate_out[j] = taker
        else:
            rate_out[j] = maker


# ------------------------------------------------------------------ text helpers


def decimals(values: np.ndarray, places: np.ndarray) -> list[bytes]:
    """``format_units(values[i], places[i])`` as ASCII bytes, for every i."""
    n = values.shape[0]
    out = np.zeros((n, DECIMAL_WIDTH), dtype=np.uint8)
    if n:
        format_decimals(
            np.ascontiguousarray(values, dtype=np.int64),
            np.ascontiguousarray(places, dtype=np.int64),
            out,
            np.zeros(20, dtype=np.uint8),
        )
    result = cast(list[bytes], out.view(f"S{DECIMAL_WIDTH}").reshape(n).tolist())
    return result


def integers(values: np.ndarray) -> list[bytes]:
    """Decimal ASCII of integer ``values``."""
    result: list[bytes] = np.asarray(values, dtype=np.int64).astype("S20").tolist()
    return result


def seconds(ns: np.ndarray) -> list[bytes]:
    """``ns / 1e9`` as the shortest text that reads back as that double."""
    result: list[bytes] = [repr(x).encode() for x in (ns.astype(np.float64) / 1e9).tolist()]
    return result


def escape(text: bytes) -> bytes:
    """``text`` escaped for a ``LOAD DATA`` field (default escaping)."""
    for raw, escaped in _TSV_ESCAPES:
        if raw in text:
            text = text.replace(raw, escaped)
    return text


def tsv_field(value: Any) -> bytes:
    """One value of a ``HistoryRows`` row as a ``LOAD DATA`` field (bytes: hex, for
    ``UNHEX``)."""
    if isinstance(value, bool | int):
        return str(int(value)).encode()
    if isinstance(value, float):
        return repr(value).encode()
    if isinstance(value, str):
        return escape(value.encode())
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex().encode()
    raise TypeError(f"no LOAD DATA text for {type(value).__name__}")


def tsv_row(row: Sequence[Any]) -> bytes:
    """A ``HistoryRows`` row as one ``LOAD DATA`` line (without its newline)."""
    return b"\t".join(tsv_field(v) for v in row)


def _json_text(value: str) -> bytes:
    return json.dumps(value).encode()


# ------------------------------------------------------------------ rows


@dataclass(slots=True)
class TableText:
    """Rows of consecutive records, by table (``COLUMNS``' keys), as ``LOAD DATA``
    lines without their newlines."""

    lines: dict[str, list[bytes]] = field(default_factory=lambda: {table: [] for table in COLUMNS})
    first_seq: int = 0
    last_seq: int = 0

    @property
    def records(self) -> int:
        """Records the batch covers."""
        return self.last_seq - self.first_seq + 1 if self.last_seq else 0

    @property
    def rows(self) -> int:
        """Rows in all tables."""
        return sum(len(lines) for lines in self.lines.values())


class BulkRows:
    """Builds the rows of a batch of decoded records at once (see the module docstring)."""

    def __init__(self, config: Any) -> None:
        """Precompute names and scales of ``config``'s markets and assets. ``rows``
        (a ``HistoryRows``) holds the catalog: whoever teaches it, the arrays follow."""
        self.rows = HistoryRows(config)
        self._sources: dict[bytes, tuple[bytes, bytes]] = {}
        self._index_catalog()

    def _index_catalog(self) -> None:
        """The names and scales of the catalog's markets and assets, as arrays (made
        again when it has grown)."""
        self._indexed = self.rows.catalog_size
        assets, markets = self.rows.assets, self.rows.markets
        self._market_names = [escape(m.name.encode()) for m in markets]
        #: JSON strings of the names, escaped for LOAD DATA: the JSON details are made
        #: of these, digits and punctuation, so they need no escaping as a whole.
        self._market_json_tsv = [escape(_json_text(m.name)) for m in markets]
        self._asset_names = [escape(name.encode()) for name, _ in assets]
        self._asset_places = np.array([prec for _, prec in assets] or [0], dtype=np.int64)
        self._money_prec = np.array([m.money_prec for m in markets] or [0], dtype=np.int64)
        self._stock_prec = np.array([m.stock_prec for m in markets] or [0], dtype=np.int64)
        self._fee_prec = np.array([m.fee_prec for m in markets] or [0], dtype=np.int64)
        self._stock_places = np.array([m.stock_places for m in markets] or [0], dtype=np.int64)
        self._money_places = np.array([m.money_places for m in markets] or [0], dtype=np.int64)

    def build(self, batch: DecodedBatch) -> TableText:
        """The rows of ``batch`` (``persistence.history_batch``)."""
        text = TableText(first_seq=batch.first_seq, last_seq=batch.last_seq)
        others = RowBatch()
        for record in batch.catalog:  # first: the rows after them may name what they add
            self.rows.catalog_command(others, record, record.ts_ns / 1e9)
        if self.rows.catalog_size != self._indexed:
            self._index_catalog()
        for record in batch.balances:
            self.rows._balance_update(others, record, record.ts_ns / 1e9)
        if batch.orders:
            events = batch.events
            stops = np.cumsum(batch.counts)
            starts = stops - batch.counts
            # Every event has its record's time: its text is made once per record.
            times = seconds(batch.ts_ns)
            record_of = np.repeat(np.arange(batch.orders), batch.counts)
            self._orders(text, events, times, record_of)
            self._deals(text, events, times, record_of)
            self._balances(
                text, events, np.repeat(starts, batch.counts), np.repeat(stops, batch.counts),
                times, record_of,
            )  # fmt: skip
            self._operations(text, batch, times, others)
        for table in ("balances", "operations", "catalog"):
            text.lines[table].extend(tsv_row(row) for row in getattr(others, table))
        return text

    # ------------------------------------------------------------------ tables

    def _orders(
        self, text: TableText, events: np.ndarray, times: list[bytes], record_of: np.ndarray
    ) -> None:
        selected = np.flatnonzero(events["kind"] == _ORDER_FINISH)
        e = events[selected]
        n = e.shape[0]
        if not n:
            return
        market = e["market"].astype(np.int64)
        side = e["side"].astype(np.int64)
        market_bid = (e["otype"] == 2) & (side == _BID)
        fee_places = np.where(side == _ASK, self._money_places[market], self._stock_places[market])
        values = np.concatenate(
            [e["price"], e["amount"], e["taker_rate"], e["maker_rate"], e["deal_stock"],
             e["deal_money"], e["deal_fee"]]
        )  # fmt: skip
        places = np.concatenate(
            [self._money_prec[market],
             np.where(market_bid, self._money_places[market], self._stock_prec[market]),
             self._fee_prec[market], self._fee_prec[market], self._stock_prec[market],
             self._money_places[market], fee_places]
        )  # fmt: skip
        dec = decimals(values, places)
        names = self._market_names
        sources = self._source_texts(e)
        columns = (
            integers(e["order_id"]), integers(e["seq"]), seconds(e["ctime_ns"]),
            [times[k] for k in record_of[selected].tolist()], integers(e["user"]),
            [names[m] for m in market.tolist()], sources, integers(e["otype"]), integers(side),
            *(dec[k * n : (k + 1) * n] for k in range(7)), integers(e["reason"]),
        )  # fmt: skip
        text.lines["orders"].extend(b"\t".join(row) for row in zip(*columns, strict=True))

    def _source_texts(self, e: np.ndarray) -> list[bytes]:
        return [pair[0] for pair in self._source_pairs(e["source"], e["source_len"])]

    def _deals(
        self, text: TableText, events: np.ndarray, times: list[bytes], record_of: np.ndarray
    ) -> None:
        selected = np.flatnonzero(events["kind"] == _DEAL)
        e = events[selected]
        n = e.shape[0]
        if not n:
            return
        market = e["market"].astype(np.int64)
        taker_side = e["side"].astype(np.int64)
        maker_side = np.where(taker_side == _ASK, _BID, _ASK)
        money, stock = self._money_places[market], self._stock_places[market]
        values = np.concatenate(
            [e["price"], e["amount"], e["deal_money"], e["deal_fee"], e["maker_fee"]]
        )
        places = np.concatenate(
            [self._money_prec[market], self._stock_prec[market], money,
             np.where(taker_side == _ASK, money, stock),
             np.where(maker_side == _ASK, money, stock)]
        )  # fmt: skip
        dec = decimals(values, places)
        price, amount, deal = dec[:n], dec[n : 2 * n], dec[2 * n : 3 * n]
        taker_fee, maker_fee = dec[3 * n : 4 * n], dec[4 * n :]
        deal_id, seq = integers(e["deal_id"]), integers(e["seq"])
        time_s = [times[k] for k in record_of[selected].tolist()]
        names = [self._market_names[m] for m in market.tolist()]
        taker, maker = integers(e["order_id"]), integers(e["maker_order"])
        tside, mside = integers(taker_side), integers(maker_side)
        out = text.lines["deals"]
        for i, (user, maker_user) in enumerate(
            zip(integers(e["user"]), integers(e["maker_user"]), strict=True)
        ):
            head = b"\t".join((seq[i], time_s[i]))
            tail = b"\t".join((price[i], amount[i], deal[i]))
            out.append(
                b"\t".join((deal_id[i], b"1", head, maker_user, names[i], maker[i], taker[i],
                            mside[i], tail, maker_fee[i], taker_fee[i]))
            )  # fmt: skip
            out.append(
                b"\t".join((deal_id[i], b"2", head, user, names[i], taker[i], maker[i],
                            tside[i], tail, taker_fee[i], maker_fee[i]))
            )  # fmt: skip

    def _balances(
        self,
        text: TableText,
        events: np.ndarray,
        rec_start: np.ndarray,
        rec_stop: np.ndarray,
        times: list[bytes],
        record_of: np.ndarray,
    ) -> None:
        kinds = events["kind"]
        targets = np.flatnonzero(
            (kinds == _BALANCE) & np.isin(events["reason"].astype(np.int64), _TOTAL_CHANGES)
        )
        n = targets.shape[0]
        if not n:
            return
        deal_idx = np.empty(n, dtype=np.int64)
        rates = np.empty(n, dtype=np.int64)
        link_balances(
            kinds.astype(np.int64), events["order_id"].copy(), events["deal_id"].copy(),
            events["taker_rate"].astype(np.int64), events["maker_rate"].astype(np.int64),
            rec_start, rec_stop, targets.astype(np.int64), deal_idx, rates,
        )  # fmt: skip
        e = events[targets]
        asset = e["asset"].astype(np.int64)
        market = e["market"].astype(np.int64)
        has_deal = deal_idx >= 0
        deal_rows = events[np.where(has_deal, deal_idx, 0)]
        reason = e["reason"].astype(np.int64)
        asset_places = self._asset_places[asset]
        values = np.concatenate(
            [e["deal_money"] + e["deal_fee"], e["left"] + e["deal_stock"],
             deal_rows["amount"], deal_rows["price"], rates]
        )  # fmt: skip
        places = np.concatenate(
            [asset_places, asset_places, self._stock_prec[market], self._money_prec[market],
             self._fee_prec[market]]
        )  # fmt: skip
        dec = decimals(values, places)
        change, total = dec[:n], dec[n : 2 * n]
        amount, price, rate = dec[2 * n : 3 * n], dec[3 * n : 4 * n], dec[4 * n :]
        seq, idx = integers(e["seq"]), integers(targets - rec_start[targets])
        time_s = [times[k] for k in record_of[targets].tolist()]
        user = integers(e["user"])
        order = integers(e["order_id"])
        out = text.lines["balances"]
        asset_names, market_json = self._asset_names, self._market_json_tsv
        trade, fee_income = TRADE_BUSINESS.encode(), FEE_INCOME_BUSINESS.encode()
        for i, (a, m, r, found) in enumerate(
            zip(asset.tolist(), market.tolist(), reason.tolist(), has_deal.tolist(), strict=True)
        ):
            if not found:
                detail = b'{"i":%s,"m":%s}' % (order[i], market_json[m])
            elif r == _FEE:
                detail = b'{"a":"%s","f":"%s","i":%s,"m":%s,"p":"%s"}' % (
                    amount[i],
                    rate[i],
                    order[i],
                    market_json[m],
                    price[i],
                )
            else:
                detail = b'{"a":"%s","i":%s,"m":%s,"p":"%s"}' % (
                    amount[i],
                    order[i],
                    market_json[m],
                    price[i],
                )
            out.append(
                b"\t".join((seq[i], idx[i], time_s[i], user[i], asset_names[a],
                            fee_income if r == _FEE_INCOME else trade, change[i], total[i],
                            detail))
            )  # fmt: skip

    def _operations(
        self, text: TableText, batch: DecodedBatch, times: list[bytes], others: RowBatch
    ) -> None:
        n = batch.orders
        cmds = batch.commands
        market = cmds["market"].astype(np.int64)
        valid = (market >= 0) & (market < len(self._market_names))
        m = np.where(valid, market, 0)
        kind = cmds["kind"].astype(np.int64)
        side = cmds["side"].astype(np.int64)
        market_bid = (kind == int(CommandKind.PUT_MARKET)) & (side == _BID)
        put_places = np.where(market_bid, self._money_places[m], self._stock_prec[m])
        values = np.concatenate(
            [cmds["amount"], cmds["price"], cmds["taker_rate"], cmds["maker_rate"], cmds["amount"]]
        )
        places = np.concatenate(
            [put_places, self._money_prec[m], self._fee_prec[m], self._fee_prec[m],
             self._stock_prec[m]]
        )  # fmt: skip
        dec = decimals(values, places)
        amount, price = dec[:n], dec[n : 2 * n]
        taker, maker = dec[2 * n : 3 * n], dec[3 * n : 4 * n]
        stock_amount = dec[4 * n :]
        seq, time_s = integers(batch.seqs), times
        user, target = integers(cmds["user"]), integers(cmds["order_id"])
        named = cmds["order_id"].tolist()  # a put's client order id: a last param if set
        sides, result_ids = integers(side), integers(batch.order_ids)
        sources = self._source_json(cmds)
        out = text.lines["operations"]
        market_json = self._market_json_tsv
        put_limit, put_market = int(CommandKind.PUT_LIMIT), int(CommandKind.PUT_MARKET)
        cancel, replace = int(CommandKind.CANCEL), int(CommandKind.REPLACE)
        payloads = batch.payloads
        for i, (k, mk, ok) in enumerate(
            zip(kind.tolist(), m.tolist(), valid.tolist(), strict=True)
        ):
            if not ok or k not in (put_limit, put_market, cancel, replace):
                record = batch.record(i)
                others.operations.append(self.rows._operation_row(record, record.ts_ns / 1e9))
                continue
            head = b"%s,%s" % (user[i], market_json[mk])
            if k == put_limit:
                method = b"limit_order"
                params = b'%s,%s,"%s","%s","%s","%s",%s' % (
                    head, sides[i], amount[i], price[i], taker[i], maker[i], sources[i],
                )  # fmt: skip
                if named[i]:
                    params += b"," + target[i]
            elif k == put_market:
                method = b"market_order"
                params = b'%s,%s,"%s","%s",%s' % (
                    head, sides[i], amount[i], taker[i], sources[i],
                )  # fmt: skip
                if named[i]:
                    params += b"," + target[i]
            elif k == replace:
                method = b"replace_order"
                params = b'%s,%s,"%s","%s"' % (head, target[i], stock_amount[i], price[i])
            else:
                method = b"cancel_order"
                params = b"%s,%s" % (head, target[i])
            detail = b'{"method":"%s","order_id":%s,"params":[%s]}' % (
                method,
                result_ids[i],
                params,
            )
            out.append(
                b"\t".join((seq[i], time_s[i], b"1", method, user[i], detail,
                            payloads[i].hex().encode()))
            )  # fmt: skip

    def _source_json(self, cmds: np.ndarray) -> list[bytes]:
        """The JSON string of each command's source (as ``HistoryRows`` writes it),
        escaped for ``LOAD DATA``."""
        return [pair[1] for pair in self._source_pairs(cmds["source"], cmds["source_len"])]

    def _source_pairs(self, raw: np.ndarray, lengths: np.ndarray) -> list[tuple[bytes, bytes]]:
        """(text, JSON string) of each source ``raw[i][:lengths[i]]``, both escaped for
        ``LOAD DATA``."""
        out = []
        cache = self._sources
        for row, length in zip(raw, lengths.astype(np.int64).tolist(), strict=True):
            key = row[:length].tobytes()
            got = cache.get(key)
            if got is None:
                if len(cache) >= SOURCE_CACHE_ENTRIES:  # bounded, whatever clients send
                    cache.clear()
                decoded = key.decode(errors="replace")
                got = (escape(decoded.encode()), escape(_json_text(decoded)))
                cache[key] = got
            out.append(got)
        return out
