"""The launch-API calls behind kernels and copies (the CPU side of each launch: ``cudaLaunchKernel``,
``cudaMemcpyAsync``), per thread and bucket of time, for the timeline's thread tracks: from the stored level of
detail (``lod.LAUNCH_LOD``) where one tiles the resolution, else from the raw rows."""

from __future__ import annotations

from typing import Any

from gpufl.backend.store.activity import ActivityQueries
from gpufl.backend.store.lod import LAUNCH_LOD, fold_select, launch_rows, stored_span


class LaunchQueries(ActivityQueries):
    def launch_timeline(self, sid: str, start_ns: int, end_ns: int, resolution_ns: int) -> dict[str, Any]:
        """Launch-API calls (of kernels and copies that carry their API timing and thread) overlapping
        [start_ns, end_ns), per thread and bucket of ``resolution_ns`` (by call entry): how many, the time
        they took, and the longest call (ties: the kernel before the copy, then lowest seq) with the
        correlation id and the activity it launched. Every call is counted whatever the zoom; ``total`` is
        their number. A call without a recorded duration counts as 0 ns long. The buckets wholly inside the
        window come from the stored level of detail when one tiles the resolution (``lod.stored_span``); the
        edges' buckets, and calls entered before the window that overlap it, from the raw rows."""
        width = max(1, resolution_ns)
        empty = {"start_ns": start_ns, "end_ns": end_ns, "bucket_ns": width, "total": 0, "buckets": []}
        # The session's longest call and its calls' leads (GPU start - entry), from the coarsest level: how
        # far before the window a call overlapping it may enter, and which activities' starts bound calls.
        bound = self._one(
            "SELECT max(a1 - a0), max(lead_max), min(lead_min) FROM launch_lod WHERE session_id = ? AND level = ?",
            [sid, LAUNCH_LOD.shifts[-1]],
        )
        if not bound or bound[0] is None:
            return empty
        dur, lead_max, lead_min = (int(x) for x in bound)
        plan = stored_span(start_ns, end_ns, width, LAUNCH_LOD.shifts)
        first = start_ns - dur
        edges = [(first, end_ns)] if plan is None else [(first, plan[1] * width), (plan[2] * width, end_ns)]
        raw, params = [], []
        for table in ("kernels", "memcpys"):
            for a, b in edges:
                # A call entered in [a, b) started its activity in [a + lead_min, b + lead_max]: the
                # (session_id, start_ns) index and zone maps prune by that.
                rows = launch_rows(
                    table,
                    f"(SELECT * FROM {table} WHERE session_id = ? AND start_ns >= ? AND start_ns <= ?) k",
                    self.sql_types["H"],
                )
                raw.append(f"SELECT * FROM ({rows}) c WHERE a0 >= ? AND a0 < ? AND a0 < ? AND a1 >= ?")
                params += [sid, a + lead_min, b + lead_max, a, b, end_ns, start_ns]
        parts = [
            fold_select(
                LAUNCH_LOD,
                f"({' UNION ALL '.join(raw)}) r",
                self._idiv("a0", str(width)),
                self._longest_fields,
            )
        ]
        if plan is not None:
            shift, lo, hi = plan
            k = width >> shift
            stored = """(SELECT * FROM launch_lod WHERE session_id = ? AND level = ? AND bucket >= ? AND bucket < ?
                            AND a0 >= ? AND a0 < ?) p"""
            parts.append(fold_select(LAUNCH_LOD, stored, self._idiv("bucket", str(k)), self._longest_fields))
            params += [sid, shift, lo * k, hi * k, lo * width, hi * width]
        # A kernel's name is looked up only for the calls that are a bucket's longest.
        found = self._all(
            f"""SELECT g.b, g.thread_id, g.n, g.busy_ns, g.kind, g.seq, g.corr_id,
                       CASE WHEN g.kind = 0 THEN d.value ELSE g.copy_kind END, g.device_id, g.stream_id,
                       g.gpu_start, g.a0, g.a1
                FROM ({" UNION ALL ".join(parts)}) g
                LEFT JOIN dicts d ON d.session_id = ? AND d.stream = 'device' AND d.kind = 'launch'
                     AND d.id = g.launch_id
                ORDER BY g.thread_id, g.b""",
            [*params, sid],
        )
        buckets = [
            {
                "t_ns": int(b) * width,
                "thread_id": int(tid),
                "count": int(n),
                "busy_ns": int(busy),
                "longest": {
                    "kind": "kernel" if kind == 0 else "memcpy",
                    "id": str(seq),
                    "corr_id": int(corr),
                    "name": name,
                    "device_id": int(dev),
                    "stream_id": int(stream),
                    "gpu_start_ns": int(g0),
                    "start_ns": int(a0),
                    "end_ns": int(a1),
                },
            }
            for b, tid, n, busy, kind, seq, corr, name, dev, stream, g0, a0, a1 in found
        ]
        return {**empty, "total": sum(x["count"] for x in buckets), "buckets": buckets}
