"""store/write.py's dedup state: merged seq ranges against a brute-force set."""

from __future__ import annotations

import itertools
import random

from gpufl.backend.store.write import covered, merge_ranges


def _expand(ranges: list[tuple[int, int]]) -> set[int]:
    return {s for lo, hi in ranges for s in range(lo, hi + 1)}


def test_merge_ranges_matches_a_set_and_stays_canonical() -> None:
    rng = random.Random(11)
    for _ in range(300):
        ranges: list[tuple[int, int]] = []
        seen: set[int] = set()
        for _ in range(rng.randrange(1, 6)):
            if rng.random() < 0.5:
                lo = rng.randrange(0, 200)
                batch = list(range(lo, lo + rng.randrange(1, 40)))  # contiguous, like a real batch
            else:
                batch = sorted(rng.sample(range(200), rng.randrange(1, 30)))
            ranges = merge_ranges(ranges, batch)
            seen |= set(batch)
            assert _expand(ranges) == seen
            # Canonical: sorted, disjoint and never adjacent (so a gap-free stream is one row).
            assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(ranges))
            for s in range(-2, 205):
                assert covered(ranges, s) == (s in seen)
    assert merge_ranges([(0, 9)], list(range(10, 20))) == [(0, 19)]
    assert merge_ranges([(0, 4), (10, 14)], [5, 6, 7, 8, 9]) == [(0, 14)]
    assert merge_ranges([(5, 9)], []) == [(5, 9)]
