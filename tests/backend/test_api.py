"""The HTTP API end to end on both engines: ingest protocol, limits, hostile input, queries, auth, keys."""

from __future__ import annotations

import gzip
import itertools
import json
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from gpufl.backend.api import schemas as S
from gpufl.backend.app import create_app
from gpufl.backend.store import SqlStore
from gpufl.contract import events as ev

from .conftest import Api, make_settings
from .factory import SessionFactory


def _session(sid: str = "api1") -> tuple[SessionFactory, list[ev.Record]]:
    f = SessionFactory(sid)
    recs: list[ev.Record] = [f.start("device"), f.launch(1, "gemm"), f.stack(2, [("a.py", 1, "f")])]
    recs += [f.kernel(1, i * 1000, 400 + i, stack_id=2) for i in range(50)]
    return f, recs


def test_ingest_ndjson_json_array_and_gzip(api: Api) -> None:
    _, recs = _session()
    lines = ev.encode_lines(recs)
    r = api.post_events("device", lines[: lines.index(b"\n", 2000) + 1])
    assert r.status_code == 200, r.text
    first = r.json()["stored"]
    assert first > 0 and r.json()["duplicates"] == 0 and r.json()["rejected"] == []
    arr = b"[" + b",".join(ev.encode(x) for x in recs) + b"]"
    r = api.client.post(
        "/api/v1/events/device",
        content=gzip.compress(arr),
        headers={**api.h("ingest"), "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"stored": len(recs) - first, "duplicates": first, "rejected": []}
    s = api.get("/sessions/api1").json()
    assert s["totals"]["kernels"] == 50


def test_per_record_rejections_and_all_bad_is_400(api: Api) -> None:
    f, recs = _session("rej")
    good = [ev.encode(r) for r in recs[:3]]
    bad_end = json.dumps(
        {**ev.to_builtins(f.kernel(1, 5000, 10)), "end_ns": f.t0}
    ).encode()  # ends before it starts
    wrong_stream = ev.encode(f.scope_path(1, "x"))
    not_json = b'{"type": "kernel", '
    body = b"\n".join([good[0], bad_end, good[1], wrong_stream, not_json, good[2]])
    r = api.post_events("device", body)
    assert r.status_code == 200
    out = r.json()
    assert out["stored"] == 3 and out["duplicates"] == 0
    assert [(x["index"], x["seq"]) for x in out["rejected"]] == [(1, recs[-1].seq + 1), (3, 0), (4, None)]
    assert "before start_ns" in out["rejected"][0]["reason"]
    assert "posted to /events/device" in out["rejected"][1]["reason"]
    r = api.post_events("device", b"\n".join([bad_end, not_json]))
    assert r.status_code == 400 and r.json()["stored"] == 0 and len(r.json()["rejected"]) == 2
    assert "error" in r.json()
    for body, ctype, enc in (
        (b"", "application/x-ndjson", None),
        (b"[1,", "application/json", None),
        (b"plain", "application/x-ndjson", "gzip"),
    ):
        hdr = {"Content-Type": ctype} | ({"Content-Encoding": enc} if enc else {})
        r = api.post_events("device", body, **hdr)
        assert r.status_code == 400, (body, r.text)
        assert "error" in r.json()
    assert api.get("/sessions/rej").json()["totals"]["kernels"] == 0  # the bad kernel was not stored


@pytest.fixture
def small_api(store: SqlStore) -> Iterator[Api]:
    app = create_app(
        make_settings(max_body_bytes=20_000, max_decompressed_bytes=80_000, max_batch_records=10),
        store,
        start_jobs=False,
    )
    with TestClient(app) as client:
        yield Api(client, store, app)


def test_limits_give_413_with_the_limits(small_api: Api) -> None:
    _, recs = _session("big")
    over_records = ev.encode_lines(recs[:11])
    r = small_api.post_events("device", over_records)
    assert r.status_code == 413
    assert r.json()["max_records"] == 10 and r.json()["max_bytes"] == 20_000 and "error" in r.json()
    assert small_api.post_events("device", ev.encode_lines(recs[:10])).status_code == 200
    r = small_api.post_events("device", b" " * 20_001)
    assert r.status_code == 413
    bomb = gzip.compress(b" " * 200_000)  # inflates past max_decompressed_bytes
    r = small_api.post_events("device", bomb, **{"Content-Encoding": "gzip"})
    assert r.status_code == 413 and len(bomb) < 20_000


def test_load_shedding_503_with_retry_after(api: Api) -> None:
    _, recs = _session("shed")
    settings = api.app.state.settings
    api.app.state.inflight = settings.max_inflight_ingests  # as if that many batches were in progress
    r = api.post_events("device", ev.encode_lines(recs))
    assert r.status_code == 503 and r.headers["Retry-After"] == "1" and "error" in r.json()
    api.app.state.inflight = 0
    assert api.post_events("device", ev.encode_lines(recs)).json()["stored"] == len(recs)


def test_hostile_input_is_rejected_or_stored_verbatim_never_500(api: Api) -> None:
    sqlish = "x'); DROP TABLE kernels; --"
    # Session ids are held to the contract's rule (no quotes, spaces, ...): the SQL goes in the free text.
    f = SessionFactory("hostile", host="h' OR '1'='1", app='"; DELETE FROM sessions; --')
    recs: list[ev.Record] = [f.start("device"), f.launch(1, "k\"'; SELECT 1; --"), f.kernel(1, 0, 10)]
    assert api.post_events("device", ev.encode_lines(recs)).json()["stored"] == 3
    base = ev.to_builtins(f.kernel(1, 100, 10))
    hostile = [
        {**base, "seq": 2**64 + 5},  # huge seq
        {**base, "seq": base["seq"] + 1, "device_id": 2**63},  # past int64 (msgspec accepts uint64)
        {**base, "seq": base["seq"] + 2, "start_ns": 10**30, "end_ns": 10**30},
        {**base, "seq": -1},
        {**base, "session_id": "s" * 65},
        {**base, "session_id": sqlish},
        {**base, "session_id": "nul\u0000id"},
        {**base, "stream_id": "7"},
        {**base, "type": "kernel; DROP TABLE x"},
    ]
    body = b"\n".join(json.dumps(h).encode() for h in hostile)
    body += b"\n" + b"[" * 5000 + b"]" * 5000  # deep JSON
    deep_opts: dict = {}
    cur = deep_opts
    for _ in range(40):
        cur["a"] = {}
        cur = cur["a"]
    start2 = {**ev.to_builtins(SessionFactory("deep").start("device")), "options": deep_opts}
    body += b"\n" + json.dumps(start2).encode()
    r = api.post_events("device", body)
    assert r.status_code == 400, r.text
    assert len(r.json()["rejected"]) == len(hostile) + 2
    got = api.get("/sessions").json()["items"]
    assert [(s["session_id"], s["host"], s["app"], s["kernels"]) for s in got] == [
        ("hostile", f.host, f.app, 1)
    ]
    sid = "hostile"
    ks = api.get(f"/sessions/{sid}/kernels").json()["items"]
    assert [k["name"] for k in ks] == ["k\"'; SELECT 1; --"]
    assert api.get(f"/sessions/{sid}/kernels", params={"name": "' OR 1=1 --"}).json()["items"] == []
    for path, params in (
        ("/sessions", {"since": str(10**30)}),
        ("/sessions", {"limit": "-1"}),
        ("/sessions", {"cursor": "!!notbase64"}),
        (f"/sessions/{sid}/kernels", {"start_ns": "1e400"}),
        (f"/sessions/{sid}/kernels", {"device": str(2**70)}),
        (f"/sessions/{sid}/kernels", {"cursor": "WzEsIngiXQ"}),
        (f"/sessions/{sid}/kernels", {"start_ns": "0", "end_ns": str(2**62), "resolution_ns": "1"}),
        (f"/sessions/{sid}/kernels/99999999999999999999999", {}),
        (f"/sessions/{sid}/system", {"points": "0"}),
        ("/sessions/" + "x" * 100, {}),
        (f"/sessions/{sid}/deep/scopes/{2**70}", {}),
        (f"/sessions/{sid}/deep/scopes/5", {}),
        (f"/sessions/{sid}/deep/lines", {}),
        (f"/sessions/{sid}/deep/lines", {"kernel": "nosuchkernel"}),
        (f"/sessions/{sid}/deep/lines", {"kernel": "k", "by": "file"}),
        (f"/sessions/{sid}/deep", {"ranges_limit": "-1"}),
        (f"/sessions/{sid}/scopes/instances", {"min_dur_ns": "-1"}),
        (f"/sessions/{sid}/scopes/instances", {"start_ns": "5", "end_ns": "4"}),
        (f"/sessions/{sid}/scopes/instances", {"cursor": "WzEsIngiXQ"}),
    ):
        r = api.get(path, params=params)
        assert 400 <= r.status_code < 500, (path, params, r.status_code, r.text)
        assert "error" in r.json()


def test_query_endpoints_shapes(api: Api) -> None:
    f, recs = _session("q1")
    api.post_events("device", ev.encode_lines(recs))
    api.post_events(
        "system", ev.encode_lines([f.start("system"), *(f.sample(i * 10**8, i, 100.0, 5) for i in range(30))])
    )
    t0, t1 = f.t0, f.t0 + 60_000
    page = api.get("/sessions/q1/kernels", params={"start_ns": t0, "end_ns": t1, "limit": 20}).json()
    assert len(page["items"]) == 20 and page["next_cursor"]
    S.KernelPage.model_validate(page, strict=True)  # these endpoints bypass pydantic: check the shape
    rest = api.get(
        "/sessions/q1/kernels",
        params={"start_ns": t0, "end_ns": t1, "limit": 1000, "cursor": page["next_cursor"]},
    ).json()
    assert len(rest["items"]) == 30 and rest["next_cursor"] is None
    kid = page["items"][3]["id"]
    d = api.get(f"/sessions/q1/kernels/{kid}").json()
    assert d["id"] == kid and d["stack"] == [{"file": "a.py", "line": 1, "function": "f"}]
    assert d["launch"]["num_regs"] == 32
    tl = api.get(
        "/sessions/q1/kernels", params={"start_ns": t0, "end_ns": t1, "resolution_ns": 10_000}
    ).json()
    assert tl["bucket_ns"] == 10_000 and sum(b["count"] for b in tl["buckets"]) == 50
    S.KernelTimeline.model_validate(tl, strict=True)
    tl = api.get(
        "/sessions/q1/kernels", params={"start_ns": t0, "end_ns": t1, "resolution_ns": 1 << 18}
    ).json()
    S.KernelTimeline.model_validate(tl, strict=True)
    assert tl["bucket_ns"] == 1 << 18 and sum(b["count"] for b in tl["buckets"]) == 50
    sm = api.get("/sessions/q1/kernels/summary").json()
    assert sm["items"][0]["name"] == "gemm" and sm["items"][0]["count"] == 50
    S.KernelSummary.model_validate(sm, strict=True)
    sysr = api.get("/sessions/q1/system", params={"metric": "util_gpu_pct", "points": 3}).json()
    pts = sysr["series"][0]["points"]
    assert len(pts) == 3 and pts[0]["min"] == 0 and pts[-1]["max"] == 29
    S.SystemResponse.model_validate(sysr, strict=True)
    S.MemcpyPage.model_validate(api.get("/sessions/q1/memcpy").json(), strict=True)
    S.MemsetPage.model_validate(api.get("/sessions/q1/memsets").json(), strict=True)
    assert api.get("/hosts").json()["hosts"][0]["apps"][0]["sessions"] == 1
    assert api.get("/sessions/q1/scopes").json() == {"roots": []}
    assert api.get("/sessions/q1/memcpy").json() == {"items": [], "next_cursor": None}
    assert api.get("/sessions/nope").status_code == 404
    assert api.get("/sessions/q1/kernels/999999").status_code == 404
    assert api.get("/sessions/nope/kernels").status_code == 404
    r = api.client.delete("/api/v1/sessions/q1", headers=api.h("admin"))
    assert r.json() == {"deleted": True}
    assert api.get("/sessions/q1").status_code == 404


def test_scope_instances_endpoint(api: Api) -> None:
    f = SessionFactory("si")
    recs: list[ev.Record] = [f.start("scope"), f.scope_path(1, "train"), f.scope_path(2, "train/forward")]
    recs += [f.scope_begin(1, 1, 0), f.scope_begin(2, 2, 100, depth=1, parent=1), f.scope_end(2, 600)]
    recs += [f.scope_begin(3, 2, 700, depth=1, parent=1), f.scope_end(3, 720), f.scope_end(1, 1000)]
    recs.append(f.scope_begin(4, 1, 2000))  # open
    assert api.post_events("scope", ev.encode_lines(recs)).status_code == 200
    url = "/sessions/si/scopes/instances"
    page = api.get(url).json()
    S.ScopeInstancePage.model_validate(page, strict=True)  # the endpoint bypasses pydantic: check the shape
    assert [i["inst"] for i in page["items"]] == [1, 2, 3, 4] and page["next_cursor"] is None
    assert page["items"][1] == {
        "inst": 2,
        "scope_id": 2,
        "path": "train/forward",
        "name": "forward",
        "depth": 1,
        "parent_inst": 1,
        "thread_id": 1,
        "start_ns": f.t0 + 100,
        "end_ns": f.t0 + 600,
    }
    assert page["items"][3]["end_ns"] is None
    win = {"start_ns": f.t0 + 600, "end_ns": f.t0 + 2000}
    assert [i["inst"] for i in api.get(url, params=win).json()["items"]] == [1, 3]
    assert [i["inst"] for i in api.get(url, params={**win, "min_dur_ns": 100}).json()["items"]] == [1]
    assert [i["inst"] for i in api.get(url, params={"scope": 2}).json()["items"]] == [2, 3]
    assert [i["inst"] for i in api.get(url, params={**win, "scope": 1}).json()["items"]] == [1]
    first = api.get(url, params={"limit": 3}).json()
    assert [i["inst"] for i in first["items"]] == [1, 2, 3] and first["next_cursor"]
    rest = api.get(url, params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert [i["inst"] for i in rest["items"]] == [4] and rest["next_cursor"] is None
    assert api.get("/sessions/nope/scopes/instances").status_code == 404


def test_kernel_summary_window_and_histogram_count_what_overlaps(api: Api) -> None:
    """#25: the summary can follow the timeline's visible range (kernels overlapping it, counted whole, the
    same definitions), and a kernel's durations come as a log-spaced histogram whose buckets hold every launch
    (a bimodal kernel shows both modes)."""
    f = SessionFactory("win")
    recs: list[ev.Record] = [f.start("device"), f.launch(1, "bimodal"), f.launch(2, "other")]
    kernels: list[tuple[str, int, int]] = []  # name, start, duration (offsets from t0)
    t = 0
    for i in range(228):
        dur = 45_000 if i % 19 == 0 else 1_000 + i  # 12 slow ones among 228
        kernels.append(("bimodal", t, dur))
        kernels.append(("other", t + 50_000, 3_000))
        t += 100_000
    recs += [f.kernel(1 if n == "bimodal" else 2, s, d) for n, s, d in kernels]
    assert api.post_events("device", ev.encode_lines(recs)).json()["rejected"] == []
    w0, w1 = 1_234_567, 9_876_543  # cuts through kernels at both ends
    got = api.get("/sessions/win/kernels/summary", params={"start_ns": f.t0 + w0, "end_ns": f.t0 + w1}).json()
    S.KernelSummary.model_validate(got, strict=True)
    assert (got["start_ns"], got["end_ns"]) == (f.t0 + w0, f.t0 + w1)
    inside = [(n, d) for n, s, d in kernels if s < w1 and s + d > w0]
    assert got["gpu_time_ns"] == sum(d for _, d in inside)
    for item in got["items"]:
        d = sorted(x for n, x in inside if n == item["name"])
        assert (item["count"], item["total_ns"], item["min_ns"], item["max_ns"]) == (
            len(d),
            sum(d),
            d[0],
            d[-1],
        )
        assert item["quantiles"] == "exact"
        pos = 0.95 * (len(d) - 1)
        lo = int(pos)
        assert item["p95_ns"] == pytest.approx(d[lo] + (d[min(lo + 1, len(d) - 1)] - d[lo]) * (pos - lo))
    whole = api.get("/sessions/win/kernels/summary").json()
    assert whole["start_ns"] is None and whole["items"][0]["count"] == 228

    h = api.get("/sessions/win/kernels/histogram", params={"name": "bimodal"}).json()
    S.KernelHistogram.model_validate(h, strict=True)
    durs = [d for n, _, d in kernels if n == "bimodal"]
    assert h["count"] == len(durs) == sum(b["count"] for b in h["buckets"])
    for b in h["buckets"]:
        assert b["count"] == sum(1 for d in durs if b["lo_ns"] <= d < b["hi_ns"])
    assert all(a["hi_ns"] == b["lo_ns"] for a, b in itertools.pairwise(h["buckets"]))
    assert h["buckets"][0]["lo_ns"] <= min(durs) and max(durs) < h["buckets"][-1]["hi_ns"]
    assert any(b["count"] == 0 for b in h["buckets"])  # the gap between the two modes is shown, not dropped
    hw = api.get(
        "/sessions/win/kernels/histogram",
        params={"name": "bimodal", "start_ns": f.t0 + w0, "end_ns": f.t0 + w1},
    ).json()
    assert hw["count"] == sum(1 for n, _ in inside if n == "bimodal")
    assert api.get("/sessions/win/kernels/histogram", params={"name": "nope"}).json()["buckets"] == []
    assert api.get("/sessions/win/kernels/histogram").status_code == 422
    r = api.get("/sessions/win/kernels/summary", params={"start_ns": 5, "end_ns": 4})
    assert r.status_code == 422


def test_system_points_say_how_many_samples_and_or_the_throttle_bitmask(api: Api) -> None:
    """#25: a point that is one sample says so (n = 1), and the clocks-event reasons bitmask of a bucket is the
    OR of its samples' masks (a mean of masks decodes into reasons that never happened)."""
    f = SessionFactory("bits")
    masks = [0x1, 0x4, 0x0, 0x40, 0x0, 0x0]
    samples = [
        ev.SystemSample(
            session_id="bits",
            stream="system",
            seq=i + 1,
            ts_ns=f.t0 + i * 10**9,
            gpus=[ev.GpuSample(device_id=0, throttle_reasons=m, util_gpu_pct=10.0 * i)],
        )
        for i, m in enumerate(masks)
    ]
    assert api.post_events("system", ev.encode_lines([f.start("system"), *samples])).json()["rejected"] == []
    fine = api.get("/sessions/bits/system", params={"points": 600}).json()
    S.SystemResponse.model_validate(fine, strict=True)
    by = {s["metric"]: s["points"] for s in fine["series"]}
    assert [p["n"] for p in by["throttle_reasons"]] == [1] * len(masks)
    assert [p["bits"] for p in by["throttle_reasons"]] == masks
    assert all(p["bits"] is None for p in by["util_gpu_pct"])
    coarse = api.get("/sessions/bits/system", params={"points": 3, "metric": "throttle_reasons"}).json()
    pts = coarse["series"][0]["points"]
    assert [p["n"] for p in pts] == [2, 2, 2]
    assert [p["bits"] for p in pts] == [0x1 | 0x4, 0x0 | 0x40, 0x0]


# ---- auth -------------------------------------------------------------------------------------------

# Which role each endpoint needs. Every API route must be listed (checked below), so a new endpoint can't
# slip in without an entry in the auth matrix.
NEEDS = {
    ("POST", "/api/v1/events/{stream}"): "ingest",
    ("GET", "/api/v1/sessions"): "read",
    ("GET", "/api/v1/hosts"): "read",
    ("GET", "/api/v1/sessions/{session_id}"): "read",
    ("DELETE", "/api/v1/sessions/{session_id}"): "admin",
    ("GET", "/api/v1/sessions/{session_id}/kernels"): "read",
    ("GET", "/api/v1/sessions/{session_id}/kernels/summary"): "read",
    ("GET", "/api/v1/sessions/{session_id}/kernels/histogram"): "read",
    ("GET", "/api/v1/sessions/{session_id}/export"): "read",
    ("GET", "/api/v1/sessions/{session_id}/scopes/{scope_id}/kernels"): "read",
    ("GET", "/api/v1/sessions/{session_id}/kernels/{kernel_id}"): "read",
    ("GET", "/api/v1/sessions/{session_id}/memcpy"): "read",
    ("GET", "/api/v1/sessions/{session_id}/memsets"): "read",
    ("GET", "/api/v1/sessions/{session_id}/memory/timeline"): "read",
    ("GET", "/api/v1/sessions/{session_id}/capture-windows"): "read",
    ("GET", "/api/v1/sessions/{session_id}/launches"): "read",
    ("GET", "/api/v1/sessions/{session_id}/range"): "read",
    ("GET", "/api/v1/sessions/{session_id}/search"): "read",
    ("GET", "/api/v1/sessions/{session_id}/scopes"): "read",
    ("GET", "/api/v1/sessions/{session_id}/scopes/instances"): "read",
    ("GET", "/api/v1/sessions/{session_id}/deep"): "read",
    ("GET", "/api/v1/sessions/{session_id}/deep/scopes/{scope_id}"): "read",
    ("GET", "/api/v1/sessions/{session_id}/deep/lines"): "read",
    ("GET", "/api/v1/sessions/{session_id}/system"): "read",
    ("GET", "/api/v1/sessions/{session_id}/insights"): "read",
    ("GET", "/api/v1/diff"): "read",
    ("POST", "/api/v1/keys"): "admin",
    ("GET", "/api/v1/keys"): "admin",
    ("DELETE", "/api/v1/keys/{key_id}"): "admin",
    ("POST", "/api/v1/admin/prune"): "admin",
    ("GET", "/api/v1/archive/sessions"): "read",
    ("POST", "/api/v1/archive/sessions/{session_id}/restore"): "admin",
    ("GET", "/api/v1/archive/jobs"): "read",
    ("GET", "/api/v1/archive/jobs/{job_id}"): "read",
    ("GET", "/metrics"): "read",
    ("POST", "/api/v1/captures"): "operator",
    ("GET", "/api/v1/captures"): "read",
    ("GET", "/api/v1/captures/{capture_id}"): "read",
    ("GET", "/api/v1/agent/captures"): "ingest",
    ("POST", "/api/v1/agent/captures/{capture_id}/deliveries"): "ingest",
}
# Who else may do what a role may: admin everything, an operator what a reader may (and request captures).
ALSO = {"read": {"operator", "admin"}, "operator": {"admin"}, "ingest": {"admin"}, "admin": set()}
PUBLIC = {("GET", "/healthz")}
FILL = {
    "stream": "device",
    "session_id": "nosuch",
    "kernel_id": "1",
    "scope_id": "1",
    "key_id": "nokey",
    "job_id": "nojob",
    "capture_id": "cap-0123456789abcdef",
}


def test_every_route_is_in_the_auth_matrix(api: Api) -> None:
    # The OpenAPI document lists every routed endpoint (only the SPA fallback is left out of it).
    paths = api.app.openapi()["paths"]
    routes = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    assert routes - PUBLIC == set(NEEDS)


@pytest.mark.parametrize(("method", "path"), sorted(NEEDS))
def test_auth_matrix(api: Api, method: str, path: str) -> None:
    url = re.sub(r"\{(\w+)\}", lambda m: FILL[m.group(1)], path)
    need = NEEDS[(method, path)]

    def call(headers: dict[str, str]) -> tuple[int, dict]:
        r = api.client.request(method, url, headers=headers, content=b"")
        return r.status_code, (
            r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        )

    for headers in (
        {},
        {"Authorization": "Bearer gpufl_0123456789abcdef_" + "x" * 43},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic abc"},
        api.h("revoked"),
    ):
        status, body = call(headers)
        assert status == 401 and "error" in body, (headers, status)
    for role in ("ingest", "read", "operator", "admin"):
        status, body = call(api.h(role))
        if role == need or role in ALSO[need]:
            assert status not in (401, 403, 500), (role, status, body)
        else:
            assert status == 403 and "error" in body, (role, status)


def test_an_ingest_key_bound_to_hosts_names_only_those_on_the_agent_routes(api: Api) -> None:
    """Issue #22: an admin binds an ingest key to a host glob; the agent routes answer 403 (with the reason)
    for any other host it names, before anything else about the request; unbound keys (and admin) name any
    host as before; only ingest keys can be bound."""
    admin = api.h("admin")
    r = api.client.post(
        "/api/v1/keys", json={"role": "ingest", "name": "rack", "host": "node-*"}, headers=admin
    )
    assert r.status_code == 200 and r.json()["host_glob"] == "node-*", r.text
    bound = {"Authorization": f"Bearer {r.json()['token']}"}
    listed = {k["id"]: k for k in api.client.get("/api/v1/keys", headers=admin).json()["items"]}
    assert listed[r.json()["id"]]["host_glob"] == "node-*"
    assert {k["host_glob"] for i, k in listed.items() if i != r.json()["id"]} == {None}  # the others: unbound
    missing = "/api/v1/agent/captures/cap-0123456789abcdef/deliveries"

    def agent(headers: dict[str, str], host: str) -> tuple[int, int]:
        polled = api.client.get("/api/v1/agent/captures", params={"host": host}, headers=headers)
        reported = api.client.post(missing, json={"host": host, "sessions": []}, headers=headers)
        for x in (polled, reported):
            if x.status_code == 403:
                assert (
                    x.json()["error"]
                    == f"key {r.json()['id']} is bound to hosts 'node-*': it may not name host {host!r}"
                )
        return polled.status_code, reported.status_code

    assert agent(bound, "node-3") == (200, 404)  # its hosts: as any key (no such capture: 404)
    assert agent(bound, "gpu-9") == (403, 403)
    assert agent(bound, "node") == (403, 403)  # the glob matches whole names
    assert agent(api.h("ingest"), "gpu-9") == (200, 404)  # unbound: any host, as before
    assert agent(admin, "gpu-9") == (200, 404)
    # the binding concerns the agent routes; the key ingests as any ingest key (the empty body is the problem)
    assert api.post_events("device", b"", role="ingest").status_code == 400
    assert api.client.post("/api/v1/events/device", content=b"", headers=bound).status_code == 400
    for role in ("read", "operator", "admin"):
        bad = api.client.post(
            "/api/v1/keys", json={"role": role, "name": "x", "host": "node-*"}, headers=admin
        )
        assert bad.status_code == 422 and "only ingest keys" in str(bad.json()), (role, bad.text)
    empty = api.client.post("/api/v1/keys", json={"role": "ingest", "name": "x", "host": ""}, headers=admin)
    assert empty.status_code == 422


def test_keys_lifecycle_and_revocation_is_immediate(api: Api) -> None:
    r = api.client.post("/api/v1/keys", json={"role": "read", "name": "ui"}, headers=api.h("admin"))
    assert r.status_code == 200
    key = r.json()
    assert key["role"] == "read" and key["token"].startswith("gpufl_")
    listed = api.client.get("/api/v1/keys", headers=api.h("admin")).json()["items"]
    assert key["id"] in {k["id"] for k in listed} and all(
        "token" not in k and "hash" not in k for k in listed
    )
    # Stored only as a hash: the token text is nowhere in the store.
    assert all(key["token"] not in str(row) for row in api.store._all("SELECT * FROM api_keys"))
    hdr = {"Authorization": f"Bearer {key['token']}"}
    assert api.client.get("/api/v1/sessions", headers=hdr).status_code == 200
    assert api.client.delete(f"/api/v1/keys/{key['id']}", headers=api.h("admin")).json() == {"deleted": True}
    r = api.client.get("/api/v1/sessions", headers=hdr)
    assert r.status_code == 401 and r.json()["error"] == "token revoked"
    assert api.client.delete(f"/api/v1/keys/{key['id']}", headers=api.h("admin")).status_code == 404
    bad = api.client.post("/api/v1/keys", json={"role": "root", "name": "x"}, headers=api.h("admin"))
    assert bad.status_code == 422 and "error" in bad.json()


def test_public_endpoints_ui_openapi_metrics(api: Api) -> None:
    assert api.client.get("/healthz").json()["status"] == "ok"
    root = api.client.get("/")
    assert root.status_code == 200 and "text/html" in root.headers["content-type"]
    assert api.client.get("/api/v1/nothing-here").status_code == 404
    doc = api.client.get("/api/v1/openapi.json").json()
    assert "/api/v1/sessions/{session_id}/kernels/summary" in doc["paths"]
    _, recs = _session("m")
    api.post_events("device", ev.encode_lines(recs) + b"garbage\n")
    text = api.client.get("/metrics", headers=api.h("read")).text
    assert re.search(r'gpufl_ingest_records_total\{outcome="stored",stream="device"\} 53\.0', text)
    assert re.search(r'gpufl_ingest_rejected_records_total\{reason="malformed"\} 1\.0', text)
    assert "gpufl_http_request_seconds_bucket" in text


def test_spa_served_when_built(
    api: Api, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpufl.backend import app as app_mod

    static = tmp_path_factory.mktemp("static")
    (static / "index.html").write_text("<html>spa</html>")
    (static / "assets").mkdir()
    (static / "assets" / "app.js").write_text("console.log(1)")
    monkeypatch.setattr(app_mod, "STATIC_DIR", static)
    assert api.client.get("/assets/app.js").text == "console.log(1)"
    assert api.client.get("/sessions/abc/timeline").text == "<html>spa</html>"  # client-side route
    assert api.client.get("/../../etc/passwd").text == "<html>spa</html>"
    assert api.client.get("/api/v1/unknown").status_code == 404


def test_kernel_summary_quantiles_are_exact_at_small_n_and_say_so(api: Api) -> None:
    """#25: FillFunctor<long> ran 992 and 1,024 ns and the sketch said p95 = 992 ns, below its mean. Names
    seen at most EXACT_MAX_COUNT times get quantiles from every duration (linear interpolation between closest
    ranks); more frequent ones keep the sketch, and each row says which."""
    from gpufl.backend.store.activity import EXACT_MAX_COUNT

    f = SessionFactory("qs1")
    recs: list[ev.Record] = [
        f.start("device"),
        f.launch(1, "fill"),
        f.launch(2, "gemm"),
        f.launch(3, "bimodal"),
    ]
    t = f.t0
    for dur in (992, 1024):
        recs.append(f.kernel(1, t, dur))
        t += 10_000
    for _ in range(EXACT_MAX_COUNT + 1):
        recs.append(f.kernel(2, t, 5_000))
        t += 10_000
    durs = [1_000] * 216 + [45_000] * 12  # 12 of 228 near 45 µs: the 95th percentile sits on the slow mode
    for dur in durs:
        recs.append(f.kernel(3, t, dur))
        t += 100_000
    for i in range(0, len(recs), 5000):
        r = api.post_events("device", ev.encode_lines(recs[i : i + 5000]))
        assert r.status_code == 200 and r.json()["rejected"] == [], r.text
    items = {i["name"]: i for i in api.get("/sessions/qs1/kernels/summary").json()["items"]}
    fill = items["fill"]
    assert fill["quantiles"] == "exact"
    assert fill["p50_ns"] == 1008.0 and fill["p95_ns"] == pytest.approx(1022.4)
    assert fill["min_ns"] <= fill["p50_ns"] <= fill["p95_ns"] <= fill["max_ns"]
    bi = items["bimodal"]
    assert bi["quantiles"] == "exact" and bi["p50_ns"] == 1_000.0
    pos = 0.95 * (len(durs) - 1)  # rank 215.65: between the last fast one and the first slow one
    assert bi["p95_ns"] == pytest.approx(1_000 + (45_000 - 1_000) * (pos - int(pos)))
    gemm = items["gemm"]
    assert gemm["count"] == EXACT_MAX_COUNT + 1 and gemm["quantiles"] == "sketch"
    assert gemm["p50_ns"] == pytest.approx(5_000, rel=0.01)
