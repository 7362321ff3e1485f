"""Keep the agent's resident memory close to what it really holds.

The agent allocates and frees multi-megabyte byte strings all the time (blocks, batches, request bodies).
glibc serves the first ones with mmap, then raises its mmap threshold on each free (up to 32 MiB), after
which such buffers come from the heap, where fragmentation keeps freed memory resident: RSS grew to
~190 MB while catching up, for ~80 MB of live buffers. Fixing the threshold at 1 MiB keeps large
buffers on mmap, returned to the OS when freed. No-op where glibc is not the C library.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_MMAP_THRESHOLD = -3  # from glibc's malloc.h


def limit_heap_growth(threshold: int = 1 << 20) -> bool:
    """Set glibc's mmap threshold (disables its dynamic adjustment). True if applied."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
