"""The contract's limits end to end on both engines (issue #16): a value the store can't compute with or an
id the API can't address is rejected per line with its reason; a value at the edge of a limit is stored and
every route that reads it answers 200."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import msgspec.inspect as mi
import pytest

from gpufl.backend.store import SqlStore
from gpufl.contract import events as ev

from . import contract_data as cd
from .conftest import Api
from .factory import SessionFactory


def _lines(recs: list[ev.Record]) -> list[bytes]:
    return [ev.encode(r) for r in recs]


def test_api_lead_past_its_range_is_rejected_and_the_kernel_routes_answer(api: Api) -> None:
    """The reported defect: ``api_lead_ns`` = -2^63 fits int64, was stored, and the kernel's detail route
    (which computes ``start_ns - api_lead_ns``) answered 500 from then on."""
    f = SessionFactory("lead")
    head = [f.start("device"), f.launch(1, "k")]
    good = f.kernel(1, 100, 50, api_lead_ns=30)
    bad = json.dumps({**ev.to_builtins(f.kernel(1, 200, 50)), "api_lead_ns": -(2**63)}).encode()
    body = b"\n".join([*_lines([*head, good]), bad])
    r = api.post_events("device", body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["stored"] == 3
    assert [x["index"] for x in out["rejected"]] == [3]
    assert "api_lead_ns" in out["rejected"][0]["reason"]
    items = api.get("/sessions/lead/kernels").json()["items"]
    assert [i["seq"] for i in items] == [good.seq]
    for i in items:
        d = api.get(f"/sessions/lead/kernels/{i['id']}")
        assert d.status_code == 200, d.text
        assert d.json()["api_start_ns"] == good.start_ns - 30


# Ids a route can't carry: a "/" splits the path, "." and ".." are dot-segments that URL normalisation
# removes, "%" and " " and non-ASCII change under percent-encoding, and 65+ characters exceed the routes'
# path limit. "." also splits segment file names (host.app.session.stream.index.log).
BAD_IDS = ["a/b", "/", ".", "..", "a.b", "a b", "a%2Fb", "a?b", "a#b", "é", "x" * 65, "a\\b", "a:b", ""]
# At the edge of the rule: one character, 64 characters, every kind of character it allows.
EDGE_IDS = ["-", "_", "0", "z", "-" + "A" * 30 + "_Zaz09" + "9" * 26 + "-"]


@pytest.mark.parametrize("sid", BAD_IDS, ids=[repr(s) for s in BAD_IDS])
def test_a_session_id_the_api_cannot_address_is_rejected(api: Api, sid: str) -> None:
    f = SessionFactory(sid)
    body = b"\n".join(_lines([f.start("device"), f.launch(1, "k"), f.kernel(1, 0, 10)]))
    r = api.post_events("device", body)
    assert r.status_code == 400, r.text
    out = r.json()
    assert out["stored"] == 0 and [x["index"] for x in out["rejected"]] == [0, 1, 2]
    assert all("session_id" in x["reason"] for x in out["rejected"]), out
    assert api.get("/sessions").json()["items"] == []


def test_session_ids_at_the_edge_of_the_rule_are_stored_listed_read_and_deleted(api: Api) -> None:
    assert len(EDGE_IDS[-1]) == 64
    for sid in EDGE_IDS:
        f = SessionFactory(sid)
        recs = [f.start("device"), f.launch(1, "k"), f.kernel(1, 0, 10)]
        r = api.post_events("device", b"\n".join(_lines(recs)))
        assert r.status_code == 200 and r.json() == {"stored": 3, "duplicates": 0, "rejected": []}, r.text
    listed = {s["session_id"] for s in api.get("/sessions", params={"limit": 100}).json()["items"]}
    assert listed == set(EDGE_IDS)
    for sid in EDGE_IDS:
        # quote() leaves every character the rule allows as it is: the id is the path segment.
        assert quote(sid, safe="") == sid
        d = api.get(f"/sessions/{sid}")
        assert d.status_code == 200 and d.json()["session_id"] == sid, d.text
        ks = api.get(f"/sessions/{sid}/kernels").json()["items"]
        assert len(ks) == 1
        assert api.get(f"/sessions/{sid}/kernels/{ks[0]['id']}").status_code == 200
        r = api.client.delete(f"/api/v1/sessions/{sid}", headers=api.h("admin"))
        assert r.status_code == 200, r.text
        assert api.get(f"/sessions/{sid}").status_code == 404
    assert api.get("/sessions").json()["items"] == []


def _by_stream(docs: list[dict[str, Any]]) -> dict[str, bytes]:
    out: dict[str, list[bytes]] = {s: [] for s in ev.STREAMS}
    for d in docs:
        out[d["stream"]].append(json.dumps(d).encode())
    return {s: b"\n".join(ls) for s, ls in out.items() if ls}


def _full_session(sid: str, bound: cd.Bound) -> list[dict[str, Any]]:
    """Every record type with every field set and every number at ``bound``, plus the records whose
    arithmetic reaches furthest: the longest kernel, copy and scope, launch leads both ways from both ends
    of the window, sums of the largest counts and measurements."""
    lo, hi, span = ev.TIME_MIN_NS, ev.TIME_MAX_NS, ev.SPAN_MAX_NS
    seq = {s: 1 for s in ev.STREAMS}
    docs: list[dict[str, Any]] = []

    def add(cls: type[ev.Record], **kw: Any) -> None:
        doc = cd.full_record(cls, sid, 0, bound)
        doc.update(kw)
        if cls is not ev.SessionStart:
            doc["seq"] = seq[doc["stream"]]
            seq[doc["stream"]] += 1
        docs.append(doc)

    for stream in ev.STREAMS:
        add(ev.SessionStart, stream=stream)
    for cls in ev.EVENT_TYPES:
        if cls not in (ev.SessionStart, ev.SessionEnd):
            add(cls)
    edge = 0 if bound == "min" else ev.I64_MAX
    for start, end, lead in ((lo, hi, span), (lo, hi, -span), (hi, hi, -span), (lo, lo, span)):
        add(ev.Kernel, start_ns=start, end_ns=end, api_lead_ns=lead, api_start_ns=None, api_dur_ns=span)
        add(ev.Memcpy, start_ns=start, end_ns=end, api_lead_ns=lead, api_start_ns=None)
    add(ev.Memset, start_ns=lo, end_ns=hi)
    for inst, (b, e) in enumerate(((lo, hi), (hi, lo)), start=1):
        add(ev.ScopeBegin, inst=edge - inst if edge else inst, ts_ns=b)
        add(ev.ScopeEnd, inst=edge - inst if edge else inst, ts_ns=e)
    add(ev.ProfileSample, ts_ns=hi)
    for ts in (lo, hi, hi):
        add(ev.SystemSample, ts_ns=ts)
    for stream in ev.STREAMS:
        add(ev.SessionEnd, stream=stream)
    return docs


EVERY_ROUTE = (
    "",
    "/kernels",
    "/kernels/summary",
    "/memcpy",
    "/memsets",
    "/scopes",
    "/scopes/instances",
    "/system",
    "/deep",
)


@pytest.mark.parametrize(("sid", "bound"), [("-", "min"), (EDGE_IDS[-1], "max")])
def test_numbers_at_their_bounds_are_stored_and_every_route_answers(
    api: Api, sid: str, bound: cd.Bound
) -> None:
    lo, hi, span = ev.TIME_MIN_NS, ev.TIME_MAX_NS, ev.SPAN_MAX_NS
    docs = _full_session(sid, bound)
    for stream, body in _by_stream(docs).items():
        r = api.post_events(stream, body)
        assert r.status_code == 200 and r.json()["rejected"] == [], r.text
        assert r.json()["stored"] == body.count(b"\n") + 1
    base = f"/sessions/{sid}"

    def ok(path: str, **params: Any) -> Any:
        r = api.get(base + path, params=params)
        assert r.status_code == 200, (path, params, r.text)
        return r.json()

    assert [s["session_id"] for s in api.get("/sessions").json()["items"]] == [sid]
    assert api.get("/hosts").status_code == 200
    for path in EVERY_ROUTE:
        ok(path)
    whole = {"start_ns": lo, "end_ns": hi + 1}
    for path in ("/kernels", "/memcpy", "/memsets", "/scopes/instances"):
        ok(path, **whole)
        ok(path, start_ns=hi, end_ns=hi + 1, limit=1)
        ok(path, start_ns=0, end_ns=ev.I64_MAX)
    ok("/scopes/instances", min_dur_ns=span)
    ok("/kernels", **whole, resolution_ns=span // 10_000)  # the stored levels of detail
    ok("/kernels", start_ns=hi - 1000, end_ns=hi + 1, resolution_ns=1)  # the raw kernels
    # copies and launch calls: from the stored levels (a power of two) and from the raw rows; a call's exit
    # (entry + duration) may pass int64 here
    for path in ("/memory/timeline", "/launches"):
        ok(path, **whole, resolution_ns=1 << 48)
        ok(path, **whole, resolution_ns=span // 10_000)
    ok("/system", **whole, points=10_000)
    ok("/system", start_ns=hi, end_ns=hi + 1)
    # The filters, at the edge values the records carry.
    k0 = next(d for d in docs if d["type"] == "kernel")
    path_id = next(d for d in docs if d["type"] == "scope_begin")["path_id"]
    filters = {"device": k0["device_id"], "stream": k0["stream_id"], "scope": path_id}
    for path in ("/kernels", "/memcpy", "/memsets"):
        ok(path, **filters)
    ok("/kernels", name="x")
    ok("/system", device=k0["device_id"], metric="power_mw")
    page = ok("/kernels", limit=1)
    assert page["next_cursor"]
    ok("/kernels", limit=1, cursor=page["next_cursor"])
    kernels = ok("/kernels", limit=10_000)["items"]
    sent = [d for d in docs if d["type"] == "kernel"]
    assert len(kernels) == len(sent)
    for k in kernels:
        d = ok(f"/kernels/{k['id']}")
        doc = next(x for x in sent if x["seq"] == k["seq"])
        assert d["dur_ns"] == doc["end_ns"] - doc["start_ns"]
        assert d["api_start_ns"] == ev.api_start_ns(ev.decode(json.dumps(doc)))  # type: ignore[arg-type]
    for b in (d for d in docs if d["type"] == "scope_begin"):
        named = any(d["type"] == "dict" and d["kind"] == "scope" and d["id"] == b["path_id"] for d in docs)
        r = api.get(f"{base}/deep/scopes/{b['path_id']}")
        assert r.status_code == (200 if named else 404), r.text  # 404: a path without its dict entry
    deep = ok("/deep")
    assert deep["has_data"] and deep["kernels"] and deep["ranges"]
    for k in deep["kernels"]:
        ok("/deep/lines", kernel=k["kernel"])
    detail = ok("")
    assert detail["totals"]["kernels"] == len(sent)
    assert detail["totals"]["gpu_time_ns"] == sum(d["end_ns"] - d["start_ns"] for d in sent)
    r = api.client.delete(f"/api/v1{base}", headers=api.h("admin"))
    assert r.status_code == 200, r.text
    assert api.get(base).status_code == 404


def test_the_engines_own_parse_rejects_what_the_record_path_rejects(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of kernels only is parsed by DuckDB itself (``SqlStore.ingest_json``), which re-checks in SQL
    what ``gpufl.contract.events.check`` adds to the decoder: the session id's form must be among those checks."""
    calls: list[bool] = []
    real = SqlStore.ingest_json

    def spy(self: SqlStore, *a: Any, **kw: Any) -> Any:
        out = real(self, *a, **kw)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(SqlStore, "ingest_json", spy)
    for sid in ("a.b", "a:b", "é"):
        f = SessionFactory(sid)
        body = b"\n".join(_lines([f.kernel(1, i * 10, 5) for i in range(50)]))
        assert b"\\" not in body  # no escapes: the engine may parse it
        r = api.post_events("device", body)
        assert r.status_code == 400 and len(r.json()["rejected"]) == 50, r.text
        assert all("session_id" in x["reason"] for x in r.json()["rejected"])
    f = SessionFactory("-")
    ks = [json.loads(ev.encode(f.kernel(1, i * 10, 5))) for i in range(50)]
    ks[20]["api_lead_ns"] = -(2**63)
    r = api.post_events("device", b"\n".join(json.dumps(k).encode() for k in ks))
    assert r.status_code == 200 and r.json()["stored"] == 49, r.text
    assert [x["index"] for x in r.json()["rejected"]] == [20]
    body = b"\n".join(_lines([f.kernel(1, 1000 + i * 10, 5) for i in range(50)]))
    assert api.post_events("device", body).json()["stored"] == 50
    # On DuckDB the engine's path was taken each time: it refused the four bad batches, stored the good one.
    assert calls == ([False, False, False, False, True] if api.store.json_stage else [])


def test_a_number_past_its_range_anywhere_is_rejected_per_line_with_its_field(api: Api) -> None:
    """Every number of every record type, nested ones included, just below and just above its range: each
    such line is rejected with a reason naming the field, and the valid lines around them are stored."""
    good = _full_session("r", "min")
    bad: list[tuple[str, dict[str, Any]]] = []
    for cls in ev.EVENT_TYPES:
        doc = cd.full_record(cls, "r", 10**6, "min")
        for path, field, t in cd.numeric_leaves(mi.type_info(cls), doc):
            for v in cd.outside(t):
                d = json.loads(json.dumps(doc))
                cd.put(d, path, v)
                bad.append((field, d))
    assert len(bad) > 200
    for stream in ev.STREAMS:
        ours = [(f, d) for f, d in bad if d["stream"] == stream]
        valid = [d for d in good if d["stream"] == stream]
        lines = [json.dumps(d).encode() for d in valid] + [json.dumps(d).encode() for _, d in ours]
        r = api.post_events(stream, b"\n".join(lines))
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["stored"] == len(valid)
        assert [x["index"] for x in out["rejected"]] == list(range(len(valid), len(lines)))
        for (field, d), x in zip(ours, out["rejected"], strict=True):
            assert field in x["reason"] and ("Expected" in x["reason"] or "seq" in x["reason"]), (d, x)
