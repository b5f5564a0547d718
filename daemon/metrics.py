"""Prometheus metrics of the server (docs/daemon.md, "Metrics").

Counted per batch, never per command in Python: a batch's (kind, result) pairs are
counted with numpy and added to the counters in one go. Served over HTTP by
``prometheus_client`` on its own thread (default 127.0.0.1:9316, ``/metrics``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from core.schema import CommandKind, Result
from persistence.journal import Journal

DEFAULT_METRICS_ADDRESS = "127.0.0.1:9316"

_KINDS = {int(k): k.name.lower() for k in CommandKind}
_RESULTS = {int(r): r.name.lower() for r in Result}


class ServerMetrics:
    """The server's metrics in their own registry."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.registry = CollectorRegistry()
        r = self.registry
        self.commands = Counter(
            "matchd_commands",
            "Commands answered, by kind and result",
            ["kind", "result"],
            registry=r,
        )
        self.frames = Counter(
            "matchd_frames", "Request frames received, by kind", ["kind"], registry=r
        )
        self.batch_seconds = Histogram(
            "matchd_batch_seconds",
            "Time to execute, log and make durable one batch",
            buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1.0),
            registry=r,
        )
        self.batch_commands = Histogram(
            "matchd_batch_commands",
            "Commands per batch",
            buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384),
            registry=r,
        )
        self.durable_seq = Gauge("matchd_durable_seq", "Last durable sequence", registry=r)
        self.consumer_lag = Gauge(
            "matchd_consumer_lag_records",
            "Durable log records a consumer (the MySQL drainer 'mysql', ...) has not applied",
            ["consumer"],
            registry=r,
        )
        self.consumer_lag_seconds = Gauge(
            "matchd_consumer_lag_seconds",
            "Seconds since the consumer was last seen caught up (0 while it is)",
            ["consumer"],
            registry=r,
        )
        self._next_consumers = 0.0
        self._caught_up: dict[str, float] = {}
        self.log_lag = Gauge(
            "matchd_log_lag_records",
            "Records appended to the log and not yet durable (held ones included)",
            registry=r,
        )
        self.available = Gauge(
            "matchd_log_available", "1 while the log takes writes, 0 while it fails", registry=r
        )
        self.held = Gauge("matchd_held_batches", "Batches waiting for the log", registry=r)
        self.log_bytes = Gauge("matchd_log_bytes_written", "Bytes written to the log", registry=r)
        self.log_failures = Gauge("matchd_log_failures", "Failed log commits", registry=r)
        self.busy = Counter(
            "matchd_commands_refused_busy",
            "Commands answered SERVICE_UNAVAILABLE without running (pipeline full or log failing)",
            registry=r,
        )
        self.pending = Gauge(
            "matchd_pipeline_pending", "Commands in the pipeline, not yet durable", registry=r
        )
        self.in_flight = Gauge(
            "matchd_pipeline_in_flight", "Works dispatched to pair workers, not settled", registry=r
        )
        self.ring_used = Gauge(
            "matchd_ring_used", "Records waiting in a ring", ["worker", "ring"], registry=r
        )
        self.ring_capacity = Gauge(
            "matchd_ring_capacity", "Capacity of a ring", ["worker", "ring"], registry=r
        )
        self.ring_peak = Gauge(
            "matchd_ring_peak", "Highest occupancy of a ring seen", ["worker", "ring"], registry=r
        )
        self.role = Gauge(
            "matchd_replication_primary",
            "1 while this engine is the primary, 0 while a standby (with [replication])",
            registry=r,
        )
        self.epoch = Gauge("matchd_replication_epoch", "Highest epoch known", registry=r)
        self.replicated = Gauge(
            "matchd_replication_seq",
            "Primary: the sequence durable on each standby; standby: its primary's as heard",
            ["node"],
            registry=r,
        )
        self.held_replies = Gauge(
            "matchd_replication_held_replies",
            "Sync mode: replies waiting for the standbys to hold what they show",
            registry=r,
        )
        self.refused_replication = Counter(
            "matchd_commands_refused_replication",
            "Commands refused without running: not the primary, or too few standbys (sync)",
            ["result"],
            registry=r,
        )
        self._server: Any = None

    def count(self, commands: np.ndarray, results: np.ndarray) -> None:
        """Count a batch's commands by (kind, result), with numpy."""
        if not len(results):
            return
        pairs = commands["kind"].astype(np.int64) << 16 | results["code"].astype(np.int64)
        values, counts = np.unique(pairs, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            kind = _KINDS.get(value >> 16, str(value >> 16))
            result = _RESULTS.get(value & 0xFFFF, str(value & 0xFFFF))
            self.commands.labels(kind, result).inc(count)

    def batch(self, seconds: float, commands: int) -> None:
        """One batch made durable."""
        self.batch_seconds.observe(seconds)
        self.batch_commands.observe(commands)

    def replication(self, primary: bool, epoch: int, seqs: dict[str, int], held: int) -> None:
        """Gauges of the replication role."""
        self.role.set(1 if primary else 0)
        self.epoch.set(epoch)
        for node, seq in seqs.items():
            self.replicated.labels(node).set(seq)
        self.held_replies.set(held)

    def refused(self, commands: int) -> None:
        """Commands refused without running (back-pressure)."""
        self.busy.inc(commands)

    def pipeline(self, pending: int, in_flight: int, rings: list[tuple[int, str, Any]]) -> None:
        """Gauges of the pipeline: ``rings`` as ``Pipeline.ring_stats`` gives them."""
        self.pending.set(pending)
        self.in_flight.set(in_flight)
        for worker, name, stats in rings:
            labels = (str(worker), name)
            self.ring_used.labels(*labels).set(stats.used)
            self.ring_capacity.labels(*labels).set(stats.capacity)
            self.ring_peak.labels(*labels).set(stats.peak)

    def refresh(self, held: int) -> None:
        """Gauges that follow the journal."""
        stats = self.journal.writer.stats()
        self.durable_seq.set(self.journal.durable_seq)
        self.log_lag.set(stats.last_seq - stats.durable_seq)
        self._refresh_consumers()
        self.available.set(1 if self.journal.available else 0)
        self.held.set(held)
        self.log_bytes.set(stats.bytes_written)
        self.log_failures.set(stats.failures)

    def _refresh_consumers(self) -> None:
        """The consumers' lag, read from their position files twice a second."""
        now = time.monotonic()
        if now < self._next_consumers:
            return
        self._next_consumers = now + 0.5
        durable = self.journal.durable_seq
        for name, position in self.journal.consumer_positions().items():
            lag = max(0, durable - position)
            since = self._caught_up.setdefault(name, now)
            if lag == 0:
                self._caught_up[name] = since = now
            self.consumer_lag.labels(name).set(lag)
            self.consumer_lag_seconds.labels(name).set(now - since)

    def serve(self, address: str = DEFAULT_METRICS_ADDRESS) -> int:
        """Serve ``/metrics`` on ``host:port`` (port 0: any); returns the port."""
        host, _, port = address.rpartition(":")
        self._server, _ = start_http_server(int(port), host or "127.0.0.1", registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        """Stop the HTTP server."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
