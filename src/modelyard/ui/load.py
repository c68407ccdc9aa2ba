"""What a deployment is doing: requests, rate and latency percentiles per served version.

Read from the serving metrics (:class:`~modelyard.serving.metrics.ServingMetrics`): counts
since the version was loaded on this server, latency percentiles from the Prometheus
histogram's buckets, and the request rate between this view and earlier ones of the last
minute (the page polls every few seconds).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

from modelyard.serving.metrics import ServingMetrics

WINDOW_S = 60.0
QUANTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class VersionLoad:
    """One served version's traffic on this server."""

    version: str
    ok: int
    failed: int
    rejected: int
    expired: int
    rate_per_s: float | None
    mean_ms: float | None
    percentiles_ms: dict[str, float | None]


class LoadTracker:
    """Remembers recent request counts per deployment version, to tell a rate."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self._metrics = metrics
        self._seen: dict[tuple[str, str], deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()

    def _rate(self, key: tuple[str, str], count: int) -> float | None:
        now = time.monotonic()
        with self._lock:
            seen = self._seen.setdefault(key, deque())
            while seen and now - seen[0][0] > WINDOW_S:
                seen.popleft()
            seen.append((now, count))
            first_t, first_count = seen[0]
        return (count - first_count) / (now - first_t) if now - first_t >= 0.5 else None

    def of(self, deployment: str, versions: list[str]) -> list[VersionLoad]:
        buckets = self._buckets(deployment)
        loads = []
        for version in versions:
            stats = self._metrics.version_stats(deployment, version)
            answered = stats.success + stats.failure
            loads.append(
                VersionLoad(
                    version=version,
                    ok=stats.success,
                    failed=stats.failure,
                    rejected=stats.rejected,
                    expired=stats.expired,
                    rate_per_s=self._rate((deployment, version), answered),
                    mean_ms=stats.success_ns / stats.success / 1e6 if stats.success else None,
                    percentiles_ms={
                        f"p{round(q * 100)}": _quantile(buckets.get(version, []), q)
                        for q in QUANTILES
                    },
                )
            )
        return loads

    def _buckets(self, deployment: str) -> dict[str, list[tuple[float, float]]]:
        """``{version: [(upper bound s, cumulative count), ...]}`` of the latency histogram."""
        found: dict[str, list[tuple[float, float]]] = {}
        for family in self._metrics.latency.collect():
            for sample in family.samples:
                labels = sample.labels
                if sample.name.endswith("_bucket") and labels.get("deployment") == deployment:
                    bound = float(labels["le"])
                    found.setdefault(labels["version"], []).append((bound, sample.value))
        return {v: sorted(b) for v, b in found.items()}


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile in milliseconds, interpolated inside its bucket (None: no data)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    wanted = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= wanted:
            if math.isinf(bound):
                return lower_bound * 1000
            share = (wanted - lower_count) / (count - lower_count) if count > lower_count else 0
            return (lower_bound + (bound - lower_bound) * share) * 1000
        lower_bound, lower_count = bound, count
    return lower_bound * 1000
