"""Per-key request rate limits: one token bucket per (API key, kind), kind ``ingest`` or ``query``.

A request takes one token from its key's bucket; a bucket holds at most ``burst`` tokens and refills at
``rate`` tokens a second. An empty bucket answers 429 with ``Retry-After``: the whole seconds until a token
is back (HTTP's Retry-After has no fractions). Keys are the API key ids that authenticated (the bootstrap
token's is ``bootstrap``), so only valid tokens get a bucket and the table is bounded by the number of keys;
a bad token is a 401 before any bucket is touched. The state is per backend process: N backends behind a
load balancer allow up to N times the rate.

Why a hand-written bucket and not the ``limits`` library (the engine of slowapi and Flask-Limiter): its
in-memory storage, the only one a deployment without Redis has, clocks entries with ``time.time()`` (a
wall-clock step lifts or extends every limit) and starts a new 10 ms ``threading.Timer`` thread on any
request that finds the previous one finished, i.e. a thread start per request below ~100 requests/s; and
its strategies are windows (fixed, moving, sliding), where a burst allowance above the sustained rate,
which dashboards need (a page load fires a dozen queries at once), takes a second window stacked on the
first. A token bucket on the monotonic clock is ~30 lines, O(1) per request under one lock, and gives an
exact Retry-After.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class RateLimited(Exception):
    """The key's bucket is empty: answer 429 with ``Retry-After: retry_after`` (whole seconds, >= 1)."""

    def __init__(self, kind: str, rate: float, retry_after: int) -> None:
        super().__init__(f"rate limit exceeded for this key: {rate:g} {kind} requests/s")
        self.kind = kind
        self.retry_after = retry_after


class RateLimiter:
    """Token buckets for one kind of request. ``rate`` <= 0 turns the limit off."""

    _PRUNE_AT = 10_000
    """Buckets kept before full (idle) ones are dropped: a full bucket is the same as none."""

    def __init__(
        self, kind: str, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.kind = kind
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}
        """key -> (tokens, clock time they were counted at)."""

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str) -> None:
        """Take a token for ``key`` or raise RateLimited."""
        if not self.enabled:
            return
        with self._lock:
            now = self._clock()
            tokens, then = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            if tokens >= 1.0:
                if len(self._buckets) >= self._PRUNE_AT and key not in self._buckets:
                    self._prune(now)
                self._buckets[key] = (tokens - 1.0, now)
                return
            self._buckets[key] = (tokens, now)
        raise RateLimited(self.kind, self.rate, max(1, math.ceil((1.0 - tokens) / self.rate)))

    def _prune(self, now: float) -> None:
        for k, (tokens, then) in list(self._buckets.items()):
            if tokens + (now - then) * self.rate >= self.burst:
                del self._buckets[k]
