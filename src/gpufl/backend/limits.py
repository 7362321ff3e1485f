"""The ingest path's memory budget: what the requests in progress may hold at once, all of them together.

A request holds its body's bytes while it arrives, then, once its text is known (decompressed slice by
slice), what decoding that text may take: ``decode_cost``. Bytes alone don't bound that: decoded JSON is
Python objects, ~90-180 bytes per value whatever its text, so a body of small values (``{},`` is 3 bytes)
takes ~53x its size (measured: a 12 MiB session_start of ``{}`` options peaked 634 MB above idle), a kernel
batch ~10x, whitespace ~3x. Counting values (by their commas, a C-speed scan at ~3 GB/s) bounds all of
them. A request that would take the budget past its limit is refused at once: 503 + Retry-After while
others hold it, 413 when it alone is over it (the agent then splits the batch).
"""

from __future__ import annotations

import ctypes
import gc
import platform
import threading
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
    """Bytes held by the ingests in progress (thread-safe: taken on the event loop and in worker threads)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._since_trim = 0
        self._lock = threading.Lock()

    def try_take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            self._since_trim += n
            return True

    def give(self, n: int) -> bool:
        """Give back ``n`` bytes; True when that left no ingest in progress after at least ``TRIM_AFTER``
        bytes were held since the last True: the moment to call ``release_memory``."""
        with self._lock:
            self.used -= n
            if self.used == 0 and self._since_trim >= TRIM_AFTER:
                self._since_trim = 0
                return True
            return False


def _find_malloc_trim() -> Callable[[int], int] | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_malloc_trim = _find_malloc_trim()
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


class Reservation:
    """One request's share of a budget, grown as it learns what it needs and given back whole at the end."""

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.held = 0

    def add(self, n: int) -> None:
        """Hold ``n`` more bytes, or raise OverBudget (holding what it held)."""
        if n <= 0:
            return
        if self.held + n > self.budget.limit:
            raise OverBudget(self.held + n, self.budget.limit, alone=True)
        if not self.budget.try_take(n):
            raise OverBudget(self.held + n, self.budget.limit, alone=False)
        self.held += n

    def grow_to(self, n: int) -> None:
        """Hold at least ``n`` bytes in all."""
        self.add(n - self.held)

    def release(self) -> bool:
        """Give back what it holds; True when it is time for ``release_memory`` (``MemoryBudget.give``)."""
        held, self.held = self.held, 0
        return self.budget.give(held)


__all__ = ["MemoryBudget", "OverBudget", "Reservation", "decode_cost", "release_memory"]
