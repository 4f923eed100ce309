"""Prometheus metrics of a server, in a registry of its own (no global state): ``GET /metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

KNOWN_PATHS = ("/predict", "/tasks", "/health", "/metrics", "/docs", "/openapi.json", "/feedback", "/v1/models",
               "/v1/completions", "/v1/chat/completions", "/v1/route")


class ServerMetrics:
    """Request counts and latency by route and status, batch sizes, routing sources, library version."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("clora_requests", "HTTP requests answered", ["route", "status"], registry=self.registry)
        self.latency = Histogram("clora_request_seconds", "Time to answer a request", ["route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.batch_size = Histogram("clora_batch_inputs", "Inputs answered together in one forward pass",
                                    registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.routes = Counter("clora_routed_inputs", "Inputs by how their task was chosen", ["source"],
                              registry=self.registry)
        self.version = Gauge("clora_library_version", "Library version being served", registry=self.registry)
        self.queue = Gauge("clora_queue_inputs", "Inputs waiting for a batch", registry=self.registry)

    def response(self, path: str, status: int, seconds: float) -> None:
        route = path if path in KNOWN_PATHS else "other"  # no label per unknown path: bounded series
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
