"""Navigating the timeline by content: a selected time range's aggregates per kernel name, copy kind and
scope path (Perfetto's area selection), and search by name with next/previous instance. From the raw rows."""

from __future__ import annotations

from typing import Any

from gpufl.backend.store.activity import ActivityQueries


class RangeQueries(ActivityQueries):
    def range_summary(self, sid: str, start_ns: int, end_ns: int, limit: int = 200) -> dict[str, Any]:
        """Kernels, copies and memsets, and scope instances overlapping [start_ns, end_ns): per kernel name,
        per copy kind ("memset" for memsets) and per scope path, how many, their whole duration, and the part
        of it inside the range (``in_range_ns``, clipped to the range), largest in-range time first. Each list
        keeps its first ``limit`` rows and says how many there were (``*_total``), so nothing is cut silently.
        An open scope instance (no scope_end) counts up to the range's end."""
        clip = "(least(k.end_ns, ?) - greatest(k.start_ns, ?))"
        where: list[str] = ["k.session_id = ?"]
        params: list[Any] = [sid]
        self._window("kernels", sid, start_ns, end_ns, where, params)
        kernels = self._all(
            f"""SELECT d.value, count(*), sum(k.end_ns - k.start_ns), sum({clip})
                FROM kernels k {self._LAUNCH_JOIN} WHERE {" AND ".join(where)}
                GROUP BY d.value ORDER BY 4 DESC, 1""",
            [end_ns, start_ns, *params],
        )
        parts, cparams = [], []
        for table, kind in (("memcpys", "k.copy_kind"), ("memsets", "'memset'")):
            w: list[str] = ["k.session_id = ?"]
            p: list[Any] = [sid]
            self._window(table, sid, start_ns, end_ns, w, p)
            parts.append(
                f"""SELECT {kind} AS kind, k.bytes, k.end_ns - k.start_ns AS dur, {clip} AS inside
                    FROM {table} k WHERE {" AND ".join(w)}"""
            )
            cparams += [end_ns, start_ns, *p]
        copies = self._all(
            f"""SELECT kind, count(*), sum(bytes), sum(dur), sum(inside) FROM ({" UNION ALL ".join(parts)}) a
                GROUP BY kind ORDER BY 5 DESC, 1""",
            cparams,
        )
        scopes = self._all(
            """SELECT coalesce(d.value, '#' || CAST(b.path_id AS VARCHAR)), count(*),
                      sum(CASE WHEN e.ts_ns IS NULL THEN NULL ELSE e.ts_ns - b.ts_ns END),
                      sum(least(coalesce(e.ts_ns, ?), ?) - greatest(b.ts_ns, ?)), count(e.ts_ns)
               FROM scope_begins b
               LEFT JOIN (SELECT inst, ts_ns FROM scope_ends WHERE session_id = ?) e ON e.inst = b.inst
               LEFT JOIN dicts d ON d.session_id = b.session_id AND d.stream = 'scope' AND d.kind = 'scope'
                    AND d.id = b.path_id
               WHERE b.session_id = ? AND b.ts_ns < ? AND (e.ts_ns IS NULL OR e.ts_ns > ?)
               GROUP BY 1 ORDER BY 4 DESC, 1""",
            [end_ns, end_ns, start_ns, sid, sid, end_ns, start_ns],
        )
        return {
            "start_ns": start_ns,
            "end_ns": end_ns,
            "kernels_total": len(kernels),
            "kernels": [
                {"name": n, "count": int(c), "total_ns": int(t), "in_range_ns": int(i)}
                for n, c, t, i in kernels[:limit]
            ],
            "copies_total": len(copies),
            "copies": [
                {"kind": k, "count": int(c), "bytes": int(b), "total_ns": int(t), "in_range_ns": int(i)}
                for k, c, b, t, i in copies[:limit]
            ],
            "scopes_total": len(scopes),
            "scopes": [
                {
                    "path": p,
                    "count": int(c),
                    "total_ns": int(t) if t is not None else None,
                    "in_range_ns": int(i),
                    "open": int(c) - int(closed),
                }
                for p, c, t, i, closed in scopes[:limit]
            ],
        }

    def search(
        self,
        sid: str,
        text: str,
        at_ns: int,
        backward: bool = False,
        at: tuple[str, int] | None = None,
    ) -> dict[str, Any]:
        """Kernels and scope instances whose name contains ``text`` (case-insensitive): how many there are in
        the session, and the next one after ``at_ns`` (or, ``backward``, the one before it), a kernel or a
        scope instance, whichever comes first.

        Instances are stepped in one total order, (start, kind, id) with kernels before scopes at the same
        start and ids (kernel seq, scope instance) as integers, so instances that start at the same
        nanosecond are each visited once. ``at`` = (kind, id) of the instance the search stands on at
        ``at_ns`` (the previous match): the step goes past it and no further; without it, every instance
        starting at ``at_ns`` is behind the step (strictly after / before ``at_ns``)."""
        needle = text.lower()
        launches = (
            "SELECT id FROM dicts WHERE session_id = ? AND stream = 'device' AND kind = 'launch' "
            "AND strpos(lower(value), ?) > 0"
        )
        paths = (
            "SELECT id FROM dicts WHERE session_id = ? AND stream = 'scope' AND kind = 'scope' "
            "AND strpos(lower(value), ?) > 0"
        )
        k_count = self._one(
            f"SELECT coalesce(sum(n), 0) FROM kernel_stats WHERE session_id = ? AND launch_id IN ({launches})",
            [sid, sid, needle],
        )
        s_count = self._one(
            f"SELECT count(*) FROM scope_begins WHERE session_id = ? AND path_id IN ({paths})",
            [sid, sid, needle],
        )
        order = "DESC" if backward else "ASC"
        k_where, k_params = _past("k.start_ns", "k.seq", _KIND_RANK["kernel"], at_ns, at, backward)
        kernel = self._one(
            f"""SELECT k.seq, d.value, k.start_ns, k.end_ns, k.device_id, k.stream_id
                FROM kernels k {self._LAUNCH_JOIN}
                WHERE k.session_id = ? AND k.launch_id IN ({launches}) AND {k_where}
                ORDER BY k.start_ns {order}, k.seq {order} LIMIT 1""",
            [sid, sid, needle, *k_params],
        )
        s_where, s_params = _past("b.ts_ns", "b.inst", _KIND_RANK["scope"], at_ns, at, backward)
        scope = self._one(
            f"""SELECT b.inst, d.value, b.ts_ns, e.ts_ns, b.thread_id, b.depth
                FROM scope_begins b
                LEFT JOIN (SELECT inst, ts_ns FROM scope_ends WHERE session_id = ?) e ON e.inst = b.inst
                LEFT JOIN dicts d ON d.session_id = b.session_id AND d.stream = 'scope' AND d.kind = 'scope'
                     AND d.id = b.path_id
                WHERE b.session_id = ? AND b.path_id IN ({paths}) AND {s_where}
                ORDER BY b.ts_ns {order}, b.inst {order} LIMIT 1""",
            [sid, sid, sid, needle, *s_params],
        )
        found: list[dict[str, Any]] = []
        if kernel:
            seq, name, s0, s1, dev, stream = kernel
            found.append(
                {"kind": "kernel", "id": str(seq), "name": name, "start_ns": s0, "end_ns": s1}
                | {"device_id": dev, "stream_id": stream, "thread_id": None, "depth": None}
            )
        if scope:
            inst, path, s0, s1, thread, depth = scope
            found.append(
                {"kind": "scope", "id": str(inst), "name": path, "start_ns": s0, "end_ns": s1}
                | {"device_id": None, "stream_id": None, "thread_id": thread, "depth": depth}
            )
        found.sort(key=lambda m: (int(m["start_ns"]), _KIND_RANK[m["kind"]], int(m["id"])), reverse=backward)
        return {
            "text": text,
            "kernels": int(k_count[0]) if k_count else 0,
            "scopes": int(s_count[0]) if s_count else 0,
            "match": found[0] if found else None,
        }


# The search's order among instances that start at the same nanosecond: kernels, then scope instances.
_KIND_RANK = {"kernel": 0, "scope": 1}


def _past(
    start: str, ident: str, rank: int, at_ns: int, at: tuple[str, int] | None, backward: bool
) -> tuple[str, list[Any]]:
    """The SQL condition (and its parameters) for rows of one kind (``rank``) that come after the search's
    position in (start, kind, id) order, or before it when ``backward``."""
    cmp = "<" if backward else ">"
    if at is None:
        return f"{start} {cmp} ?", [at_ns]
    at_rank = _KIND_RANK[at[0]]
    if rank == at_rank:  # the same kind: ties at at_ns step by id
        return f"({start} {cmp} ? OR ({start} = ? AND {ident} {cmp} ?))", [at_ns, at_ns, at[1]]
    # another kind: its rows at at_ns are past the position when its rank is on the stepping side
    past_ties = rank < at_rank if backward else rank > at_rank
    return f"{start} {cmp}= ?" if past_ties else f"{start} {cmp} ?", [at_ns]
