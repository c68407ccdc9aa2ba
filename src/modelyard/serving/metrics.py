"""Prometheus metrics of serving, per deployment and version, and Triton-style statistics."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modelyard.serving.buckets import LATENCY_BUCKETS
from modelyard.serving.llm_metrics import LlmCollectors

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass
class VersionStats:
    """Counters like Triton's ``/v2/models/{m}/stats`` reports them (nanoseconds)."""

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
            "Batches by why they were released (full or delay).",
            [*labels, "reason"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "modelyard_inference_queue_depth",
            "Rows waiting in the queue per deployment version.",
            labels,
            registry=r,
        )
        self.llm = LlmCollectors(r)

    def version_stats(self, deployment: str, version: str) -> VersionStats:
        with self._lock:
            return self.stats.setdefault((deployment, version), VersionStats())

    def observer(self, deployment: str, version: str) -> BatchMetrics:
        return BatchMetrics(self, deployment, version)

    def forget(self, deployment: str) -> None:
        with self._lock:
            for key in [k for k in self.stats if k[0] == deployment]:
                del self.stats[key]
        self.llm.forget(deployment)


@dataclass
class BatchMetrics:
    """What one deployment version's batcher reports (the batcher's observer)."""

    metrics: ServingMetrics
    deployment: str
    version: str

    def on_batch(self, size: int, reason: str, queue_s: float, compute_s: float) -> None:
        m, labels = self.metrics, (self.deployment, self.version)
        m.batch_size.labels(*labels).observe(size)
        m.batch_reason.labels(*labels, reason).inc()
        m.queue_time.labels(*labels).observe(queue_s)
        m.compute_time.labels(*labels).observe(compute_s)
        stats = m.version_stats(*labels)
        stats.batches += 1
        stats.batch_rows += size
        stats.queue_ns += int(queue_s * 1e9)
        stats.compute_ns += int(compute_s * 1e9)

    def on_reject(self) -> None:
        self.metrics.version_stats(self.deployment, self.version).rejected += 1

    def on_expire(self) -> None:
        self.metrics.version_stats(self.deployment, self.version).expired += 1

    def on_error(self) -> None:
        """Counted per request by the manager; nothing more to do per batch."""
