"""Retention: delete whole sessions past the age window, then oldest-first while over the size cap.

A session's age is its newest record time (CLOCK_REALTIME; last update time when it has none). Its size is
the bytes of the records stored for it (as received, uncompressed): an engine-independent measure that
shrinks exactly by what a deletion removes, unlike database file sizes that are reclaimed lazily.

A session that received records within the quiet period (``quiet_s``, by the backend's clock when they were
stored) is never deleted, whatever its age or size: it is still arriving (a live run, an agent catching up,
a replay of old records), and deleting it would leave what arrives next as a fragment. A deleted session
leaves a tombstone (``SqlStore.prune_session``), so that records arriving after all are refused, not
stored as a fragment.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection

from gpufl.backend.metrics import Metrics
from gpufl.backend.store import SqlStore

log = logging.getLogger("gpufl.backend.retention")

DEFAULT_QUIET_S = 3600.0
"""An hour: longer than an agent's retry backoff (30 s) or a backend restart, shorter than any useful
retention window. ``--retention-quiet-s`` / ``GPUFL_RETENTION_QUIET_S``."""


def plan(
    usage: list[tuple[str, int, int]],
    retention_days: float | None,
    max_store_bytes: int | None,
    now_ns: int,
    busy: Collection[str] = frozenset(),
) -> dict[str, str]:
    """Which sessions to delete and why ('age' or 'size'); usage is (session, last_ns, bytes), oldest first.
    Sessions in ``busy`` (inside the quiet period) are never chosen: the size cap is met with the others as
    far as it can be."""
    out: dict[str, str] = {}
    if retention_days is not None:
        cutoff = now_ns - int(retention_days * 86400e9)
        for sid, last, _ in usage:
            if last < cutoff and sid not in busy:
                out[sid] = "age"
    if max_store_bytes is not None:
        total = sum(b for sid, _, b in usage if sid not in out)
        for sid, _, b in usage:
            if total <= max_store_bytes:
                break
            if sid in out or sid in busy:
                continue
            out[sid] = "size"
            total -= b
    return out


def prune(
    store: SqlStore,
    retention_days: float | None,
    max_store_bytes: int | None,
    metrics: Metrics | None = None,
    *,
    quiet_s: float = DEFAULT_QUIET_S,
) -> dict[str, str]:
    """Delete what ``plan`` chooses; returns the sessions deleted and why. ``quiet_s`` 0: no quiet period."""
    now = time.time_ns()
    usage = store.session_usage()
    since = now - int(quiet_s * 1e9) if quiet_s > 0 else None
    busy = store.sessions_received_since(since) if since is not None else set()
    todo = plan(usage, retention_days, max_store_bytes, now, busy)
    if busy:
        spared = sorted(busy.intersection(plan(usage, retention_days, max_store_bytes, now)))
        if spared:
            log.info(
                "retention: kept %d session(s) still receiving records (quiet period %.0f s): %s",
                len(spared),
                quiet_s,
                ", ".join(spared[:10]) + (" ..." if len(spared) > 10 else ""),
            )
    done: dict[str, str] = {}
    for sid, why in todo.items():
        # Checked again under the session's ingest locks: a batch may have arrived since the plan.
        if not store.prune_session(sid, why, since):
            log.info("retention: kept session %s (records arrived meanwhile, or already deleted)", sid)
            continue
        done[sid] = why
        log.info("retention: deleted session %s (%s)", sid, why)
        if metrics is not None:
            metrics.pruned.labels(why).inc()
    return done


class RetentionJob:
    """Runs prune every ``interval_s`` in a daemon thread until stopped."""

    def __init__(
        self,
        store: SqlStore,
        retention_days: float | None,
        max_store_bytes: int | None,
        interval_s: float,
        metrics: Metrics | None = None,
        quiet_s: float = DEFAULT_QUIET_S,
    ) -> None:
        self._args = (store, retention_days, max_store_bytes, metrics)
        self._quiet_s = quiet_s
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpufl-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                prune(*self._args, quiet_s=self._quiet_s)
            except Exception:  # keep the job alive across a transient store error; it is logged
                log.exception("retention run failed")
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
