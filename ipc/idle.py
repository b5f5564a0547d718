"""Idle strategies for duty loops: how a process waits when it found nothing to do.

A duty loop does some work, reports how much, and lets the strategy decide how to wait::

    idle = BackoffIdle(ring)  # the ring the loop consumes
    while running:
        idle.idle(do_work())  # do_work() -> records handled

``BackoffIdle`` escalates while the loop keeps finding nothing: it returns at once for
``spins`` calls (the loop polls again: lowest latency, one busy core), then gives the
core away with ``os.sched_yield`` for ``yields`` calls, then *parks*: it blocks on the
ring's semaphore for up to ``park_timeout_s`` and wakes when the producer posts it. Any
call that reports work starts over at the spinning phase. On a 2-core machine a parked
process uses no CPU (a timed-out park costs one wake-up per ``park_timeout_s``).

Parking without losing a wake-up (the ``Parker`` protocol, implemented by
``ipc.ring.SpscRing``):

1. ``park_prepare()``: the consumer sets ``SLEEPING`` in the ring header with an atomic
   exchange (a full barrier), *then* looks at the ring again; if records arrived
   meanwhile it does not sleep.
2. ``park(timeout_s)``: it waits on the semaphore.
3. ``park_done()``: it clears ``SLEEPING``.

The producer publishes its records, *then* (after a full barrier) reads ``SLEEPING``,
and posts the semaphore only when it finds it set, taking the flag with an atomic
exchange so each announcement gets at most one post. Either the consumer's second look
sees the records, or the producer sees the flag: a push can never slip between the
consumer's last look and its sleep unnoticed. While the consumer is awake the flag is
clear and a push costs no system call. A post that arrives after the consumer stopped
waiting (timeout) stays in the semaphore and makes its next park return at once: a
spurious wake-up, harmless, since the loop looks at the ring before parking again.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Protocol

DEFAULT_SPINS = 100
DEFAULT_YIELDS = 20
DEFAULT_PARK_TIMEOUT_S = 0.1


class Parker(Protocol):
    """What a consumer can sleep on (``SpscRing`` is one); see the module docstring."""

    def park_prepare(self) -> bool:
        """Announce the sleep; True if nothing arrived meanwhile (then ``park``)."""

    def park(self, timeout_s: float) -> bool:
        """Sleep until woken (True) or ``timeout_s`` passed (False)."""

    def park_done(self) -> None:
        """Withdraw the announcement."""


@dataclass(frozen=True, slots=True)
class IdleStats:
    """Counts since the strategy was made: idle calls that spun, yielded, and parked;
    parks that were woken, that timed out, and that were called off because work had
    arrived between the last poll and the announcement."""

    spins: int
    yields: int
    parks: int
    woken: int
    timeouts: int
    called_off: int


class BackoffIdle:
    """Spin, then yield, then park on ``parker`` (or sleep ``park_timeout_s`` if there
    is none); see the module docstring. Not thread-safe: one per duty loop."""

    def __init__(
        self,
        parker: Parker | None = None,
        *,
        spins: int = DEFAULT_SPINS,
        yields: int = DEFAULT_YIELDS,
        park_timeout_s: float = DEFAULT_PARK_TIMEOUT_S,
    ) -> None:
        if spins < 0 or yields < 0 or not park_timeout_s > 0:
            raise ValueError(
                "spins and yields must be >= 0 and park_timeout_s > 0; got "
                f"{spins}, {yields}, {park_timeout_s}"
            )
        self._parker = parker
        self._spins = spins
        self._yield_until = spins + yields
        self._park_timeout_s = park_timeout_s
        self._empty = 0  # idle calls since work was last reported
        self._counts = [0, 0, 0, 0, 0, 0]  # IdleStats' fields, in order

    def idle(self, work_count: int) -> None:
        """Wait as the phase calls for, or return at once when ``work_count > 0``."""
        if work_count > 0:
            self._empty = 0
            return
        empty = self._empty
        self._empty = empty + 1
        if empty < self._spins:
            self._counts[0] += 1
        elif empty < self._yield_until:
            self._counts[1] += 1
            os.sched_yield()
        else:
            self._counts[2] += 1
            self._park()

    def _park(self) -> None:
        parker = self._parker
        if parker is None:
            time.sleep(self._park_timeout_s)
            self._counts[4] += 1
            return
        try:
            if not parker.park_prepare():
                self._counts[5] += 1
                self._empty = 0  # work is there: poll it at full speed
            elif parker.park(self._park_timeout_s):
                self._counts[3] += 1
            else:
                self._counts[4] += 1
        finally:
            parker.park_done()

    def reset(self) -> None:
        """Start over at the spinning phase (as after work)."""
        self._empty = 0

    def stats(self) -> IdleStats:
        """The counts so far."""
        return IdleStats(*self._counts)
