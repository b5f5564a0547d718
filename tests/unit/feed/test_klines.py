"""``feed.klines`` against ``tests/support/kline_oracle.py`` (klines computed straight
from the deals with datetime arithmetic): every interval ViaBTC takes, several UTC
offsets, bucket boundaries, empty spans, weeks from Monday, calendar months, sums
beyond int64, a clock that steps back, and retention."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import numpy as np
import pytest

from feed.klines import (
    DAY,
    HOUR,
    MINUTE,
    MONTH,
    SECOND,
    WEEK,
    Candle,
    KlineError,
    KlineStore,
    Retention,
    kline_base,
)
from tests.support import kline_oracle as oracle
from tests.support.kline_oracle import Deal

SEED = 20261205
#: Every interval ViaBTC takes, up to a few days, and the week and month.
INTERVALS = [
    *(i for i in range(1, 60) if 60 % i == 0),
    *(i for i in range(60, 3600, 60) if 3600 % i == 0),
    *(i for i in range(3600, 86400, 3600) if 86400 % i == 0),
    86400, 2 * 86400, 3 * 86400, 6 * 86400, WEEK, MONTH,
]  # fmt: skip
OFFSETS = [0, 8 * HOUR, -5 * HOUR, 5 * HOUR + 30 * MINUTE, 5 * HOUR + 45 * MINUTE]
T0 = int(datetime(2026, 1, 27, 22, 59, 58, tzinfo=UTC).timestamp())  # near month end


def store_of(markets: dict[int, list[Deal]], offset_s: int, **kw: object) -> KlineStore:
    """A store fed with each market's deals, interleaved in log order in batches."""
    store = KlineStore(max(markets) + 1, utc_offset_s=offset_s, **kw)  # type: ignore[arg-type]
    rows = sorted(
        ((i, m, d) for m, deals in markets.items() for i, d in enumerate(deals)),
        key=lambda r: (r[0], r[1]),
    )
    for k in range(0, len(rows), 97):
        part = rows[k : k + 97]
        store.add_deals(
            np.array([m for _, m, _ in part], dtype=np.int64),
            np.array([d.time_s for _, _, d in part], dtype=np.int64),
            np.array([d.price for _, _, d in part], dtype=np.int64),
            np.array([d.amount for _, _, d in part], dtype=np.int64),
            np.array([d.money for _, _, d in part], dtype=np.int64),
        )
    return store


def random_deals(rng: random.Random, n: int, span_s: int) -> list[Deal]:
    """Deals in time order, in bursts, with gaps of seconds to days."""
    t = T0
    out = []
    for _ in range(n):
        t += rng.choice([0, 0, 1, 1, 2, 7, 59, 60, 61, 3599, 3600, 20000, 86400, 3 * 86400])
        t = min(t, T0 + span_s)
        out.append(Deal(t, rng.randint(1, 10**6), rng.randint(1, 10**9), rng.randint(1, 10**15)))
    return out


@pytest.mark.parametrize("offset_s", OFFSETS)
def test_every_interval_equals_the_oracle(offset_s: int) -> None:
    rng = random.Random(SEED + offset_s)  # noqa: S311 -- reproducible test data
    markets = {0: random_deals(rng, 700, 120 * DAY), 1: random_deals(rng, 300, 120 * DAY)}
    # Everything kept: the oracle knows no retention.
    store = store_of(markets, offset_s, retention=Retention(sec_max=200 * DAY))
    end_all = T0 + 121 * DAY
    rows = traded = 0
    for interval in INTERVALS:
        for _ in range(8):
            m = rng.choice([0, 1])
            start = rng.randint(T0 - 2 * DAY, end_all)
            length = rng.choice([interval, 5 * interval, 40 * interval, 300 * interval])
            end = min(start + length, end_all)
            got = store.kline(m, start, end, interval, max_rows=10**6)
            want = oracle.kline(markets[m], start, end, interval, offset_s)
            assert got == want, (interval, start, end, m)
            rows += len(got)
            traded += sum(1 for c in got if c.volume)
    assert rows > 5000
    assert traded > 500  # not only flat rows


def test_boundaries_empty_spans_and_leading_gaps() -> None:
    # Deals at 10:00:00 and 10:00:59 (one minute), 10:01:00 (the next), none until
    # 10:04:30; five-minute spans from 09:50.
    t = int(datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC).timestamp())
    deals = [
        Deal(t, 100, 1, 100), Deal(t + 59, 120, 2, 240), Deal(t + 60, 90, 3, 270),
        Deal(t + 270, 95, 1, 95),
    ]  # fmt: skip
    store = store_of({0: deals}, 0)
    minute = store.kline(0, t - 600, t + 300, MINUTE, max_rows=100)
    assert [c.start - t for c in minute] == [0, 60, 120, 180, 240, 300]  # no leading rows
    assert minute[0] == Candle(t, 100, 120, 120, 100, 3, 340)
    assert minute[1] == Candle(t + 60, 90, 90, 90, 90, 3, 270)
    assert minute[2] == Candle(t + 120, 90, 90, 90, 90, 0, 0)  # flat at the close
    assert minute[4] == Candle(t + 240, 95, 95, 95, 95, 1, 95)
    assert minute[5] == Candle(t + 300, 95, 95, 95, 95, 0, 0)
    # A query starting after the deals is flat at the last close before it.
    later = store.kline(0, t + 3 * HOUR, t + 3 * HOUR + 1, HOUR, max_rows=10)
    assert later == [Candle(t + 3 * HOUR, 95, 95, 95, 95, 0, 0)]


def test_weeks_start_on_monday_and_months_on_the_first_in_local_time() -> None:
    # 2026-11-29 is a Sunday; at UTC+8 its 20:00 UTC is already Monday 2026-11-30.
    sunday_20_utc = int(datetime(2026, 11, 29, 20, 0, tzinfo=UTC).timestamp())
    store_utc = store_of({0: [Deal(sunday_20_utc, 7, 1, 7)]}, 0)
    store_8 = store_of({0: [Deal(sunday_20_utc, 7, 1, 7)]}, 8 * HOUR)
    week_utc = store_utc.kline(0, sunday_20_utc, sunday_20_utc, WEEK, max_rows=5)
    week_8 = store_8.kline(0, sunday_20_utc, sunday_20_utc, WEEK, max_rows=5)
    assert week_utc[0].start == int(datetime(2026, 11, 23, tzinfo=UTC).timestamp())
    assert week_8[0].start == int(datetime(2026, 11, 29, 16, tzinfo=UTC).timestamp())
    # February of a common year: 28 days, then March.
    feb = int(datetime(2026, 2, 14, tzinfo=UTC).timestamp())
    store = store_of({0: [Deal(feb, 5, 1, 5)]}, 0)
    months = store.kline(0, feb, feb + 40 * DAY, MONTH, max_rows=5)
    starts = [datetime.fromtimestamp(c.start, UTC).date().isoformat() for c in months]
    assert starts == ["2026-02-01", "2026-03-01"]
    assert months[1] == Candle(months[1].start, 5, 5, 5, 5, 0, 0)


def test_volume_and_deal_sums_beyond_int64_are_exact() -> None:
    big = 2**62 + 12345
    t = T0
    deals = [Deal(t + i % 3, 10, big, big - i) for i in range(40)]
    store = store_of({0: deals}, 0)
    (day,) = store.kline(0, t, t + 10, DAY, max_rows=5)
    assert day.volume == 40 * big
    assert day.deal == sum(big - i for i in range(40))
    (second,) = store.kline(0, t + 1, t + 1, SECOND, max_rows=5)[:1]
    assert second.volume == sum(big for i in range(40) if i % 3 == 1)


def test_a_clock_that_steps_back_lands_in_the_older_bucket_in_log_order() -> None:
    t = T0 - T0 % 60
    deals = [Deal(t + 70, 5, 1, 5), Deal(t + 10, 9, 1, 9), Deal(t + 20, 3, 1, 3)]
    store = store_of({0: deals}, 0)
    got = store.kline(0, t, t + 120, MINUTE, max_rows=5)
    assert got[0] == Candle(t, 9, 3, 9, 3, 2, 12)  # open and close in log order
    assert got[1] == Candle(t + 60, 5, 5, 5, 5, 1, 5)
    assert got == oracle.kline(deals, t, t + 120, MINUTE, 0)


def test_status_windows_equal_the_oracle() -> None:
    rng = random.Random(SEED)  # noqa: S311 -- reproducible test data
    deals = random_deals(rng, 2000, 9 * DAY)
    store = store_of({0: deals}, 0)
    for _ in range(300):
        now = rng.randint(T0, T0 + 9 * DAY)
        period = rng.choice([1, 59, 60, 61, 3600, 86400, 7 * 86400, rng.randint(1, 7 * DAY)])
        got = store.status(0, now - period, now)
        want = oracle.window(deals, now - period, now)
        if want is None:
            assert got is None
        else:
            assert got is not None
            assert (got.open, got.close, got.high, got.low, got.volume, got.deal) == (
                want.open, want.close, want.high, want.low, want.volume, want.deal,
            )  # fmt: skip


def test_day_bucket_and_the_previous_day_within_30_days() -> None:
    t = int(datetime(2026, 5, 10, 12, tzinfo=UTC).timestamp())
    store = store_of({0: [Deal(t - 20 * DAY, 4, 1, 4), Deal(t, 6, 1, 6)]}, 0)
    today, before = store.day(0, t + HOUR)
    assert today is not None
    assert (today.open, today.close) == (6, 6)
    assert before is not None
    assert before.close == 4
    today, before = store.day(0, t + 2 * DAY)
    assert today is None
    assert before is not None
    assert before.close == 6
    assert store.day(0, t + 40 * DAY) == (None, None)  # more than 30 days back


def test_retention_drops_old_seconds_and_minutes_and_keeps_days() -> None:
    deals = [Deal(T0, 1, 1, 1), Deal(T0 + 2 * HOUR, 2, 1, 2), Deal(T0 + 3 * DAY, 3, 1, 3)]
    store = store_of({0: deals}, 0, retention=Retention(sec_max=HOUR, min_max=24 * 60))
    assert len(store.series(0, SECOND)) == 1
    assert len(store.series(0, MINUTE)) == 1
    assert len(store.series(0, HOUR)) == 3
    assert len(store.series(0, DAY)) == 3


def test_retention_keeps_memory_bounded_over_a_long_run() -> None:
    store = KlineStore(1, retention=Retention(sec_max=600, min_max=60, hour_max=24))
    for k in range(200):
        t = T0 + k * 300 + np.arange(300, dtype=np.int64)
        ones = np.ones(300, dtype=np.int64)
        store.add_deals(np.zeros(300, dtype=np.int64), t, ones, ones, ones)
    assert len(store.series(0, SECOND)) <= 601
    assert len(store.series(0, MINUTE)) <= 61
    assert len(store.series(0, HOUR)) <= 25


def test_intervals_viabtc_does_not_take_are_refused() -> None:
    for interval in (0, 7, 61, 90, 7200 + 60, 5 * 3600, 86400 + 1, 8 * 86400, 30 * 86400 + 1):
        with pytest.raises(KlineError, match=f"interval {interval} is not one of"):
            kline_base(interval)
    store = store_of({0: [Deal(T0, 1, 1, 1)]}, 0)
    with pytest.raises(KlineError, match="61 intervals of 60 s asked, at most 60"):
        store.kline(0, T0 - T0 % 60, T0 - T0 % 60 + 3600, MINUTE, max_rows=60)


def test_a_bad_offset_is_refused() -> None:
    for offset in (30, 15 * HOUR, -15 * HOUR):
        with pytest.raises(ValueError, match="utc_offset_s must be a multiple of 60"):
            KlineStore(1, utc_offset_s=offset)


def test_changes_are_noted_only_for_a_publisher_that_takes_them() -> None:
    """Without ``track`` (no Redis) nothing piles up however long deals come; with it,
    ``take_touched`` and ``take_dropped`` give what changed and what retention dropped."""
    quiet = KlineStore(1, retention=Retention(sec_max=10, min_max=1, hour_max=1))
    noted = KlineStore(1, retention=Retention(sec_max=10, min_max=1, hour_max=1))
    noted.track = True
    ones = np.ones(20, dtype=np.int64)
    for store in (quiet, noted):
        store.add_deals(np.zeros(20, dtype=np.int64), T0 + np.arange(20), ones, ones, ones)
    assert quiet.take_touched() == set()
    assert quiet.take_dropped() == set()
    touched = noted.take_touched()
    assert {(m, b) for m, b, _ in touched} == {(0, SECOND), (0, MINUTE), (0, HOUR), (0, DAY)}
    assert len([t for t in touched if t[1] == SECOND]) == 20
    dropped = noted.take_dropped()
    assert sorted(s for _, b, s in dropped if b == SECOND) == list(range(T0, T0 + 9))
    assert noted.take_touched() == noted.take_dropped() == set()
