"""``GET /sessions/{id}/export``: a stored session exported from the store equals the same session exported
from its log files (every committed capture, both stores): the same tracks, slices, counters and flows, as
Perfetto's own definitions read them; JSON the same way; a missing session is 404, the read role needed."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from gpufl.export import chrome_json, perfetto
from gpufl.export.source import find_sessions

from .conftest import Api

CAPTURES = sorted((Path(__file__).resolve().parents[2] / "examples" / "captures").iterdir())


def _ingest(api: Api, capture: Path) -> str:
    (session,) = find_sessions(capture).values()
    for stream, paths in session.segments.items():
        lines = [ln for p in paths for ln in p.read_bytes().splitlines() if ln.strip()]
        for i in range(0, len(lines), 2000):
            r = api.post_events(stream, b"\n".join(lines[i : i + 2000]))
            assert r.status_code == 200 and r.json()["rejected"] == [], r.text
    return session.session_id


def _content(data: bytes) -> Counter[tuple[Any, ...]]:
    """A trace's content, independent of packet order and track uuids: every slice (track path, name,
    start, end, flows by correlation id, annotations), every counter value, every track."""
    trace = pb.Trace()
    trace.ParseFromString(data)
    tracks: dict[int, Any] = {}
    names: dict[int, str] = {}
    for p in trace.packet:
        for n in p.interned_data.event_names:
            names[n.iid] = n.name
        if p.HasField("track_descriptor"):
            tracks[p.track_descriptor.uuid] = p.track_descriptor

    def path(uuid: int) -> tuple[str, ...]:
        d = tracks[uuid]
        own = d.name or d.thread.thread_name or d.process.process_name
        return (*path(d.parent_uuid), own) if d.parent_uuid else (own,)

    out: Counter[tuple[Any, ...]] = Counter()
    open_: dict[int, list[tuple[Any, ...]]] = {}
    for p in trace.packet:
        if not p.HasField("track_event"):
            continue
        e = p.track_event
        if e.type == pb.TrackEvent.TYPE_SLICE_BEGIN:
            ann = tuple(sorted((a.name, str(a).replace("\n", " ")) for a in e.debug_annotations))
            open_.setdefault(e.track_uuid, []).append(
                (
                    path(e.track_uuid),
                    names[e.name_iid],
                    p.timestamp,
                    tuple(e.flow_ids),
                    tuple(e.terminating_flow_ids),
                    ann,
                )
            )
        elif e.type == pb.TrackEvent.TYPE_SLICE_END:
            out[(*open_[e.track_uuid].pop(), p.timestamp)] += 1
        elif e.type == pb.TrackEvent.TYPE_COUNTER:
            out[(path(e.track_uuid), p.timestamp, e.double_counter_value)] += 1
        elif e.type == pb.TrackEvent.TYPE_INSTANT:
            out[(path(e.track_uuid), names[e.name_iid], p.timestamp)] += 1
    return out


@pytest.mark.parametrize("capture", CAPTURES, ids=[c.name for c in CAPTURES])
def test_the_stored_session_exports_as_its_logs_do(api: Api, capture: Path) -> None:
    sid = _ingest(api, capture)
    (logs,) = find_sessions(capture).values()
    from_logs = io.BytesIO()
    counts = perfetto.export(logs, from_logs)
    r = api.get(f"/sessions/{sid}/export")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-protobuf"
    assert f'filename="{sid}.pftrace"' in r.headers["content-disposition"]
    mine, theirs = _content(r.content), _content(from_logs.getvalue())
    assert sum(mine.values()) > counts.kernels
    assert mine == theirs

    j = api.get(f"/sessions/{sid}/export", params={"format": "chrome-json"})
    assert j.status_code == 200 and j.headers["content-type"] == "application/json"
    want = io.StringIO()
    chrome_json.export(logs, want)
    got_events, want_events = json.loads(j.content)["traceEvents"], json.loads(want.getvalue())["traceEvents"]
    key = lambda e: json.dumps(e, sort_keys=True)  # noqa: E731
    assert sorted(map(key, got_events)) == sorted(map(key, want_events))


def test_unknown_session_is_404_and_the_read_role_is_needed(api: Api) -> None:
    assert api.get("/sessions/nosuchsession/export").status_code == 404
    assert api.client.get("/api/v1/sessions/nosuchsession/export").status_code == 401
    assert api.get("/sessions/x/export", params={"format": "xml"}).status_code == 422
