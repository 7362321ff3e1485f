"""A mergeable quantile sketch with bounded relative error (DDSketch, Masson et al., VLDB 2019).

A value x > 0 goes to bucket ``key(x) = ceil(log_gamma(x))`` with ``gamma = (1 + a) / (1 - a)``; every
value in bucket k lies in (gamma^(k-1), gamma^k], and answering with ``2 gamma^k / (gamma + 1)`` is within
relative error ``a`` of each of them. The sketch is just {key: count}, so merging is adding counts: the
store keeps one row per (session, launch, key) and merges batches and backends with ``n = n + excluded.n``.
The store computes keys in SQL with :data:`SQL_KEY` (same formula) so batches never pass through Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LN_GAMMA = math.log(GAMMA)
ZERO_KEY = -(2**31)
"""Key of values <= 0 (zero-length intervals), answered as 0."""


def key(value: float) -> int:
    if value <= 0:
        return ZERO_KEY
    return math.ceil(math.log(value) / _LN_GAMMA)


def value_of(k: int) -> float:
    """The representative of bucket k: within RELATIVE_ACCURACY of every value in it."""
    if k == ZERO_KEY:
        return 0.0
    return 2 * GAMMA**k / (GAMMA + 1)


def sql_key(column: str) -> str:
    """SQL expression of ``key(column)`` (works on DuckDB and PostgreSQL)."""
    return (
        f"(CASE WHEN {column} <= 0 THEN {ZERO_KEY} "
        f"ELSE CAST(CEIL(LN({column}) / {_LN_GAMMA!r}) AS INTEGER) END)"
    )


class Sketch:
    __slots__ = ("counts", "n")

    def __init__(self, counts: Mapping[int, int] | None = None) -> None:
        self.counts: dict[int, int] = dict(counts or {})
        self.n = sum(self.counts.values())

    def add(self, value: float, count: int = 1) -> None:
        k = key(value)
        self.counts[k] = self.counts.get(k, 0) + count
        self.n += count

    def extend(self, values: Iterable[float]) -> None:
        for v in values:
            self.add(v)

    def merge(self, other: Sketch) -> None:
        for k, c in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + c
        self.n += other.n

    def quantile(self, q: float) -> float | None:
        """The value of rank ``q * (n - 1)`` (lower rank convention), within RELATIVE_ACCURACY."""
        if self.n == 0:
            return None
        if not 0 <= q <= 1:
            raise ValueError(f"quantile must be in [0, 1], got {q}")
        rank = q * (self.n - 1)
        seen = 0
        for k in sorted(self.counts):
            seen += self.counts[k]
            if seen > rank:
                return value_of(k)
        return value_of(max(self.counts))

    def to_dict(self) -> dict[int, int]:
        return dict(self.counts)

    @classmethod
    def from_dict(cls, counts: Mapping[int, int]) -> Sketch:
        return cls(counts)


EXACT_MAX_ROWS = 200_000
"""Exact quantiles read every duration they are of: at most this many per query (a summary stays fast); past
it the sketch answers (kernel summaries) or the quantile is left out (scope medians)."""


def quantile(sorted_values: list[int], q: float) -> float:
    """The q-quantile of sorted values by linear interpolation between the closest ranks (the definition of
    numpy's default, R's type 7, Excel's PERCENTILE.INC): p95 of [992, 1024] is 1022.4, never below p50."""
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))
