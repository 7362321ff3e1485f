"""Query families over the scope and system streams: the scope tree, scope instances (the timeline lane)
and system metrics. The deep engines' samples have their own family (``deep``)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from gpufl.backend.sketch import EXACT_MAX_ROWS, quantile
from gpufl.backend.store.engine import NotFound, PageCursor, SqlEngine

BITMASK_METRICS = ("throttle_reasons",)
"""System metrics whose value is a bitmask (NVML clocks-event reasons): a bucket's mean of masks means
nothing, so their points also carry the OR of the bucket's masks (``bits``). Values are stored as doubles:
only masks below 2^53 (exact as a double) are ORed; a larger one leaves ``bits`` null rather than fail."""


class ScopeQueries(SqlEngine):
    # ---- scopes --------------------------------------------------------------------------------------

    def scope_tree(self, sid: str) -> list[dict[str, Any]]:
        rows = self._all(
            """SELECT b.path_id, d.value, count(*), sum(CASE WHEN e.ts_ns IS NULL THEN 0 ELSE e.ts_ns - b.ts_ns END),
                      sum(CASE WHEN e.ts_ns IS NULL THEN 1 ELSE 0 END), sum(COALESCE(ks.n, 0)),
                      sum(COALESCE(ks.total_ns, 0)), min(b.depth), min(e.ts_ns - b.ts_ns), max(e.ts_ns - b.ts_ns)
               FROM scope_begins b
               LEFT JOIN scope_ends e ON e.session_id = b.session_id AND e.inst = b.inst
               LEFT JOIN (SELECT scope_inst, sum(n) AS n, sum(total_ns) AS total_ns FROM kernel_scopes
                          WHERE session_id = ? GROUP BY scope_inst) ks ON ks.scope_inst = b.inst
               LEFT JOIN dicts d ON d.session_id = b.session_id AND d.stream = 'scope' AND d.kind = 'scope'
                    AND d.id = b.path_id
               WHERE b.session_id = ? GROUP BY b.path_id, d.value""",
            [sid, sid],
        )
        medians = self._scope_medians(sid, sum(int(r[2]) for r in rows))
        nodes: dict[str, dict[str, Any]] = {}
        for path_id, path, calls, wall, open_calls, kn, kns, depth, wmin, wmax in rows:
            p = path if path is not None else f"#{path_id}"
            closed = int(calls) - int(open_calls)
            nodes[p] = {
                "scope_id": path_id,
                "path": p,
                "name": p.rsplit("/", 1)[-1],
                "depth": int(depth),
                "calls": int(calls),
                "wall_total_ns": int(wall or 0),
                "wall_mean_ns": (int(wall or 0) / closed) if closed else 0.0,
                "wall_min_ns": int(wmin) if wmin is not None else None,
                "wall_p50_ns": medians.get(path_id),
                "wall_max_ns": int(wmax) if wmax is not None else None,
                "open_calls": int(open_calls),
                "gpu_ns": int(kns),
                "gpu_total_ns": int(kns),
                "kernels": int(kn),
                "kernels_total": int(kn),
                "children": [],
            }
        roots = []
        # Attach each node under its nearest ancestor path that exists (deepest first for the totals).
        for p in sorted(nodes, key=lambda x: (-x.count("/"), x)):
            node = nodes[p]
            parent = None
            q = p
            while "/" in q:
                q = q.rsplit("/", 1)[0]
                if q in nodes:
                    parent = nodes[q]
                    break
            if parent is None:
                roots.append(node)
            else:
                parent["children"].append(node)
                parent["gpu_total_ns"] += node["gpu_total_ns"]
                parent["kernels_total"] += node["kernels_total"]

        def order(ns: list[dict[str, Any]]) -> list[dict[str, Any]]:
            ns.sort(key=lambda n: (-n["gpu_total_ns"], -n["wall_total_ns"], n["path"]))
            for n in ns:
                order(n["children"])
            return ns

        return order(roots)

    def _scope_medians(self, sid: str, instances: int) -> dict[int, float]:
        """Each scope path's median call (closed instances), exact, when the session has at most
        EXACT_MAX_ROWS instances (else none: a mean would hide the warm-up, a wrong median is worse)."""
        if instances > EXACT_MAX_ROWS:
            return {}
        durs: dict[int, list[int]] = defaultdict(list)
        for path_id, dur in self._all(
            """SELECT b.path_id, e.ts_ns - b.ts_ns FROM scope_begins b
               JOIN scope_ends e ON e.session_id = b.session_id AND e.inst = b.inst
               WHERE b.session_id = ? ORDER BY 1, 2""",
            [sid],
        ):
            durs[int(path_id)].append(int(dur))
        return {pid: quantile(v, 0.5) for pid, v in durs.items()}

    def scope_kernels(self, sid: str, scope_id: int, limit: int = 500) -> dict[str, Any]:
        """Kernels launched in a scope path and in the paths under it, by name: count and time in all, and
        how much of it directly in the scope (self). NotFound for an unknown scope."""
        path = self._one(
            "SELECT value FROM dicts WHERE session_id = ? AND stream = 'scope' AND kind = 'scope' AND id = ?",
            [sid, scope_id],
        )
        if path is None:
            raise NotFound(f"{sid}/{scope_id}")
        rows = self._all(
            """SELECT d.value, count(*), sum(k.end_ns - k.start_ns), min(k.end_ns - k.start_ns),
                      max(k.end_ns - k.start_ns),
                      sum(CASE WHEN b.path_id = ? THEN 1 ELSE 0 END),
                      sum(CASE WHEN b.path_id = ? THEN k.end_ns - k.start_ns ELSE 0 END)
               FROM kernels k
               JOIN scope_begins b ON b.session_id = k.session_id AND b.inst = k.scope_inst
               JOIN dicts sd ON sd.session_id = b.session_id AND sd.stream = 'scope' AND sd.kind = 'scope'
                    AND sd.id = b.path_id
               LEFT JOIN dicts d ON d.session_id = k.session_id AND d.stream = 'device' AND d.kind = 'launch'
                    AND d.id = k.launch_id
               WHERE k.session_id = ? AND (b.path_id = ? OR starts_with(sd.value, ?))
               GROUP BY d.value""",
            [scope_id, scope_id, sid, scope_id, path[0] + "/"],
        )
        total = sum(int(r[2]) for r in rows)
        items = [
            {
                "name": name,
                "count": int(n),
                "total_ns": int(t),
                "mean_ns": int(t) / int(n),
                "min_ns": int(mn),
                "max_ns": int(mx),
                "self_count": int(sn),
                "self_ns": int(st),
                "share": int(t) / total if total else 0.0,
            }
            for name, n, t, mn, mx, sn, st in rows
        ]
        items.sort(key=lambda i: (-i["total_ns"], i["name"] or ""))
        return {
            "scope_id": scope_id,
            "path": path[0],
            "kernels": sum(i["count"] for i in items),
            "gpu_ns": total,
            "names": len(items),
            "items": items[:limit],
        }

    # ---- system --------------------------------------------------------------------------------------

    def system(
        self,
        sid: str,
        metric: str | None = None,
        device: int | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        points: int = 300,
    ) -> dict[str, Any]:
        where: list[str] = ["session_id = ?"]
        params: list[Any] = [sid]
        if metric is not None:
            where.append("metric = ?")
            params.append(metric)
        if device is not None:
            where.append("device_id = ?")
            params.append(device)
        if start_ns is None or end_ns is None:
            span = self._one(
                f"SELECT min(ts_ns), max(ts_ns) FROM system_points WHERE {' AND '.join(where)}", params
            )
            if span is None or span[0] is None:
                return {"start_ns": start_ns, "end_ns": end_ns, "bucket_ns": 1, "series": []}
            start_ns = int(span[0]) if start_ns is None else start_ns
            end_ns = int(span[1]) + 1 if end_ns is None else end_ns
        width = max(1, -(-(end_ns - start_ns) // max(1, points)))
        where.append("ts_ns >= ? AND ts_ns < ?")
        params += [start_ns, end_ns]
        b = self._idiv(f"(ts_ns - {int(start_ns)})", str(width))
        rows = self._all(
            f"""SELECT metric, device_id, {b} AS b, min(value), max(value), avg(value), count(*),
                       bit_or(CASE WHEN metric IN ({", ".join(f"'{m}'" for m in BITMASK_METRICS)})
                                    AND value >= 0 AND value < {2**53}
                                   THEN CAST(value AS BIGINT) END)
                FROM system_points
                WHERE {" AND ".join(where)} GROUP BY metric, device_id, b ORDER BY metric, device_id, b""",
            params,
        )
        series: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        for m, dev, bk, mn, mx, mean, n, bits in rows:
            series[(m, int(dev))].append(
                {
                    "t_ns": start_ns + int(bk) * width,
                    "min": float(mn),
                    "max": float(mx),
                    "mean": float(mean),
                    "n": int(n),
                    "bits": None if bits is None else int(bits),
                }
            )
        return {
            "start_ns": start_ns,
            "end_ns": end_ns,
            "bucket_ns": width,
            "series": [
                {"metric": m, "device": None if dev < 0 else dev, "points": pts}
                for (m, dev), pts in series.items()
            ],
        }

    # ---- scope instances (timeline lane) -------------------------------------------------------------

    def scope_instances(
        self,
        sid: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        min_dur_ns: int | None = None,
        limit: int = 1000,
        cursor: PageCursor | None = None,
        scope: int | None = None,
    ) -> tuple[list[dict[str, Any]], PageCursor | None]:
        """Scope instances overlapping [start_ns, end_ns), ordered by (start, inst); with ``scope``, only
        those of that scope path. An instance without a scope_end is open (end_ns None): it overlaps every
        window from its start on, and is never skipped by ``min_dur_ns`` (its duration is unknown)."""
        where: list[str] = ["b.session_id = ?"]
        params: list[Any] = [sid, sid]  # the scope_ends sub-select, then scope_begins
        if scope is not None:
            where.append("b.path_id = ?")
            params.append(scope)
        if end_ns is not None:
            where.append("b.ts_ns < ?")
            params.append(end_ns)
        if start_ns is not None:
            where.append("(e.ts_ns IS NULL OR e.ts_ns > ?)")
            params.append(start_ns)
        if min_dur_ns is not None and min_dur_ns > 0:
            where.append("(e.ts_ns IS NULL OR e.ts_ns - b.ts_ns >= ?)")
            params.append(min_dur_ns)
        if cursor is not None:
            where.append("(b.ts_ns > ? OR (b.ts_ns = ? AND b.inst > ?))")
            params += [cursor.key, cursor.key, int(cursor.tie)]
        rows = self._all(
            f"""SELECT b.inst, b.path_id, d.value, b.depth, b.parent_inst, b.thread_id, b.ts_ns, e.ts_ns
                FROM scope_begins b
                LEFT JOIN (SELECT inst, ts_ns FROM scope_ends WHERE session_id = ?) e ON e.inst = b.inst
                LEFT JOIN dicts d ON d.session_id = b.session_id AND d.stream = 'scope' AND d.kind = 'scope'
                     AND d.id = b.path_id
                WHERE {" AND ".join(where)} ORDER BY b.ts_ns, b.inst LIMIT ?""",
            [*params, limit + 1],
        )
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = PageCursor(int(rows[-1][6]), int(rows[-1][0]))
        items = []
        for inst, path_id, path, depth, parent, thread, start, end in rows:
            p = path if path is not None else f"#{path_id}"  # as in scope_tree: the dict entry is late
            items.append(
                {
                    "inst": inst,
                    "scope_id": path_id,
                    "path": p,
                    "name": p.rsplit("/", 1)[-1],
                    "depth": depth,
                    "parent_inst": parent,
                    "thread_id": thread,
                    "start_ns": start,
                    "end_ns": end,
                }
            )
        return items, nxt
