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
        for table, kind, name in (
            ("kernels", "'kernel'", "d.value"),
            ("memcpys", "'memcpy'", "k.copy_kind"),
        ):
            bound = self._one(
                f"""SELECT max(coalesce(k.start_ns - {_API_START}, 0)), max(coalesce(k.api_dur_ns, 0))
                    FROM {table} k WHERE k.session_id = ?""",
                [sid],
            )
            lead, dur = (int(bound[0] or 0), int(bound[1] or 0)) if bound else (0, 0)
            join = self._LAUNCH_JOIN if table == "kernels" else ""
            # The activity starts after its call's entry, at most `lead` after it: its start bounds the
            # call's, so the (session_id, start_ns) index prunes.
            parts.append(
                f"""SELECT {kind} AS kind, k.seq, k.thread_id, k.corr_id, {name} AS name, k.device_id,
                           k.stream_id, k.start_ns AS gpu_start, {_API_START} AS a0,
                           {_API_START} + coalesce(k.api_dur_ns, 0) AS a1
                    FROM {table} k {join}
                    WHERE k.session_id = ? AND k.thread_id IS NOT NULL
                      AND (k.api_start_ns IS NOT NULL OR k.api_lead_ns IS NOT NULL)
                      AND k.start_ns >= ? AND k.start_ns < ?"""
            )
            params += [sid, start_ns - dur - 1, end_ns + lead + 1]
        calls = f"""SELECT c.*, {self._idiv("c.a0", str(width))} AS b FROM ({" UNION ALL ".join(parts)}) c
                    WHERE c.a0 < ? AND c.a1 >= ?"""
        params += [end_ns, start_ns]
        part = "PARTITION BY thread_id, b"
        found = self._all(
            f"""SELECT b, thread_id, n, busy, kind, seq, corr_id, name, device_id, stream_id, gpu_start, a0, a1
                FROM (SELECT w.*, count(*) OVER ({part}) AS n, sum(a1 - a0) OVER ({part}) AS busy,
                             row_number() OVER ({part} ORDER BY a1 - a0 DESC, kind, seq) AS rn
                      FROM ({calls}) w) r
                WHERE rn = 1 ORDER BY thread_id, b""",
            params,
        )
        buckets = [
            {
                "t_ns": int(b) * width,
                "thread_id": int(tid),
                "count": int(n),
                "busy_ns": int(busy),
                "longest": {
                    "kind": kind,
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
