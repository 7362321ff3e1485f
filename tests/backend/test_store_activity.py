"""store/activity.py: the timeline's level-of-detail queries beyond the kernel LOD, on every engine: one
kernel name's instances per bucket (highlighting) and the memory lane's copies and memsets per bucket and
kind.

Expected values are computed from the generated records by brute force, never typed in.
"""

from __future__ import annotations

import random
from collections import defaultdict

import msgspec

from gpufl.backend.api import schemas as S
from gpufl.backend.store import SqlStore
from gpufl.contract import events as ev

from .conftest import Api
from .factory import SessionFactory
from .helpers import feed


def test_named_timeline_counts_every_instance_of_the_name(store: SqlStore) -> None:
    f = SessionFactory("named")
    rng = random.Random(5)
    recs: list[ev.Record] = [f.start("device"), f.launch(1, "gemm_kernel"), f.launch(2, "relu_kernel")]
    kernels = []
    t = 0
    for _ in range(4000):
        k = f.kernel(rng.choice([1, 2]), t, rng.randrange(1_000, 90_000), stream_id=rng.choice([7, 8]))
        kernels.append(k)
        t += rng.randrange(0, 60_000)
    feed(store, [*recs, *kernels])
    t1 = max(k.end_ns for k in kernels) + 1
    # A resolution at a stored level: without the name it is served from the stored levels.
    for width in (1 << 20, 3_000_000):
        got = msgspec.json.decode(store.kernel_timeline_json("named", f.t0, t1, width, name="relu_kernel"))
        assert got["bucket_ns"] == width
        want: dict[tuple[int, int], list[ev.Kernel]] = defaultdict(list)
        for k in kernels:
            if k.launch_id == 2:
                want[(k.start_ns // width * width, k.stream_id)].append(k)
        assert {(b["t_ns"], b["stream_id"]) for b in got["buckets"]} == set(want)
        for b in got["buckets"]:
            ks = want[(b["t_ns"], b["stream_id"])]
            assert b["count"] == len(ks)
            assert b["longest"]["name"] == "relu_kernel"
            assert b["longest"]["end_ns"] - b["longest"]["start_ns"] == max(k.end_ns - k.start_ns for k in ks)
        assert sum(b["count"] for b in got["buckets"]) == sum(1 for k in kernels if k.launch_id == 2)
    none = msgspec.json.decode(store.kernel_timeline_json("named", f.t0, t1, 1 << 20, name="absent"))
    assert none["buckets"] == []


def test_memory_timeline_counts_copies_and_memsets_per_bucket_and_kind(store: SqlStore) -> None:
    f = SessionFactory("mem")
    rng = random.Random(9)
    start = f.start("device")
    rows: list[ev.Memcpy | ev.Memset] = []
    t = 0
    for _ in range(3000):
        dur = rng.randrange(100, 20_000)
        if rng.random() < 0.3:
            rows.append(f.memset(t, dur, rng.randrange(1, 1 << 20), stream_id=rng.choice([7, 9])))
        else:
            kind = rng.choice(["HtoD", "DtoH", "DtoD"])
            rows.append(f.memcpy(t, dur, rng.randrange(1, 1 << 24), copy_kind=kind))
        t += rng.randrange(0, 30_000)
    feed(store, [start, *rows])
    # A window that cuts through the session: rows overlapping it count, whole.
    w0, w1, width = f.t0 + 5_000_000, f.t0 + 60_000_000, 700_000
    got = store.memory_timeline("mem", w0, w1, width)
    assert got["bucket_ns"] == width
    want: dict[tuple[int, str, int, int], list[ev.Memcpy | ev.Memset]] = defaultdict(list)
    for r in rows:
        if r.start_ns < w1 and r.end_ns > w0:
            kind = r.copy_kind if isinstance(r, ev.Memcpy) else "memset"
            want[(r.start_ns // width * width, kind, r.device_id, r.stream_id)].append(r)
    assert len({k[3] for k in want}) > 1, "copies on several streams"
    assert [(b["t_ns"], b["kind"], b["device_id"], b["stream_id"]) for b in got["buckets"]] == sorted(want)
    for b in got["buckets"]:
        rs = want[(b["t_ns"], b["kind"], b["device_id"], b["stream_id"])]
        assert b["count"] == len(rs)
        assert b["bytes"] == sum(r.bytes for r in rs)
        assert b["busy_ns"] == sum(r.end_ns - r.start_ns for r in rs)
        longest = min(rs, key=lambda r: (-(r.end_ns - r.start_ns), r.seq))
        assert b["longest"] == {
            "id": str(longest.seq),
            "start_ns": longest.start_ns,
            "end_ns": longest.end_ns,
            "bytes": longest.bytes,
        }
    assert store.memory_timeline("mem", f.t0 - 10, f.t0 - 5, 1)["buckets"] == []


def test_timeline_routes_answer_the_documented_shapes(api: Api) -> None:
    f = SessionFactory("routes")
    recs: list[ev.Record] = [f.start("device"), f.launch(1, "gemm"), f.launch(2, "relu")]
    recs += [f.kernel(1 + i % 2, i * 1000, 500) for i in range(40)]
    recs += [f.memcpy(i * 3000, 800, 4096, copy_kind="DtoH") for i in range(10)]
    recs += [f.memset(i * 3000 + 100, 300, 64) for i in range(5)]
    api.post_events("device", ev.encode_lines(recs))
    win = {"start_ns": f.t0, "end_ns": f.t0 + 60_000}
    tl = api.get("/sessions/routes/kernels", params={**win, "resolution_ns": 1 << 20, "name": "relu"}).json()
    S.KernelTimeline.model_validate(tl, strict=True)
    assert sum(b["count"] for b in tl["buckets"]) == 20
    mem = api.get("/sessions/routes/memory/timeline", params={**win, "resolution_ns": 10_000}).json()
    S.MemoryTimeline.model_validate(mem, strict=True)
    counts: dict[str, int] = defaultdict(int)
    for b in mem["buckets"]:
        counts[b["kind"]] += b["count"]
    assert counts == {"DtoH": 10, "memset": 5}
    too_fine = api.get("/sessions/routes/memory/timeline", params={**win, "resolution_ns": 0})
    assert too_fine.status_code == 422
    many = api.get(
        "/sessions/routes/memory/timeline", params={"start_ns": 0, "end_ns": 2**62, "resolution_ns": 1}
    )
    assert many.status_code == 422
    assert api.get("/sessions/nope/memory/timeline", params={**win, "resolution_ns": 1}).status_code == 404
