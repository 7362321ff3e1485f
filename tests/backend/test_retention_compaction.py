"""Retention (age window, size cap) and compaction of partial aggregates, on both engines."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from gpufl import events as ev
from gpufl.backend import retention
from gpufl.backend.app import create_app
from gpufl.backend.ingest import ingest_raws
from gpufl.backend.store import SqlStore

from .conftest import Api, make_settings
from .factory import SessionFactory
from .helpers import feed

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
    assert retention.prune(store, 30, None) == {"old": "age"}
    assert {s for s, _, _ in store.session_usage()} == {"mid", "new"}
    assert retention.prune(store, 30, sizes["new"]) == {"mid": "size"}
    assert [s["session_id"] for s in store.list_sessions()[0]] == ["new"]
    assert store._one("SELECT count(*) FROM kernels WHERE session_id IN ('old', 'mid')") == (0,)


def test_prune_endpoint_and_background_job(store: SqlStore) -> None:
    now = time.time_ns()
    _session(store, "stale", now - 10 * DAY, 5)
    app = create_app(make_settings(retention_days=5, retention_interval_s=0.05), store, start_jobs=True)
    with TestClient(app):
        deadline = time.monotonic() + 10
        while store.session_exists("stale") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not store.session_exists("stale")  # removed by the background job
    app2 = create_app(make_settings(retention_days=5), store, start_jobs=False)
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
            store.kernel_timeline("cmp", f.t0, t1, 1 << 24),
            store.kernel_timeline("cmp", f.t0, t1, 1 << 20),
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
