"""The quantile sketch: relative-error bound, mergeability, and SQL/Python key agreement."""

from __future__ import annotations

import math
import random

import pytest

from gpufl.backend import sketch
from gpufl.backend.store import SqlStore


def exact(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[math.floor(q * (len(s) - 1))]


@pytest.mark.parametrize("dist", ["lognormal", "uniform", "bimodal", "constant"])
def test_relative_error_within_one_percent(dist: str) -> None:
    rng = random.Random(dist)
    gen = {
        "lognormal": lambda: rng.lognormvariate(10, 2),
        "uniform": lambda: rng.uniform(1, 1e9),
        "bimodal": lambda: rng.choice([rng.gauss(5_000, 100), rng.gauss(2e7, 1e5)]),
        "constant": lambda: 12345.0,
    }[dist]
    values = [max(1.0, gen()) for _ in range(20_000)]
    sk = sketch.Sketch()
    sk.extend(values)
    for q in (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0):
        got = sk.quantile(q)
        want = exact(values, q)
        assert got is not None
        assert abs(got - want) <= sketch.RELATIVE_ACCURACY * want + 1e-9, (q, got, want)


def test_merge_equals_sketch_of_union() -> None:
    rng = random.Random(1)
    a = [rng.expovariate(1e-4) + 1 for _ in range(5000)]
    b = [rng.expovariate(1e-6) + 1 for _ in range(7000)]
    sa, sb, su = sketch.Sketch(), sketch.Sketch(), sketch.Sketch()
    sa.extend(a)
    sb.extend(b)
    su.extend(a + b)
    sa.merge(sketch.Sketch.from_dict(sb.to_dict()))
    assert sa.counts == su.counts and sa.n == su.n
    assert sa.quantile(0.95) == su.quantile(0.95)


def test_zero_and_empty() -> None:
    assert sketch.Sketch().quantile(0.5) is None
    s = sketch.Sketch()
    s.extend([0, 0, 0, 10])
    assert s.quantile(0.5) == 0.0
    with pytest.raises(ValueError):
        s.quantile(1.5)


def test_sql_key_matches_python(store: SqlStore) -> None:
    # Ingest computes keys in SQL, queries decode them in Python: they must agree. A value within an ulp
    # of a bucket boundary may land in the neighbour, which still keeps the error bound, so allow +-1.
    rng = random.Random(7)
    values = [0, 1, 2, 3, 999, 10**6, 10**12, *(rng.randrange(1, 10**11) for _ in range(200))]
    for v in values:
        row = store._one(f"SELECT {sketch.sql_key('x')} FROM (SELECT CAST(? AS BIGINT) AS x) t", [v])
        assert row is not None
        k = int(row[0])
        assert abs(k - sketch.key(v)) <= (0 if v in (0, 1) else 1), v
        assert abs(sketch.value_of(k) - v) <= sketch.RELATIVE_ACCURACY * v, v
