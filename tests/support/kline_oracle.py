"""Klines computed the slow, obvious way, straight from the deals (the test oracle of
``feed.klines``): every span is found with ``datetime`` arithmetic on local time and
aggregated from the deals in it, with no base buckets, no alignment formulas and no
numpy, so that the store and this agree only if both are right."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from feed.klines import Candle


@dataclass(frozen=True, slots=True)
class Deal:
    """One deal: Unix second, price (ticks), amount (lots), money (units)."""

    time_s: int
    price: int
    amount: int
    money: int


def _local(t: int, offset_s: int) -> datetime:
    return datetime.fromtimestamp(t, UTC) + timedelta(seconds=offset_s)


def _unix(local: datetime, offset_s: int) -> int:
    return int((local - timedelta(seconds=offset_s)).timestamp())


def span_start(t: int, interval: int, offset_s: int) -> int:
    """The start of the span of ``interval`` that holds ``t`` (ViaBTC's rules)."""
    local = _local(t, offset_s)
    midnight = local.replace(hour=0, minute=0, second=0)
    if interval == 2592000:
        return _unix(midnight.replace(day=1), offset_s)
    if interval == 604800:
        return _unix(midnight - timedelta(days=local.weekday()), offset_s)
    if interval >= 86400:  # multiples of a day, counted from the epoch's local day
        days = (midnight - datetime(1970, 1, 1, tzinfo=UTC)).days
        return _unix(midnight - timedelta(days=days % (interval // 86400)), offset_s)
    into_day = int((local - midnight).total_seconds())
    return _unix(midnight, offset_s) + into_day // interval * interval


def next_span(start: int, interval: int, offset_s: int) -> int:
    """The start of the span after the one starting at ``start``."""
    if interval != 2592000:
        return start + interval
    local = _local(start, offset_s)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return _unix(local.replace(year=year, month=month), offset_s)


def aggregate(deals: list[Deal], start: int) -> Candle | None:
    """The candle of ``deals`` (in log order), None if there are none."""
    if not deals:
        return None
    prices = [d.price for d in deals]
    return Candle(
        start, prices[0], prices[-1], max(prices), min(prices),
        sum(d.amount for d in deals), sum(d.money for d in deals),
    )  # fmt: skip


def between(deals: list[Deal], since: int, until: int) -> list[Deal]:
    """The deals in [since, until), in log order."""
    by_time = sorted(range(len(deals)), key=lambda i: (deals[i].time_s, i))
    times = [deals[i].time_s for i in by_time]
    picked = by_time[bisect_left(times, since) : bisect_left(times, until)]
    return [deals[i] for i in sorted(picked)]


def kline(deals: list[Deal], start: int, end: int, interval: int, offset_s: int) -> list[Candle]:
    """ViaBTC's market.kline over all ``deals`` (log order)."""
    span = span_start(start, interval, offset_s)
    earlier = [d for d in deals if d.time_s < span]
    previous = aggregate(earlier[-1:], 0) if earlier else None
    last = next_span(span_start(end, interval, offset_s), interval, offset_s)
    deals = between(deals, span, last)
    out = []
    while span <= end:
        stop = next_span(span, interval, offset_s)
        candle = aggregate([d for d in deals if span <= d.time_s < stop], span)
        if candle is None and previous is not None:
            candle = previous.flat(span)
        if candle is not None:
            out.append(candle)
            previous = candle
        span = stop
    return out


def window(deals: list[Deal], since: int, now: int) -> Candle | None:
    """The aggregate of the deals in [since, now)."""
    return aggregate([d for d in deals if since <= d.time_s < now], since)
