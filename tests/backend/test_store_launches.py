"""GET /sessions/{id}/launches on real captures, every engine: the launch-API calls per thread and bucket
(multistream: four launching threads, H100; memcpy_heavy_v3: copies with their calls). Expected values are
recomputed from the capture's records, never typed in."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from gpufl.backend.api.timeline import LaunchTimeline
from gpufl.backend.store import SqlStore
from gpufl.contract import events as ev
from gpufl.export.source import find_sessions

from .conftest import Api
from .helpers import feed

CAPTURES = Path(__file__).resolve().parents[2] / "examples" / "captures"


def _load(store: SqlStore, name: str) -> tuple[str, list[ev.Record]]:
    (s,) = find_sessions(CAPTURES / name).values()
    recs = list(s.records("device"))
    feed(store, recs)
    return s.session_id, recs


def _calls(recs: list[ev.Record]) -> list[tuple[str, ev.Kernel | ev.Memcpy, int, int]]:
    out = []
    for r in recs:
        if isinstance(r, (ev.Kernel, ev.Memcpy)) and r.thread_id is not None:
            a0 = ev.api_start_ns(r)
            if a0 is not None:
                out.append(
                    ("kernel" if isinstance(r, ev.Kernel) else "memcpy", r, a0, a0 + (r.api_dur_ns or 0))
                )
    return out


def test_every_launch_call_is_counted_per_thread_and_bucket(store: SqlStore) -> None:
    sid, recs = _load(store, "multistream")
    calls = _calls(recs)
    assert len({c[1].thread_id for c in calls}) >= 2, "the capture has several launching threads"
    names = {r.id: r.launch.name for r in recs if isinstance(r, ev.DictEntry) and r.launch is not None}
    lo, hi = min(c[2] for c in calls), max(c[3] for c in calls)
    mid = sorted(c[2] for c in calls)[len(calls) // 2]
    # the whole session coarsely, then a window cutting through its busiest part finely
    for w0, w1, width in ((lo, hi + 1, (hi - lo) // 50 + 1), (mid - 2_000_000, mid + 2_000_000, 20_000)):
        got = store.launch_timeline(sid, w0, w1, width)
        want: dict[tuple[int, int], list] = defaultdict(list)
        for c in calls:
            if c[2] < w1 and c[3] >= w0:
                want[(c[1].thread_id, c[2] // width * width)].append(c)  # type: ignore[index]
        assert got["total"] == sum(len(v) for v in want.values()) > 0
        assert [(b["thread_id"], b["t_ns"]) for b in got["buckets"]] == sorted(want)
        for b in got["buckets"]:
            cs = want[(b["thread_id"], b["t_ns"])]
            assert b["count"] == len(cs)
            assert b["busy_ns"] == sum(c[3] - c[2] for c in cs)
            kind, rec, a0, a1 = min(cs, key=lambda c: (-(c[3] - c[2]), c[0], c[1].seq))
            name = names.get(rec.launch_id) if isinstance(rec, ev.Kernel) else rec.copy_kind
            assert b["longest"] == {
                "kind": kind,
                "id": str(rec.seq),
                "corr_id": rec.corr_id,
                "name": name,
                "device_id": rec.device_id,
                "stream_id": rec.stream_id,
                "gpu_start_ns": rec.start_ns,
                "start_ns": a0,
                "end_ns": a1,
            }
    assert store.launch_timeline(sid, lo - 10, lo - 5, 1)["buckets"] == []


def test_copies_bring_their_calls_and_the_route_answers_its_shape(api: Api) -> None:
    (s,) = find_sessions(CAPTURES / "memcpy_heavy_v3").values()
    recs = list(s.records("device"))
    assert api.post_events("device", ev.encode_lines(recs)).status_code == 200
    calls = _calls(recs)
    copies = [c for c in calls if c[0] == "memcpy"]
    assert copies, "the capture's copies carry their API timing"
    lo, hi = min(c[2] for c in calls), max(c[3] for c in calls)
    win = {"start_ns": lo, "end_ns": hi + 1}
    r = api.get(f"/sessions/{s.session_id}/launches", params={**win, "resolution_ns": (hi - lo) // 1000 + 1})
    assert r.status_code == 200
    tl = LaunchTimeline.model_validate(r.json(), strict=True)
    assert tl.total == len(calls)
    got_copies = {b.longest.id: b.longest for b in tl.buckets if b.longest.kind == "memcpy"}
    assert got_copies and all(
        got_copies[str(c[1].seq)].start_ns == c[2] for c in copies if str(c[1].seq) in got_copies
    )
    many = api.get(
        f"/sessions/{s.session_id}/launches", params={"start_ns": 0, "end_ns": 2**62, "resolution_ns": 1}
    )
    assert many.status_code == 422
    assert api.get("/sessions/nope/launches", params={**win, "resolution_ns": 1}).status_code == 404
    # The copy's own row says how it was called (the copy inspector's mode, thread and call timing).
    page = api.get(f"/sessions/{s.session_id}/memcpy", params={"limit": 1000}).json()["items"]
    by_seq = {str(c[1].seq): c[1] for c in copies}
    assert {p["id"] for p in page} >= set(by_seq)
    for p in page:
        rec = by_seq.get(p["id"])
        if rec is not None:
            assert (p["mode"], p["thread_id"], p["api_lead_ns"], p["api_dur_ns"]) == (
                rec.mode,
                rec.thread_id,
                rec.api_lead_ns,
                rec.api_dur_ns,
            )
    assert {p["mode"] for p in page} == {"async"}, "the v3 capture's copies are all cudaMemcpyAsync"
