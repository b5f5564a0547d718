"""ViaBTC's readhistory methods over matchd's MySQL history (persistence/history_schema.py).

``HistoryQueries`` answers ``balance.history``, ``order.deals``, ``order.finished``,
``order.finished_detail`` and ``market.user_deals`` with ViaBTC's parameters,
validation, limits and result shapes (shared/reference/viabtc-api.md §4.3): the same
keys in the same order, newest first, ``offset`` and ``limit`` echoed. Arguments are
typed Python values (the HTTP and WebSocket layers map JSON to them); every one is
checked before any connection is touched, and SQL only ever gets them as bound
parameters.

Pool (persistence/history_pool.py): at most ``pool_size`` read-only connections made
lazily by ``connect``; any thread may call (asyncio callers through
``loop.run_in_executor``); at most ``queue`` callers wait for a connection, one more
is refused at once, and a waiter gives up after ``timeout_s``. A failed connection is
dropped and made again by a later call.

Errors are ``HistoryError``: ``code`` is ViaBTC's number, ``result_code`` the precise
``core.schema.Result``, ``message`` the text for the client:

* 1 (``INVALID_ARGUMENT``, ``UNKNOWN_MARKET``, ``UNKNOWN_ASSET``): a bad argument;
  the message says which and why. Raised before any query.
* 2 (``INTERNAL_ERROR``): the database failed the query (the message names the MySQL
  error number; the full error is logged), or a stored row could not be read.
* 3 (``SERVICE_UNAVAILABLE``): too many callers waiting (ViaBTC answers 3 when
  10 x worker_num queries are queued; the default ``queue`` of 40 is 10 x the default
  ``pool_size``), no connection free within ``timeout_s``, the database unreachable,
  the object closed, or no history configured at all (``HistoryNotConfigured``).

Decimals are written in plain notation with trailing zeros stripped (``plain_decimal``),
as readhistory does with MySQL's text; times are float Unix seconds; a balance change's
``detail`` is parsed into an object (``{}`` if the stored text is not a JSON object,
as readhistory does).

Deliberate differences from ViaBTC's readhistory (docs/compat.md):

* an ``asset`` or ``market`` that the config does not know is ``invalid argument``
  (readhistory has no config and answers an empty page);
* ``user_id`` above 2**32-1 is refused rather than wrapped, and a negative time or
  offset is refused rather than read as a huge unsigned number; ``offset`` is at most
  2**31 (as order.book and order.pending) and ``business`` at most 255 characters (the
  column's width);
* arguments of the wrong type (``True``, ``"5"``, ``1.5``) are refused; readhistory
  reads them as 0;
* ``order.finished`` and ``order.finished_detail`` also show orders cancelled with
  nothing filled (matchd records them, with ``deal_stock`` "0"; ViaBTC writes no row);
* values are exact (``DECIMAL(38,18)``) rather than rounded to ViaBTC's column scales;
* rows come in log order (balance: ``seq, idx``; deals: ``deal_id``, then the taker's
  row before the maker's when a user traded with itself; orders: ``id``) rather than
  by ViaBTC's auto-increment ids, which follow the same order;
* an unreachable database is code 3 (readhistory answers 2 for any failed query);
* messages add the reason after ViaBTC's text (``"invalid argument: limit must be in
  1..101"`` where readhistory says ``"invalid argument"``); the codes are ViaBTC's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final, Protocol

from core.arguments import ArgumentError, int_arg, str_arg
from core.config import EngineConfig
from core.schema import MAX_USER_ID, Result
from persistence.history_pool import HistoryError, HistoryPool, HistoryStats, Row

__all__ = [
    "HistoryError",
    "HistoryNotConfigured",
    "HistoryQueries",
    "HistoryReader",
    "HistoryStats",
    "plain_decimal",
]

logger = logging.getLogger(__name__)

#: readhistory's page size: ``limit`` is 1..MAX_LIMIT.
MAX_LIMIT: Final = 101
#: Largest ``offset`` (as order.book and order.pending).
MAX_OFFSET: Final = 2**31
#: Largest order id and time accepted (BIGINT).
MAX_ID: Final = 2**63 - 1
MAX_TIME: Final = 2**63 - 1
#: Width of ``balance_history.business``: a longer name can match nothing.
MAX_BUSINESS_LENGTH: Final = 255
#: The message of every method of ``HistoryNotConfigured``.
NOT_CONFIGURED_MESSAGE: Final = "history is not configured (no [history] in the config)"

_BALANCE_SQL: Final = (
    "SELECT seq, `time`, asset, business, `change`, balance, detail"
    " FROM balance_history WHERE user_id = %s"
)
_ORDER_COLUMNS: Final = (
    "SELECT id, create_time, finish_time, user_id, market, source, t, side, price, amount,"
    " taker_fee, maker_fee, deal_stock, deal_money, deal_fee"
)
_FINISHED_SQL: Final = _ORDER_COLUMNS + " FROM order_history WHERE user_id = %s AND market = %s"
_DETAIL_SQL: Final = _ORDER_COLUMNS + " FROM order_detail WHERE id = %s"
_ORDER_DEALS_SQL: Final = (
    "SELECT `time`, user_id, deal_id, role, price, amount, deal, fee, deal_order_id"
    " FROM deal_history WHERE order_id = %s ORDER BY deal_id DESC LIMIT %s OFFSET %s"
)
_USER_DEALS_SQL: Final = (
    "SELECT `time`, user_id, deal_id, side, role, price, amount, deal, fee, deal_order_id,"
    " market FROM user_deal_history WHERE user_id = %s AND market = %s"
    " ORDER BY deal_id DESC, role DESC LIMIT %s OFFSET %s"
)
_PAGE_SQL: Final = " LIMIT %s OFFSET %s"


class HistoryReader(Protocol):
    """What the access layers need: ``HistoryQueries`` or ``HistoryNotConfigured``.

    The methods are documented on ``HistoryQueries``.
    """

    def balance_history(
        self,
        user_id: int,
        asset: str,
        business: str,
        start_time: int,
        end_time: int,
        offset: int,
        limit: int,
    ) -> dict[str, Any]: ...

    def order_deals(self, order_id: int, offset: int, limit: int) -> dict[str, Any]: ...

    def order_finished(
        self,
        user_id: int,
        market: str,
        start_time: int,
        end_time: int,
        offset: int,
        limit: int,
        side: int = 0,
    ) -> dict[str, Any]: ...

    def order_finished_detail(self, order_id: int) -> dict[str, Any] | None: ...

    def market_user_deals(
        self, user_id: int, market: str, offset: int, limit: int
    ) -> dict[str, Any]: ...

    def stats(self) -> HistoryStats: ...

    def use_catalog(self, config: EngineConfig) -> None: ...

    def close(self) -> None: ...


def plain_decimal(value: Decimal) -> str:
    """Write ``value`` in plain notation with trailing zeros (and a bare point) removed.

    Parameters
    ----------
    value : Decimal
        A finite decimal, as MySQLdb returns a ``DECIMAL`` column.

    Returns
    -------
    str
        ``"0"`` for any zero (``0E-18``, ``-0``), never an exponent: ``1E-8`` gives
        ``"0.00000001"``, ``7E+3`` gives ``"7000"``, ``1.10000000`` gives ``"1.1"``.

    Raises
    ------
    ValueError
        If ``value`` is NaN or infinite.
    """
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {value}")
    if value.is_zero():
        return "0"
    text = format(value, "f")  # exact: every digit, no exponent, no rounding
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


# ------------------------------------------------------------------ validation


def _invalid(detail: str, result_code: Result = Result.INVALID_ARGUMENT) -> HistoryError:
    return HistoryError(result_code, f"invalid argument: {detail}")


def _int(value: object, what: str, low: int, high: int) -> int:
    try:
        return int_arg(value, what, low, high)
    except ArgumentError as exc:
        raise _invalid(str(exc)) from None


def _str(value: object, what: str) -> str:
    try:
        return str_arg(value, what)
    except ArgumentError as exc:
        raise _invalid(str(exc)) from None


def _user(user_id: object) -> int:
    return _int(user_id, "user_id", 1, MAX_USER_ID)


def _times(start_time: object, end_time: object) -> tuple[int, int]:
    start = _int(start_time, "start_time", 0, MAX_TIME)
    end = _int(end_time, "end_time", 0, MAX_TIME)
    if end and start > end:
        raise _invalid(f"start_time {start} is after end_time {end}")
    return start, end


def _page(offset: object, limit: object) -> tuple[int, int]:
    return _int(offset, "offset", 0, MAX_OFFSET), _int(limit, "limit", 1, MAX_LIMIT)


def _time_filter(sql: list[str], params: list[object], column: str, start: int, end: int) -> None:
    """ViaBTC's window: ``column >= start`` and ``column < end``; 0 is unbounded."""
    if start:
        sql.append(f" AND {column} >= %s")
        params.append(start)
    if end:
        sql.append(f" AND {column} < %s")
        params.append(end)


# ------------------------------------------------------------------ records


def _dec(value: object) -> str:
    return plain_decimal(value if isinstance(value, Decimal) else Decimal(str(value)))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def _detail(text: object, seq: object) -> dict[str, Any]:
    value = None
    if isinstance(text, str | bytes | bytearray):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
    if not isinstance(value, dict):
        logger.warning("history: balance_history detail is not a JSON object seq=%s", seq)
        return {}
    return value


def _balance_record(row: Row) -> dict[str, Any]:
    seq, time_s, asset, business, change, balance, detail = row
    return {
        "time": float(time_s),
        "asset": _text(asset),
        "business": _text(business),
        "change": _dec(change),
        "balance": _dec(balance),
        "detail": _detail(detail, seq),
    }


def _order_record(row: Row) -> dict[str, Any]:
    oid, ctime, ftime, user, market, source, otype, side = row[:8]
    price, amount, taker_fee, maker_fee, deal_stock, deal_money, deal_fee = row[8:]
    return {
        "id": int(oid),
        "ctime": float(ctime),
        "ftime": float(ftime),
        "user": int(user),
        "market": _text(market),
        "source": _text(source),
        "type": int(otype),
        "side": int(side),
        "price": _dec(price),
        "amount": _dec(amount),
        "taker_fee": _dec(taker_fee),
        "maker_fee": _dec(maker_fee),
        "deal_stock": _dec(deal_stock),
        "deal_money": _dec(deal_money),
        "deal_fee": _dec(deal_fee),
    }


def _deal_record(row: Row) -> dict[str, Any]:
    time_s, user, deal_id, role, price, amount, deal, fee, deal_order_id = row
    return {
        "time": float(time_s),
        "user": int(user),
        "id": int(deal_id),
        "role": int(role),
        "price": _dec(price),
        "amount": _dec(amount),
        "deal": _dec(deal),
        "fee": _dec(fee),
        "deal_order_id": int(deal_order_id),
    }


def _user_deal_record(row: Row) -> dict[str, Any]:
    time_s, user, deal_id, side, role, price, amount, deal, fee, deal_order_id, market = row
    return {
        "time": float(time_s),
        "user": int(user),
        "id": int(deal_id),
        "side": int(side),
        "role": int(role),
        "price": _dec(price),
        "amount": _dec(amount),
        "deal": _dec(deal),
        "fee": _dec(fee),
        "deal_order_id": int(deal_order_id),
        "market": _text(market),
    }


def _paged(offset: int, limit: int, records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"offset": offset, "limit": limit, "records": records}


# ------------------------------------------------------------------ queries


class HistoryQueries:
    """ViaBTC's readhistory methods over the history tables (see the module docstring).

    Parameters
    ----------
    connect : Callable[[], Any]
        Makes a new MySQLdb connection to the history database.
    config : EngineConfig
        The engine's config: the assets and markets that exist.
    pool_size : int
        Most connections open at once (>= 1).
    queue : int
        Most callers waiting for a connection (>= 0); one more is refused with code 3.
    timeout_s : float
        Longest a caller waits for a connection before code 3 (> 0).
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        config: EngineConfig,
        *,
        pool_size: int = 4,
        queue: int = 40,
        timeout_s: float = 5.0,
    ) -> None:
        self.use_catalog(config)
        self._pool = HistoryPool(connect, pool_size=pool_size, queue=queue, timeout_s=timeout_s)

    def use_catalog(self, config: EngineConfig) -> None:
        """Answer for the assets and markets of ``config`` from now on: the caller's
        catalog after an ADD_ASSET or ADD_MARKET (docs/engine.md, "Adding assets and
        markets"; the config file's catalog is the genesis one only). Any thread."""
        self.config = config
        self._assets = frozenset(a.name for a in config.assets)
        self._markets = frozenset(m.name for m in config.markets)

    # ------------------------------------------------------------ methods

    def balance_history(
        self,
        user_id: int,
        asset: str,
        business: str,
        start_time: int,
        end_time: int,
        offset: int,
        limit: int,
    ) -> dict[str, Any]:
        """balance.history: a user's balance changes, newest first.

        Parameters
        ----------
        user_id : int
            1..2**32-1.
        asset : str
            A configured asset, or ``""`` for every asset.
        business : str
            Matched exactly, or ``""`` for every business.
        start_time, end_time : int
            Unix seconds; ``start_time <= time < end_time``, 0 means unbounded.
        offset, limit : int
            The page: ``offset`` >= 0, ``limit`` 1..101.

        Returns
        -------
        dict
            ``{"offset", "limit", "records": [{"time", "asset", "business", "change",
            "balance", "detail"}]}``; ``balance`` is available + frozen after the change.
        """
        user = _user(user_id)
        asset_name = _str(asset, "asset")
        if asset_name and asset_name not in self._assets:
            raise _invalid(f"unknown asset {asset_name!r}", Result.UNKNOWN_ASSET)
        business_name = _str(business, "business")
        if len(business_name) > MAX_BUSINESS_LENGTH:
            raise _invalid(f"business must be at most {MAX_BUSINESS_LENGTH} characters")
        start, end = _times(start_time, end_time)
        off, lim = _page(offset, limit)
        sql, params = [_BALANCE_SQL], list[object]([user])
        if asset_name:
            sql.append(" AND asset = %s")
            params.append(asset_name)
        if business_name:
            sql.append(" AND business = %s")
            params.append(business_name)
        _time_filter(sql, params, "`time`", start, end)
        sql.append(" ORDER BY seq DESC, idx DESC" + _PAGE_SQL)
        records = self._run("balance.history", "".join(sql), (*params, lim, off), _balance_record)
        return _paged(off, lim, records)

    def order_deals(self, order_id: int, offset: int, limit: int) -> dict[str, Any]:
        """order.deals: an order's deals, newest (highest deal id) first.

        Parameters
        ----------
        order_id : int
            1..2**63-1.
        offset, limit : int
            The page: ``offset`` >= 0, ``limit`` 1..101.

        Returns
        -------
        dict
            ``{"offset", "limit", "records": [{"time", "user", "id", "role", "price",
            "amount", "deal", "fee", "deal_order_id"}]}``: ``id`` is the deal id,
            ``role`` 1 maker or 2 taker, ``fee`` this order's fee, ``deal_order_id``
            the other order.
        """
        oid = _int(order_id, "order_id", 1, MAX_ID)
        off, lim = _page(offset, limit)
        records = self._run("order.deals", _ORDER_DEALS_SQL, (oid, lim, off), _deal_record)
        return _paged(off, lim, records)

    def order_finished(
        self,
        user_id: int,
        market: str,
        start_time: int,
        end_time: int,
        offset: int,
        limit: int,
        side: int = 0,
    ) -> dict[str, Any]:
        """order.finished: a user's finished orders in a market, highest id first.

        Parameters
        ----------
        user_id : int
            1..2**32-1.
        market : str
            A configured market.
        start_time, end_time : int
            Unix seconds; ``start_time <= create time < end_time``, 0 means unbounded.
        offset, limit : int
            The page: ``offset`` >= 0, ``limit`` 1..101.
        side : int
            0 for both sides, 1 asks (sells), 2 bids (buys).

        Returns
        -------
        dict
            ``{"offset", "limit", "records": [{"id", "ctime", "ftime", "user",
            "market", "source", "type", "side", "price", "amount", "taker_fee",
            "maker_fee", "deal_stock", "deal_money", "deal_fee"}]}``.
        """
        user = _user(user_id)
        market_name = self._market(market)
        start, end = _times(start_time, end_time)
        off, lim = _page(offset, limit)
        which = _int(side, "side", 0, 2)
        sql, params = [_FINISHED_SQL], list[object]([user, market_name])
        if which:
            sql.append(" AND side = %s")
            params.append(which)
        _time_filter(sql, params, "create_time", start, end)
        sql.append(" ORDER BY id DESC" + _PAGE_SQL)
        records = self._run("order.finished", "".join(sql), (*params, lim, off), _order_record)
        return _paged(off, lim, records)

    def order_finished_detail(self, order_id: int) -> dict[str, Any] | None:
        """order.finished_detail: one finished order, or None if there is none.

        Parameters
        ----------
        order_id : int
            1..2**63-1.

        Returns
        -------
        dict or None
            A record as in ``order_finished``.
        """
        oid = _int(order_id, "order_id", 1, MAX_ID)
        records = self._run("order.finished_detail", _DETAIL_SQL, (oid,), _order_record)
        return records[0] if records else None

    def market_user_deals(
        self, user_id: int, market: str, offset: int, limit: int
    ) -> dict[str, Any]:
        """market.user_deals: a user's deals in a market, newest (highest deal id) first.

        Parameters
        ----------
        user_id : int
            1..2**32-1.
        market : str
            A configured market.
        offset, limit : int
            The page: ``offset`` >= 0, ``limit`` 1..101.

        Returns
        -------
        dict
            ``{"offset", "limit", "records": [{"time", "user", "id", "side", "role",
            "price", "amount", "deal", "fee", "deal_order_id", "market"}]}``; ``side``
            is this user's order's side. A deal of a user with itself gives two
            records, the taker's first.
        """
        user = _user(user_id)
        market_name = self._market(market)
        off, lim = _page(offset, limit)
        params = (user, market_name, lim, off)
        records = self._run("market.user_deals", _USER_DEALS_SQL, params, _user_deal_record)
        return _paged(off, lim, records)

    def _market(self, market: object) -> str:
        name = _str(market, "market")
        if name not in self._markets:
            raise _invalid(f"unknown market {name!r}", Result.UNKNOWN_MARKET)
        return name

    # ------------------------------------------------------------ pool

    def stats(self) -> HistoryStats:
        """A snapshot of the connection pool and its counters."""
        return self._pool.stats()

    def close(self) -> None:
        """Close the connections; later calls are refused with code 3."""
        self._pool.close()

    def _run(
        self, method: str, sql: str, params: tuple[object, ...], record: Callable[[Row], Any]
    ) -> list[Any]:
        """Run ``sql`` on a pooled connection and turn each row into a record."""
        rows = self._pool.run(method, sql, params)
        try:
            return [record(row) for row in rows]
        except Exception as exc:
            self._pool.count_error()
            logger.exception("history: a stored row cannot be read method=%s", method)
            raise HistoryError(
                Result.INTERNAL_ERROR, f"internal error: a stored row cannot be read ({exc})"
            ) from exc


class HistoryNotConfigured:
    """The history methods of a daemon without MySQL.

    Each raises ``HistoryError`` with code 3 and ``NOT_CONFIGURED_MESSAGE``, so that
    everything else works.
    """

    def use_catalog(self, config: EngineConfig) -> None:
        """Nothing to follow: every method answers "not configured"."""

    def balance_history(
        self,
        user_id: int,
        asset: str,
        business: str,
        start_time: int,
        end_time: int,
        offset: int,
        limit: int,
    ) -> dict[str, Any]:
        """balance.history: always code 3."""
        raise _not_configured()

    def order_deals(self, order_id: int, offset: int, limit: int) -> dict[str, Any]:
        """order.deals: always code 3."""
        raise _not_configured()

    def order_finished(
        self,
        user_id: int,
        market: str,
        start_time: int,
        end_time: int,
        offset: int,
        limit: int,
        side: int = 0,
    ) -> dict[str, Any]:
        """order.finished: always code 3."""
        raise _not_configured()

    def order_finished_detail(self, order_id: int) -> dict[str, Any] | None:
        """order.finished_detail: always code 3."""
        raise _not_configured()

    def market_user_deals(
        self, user_id: int, market: str, offset: int, limit: int
    ) -> dict[str, Any]:
        """market.user_deals: always code 3."""
        raise _not_configured()

    def stats(self) -> HistoryStats:
        """An empty pool."""
        return HistoryStats(0, 0, 0, 0, 0, 0, 0, 0, 0)

    def close(self) -> None:
        """Nothing to close."""


def _not_configured() -> HistoryError:
    return HistoryError(Result.SERVICE_UNAVAILABLE, NOT_CONFIGURED_MESSAGE)
