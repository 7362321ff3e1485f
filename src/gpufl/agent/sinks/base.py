"""What a sink is, how it reports failure, and the retry loop every sink shares.

Retries are hand-written (a few lines) rather than taken from a library such as tenacity: the loop must
also honour a server's Retry-After, split a batch on 413 and stop promptly on shutdown, which would
need as much glue as the loop itself.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass, field
from typing import Protocol

from gpufl.agent.batcher import Batch
from gpufl.contract.protocol import Rejection

log = logging.getLogger("gpufl.agent")


class Retryable(Exception):
    """The batch was not delivered; try again later (``retry_after`` seconds if the target said so)."""

    def __init__(self, reason: str, retry_after: float | None = None, kind: str = "error") -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.kind = kind
        """Short label for metrics: unavailable, throttled, connect, tls, auth, error."""


class TooLarge(Exception):
    """The target refused the batch for its size: split it."""


class Fatal(Exception):
    """Configuration the agent cannot recover from (bad URL, unknown broker address...)."""


@dataclass(slots=True)
class Result:
    delivered: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    """The backend's verdicts (``gpufl.contract.protocol``): ``invalid`` records are dead-lettered; ``pruned``
    ones belong to a session the backend's retention deleted, and are counted and passed over."""


class Sink(Protocol):
    name: str

    def probe(self) -> None:
        """Check the target is reachable and accepts our credentials; raise Retryable or Fatal."""

    def send(self, batch: Batch) -> Result:
        """Deliver one batch: return only once the target acknowledged all of it."""

    def close(self) -> None: ...


class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog), capped."""

    def __init__(self, base: float = 0.2, cap: float = 30.0) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next(self, retry_after: float | None = None) -> float:
        delay = random.uniform(0, min(self.cap, self.base * 2**self.attempt))
        self.attempt += 1
        if retry_after is not None:
            # The server knows its load: wait at least what it asked (plus jitter so agents spread out).
            delay = max(delay, retry_after + random.uniform(0, min(1.0, retry_after * 0.1)))
        return delay

    def reset(self) -> None:
        self.attempt = 0


class RetryStats(Protocol):
    def retry(self, kind: str) -> None: ...


def deliver(
    sink: Sink,
    batch: Batch,
    stop: threading.Event,
    stats: RetryStats,
    backoff_base: float = 0.2,
    backoff_cap: float = 30.0,
) -> Result | None:
    """Deliver ``batch`` until acknowledged, splitting on TooLarge. None if ``stop`` was set first.

    Rejected indices in the result refer to ``batch`` (split halves are re-based).
    """
    backoff = Backoff(backoff_base, backoff_cap)
    while True:
        try:
            return sink.send(batch)
        except TooLarge as e:
            if batch.count <= 1:
                return Result(rejected=[Rejection(0, None, f"record too large for the target: {e}")])
            stats.retry("split")
            first, second = batch.split()
            r1 = deliver(sink, first, stop, stats, backoff_base, backoff_cap)
            if r1 is None:
                return None
            r2 = deliver(sink, second, stop, stats, backoff_base, backoff_cap)
            if r2 is None:
                return None
            rejected = r1.rejected + [
                Rejection(r.index + first.count, r.seq, r.reason, r.code) for r in r2.rejected
            ]
            return Result(r1.delivered + r2.delivered, r1.duplicates + r2.duplicates, rejected)
        except Retryable as e:
            stats.retry(e.kind)
            delay = backoff.next(e.retry_after)
            if backoff.attempt in (1, 5) or backoff.attempt % 20 == 0:
                log.warning(
                    "%s: delivery failed (%s); retry %d in %.1fs", sink.name, e, backoff.attempt, delay
                )
            if stop.wait(delay):
                return None
