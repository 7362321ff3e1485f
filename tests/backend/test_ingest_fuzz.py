"""Properties (hypothesis) of the backend's ingest on a real DuckDB store:

- the body parser (``ingest_body``: NDJSON or a JSON array → records stored + rejections) never fails on any
  bytes with anything but its documented errors (BadBody, TooLarge), and whatever it stores can be read back
  through every session route;
- a valid session (records drawn from the contract's own types and ranges, tests/backend/contract_data.py)
  is stored whole and reads back identically through the query API: each kernel's detail, the copies, the
  memsets, the scope instances, the session's header, notices and counts, the system metrics.

Bounded in time: 300 bodies and 50 sessions, ~20 s on two busy cores (measured: 2.4 s and 17.7 s)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpufl.backend.app import create_app
from gpufl.backend.ingest import BadBody, TooLarge, ingest_body
from gpufl.backend.store import SqlStore, open_store
from gpufl.contract import events as ev

from . import contract_data as cd
from .conftest import Api, make_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One DuckDB store and app for all examples (a store per example would cost more than the example)."""
    store = open_store(f"duckdb:///{tmp_path_factory.mktemp('fuzz') / 'store.duckdb'}")
    app = create_app(make_settings(), store, start_jobs=False)
    with TestClient(app) as client:
        yield Api(client, store, app)
    store.close()


# --------------------------------------------------------------------------------------------------
# Any bytes
# --------------------------------------------------------------------------------------------------


def _real_lines() -> list[bytes]:
    lines: list[bytes] = []
    for p in sorted((ROOT / "examples/captures/memcpy_heavy").glob("*.log")):
        lines += p.read_bytes().splitlines()[:40]
    return lines


REAL = _real_lines()


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Arbitrary bytes, or real NDJSON lines (some edited: a byte replaced, a run inserted or cut), joined
    by newlines or into a JSON array."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=400))
    lines = draw(st.lists(st.sampled_from(REAL), min_size=1, max_size=12))
    out = []
    for line in lines:
        b = bytearray(line)
        if draw(st.integers(0, 2)) == 0:
            i = draw(st.integers(0, len(b)))
            op = draw(st.sampled_from(["set", "insert", "cut"]))
            if op == "set" and i < len(b):
                b[i] = draw(st.integers(0, 255))
            elif op == "insert":
                b[i:i] = draw(
                    st.binary(min_size=1, max_size=6) | st.sampled_from([b"\n", b"9" * 20, b"-", b"["])
                )
            else:
                del b[i:]
        out.append(bytes(b))
    if draw(st.booleans()):
        return b"[" + b",".join(out) + b"]"
    return b"\n".join(out) + draw(st.sampled_from([b"", b"\n", b"\n\n"]))


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=bodies(), stream=st.sampled_from(ev.STREAMS), json_array=st.sampled_from([None, True, False]))
def test_ingest_body_never_fails_on_any_bytes(
    fuzz_api: Api, body: bytes, stream: str, json_array: bool | None
) -> None:
    store: SqlStore = fuzz_api.store
    try:
        res = ingest_body(store, stream, body, json_array, max_records=50)
    except (BadBody, TooLarge):
        return
    for r in res.rejected:
        assert isinstance(r.index, int) and isinstance(r.reason, str) and r.reason
    if res.stored:
        # Whatever was stored reads back through the session routes.
        for s in fuzz_api.get("/sessions", params={"limit": 1000}).json()["items"]:
            sid = s["session_id"]
            for path in ("", "/kernels", "/kernels/summary", "/memcpy", "/memsets", "/scopes", "/system"):
                r = fuzz_api.get(f"/sessions/{sid}{path}")
                assert r.status_code == 200, (path, r.text)
            for k in fuzz_api.get(f"/sessions/{sid}/kernels").json()["items"]:
                assert fuzz_api.get(f"/sessions/{sid}/kernels/{k['id']}").status_code == 200


# --------------------------------------------------------------------------------------------------
# Valid sessions round-trip
# --------------------------------------------------------------------------------------------------


def _json(v: Any) -> Any:
    """``v`` as the API returns JSON (tuples become lists, structs dicts without their defaults)."""
    return json.loads(msgspec.json.encode(v))


@st.composite
def sessions(draw: st.DrawFn) -> dict[str, list[ev.Record]]:
    """A valid session: records of every bulk type with fields drawn from the contract's ranges, dict
    entries the records refer to (unique ids per kind), unique scope instances, gap-free seqs per stream."""
    sid = draw(cd.SESSION_IDS)
    ids = st.integers(0, ev.I64_MAX)
    out: dict[str, list[ev.Record]] = {s: [] for s in ev.STREAMS}

    def add(cls: type[ev.Record], **fixed: Any) -> ev.Record:
        tag = ev.type_tag(cls)
        stream = fixed.pop("stream", None) or next(s for s in ev.STREAMS if tag in ev.STREAM_TYPES[s])
        rec = draw(cd.record(cls, sid, len(out[stream]), **fixed))
        rec = msgspec.structs.replace(rec, stream=stream, seq=len(out[stream]))
        out[stream].append(rec)
        return rec

    for s in ev.STREAMS:
        add(ev.SessionStart, stream=s)
    launches = draw(st.lists(ids, max_size=3, unique=True))
    stacks = draw(st.lists(ids, max_size=2, unique=True))
    paths = draw(st.lists(ids, max_size=2, unique=True))
    insts = draw(st.lists(ids, max_size=4, unique=True))
    for i in launches:
        add(ev.DictEntry, kind="launch", id=i)
    for i in stacks:
        add(ev.DictEntry, kind="stack", id=i)
    for i in paths:
        add(ev.DictEntry, kind="scope", id=i, stream="scope")
    pick = lambda xs: st.sampled_from(xs) | ids if xs else ids  # noqa: E731
    for i in insts:
        add(ev.ScopeBegin, inst=i, path_id=draw(pick(paths)))
        if draw(st.booleans()):
            add(ev.ScopeEnd, inst=i)
    for _ in range(draw(st.integers(0, 3))):
        add(ev.Memcpy, stack_id=draw(st.none() | pick(stacks)), scope_inst=draw(st.none() | pick(insts)))
    for _ in range(draw(st.integers(0, 2))):
        add(ev.Memset, scope_inst=draw(st.none() | pick(insts)))
    for _ in range(draw(st.integers(0, 2))):
        add(ev.Notice)
    for _ in range(draw(st.integers(0, 3))):
        add(ev.SystemSample)
    for _ in range(draw(st.integers(0, 6))):  # last on the device stream: one gap-free batch of kernels
        add(
            ev.Kernel,
            launch_id=draw(pick(launches)),
            stack_id=draw(st.none() | pick(stacks)),
            scope_inst=draw(st.none() | pick(insts)),
        )
    return out


def _of(recs: dict[str, list[ev.Record]], cls: type[ev.Record]) -> list[Any]:
    return [r for rs in recs.values() for r in rs if type(r) is cls]


def _dict(recs: dict[str, list[ev.Record]], stream: str, kind: str, id_: int | None) -> ev.DictEntry | None:
    return next((d for d in _of(recs, ev.DictEntry) if (d.stream, d.kind, d.id) == (stream, kind, id_)), None)


def _expected_kernel(recs: dict[str, list[ev.Record]], k: ev.Kernel) -> dict[str, Any]:
    launch = _dict(recs, "device", "launch", k.launch_id)
    stack = _dict(recs, "device", "stack", k.stack_id) if k.stack_id is not None else None
    cfg = launch.launch if launch is not None else None
    begin = next((b for b in _of(recs, ev.ScopeBegin) if b.inst == k.scope_inst), None)
    path = _dict(recs, "scope", "scope", begin.path_id) if begin is not None else None
    return {
        "id": str(k.seq),
        "seq": k.seq,
        "name": (cfg.name if cfg is not None else launch.value) if launch is not None else None,
        "launch_id": k.launch_id,
        "device_id": k.device_id,
        "stream_id": k.stream_id,
        "corr_id": k.corr_id,
        "start_ns": k.start_ns,
        "end_ns": k.end_ns,
        "dur_ns": k.end_ns - k.start_ns,
        "scope_inst": k.scope_inst,
        "stack_id": k.stack_id,
        "graph_id": k.graph_id,
        "thread_id": k.thread_id,
        "mangled": (cfg.mangled if cfg is not None and cfg.mangled else launch.mangled) if launch else None,
        "api_start_ns": ev.api_start_ns(k),
        "api_dur_ns": k.api_dur_ns,
        "graph_node_id": k.graph_node_id,
        "launch": _json(cfg) if cfg is not None else None,
        "stack": (
            [{"file": f, "line": ln, "function": fn} for f, ln, fn in stack.frames]
            if stack is not None and stack.frames is not None
            else None
        ),
        "scope": (
            None
            if k.scope_inst is None
            else {
                "inst": k.scope_inst,
                "path_id": begin.path_id if begin is not None else None,
                # The store keeps a dict entry's value as its launch's name where it has a launch.
                "path": (path.launch.name if path.launch is not None else path.value) if path else None,
            }
        ),
    }


def _expected_system(samples: list[ev.SystemSample], points: int) -> dict[tuple[str, int | None], list[Any]]:
    """The system route's buckets, computed from the records with the route's own formula."""
    vals: list[tuple[str, int, int, float]] = []
    for s in samples:
        if s.host is not None:
            vals += [
                (m, -1, s.ts_ns, float(v)) for m, v in msgspec.to_builtins(s.host).items() if v is not None
            ]
        for g in s.gpus:
            vals += [
                (m, g.device_id, s.ts_ns, float(v))
                for m, v in msgspec.to_builtins(g).items()
                if m != "device_id" and v is not None
            ]
    if not vals:
        return {}
    start, end = min(v[2] for v in vals), max(v[2] for v in vals) + 1
    width = max(1, -(-(end - start) // points))
    buckets: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    for m, dev, ts, v in vals:
        buckets[(m, dev, (ts - start) // width)].append(v)
    out: dict[tuple[str, int | None], list[Any]] = defaultdict(list)
    for (m, dev, b), vs in sorted(buckets.items()):
        out[(m, None if dev < 0 else dev)].append((start + b * width, min(vs), max(vs), sum(vs) / len(vs)))
    return dict(out)


ACTIVITY = ("seq", "device_id", "stream_id", "corr_id", "start_ns", "end_ns")
COPY = ("bytes", "copy_kind", "src_kind", "dst_kind", "throughput_gbps", "scope_inst", "stack_id")
SET = ("bytes", "value", "mem_kind", "scope_inst", "stack_id")


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
@given(recs=sessions())
def test_a_valid_session_reads_back_identically(fuzz_api: Api, recs: dict[str, list[ev.Record]]) -> None:
    api = fuzz_api
    sid = recs["device"][0].session_id
    base = f"/sessions/{sid}"
    assert api.get(base).status_code == 404
    try:
        kernels = _of(recs, ev.Kernel)
        batches = [("device", [r for r in recs["device"] if type(r) is not ev.Kernel]), ("device", kernels)]
        batches += [("scope", recs["scope"]), ("system", recs["system"])]
        for stream, rs in batches:
            if rs:
                r = api.post_events(stream, ev.encode_lines(rs))
                assert r.status_code == 200 and r.json() == {
                    "stored": len(rs),
                    "duplicates": 0,
                    "rejected": [],
                }, r.text

        detail = api.get(base).json()
        assert detail["header"] == _json(ev.to_builtins(recs["device"][0]))
        totals = detail["totals"]
        assert (totals["kernels"], totals["memcpys"], totals["memsets"]) == tuple(
            len(_of(recs, c)) for c in (ev.Kernel, ev.Memcpy, ev.Memset)
        )
        assert (totals["scope_instances"], totals["system_samples"]) == (
            len(_of(recs, ev.ScopeBegin)),
            len(_of(recs, ev.SystemSample)),
        )
        assert totals["gpu_time_ns"] == sum(k.end_ns - k.start_ns for k in kernels)
        notices = sorted(_of(recs, ev.Notice), key=lambda n: (n.ts_ns, n.stream, n.seq))
        assert detail["notices"] == [_json(ev.to_builtins(n)) for n in notices]
        assert {s["stream"]: s["received"] for s in detail["streams"]} == {
            s: len(rs) for s, rs in recs.items()
        }

        page = api.get(f"{base}/kernels", params={"limit": 10_000}).json()["items"]
        assert [k["seq"] for k in page] == [k.seq for k in sorted(kernels, key=lambda k: (k.start_ns, k.seq))]
        for k in kernels:
            got = api.get(f"{base}/kernels/{k.seq}")
            assert got.status_code == 200, got.text
            assert got.json() == _expected_kernel(recs, k)

        for path, cls, cols in (("/memcpy", ev.Memcpy, COPY), ("/memsets", ev.Memset, SET)):
            items = api.get(base + path, params={"limit": 10_000}).json()["items"]
            want = sorted(_of(recs, cls), key=lambda r: (r.start_ns, r.seq))
            assert [{c: i[c] for c in (*ACTIVITY, *cols)} for i in items] == [
                {c: getattr(r, c) for c in (*ACTIVITY, *cols)} for r in want
            ]

        ends = {e.inst: e.ts_ns for e in _of(recs, ev.ScopeEnd)}
        items = api.get(f"{base}/scopes/instances", params={"limit": 10_000}).json()["items"]
        begins = sorted(_of(recs, ev.ScopeBegin), key=lambda b: (b.ts_ns, b.inst))
        assert [
            (
                i["inst"],
                i["scope_id"],
                i["depth"],
                i["parent_inst"],
                i["thread_id"],
                i["start_ns"],
                i["end_ns"],
            )
            for i in items
        ] == [
            (b.inst, b.path_id, b.depth, b.parent_inst, b.thread_id, b.ts_ns, ends.get(b.inst))
            for b in begins
        ]

        system = api.get(f"{base}/system", params={"points": 10_000}).json()
        got_series = {
            (s["metric"], s["device"]): [(p["t_ns"], p["min"], p["max"], p["mean"]) for p in s["points"]]
            for s in system["series"]
        }
        want_series = _expected_system(_of(recs, ev.SystemSample), 10_000)
        assert got_series.keys() == want_series.keys()
        for key, pts in want_series.items():
            assert len(got_series[key]) == len(pts)
            for (t, lo, hi, mean), (gt, glo, ghi, gmean) in zip(pts, got_series[key], strict=True):
                assert (gt, glo, ghi) == (t, lo, hi)
                assert math.isclose(gmean, mean, rel_tol=1e-9, abs_tol=1e-6)
    finally:
        r = api.client.delete(f"/api/v1{base}", headers=api.h("admin"))
        assert r.status_code == 200, r.text
    assert api.get(base).status_code == 404
