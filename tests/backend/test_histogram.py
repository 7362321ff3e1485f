"""Histogram edges against brute force: every duration falls in exactly one bucket."""

from __future__ import annotations

import bisect
import itertools
import random

import pytest

from gpufl.backend.histogram import log_edges


@pytest.mark.parametrize(
    "lo,hi", [(0, 0), (0, 5), (1, 1), (992, 1024), (1024, 1024), (1_000, 45_000), (7, 3_000_000_000)]
)
def test_edges_cover_the_range_and_grow_by_a_quarter_octave(lo: int, hi: int) -> None:
    e = log_edges(lo, hi)
    assert e[0] <= lo and hi < e[-1]
    assert all(a < b for a, b in itertools.pairwise(e))
    for a, b in itertools.pairwise(e):
        # each bucket is a quarter octave (~19 %) wide, give or take the 1 ns that floor() takes off an edge
        assert b <= (a + 1) * 2**0.25 + 1


def test_each_value_in_one_bucket() -> None:
    rng = random.Random(25)
    vals = [rng.randint(1, 10**9) for _ in range(2000)] + [2**k for k in range(30)]
    e = log_edges(min(vals), max(vals))
    for v in vals:
        i = bisect.bisect_right(e, v) - 1
        assert e[i] <= v < e[i + 1]


def test_powers_of_two_are_edges() -> None:
    """2 ** (4k / 4) is exact in floating point: a power of two starts its bucket (1,024 ns is not in the
    bucket below)."""
    e = log_edges(1000, 5000)
    assert 1024 in e and 2048 in e and 4096 in e


def test_rejects_an_inverted_range() -> None:
    with pytest.raises(ValueError):
        log_edges(5, 4)
