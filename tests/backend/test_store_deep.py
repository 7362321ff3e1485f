"""store/deep.py on both engines: divergence, stall histograms and ranges per session, scope path, instance,
kernel and source line, over the structural records of ``deep_records`` (hand-checkable arithmetic, not
measured data); a profile_range round-trips through the export; a store from before migration 7 gets its
table."""

from __future__ import annotations

import pytest

from gpufl.backend.store import NotFound, SqlStore, open_store
from gpufl.contract import events as ev

from . import deep_records as D
from .helpers import feed


@pytest.fixture
def deep(store: SqlStore) -> SqlStore:
    feed(store, D.session())
    return store


def _by(items: list[dict], key: str) -> dict:
    return {i[key]: i for i in items}


def test_summary_per_scope_and_kernel(deep: SqlStore) -> None:
    s = deep.deep_summary(D.SID)
    assert s["has_data"]
    ka, kb, old = (_by(s["kernels"], "kernel")[k] for k in ("kA", "kB", "kOld"))
    # kA: 300 warp instructions, 100*32 + 100*16 + 100*16 thread instructions -> 6400/300
    assert (ka["instructions"], ka["thread_instructions"]) == (300.0, 6400.0)
    assert ka["divergence"] == pytest.approx(6400 / 300)
    assert ka["mangled"] == "_Z2kAv"
    assert ka["samples"] == 5
    assert [(x["reason"], x["samples"], x["share"]) for x in ka["stalls"]] == [
        (D.LS, 4, 0.8),
        (D.MATH, 1, 0.2),
    ]
    assert kb["divergence"] == 8.0 and kb["samples"] == 2
    # a pre-v6 sample: named by its string, no SASS figures (null, not 0)
    assert old["samples"] == 1 and old["instructions"] is None and old["divergence"] is None
    # the session: 310 warp instructions (kA 300, kB 10), 6400 + 80 thread instructions; 8 samples kept
    assert s["figures"]["divergence"] == pytest.approx(6480 / 310) and s["figures"]["samples"] == 8
    whole, attn = s["scopes"]  # the session-wide range first
    assert whole["whole_session"] and whole["scope_id"] is None and whole["path"] is None
    assert [k["kernel"] for k in whole["kernels"]] == ["kB"]
    assert whole["ranges"]["ranges"] == 1 and whole["ranges"]["pc_samples"] == 2
    assert (attn["scope_id"], attn["path"], attn["whole_session"]) == (2, "train/attn", False)
    assert attn["divergence"] == pytest.approx(6400 / 300) and attn["samples"] == 6
    assert [k["kernel"] for k in attn["kernels"]] == ["kA", "kOld"]
    assert attn["ranges"] == {
        "ranges": 2, "pc_samples": 7, "pc_dropped": 2, "pc_non_user_samples": None, "pc_buffer_full_ranges": 1,
        "sass_records": 6, "sass_dropped": None, "error_ranges": 1,
    }  # fmt: skip
    t = s["range_totals"]
    assert (t["ranges"], t["pc_samples"], t["pc_dropped"], t["error_ranges"]) == (3, 9, 2, 1)
    assert s["errors"] == [{"error": "pc_sampling: CUPTI_ERROR_INSUFFICIENT_PRIVILEGES", "ranges": 1}]
    assert [(r["scope_inst"], r["path"], r["engines"]) for r in s["ranges"]] == [
        (None, None, ["sass", "pc_sampling"]),
        (10, "train/attn", ["sass", "pc_sampling"]),
        (11, "train/attn", ["sass"]),
    ]
    assert s["ranges"][1]["pc_buffer_full"] is True and not s["ranges_truncated"]
    cut = deep.deep_summary(D.SID, ranges_limit=1)
    assert len(cut["ranges"]) == 1 and cut["ranges_truncated"]


def test_scope_detail_per_instance(deep: SqlStore) -> None:
    d = deep.deep_scope(D.SID, 2)
    assert d["path"] == "train/attn" and d["instances_total"] == 2 and not d["truncated"]
    i10, i11 = d["instances"]
    assert i10["inst"] == 10 and i10["range"]["pc_dropped"] == 2
    # instance 10: kA 100*32 + 100*16 over 200; instance 11: 100*16 over 100
    assert _by(i10["kernels"], "kernel")["kA"]["divergence"] == 24.0
    assert _by(i11["kernels"], "kernel")["kA"]["divergence"] == 16.0
    assert i11["range"]["error"].endswith("INSUFFICIENT_PRIVILEGES")
    # cut to the first instance by start: its own figures, the path's kernels still over both instances
    cut = deep.deep_scope(D.SID, 2, instances_limit=1)
    assert cut["truncated"] and cut["instances_total"] == 2 and [i["inst"] for i in cut["instances"]] == [10]
    assert cut["instances"][0] == i10 and cut["kernels"] == d["kernels"]
    assert deep.deep_scope(D.SID, 1)["kernels"] == []  # "train" itself was not a deep scope
    with pytest.raises(NotFound):
        deep.deep_scope(D.SID, 77)


def test_lines_hot_first(deep: SqlStore) -> None:
    by_line = deep.deep_lines(D.SID, "kA")
    assert by_line["lines_total"] == 2 and not by_line["truncated"]
    l6, l5 = by_line["items"]  # line 6 has 4 samples, line 5 one
    assert (l6["source_file"], l6["source_line"], l6["pc_offset"], l6["pcs"]) == ("a.cu", 6, None, 1)
    assert l6["divergence"] == 16.0 and l6["samples"] == 4 and l6["sample_share"] == 0.8
    assert [x["reason"] for x in l6["stalls"]] == [D.LS, D.MATH]
    assert [(x["reason"], x["share"]) for x in l6["not_issued"]] == [(D.LS_NOT_ISSUED, 0.5)]
    assert l5["divergence"] == 32.0
    assert by_line["divergence"] == pytest.approx(6400 / 300)
    in_scope = deep.deep_lines(D.SID, "kA", scope_id=2, by="pc", limit=1)
    assert in_scope["truncated"] and in_scope["lines_total"] == 2 and in_scope["items"][0]["pc_offset"] == 16
    kb = deep.deep_lines(D.SID, "kB")["items"]  # no line info: the PC is the row
    assert [(x["source_line"], x["pc_offset"]) for x in kb] == [(None, 0)]
    old = deep.deep_lines(D.SID, "kOld")["items"]
    assert [(x["source_file"], x["source_line"]) for x in old] == [("old.cu", 3)]
    with pytest.raises(NotFound):
        deep.deep_lines(D.SID, "kA", scope_id=1)


def test_a_session_without_deep_data(store: SqlStore) -> None:
    from .factory import SessionFactory

    feed(store, [SessionFactory("plain").start("scope")])
    s = store.deep_summary("plain")
    assert not s["has_data"] and s["scopes"] == [] and s["range_totals"]["ranges"] == 0


def test_profile_ranges_round_trip_through_the_export(deep: SqlStore) -> None:
    written = [r for r in D.session() if isinstance(r, ev.ProfileRange)]
    again = [r for r in deep.session_records(D.SID, "scope") if isinstance(r, ev.ProfileRange)]
    assert again == written


def test_a_store_before_migration_7_gets_the_table(tmp_path: object) -> None:
    import duckdb

    path = f"{tmp_path}/v6.duckdb"
    open_store(path).close()
    con = duckdb.connect(path)
    con.execute("DROP TABLE profile_ranges")
    con.execute("DELETE FROM schema_migrations WHERE version = 7")
    con.close()
    store = open_store(path)
    try:
        assert store.schema_version() == 11
        feed(store, D.session())
        assert store.deep_summary(D.SID)["range_totals"]["ranges"] == 3
    finally:
        store.close()
