"""Log-spaced histogram bucket edges for durations: the edges are integers, so the store can count each
bucket with exact integer comparisons in SQL (no float rounding at an edge), and the answer states them."""

from __future__ import annotations

import math

PER_OCTAVE = 4
"""Buckets per doubling: each bucket is about 19 % wide (2 ** (1/4)), fine enough to separate the modes of a
bimodal kernel, coarse enough that a few hundred launches fill it."""


def log_edges(lo: int, hi: int, per_octave: int = PER_OCTAVE) -> list[int]:
    """Sorted, distinct integer edges e with e[0] <= lo and hi < e[-1]: bucket i holds lo_i <= d < hi_i with
    lo_i = e[i], hi_i = e[i + 1]. Edges are floor(2 ** (k / per_octave)); a zero duration gets a [0, 1) bucket."""
    if hi < lo:
        raise ValueError(f"hi {hi} < lo {lo}")
    edges: list[int] = [0] if lo < 1 else []
    base = max(lo, 1)
    k = math.floor(math.log2(base) * per_octave)
    while k > 0 and math.floor(2 ** (k / per_octave)) > base:  # float log2 may land one step high
        k -= 1
    while True:
        e = math.floor(2 ** (k / per_octave))
        if not edges or e > edges[-1]:
            edges.append(e)
        if e > hi:
            return edges
        k += 1
