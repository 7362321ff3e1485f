"""The stored levels of detail of copies, memsets and launch-API calls (``store/lod.py``), every engine, on
real captures: a window's buckets at a stored level answer exactly what the raw rows say (recomputed here from
the capture's records, never typed in), across ingest batches, after compaction, through both ingest paths,
and in a store whose sessions were stored before the levels existed (migration 8's backfill). And the kernel
lanes' tiles coarser than the coarsest stored level (a whole session of hours on one screen), re-bucketed
from it."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gpufl.backend.ingest import ingest_raws
from gpufl.backend.store import SqlStore, lod, open_store
from gpufl.backend.store.lod import LAUNCH_LOD, MEMORY_LOD, stored_span
from gpufl.backend.store.schema import LOD_SHIFTS, SIDE_LOD_SHIFTS
from gpufl.contract import events as ev
from gpufl.export.source import find_sessions

from .conftest import Api

CAPTURES = Path(__file__).resolve().parents[2] / "examples" / "captures"
MS = 1_000_000


def _capture(name: str) -> tuple[str, list[ev.Record]]:
    (s,) = find_sessions(CAPTURES / name).values()
    return s.session_id, list(s.records("device"))


def _feed_in_batches(store: SqlStore, recs: list[ev.Record], size: int) -> None:
    raws = [ev.encode(r) for r in recs]
    for i in range(0, len(raws), size):
        ingest_raws(store, "device", raws[i : i + size])


def _memory_want(recs: list[ev.Record], w0: int, w1: int, width: int) -> list[dict[str, Any]]:
    groups: dict[tuple[int, str, int, int], list[Any]] = defaultdict(list)
    for r in recs:
        if isinstance(r, (ev.Memcpy, ev.Memset)) and r.start_ns < w1 and r.end_ns > w0:
            kind = r.copy_kind if isinstance(r, ev.Memcpy) else "memset"
            groups[(r.start_ns // width * width, kind, r.device_id, r.stream_id)].append(r)
    out = []
    for (t, kind, dev, stream), rs in sorted(groups.items()):
        longest = min(rs, key=lambda r: (-(r.end_ns - r.start_ns), r.seq))
        out.append(
            {
                "t_ns": t,
                "kind": kind,
                "device_id": dev,
                "stream_id": stream,
                "count": len(rs),
                "bytes": sum(r.bytes for r in rs),
                "busy_ns": sum(r.end_ns - r.start_ns for r in rs),
                "longest": {
                    "id": str(longest.seq),
                    "start_ns": longest.start_ns,
                    "end_ns": longest.end_ns,
                    "bytes": longest.bytes,
                },
            }
        )
    return out


def _launch_want(recs: list[ev.Record], w0: int, w1: int, width: int) -> list[dict[str, Any]]:
    names = {r.id: r.launch.name for r in recs if isinstance(r, ev.DictEntry) and r.launch is not None}
    groups: dict[tuple[int, int], list[Any]] = defaultdict(list)
    for r in recs:
        if isinstance(r, (ev.Kernel, ev.Memcpy)) and r.thread_id is not None:
            a0 = ev.api_start_ns(r)
            if a0 is None:
                continue
            a1 = a0 + (r.api_dur_ns or 0)
            if a0 < w1 and a1 >= w0:
                kind = "kernel" if isinstance(r, ev.Kernel) else "memcpy"
                groups[(r.thread_id, a0 // width * width)].append((kind, r, a0, a1))
    out = []
    for (tid, t), cs in sorted(groups.items()):
        kind, rec, a0, a1 = min(cs, key=lambda c: (-(c[3] - c[2]), c[0], c[1].seq))
        out.append(
            {
                "t_ns": t,
                "thread_id": tid,
                "count": len(cs),
                "busy_ns": sum(c[3] - c[2] for c in cs),
                "longest": {
                    "kind": kind,
                    "id": str(rec.seq),
                    "corr_id": rec.corr_id,
                    "name": names.get(rec.launch_id) if isinstance(rec, ev.Kernel) else rec.copy_kind,
                    "device_id": rec.device_id,
                    "stream_id": rec.stream_id,
                    "gpu_start_ns": rec.start_ns,
                    "start_ns": a0,
                    "end_ns": a1,
                },
            }
        )
    return out


def _windows(recs: list[ev.Record]) -> list[tuple[int, int, int]]:
    """(start, end, resolution): the whole session and a window cut at odd times through its busy middle, at
    resolutions that stored levels tile (powers of two from 2^18 ns, and 3 x 2^20)."""
    acts = [r for r in recs if isinstance(r, (ev.Kernel, ev.Memcpy, ev.Memset))]
    lo, hi = min(r.start_ns for r in acts) - 5 * MS, max(r.end_ns for r in acts) + 5 * MS
    mid = sorted(r.start_ns for r in acts)[len(acts) // 2]  # the busy part (the capture has quiet seconds)
    out = []
    for w0, w1 in ((lo, hi), (mid - 1_234_567_891, mid + 987_654_321)):
        for width in (1 << 18, 1 << 20, 3 << 20, 1 << 24):
            assert stored_span(w0, w1, width) is not None, "the stored levels answer this window's middle"
            out.append((w0, w1, width))
    return out


def _answers(store: SqlStore, sid: str, windows: list[tuple[int, int, int]]) -> list[Any]:
    return [(store.memory_timeline(sid, *w), store.launch_timeline(sid, *w)) for w in windows]


def _check(store: SqlStore, sid: str, recs: list[ev.Record], windows: list[tuple[int, int, int]]) -> None:
    for w0, w1, width in windows:
        mem = store.memory_timeline(sid, w0, w1, width)
        assert mem["bucket_ns"] == width
        assert mem["buckets"] == _memory_want(recs, w0, w1, width)
        calls = store.launch_timeline(sid, w0, w1, width)
        want = _launch_want(recs, w0, w1, width)
        assert calls["buckets"] == want
        assert calls["total"] == sum(b["count"] for b in want) > 0


def test_stored_levels_count_every_copy_memset_and_call_across_batches_and_compaction(
    store: SqlStore,
) -> None:
    sid, recs = _capture("gpt_train")
    assert any(isinstance(r, ev.Memset) for r in recs) and any(isinstance(r, ev.Memcpy) for r in recs)
    _feed_in_batches(store, recs, 500)  # 14 batches: buckets split between batches have partial rows
    windows = _windows(recs)
    _check(store, sid, recs, windows)
    before = _answers(store, sid, windows)
    rows = "SELECT count(*) FROM {} WHERE session_id = ?"
    n_mem, n_calls = (store._one(rows.format(t), [sid]) for t in ("memory_lod", "launch_lod"))
    store.compact(sid)
    assert _answers(store, sid, windows) == before
    after_mem, after_calls = (store._one(rows.format(t), [sid]) for t in ("memory_lod", "launch_lod"))
    assert after_mem is not None and n_mem is not None and after_mem[0] < n_mem[0], "compaction folds rows"
    assert after_calls is not None and n_calls is not None and after_calls[0] < n_calls[0]


def test_the_json_ingest_path_stores_the_same_levels(api: Api) -> None:
    # gpufl_run_unmodified: three threads, and copies without API timing (not calls; never counted as ones)
    sid, recs = _capture("gpufl_run_unmodified")
    assert any(isinstance(r, ev.Memcpy) and ev.api_start_ns(r) is None for r in recs)
    assert api.post_events("device", ev.encode_lines(recs)).status_code == 200
    _check(api.store, sid, recs, _windows(recs))


def test_sessions_stored_before_the_levels_existed_get_them_at_open(store_url: str) -> None:
    sid, recs = _capture("gpt_train")
    store = open_store(store_url)
    try:
        _feed_in_batches(store, recs, 2000)
        windows = _windows(recs)
        before = _answers(store, sid, windows)
        # As a store of the code before migration 8 was: no rows in the new tables, the version not applied.
        with store._write() as cur:
            for q in (
                "DELETE FROM memory_lod",
                "DELETE FROM launch_lod",
                "DELETE FROM schema_migrations WHERE version = 8",
            ):
                store._exec(cur, q)
        assert store.memory_timeline(sid, *windows[0])["buckets"] == []
    finally:
        store.close()
    store = open_store(store_url)
    try:
        assert store.schema_version() == 11
        assert _answers(store, sid, windows) == before
        _check(store, sid, recs, windows[:2])
    finally:
        store.close()


def _side_windows(recs: list[ev.Record]) -> list[tuple[int, int, int]]:
    """The windows of ``_windows`` at resolutions around the memory lanes' and thread tracks' own stored
    levels (from 2^22 ns): finer than the finest (raw rows only), each stored width, a power of two between
    two stored ones (two stored buckets per output bucket), and an odd multiple."""
    out = []
    for w0, w1, _ in _windows(recs)[::4]:
        for width in (1 << 20, 1 << 21, 1 << 22, 1 << 23, 3 << 22, 1 << 25, 1 << 26):
            stored = stored_span(w0, w1, width, SIDE_LOD_SHIFTS)
            assert (stored is not None) == (width >= 1 << SIDE_LOD_SHIFTS[0]), (w0, w1, width)
            out.append((w0, w1, width))
    return out


def test_memory_and_call_levels_are_exact_at_and_between_their_stored_widths(store: SqlStore) -> None:
    sid, recs = _capture("gpt_train")
    assert MEMORY_LOD.shifts == LAUNCH_LOD.shifts == SIDE_LOD_SHIFTS
    _feed_in_batches(store, recs, 500)
    windows = _side_windows(recs)
    _check(store, sid, recs, windows)
    for table in ("memory_lod", "launch_lod"):
        levels = store._all(f"SELECT DISTINCT level FROM {table} WHERE session_id = ? ORDER BY level", [sid])
        assert tuple(int(r[0]) for r in levels) == SIDE_LOD_SHIFTS, table
    store.compact(sid)
    _check(store, sid, recs, windows)


def test_a_store_holding_the_finer_levels_answers_the_same_and_migration_11_drops_them(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Versions 8-10 stored memory_lod and launch_lod at every kernel level (2^18 ns up): those stores answer
    the same with the rows of 2^18 and 2^20 ns still in (unread), and after migration 11 deleted them."""
    sid, recs = _capture("gpt_train")
    windows = [*_windows(recs), *_side_windows(recs)]
    store = open_store(store_url)
    try:
        # As the code before migration 11 wrote them: every level of LOD_SHIFTS, the version not applied.
        with monkeypatch.context() as m:
            for name in ("MEMORY_LOD", "LAUNCH_LOD"):
                m.setattr(lod, name, dataclasses.replace(getattr(lod, name), shifts=LOD_SHIFTS))
            _feed_in_batches(store, recs, 2000)
        with store._write() as cur:
            store._exec(cur, "DELETE FROM schema_migrations WHERE version = 11")
        for table in ("memory_lod", "launch_lod"):
            finer = store._one(f"SELECT count(*) FROM {table} WHERE level < {SIDE_LOD_SHIFTS[0]}")
            assert finer is not None and finer[0] > 0, table
        _check(store, sid, recs, windows)
        before = _answers(store, sid, windows)
    finally:
        store.close()
    store = open_store(store_url)
    try:
        assert store.schema_version() == 11
        for table in ("memory_lod", "launch_lod"):
            assert store._one(f"SELECT count(*) FROM {table} WHERE level < {SIDE_LOD_SHIFTS[0]}") == (0,)
        assert _answers(store, sid, windows) == before
        _check(store, sid, recs, windows)
    finally:
        store.close()


def test_kernel_tiles_coarser_than_the_stored_levels_count_every_kernel(store: SqlStore) -> None:
    """The UI asks for 2^33, 2^34, ... ns buckets when a pixel spans more than the coarsest stored level (2^32
    ns): a whole 4-hour session is then 2 tiles of 1,024 buckets rather than 4 with 2-3 buckets per pixel.
    The store re-buckets its 2^32 level into them: every kernel counted, the longest per bucket kept. The
    session is gpt_train's kernels tiled 12 times (timestamps shifted, seq renumbered), 38 s of them."""
    sid, recs = _capture("gpt_train")
    kernels = [r for r in recs if isinstance(r, ev.Kernel)]
    lo, hi = min(k.start_ns for k in kernels), max(k.end_ns for k in kernels)
    period = hi - lo + MS
    head = [r for r in recs if not isinstance(r, (ev.Kernel, ev.Memcpy, ev.Memset, ev.SessionEnd))]
    tiled = [
        msgspec.structs.replace(k, start_ns=k.start_ns + i * period, end_ns=k.end_ns + i * period)
        for i in range(12)
        for k in kernels
    ]
    body = [msgspec.structs.replace(r, seq=n) for n, r in enumerate([*head, *tiled])]
    _feed_in_batches(store, body, 20_000)
    tiled = [r for r in body if isinstance(r, ev.Kernel)]
    assert LOD_SHIFTS[-1] == 32
    for width in (1 << 33, 1 << 34, 1 << 35, 3 << 32):
        tile = 1024 * width  # a UI tile: 1,024 buckets aligned on absolute time
        w0 = lo // tile * tile
        got = msgspec.json.decode(store.kernel_timeline_json(sid, w0, w0 + tile, width))
        assert got["bucket_ns"] == width
        want: dict[tuple[int, int], list[ev.Kernel]] = defaultdict(list)
        for k in tiled:
            want[(k.start_ns // width * width, k.stream_id)].append(k)
        assert [(b["t_ns"], b["stream_id"]) for b in got["buckets"]] == sorted(want)
        assert len(want) >= (hi + 11 * period - lo) // width  # several buckets: the re-bucketing is exercised
        for b in got["buckets"]:
            ks = want[(b["t_ns"], b["stream_id"])]
            assert b["count"] == len(ks)
            assert b["busy_ns"] == sum(k.end_ns - k.start_ns for k in ks)
            longest = max(k.end_ns - k.start_ns for k in ks)
            assert b["longest"]["end_ns"] - b["longest"]["start_ns"] == longest
            assert b["longest"]["id"] in {str(k.seq) for k in ks if k.end_ns - k.start_ns == longest}
        assert sum(b["count"] for b in got["buckets"]) == len(tiled) == 12 * len(kernels)


def test_every_field_of_a_stored_longest_call_comes_from_that_call(store: SqlStore) -> None:
    # A bucket holding both a kernel launch and a copy call: the longest's launch_id and copy_kind are that
    # call's own (one of them null), as its seq, corr_id and times are, before and after compaction.
    sid, recs = _capture("gpt_train")
    by_seq = {r.seq: r for r in recs if isinstance(r, (ev.Kernel, ev.Memcpy))}
    kinds: dict[tuple[int, int], set[type]] = defaultdict(set)
    for r in by_seq.values():
        a0 = ev.api_start_ns(r)
        if a0 is not None and r.thread_id is not None:
            kinds[(a0 >> 18, r.thread_id)].add(type(r))  # the finest stored level: 2^18 ns buckets
    assert any(len(k) == 2 for k in kinds.values()), "the capture has buckets with both kinds of call"
    _feed_in_batches(store, recs, 500)
    cols = "kind, seq, corr_id, launch_id, copy_kind, device_id, stream_id, gpu_start"
    for compacted in (False, True):
        if compacted:
            store.compact(sid)
        rows = store._all(f"SELECT {cols} FROM launch_lod WHERE session_id = ?", [sid])
        assert rows
        for kind, seq, corr, launch, copy_kind, dev, stream, gpu_start in rows:
            r = by_seq[seq]
            assert (kind, corr, dev, stream, gpu_start) == (
                0 if isinstance(r, ev.Kernel) else 1,
                r.corr_id,
                r.device_id,
                r.stream_id,
                r.start_ns,
            )
            if isinstance(r, ev.Kernel):
                assert (launch, copy_kind) == (r.launch_id, None)
            else:
                assert (launch, copy_kind) == (None, r.copy_kind)
