"""The evidence for the insight rules (``gpufl.insights``), gathered from one stored session in SQL.

The same definitions as ``gpufl.insights.records`` (log records, in Python), computed where the rows are:
one window pass over the session's activity orders it per device and measures each idle gap
(``gpufl.insights.facts`` says how a gap is split), then grouping folds it to phases and threads. What comes
back to Python is a few hundred rows whatever the session's size (the benchmark: ``bench/insights.py``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from gpufl.backend.store.deep import DeepQueries
from gpufl.backend.store.engine import NotFound
from gpufl.insights import deep_rules, rules
from gpufl.insights import facts as fx

# The NVML (and GPM) readings the rules read: GpuPoint's fields, each stored in system_points under its name.
_GPU_METRICS = tuple(f.name for f in dataclasses.fields(fx.GpuPoint) if f.name not in ("ts_ns", "device_id"))


class InsightQueries(DeepQueries):
    def _activity_sql(self) -> str:
        """Kernels, copies and memsets of one session (three ``?``: the session id), each with the time its
        host hand-over was done (``ready``, null where not recorded) and whether it is a kernel."""
        ready = (
            "CASE WHEN api_dur_ns IS NOT NULL AND (api_start_ns IS NOT NULL OR api_lead_ns IS NOT NULL) "
            "THEN LEAST(COALESCE(api_start_ns, start_ns - api_lead_ns) + api_dur_ns, start_ns) END"
        )
        return f"""
            SELECT device_id, seq, start_ns, end_ns, 1 AS k, thread_id, api_dur_ns, {ready} AS ready
              FROM kernels WHERE session_id = ?
            UNION ALL
            SELECT device_id, seq, start_ns, end_ns, 0, thread_id, api_dur_ns, {ready}
              FROM memcpys WHERE session_id = ?
            UNION ALL
            SELECT device_id, seq, start_ns, end_ns, 0, thread_id, NULL, NULL
              FROM memsets WHERE session_id = ?"""

    def _gaps(self, f: fx.SessionFacts) -> None:
        sid = f.session_id
        span = f"(last_ns - first_ns + {fx.PHASES - 1})"  # rounded up, as facts.phase_width_ns
        width = f"GREATEST({fx.MIN_PHASE_NS}, {self._idiv(span, str(fx.PHASES))})"
        host = "LEAST(GREATEST(ready - reach, 0), gap)"
        measured = f"""
            WITH a AS ({self._activity_sql()}),
            o AS (
              SELECT a.*,
                max(end_ns) OVER (PARTITION BY device_id ORDER BY start_ns, seq
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach,
                min(start_ns) OVER (PARTITION BY device_id) AS first_ns,
                max(end_ns) OVER (PARTITION BY device_id) AS last_ns
              FROM a),
            g AS (
              SELECT o.*, CASE WHEN start_ns > reach THEN start_ns - reach ELSE 0 END AS gap,
                     {self._idiv("(start_ns - first_ns)", width)} AS phase, {width} AS width
              FROM o),
            s AS MATERIALIZED (
              SELECT g.*, CASE WHEN ready IS NULL THEN 0 ELSE {host} END AS host FROM g)"""
        launch = f"LEAST(gap - host, {fx.LAUNCH_LATENCY_NS})"
        # The longest gaps: one top-N per device (a heap, where a window ranking all gaps would sort them).
        devices_sql = " UNION ".join(
            f"SELECT DISTINCT device_id FROM {t} WHERE session_id = ?"
            for t in ("kernels", "memcpys", "memsets")
        )
        # Typed nulls: PostgreSQL types a bare NULL in a subquery as text, which no UNION with numbers takes.
        null = "CAST(NULL AS BIGINT)"
        longest_sql = "".join(
            f"""UNION ALL SELECT * FROM (
                  SELECT 1, device_id, {", ".join([null] * 2)}, start_ns - gap, start_ns, {", ".join([null] * 13)}
                  FROM s WHERE device_id = {int(d)} AND gap > 0
                  ORDER BY gap DESC, start_ns LIMIT {fx.LONGEST_GAPS}) t{int(d)}
            """
            for (d,) in self._all(devices_sql, [sid, sid, sid])
        )
        # One window pass (``s``, materialised) feeds both answers, told apart by the first column: 0, one row
        # per (device, phase, launching thread), which Python sums up to phases and devices; 1, the longest
        # gaps per device (start, end in the first_ns / last_ns columns).
        rows = self._all(
            f"""{measured}
            SELECT 0, device_id, phase, thread_id, min(first_ns), min(last_ns), min(width), count(*),
                   sum(gap), sum(CASE WHEN ready IS NULL THEN 0 ELSE host END),
                   sum(CASE WHEN ready IS NULL THEN 0 ELSE {launch} END),
                   sum(CASE WHEN ready IS NULL THEN 0 ELSE gap - host - {launch} END),
                   sum(CASE WHEN ready IS NULL THEN gap ELSE 0 END),
                   sum(CASE WHEN gap > 0 THEN 1 ELSE 0 END),
                   sum(k), sum(k * (end_ns - start_ns)), sum(CASE WHEN k = 1 THEN api_dur_ns END),
                   sum(CASE WHEN k = 1 AND api_dur_ns IS NOT NULL THEN 1 ELSE 0 END),
                   sum(CASE WHEN ready IS NULL THEN 0 ELSE 1 END)
            FROM s GROUP BY device_id, phase, thread_id
            {longest_sql}
            ORDER BY 1, 2, 3, 4""",
            [sid, sid, sid],
        )
        grouped = [r[1:] for r in rows if r[0] == 0]
        longest = sorted(
            ((r[1], r[4], r[5]) for r in rows if r[0] == 1), key=lambda g: (g[0], g[1] - g[2], g[1])
        )
        devices: dict[int, fx.DeviceIdle] = {}
        phases: dict[tuple[int, int], fx.Phase] = {}
        for (
            dev,
            ph,
            tid,
            first,
            last,
            width_ns,
            n,
            gap,
            host_ns,
            launch_ns,
            other,
            unknown,
            gaps,
            kn,
            kns,
            api,
            api_timed,
            timed,
        ) in grouped:
            d = devices.get(dev)
            if d is None:
                d = devices[dev] = fx.DeviceIdle(int(dev), int(first), int(last), 0)
            d.activities += int(n)
            d.idle_ns += int(gap)
            d.host_ns += int(host_ns)
            d.launch_ns += int(launch_ns)
            d.other_ns += int(other)
            d.unknown_ns += int(unknown)
            d.gaps += int(gaps)
            f.api_timed += int(timed)
            key = (int(dev), int(ph))
            p = phases.get(key)
            if p is None:
                start = int(first) + int(ph) * int(width_ns)
                p = phases[key] = fx.Phase(int(dev), int(ph), start, start + int(width_ns))
            p.idle_ns += int(gap)
            p.host_ns += int(host_ns)
            p.kernels += int(kn)
            p.kernel_ns += int(kns)
            if kn:
                tl = fx.ThreadLaunches(
                    None if tid is None else int(tid), int(kn), int(api or 0), int(kns), int(api_timed)
                )
                p.threads.append(tl)
        for dev, start, end in longest:
            devices[int(dev)].longest.append(fx.Gap(int(dev), int(start), int(end)))
        f.idle = [devices[d] for d in sorted(devices)]
        f.phases = [phases[k] for k in sorted(phases)]

    def _kernels(self, f: fx.SessionFacts) -> None:
        sid = f.session_id
        tiny = f"end_ns - start_ns < {rules.TINY_KERNEL_NS} AND graph_id IS NULL"
        per_launch = self._all(
            f"""SELECT launch_id, device_id, count(*), sum(end_ns - start_ns), min(start_ns), max(end_ns),
                       sum(CASE WHEN {tiny} THEN 1 ELSE 0 END),
                       sum(CASE WHEN {tiny} THEN end_ns - start_ns ELSE 0 END),
                       sum(CASE WHEN {tiny} THEN api_dur_ns END),
                       sum(CASE WHEN {tiny} AND api_dur_ns IS NOT NULL THEN 1 ELSE 0 END),
                       min(CASE WHEN {tiny} THEN start_ns END), max(CASE WHEN {tiny} THEN end_ns END)
                FROM kernels WHERE session_id = ? GROUP BY launch_id, device_id ORDER BY launch_id, device_id""",
            [sid],
        )
        configs: dict[int, dict[str, Any]] = {
            int(i): json.loads(js)
            for i, js in self._all(
                "SELECT id, launch FROM dicts WHERE session_id = ? AND stream = 'device' AND kind = 'launch'",
                [sid],
            )
            if js
        }
        groups: dict[str, fx.KernelGroup] = {}
        t = f.tiny
        for lid, dev, n, dur, first, last, tn, tns, tapi, ttimed, tfirst, tlast in per_launch:
            lc = configs.get(int(lid))
            name = lc["name"] if lc else f"launch#{lid}"
            f.kernels += int(n)
            f.kernel_ns += int(dur)
            u = fx.LaunchUse(name, int(dev), int(n), int(dur), int(first), int(last))
            if lc is not None:
                u.grid, u.block, u.num_regs = tuple(lc["grid"]), tuple(lc["block"]), lc["num_regs"]
                u.shared_bytes = lc.get("static_shared_bytes", 0) + lc.get("dyn_shared_bytes", 0)
                u.occupancy, u.limiter = lc.get("occupancy"), lc.get("limiting_resource")
            f.launches.append(u)
            if tn:
                g = groups.setdefault(name, fx.KernelGroup(name, 0, 0, 0, 0))
                g.count += int(tn)
                g.kernel_ns += int(tns)
                g.api_ns += int(tapi or 0)
                g.api_timed += int(ttimed)
                t.first_ns = int(tfirst) if t.first_ns is None else min(t.first_ns, int(tfirst))
                t.last_ns = int(tlast) if t.last_ns is None else max(t.last_ns, int(tlast))
        t.count = sum(g.count for g in groups.values())
        t.kernel_ns = sum(g.kernel_ns for g in groups.values())
        t.api_ns = sum(g.api_ns for g in groups.values())
        t.api_timed = sum(g.api_timed for g in groups.values())
        t.top = sorted(groups.values(), key=lambda g: (-g.count, g.name))[: fx.TOP_NAMES]

    def ingest_state(self, sid: str) -> tuple[object, ...]:
        """What changes whenever records of the session are stored (a cache key for answers derived from
        them): its per-stream ingest rows, their record count and their latest update."""
        row = self._one(
            "SELECT count(*), sum(received), max(updated_ns) FROM session_streams WHERE session_id = ?", [sid]
        )
        return tuple(int(v) if v is not None else None for v in (row or ()))

    def _syncs(self, f: fx.SessionFacts) -> None:
        """As ``gpufl.insights.records._syncs``: calls by kind, the refill after context syncs (the first
        activity starting at or after each one's return, from one window over starts and returns), and the
        copies whose call made the host wait."""
        sid = f.session_id
        f.syncs = [
            fx.SyncGroup(str(kind), int(n), int(wait), int(first), int(last))
            for kind, n, wait, first, last in self._all(
                """SELECT sync_kind, count(*), sum(end_ns - start_ns), min(start_ns), max(end_ns)
                   FROM syncs WHERE session_id = ? GROUP BY sync_kind ORDER BY sync_kind""",
                [sid],
            )
        ]
        if any(g.sync_kind == "context" for g in f.syncs):
            starts = " UNION ALL ".join(
                f"SELECT start_ns AS t, 0 AS s FROM {t} WHERE session_id = ?"
                for t in ("kernels", "memcpys", "memsets")
            )
            r = f.refill
            # as the records path: one gap per next start, from the earliest return before it; none before
            # the first activity
            for t, nxt in self._all(
                f"""SELECT min(t), nxt FROM (
                      SELECT t, s, min(CASE WHEN s = 0 THEN t END) OVER (
                               ORDER BY t, s DESC ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS nxt,
                             min(CASE WHEN s = 0 THEN t END) OVER () AS first
                      FROM ({starts} UNION ALL
                            SELECT end_ns, 1 FROM syncs WHERE session_id = ? AND sync_kind = 'context') e) w
                    WHERE s = 1 AND nxt IS NOT NULL AND nxt > first GROUP BY nxt ORDER BY nxt""",
                [sid, sid, sid, sid],
            ):
                gap = int(nxt) - int(t)
                r.syncs += 1
                r.refill_ns += gap
                if gap > r.longest_ns:
                    r.longest_ns, r.longest_at_ns = gap, int(t)
        row = self._one(
            """SELECT count(*), sum(bytes), sum(end_ns - start_ns), min(start_ns), max(end_ns)
               FROM memcpys WHERE session_id = ? AND mode = 'sync'""",
            [sid],
        )
        if row is not None and row[0]:
            f.sync_copies = fx.SyncCopies(int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]))

    def insight_facts(self, sid: str) -> fx.SessionFacts:
        """Everything the rules read about one stored session. Raises NotFound for an unknown session."""
        head = self._one("SELECT header FROM sessions WHERE session_id = ?", [sid])
        if head is None and not self._one(
            "SELECT 1 FROM session_streams WHERE session_id = ? LIMIT 1", [sid]
        ):
            raise NotFound(sid)
        f = fx.SessionFacts(sid)
        if head is not None and head[0]:
            header = json.loads(head[0])
            f.schema_version = header.get("schema_version")
            f.syncs_recorded = (header.get("options") or {}).get("syncs", True) is not False
            for d in header.get("devices", []):
                if d.get("sm_count") is not None:
                    f.sm_count[int(d["device_id"])] = int(d["sm_count"])
        self._gaps(f)
        self._kernels(f)
        f.copies = [
            fx.CopyGroup(
                kind, src, dst, int(n), int(b), int(dur), int(api or 0), int(first), int(last), int(timed)
            )
            for kind, src, dst, n, b, dur, api, first, last, timed in self._all(
                """SELECT copy_kind, src_kind, dst_kind, count(*), sum(bytes), sum(end_ns - start_ns),
                          sum(api_dur_ns), min(start_ns), max(end_ns),
                          sum(CASE WHEN api_dur_ns IS NOT NULL THEN 1 ELSE 0 END)
                   FROM memcpys WHERE session_id = ? GROUP BY copy_kind, src_kind, dst_kind
                   ORDER BY copy_kind, src_kind, dst_kind""",
                [sid],
            )
        ]
        self._syncs(f)
        names = ", ".join(f"'{m}'" for m in _GPU_METRICS)
        points: dict[tuple[int, int], fx.GpuPoint] = {}
        for ts, dev, metric, value in self._all(
            f"""SELECT ts_ns, device_id, metric, value FROM system_points
                WHERE session_id = ? AND device_id >= 0 AND metric IN ({names})""",
            [sid],
        ):
            p = points.get((int(dev), int(ts)))
            if p is None:
                p = points[(int(dev), int(ts))] = fx.GpuPoint(int(ts), int(dev))
            if metric == "throttle_reasons":
                p.throttle_reasons = int(value)
            elif metric in ("throttle_pwr", "throttle_therm"):
                setattr(p, metric, bool(value))
            else:
                setattr(p, metric, float(value))
        f.gpu_points = [points[k] for k in sorted(points)]
        counts: dict[str, Any] = dict(
            self._all(
                "SELECT type, sum(n) FROM type_counts WHERE session_id = ? AND type IN "
                "('system_sample', 'profile_sample') GROUP BY type",
                [sid],
            )
        )
        f.system_samples = int(counts.get("system_sample") or 0)
        f.profile_samples = int(counts.get("profile_sample") or 0)
        if f.profile_samples:
            self._deep(f)
        return f

    def _deep(self, f: fx.SessionFacts) -> None:
        """As ``gpufl.insights.records._deep``, from the deep routes' own queries: per-kernel sums from
        ``deep_summary``, the source lines of kernels under the divergence threshold from ``deep_lines``."""
        for k in self.deep_summary(f.session_id, ranges_limit=0)["kernels"]:
            name = k["kernel"] or fx.KERNEL_NOT_REPORTED
            d = fx.DeepKernel(name, k["instructions"], k["thread_instructions"])
            d.stalls = {s["reason"]: int(s["samples"]) for s in k["stalls"]}
            if k["kernel"] and d.divergence is not None and d.divergence < deep_rules.DIVERGENT_THREADS:
                got = self.deep_lines(f.session_id, k["kernel"], limit=2**31 - 1)
                d.lines = fx.most_divergent(
                    [
                        fx.DeepLine(
                            i["source_file"],
                            int(i["source_line"]),
                            float(i["instructions"] or 0.0),
                            float(i["thread_instructions"] or 0.0),
                        )
                        for i in got["items"]
                        if i["source_line"] is not None
                    ]
                )
            f.deep.append(d)
        f.deep.sort(key=lambda d: d.name)
