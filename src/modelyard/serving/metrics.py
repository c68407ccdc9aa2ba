"""Prometheus metrics of serving, per deployment and version, and Triton-style statistics."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modelyard.serving.buckets import LATENCY_BUCKETS
from modelyard.serving.llm_metrics import LlmCollectors

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


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
        self.llm = LlmCollectors(r)

    def version_stats(self, deployment: str, version: str) -> VersionStats:
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

    def forget(self, deployment: str) -> None:
        with self._lock:
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
            stats = self.stats
            stats.batches += 1
            stats.batch_rows += size - failed
            stats.queue_ns += int(queue_s * 1e9)
            stats.compute_ns += int(compute_s * 1e9)

    def on_reject(self) -> None:
        self.stats.rejected += 1

    def on_expire(self) -> None:
        self.stats.expired += 1

    def on_error(self) -> None:
        """Counted per request by :meth:`failed`; nothing more to do per batch."""
