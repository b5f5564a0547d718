"""Pacing and latency recording for ``matchd-loadgen`` (issue 8).

**Pacing.** Open loop: a :class:`Schedule` gives request ``i`` the intended send time
``start_ns + i / rate``, computed exactly from the index in integer nanoseconds (the
rate is a ``Fraction``), so nothing drifts however long the run. A sender that falls
behind never skips slots: late requests go out at once (``wait_ns`` is 0) and their
latency is still measured from the intended time. That is the coordinated-omission
correction: a stall delays every request scheduled during it, and they all count.
Closed loop (:data:`CLOSED_LOOP`): no schedule, latency is measured from the actual
send. A sender is written once against :class:`Pacing`::

    wait_ns = pacing.wait_ns(i, clock_ns())
    ...sleep wait_ns, send request i at sent_ns, get its answer at answer_ns...
    recorder.record(pacing.latency_start_ns(i, sent_ns), answer_ns)

**Recording.** :class:`LatencyRecorder` keeps latencies in an HdrHistogram in whole
microseconds (rounded up) from 1 us to 60 s at 3 significant digits; a value outside
that range is clamped to it and counted, never raised. It also counts errors by code
and successful answers per second of the clock (at most ``max_seconds`` seconds kept,
older seconds dropped and counted), and merges with recorders of other generator
processes through :meth:`LatencyRecorder.encode` (JSON-ready; the histogram is hdrh's
base64 form). All times are passed in by the caller, from one clock per machine
(``time.monotonic_ns``; ``perf_counter_ns`` is the same clock on Linux).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from fractions import Fraction
from typing import Any, Protocol

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

NS_PER_S = 1_000_000_000
NS_PER_US = 1_000
LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3
DEFAULT_MAX_SECONDS = 3600
#: Summary key -> percentile.
PERCENTILES = {"p50_us": 50.0, "p90_us": 90.0, "p99_us": 99.0, "p99_9_us": 99.9}


class Pacing(Protocol):
    """How a sender paces request ``i`` and where its latency starts."""

    def wait_ns(self, i: int, now_ns: int) -> int:
        """Nanoseconds to wait before sending request ``i`` (0: send now)."""
        ...

    def latency_start_ns(self, i: int, sent_ns: int) -> int:
        """The time request ``i``'s latency is measured from, given its actual send."""
        ...


class Schedule:
    """Open loop at ``rate_per_s``: request ``i`` is due at ``start_ns + i / rate``.

    ``rate_per_s`` may be an int, a ``Fraction`` or a float; a float is read as the
    decimal it prints as (``0.1`` is 1/10, not the nearest binary fraction).
    Raises ``ValueError`` if the rate is not positive.
    """

    def __init__(self, rate_per_s: int | float | Fraction, start_ns: int) -> None:
        rate = Fraction(str(rate_per_s)) if isinstance(rate_per_s, float) else rate_per_s
        rate = Fraction(rate)
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate_per_s!r}")
        self.rate_per_s = rate
        self.start_ns = start_ns
        # intended_ns(i) = start_ns + floor(i * _num / _den)
        self._num = NS_PER_S * rate.denominator
        self._den = rate.numerator

    def intended_ns(self, i: int) -> int:
        """The intended send time of request ``i`` (floor to whole nanoseconds)."""
        return self.start_ns + i * self._num // self._den

    def slots_due(self, now_ns: int) -> int:
        """How many requests are due by ``now_ns``: those with ``intended_ns(i) <= now_ns``."""
        if now_ns < self.start_ns:
            return 0
        # floor(i * num / den) <= d  <=>  i * num < (d + 1) * den
        return -(-(now_ns - self.start_ns + 1) * self._den // self._num)

    def wait_ns(self, i: int, now_ns: int) -> int:
        """Nanoseconds until request ``i`` is due; 0 when it is due or late (no skipping)."""
        return max(0, self.intended_ns(i) - now_ns)

    def latency_start_ns(self, i: int, sent_ns: int) -> int:
        """The intended send time, whenever the request really went out."""
        return self.intended_ns(i)


class ClosedLoop:
    """Closed loop: send as soon as the previous answer is in; latency from the send."""

    def wait_ns(self, i: int, now_ns: int) -> int:
        """Always 0."""
        return 0

    def latency_start_ns(self, i: int, sent_ns: int) -> int:
        """The actual send time."""
        return sent_ns


CLOSED_LOOP = ClosedLoop()


def _new_histogram() -> Any:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


class LatencyRecorder:
    """Latencies, errors by code and answers per second of one or more generators.

    ``start_ns`` is when the run started (the duration is measured from it, to the
    latest answer). ``max_seconds`` bounds the per-second buckets kept.
    """

    def __init__(self, start_ns: int, *, max_seconds: int = DEFAULT_MAX_SECONDS) -> None:
        if max_seconds < 1:
            raise ValueError(f"max_seconds must be >= 1, got {max_seconds}")
        self.start_ns = start_ns
        self.last_ns = start_ns
        self.max_seconds = max_seconds
        self.errors: Counter[str] = Counter()
        self.clamped_low = 0
        self.clamped_high = 0
        #: Successful answers per second of the clock (``answer_ns // NS_PER_S``).
        self.per_second: dict[int, int] = {}
        #: Answers of seconds too old to keep (aggregated here, then forgotten).
        self.dropped_answers = 0
        self._newest_s: int | None = None
        self._histogram = _new_histogram()

    @property
    def count(self) -> int:
        """Successful answers recorded."""
        return int(self._histogram.get_total_count())

    def record(self, start_ns: int, answer_ns: int) -> None:
        """Record one successful answer: latency = ``answer_ns - start_ns``."""
        latency_us = -(-(answer_ns - start_ns) // NS_PER_US)
        if latency_us < LOWEST_US:
            latency_us = LOWEST_US
            self.clamped_low += 1
        elif latency_us > HIGHEST_US:
            latency_us = HIGHEST_US
            self.clamped_high += 1
        self._histogram.record_value(latency_us)
        self._count_second(answer_ns // NS_PER_S, 1)
        self.last_ns = max(self.last_ns, answer_ns)

    def record_error(self, code: int | str, answer_ns: int) -> None:
        """Count one failed request (a result code, or a name such as ``"timeout"``)."""
        self.errors[str(code)] += 1
        self.last_ns = max(self.last_ns, answer_ns)

    def _count_second(self, second: int, answers: int) -> None:
        if self._newest_s is None or second > self._newest_s:
            self._newest_s = second
            oldest_kept = second - self.max_seconds + 1
            # Runs when the newest second advances, so about once a second.
            for old in [s for s in self.per_second if s < oldest_kept]:
                self.dropped_answers += self.per_second.pop(old)
        elif second <= self._newest_s - self.max_seconds:
            self.dropped_answers += answers
            return
        self.per_second[second] = self.per_second.get(second, 0) + answers

    def encode(self) -> dict[str, Any]:
        """A JSON-ready form that crosses a process boundary (see :meth:`decode`)."""
        return {
            "histogram": self._histogram.encode().decode("ascii"),
            "start_ns": self.start_ns,
            "last_ns": self.last_ns,
            "max_seconds": self.max_seconds,
            "errors": dict(self.errors),
            "clamped_low": self.clamped_low,
            "clamped_high": self.clamped_high,
            "per_second": {str(s): n for s, n in self.per_second.items()},
            "dropped_answers": self.dropped_answers,
        }

    @classmethod
    def decode(cls, payload: dict[str, Any]) -> LatencyRecorder:
        """Rebuild a recorder from :meth:`encode`'s output."""
        recorder = cls(payload["start_ns"], max_seconds=payload["max_seconds"])
        recorder._histogram = HdrHistogram.decode(payload["histogram"].encode("ascii"))
        recorder.last_ns = payload["last_ns"]
        recorder.errors.update(payload["errors"])
        recorder.clamped_low = payload["clamped_low"]
        recorder.clamped_high = payload["clamped_high"]
        recorder.per_second = {int(s): n for s, n in payload["per_second"].items()}
        recorder._newest_s = max(recorder.per_second, default=None)
        recorder.dropped_answers = payload["dropped_answers"]
        return recorder

    def merge(self, other: LatencyRecorder) -> None:
        """Add ``other``'s recordings (same clock) to this recorder."""
        self._histogram.add(other._histogram)
        self.start_ns = min(self.start_ns, other.start_ns)
        self.last_ns = max(self.last_ns, other.last_ns)
        self.errors.update(other.errors)
        self.clamped_low += other.clamped_low
        self.clamped_high += other.clamped_high
        self.dropped_answers += other.dropped_answers
        for second, answers in sorted(other.per_second.items()):
            self._count_second(second, answers)

    def percentile_values(self, percentiles: Iterable[float]) -> list[int]:
        """The latency in us at each of ``percentiles`` (0 when nothing is recorded)."""
        wanted = list(percentiles)
        values = self._histogram.get_percentile_to_value_dict(wanted)
        return [int(values.get(p, 0)) for p in wanted]

    def summary(self) -> dict[str, Any]:
        """Count, errors by code, percentiles and max in us, mean rate, duration, buckets.

        ``per_second`` lists successful answers for each second from ``first_s`` (a
        second of the clock) on, gaps filled with 0.
        """
        values = self._histogram.get_percentile_to_value_dict(list(PERCENTILES.values()))
        duration_s = (self.last_ns - self.start_ns) / NS_PER_S
        first_s = min(self.per_second, default=0)
        last_s = max(self.per_second, default=-1)
        return {
            "count": self.count,
            "errors": dict(sorted(self.errors.items())),
            "error_count": sum(self.errors.values()),
            **{key: int(values.get(p, 0)) for key, p in PERCENTILES.items()},
            "max_us": int(self._histogram.get_max_value()),
            "mean_us": float(self._histogram.get_mean_value()),
            "clamped_low": self.clamped_low,
            "clamped_high": self.clamped_high,
            "duration_s": duration_s,
            "mean_rate_per_s": self.count / duration_s if duration_s > 0 else 0.0,
            "per_second": {
                "first_s": first_s,
                "counts": [self.per_second.get(s, 0) for s in range(first_s, last_s + 1)],
                "dropped_answers": self.dropped_answers,
            },
        }
