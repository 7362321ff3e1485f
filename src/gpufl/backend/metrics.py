"""Prometheus metrics, one registry per app (so tests and several apps in a process don't collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.records = Counter(
            "gpufl_ingest_records",
            "Ingested records by outcome (stored, duplicate, rejected)",
            ["outcome", "stream"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "gpufl_ingest_rejected_records",
            "Rejected records by reason class",
            ["reason"],
            registry=self.registry,
        )
        self.batches = Counter(
            "gpufl_ingest_batches", "Ingest batches by HTTP status", ["status"], registry=self.registry
        )
        self.latency = Histogram(
            "gpufl_http_request_seconds",
            "HTTP request latency by route template",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.pruned = Counter(
            "gpufl_retention_deleted_sessions",
            "Sessions deleted by retention",
            ["reason"],
            registry=self.registry,
        )


def reason_class(reason: str) -> str:
    """A low-cardinality label for a rejection reason."""
    r = reason.lower()
    if "deleted by retention" in r:  # gpufl.backend.ingest._pruned_reason: refused, not invalid
        return "pruned"
    if r.startswith("malformed json") or "nested" in r:
        return "malformed"
    if "posted to /events" in r or "does not belong on stream" in r:
        return "wrong_stream"
    if r.startswith("expected") or "object missing required field" in r or "invalid enum" in r:
        return "schema"
    return "semantic"
