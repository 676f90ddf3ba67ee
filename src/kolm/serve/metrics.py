"""Prometheus metrics of the server (`GET /metrics`): requests, tokens, queue depth, TTFT and latency.

Each app gets its own registry, so several servers in one process (tests)
never collide in the global one. Queue depth and running requests are read
from the engine at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["ServerMetrics", "CONTENT_TYPE_LATEST"]

# Seconds; CPU decoding of small models sits in the low buckets, big models on busy servers in the high ones.
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class ServerMetrics:
    """The server's counters, gauges and histograms in one registry."""

    def __init__(self, stats: Callable[[], dict[str, int]] | None = None):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "kolm_requests", "HTTP API requests by endpoint and status code", ["endpoint", "status"], registry=r
        )
        self.prompt_tokens = Counter("kolm_prompt_tokens", "prompt tokens of finished requests", registry=r)
        self.generation_tokens = Counter("kolm_generation_tokens", "tokens generated", registry=r)
        self.finished = Counter("kolm_request_finish", "finished generations by reason", ["reason"], registry=r)
        self.ttft = Histogram(
            "kolm_time_to_first_token_seconds", "time from arrival to first token", buckets=_TTFT_BUCKETS, registry=r
        )
        self.latency = Histogram(
            "kolm_request_latency_seconds", "time from arrival to last token", buckets=_LATENCY_BUCKETS, registry=r
        )
        self._stats = stats or (lambda: {})
        Gauge("kolm_queue_depth", "requests waiting for a batch row", registry=r).set_function(
            lambda: self._stats().get("waiting", 0)
        )
        Gauge("kolm_running_requests", "requests in the running batch", registry=r).set_function(
            lambda: self._stats().get("running", 0)
        )

    def bind(self, stats: Callable[[], dict[str, int]]) -> None:
        """Read queue depth and running requests from `stats()` (the engine, once loaded)."""
        self._stats = stats

    def observe(self, request: Any) -> None:
        """Record a finished engine request (`kolm.infer.batch.Request`)."""
        self.prompt_tokens.inc(len(request.prompt_ids))
        self.generation_tokens.inc(request.generated)
        self.finished.labels(request.finish_reason or "unknown").inc()
        if request.first_token_at is not None:
            self.ttft.observe(request.first_token_at - request.submitted)
        if request.finished_at is not None:
            self.latency.observe(request.finished_at - request.submitted)

    def render(self) -> bytes:
        return generate_latest(self.registry)
