"""The store contract, run on every engine (the ``store`` fixture is parametrised over DuckDB and PostgreSQL).

Expected values are computed from the generated records by brute force, never typed in.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict

from gpufl.backend import sketch
from gpufl.backend.ingest import ingest_raws
from gpufl.backend.store import SqlStore, open_store
from gpufl.contract import events as ev

from .factory import SessionFactory
from .helpers import feed, kernel_detail, kernel_page, memcpy_page, memset_page, session_page, timeline


def _workload(f: SessionFactory, n: int = 3000, seed: int = 3) -> tuple[list[ev.Record], list[ev.Kernel]]:
    rng = random.Random(seed)
    names = {1: "gemm_kernel", 2: "relu_kernel", 3: "softmax_kernel"}
    recs: list[ev.Record] = [f.start("device")]
    recs += [f.launch(lid, nm) for lid, nm in names.items()]
    kernels = []
    t = 0
    for _ in range(n):
        lid = rng.choice([1, 1, 2, 3])
        dur = int(rng.lognormvariate(9 + lid, 1))
        k = f.kernel(lid, t, dur, stream_id=rng.choice([7, 8]))
        kernels.append(k)
        recs.append(k)
        t += rng.randrange(0, 400_000)
    return recs, kernels


def test_ingest_is_idempotent_per_session_stream_seq(store: SqlStore) -> None:
    f = SessionFactory("idem")
    recs, kernels = _workload(f, 500)
    raws = [ev.encode(r) for r in recs]
    first = ingest_raws(store, "device", raws[:300])
    assert (first.stored, first.duplicates, first.rejected) == (300, 0, [])
    # Overlapping re-delivery: 100 already stored + 204 new, and a duplicate inside the batch itself.
    second = ingest_raws(store, "device", [*raws[200:], raws[-1]])
    assert (second.stored, second.duplicates) == (len(raws) - 300, 101)
    again = ingest_raws(store, "device", raws)
    assert (again.stored, again.duplicates) == (0, len(raws))
    detail = store.session_detail("idem")
    assert detail["totals"]["kernels"] == len(kernels)
    assert detail["streams"][0]["received"] == len(raws)
    summary = store.kernel_summary("idem")
    assert sum(i["count"] for i in summary["items"]) == len(kernels)
    assert summary["gpu_time_ns"] == sum(k.end_ns - k.start_ns for k in kernels)


def test_dedup_state_survives_restart(store_url: str) -> None:
    f = SessionFactory("restart")
    recs, _ = _workload(f, 50)
    s1 = open_store(store_url)
    assert feed(s1, recs)["device"].stored == len(recs)
    s1.close()
    s2 = open_store(store_url)
    try:
        res = feed(s2, recs)["device"]
        assert (res.stored, res.duplicates) == (0, len(recs))
        assert s2.schema_version() == s2.latest_version
    finally:
        s2.close()


def test_gaps_are_filled_later_and_ranges_stay_exact(store: SqlStore) -> None:
    f = SessionFactory("gaps")
    recs, _ = _workload(f, 200)
    odd = [r for r in recs if r.seq % 2 == 1]
    even = [r for r in recs if r.seq % 2 == 0]
    assert feed(store, odd)["device"].stored == len(odd)
    res = feed(store, recs)["device"]
    assert (res.stored, res.duplicates) == (len(even), len(odd))
    rows = store._all("SELECT lo, hi FROM seq_ranges WHERE session_id = 'gaps'")
    assert [tuple(map(int, r)) for r in rows] == [(0, len(recs) - 1)]


def test_records_before_session_start_and_dicts_resolve_at_query_time(store: SqlStore) -> None:
    f = SessionFactory("late", host="hostA", app="appA")
    start = f.start("device")
    launch = f.launch(1, "late_named_kernel")
    k = f.kernel(1, 1000, 500)
    feed(store, [k])
    page, _ = kernel_page(store, "late")
    assert page[0]["name"] is None  # the dict entry has not arrived yet
    item = session_page(store)[0][0]
    assert item["session_id"] == "late" and item["host"] is None and item["start_ns"] is None
    feed(store, [launch, start])
    # The same dict entry re-emitted in a later segment (same id and value, new seq) is an upsert.
    again = ev.DictEntry(
        session_id="late", stream="device", seq=f.seqs["device"], kind="launch", id=1, launch=launch.launch
    )
    assert feed(store, [again])["device"].stored == 1
    assert store._one("SELECT count(*) FROM dicts WHERE session_id = 'late'") == (1,)
    page, _ = kernel_page(store, "late")
    assert page[0]["name"] == "late_named_kernel"
    item = session_page(store)[0][0]
    assert (item["host"], item["app"], item["start_ns"]) == ("hostA", "appA", start.start_ns)
    assert item["gpus"] == ["NVIDIA H100 80GB HBM3"]


def test_kernel_summary_matches_brute_force(store: SqlStore) -> None:
    f = SessionFactory("sum")
    recs, kernels = _workload(f, 4000)
    # Ingest in uneven batches so the summaries are merged across batches.
    raws = [ev.encode(r) for r in recs]
    cuts = [0, 7, 1000, 1001, 2500, len(raws)]
    for a, b in itertools.pairwise(cuts):
        ingest_raws(store, "device", raws[a:b])
    names = {1: "gemm_kernel", 2: "relu_kernel", 3: "softmax_kernel"}
    durs: dict[str, list[int]] = defaultdict(list)
    for k in kernels:
        durs[names[k.launch_id]].append(k.end_ns - k.start_ns)
    total = sum(sum(v) for v in durs.values())
    got = store.kernel_summary("sum", sort="total")
    assert got["gpu_time_ns"] == total
    assert [i["name"] for i in got["items"]] == sorted(durs, key=lambda n: -sum(durs[n]))
    for item in got["items"]:
        d = sorted(durs[item["name"]])
        assert item["count"] == len(d) and item["total_ns"] == sum(d)
        assert item["min_ns"] == d[0] and item["max_ns"] == d[-1]
        assert math.isclose(item["mean_ns"], sum(d) / len(d))
        assert math.isclose(item["share"], sum(d) / total)
        for q, key in ((0.5, "p50_ns"), (0.95, "p95_ns")):
            if item["quantiles"] == "exact":  # every duration: linear interpolation between closest ranks
                pos = q * (len(d) - 1)
                lo, hi = math.floor(pos), min(math.floor(pos) + 1, len(d) - 1)
                assert math.isclose(item[key], d[lo] + (d[hi] - d[lo]) * (pos - lo)), (item["name"], q)
            else:
                want = d[math.floor(q * (len(d) - 1))]
                assert abs(item[key] - want) <= sketch.RELATIVE_ACCURACY * want, (item["name"], q)
    by_count = store.kernel_summary("sum", sort="count", limit=1)["items"]
    assert by_count[0]["name"] == max(durs, key=lambda n: len(durs[n]))


def test_timeline_lod_is_the_longest_kernel_per_bucket(store: SqlStore) -> None:
    f = SessionFactory("lod")
    recs, kernels = _workload(f, 3000)
    raws = [ev.encode(r) for r in recs]
    ingest_raws(store, "device", raws[:1234])
    ingest_raws(store, "device", raws[1234:])
    t0 = f.t0
    t1 = max(k.end_ns for k in kernels) + 1
    # Resolutions at a stored level, and between levels (3 level-buckets per output bucket).
    for resolution, width in ((1 << 20, 1 << 20), (1 << 24, 1 << 24), ((3 << 20) + 5, 3 << 20)):
        got = timeline(store, "lod", t0, t1, resolution)
        assert got["bucket_ns"] == width
        want: dict[tuple[int, int], list[ev.Kernel]] = defaultdict(list)
        for k in kernels:
            want[((k.start_ns // width) * width, k.stream_id)].append(k)
        # A bucket starting before t0 is part of the window when it holds kernels that start after t0.
        assert len(got["buckets"]) == len(want)
        for b in got["buckets"]:
            ks = want[(b["t_ns"], b["stream_id"])]
            assert b["count"] == len(ks)
            assert b["busy_ns"] == sum(k.end_ns - k.start_ns for k in ks)
            longest = max(k.end_ns - k.start_ns for k in ks)
            assert b["longest"]["end_ns"] - b["longest"]["start_ns"] == longest
            assert b["longest"]["name"] is not None
    # Finer than the stored levels: computed from the raw kernels of the window, same shape.
    res = 100_000
    w0, w1 = t0 + 10_000_000, t0 + 30_000_000
    fine = timeline(store, "lod", w0, w1, res)
    assert fine["bucket_ns"] == res
    inwin = [k for k in kernels if k.start_ns < w1 and k.end_ns > w0]
    assert sum(b["count"] for b in fine["buckets"]) == len(inwin)
    assert {b["longest"]["id"] for b in fine["buckets"]} <= {str(k.seq) for k in inwin}


def test_kernel_window_filters_and_pagination(store: SqlStore) -> None:
    f = SessionFactory("win")
    recs, kernels = _workload(f, 1500)
    feed(store, recs)
    w0 = kernels[300].start_ns + 1
    w1 = kernels[900].start_ns
    want = sorted(
        (k for k in kernels if k.start_ns < w1 and k.end_ns > w0), key=lambda k: (k.start_ns, k.seq)
    )
    got, cursor = [], None
    while True:
        page, cursor = kernel_page(store, "win", w0, w1, limit=97, cursor=cursor)
        got += page
        if cursor is None:
            break
    assert [g["seq"] for g in got] == [k.seq for k in want]
    only = kernel_page(store, "win", w0, w1, stream_id=8, name="relu_kernel", limit=10_000)[0]
    assert [g["seq"] for g in only] == [k.seq for k in want if k.stream_id == 8 and k.launch_id == 2]
    assert kernel_page(store, "win", w0, w1, device=3)[0] == []
    assert kernel_page(store, "win", name="no such kernel")[0] == []


def test_kernel_detail_with_stack_and_scope(store: SqlStore) -> None:
    f = SessionFactory("detail")
    frames = [("train.py", 42, "forward"), ("model.py", 7, "matmul")]
    recs: list[ev.Record] = [
        f.start("device"),
        f.start("scope"),
        f.scope_path(5, "train/forward"),
        f.scope_begin(11, 5, 100),
        f.scope_end(11, 9000),
    ]
    k = f.kernel(1, 200, 300, stack_id=3, scope_inst=11, api_start_ns=f.t0 + 150, api_dur_ns=20)
    k2 = f.kernel(1, 600, 300, api_lead_ns=70, api_dur_ns=20)  # event contract v2: lead before the GPU start
    recs += [f.launch(1, "gemm"), f.stack(3, frames), k, k2]
    feed(store, recs)
    assert kernel_detail(store, "detail", k2.seq)["api_start_ns"] == f.t0 + 600 - 70
    d = kernel_detail(store, "detail", k.seq)
    assert d["id"] == str(k.seq) and d["name"] == "gemm" and d["dur_ns"] == 300
    assert d["launch"]["grid"] == [128, 1, 1] and d["launch"]["limiting_resource"] == "registers"
    assert d["stack"] == [{"file": a, "line": b, "function": c} for a, b, c in frames]
    assert d["scope"] == {"inst": 11, "path_id": 5, "path": "train/forward"}
    assert d["api_start_ns"] == f.t0 + 150 and d["mangled"] == "_Zgemm"


def test_scope_tree(store: SqlStore) -> None:
    f = SessionFactory("scopes")
    recs: list[ev.Record] = [f.start("device"), f.start("scope"), f.launch(1, "gemm")]
    recs += [f.scope_path(1, "train"), f.scope_path(2, "train/forward"), f.scope_path(3, "train/backward")]
    recs.append(f.kernel_name(9, "gemm"))
    inst = 0
    want = {"train": [0, 0, 0], "train/forward": [0, 0, 0], "train/backward": [0, 0, 0]}  # calls, wall, gpu
    t = 0
    for _step in range(4):
        inst += 1
        outer = inst
        recs.append(f.scope_begin(outer, 1, t))
        t0 = t
        for pid, path in ((2, "train/forward"), (3, "train/backward")):
            inst += 1
            recs.append(f.scope_begin(inst, pid, t, depth=1, parent=outer))
            for _ in range(3):
                recs.append(f.kernel(1, t, 1000 + pid, scope_inst=inst))
                want[path][2] += 1000 + pid
                t += 2000
            recs.append(f.scope_end(inst, t))
            want[path][0] += 1
            want[path][1] += t - (t - 6000)
        recs.append(f.scope_end(outer, t))
        want["train"][0] += 1
        want["train"][1] += t - t0
    recs.append(f.scope_begin(99, 2, t, depth=1))  # never ended: an open call
    feed(store, recs)
    roots = store.scope_tree("scopes")
    assert [r["path"] for r in roots] == ["train"]
    nodes = {roots[0]["path"]: roots[0]} | {c["path"]: c for c in roots[0]["children"]}
    for path, (calls, wall, gpu) in want.items():
        n = nodes[path]
        assert n["calls"] - n["open_calls"] == calls and n["wall_total_ns"] == wall and n["gpu_ns"] == gpu
    assert nodes["train/forward"]["open_calls"] == 1
    assert nodes["train"]["gpu_total_ns"] == want["train/forward"][2] + want["train/backward"][2]
    assert nodes["train"]["kernels_total"] == 24


def test_system_series_downsampled(store: SqlStore) -> None:
    f = SessionFactory("sys")
    rng = random.Random(5)
    recs: list[ev.Record] = [f.start("system")]
    samples = [
        f.sample(i * 100_000_000, rng.uniform(0, 100), rng.uniform(1e5, 7e5), rng.uniform(0, 800))
        for i in range(1000)
    ]
    recs += samples
    feed(store, recs)
    out = store.system("sys", metric="util_gpu_pct", device=0, points=40)
    assert len(out["series"]) == 1 and out["series"][0]["device"] == 0
    pts = out["series"][0]["points"]
    assert 35 <= len(pts) <= 40
    w = out["bucket_ns"]
    for p in pts:
        vals = [s.gpus[0].util_gpu_pct for s in samples if p["t_ns"] <= s.ts_ns < p["t_ns"] + w]
        assert p["min"] == min(vals) and p["max"] == max(vals)  # type: ignore[type-var]
        assert math.isclose(p["mean"], sum(vals) / len(vals))  # type: ignore[arg-type]
    allm = store.system("sys", points=10)
    assert {(s["metric"], s["device"]) for s in allm["series"]} == {
        ("util_gpu_pct", 0),
        ("power_mw", 0),
        ("cpu_pct", None),
    }
    win = store.system("sys", metric="cpu_pct", start_ns=f.t0, end_ns=f.t0 + 10**9, points=5)
    assert sum(1 for _ in win["series"][0]["points"]) == 5


def test_session_detail_end_dropped_missing_cut_short(store: SqlStore) -> None:
    f = SessionFactory("detail2")
    recs: list[ev.Record] = [f.start("device"), f.launch(1, "k")]
    recs += [f.kernel(1, i * 10, 5) for i in range(10)]
    recs.append(
        ev.Dropped(
            session_id="detail2",
            stream="device",
            seq=f._next("device"),
            count=4,
            first_ns=f.t0,
            last_ns=f.t0 + 5,
        )
    )
    lost = recs.pop(5)  # lost in transport
    recs.append(f.end("device", f.t0 + 1000, dropped=4))
    recs += [f.start("system"), f.sample(0, 1, 2, 3)]  # the system stream never ends: cut short
    recs.append(
        ev.Notice(
            session_id="detail2",
            stream="system",
            seq=f._next("system"),
            ts_ns=f.t0 + 1,
            code="nvml_missing",
            message="NVML not found",
        )
    )
    feed(store, recs)
    d = store.session_detail("detail2")
    dev = next(s for s in d["streams"] if s["stream"] == "device")
    assert dev["ended"] and dev["written"] == f.seqs["device"] and dev["missing"] == 1 and dev["dropped"] == 4
    assert d["cut_short"] and d["dropped"] == 4
    assert [n["code"] for n in d["notices"]] == ["nvml_missing"]
    assert d["totals"]["kernels"] == 9 and d["totals"]["system_samples"] == 1
    feed(store, [lost, f.end("system", f.t0 + 2000)])
    d = store.session_detail("detail2")
    assert not d["cut_short"] and all(s["missing"] == 0 for s in d["streams"])
    item = session_page(store)[0][0]
    assert item["ended"] and item["end_ns"] == f.t0 + 2000 and item["kernels"] == 10


def test_session_list_order_filters_cursor_hosts_and_delete(store: SqlStore) -> None:
    made = []
    for i in range(7):
        f = SessionFactory(f"s{i}", host=f"h{i % 2}", app=f"a{i % 3}", t0=10**18 + i * 10**9)
        feed(store, [f.start("device"), f.launch(1, "k"), f.kernel(1, 0, 10)])
        made.append(f)
    got, cursor = [], None
    while True:
        page, cursor = session_page(store, limit=3, cursor=cursor)
        got += [p["session_id"] for p in page]
        if cursor is None:
            break
    assert got == [f.sid for f in reversed(made)]
    assert [p["session_id"] for p in session_page(store, host="h1")[0]] == ["s5", "s3", "s1"]
    since = session_page(store, since=10**18 + 2 * 10**9, until=10**18 + 5 * 10**9)[0]
    assert [p["session_id"] for p in since] == ["s4", "s3", "s2"]
    hosts = {h["host"]: h for h in store.hosts()}
    assert hosts["h0"]["sessions"] == 4 and {a["app"]: a["sessions"] for a in hosts["h0"]["apps"]} == {
        "a0": 2,
        "a1": 1,
        "a2": 1,
    }
    assert store.delete_session("s3") and not store.delete_session("s3")
    assert "s3" not in [p["session_id"] for p in session_page(store)[0]]
    for table in ("kernels", "dicts", "kernel_stats", "kernel_lod", "seq_ranges", "sessions"):
        assert store._one(f"SELECT count(*) FROM {table} WHERE session_id = 's3'") == (0,)
    # After deletion the same records are new again (the dedup ranges went with the session).
    assert feed(store, [made[3].start("scope")])["scope"].stored == 1


def test_memcpy_rows(store: SqlStore) -> None:
    f = SessionFactory("mc")
    start = f.start("device")
    cps = [f.memcpy(i * 1000, 500, 1 << 20, throughput_gbps=2.0) for i in range(20)]
    feed(store, [start, *cps])
    page, cur = memcpy_page(store, "mc", f.t0 + 5000, f.t0 + 10_000, limit=3)
    assert [p["seq"] for p in page] == [c.seq for c in cps[5:8]] and cur is not None
    assert page[0]["bytes"] == 1 << 20 and page[0]["copy_kind"] == "HtoD" and page[0]["dur_ns"] == 500


def test_memset_rows(store: SqlStore) -> None:
    f = SessionFactory("ms")
    start = f.start("device")
    sets = [f.memset(i * 1000, 200 + i, 4096, value=i % 3, stream_id=7 + i % 2) for i in range(20)]
    feed(store, [start, f.memcpy(0, 50, 8), *sets])
    page, cur = memset_page(store, "ms", f.t0 + 5000, f.t0 + 12_000, limit=4)
    assert [p["seq"] for p in page] == [m.seq for m in sets[5:9]] and cur is not None
    assert (page[0]["bytes"], page[0]["value"], page[0]["mem_kind"], page[0]["dur_ns"]) == (
        4096,
        2,
        "Device",
        205,
    )
    rest, cur2 = memset_page(store, "ms", f.t0 + 5000, f.t0 + 12_000, limit=4, cursor=cur)
    assert [p["seq"] for p in rest] == [m.seq for m in sets[9:12]] and cur2 is None
    odd, _ = memset_page(store, "ms", stream_id=8)
    assert [p["seq"] for p in odd] == [m.seq for m in sets[1::2]]
    if store.engine == "postgresql":  # migration 3: windows of memsets use an index, as copies do
        assert store._one("SELECT count(*) FROM pg_indexes WHERE indexname = 'memsets_time'") == (1,)


def test_scope_instances_window_min_dur_open_and_pagination(store: SqlStore) -> None:
    f = SessionFactory("sinst")
    rng = random.Random(11)
    recs: list[ev.Record] = [f.start("scope"), f.scope_path(1, "step"), f.scope_path(2, "step/fwd")]
    # (inst, path_id, depth, parent, start, end | None), times relative to f.t0
    want: list[tuple[int, int, int, int | None, int, int | None]] = []
    t, inst = 0, 0
    for _ in range(120):
        inst += 1
        outer, t_outer = inst, t
        recs.append(f.scope_begin(outer, 1, t))
        for _ in range(rng.randrange(0, 4)):
            inst += 1
            t += rng.randrange(0, 500)
            dur = rng.randrange(0, 20_000)
            recs.append(f.scope_begin(inst, 2, t, depth=1, parent=outer))
            recs.append(f.scope_end(inst, t + dur))
            want.append((inst, 2, 1, outer, t, t + dur))
            t += dur
        t += rng.randrange(0, 3000)
        recs.append(f.scope_end(outer, t))
        want.append((outer, 1, 0, None, t_outer, t))
    inst += 1
    recs.append(f.scope_begin(inst, 3, t + 5))  # open, and its path's dict entry never arrives
    want.append((inst, 3, 0, None, t + 5, None))
    feed(store, recs)

    def brute(w0: int | None, w1: int | None, min_dur: int | None) -> list[int]:
        out = []
        for i, _p, _d, _par, s, e in want:
            s, e = f.t0 + s, None if e is None else f.t0 + e
            if w1 is not None and s >= w1:
                continue
            if w0 is not None and e is not None and e <= w0:
                continue
            if min_dur and e is not None and e - s < min_dur:
                continue
            out.append((s, i))
        return [i for _s, i in sorted(out)]

    def fetch(w0: int | None, w1: int | None, min_dur: int | None, limit: int) -> list[dict]:
        got: list[dict] = []
        cursor = None
        while True:
            page, cursor = store.scope_instances("sinst", w0, w1, min_dur, limit, cursor)
            assert len(page) <= limit
            got += page
            if cursor is None:
                return got

    every = fetch(None, None, None, 10_000)
    assert [g["inst"] for g in every] == brute(None, None, None)
    by_inst = {g["inst"]: g for g in every}
    for i, p, d, par, s, e in want:
        g = by_inst[i]
        assert (g["scope_id"], g["depth"], g["parent_inst"], g["thread_id"]) == (p, d, par, 1)
        assert (g["start_ns"], g["end_ns"]) == (f.t0 + s, None if e is None else f.t0 + e)
        assert (g["path"], g["name"]) == {1: ("step", "step"), 2: ("step/fwd", "fwd"), 3: ("#3", "#3")}[p]
    span = t + 10
    for _ in range(6):
        a = rng.randrange(0, span)
        b = rng.randrange(a, span)
        w0, w1 = f.t0 + a, f.t0 + b
        for min_dur in (None, 0, 5000, 15_000):
            assert [g["inst"] for g in fetch(w0, w1, min_dur, 17)] == brute(w0, w1, min_dur)
    assert store.scope_instances("nosuch")[0] == []


def test_migration_5_upgrades_a_store_made_before_it(tmp_path: object) -> None:
    """A DuckDB file created before contract v3 (no syncs table, no memcpys.mode) is upgraded at open and
    stores v3's sync records and copy modes, which read back."""
    import duckdb

    path = f"{tmp_path}/old.duckdb"
    open_store(path).close()
    con = duckdb.connect(path)
    con.execute("DROP TABLE syncs")
    con.execute("ALTER TABLE memcpys DROP COLUMN mode")
    con.execute("DELETE FROM schema_migrations WHERE version = 5")
    con.close()
    store = open_store(path)
    try:
        assert store.schema_version() == store.latest_version == 11
        f = SessionFactory("v3")
        recs = [
            f.start("device"),
            f.sync(100, 40, "stream", stream_id=7),
            f.memcpy(200, 10, 4096, mode="sync"),
        ]
        feed(store, recs)
        assert store._all("SELECT sync_kind, end_ns - start_ns, stream_id FROM syncs") == [("stream", 40, 7)]
        assert store._all("SELECT mode FROM memcpys") == [("sync",)]
    finally:
        store.close()


def test_migration_2_upgrades_a_store_made_before_it(tmp_path: object) -> None:
    """A DuckDB file created before migration 2 (no api_lead_ns columns) is upgraded at open and then stores
    contract-v2 kernels, with the column appended where the staging INSERT expects it."""
    import duckdb

    path = f"{tmp_path}/old.duckdb"
    open_store(path).close()
    con = duckdb.connect(path)
    for table in ("kernels", "memcpys"):
        con.execute(f"ALTER TABLE {table} DROP COLUMN api_lead_ns")
    con.execute("DELETE FROM schema_migrations WHERE version = 2")
    con.close()
    store = open_store(path)
    try:
        assert store.schema_version() == store.latest_version == 11
        f = SessionFactory("upgraded")
        head = [f.start("device"), f.launch(1, "gemm")]
        k = f.kernel(1, 100, 50, api_lead_ns=30)
        feed(store, [*head, k])
        assert kernel_detail(store, "upgraded", k.seq)["api_start_ns"] == f.t0 + 100 - 30
    finally:
        store.close()
