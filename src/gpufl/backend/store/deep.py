"""Query family over the deep engines' records (contract v6): SASS-metric and PC-sampling ``profile_sample``
rows summed per scope path, scope instance, kernel and source line, with the ``profile_range`` records that
say what those samples are a share of and what was lost.

Divergence is ``sum(smsp__sass_thread_inst_executed) / sum(smsp__sass_inst_executed)``: the average number of
active threads per executed warp instruction (32 = none). Stall shares are of the samples kept (a range's
``pc_dropped`` are not in them: the ranges say how many); a ``…_not_issued`` reason is a subset of its base
reason's samples, listed apart and left out of every total. Kernels and source files are named through the
scope stream's dict (``kernel``, ``source_file``); sessions before v6 named them by string
(``function_name``, ``source_file``), read the same way.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gpufl.backend.store.engine import NotFound, SqlEngine
from gpufl.backend.store.schema import TABLES
from gpufl.contract.deep import SASS_INST, SASS_THREAD_INST

NOT_ISSUED = "_not_issued"
"""CUPTI's reasons ending so count the samples of their base state in which no warp issued: a subset of the
base reason's samples, so they are listed apart (``not_issued``) and never added to a total."""

TOP_STALLS = 3
"""Stall reasons listed per source line (the rest summed in ``other_samples``)."""

_KERNEL = "COALESCE(kd.value, p.function_name)"
_FILE = "COALESCE(fd.value, p.source_file)"
_FROM = """FROM profile_samples p
    LEFT JOIN dicts kd ON kd.session_id = p.session_id AND kd.stream = 'scope' AND kd.kind = 'kernel'
         AND kd.id = p.kernel_name_id
    LEFT JOIN scope_begins b ON b.session_id = p.session_id AND b.inst = p.scope_inst"""
# Per group: warp instructions, thread instructions (null where no SASS row), PC samples (null where none).
_SUMS = f"""sum(CASE WHEN p.source = 'sass_metric' AND p.metric_name = '{SASS_INST}' THEN p.metric_value END),
    sum(CASE WHEN p.source = 'sass_metric' AND p.metric_name = '{SASS_THREAD_INST}' THEN p.metric_value END),
    sum(CASE WHEN p.source = 'pc_sampling' THEN p.sample_count END)"""
_RANGE_COLS = [c for c, _ in TABLES["profile_ranges"]]
_RANGE_SUMS = """count(*), sum(r.pc_samples), sum(r.pc_dropped), sum(r.pc_non_user_samples),
    sum(CASE WHEN r.pc_buffer_full = 1 THEN 1 ELSE 0 END), sum(r.sass_records), sum(r.sass_dropped),
    sum(CASE WHEN r.error IS NULL THEN 0 ELSE 1 END)"""


@dataclass
class _Agg:
    """One group's sums: SASS instructions and PC samples by stall reason."""

    inst: float | None = None
    thread_inst: float | None = None
    stalls: Counter[str] = field(default_factory=Counter)
    mangled: str | None = None

    def add(self, inst: Any, thread_inst: Any, reason: str | None, samples: Any) -> None:
        if inst is not None:
            self.inst = (self.inst or 0.0) + float(inst)
        if thread_inst is not None:
            self.thread_inst = (self.thread_inst or 0.0) + float(thread_inst)
        if samples is not None:
            self.stalls[reason if reason is not None else "(not reported)"] += int(samples)

    @property
    def samples(self) -> int:
        return sum(c for r, c in self.stalls.items() if not r.endswith(NOT_ISSUED))

    def out(self, top: int | None = None) -> dict[str, Any]:
        """Divergence is null where either SASS metric is missing or no instruction ran (never a guess)."""
        n = self.samples
        ranked = sorted(self.stalls.items(), key=lambda kv: (-kv[1], kv[0]))
        subsets = [(r, c) for r, c in ranked if r.endswith(NOT_ISSUED)]
        ranked = [(r, c) for r, c in ranked if not r.endswith(NOT_ISSUED)]
        shown = ranked if top is None else ranked[:top]
        return {
            "instructions": self.inst,
            "thread_instructions": self.thread_inst,
            "divergence": (
                self.thread_inst / self.inst if self.inst and self.thread_inst is not None else None
            ),
            "samples": n if self.stalls else None,
            "stalls": [{"reason": r, "samples": c, "share": c / n if n else 0.0} for r, c in shown],
            "other_samples": sum(c for _, c in ranked[len(shown) :]),
            "not_issued": [
                {"reason": r, "samples": c, "share": c / n if n else 0.0}
                for r, c in (subsets if top is None else subsets[:top])
            ],
        }


def _kernels(aggs: dict[str | None, _Agg]) -> list[dict[str, Any]]:
    """Per-kernel entries, most sampled first, then most instructions."""
    items = [{"kernel": k, "mangled": a.mangled, **a.out()} for k, a in aggs.items()]
    items.sort(key=lambda i: (-(i["samples"] or 0), -(i["instructions"] or 0.0), i["kernel"] or ""))
    return items


def _range_totals(row: Any) -> dict[str, Any]:
    n, pcs, dropped, non_user, full, sass, sass_dropped, errors = row
    return {
        "ranges": int(n or 0),
        "pc_samples": None if pcs is None else int(pcs),
        "pc_dropped": None if dropped is None else int(dropped),
        "pc_non_user_samples": None if non_user is None else int(non_user),
        "pc_buffer_full_ranges": int(full or 0),
        "sass_records": None if sass is None else int(sass),
        "sass_dropped": None if sass_dropped is None else int(sass_dropped),
        "error_ranges": int(errors or 0),
    }


class DeepQueries(SqlEngine):
    def _range_rows(self, sid: str, where: str, params: list[Any], limit: int) -> list[dict[str, Any]]:
        rows = self._all(
            f"""SELECT {", ".join("r." + c for c in _RANGE_COLS)}, b.path_id, d.value FROM profile_ranges r
                LEFT JOIN scope_begins b ON b.session_id = r.session_id AND b.inst = r.scope_inst
                LEFT JOIN dicts d ON d.session_id = r.session_id AND d.stream = 'scope' AND d.kind = 'scope'
                     AND d.id = b.path_id
                WHERE r.session_id = ? {where} ORDER BY r.start_ns, r.seq LIMIT ?""",
            [sid, *params, limit],
        )
        out = []
        for row in rows:
            d = dict(zip(_RANGE_COLS, row[: len(_RANGE_COLS)], strict=True))
            d.pop("session_id")
            d["engines"] = json.loads(d["engines"]) if d["engines"] else []
            d["pc_buffer_full"] = None if d["pc_buffer_full"] is None else bool(d["pc_buffer_full"])
            d["scope_id"], d["path"] = row[-2], row[-1]
            out.append(d)
        return out

    def deep_summary(self, sid: str, ranges_limit: int = 200) -> dict[str, Any]:
        """Per scope path (and the session-wide range) and per kernel: divergence, instructions and the
        stall-reason histogram; the ranges' totals (samples, dropped, buffer full, errors) and the first
        ``ranges_limit`` ranges by start."""
        rows = self._all(
            f"""SELECT b.path_id, CASE WHEN p.scope_inst IS NULL THEN 1 ELSE 0 END, d.value, {_KERNEL},
                       max(kd.mangled), p.stall_reason, {_SUMS}
                {_FROM}
                LEFT JOIN dicts d ON d.session_id = p.session_id AND d.stream = 'scope' AND d.kind = 'scope'
                     AND d.id = b.path_id
                WHERE p.session_id = ?
                GROUP BY b.path_id, CASE WHEN p.scope_inst IS NULL THEN 1 ELSE 0 END, d.value, {_KERNEL},
                         p.stall_reason""",
            [sid],
        )
        scopes: dict[tuple[Any, int], dict[str, Any]] = {}
        session_kernels: dict[str | None, _Agg] = {}
        overall = _Agg()
        for path_id, whole, path, kernel, mangled, reason, inst, tinst, samples in rows:
            s = scopes.setdefault(
                (path_id, int(whole)),
                {"scope_id": path_id, "path": path, "whole_session": bool(whole), "all": _Agg(), "k": {}},
            )
            for agg in (
                overall,
                s["all"],
                s["k"].setdefault(kernel, _Agg()),
                session_kernels.setdefault(kernel, _Agg()),
            ):
                agg.add(inst, tinst, reason, samples)
                agg.mangled = agg.mangled or mangled
        range_rows = self._all(
            f"""SELECT b.path_id, CASE WHEN r.scope_inst IS NULL THEN 1 ELSE 0 END, d.value, {_RANGE_SUMS}
                FROM profile_ranges r
                LEFT JOIN scope_begins b ON b.session_id = r.session_id AND b.inst = r.scope_inst
                LEFT JOIN dicts d ON d.session_id = r.session_id AND d.stream = 'scope' AND d.kind = 'scope'
                     AND d.id = b.path_id
                WHERE r.session_id = ? GROUP BY b.path_id, CASE WHEN r.scope_inst IS NULL THEN 1 ELSE 0 END,
                      d.value""",
            [sid],
        )
        range_totals: dict[tuple[Any, int], dict[str, Any]] = {}
        for path_id, whole, path, *sums in range_rows:
            range_totals[(path_id, int(whole))] = _range_totals(sums)
            scopes.setdefault(
                (path_id, int(whole)),
                {"scope_id": path_id, "path": path, "whole_session": bool(whole), "all": _Agg(), "k": {}},
            )
        scope_items = []
        for key, s in scopes.items():
            scope_items.append(
                {
                    "scope_id": s["scope_id"],
                    "path": s["path"],
                    "whole_session": s["whole_session"],
                    **s["all"].out(),
                    "kernels": _kernels(s["k"]),
                    "ranges": range_totals.get(key, _range_totals((0, None, None, None, 0, None, None, 0))),
                }
            )
        scope_items.sort(
            key=lambda i: (
                not i["whole_session"],
                -(i["samples"] or 0),
                -(i["instructions"] or 0.0),
                i["path"] or "",
            )
        )
        totals = self._one(f"SELECT {_RANGE_SUMS} FROM profile_ranges r WHERE r.session_id = ?", [sid])
        errors = self._all(
            """SELECT error, count(*) FROM profile_ranges WHERE session_id = ? AND error IS NOT NULL
               GROUP BY error ORDER BY 2 DESC, 1 LIMIT 20""",
            [sid],
        )
        ranges = self._range_rows(sid, "", [], ranges_limit + 1)
        rt = _range_totals(totals)
        return {
            "session_id": sid,
            "has_data": bool(rows) or bool(range_rows),
            "scopes": scope_items,
            "figures": overall.out(),
            "kernels": _kernels(session_kernels),
            "range_totals": rt,
            "errors": [{"error": e, "ranges": int(n)} for e, n in errors],
            "ranges": ranges[:ranges_limit],
            "ranges_truncated": len(ranges) > ranges_limit,
        }

    def deep_scope(self, sid: str, scope_id: int, instances_limit: int = 100) -> dict[str, Any]:
        """One scope path's deep data: per kernel, and per scope instance (the first ``instances_limit`` by
        start) per kernel, with each instance's range. Only samples of the path itself (a deep scope nested
        in it has its own ranges). NotFound for an unknown scope path."""
        path = self._one(
            "SELECT value FROM dicts WHERE session_id = ? AND stream = 'scope' AND kind = 'scope' AND id = ?",
            [sid, scope_id],
        )
        if path is None:
            raise NotFound(f"{sid}/{scope_id}")
        # The path's kernels over every instance, summed by the store.
        kernels: dict[str | None, _Agg] = {}
        for kernel, mangled, reason, i, t, n in self._all(
            f"""SELECT {_KERNEL}, max(kd.mangled), p.stall_reason, {_SUMS}
                {_FROM}
                WHERE p.session_id = ? AND b.path_id = ?
                GROUP BY {_KERNEL}, p.stall_reason""",
            [sid, scope_id],
        ):
            agg = kernels.setdefault(kernel, _Agg())
            agg.add(i, t, reason, n)
            agg.mangled = agg.mangled or mangled
        # The path's instances that have samples or a range, by start; only the first ``instances_limit`` are
        # read in detail (a path may have run a million times).
        instances = """SELECT inst, min(ts) AS ts FROM (
                SELECT p.scope_inst AS inst, b.ts_ns AS ts FROM profile_samples p
                JOIN scope_begins b ON b.session_id = p.session_id AND b.inst = p.scope_inst
                WHERE p.session_id = ? AND b.path_id = ?
                UNION ALL
                SELECT r.scope_inst, r.start_ns FROM profile_ranges r
                JOIN scope_begins b ON b.session_id = r.session_id AND b.inst = r.scope_inst
                WHERE r.session_id = ? AND b.path_id = ?
            ) t GROUP BY inst"""
        params: list[Any] = [sid, scope_id, sid, scope_id]
        total_row = self._one(f"SELECT count(*) FROM ({instances}) x", params)
        total = int(total_row[0]) if total_row else 0
        shown = [
            int(r[0]) for r in self._all(f"{instances} ORDER BY ts, inst LIMIT ?", [*params, instances_limit])
        ]
        insts: dict[int, dict[str | None, _Agg]] = {x: {} for x in shown}
        ranges: dict[int, dict[str, Any]] = {}
        if shown:
            marks = ", ".join("?" * len(shown))
            for inst, kernel, mangled, reason, i, t, n in self._all(
                f"""SELECT p.scope_inst, {_KERNEL}, max(kd.mangled), p.stall_reason, {_SUMS}
                    {_FROM}
                    WHERE p.session_id = ? AND p.scope_inst IN ({marks})
                    GROUP BY p.scope_inst, {_KERNEL}, p.stall_reason""",
                [sid, *shown],
            ):
                agg = insts[int(inst)].setdefault(kernel, _Agg())
                agg.add(i, t, reason, n)
                agg.mangled = agg.mangled or mangled
            ranges = {
                r["scope_inst"]: r
                for r in self._range_rows(sid, f"AND r.scope_inst IN ({marks})", shown, 2**31 - 1)
            }
        return {
            "scope_id": scope_id,
            "path": path[0],
            "kernels": _kernels(kernels),
            "instances": [{"inst": x, "range": ranges.get(x), "kernels": _kernels(insts[x])} for x in shown],
            "instances_total": total,
            "truncated": total > len(shown),
        }

    def deep_lines(
        self, sid: str, kernel: str, scope_id: int | None = None, by: str = "line", limit: int = 200
    ) -> dict[str, Any]:
        """One kernel's samples per source line (``by="line"``; a PC without line info is its own row) or per
        PC (``by="pc"``), hot first: by PC samples, then by instructions; the first ``limit`` rows, the cut
        stated. ``scope_id``: only that scope path's samples. NotFound where the kernel has no sample."""
        where: str = ""
        params: list[Any] = [sid, kernel]
        if scope_id is not None:
            where, params = " AND b.path_id = ?", [*params, scope_id]
        rows = self._all(
            f"""SELECT {_FILE}, p.source_line, p.pc_offset, p.stall_reason, {_SUMS}
                {_FROM}
                LEFT JOIN dicts fd ON fd.session_id = p.session_id AND fd.stream = 'scope'
                     AND fd.kind = 'source_file' AND fd.id = p.source_file_id
                WHERE p.session_id = ? AND {_KERNEL} = ?{where}
                GROUP BY {_FILE}, p.source_line, p.pc_offset, p.stall_reason""",
            params,
        )
        if not rows:
            raise NotFound(f"{sid}: no deep-engine sample of kernel {kernel!r}")
        total = _Agg()
        groups: dict[tuple[Any, ...], tuple[_Agg, set[Any]]] = {}
        for file, line, pc, reason, inst, tinst, n in rows:
            if by == "pc" or line is None:
                key: tuple[Any, ...] = (file, line, pc)
            else:
                key = (file, line, None)
            agg, pcs = groups.setdefault(key, (_Agg(), set()))
            agg.add(inst, tinst, reason, n)
            total.add(inst, tinst, reason, n)
            pcs.add(pc)
        kernel_samples = total.samples
        items = []
        for (file, line, pc), (agg, pcs) in groups.items():
            o = agg.out(TOP_STALLS)
            items.append(
                {
                    "source_file": file,
                    "source_line": line,
                    "pc_offset": pc,
                    "pcs": len(pcs),
                    **o,
                    "sample_share": (o["samples"] or 0) / kernel_samples if kernel_samples else 0.0,
                }
            )
        items.sort(
            key=lambda i: (
                -(i["samples"] or 0),
                -(i["instructions"] or 0.0),
                i["source_file"] or "",
                i["source_line"] if i["source_line"] is not None else -1,
                i["pc_offset"] if i["pc_offset"] is not None else -1,
            )
        )
        return {
            "kernel": kernel,
            "scope_id": scope_id,
            "by": by,
            **total.out(),
            "lines_total": len(items),
            "truncated": len(items) > limit,
            "items": items[:limit],
        }
