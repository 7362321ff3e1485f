"""The launch-API calls behind kernels and copies (the CPU side of each launch: ``cudaLaunchKernel``,
``cudaMemcpyAsync``), per thread and bucket of time, for the timeline's thread tracks. From the raw rows."""

from __future__ import annotations

from typing import Any

from gpufl.backend.store.activity import ActivityQueries

# The call's entry: v2+ records carry it as a lead before the activity's start, v1 as an absolute time.
_API_START = "coalesce(k.api_start_ns, k.start_ns - k.api_lead_ns)"


class LaunchQueries(ActivityQueries):
    def launch_timeline(self, sid: str, start_ns: int, end_ns: int, resolution_ns: int) -> dict[str, Any]:
        """Launch-API calls (of kernels and copies that carry their API timing and thread) overlapping
        [start_ns, end_ns), per thread and bucket of ``resolution_ns`` (by call entry): how many, the time
        they took, and the longest call (ties: the kernel before the copy, then lowest seq) with the
        correlation id and the activity it launched. Every call is counted whatever the zoom; ``total`` is
        their number. A call without a recorded duration counts as 0 ns long."""
        width = max(1, resolution_ns)
        parts, params = [], []
        # kind: 0 kernel, 1 copy (the kernel first among calls as long); a kernel's name is looked up only
        # for the calls that are a bucket's longest, not for every call of the window.
        for table, kind, launch, copy_kind in (
            ("kernels", 0, "k.launch_id", "CAST(NULL AS VARCHAR)"),
            ("memcpys", 1, "CAST(NULL AS BIGINT)", "k.copy_kind"),
        ):
            bound = self._one(
                f"""SELECT max(coalesce(k.start_ns - {_API_START}, 0)), max(coalesce(k.api_dur_ns, 0))
                    FROM {table} k WHERE k.session_id = ?""",
                [sid],
            )
            lead, dur = (int(bound[0] or 0), int(bound[1] or 0)) if bound else (0, 0)
            # The activity starts after its call's entry, at most `lead` after it: its start bounds the
            # call's, so the (session_id, start_ns) index prunes.
            parts.append(
                f"""SELECT {kind} AS kind, k.seq, k.thread_id, k.corr_id, {launch} AS launch_id,
                           {copy_kind} AS copy_kind, k.device_id, k.stream_id, k.start_ns AS gpu_start,
                           {_API_START} AS a0, {_API_START} + coalesce(k.api_dur_ns, 0) AS a1
                    FROM {table} k
                    WHERE k.session_id = ? AND k.thread_id IS NOT NULL
                      AND (k.api_start_ns IS NOT NULL OR k.api_lead_ns IS NOT NULL)
                      AND k.start_ns >= ? AND k.start_ns < ?"""
            )
            params += [sid, start_ns - dur - 1, end_ns + lead + 1]
        calls = f"""SELECT c.*, {self._idiv("c.a0", str(width))} AS b FROM ({" UNION ALL ".join(parts)}) c
                    WHERE c.a0 < ? AND c.a1 >= ?"""
        params += [end_ns, start_ns]
        # One pass of aggregation per (thread, bucket): counts, sums and the longest call's fields (a
        # window function over every call cost ~10x more: 11 s for a whole 10M-kernel session).
        fields = (
            "kind",
            "seq",
            "corr_id",
            "launch_id",
            "copy_kind",
            "device_id",
            "stream_id",
            "gpu_start",
            "a0",
            "a1",
        )
        longest = ", ".join(f"{self._arg_longest(f, 'a1 - a0', ['kind', 'seq'])} AS {f}" for f in fields)
        found = self._all(
            f"""SELECT g.b, g.thread_id, g.n, g.busy, g.kind, g.seq, g.corr_id,
                       CASE WHEN g.kind = 0 THEN d.value ELSE g.copy_kind END, g.device_id, g.stream_id,
                       g.gpu_start, g.a0, g.a1
                FROM (SELECT b, thread_id, count(*) AS n, sum(a1 - a0) AS busy, {longest}
                      FROM ({calls}) w GROUP BY b, thread_id) g
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
        return {
            "start_ns": start_ns,
            "end_ns": end_ns,
            "bucket_ns": width,
            "total": sum(x["count"] for x in buckets),
            "buckets": buckets,
        }
