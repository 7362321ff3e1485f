"""Retention: delete whole sessions past the age window, then oldest-first while over the size cap.

A session's age is its newest record time (CLOCK_REALTIME; last update time when it has none). Its size is
the bytes of the records stored for it (as received, uncompressed): an engine-independent measure that
shrinks exactly by what a deletion removes, unlike database file sizes that are reclaimed lazily.
"""

from __future__ import annotations

import logging
import threading
import time

from gpufl.backend.metrics import Metrics
from gpufl.backend.store import SqlStore

log = logging.getLogger("gpufl.backend.retention")


def plan(
    usage: list[tuple[str, int, int]], retention_days: float | None, max_store_bytes: int | None, now_ns: int
) -> dict[str, str]:
    """Which sessions to delete and why ('age' or 'size'); usage is (session, last_ns, bytes), oldest first."""
    out: dict[str, str] = {}
    if retention_days is not None:
        cutoff = now_ns - int(retention_days * 86400e9)
        for sid, last, _ in usage:
            if last < cutoff:
                out[sid] = "age"
    if max_store_bytes is not None:
        total = sum(b for sid, _, b in usage if sid not in out)
        for sid, _, b in usage:
            if total <= max_store_bytes:
                break
            if sid in out:
                continue
            out[sid] = "size"
            total -= b
    return out


def prune(
    store: SqlStore, retention_days: float | None, max_store_bytes: int | None, metrics: Metrics | None = None
) -> dict[str, str]:
    todo = plan(store.session_usage(), retention_days, max_store_bytes, time.time_ns())
    for sid, why in todo.items():
        store.delete_session(sid)
        log.info("retention: deleted session %s (%s)", sid, why)
        if metrics is not None:
            metrics.pruned.labels(why).inc()
    return todo


class RetentionJob:
    """Runs prune every ``interval_s`` in a daemon thread until stopped."""

    def __init__(
        self,
        store: SqlStore,
        retention_days: float | None,
        max_store_bytes: int | None,
        interval_s: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._args = (store, retention_days, max_store_bytes, metrics)
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpufl-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                prune(*self._args)
            except Exception:  # keep the job alive across a transient store error; it is logged
                log.exception("retention run failed")
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
