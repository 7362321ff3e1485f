"""Progress of the agent: Prometheus metrics (``--metrics-port``) and a periodic status line.

Counters live in a registry of their own so several agents (tests) can run in one process.
"""

from __future__ import annotations

import logging
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

log = logging.getLogger("gpufl.agent")


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.events = Counter(
            "gpufl_agent_events", "Records acknowledged by the target", ["stream"], registry=r
        )
        self.bytes = Counter("gpufl_agent_bytes", "Bytes of records acknowledged by the target", registry=r)
        self.duplicates = Counter(
            "gpufl_agent_duplicates", "Records the target already held (re-delivery)", registry=r
        )
        self.batches = Counter("gpufl_agent_batches", "Batches acknowledged by the target", registry=r)
        self.retries = Counter("gpufl_agent_retries", "Delivery attempts that failed", ["reason"], registry=r)
        self.dead_letters = Counter(
            "gpufl_agent_dead_letters", "Lines written to the dead-letter file", ["reason"], registry=r
        )
        self.refused = Counter(
            "gpufl_agent_records_refused",
            "Records the target refused for good and the agent passed over, by reason (pruned: the "
            "backend's retention deleted their session); not retried, not dead-lettered",
            ["reason"],
            registry=r,
        )
        self.vanished = Counter(
            "gpufl_agent_segments_vanished", "Segments deleted before they were fully read", registry=r
        )
        # The lag is unknown until the first scan has measured the folder: NaN, not 0, since 0 means
        # "everything present was shipped" (an agent starting in front of a backlog read 0 for ~0.4 s).
        # NaN fails every comparison in PromQL, so neither "lag == 0" nor "lag > X" holds on it;
        # gpufl_agent_lag_known says so explicitly for rules that want to alert on it.
        self.lag_bytes = Gauge(
            "gpufl_agent_lag_bytes",
            "Bytes in the folder not yet delivered (NaN until the first scan)",
            registry=r,
        )
        self.lag_seconds = Gauge(
            "gpufl_agent_lag_seconds",
            "How long the oldest undelivered data has been waiting (NaN until the first scan)",
            registry=r,
        )
        self.lag_known = Gauge(
            "gpufl_agent_lag_known",
            "1 once a scan of the folder has measured the lag gauges, 0 before (they are NaN then)",
            registry=r,
        )
        self.lag_bytes.set(float("nan"))
        self.lag_seconds.set(float("nan"))
        self.segments = Gauge("gpufl_agent_segments", "Segment files in the folder", registry=r)
        self.sessions = Gauge("gpufl_agent_sessions", "Sessions in the folder", registry=r)
        # The archiver (--archiver-endpoint): closed segments waiting for the bucket.
        self.archive_lag_segments = Gauge(
            "gpufl_agent_archive_lag_segments", "Closed segments not yet archived", registry=r
        )
        self.archive_lag_bytes = Gauge(
            "gpufl_agent_archive_lag_bytes", "Bytes of closed segments not yet archived", registry=r
        )
        self.archive_lag_seconds = Gauge(
            "gpufl_agent_archive_lag_seconds",
            "How long the oldest closed, not yet archived segment has been waiting",
            registry=r,
        )
        self.archived_segments = Counter(
            "gpufl_agent_archived_segments", "Segments uploaded to the archive and verified", registry=r
        )
        self.archived_bytes = Counter(
            "gpufl_agent_archived_bytes",
            "Bytes of segments archived, uncompressed (stage=raw) and as stored (stage=compressed)",
            ["stage"],
            registry=r,
        )
        self.archive_errors = Counter(
            "gpufl_agent_archive_errors",
            "Archive attempts that failed, by kind (connect, auth, bucket, verify, error)",
            ["kind"],
            registry=r,
        )
        self._lock = threading.Lock()
        self.total_events = 0
        self.total_retries = 0
        self.total_dead = 0
        self.total_refused = 0
        self._last_t = time.monotonic()
        self._last_events = 0

    # Thread-safe helpers that also keep plain totals for the status line and tests.
    def delivered(self, stream: str, n: int, nbytes: int, duplicates: int) -> None:
        self.events.labels(stream).inc(n)
        self.bytes.inc(nbytes)
        self.duplicates.inc(duplicates)
        self.batches.inc()
        with self._lock:
            self.total_events += n

    def retry(self, kind: str) -> None:
        self.retries.labels(kind).inc()
        with self._lock:
            self.total_retries += 1

    def dead_letter(self, kind: str) -> None:
        self.dead_letters.labels(kind).inc()
        with self._lock:
            self.total_dead += 1

    def refused_records(self, kind: str, n: int) -> None:
        self.refused.labels(kind).inc(n)
        with self._lock:
            self.total_refused += n

    def archived(self, raw_bytes: int, compressed_bytes: int) -> None:
        self.archived_segments.inc()
        self.archived_bytes.labels("raw").inc(raw_bytes)
        self.archived_bytes.labels("compressed").inc(compressed_bytes)

    def serve(self, port: int, addr: str) -> None:
        start_http_server(port, addr=addr, registry=self.registry)

    def status_line(self) -> str:
        now = time.monotonic()
        with self._lock:
            events = self.total_events
            rate = (events - self._last_events) / max(1e-9, now - self._last_t)
            self._last_t, self._last_events = now, events
            retries, dead, refused = self.total_retries, self.total_dead, self.total_refused
        if self.lag_known._value.get():
            lag = f"{int(self.lag_bytes._value.get())}B/{self.lag_seconds._value.get():.1f}s"
        else:
            lag = "unknown"
        return (
            f"events={events} rate={rate:.0f}/s lag={lag} retries={retries} dead_letters={dead} "
            f"refused={refused} "
            f"sessions={int(self.sessions._value.get())}"
        )
