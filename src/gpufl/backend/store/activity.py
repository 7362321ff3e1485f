"""Query families over GPU activity: kernel pages, one kernel, the kernel timeline, the kernel summary,
copies and memsets."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from typing import Any, ClassVar

import msgspec

import gpufl.backend.store.rows as rows
from gpufl.backend import sketch
from gpufl.backend.histogram import PER_OCTAVE, log_edges
from gpufl.backend.sketch import EXACT_MAX_ROWS, quantile
from gpufl.backend.store.engine import NotFound, PageCursor, SqlEngine
from gpufl.backend.store.lod import MEMORY_LOD, fold_select, memory_rows, stored_span
from gpufl.backend.store.schema import LOD_SHIFTS

EXACT_MAX_COUNT = 10_000
"""Kernel names seen at most this often get exact quantiles in the summary (their durations read whole)."""


class ActivityQueries(SqlEngine):
    # ---- kernels -------------------------------------------------------------------------------------

    _LAUNCH_JOIN = (
        "LEFT JOIN dicts d ON d.session_id = k.session_id AND d.stream = 'device' "
        "AND d.kind = 'launch' AND d.id = k.launch_id"
    )

    def _max_dur(self, sid: str, table: str) -> int:
        if table == "kernels":
            row = self._one("SELECT max(max_ns) FROM kernel_stats WHERE session_id = ?", [sid])
        else:
            row = self._one(f"SELECT max(end_ns - start_ns) FROM {table} WHERE session_id = ?", [sid])
        return int(row[0] or 0) if row else 0

    def _window(
        self,
        table: str,
        sid: str,
        start_ns: int | None,
        end_ns: int | None,
        where: list[str],
        params: list[Any],
    ) -> None:
        if end_ns is not None:
            where.append("k.start_ns < ?")
            params.append(end_ns)
        if start_ns is not None:
            # end_ns > start selects overlaps; the bound on start_ns lets zone maps / the index prune.
            where.append("k.end_ns > ? AND k.start_ns >= ?")
            params += [start_ns, start_ns - self._max_dur(sid, table) - 1]

    @staticmethod
    def _activity_filters(
        sid: str,
        device: int | None,
        stream_id: int | None,
        scope: int | None,
        cursor: PageCursor | None,
        where: list[str],
        params: list[Any],
    ) -> None:
        """The filters kernels and copies share (alias ``k``): device, CUDA stream, scope path, and the
        (start_ns, seq) cursor of their common ordering."""
        if device is not None:
            where.append("k.device_id = ?")
            params.append(device)
        if stream_id is not None:
            where.append("k.stream_id = ?")
            params.append(stream_id)
        if scope is not None:
            where.append(
                "k.scope_inst IN (SELECT inst FROM scope_begins WHERE session_id = ? AND path_id = ?)"
            )
            params += [sid, scope]
        if cursor is not None:
            where.append("(k.start_ns > ? OR (k.start_ns = ? AND k.seq > ?))")
            params += [cursor.key, cursor.key, int(cursor.tie)]

    def kernels(
        self,
        sid: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        device: int | None = None,
        stream_id: int | None = None,
        name: str | None = None,
        scope: int | None = None,
        limit: int = 1000,
        cursor: PageCursor | None = None,
    ) -> tuple[list[rows.Kernel], PageCursor | None]:
        where: list[str] = ["k.session_id = ?"]
        params: list[Any] = [sid]
        self._window("kernels", sid, start_ns, end_ns, where, params)
        if name is not None:
            where.append(
                "k.launch_id IN (SELECT id FROM dicts WHERE session_id = ? AND stream = 'device' "
                "AND kind = 'launch' AND value = ?)"
            )
            params += [sid, name]
        self._activity_filters(sid, device, stream_id, scope, cursor, where, params)
        found = self._all(
            f"""SELECT {self._KERNEL_SELECT}
                FROM kernels k {self._LAUNCH_JOIN}
                WHERE {" AND ".join(where)} ORDER BY k.start_ns, k.seq LIMIT ?""",
            [*params, limit + 1],
        )
        nxt = None
        if len(found) > limit:
            found = found[:limit]
            nxt = PageCursor(int(found[-1][self._KERNEL_START]), int(found[-1][0]))
        return [rows.Kernel(*r) for r in found], nxt

    # rows.Kernel's columns: the name from the launch dict entry, the rest from the kernel's row.
    _KERNEL_SELECT = ", ".join("d.value" if c == "name" else f"k.{c}" for c in rows.columns(rows.Kernel))
    _KERNEL_START = rows.columns(rows.Kernel).index("start_ns")

    def kernel(self, sid: str, seq: int) -> rows.KernelDetail:
        row = self._one(
            f"""SELECT {self._KERNEL_SELECT},
                       d.mangled, coalesce(k.api_start_ns, k.start_ns - k.api_lead_ns), k.api_dur_ns, k.graph_node_id, d.launch
                FROM kernels k {self._LAUNCH_JOIN} WHERE k.session_id = ? AND k.seq = ?""",
            [sid, seq],
        )
        if row is None:
            raise NotFound(f"kernel {seq}")
        names = rows.columns(rows.Kernel)
        n = len(names)
        out = rows.KernelDetail(
            **dict(zip(names, row[:n], strict=True)),
            mangled=row[n],
            api_start_ns=row[n + 1],
            api_dur_ns=row[n + 2],
            graph_node_id=row[n + 3],
            launch=json.loads(row[n + 4]) if row[n + 4] else None,
            stack=None,
            scope=None,
        )
        if out.stack_id is not None:
            st = self._one(
                "SELECT frames FROM dicts WHERE session_id = ? AND stream = 'device' AND kind = 'stack' AND id = ?",
                [sid, out.stack_id],
            )
            if st and st[0]:
                out.stack = [{"file": f, "line": ln, "function": fn} for f, ln, fn in json.loads(st[0])]
        if out.scope_inst is not None:
            sc = self._one(
                """SELECT b.path_id, d.value FROM scope_begins b
                   LEFT JOIN dicts d ON d.session_id = b.session_id AND d.stream = 'scope' AND d.kind = 'scope'
                        AND d.id = b.path_id
                   WHERE b.session_id = ? AND b.inst = ?""",
                [sid, out.scope_inst],
            )
            out.scope = {
                "inst": out.scope_inst,
                "path_id": sc[0] if sc else None,
                "path": sc[1] if sc else None,
            }
        return out

    def kernel_timeline_json(
        self,
        sid: str,
        start_ns: int,
        end_ns: int,
        resolution_ns: int,
        device: int | None = None,
        stream_id: int | None = None,
        max_buckets: int = 100_000,
        name: str | None = None,
    ) -> bytes:
        """The level-of-detail timeline (schemas.KernelTimeline) as JSON bytes. With ``name``, only the
        kernels of that name: the stored levels mix names, so those buckets come from the raw kernels of the
        window (every instance counted, none left out)."""
        levels = [s for s in LOD_SHIFTS if (1 << s) <= resolution_ns] if name is None else []
        where: list[str] = []
        params: list[Any] = [sid]
        if levels:
            # Re-bucket the finest stored level that fits into the largest multiple of its width that is
            # <= the resolution: each output bucket is a whole number of stored buckets, so "longest kernel
            # starting in the bucket" stays exact.
            shift = levels[-1]
            k = resolution_ns >> shift
            width = k << shift
            lo_b, hi_b = start_ns >> shift, (end_ns - 1) >> shift
            # A row's start_ns (its longest kernel's) lies in its bucket, so the start_ns bounds select the
            # same rows as the bucket bounds; but rows are stored in time order across levels, so only
            # start_ns lets the engine skip the rest of the session (zone maps) at every level.
            where = [
                "session_id = ?",
                "level = ?",
                "bucket >= ?",
                "bucket <= ?",
                "start_ns >= ?",
                "start_ns <= ?",
            ]
            params += [shift, lo_b, hi_b, lo_b << shift, min(((hi_b + 1) << shift) - 1, 2**63 - 1)]
            src, bucket, n, busy = "kernel_lod", self._idiv("bucket", str(k)), "n", "busy_ns"
        else:
            # Finer than every stored level: aggregate the raw kernels of the (small) window.
            width = max(1, resolution_ns)
            where = ["session_id = ?"]
            self._window("kernels", sid, start_ns, end_ns, where, params)
            where = [w.replace("k.", "") for w in where]
            src, bucket, n, busy = "kernels", self._idiv("start_ns", str(width)), "1", "end_ns - start_ns"
            if name is not None:
                where.append(
                    "launch_id IN (SELECT id FROM dicts WHERE session_id = ? AND stream = 'device' "
                    "AND kind = 'launch' AND value = ?)"
                )
                params += [sid, name]
        if device is not None:
            where.append("device_id = ?")
            params.append(device)
        if stream_id is not None:
            where.append("stream_id = ?")
            params.append(stream_id)
        inner = f"(SELECT * FROM {src} WHERE {' AND '.join(where)}) p"
        agg = self._lod_select(inner, bucket, n, busy, "seq", "start_ns", "end_ns", "launch_id")
        # The buckets leave the database as one JSON array (built by the engine): thousands of rows never
        # become Python objects on the way to the HTTP response.
        rows_sql = f"""SELECT l.b * {width} AS t_ns, l.device_id, l.stream_id, l.n, l.busy, l.seq, d.value AS name,
                              l.start_ns, l.end_ns
                       FROM ({agg}) l LEFT JOIN dicts d ON d.session_id = l.session_id AND d.stream = 'device'
                            AND d.kind = 'launch' AND d.id = l.launch_id
                       ORDER BY l.b, l.device_id, l.stream_id LIMIT ?"""
        obj = self._json_object(
            [
                ("t_ns", "t_ns"),
                ("device_id", "device_id"),
                ("stream_id", "stream_id"),
                ("count", "CAST(n AS BIGINT)"),
                ("busy_ns", "busy"),
                (
                    "longest",
                    self._json_object(
                        [
                            ("id", "CAST(seq AS VARCHAR)"),
                            ("name", "name"),
                            ("start_ns", "start_ns"),
                            ("end_ns", "end_ns"),
                        ]
                    ),
                ),
            ]
        )
        row = self._one(
            self._json_array(f"({rows_sql}) q", obj, "t_ns, device_id, stream_id"), [*params, max_buckets]
        )
        head = msgspec.json.encode({"start_ns": start_ns, "end_ns": end_ns, "bucket_ns": width})
        return head[:-1] + b',"buckets":' + (row[0] if row and row[0] else "[]").encode() + b"}"

    def kernel_summary(
        self,
        sid: str,
        sort: str = "total",
        limit: int = 100,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> dict[str, Any]:
        """Per kernel name: count, total, mean, min, max, p50, p95, share. With a window, the kernels that
        overlap [start_ns, end_ns), each counted whole, read from the kernel rows (the same definitions);
        without, the whole session from the per-launch summaries kept at ingest."""
        where, params = ["k.session_id = ?"], list[Any]([sid])
        if start_ns is None and end_ns is None:
            stats = self._all(
                f"""SELECT d.value, sum(k.n), sum(k.total_ns), min(k.min_ns), max(k.max_ns)
                    FROM kernel_stats k {self._LAUNCH_JOIN} WHERE k.session_id = ? GROUP BY d.value""",
                [sid],
            )
            sk_rows = self._all(
                f"""SELECT d.value, k.bucket, sum(k.n) FROM kernel_sketch k {self._LAUNCH_JOIN}
                    WHERE k.session_id = ? GROUP BY d.value, k.bucket""",
                [sid],
            )
        else:
            self._window("kernels", sid, start_ns, end_ns, where, params)
            w = " AND ".join(where)
            stats = self._all(
                f"""SELECT d.value, count(*), sum(k.end_ns - k.start_ns), min(k.end_ns - k.start_ns),
                           max(k.end_ns - k.start_ns)
                    FROM kernels k {self._LAUNCH_JOIN} WHERE {w} GROUP BY d.value""",
                params,
            )
            sk_rows = self._all(
                f"""SELECT d.value, {sketch.sql_key("(k.end_ns - k.start_ns)")}, count(*)
                    FROM kernels k {self._LAUNCH_JOIN} WHERE {w} GROUP BY 1, 2""",
                params,
            )
        sketches: dict[str | None, dict[int, int]] = defaultdict(dict)
        for name, b, n in sk_rows:
            sketches[name][int(b)] = int(n)
        gpu = sum(int(r[2]) for r in stats)
        exact = self._exact_durations(sid, stats, where, params)
        items = []
        for name, n, total, mn, mx in stats:
            sk = sketch.Sketch(sketches.get(name, {}))
            n, total, mn, mx = int(n), int(total), int(mn), int(mx)

            def clamp(v: float | None, lo: int = mn, hi: int = mx) -> float:
                return float(min(max(v if v is not None else lo, lo), hi))

            durs = exact.get(name)
            items.append(
                {
                    "name": name,
                    "count": n,
                    "total_ns": total,
                    "mean_ns": total / n,
                    "min_ns": mn,
                    "p50_ns": quantile(durs, 0.5) if durs else clamp(sk.quantile(0.5)),
                    "p95_ns": quantile(durs, 0.95) if durs else clamp(sk.quantile(0.95)),
                    "max_ns": mx,
                    "share": total / gpu if gpu else 0.0,
                    "quantiles": "exact" if durs else "sketch",
                }
            )
        keyf = {
            "total": lambda i: -i["total_ns"],
            "count": lambda i: -i["count"],
            "mean": lambda i: -i["mean_ns"],
            "max": lambda i: -i["max_ns"],
            "p95": lambda i: -i["p95_ns"],
            "name": lambda i: i["name"] or "",
        }[sort]
        items.sort(key=lambda i: (keyf(i), i["name"] or ""))
        return {"gpu_time_ns": gpu, "start_ns": start_ns, "end_ns": end_ns, "items": items[:limit]}

    def _exact_durations(
        self, sid: str, stats: list[Any], window: list[str], window_params: list[Any]
    ) -> dict[str | None, list[int]]:
        """Every duration (sorted) of the kernel names seen at most EXACT_MAX_COUNT times, up to
        EXACT_MAX_ROWS in all: their quantiles are exact, where a sketch's bucket error shows most (a name
        run twice has no 95th percentile a sketch can place)."""
        small: set[str | None] = set()
        rows_needed = 0
        for name, n, *_ in sorted(stats, key=lambda r: int(r[1])):
            if int(n) > EXACT_MAX_COUNT or rows_needed + int(n) > EXACT_MAX_ROWS:
                break
            small.add(name)
            rows_needed += int(n)
        if not small:
            return {}
        where, params = " AND ".join(window), list(window_params)
        if len(small) < len(stats):  # only those names' launch configurations
            ids = [
                int(lid)
                for lid, name in self._all(
                    f"SELECT DISTINCT k.launch_id, d.value FROM kernel_stats k {self._LAUNCH_JOIN} WHERE k.session_id = ?",
                    [sid],
                )
                if name in small
            ]
            if not ids:
                return {}
            where += f" AND k.launch_id IN ({', '.join('?' for _ in ids)})"
            params += ids
        got: dict[str | None, list[int]] = defaultdict(list)
        for name, dur in self._all(
            f"SELECT d.value, k.end_ns - k.start_ns FROM kernels k {self._LAUNCH_JOIN} WHERE {where} ORDER BY 1, 2",
            params,
        ):
            got[name].append(int(dur))
        return got

    def kernel_histogram(
        self, sid: str, name: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> dict[str, Any]:
        """Durations of the kernels named ``name`` (overlapping [start_ns, end_ns) when given) counted in
        log-spaced buckets lo_ns <= d < hi_ns (histogram.log_edges), every bucket from the shortest to the
        longest, empty ones included: a gap between two modes shows."""
        where: list[str] = [
            "k.session_id = ?",
            "k.launch_id IN (SELECT id FROM dicts WHERE session_id = ? AND stream = 'device' "
            "AND kind = 'launch' AND value = ?)",
        ]
        params: list[Any] = [sid, sid, name]
        self._window("kernels", sid, start_ns, end_ns, where, params)
        w = " AND ".join(where)
        head = {"name": name, "start_ns": start_ns, "end_ns": end_ns, "per_octave": PER_OCTAVE}
        row = self._one(
            f"SELECT count(*), min(k.end_ns - k.start_ns), max(k.end_ns - k.start_ns) FROM kernels k WHERE {w}",
            params,
        )
        if not row or not row[0]:
            return {**head, "count": 0, "buckets": []}
        edges = log_edges(int(row[1]), int(row[2]))
        # integer edges inlined (computed here, never user input): exact comparisons in both dialects
        table = ", ".join(f"({i}, {a}, {b})" for i, (a, b) in enumerate(itertools.pairwise(edges)))
        counts: dict[int, int] = dict(
            self._all(
                f"""SELECT e.i, count(*) FROM kernels k
                    JOIN (VALUES {table}) AS e(i, lo, hi)
                      ON k.end_ns - k.start_ns >= e.lo AND k.end_ns - k.start_ns < e.hi
                    WHERE {w} GROUP BY e.i""",
                params,
            )
        )
        buckets = [
            {"lo_ns": a, "hi_ns": b, "count": int(counts.get(i, 0))}
            for i, (a, b) in enumerate(itertools.pairwise(edges))
        ]
        return {**head, "count": int(row[0]), "buckets": buckets}

    # ---- memcpy, memset ------------------------------------------------------------------------------

    _ACTIVITY_ROWS: ClassVar[dict[str, type[rows.Copy] | type[rows.Memset]]] = {
        "memcpys": rows.Copy,
        "memsets": rows.Memset,
    }

    def _activity_page(
        self,
        table: str,
        sid: str,
        start_ns: int | None,
        end_ns: int | None,
        device: int | None,
        stream_id: int | None,
        scope: int | None,
        limit: int,
        cursor: PageCursor | None,
    ) -> tuple[list[Any], PageCursor | None]:
        """Copies or memsets in a window: the kernels' filters and (start_ns, seq) order, every column."""
        where: list[str] = ["k.session_id = ?"]
        params: list[Any] = [sid]
        self._window(table, sid, start_ns, end_ns, where, params)
        self._activity_filters(sid, device, stream_id, scope, cursor, where, params)
        row_type = self._ACTIVITY_ROWS[table]
        keys = rows.columns(row_type)
        found = self._all(
            f"""SELECT {", ".join("k." + c for c in keys)}
                FROM {table} k WHERE {" AND ".join(where)} ORDER BY k.start_ns, k.seq LIMIT ?""",
            [*params, limit + 1],
        )
        nxt = None
        if len(found) > limit:
            found = found[:limit]
            nxt = PageCursor(int(found[-1][keys.index("start_ns")]), int(found[-1][0]))
        return [row_type(*r) for r in found], nxt

    def memcpys(
        self,
        sid: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        device: int | None = None,
        stream_id: int | None = None,
        scope: int | None = None,
        limit: int = 1000,
        cursor: PageCursor | None = None,
    ) -> tuple[list[rows.Copy], PageCursor | None]:
        return self._activity_page("memcpys", sid, start_ns, end_ns, device, stream_id, scope, limit, cursor)

    def memsets(
        self,
        sid: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        device: int | None = None,
        stream_id: int | None = None,
        scope: int | None = None,
        limit: int = 1000,
        cursor: PageCursor | None = None,
    ) -> tuple[list[rows.Memset], PageCursor | None]:
        return self._activity_page("memsets", sid, start_ns, end_ns, device, stream_id, scope, limit, cursor)

    def memory_timeline(self, sid: str, start_ns: int, end_ns: int, resolution_ns: int) -> dict[str, Any]:
        """The memory lanes' level of detail (schemas.MemoryTimeline): copies and memsets overlapping
        [start_ns, end_ns) per bucket of ``resolution_ns`` (by start), kind (the copy kind, or "memset") and
        (GPU, CUDA stream): how many, their bytes and busy time, and the longest one (ties: lowest seq).
        Every copy is counted whatever the zoom: the buckets wholly inside the window come from the stored
        level of detail when one tiles the resolution (``lod.stored_span``), the rest from the raw rows."""
        width = max(1, resolution_ns)
        empty = {"start_ns": start_ns, "end_ns": end_ns, "bucket_ns": width, "buckets": []}
        # The longest copy or memset of the session (each coarsest bucket keeps its longest): how far before
        # the window a row overlapping it may start.
        row = self._one(
            "SELECT max(end_ns - start_ns) FROM memory_lod WHERE session_id = ? AND level = ?",
            [sid, MEMORY_LOD.shifts[-1]],
        )
        if not row or row[0] is None:
            return empty
        first = start_ns - int(row[0]) - 1
        plan = stored_span(start_ns, end_ns, width, MEMORY_LOD.shifts)
        edges = [(first, end_ns)] if plan is None else [(first, plan[1] * width), (plan[2] * width, end_ns)]
        raw, params = [], []
        for table in ("memcpys", "memsets"):
            for a, b in edges:
                raw.append(
                    memory_rows(
                        table,
                        f"""(SELECT * FROM {table} WHERE session_id = ? AND start_ns >= ? AND start_ns < ?
                               AND start_ns < ? AND end_ns > ?) k""",
                    )
                )
                params += [sid, a, b, end_ns, start_ns]
        parts = [
            fold_select(
                MEMORY_LOD,
                f"({' UNION ALL '.join(raw)}) r",
                self._idiv("start_ns", str(width)),
                self._longest_fields,
            )
        ]
        if plan is not None:
            shift, lo, hi = plan
            k = width >> shift
            stored = """(SELECT * FROM memory_lod WHERE session_id = ? AND level = ? AND bucket >= ? AND bucket < ?
                            AND start_ns >= ? AND start_ns < ?) p"""
            parts.append(fold_select(MEMORY_LOD, stored, self._idiv("bucket", str(k)), self._longest_fields))
            params += [sid, shift, lo * k, hi * k, lo * width, hi * width]
        found = self._all(
            f"""SELECT b, kind, device_id, stream_id, n, bytes, busy_ns, seq, start_ns, end_ns, long_bytes
                FROM ({" UNION ALL ".join(parts)}) u ORDER BY b, kind, device_id, stream_id""",
            params,
        )
        buckets = [
            {
                "t_ns": int(b) * width,
                "kind": kind,
                "device_id": int(dev),
                "stream_id": int(stream),
                "count": int(n),
                "bytes": int(tb),
                "busy_ns": int(busy),
                "longest": {"id": str(seq), "start_ns": int(s0), "end_ns": int(s1), "bytes": int(by)},
            }
            for b, kind, dev, stream, n, tb, busy, seq, s0, s1, by in found
        ]
        return {**empty, "buckets": buckets}
