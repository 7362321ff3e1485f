"""The area selection's aggregates (store.range_summary, GET /range) on every engine, against brute force
over the generated records."""

from __future__ import annotations

import random
from collections import defaultdict

from gpufl.backend.api import schemas as S
from gpufl.backend.store import SqlStore
from gpufl.contract import events as ev

from .conftest import Api
from .factory import SessionFactory
from .helpers import feed


def _clip(s: int, e: int, a: int, b: int) -> int:
    return min(e, b) - max(s, a)


def test_range_summary_per_name_kind_and_scope(store: SqlStore) -> None:
    f = SessionFactory("rng")
    rng = random.Random(11)
    recs: list[ev.Record] = [f.start("device"), f.launch(1, "gemm"), f.launch(2, "relu")]
    kernels, copies = [], []
    t = 0
    for _ in range(2000):
        k = f.kernel(rng.choice([1, 2]), t, rng.randrange(100, 50_000))
        kernels.append(k)
        if rng.random() < 0.2:
            if rng.random() < 0.5:
                copies.append(
                    f.memcpy(
                        t,
                        rng.randrange(100, 9000),
                        rng.randrange(1, 1 << 20),
                        copy_kind=rng.choice(["HtoD", "DtoH"]),
                    )
                )
            else:
                copies.append(f.memset(t, rng.randrange(100, 9000), rng.randrange(1, 1 << 16)))
        t += rng.randrange(0, 30_000)
    scope = [f.start("scope"), f.scope_path(1, "train"), f.scope_path(2, "train/fwd")]
    spans = []
    for i in range(40):
        s0 = i * 1_500_000
        scope.append(f.scope_begin(2 * i, 1, s0))
        scope.append(f.scope_begin(2 * i + 1, 2, s0 + 100, depth=1, parent=2 * i))
        if i < 39:  # the last instance stays open
            scope.append(f.scope_end(2 * i + 1, s0 + 700_000))
            scope.append(f.scope_end(2 * i, s0 + 1_000_000))
            spans += [
                ("train", f.t0 + s0, f.t0 + s0 + 1_000_000),
                ("train/fwd", f.t0 + s0 + 100, f.t0 + s0 + 700_000),
            ]
        else:
            spans += [("train", f.t0 + s0, None), ("train/fwd", f.t0 + s0 + 100, None)]
    feed(store, [*recs, *kernels, *copies, *scope])
    a, b = f.t0 + 10_000_000, f.t0 + 59_000_000
    got = store.range_summary("rng", a, b)
    assert (got["start_ns"], got["end_ns"]) == (a, b)

    names = {1: "gemm", 2: "relu"}
    want_k: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for k in kernels:
        if k.start_ns < b and k.end_ns > a:
            w = want_k[names[k.launch_id]]
            w[0] += 1
            w[1] += k.end_ns - k.start_ns
            w[2] += _clip(k.start_ns, k.end_ns, a, b)
    assert {r["name"]: [r["count"], r["total_ns"], r["in_range_ns"]] for r in got["kernels"]} == want_k
    assert [r["in_range_ns"] for r in got["kernels"]] == sorted(
        (r["in_range_ns"] for r in got["kernels"]), reverse=True
    )
    assert got["kernels_total"] == len(want_k)

    want_c: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for c in copies:
        if c.start_ns < b and c.end_ns > a:
            w = want_c[c.copy_kind if isinstance(c, ev.Memcpy) else "memset"]
            w[0] += 1
            w[1] += c.bytes
            w[2] += c.end_ns - c.start_ns
            w[3] += _clip(c.start_ns, c.end_ns, a, b)
    assert {
        r["kind"]: [r["count"], r["bytes"], r["total_ns"], r["in_range_ns"]] for r in got["copies"]
    } == want_c

    want_s: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for path, s0, s1 in spans:
        if s0 < b and (s1 is None or s1 > a):
            w = want_s[path]
            w[0] += 1
            w[1] += (s1 - s0) if s1 is not None else 0
            w[2] += _clip(s0, s1 if s1 is not None else b, a, b)
            w[3] += s1 is None
    assert {
        r["path"]: [r["count"], r["total_ns"], r["in_range_ns"], r["open"]] for r in got["scopes"]
    } == want_s

    # a limit keeps the first rows and still says how many there were
    one = store.range_summary("rng", a, b, limit=1)
    assert len(one["kernels"]) == 1 and one["kernels_total"] == 2 and one["kernels"][0] == got["kernels"][0]
    empty = store.range_summary("rng", f.t0 - 100, f.t0 - 50)
    assert empty["kernels"] == [] and empty["copies"] == [] and empty["scopes"] == []


def test_range_route(api: Api) -> None:
    f = SessionFactory("rr")
    recs: list[ev.Record] = [f.start("device"), f.launch(1, "gemm")]
    recs += [f.kernel(1, i * 1000, 500) for i in range(10)]
    api.post_events("device", ev.encode_lines(recs))
    r = api.get("/sessions/rr/range", params={"start_ns": f.t0 + 250, "end_ns": f.t0 + 5250})
    body = S.RangeSummary.model_validate(r.json(), strict=True)
    assert body.kernels[0].count == 6 and body.kernels[0].in_range_ns == 250 + 4 * 500 + 250
    assert api.get("/sessions/rr/range", params={"start_ns": 5, "end_ns": 5}).status_code == 422
    assert api.get("/sessions/nope/range", params={"start_ns": 0, "end_ns": 5}).status_code == 404
