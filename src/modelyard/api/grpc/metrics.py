"""Prometheus metrics of the gRPC endpoint, next to the HTTP ones in the server's registry.

Inference over gRPC is also counted where HTTP inference is, by the serving layer
(``modelyard_inference_*``, per deployment and version); these count the calls themselves,
like ``modelyard_http_requests_total`` does for HTTP.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from modelyard.serving.buckets import LATENCY_BUCKETS


class GrpcMetrics:
    """gRPC collectors in the server's own Prometheus registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "modelyard_grpc_requests_total",
            "gRPC calls by method and status code.",
            ["method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "modelyard_grpc_request_duration_seconds",
            "gRPC call latency by method.",
            ["method"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
