"""The ingest path's memory budget: what the requests in progress may hold at once, all of them together.

A request holds its body's bytes while it arrives and its text's while it is decompressed (slice by
slice), then, in one step before the decode, what decoding that text may take: ``decode_cost``. Bytes
alone don't bound that: decoded JSON is Python objects, ~90-180 bytes per value whatever its text, so a body of small values (``{},`` is 3 bytes)
takes ~53x its size (measured: a 12 MiB session_start of ``{}`` options peaked 634 MB above idle), a kernel
batch ~10x, whitespace ~3x. Counting values (by their commas, a C-speed scan at ~3 GB/s) bounds all of
them. A request that would take the budget past its limit is refused at once: 503 + Retry-After while
others hold it, 413 when it alone is over it (the agent then splits the batch).
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import os
import platform
import threading
import time
from collections.abc import Callable

TEXT_FACTOR = 3
"""Copies of the text alive at once: the body, its NDJSON-to-array copy, the chunk being decoded (and the
join of a multi-slice gzip body)."""

VALUE_BYTES = 160
"""Bytes per JSON value once decoded and stored (measured 97-159 over the worst shapes: ``{}``, two-letter
strings, integers; a kernel's fields ~180 per comma including its columns and Arrow table)."""


def decode_cost(text: bytes) -> int:
    """An upper bound of the memory that decoding and storing the JSON ``text`` takes (see the module doc)."""
    return TEXT_FACTOR * len(text) + VALUE_BYTES * text.count(b",")


class OverBudget(Exception):
    """Taking the bytes would pass the budget's limit: ``alone`` when even an idle budget could not hold
    what the request needs (→ 413), else the others' share is in the way (→ 503, retry later)."""

    def __init__(self, needed: int, limit: int, alone: bool) -> None:
        self.needed, self.limit, self.alone = needed, limit, alone
        if alone:
            msg = (
                f"decoding this body takes ~{needed} bytes of memory, over the backend's ingest memory budget "
                f"of {limit} (max_inflight_bytes): send smaller batches"
            )
        else:
            msg = "backend busy: its ingest memory budget is in use by other requests, retry later"
        super().__init__(msg)


TRIM_AFTER = 64 << 20
"""Bytes held by ingests since memory was last handed back, past which it is handed back (``release_memory``)
once no ingest is in progress."""


class MemoryBudget:
    """Bytes held by the ingests in progress (thread-safe: taken on the event loop and in worker threads).

    A request that does not fit is refused at once, except the oldest one in progress, which may wait (in
    its worker thread, ``WAIT_S`` at most) for the others to give memory back, while newer ones are refused
    what it waits for: without it, concurrent large batches, each holding a part, can all be refused, again
    at every retry (seen with 8 at once)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._since_trim = 0
        self._cond = threading.Condition()
        self._tickets = itertools.count()
        self._active: set[int] = set()
        self._waiter: int | None = None
        self._wanted = 0

    def open(self) -> int:
        """A ticket for a new request: its place in line."""
        with self._cond:
            ticket = next(self._tickets)
            self._active.add(ticket)
            return ticket

    def take(self, ticket: int, n: int, wait: float = 0.0) -> bool:
        """Take ``n`` bytes for ``ticket``; False when they don't fit (after waiting up to ``wait`` seconds
        where ``ticket`` is the oldest in progress)."""
        deadline = time.monotonic() + wait
        with self._cond:
            try:
                while True:
                    kept = self._wanted if self._waiter not in (None, ticket) else 0
                    if self.used + n + kept <= self.limit:
                        self.used += n
                        self._since_trim += n
                        return True
                    left = deadline - time.monotonic()
                    if left <= 0 or ticket != min(self._active) or self._waiter not in (None, ticket):
                        return False
                    self._waiter, self._wanted = ticket, n
                    self._cond.wait(left)
            finally:
                if self._waiter == ticket:
                    self._waiter, self._wanted = None, 0

    def close(self, ticket: int, n: int) -> bool:
        """Give back the ``n`` bytes ``ticket`` held; True when that left no ingest in progress after at
        least ``TRIM_AFTER`` bytes were held since the last True: the moment to call ``release_memory``."""
        with self._cond:
            self._active.discard(ticket)
            self.used -= n
            self._cond.notify_all()
            if self.used == 0 and self._since_trim >= TRIM_AFTER:
                self._since_trim = 0
                return True
            return False

    def try_take(self, n: int) -> bool:
        """Take ``n`` bytes outside any request (tests: as if others held them); give back with ``give``."""
        with self._cond:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._cond.notify_all()


def _libc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


_LIBC = _libc()
_malloc_trim: Callable[[int], int] | None = getattr(_LIBC, "malloc_trim", None)

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MALLOC_THRESHOLD = 1 << 20


def tune_malloc() -> bool:
    """Fix glibc's mmap and trim thresholds at 1 MiB (the backend's ``serve`` calls this at start).

    By default glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB) and
    its trim threshold to twice that: after one 8 MiB slice or body, blocks that size come from the
    arenas, and up to 64 MiB free at the top of each arena (one per thread that allocated) stays resident.
    Measured on the worst-case bodies of tests/backend/test_backend_process.py: 452 MiB resident after,
    idle 249, with malloc_info showing 370 MB free in the arenas that malloc_trim could not return (tops of
    thread arenas); with both thresholds fixed at 1 MiB, 266 after, idle 245 (at 128 KiB: 289, and every
    DuckDB block of 256 KiB would be a fresh mmap). Setting them turns the dynamic adjustment off; the
    environment's MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ win where set."""
    mallopt = getattr(_LIBC, "mallopt", None)
    if mallopt is None:
        return False
    ok = True
    for param, env in (
        (_M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_"),
        (_M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_"),
    ):
        if env not in os.environ:
            ok = bool(mallopt(param, MALLOC_THRESHOLD)) and ok
    return ok


_releasing = threading.Lock()


def release_memory() -> None:
    """Hand the memory that big ingests freed back to the OS (in a worker thread, after the requests ended).

    Two things keep it otherwise, measured on a backend fed 8 concurrent worst-case bodies (idle 190 MiB):
    garbage in reference cycles, which the cyclic GC (paused while batches decode, see ``ingest``) frees
    only on a later collection, an idle backend making none; and glibc's allocator, which keeps freed
    chunks in its arenas (one per thread that allocated, up to 8 per core) unless asked: ``malloc_trim(0)``
    returns every arena's free pages (~30 MB after a dense body). Both take milliseconds."""
    if not _releasing.acquire(blocking=False):
        return  # one at a time is enough
    try:
        gc.collect()
        if _malloc_trim is not None:
            _malloc_trim(0)
    finally:
        _releasing.release()


WAIT_S = 20.0
"""Seconds the oldest request in progress may wait for memory (well within the agent's 60 s timeout)."""


class Reservation:
    """One request's share of a budget, grown as it learns what it needs and given back whole at the end."""

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.held = 0
        self._ticket = budget.open()

    def add(self, n: int, wait: bool = False) -> None:
        """Hold ``n`` more bytes, or raise OverBudget (holding what it held). ``wait``: this runs in a
        worker thread, where the oldest request may wait for memory (never on the event loop)."""
        if n <= 0:
            return
        if self.held + n > self.budget.limit:
            raise OverBudget(self.held + n, self.budget.limit, alone=True)
        if not self.budget.take(self._ticket, n, WAIT_S if wait else 0.0):
            raise OverBudget(self.held + n, self.budget.limit, alone=False)
        self.held += n

    def grow_to(self, n: int, wait: bool = False) -> None:
        """Hold at least ``n`` bytes in all."""
        self.add(n - self.held, wait)

    def release(self) -> bool:
        """Give back what it holds; True when it is time for ``release_memory`` (``MemoryBudget.close``)."""
        held, self.held = self.held, 0
        return self.budget.close(self._ticket, held)


__all__ = ["MemoryBudget", "OverBudget", "Reservation", "decode_cost", "release_memory", "tune_malloc"]
