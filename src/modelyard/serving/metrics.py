"""Prometheus metrics of serving, per deployment and version, and Triton-style statistics.

A server of one process keeps Triton's statistics in memory (:class:`VersionStats`). A server
of several (``--workers N``, ``--model-process``) also counts them in Prometheus collectors,
which prometheus_client's multiprocess mode writes to the server's shared folder; the
statistics are then summed from that folder, as ``/metrics`` is, so any process answers the
counts of all of them, the batches of a model process included.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Metric, multiprocess

from modelyard.serving.buckets import LATENCY_BUCKETS
from modelyard.serving.llm_metrics import LlmCollectors

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class QueueDepth(Protocol):
    """A queue whose waiting rows ``/metrics`` reports (a deployment version's batcher)."""

    @property
    def queue_depth(self) -> int: ...


@dataclass
class VersionStats:
    """Counters like Triton's ``/v2/models/{m}/stats`` reports them (nanoseconds).

    ``batches`` and ``batch_rows`` count what was computed for a request that got outputs
    (Triton's execution and inference counts): a batch whose every row failed, and the rows
    of requests refused as invalid input, are no inferences.
    """

    success: int = 0
    failure: int = 0
    success_ns: int = 0
    queue_ns: int = 0
    compute_ns: int = 0
    batches: int = 0
    batch_rows: int = 0
    rejected: int = 0
    expired: int = 0
    last_inference_ms: int = 0


@dataclass
class ServingMetrics:
    """All serving collectors, registered in the server's own registry."""

    registry: CollectorRegistry
    shared_dir: Path | None = None
    """The server's Prometheus multiprocess folder when it runs as several processes: the
    statistics are then counted in collectors too and read back summed over processes."""
    stats: dict[tuple[str, str], VersionStats] = field(default_factory=dict)
    _versions: dict[tuple[str, str], VersionMetrics] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        labels = ["deployment", "version"]
        r = self.registry
        self.requests = Counter(
            "modelyard_inference_requests_total",
            "Inference requests by outcome.",
            [*labels, "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "modelyard_inference_latency_seconds",
            "Request latency from arrival to answer.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_time = Histogram(
            "modelyard_inference_queue_seconds",
            "Time a batch's requests waited in the queue.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute_time = Histogram(
            "modelyard_inference_compute_seconds",
            "Time computing one batch.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "modelyard_inference_batch_size",
            "Rows per batch.",
            labels,
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_reason = Counter(
            "modelyard_inference_batches_total",
            "Batches by why they were released: idle (no batch computing), full, cost "
            "(waiting longer would not pay) or delay (max_batch_delay_ms ran out).",
            [*labels, "reason"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "modelyard_inference_queue_depth",
            "Rows waiting in the queue per deployment version.",
            labels,
            registry=r,
            multiprocess_mode="livesum",
        )
        self.llm = LlmCollectors(r, shared=self.shared_dir is not None)
        self.executions: SharedStats | None = (
            SharedStats(r, labels) if self.shared_dir is not None else None
        )

    def version_stats(self, deployment: str, version: str) -> VersionStats:
        """Triton's statistics of one deployment version: this process's, or, run as several
        processes, those of every process summed from :attr:`shared_dir`."""
        if self.shared_dir is not None:
            collector = multiprocess.MultiProcessCollector(None, str(self.shared_dir))  # type: ignore[no-untyped-call]
            return summed_stats(collector.collect(), deployment, version)  # type: ignore[no-untyped-call]
        with self._lock:
            return self.stats.setdefault((deployment, version), VersionStats())

    def version(self, deployment: str, version: str) -> VersionMetrics:
        """The collectors of one deployment version, bound to its labels."""
        key = (deployment, version)
        found = self._versions.get(key)
        if found is None:
            with self._lock:
                found = self._versions.get(key)
                if found is None:
                    stats = self.stats.setdefault(key, VersionStats())
                    found = self._versions[key] = VersionMetrics(self, key, stats)
        return found

    def observer(self, deployment: str, version: str) -> VersionMetrics:
        """What one deployment version's batcher reports to (a BatchObserver)."""
        return self.version(deployment, version)

    def watch_queue(self, deployment: str, version: str, queue: QueueDepth) -> None:
        """Report the rows waiting in one version's ``queue``, read when ``/metrics`` is
        scraped. The queue is held weakly: once it is retired, the version reports 0.

        Run as several processes, a gauge read through a function is not collected
        (prometheus_client's multiprocess mode reads only what processes wrote), so the
        series is left out there; the queue's bound shows as 429s in the request counter.
        """
        if self.shared_dir is not None:
            return
        held = weakref.ref(queue)

        def depth() -> float:
            alive = held()
            return 0.0 if alive is None else float(alive.queue_depth)

        self.queue_depth.labels(deployment, version).set_function(depth)

    def forget(self, deployment: str) -> None:
        with self._lock:
            for key in [k for k in self._versions if k[0] == deployment]:
                with contextlib.suppress(KeyError):
                    self.queue_depth.remove(*key)
            for key in [k for k in self.stats if k[0] == deployment]:
                del self.stats[key]
            for key in [k for k in self._versions if k[0] == deployment]:
                del self._versions[key]
        self.llm.forget(deployment)


class VersionMetrics:
    """One deployment version's collectors, bound to its labels once: each ``labels()``
    lookup costs a lock and a dict lookup, and requests would otherwise pay several."""

    def __init__(
        self, metrics: ServingMetrics, labels: tuple[str, str], stats: VersionStats
    ) -> None:
        self.stats = stats
        self._shared = None if metrics.executions is None else metrics.executions.bound(*labels)
        self._ok = metrics.requests.labels(*labels, "ok")
        self._rejected = metrics.requests.labels(*labels, "rejected")
        self._error = metrics.requests.labels(*labels, "error")
        self._latency = metrics.latency.labels(*labels)
        self._queue_time = metrics.queue_time.labels(*labels)
        self._compute_time = metrics.compute_time.labels(*labels)
        self._batch_size = metrics.batch_size.labels(*labels)
        self._reasons = {
            reason: metrics.batch_reason.labels(*labels, reason)
            for reason in ("idle", "full", "cost", "delay")
        }

    def succeeded(self, seconds: float) -> None:
        """A request got its outputs after ``seconds``."""
        self._ok.inc()
        self._latency.observe(seconds)
        stats = self.stats
        stats.success += 1
        stats.success_ns += int(seconds * 1e9)
        stats.last_inference_ms = int(time.time() * 1000)

    def failed(self, status: int) -> None:
        """A request failed with HTTP ``status`` (429: turned away by a full queue)."""
        (self._rejected if status == 429 else self._error).inc()
        self.stats.failure += 1

    # -- the batcher's observer ----------------------------------------------------------
    def on_batch(
        self, size: int, reason: str, queue_s: float, compute_s: float, failed: int
    ) -> None:
        self._batch_size.observe(size)
        self._reasons[reason].inc()
        self._queue_time.observe(queue_s)
        self._compute_time.observe(compute_s)
        if failed < size:
            if self._shared is not None:
                self._shared.executed(size - failed, queue_s, compute_s)
            stats = self.stats
            stats.batches += 1
            stats.batch_rows += size - failed
            stats.queue_ns += int(queue_s * 1e9)
            stats.compute_ns += int(compute_s * 1e9)

    def on_reject(self) -> None:
        self.stats.rejected += 1
        if self._shared is not None:
            self._shared.rejected.inc()

    def on_expire(self) -> None:
        self.stats.expired += 1
        if self._shared is not None:
            self._shared.expired.inc()

    def on_error(self) -> None:
        """Counted per request by :meth:`failed`; nothing more to do per batch."""


class SharedStats:
    """Triton's statistics that ``/metrics`` does not already count, as collectors, so that
    a server of several processes can sum them (only registered there: one process keeps
    them in :class:`VersionStats`). Successes, failures and their time are read from the
    request counter and the latency histogram."""

    def __init__(self, registry: CollectorRegistry, labels: list[str]) -> None:
        self.executions = Counter(
            "modelyard_inference_executions_total",
            "Batches computed that gave at least one request its outputs (Triton's "
            "execution_count).",
            labels,
            registry=registry,
        )
        self.rows = Counter(
            "modelyard_inference_rows_total",
            "Rows computed for requests that got their outputs (Triton's inference_count).",
            labels,
            registry=registry,
        )
        self.queue_seconds = Counter(
            "modelyard_inference_execution_queue_seconds_total",
            "Time the requests of those batches waited in the queue.",
            labels,
            registry=registry,
        )
        self.compute_seconds = Counter(
            "modelyard_inference_execution_compute_seconds_total",
            "Time computing those batches.",
            labels,
            registry=registry,
        )
        self.rejected = Counter(
            "modelyard_inference_queue_full_total",
            "Requests turned away because the batcher's queue was full.",
            labels,
            registry=registry,
        )
        self.expired = Counter(
            "modelyard_inference_expired_total",
            "Requests whose deadline passed while they waited in the queue.",
            labels,
            registry=registry,
        )
        self.last = Gauge(
            "modelyard_inference_last_timestamp_seconds",
            "When the last batch that gave outputs was computed (Unix time).",
            labels,
            registry=registry,
            multiprocess_mode="max",
        )

    def bound(self, deployment: str, version: str) -> BoundSharedStats:
        return BoundSharedStats(self, (deployment, version))


class BoundSharedStats:
    """:class:`SharedStats` bound to one deployment version's labels."""

    def __init__(self, shared: SharedStats, labels: tuple[str, str]) -> None:
        self._executions = shared.executions.labels(*labels)
        self._rows = shared.rows.labels(*labels)
        self._queue = shared.queue_seconds.labels(*labels)
        self._compute = shared.compute_seconds.labels(*labels)
        self._last = shared.last.labels(*labels)
        self.rejected = shared.rejected.labels(*labels)
        self.expired = shared.expired.labels(*labels)

    def executed(self, rows: int, queue_s: float, compute_s: float) -> None:
        self._executions.inc()
        self._rows.inc(rows)
        self._queue.inc(queue_s)
        self._compute.inc(compute_s)
        self._last.set(time.time())


# Sample names read back into VersionStats, and the field each adds to.
_SUMMED = {
    "modelyard_inference_executions_total": "batches",
    "modelyard_inference_rows_total": "batch_rows",
    "modelyard_inference_queue_full_total": "rejected",
    "modelyard_inference_expired_total": "expired",
    "modelyard_inference_latency_seconds_count": "success",
}
_SUMMED_NS = {
    "modelyard_inference_execution_queue_seconds_total": "queue_ns",
    "modelyard_inference_execution_compute_seconds_total": "compute_ns",
    "modelyard_inference_latency_seconds_sum": "success_ns",
}


def summed_stats(metrics: Iterable[Metric], deployment: str, version: str) -> VersionStats:
    """Triton's statistics of one deployment version from collected (summed) metrics."""
    stats = VersionStats()
    for family in metrics:
        for sample in family.samples:
            labels = sample.labels
            if labels.get("deployment") != deployment or labels.get("version") != version:
                continue
            name = sample.name
            if name in _SUMMED:
                field_ = _SUMMED[name]
                setattr(stats, field_, getattr(stats, field_) + int(sample.value))
            elif name in _SUMMED_NS:
                field_ = _SUMMED_NS[name]
                setattr(stats, field_, getattr(stats, field_) + round(sample.value * 1e9))
            elif name == "modelyard_inference_requests_total" and labels["outcome"] != "ok":
                stats.failure += int(sample.value)
            elif name == "modelyard_inference_last_timestamp_seconds":
                stats.last_inference_ms = max(stats.last_inference_ms, int(sample.value * 1000))
    return stats
