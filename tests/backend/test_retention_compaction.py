"""Retention (age window, size cap) and compaction of partial aggregates, on both engines."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from gpufl.backend import retention
from gpufl.backend.app import create_app
from gpufl.backend.ingest import ingest_raws
from gpufl.backend.store import SqlStore
from gpufl.contract import events as ev

from .conftest import Api, make_settings
from .factory import SessionFactory
from .helpers import feed, session_page, timeline

DAY = 86400 * 10**9


def _session(store: SqlStore, sid: str, t0: int, n: int) -> None:
    f = SessionFactory(sid, t0=t0)
    feed(store, [f.start("device"), f.launch(1, "k"), *(f.kernel(1, i * 100, 50) for i in range(n))])


def test_plan_orders_by_age_then_size() -> None:
    now = 100 * DAY
    usage = [("a", 10 * DAY, 500), ("b", 95 * DAY, 300), ("c", 98 * DAY, 200), ("d", 99 * DAY, 100)]
    assert retention.plan(usage, 30, None, now) == {"a": "age"}
    # Over a 350-byte cap after the age cut: b (oldest left) goes, leaving c + d = 300.
    assert retention.plan(usage, 30, 350, now) == {"a": "age", "b": "size"}
    assert retention.plan(usage, None, 10_000, now) == {}
    assert retention.plan(usage, None, 0 + 1, now) == {"a": "size", "b": "size", "c": "size", "d": "size"}


def test_prune_deletes_whole_sessions_past_window_and_over_cap(store: SqlStore) -> None:
    now = time.time_ns()
    _session(store, "old", now - 40 * DAY, 10)
    _session(store, "mid", now - 2 * DAY, 30)
    _session(store, "new", now - 1 * DAY, 30)
    sizes = {sid: b for sid, _, b in store.session_usage()}
    assert set(sizes) == {"old", "mid", "new"} and all(b > 0 for b in sizes.values())
    # quiet_s=0: these sessions were all received just now, which the default quiet period would protect.
    assert retention.prune(store, 30, None, quiet_s=0) == {"old": "age"}
    assert {s for s, _, _ in store.session_usage()} == {"mid", "new"}
    assert retention.prune(store, 30, sizes["new"], quiet_s=0) == {"mid": "size"}
    assert [s["session_id"] for s in session_page(store)[0]] == ["new"]
    assert store._one("SELECT count(*) FROM kernels WHERE session_id IN ('old', 'mid')") == (0,)


def test_prune_endpoint_and_background_job(store: SqlStore) -> None:
    now = time.time_ns()
    _session(store, "stale", now - 10 * DAY, 5)
    app = create_app(
        make_settings(retention_days=5, retention_interval_s=0.05, retention_quiet_s=0),
        store,
        start_jobs=True,
    )
    with TestClient(app):
        deadline = time.monotonic() + 10
        while store.session_exists("stale") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not store.session_exists("stale")  # removed by the background job
    app2 = create_app(make_settings(retention_days=5, retention_quiet_s=0), store, start_jobs=False)
    with TestClient(app2) as client:
        api = Api(client, store, app2)
        _session(store, "stale3", now - 10 * DAY, 5)
        r = client.post("/api/v1/admin/prune", headers=api.h("admin"))
        assert r.status_code == 200 and r.json()["reasons"].get("stale3") == "age"
        assert client.post("/api/v1/admin/prune", headers=api.h("read")).status_code == 403


def test_compaction_keeps_every_answer_and_folds_rows(store: SqlStore) -> None:
    f = SessionFactory("cmp")
    recs: list[ev.Record] = [f.start("device"), f.start("scope"), f.scope_path(1, "step")]
    recs += [f.launch(1, "a"), f.launch(2, "b"), f.scope_begin(1, 1, 0)]
    recs += [f.kernel(1 + i % 2, i * 300_000, 1000 + (i * 7) % 500, scope_inst=1) for i in range(2000)]
    dev = [ev.encode(r) for r in recs if r.stream == "device"]
    scope = [ev.encode(r) for r in recs if r.stream == "scope"]
    ingest_raws(store, "scope", scope)
    for i in range(0, len(dev), 100):  # 21 batches: 21 partial rows per key
        ingest_raws(store, "device", dev[i : i + 100])

    def answers() -> tuple[object, ...]:
        t1 = f.t0 + 2000 * 300_000
        return (
            store.kernel_summary("cmp"),
            timeline(store, "cmp", f.t0, t1, 1 << 24),
            timeline(store, "cmp", f.t0, t1, 1 << 20),
            store.scope_tree("cmp"),
            store.session_detail("cmp"),
            store.list_sessions()[0],
        )

    before = answers()
    rows_before = store._one("SELECT count(*) FROM kernel_stats WHERE session_id = 'cmp'")
    store.compact("cmp")
    assert store._one("SELECT count(*) FROM kernel_stats WHERE session_id = 'cmp'") == (2,)
    assert rows_before is not None and rows_before[0] > 2
    assert store._one("SELECT count(*) FROM session_streams WHERE session_id = 'cmp'") == (2,)
    after = answers()
    assert after[:5] == before[:5]
    assert after[5] == before[5]


# ---- retention against sessions still arriving (issue #16) ----------------------------------------------
#
# Seen in the field: the size policy deleted a session 7 times while it was still arriving, and what came
# after each deletion was stored as a fragment (203 of 200,006 records, no session_start) that nobody
# noticed. Retention now spares a session that received records within the quiet period; a session it did
# delete is remembered (a tombstone), its late records are refused per line with code "pruned", and only a
# re-delivery that says so (X-Gpufl-Redeliver: 1) and brings the session_start re-creates it.


def _whole_session(sid: str, n: int, t0: int | None = None) -> tuple[SessionFactory, list[ev.Record]]:
    """A complete two-stream session: starts, dict entries, n kernels, a scope, ends."""
    f = SessionFactory(sid, t0=time.time_ns() - DAY if t0 is None else t0)
    recs: list[ev.Record] = [
        f.start("device"),
        f.launch(1, "gemm"),
        f.start("scope"),
        f.scope_path(1, "step"),
    ]
    recs += [f.scope_begin(1, 1, 0)]
    recs += [f.kernel(1, i * 1000, 400 + i % 7, scope_inst=1) for i in range(n)]
    recs += [f.scope_end(1, n * 1000), f.end("device", f.t0 + n * 1000), f.end("scope", f.t0 + n * 1000)]
    return f, recs


def _post(api: Api, recs: list[ev.Record], **headers: str) -> dict[str, dict[str, object]]:
    """Each stream's records as one NDJSON batch (in stream order); the JSON answers, with the status."""
    out = {}
    for stream in ("device", "scope", "system"):
        lines = [ev.encode(r) for r in recs if r.stream == stream]
        if lines:
            r = api.post_events(stream, b"\n".join(lines) + b"\n", **headers)
            out[stream] = {**r.json(), "status": r.status_code}
    return out


def test_plan_spares_sessions_inside_the_quiet_period() -> None:
    now = 100 * DAY
    usage = [("a", 10 * DAY, 500), ("b", 95 * DAY, 300), ("c", 98 * DAY, 200), ("d", 99 * DAY, 100)]
    # "a" is past the age window but still receiving: kept. The size cap is still honoured by the others
    # (1,100 bytes over a 350 cap with "a" kept: b, c and d go, leaving a's 500, as close as it can get).
    assert retention.plan(usage, 30, None, now, busy={"a"}) == {}
    assert retention.plan(usage, None, 350, now, busy={"a"}) == {"b": "size", "c": "size", "d": "size"}
    # "b" receiving: the next oldest go in its place.
    assert retention.plan(usage, 30, 350, now, busy={"b"}) == {"a": "age", "c": "size", "d": "size"}


def test_a_session_still_receiving_records_is_not_pruned(store: SqlStore) -> None:
    old = time.time_ns() - 40 * DAY
    _session(store, "idle", old, 10)
    time.sleep(1.2)
    f = SessionFactory("live", t0=old)  # as old as "idle": both policies would delete it
    feed(store, [f.start("device"), f.launch(1, "k"), *(f.kernel(1, i * 100, 50) for i in range(10))])
    assert retention.prune(store, 30, 1, quiet_s=1.0) == {"idle": "age"}
    assert store.session_exists("live") and not store.session_exists("idle")
    for _ in range(3):  # it keeps arriving: kept every time, however far over the cap
        feed(store, [f.kernel(1, 10**6, 50)])
        assert retention.prune(store, 30, 1, quiet_s=1.0) == {}
    time.sleep(1.2)  # quiet now: pruned like any other
    assert retention.prune(store, 30, 1, quiet_s=1.0) == {"live": "age"}


def test_the_default_quiet_period_protects_a_session_just_received(store: SqlStore) -> None:
    """Production defaults (1 h, GPUFL_RETENTION_QUIET_S): an old session that has just arrived (a replay,
    an agent catching up) is not deleted under it by the admin endpoint or the background job."""
    assert make_settings().retention_quiet_s == 3600
    _session(store, "replayed", time.time_ns() - 40 * DAY, 10)
    app = create_app(make_settings(retention_days=5, max_store_bytes=1), store, start_jobs=False)
    with TestClient(app) as client:
        api = Api(client, store, app)
        r = client.post("/api/v1/admin/prune", headers=api.h("admin"))
        assert r.status_code == 200 and r.json()["deleted"] == []
    assert store.session_exists("replayed")
    assert retention.prune(store, 5, 1) == {}  # the function's default is the same hour


def test_late_records_of_a_pruned_session_are_refused(api: Api) -> None:
    f, recs = _whole_session("gone", 100)
    assert _post(api, recs)["device"]["status"] == 200
    assert retention.prune(api.store, None, 1, quiet_s=0) == {"gone": "size"}
    assert api.store.is_pruned("gone") and not api.store.session_exists("gone")
    late = f.kernel(1, 10**6, 50)
    r = api.post_events("device", ev.encode(late) + b"\n")
    assert r.status_code == 400, r.text  # every record refused: nothing usable
    (rej,) = r.json()["rejected"]
    assert (rej["index"], rej["seq"], rej["code"]) == (0, late.seq, "pruned")
    assert "deleted by retention" in rej["reason"] and "gone" in rej["reason"]
    assert not api.store.session_exists("gone")  # no fragment
    # Per line: a batch that mixes it with a live session stores the live session's records.
    g = SessionFactory("alive")
    mixed = [g.start("device"), f.kernel(1, 2 * 10**6, 50), g.launch(1, "k"), g.kernel(1, 0, 10)]
    r = api.post_events("device", b"\n".join(map(ev.encode, mixed)) + b"\n")
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 3
    assert [(x["index"], x["code"]) for x in r.json()["rejected"]] == [(1, "pruned")]
    # The same through the Kafka bridge's path (and the record-by-record path a bad record forces).
    res = ingest_raws(api.store, "device", [ev.encode(f.kernel(1, 3 * 10**6, 50)), b'{"type": "kernel"'])
    assert [(x.index, x.code) for x in res.rejected] == [(0, "pruned"), (1, "invalid")]
    assert not api.store.session_exists("gone")
    metrics = api.client.get("/metrics", headers=api.h("read")).text  # the two HTTP refusals
    assert 'gpufl_ingest_rejected_records_total{reason="pruned"} 2.0' in metrics


def test_marked_redelivery_restores_the_whole_session(api: Api) -> None:
    f, recs = _whole_session("back", 300)
    _post(api, recs)
    before = api.get("/sessions/back").json()
    kernels_before = api.get("/sessions/back/kernels", params={"limit": 1000}).json()
    assert before["totals"]["kernels"] == 300
    assert retention.prune(api.store, None, 1, quiet_s=0) == {"back": "size"}

    # Unmarked, even whole: refused (an agent's late records look like this).
    answers = _post(api, recs)
    assert all(a["status"] == 400 and a["stored"] == 0 for a in answers.values()), answers
    # Marked but without the session_start: refused, nothing stored (it would be a fragment).
    no_start = [r for r in recs if not isinstance(r, ev.SessionStart)]
    answers = _post(api, no_start, **{"X-Gpufl-Redeliver": "1"})
    for a in answers.values():
        assert a["status"] == 400 and {x["code"] for x in a["rejected"]} == {"pruned"}  # type: ignore[attr-defined]
        assert "session_start" in a["rejected"][0]["reason"]  # type: ignore[index]
    assert not api.store.session_exists("back")

    # Marked and whole: the tombstone goes with the session_start and the session is as it was.
    answers = _post(api, recs, **{"X-Gpufl-Redeliver": "1"})
    assert all(a["status"] == 200 and a["rejected"] == [] for a in answers.values()), answers
    assert sum(a["stored"] for a in answers.values()) == len(recs)  # type: ignore[misc]
    assert not api.store.is_pruned("back")
    assert api.get("/sessions/back").json() == before
    assert api.get("/sessions/back/kernels", params={"limit": 1000}).json() == kernels_before
    # Restored: records that arrive later are stored again, marked or not.
    late = f.kernel(1, 10**9, 50)
    r = api.post_events("device", ev.encode(late) + b"\n")
    assert r.status_code == 200 and r.json()["stored"] == 1
    # A bad header value is an error, not silently "unmarked".
    r = api.post_events("device", ev.encode(late) + b"\n", **{"X-Gpufl-Redeliver": "yes please"})
    assert r.status_code == 400 and "X-Gpufl-Redeliver" in r.json()["error"]
