"""``tools.loadgen_latency``: exact open-loop schedules, the coordinated-omission
correction (with the uncorrected measurement as the negative control), and the
recorder's percentiles, clamping, errors, per-second buckets and cross-process merge.
A fake clock throughout: nothing sleeps."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass, field
from fractions import Fraction

import pytest

from tools.loadgen_latency import (
    CLOSED_LOOP,
    HIGHEST_US,
    NS_PER_S,
    LatencyRecorder,
    Pacing,
    Schedule,
)

START_NS = 5 * NS_PER_S + 123  # not on a second boundary, on purpose
MS_NS = 1_000_000
US_NS = 1_000


@dataclass
class FakeClock:
    now_ns: int = START_NS

    def advance(self, ns: int) -> None:
        assert ns >= 0
        self.now_ns += ns


@dataclass
class Run:
    """What one simulated sender saw, measured both ways."""

    corrected: LatencyRecorder
    uncorrected: LatencyRecorder
    corrected_ns: list[int] = field(default_factory=list)


def run_sender(pacing: Pacing, requests: int, stall_at: int, stall_ns: int) -> Run:
    """A synchronous sender: waits for its slot, sends, blocks until the answer.

    Every answer takes 100 us except request ``stall_at``'s, which takes ``stall_ns``.
    The same run is recorded from ``pacing``'s latency start and from the actual send.
    """
    clock = FakeClock()
    run = Run(LatencyRecorder(clock.now_ns), LatencyRecorder(clock.now_ns))
    for i in range(requests):
        clock.advance(pacing.wait_ns(i, clock.now_ns))
        sent_ns = clock.now_ns
        clock.advance(stall_ns if i == stall_at else 100 * US_NS)
        start_ns = pacing.latency_start_ns(i, sent_ns)
        run.corrected.record(start_ns, clock.now_ns)
        run.corrected_ns.append(clock.now_ns - start_ns)
        run.uncorrected.record(CLOSED_LOOP.latency_start_ns(i, sent_ns), clock.now_ns)
    return run


# ----------------------------------------------------------------------- schedule


def test_schedule_at_3_per_s_is_exact_however_far_out() -> None:
    schedule = Schedule(3, START_NS)

    assert [schedule.intended_ns(i) - START_NS for i in range(4)] == [
        0,
        333_333_333,
        666_666_666,
        NS_PER_S,
    ]
    for k in (10**6, 10**9, 10**12):  # ~11 days, ~31 years, ~31,000 years
        assert schedule.intended_ns(3 * k) == START_NS + k * NS_PER_S
    far = 3 * 10**12
    gaps = {schedule.intended_ns(i + 1) - schedule.intended_ns(i) for i in range(far, far + 999)}
    assert gaps == {333_333_333, 333_333_334}


@pytest.mark.parametrize("rate", [1_000_000, 1e6, Fraction(10**6)])
def test_schedule_at_1e6_per_s_is_exactly_1000_ns_apart(rate: int | float | Fraction) -> None:
    schedule = Schedule(rate, START_NS)
    rng = random.Random(8)  # noqa: S311 -- reproducible test data

    for i in [0, 1, 10**6, 10**15, *(rng.randrange(10**15) for _ in range(100))]:
        assert schedule.intended_ns(i) == START_NS + 1000 * i


def test_a_float_rate_is_read_as_its_decimal() -> None:
    assert Schedule(0.1, START_NS).intended_ns(10**9) == START_NS + 10**19
    assert Schedule(2.5, 0).intended_ns(5) == 2 * NS_PER_S


@pytest.mark.parametrize("rate", [3, 7, 1000, Fraction(10**6, 7), 123_456.789])
def test_slots_due_agrees_with_intended_times(rate: int | float | Fraction) -> None:
    schedule = Schedule(rate, START_NS)

    assert schedule.slots_due(START_NS - 1) == 0
    for i in [*range(50), 10**6, 10**6 + 1, 10**9]:
        intended_ns = schedule.intended_ns(i)
        assert schedule.slots_due(intended_ns) == i + 1
        assert schedule.slots_due(intended_ns - 1) == i


def test_a_late_sender_is_told_to_send_at_once_and_no_slot_is_skipped() -> None:
    schedule = Schedule(1000, START_NS)

    assert schedule.wait_ns(5, START_NS + 2 * MS_NS) == 3 * MS_NS
    assert schedule.wait_ns(5, START_NS + 5 * MS_NS) == 0
    assert schedule.wait_ns(5, START_NS + 9 * MS_NS) == 0  # 4 ms late: still slot 5
    assert schedule.latency_start_ns(5, START_NS + 9 * MS_NS) == START_NS + 5 * MS_NS


@pytest.mark.parametrize("rate", [0, -1, 0.0])
def test_a_rate_that_is_not_positive_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        Schedule(rate, START_NS)


def test_closed_loop_never_waits_and_measures_from_the_send() -> None:
    assert CLOSED_LOOP.wait_ns(7, START_NS) == 0
    assert CLOSED_LOOP.latency_start_ns(7, START_NS + 42) == START_NS + 42


# ------------------------------------------------------- coordinated omission


def test_a_1_s_stall_at_1000_per_s_delays_about_1000_requests_and_p99_shows_it() -> None:
    run = run_sender(Schedule(1000, START_NS), requests=10_000, stall_at=2000, stall_ns=NS_PER_S)

    # The stalled request, then the backlog drains 0.9 ms per request (1 ms slots,
    # 0.1 ms answers): latency falls linearly from 1 s to 1 ms over 1111 requests.
    delayed_ns = run.corrected_ns[2000:3111]
    assert (delayed_ns[0], delayed_ns[-1]) == (NS_PER_S, MS_NS)
    assert {b - a for a, b in itertools.pairwise(delayed_ns)} == {-900 * US_NS}
    assert all(ns == 100 * US_NS for ns in run.corrected_ns[:2000] + run.corrected_ns[3111:])

    corrected = run.corrected.summary()
    uncorrected = run.uncorrected.summary()
    assert corrected["count"] == uncorrected["count"] == 10_000
    # 11% of requests were delayed: p99 is the 101st slowest, 100 into the backlog.
    assert corrected["p99_us"] == pytest.approx(910_000, rel=1e-3)
    assert corrected["p90_us"] > 100
    # Negative control: measured from the actual send, the stall is one slow request
    # among 10,000 and vanishes from every percentile below the max.
    assert uncorrected["p99_us"] == uncorrected["p99_9_us"] == 100
    assert uncorrected["max_us"] == corrected["max_us"] == pytest.approx(1_000_000, rel=1e-3)
    assert corrected["duration_s"] == pytest.approx(10.0, abs=1e-3)
    assert corrected["mean_rate_per_s"] == pytest.approx(1000, rel=1e-3)


def test_closed_loop_sender_runs_flat_out_and_sees_the_stall_once() -> None:
    run = run_sender(CLOSED_LOOP, requests=1000, stall_at=500, stall_ns=NS_PER_S)

    summary = run.corrected.summary()
    assert summary["p99_us"] == 100
    assert summary["max_us"] == pytest.approx(1_000_000, rel=1e-3)
    assert summary["duration_s"] == pytest.approx(1.0999, abs=1e-6)  # no pacing
    assert run.corrected.encode() == run.uncorrected.encode()


# ------------------------------------------------------------------- recorder


def record_all(recorder: LatencyRecorder, latencies_us: list[int], at_ns: int = START_NS) -> None:
    for latency_us in latencies_us:
        recorder.record(at_ns, at_ns + latency_us * US_NS)


def test_percentiles_of_known_values_are_within_hdr_precision() -> None:
    recorder = LatencyRecorder(START_NS)
    values_us = list(range(1, 10_001))
    random.Random(8).shuffle(values_us)  # noqa: S311 -- reproducible test data
    record_all(recorder, values_us)

    summary = recorder.summary()
    assert summary["count"] == 10_000
    for key, expected in [
        ("p50_us", 5000),
        ("p90_us", 9000),
        ("p99_us", 9900),
        ("p99_9_us", 9990),
        ("max_us", 10_000),
    ]:
        assert expected <= summary[key] <= expected * 1.001, key
    assert summary["mean_us"] == pytest.approx(5000.5, rel=1e-3)
    json.dumps(summary)


def test_latency_is_rounded_up_to_whole_microseconds() -> None:
    recorder = LatencyRecorder(START_NS)
    recorder.record(START_NS, START_NS + 1)
    recorder.record(START_NS, START_NS + 2_001)

    summary = recorder.summary()
    assert (summary["p50_us"], summary["max_us"]) == (1, 3)
    assert summary["clamped_low"] == 0


def test_values_outside_1_us_to_60_s_are_clamped_and_counted() -> None:
    recorder = LatencyRecorder(START_NS)
    recorder.record(START_NS, START_NS)  # 0: below 1 us
    recorder.record(START_NS, START_NS - 5 * US_NS)  # clocks disagree: negative
    recorder.record(START_NS, START_NS + 61 * NS_PER_S)
    recorder.record(START_NS, START_NS + 10**6 * NS_PER_S)

    summary = recorder.summary()
    assert (summary["count"], summary["clamped_low"], summary["clamped_high"]) == (4, 2, 2)
    assert summary["p50_us"] == 1
    assert HIGHEST_US <= summary["max_us"] <= HIGHEST_US * 1.001


def test_errors_are_counted_by_code_and_kept_out_of_the_latencies() -> None:
    recorder = LatencyRecorder(START_NS)
    recorder.record_error(3001, START_NS + 1)
    recorder.record_error(3001, START_NS + 2)
    recorder.record_error("timeout", START_NS + 3 * NS_PER_S)

    summary = recorder.summary()
    assert summary["errors"] == {"3001": 2, "timeout": 1}
    assert summary["error_count"] == 3
    assert (summary["count"], summary["p99_us"], summary["max_us"]) == (0, 0, 0)
    assert summary["duration_s"] == pytest.approx(3.0)
    assert summary["per_second"]["counts"] == []


def test_per_second_buckets_fill_gaps_and_keep_at_most_max_seconds() -> None:
    recorder = LatencyRecorder(0, max_seconds=5)
    recorder.record(0, 10 * US_NS)
    recorder.record(0, 3 * NS_PER_S)
    recorder.record(0, 3 * NS_PER_S + 1)

    assert recorder.summary()["per_second"] == {
        "first_s": 0,
        "counts": [1, 0, 0, 2],
        "dropped_answers": 0,
    }

    for second in range(4, 10):
        recorder.record(second * NS_PER_S, second * NS_PER_S + 1)
    recorder.record(0, 2 * NS_PER_S)  # a late answer for a second no longer kept

    per_second = recorder.summary()["per_second"]
    assert per_second == {"first_s": 5, "counts": [1] * 5, "dropped_answers": 5}
    assert sum(per_second["counts"]) + per_second["dropped_answers"] == recorder.count


def test_merging_recorders_equals_recording_everything_in_one() -> None:
    rng = random.Random(8)  # noqa: S311 -- reproducible test data
    samples = [
        (rng.randrange(12 * NS_PER_S), int(rng.lognormvariate(6, 2) * US_NS) + 1)
        for _ in range(4000)
    ] + [(0, 0), (NS_PER_S, 70 * NS_PER_S)]  # one clamped at each end
    one = LatencyRecorder(0, max_seconds=10)
    parts = [LatencyRecorder(0, max_seconds=10), LatencyRecorder(0, max_seconds=10)]
    for n, (sent_ns, latency_ns) in enumerate(samples):
        for recorder in (one, parts[n % 2]):
            recorder.record(sent_ns, sent_ns + latency_ns)
    for n, code in enumerate([3001, 2002, 3001, 9001]):
        for recorder in (one, parts[n % 2]):
            recorder.record_error(code, START_NS)

    # Each part crosses a process boundary as JSON, then the parent merges them.
    merged = LatencyRecorder.decode(json.loads(json.dumps(parts[0].encode())))
    merged.merge(LatencyRecorder.decode(json.loads(json.dumps(parts[1].encode()))))

    assert merged.summary() == one.summary()
    assert merged.summary()["count"] == 4002
    assert (merged.summary()["clamped_low"], merged.summary()["clamped_high"]) == (1, 1)
    assert merged.summary()["per_second"]["dropped_answers"] > 0  # spans > 10 s


def test_merge_takes_the_earliest_start_and_the_latest_answer() -> None:
    early, late = LatencyRecorder(START_NS), LatencyRecorder(START_NS + NS_PER_S)
    early.record(START_NS, START_NS + MS_NS)
    late.record(START_NS + NS_PER_S, START_NS + 3 * NS_PER_S)

    early.merge(late)

    assert (early.start_ns, early.last_ns) == (START_NS, START_NS + 3 * NS_PER_S)
    assert early.summary()["duration_s"] == pytest.approx(3.0)
    assert early.summary()["mean_rate_per_s"] == pytest.approx(2 / 3)


def test_a_bad_bucket_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="max_seconds"):
        LatencyRecorder(START_NS, max_seconds=0)
