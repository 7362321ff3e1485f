"""``gpufl summary <log folder | segment | session id>``: a terminal report straight from the logs, no
backend needed (like ``nsys stats``): kernels, launch API, copies, memsets, CUDA streams, scopes and GPU
utilisation per session, as text, JSON or CSV; and the insights (``gpufl.insights``: what looks wrong, with
its evidence: the same rules as the dashboard's Insights panel).

Statistics are exact, computed from every record (no sampling): min, median, max, mean and stddev of the
durations. The median of an even number of values is the mean of the two middle ones; stddev is the sample
standard deviation (n - 1), 0 for a single value. A scope's "kernel time" is the sum of the durations of the
kernels attributed to it (the same definition as the API and the dashboard); copy and memset time are shown
in their own column."""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufl.contract import events
from gpufl.insights.records import facts_from_records
from gpufl.insights.rules import Fact, run_rules

TABLES = ("kernels", "launch_api", "copies", "memsets", "streams", "scopes", "utilisation", "insights")
NAME_WIDTH = 100
"""Kernel names longer than this are shortened in the middle in text output (``--wide`` prints them whole)."""


@dataclass
class _Session:
    streams: dict[str, list[events.Record]] = field(default_factory=lambda: {s: [] for s in events.STREAMS})
    files: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


def _sessions(target: Path, session: str | None) -> dict[str, _Session]:
    files = [target] if target.is_file() else sorted(target.glob("*.log"))
    out: dict[str, _Session] = defaultdict(_Session)
    for path in files:
        name = events.parse_segment_name(path.name)
        if name is None or (session and name.session_id != session):
            continue
        s = out[name.session_id]
        s.files[name.stream].append(path.name)
        for line in path.read_bytes().split(b"\n")[:-1]:
            try:
                rec = events.decode(line)
            except events.ContractError:
                continue  # the agent dead-letters bad lines; a report skips them
            s.streams[name.stream].append(rec)
    return out


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""


def _stats(d: list[int]) -> list[Any]:
    """count, total, min, median, max, mean, stddev of durations in ns (exact, from every value)."""
    if not d:
        return [0, 0, None, None, None, None, None]
    return [
        len(d),
        sum(d),
        min(d),
        statistics.median(d),  # even n: the mean of the two middle values
        max(d),
        statistics.fmean(d),
        statistics.stdev(d) if len(d) > 1 else 0.0,
    ]


_STAT_COLS = ["count", "total_ns", "min_ns", "median_ns", "max_ns", "mean_ns", "stddev_ns"]


def _busy_ns(intervals: list[tuple[int, int]]) -> int:
    """The union of the intervals: time the stream had any work, overlaps counted once."""
    busy, cur_s, cur_e = 0, None, 0
    for s, e in sorted(intervals):
        if cur_s is None or s > cur_e:
            if cur_s is not None:
                busy += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_s is not None:
        busy += cur_e - cur_s
    return busy


def _limit(rows: list[list[Any]], top: int) -> list[list[Any]]:
    return rows[:top] if top > 0 else rows


def tables(sess: _Session, top: int) -> dict[str, Table]:
    dev, scope, system = sess.streams["device"], sess.streams["scope"], sess.streams["system"]
    out: dict[str, Table] = {}
    launches = {r.id: r.launch for r in dev if isinstance(r, events.DictEntry) and r.launch}
    kernels = [r for r in dev if isinstance(r, events.Kernel)]
    copies = [r for r in dev if isinstance(r, events.Memcpy)]
    memsets = [r for r in dev if isinstance(r, events.Memset)]

    def kname(r: events.Kernel) -> str:
        lc = launches.get(r.launch_id)
        return lc.name if lc else f"launch#{r.launch_id}"

    by_name: dict[str, list[int]] = defaultdict(list)
    api: dict[str, list[int]] = defaultdict(list)
    for r in kernels:
        by_name[kname(r)].append(r.end_ns - r.start_ns)
        if r.api_dur_ns is not None:
            api[kname(r)].append(r.api_dur_ns)
    total = sum(sum(v) for v in by_name.values())
    rows = [[name, *_stats(d)] for name, d in by_name.items()]
    rows.sort(key=lambda row: -row[2])
    for row in rows:
        row.insert(1, 100 * row[2] / total if total else 0.0)
    out["kernels"] = Table(
        f"Kernels: {len(kernels):,} launches, {_ms(total)} ms GPU time",
        ["name", "share_pct", *_STAT_COLS],
        _limit(rows, top),
    )
    api_rows: list[list[Any]] = []
    all_api = [x for v in api.values() for x in v]
    if all_api:
        api_rows.append(
            ["(all kernels)", len(all_api), sum(all_api), statistics.fmean(all_api), max(all_api)]
        )
        per: list[list[Any]] = [[n, len(v), sum(v), statistics.fmean(v), max(v)] for n, v in api.items()]
        per.sort(key=lambda row: -row[2])
        api_rows += _limit(per, top)
    out["launch_api"] = Table(
        "Launch API (host time in the CUDA launch call, api_dur_ns):",
        ["name", "count", "total_ns", "mean_ns", "max_ns"],
        api_rows,
    )
    by_kind: dict[tuple[str, str, str], list[events.Memcpy]] = defaultdict(list)
    for c in copies:
        by_kind[(c.copy_kind, c.src_kind, c.dst_kind)].append(c)
    crow = []
    for (kind, src, dst), cs in by_kind.items():
        nbytes = sum(c.bytes for c in cs)
        st = _stats([c.end_ns - c.start_ns for c in cs])
        crow.append([f"{kind} {src}→{dst}", nbytes, *st, nbytes / st[1] if st[1] else 0.0])
    crow.sort(key=lambda row: -row[1])
    out["copies"] = Table("Memory copies:", ["kind", "bytes", *_STAT_COLS, "gb_per_s"], crow)
    by_mem: dict[str, list[events.Memset]] = defaultdict(list)
    for m in memsets:
        by_mem[m.mem_kind].append(m)
    mrow = [
        [k, sum(m.bytes for m in ms), *_stats([m.end_ns - m.start_ns for m in ms])]
        for k, ms in by_mem.items()
    ]
    mrow.sort(key=lambda row: -row[1])
    out["memsets"] = Table("Memsets:", ["mem_kind", "bytes", *_STAT_COLS], mrow)
    per_stream: dict[tuple[int, int], list[Any]] = defaultdict(lambda: [0, 0, 0, []])
    for act in (*kernels, *copies, *memsets):
        ps = per_stream[(act.device_id, act.stream_id)]
        ps[0 if isinstance(act, events.Kernel) else 1 if isinstance(act, events.Memcpy) else 2] += 1
        ps[3].append((act.start_ns, act.end_ns))
    out["streams"] = Table(
        "CUDA streams (busy = union of kernel, copy and memset intervals):",
        ["device", "cuda_stream", "kernels", "copies", "memsets", "busy_ns"],
        [[d, s, k, c, m, _busy_ns(iv)] for (d, s), (k, c, m, iv) in sorted(per_stream.items())],
    )
    paths = {r.id: r.value for r in scope if isinstance(r, events.DictEntry) and r.kind == "scope"}
    begins = {r.inst: r for r in scope if isinstance(r, events.ScopeBegin)}
    ends = {r.inst: r.ts_ns for r in scope if isinstance(r, events.ScopeEnd)}
    # A scope's kernel time counts kernels only, as the API and the dashboard do (issue #25: the CLI once
    # added copies and memsets, so the same scope showed two different "GPU" times); copies and memsets
    # get their own, separately labelled column.
    k_ns: dict[int, int] = defaultdict(int)
    cm_ns: dict[int, int] = defaultdict(int)
    acts: list[events.Kernel | events.Memcpy | events.Memset] = [*kernels, *copies, *memsets]
    for act2 in acts:
        if act2.scope_inst is not None:
            (k_ns if isinstance(act2, events.Kernel) else cm_ns)[act2.scope_inst] += (
                act2.end_ns - act2.start_ns
            )
    agg: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for inst, begin in begins.items():
        a = agg[paths.get(begin.path_id) or "?"]
        a[0] += 1
        a[1] += ends.get(inst, begin.ts_ns) - begin.ts_ns
        a[2] += k_ns.get(inst, 0)
        a[3] += cm_ns.get(inst, 0)
    out["scopes"] = Table(
        "Scopes (kernel time = kernels attributed to the scope, as in the API and UI):",
        ["path", "calls", "wall_ns", "kernel_ns", "copy_memset_ns"],
        [[p, *a] for p, a in sorted(agg.items())],
    )
    per_dev: dict[int, list[float]] = defaultdict(list)
    for rec in system:
        if isinstance(rec, events.SystemSample):
            for g in rec.gpus:
                if g.util_gpu_pct is not None:
                    per_dev[g.device_id].append(g.util_gpu_pct)
    out["utilisation"] = Table(
        "GPU utilisation (NVML samples):",
        ["device", "mean_pct", "max_pct", "samples"],
        [[d, statistics.fmean(u), max(u), len(u)] for d, u in sorted(per_dev.items())],
    )
    out["insights"] = insights_table(sess)
    return out


def _fact_text(f: Fact) -> str:
    v = f.value
    if isinstance(v, str):
        return f"{f.label}: {v}"
    unit = {
        "ns": " ns",
        "bytes": " B",
        "pct": " %",
        "mhz": " MHz",
        "celsius": " °C",
        "mw": " mW",
        "mib": " MiB",
    }
    return f"{f.label}: {v:,}{unit.get(f.unit, ' GB/s' if f.unit == 'gbps' else '')}"


def insights_table(sess: _Session) -> Table:
    """The insight rules over the session's records; rules that could not run are listed in the note."""
    every = [r for recs in sess.streams.values() for r in recs]
    sid = every[0].session_id if every else ""
    found, status = run_rules(facts_from_records(sid, every))
    skipped = [f"{s.rule} ({s.reason})" for s in status if s.status == "not_checked"]
    return Table(
        f"Insights: {len(found)} found",
        ["severity", "rule", "title", "suggestion", "start_ns", "end_ns", "evidence"],
        [
            [
                i.severity,
                i.rule,
                i.title,
                i.suggestion,
                i.start_ns,
                i.end_ns,
                "; ".join(map(_fact_text, i.facts)),
            ]
            for i in found
        ],
        "not checked: " + "; ".join(skipped) if skipped else "",
    )


def header(sess: _Session) -> dict[str, Any]:
    """Who ran, which streams were given, and which of them lack their session_end (cut short)."""
    every = [r for recs in sess.streams.values() for r in recs]
    start = next((r for r in every if isinstance(r, events.SessionStart)), None)
    given = [s for s in events.STREAMS if sess.streams[s]]
    # Each stream's writer ends its own stream with session_end, so the judgement is per stream present:
    # a scope segment given alone is complete if it holds its session_end, whatever the device stream did.
    cut = [s for s in given if not any(isinstance(r, events.SessionEnd) for r in sess.streams[s])]
    return {
        "session_id": start.session_id if start else (every[0].session_id if every else None),
        "app": start.app if start else None,
        "host": start.host if start else None,
        "pid": start.pid if start else None,
        "start_ns": start.start_ns if start else None,
        "gpus": [d.name for d in start.devices] if start else [],
        "streams_given": given,
        "files": {s: sess.files[s] for s in given},
        "streams_without_session_end": cut,
    }


def _ms(ns: float | None) -> str:
    return "" if ns is None else f"{ns / 1e6:,.3f}"


def _us(ns: float | None) -> str:
    return "" if ns is None else f"{ns / 1e3:,.2f}"


def shorten_names(names: Iterable[str], width: int) -> dict[str, str]:
    """Names at most ``width`` long, shortened in the middle (the start and the distinguishing end stay),
    and distinct names never shortened to the same text: where two would be, around the first character
    that tells them apart is kept, and failing that the full name is shown."""
    names = list(dict.fromkeys(names))
    half = max((width - 1) // 2, 1)

    def cut(n: str) -> str:
        return n if len(n) <= width else n[:half] + "…" + n[len(n) - (width - 1 - half) :]

    out = {n: cut(n) for n in names}
    clash: dict[str, list[str]] = defaultdict(list)
    for n, s in out.items():
        clash[s].append(n)
    for group in (g for g in clash.values() if len(g) > 1):
        for n in group:
            # The first position where n differs from any of the others; keep a window around it.
            d = min(
                next((i for i, (a, b) in enumerate(zip(n, o, strict=False)) if a != b), min(len(n), len(o)))
                for o in group
                if o != n
            )
            third = max((width - 2) // 3, 1)  # head … window … tail, two ellipses
            lo = max(d - third // 2, third)
            mid = n[lo : lo + third]
            tail = n[len(n) - third :] if len(n) - third > lo + third else ""
            out[n] = n[:third] + ("…" if lo > third else "") + mid + ("…" + tail if tail else n[lo + third :])
    seen: dict[str, int] = defaultdict(int)
    for s in out.values():
        seen[s] += 1
    return {n: (s if seen[s] == 1 else n) for n, s in out.items()}


def render_text(head: dict[str, Any], tabs: dict[str, Table], wide: bool) -> list[str]:
    out: list[str] = []
    gpus = ", ".join(g or "?" for g in head["gpus"]) or "no GPU"
    out.append(f"Session {head['session_id']}: {head['app']} on {head['host']} (pid {head['pid']}), {gpus}")
    out.append(f"  streams given: {', '.join(head['streams_given'])}")
    if head["streams_without_session_end"]:
        out.append(
            f"  (no session_end in stream {', '.join(head['streams_without_session_end'])}: the session was cut"
            " short, or that stream's last segment was not given)"
        )
    names = [r[0] for key in ("kernels", "launch_api") for r in tabs[key].rows]
    short = {n: n for n in names} if wide else shorten_names(names, NAME_WIDTH)
    k = tabs["kernels"]
    if "device" in head["streams_given"]:
        out.append(k.title)
    if k.rows:
        out.append(
            f"  {'share':>6} {'total ms':>12} {'count':>8} {'min µs':>10} {'median µs':>10} {'max µs':>10}"
            f" {'mean µs':>10} {'stddev µs':>10}  name"
        )
    for name, share, n, tot, mn, med, mx, mean, sd in k.rows:
        out.append(
            f"  {share:>5.1f}% {_ms(tot):>12} {n:>8} {_us(mn):>10} {_us(med):>10} {_us(mx):>10} {_us(mean):>10}"
            f" {_us(sd):>10}  {short[name]}"
        )
    if tabs["launch_api"].rows:
        out.append(tabs["launch_api"].title)
        out.append(f"  {'count':>8} {'total ms':>12} {'mean µs':>10} {'max µs':>10}  kernel")
        for name, n, tot, mean, mx in tabs["launch_api"].rows:
            out.append(f"  {n:>8} {_ms(tot):>12} {_us(mean):>10} {_us(mx):>10}  {short.get(name, name)}")
    stat_head = f"{'count':>7} {'ms':>10} {'min µs':>9} {'median µs':>9} {'max µs':>9} {'stddev µs':>9}"
    if tabs["copies"].rows:
        out.append(tabs["copies"].title)
        out.append(f"  {'kind':<26} {'MiB':>10} {stat_head} {'GB/s':>8}")
        for kind, nbytes, n, tot, mn, med, mx, _mean, sd, gbps in tabs["copies"].rows:
            out.append(
                f"  {kind:<26} {nbytes / 2**20:>10.1f} {n:>7} {_ms(tot):>10} {_us(mn):>9} {_us(med):>9}"
                f" {_us(mx):>9} {_us(sd):>9} {gbps:>8.2f}"
            )
    if tabs["memsets"].rows:
        out.append(tabs["memsets"].title)
        out.append(f"  {'memory':<12} {'MiB':>10} {stat_head}")
        for kind, nbytes, n, tot, mn, med, mx, _mean, sd in tabs["memsets"].rows:
            out.append(
                f"  {kind:<12} {nbytes / 2**20:>10.1f} {n:>7} {_ms(tot):>10} {_us(mn):>9} {_us(med):>9}"
                f" {_us(mx):>9} {_us(sd):>9}"
            )
    if tabs["streams"].rows:
        out.append(tabs["streams"].title)
        out.append(
            f"  {'device':>6} {'stream':>7} {'kernels':>8} {'copies':>7} {'memsets':>8} {'busy ms':>12}"
        )
        for d, s, kk, c, m, busy in tabs["streams"].rows:
            out.append(f"  {d:>6} {s:>7} {kk:>8} {c:>7} {m:>8} {_ms(busy):>12}")
    if tabs["scopes"].rows:
        out.append(tabs["scopes"].title)
        out.append(f"  {'calls':>7} {'wall ms':>12} {'kernel ms':>12} {'copy+memset ms':>15}  path")
        for path, calls, wall, kns, cms in tabs["scopes"].rows:
            out.append(f"  {calls:>7} {_ms(wall):>12} {_ms(kns):>12} {_ms(cms):>15}  {path}")
    for d, mean, mx, n in tabs["utilisation"].rows:
        out.append(f"GPU {d} utilisation: mean {mean:.0f}%, max {mx:.0f}% ({n} samples)")
    ins = tabs["insights"]
    out.append(ins.title)
    for sev, _rule, title, suggestion, start, end, evidence in ins.rows:
        out.append(f"  [{sev}] {title}")
        out.append(f"      {evidence}")
        origin = head["start_ns"]
        when = (
            f"{(start - origin) / 1e9:,.3f} s to {(end - origin) / 1e9:,.3f} s after the session start"
            if origin is not None
            else f"{start} to {end} ns"
        )
        out.append(f"      {when}. {suggestion}")
    if ins.note:
        out.append(f"  {ins.note}")
    out.append("")
    return out


def render_csv(reports: list[tuple[dict[str, Any], dict[str, Table]]], only: str | None) -> str:
    """One CSV table per section, each after a ``# table: NAME`` line and separated by a blank line
    (``--table NAME`` prints that table alone, a plain CSV file). Times are in ns, unrounded."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for i, name in enumerate([only] if only else TABLES):
        if not only:
            if i:
                buf.write("\n")
            buf.write(f"# table: {name}\n")
        w.writerow(["session_id", *reports[0][1][name].columns] if reports else ["session_id"])
        for head, tabs in reports:
            for row in tabs[name].rows:
                w.writerow([head["session_id"], *row])
    return buf.getvalue()


def render_json(reports: list[tuple[dict[str, Any], dict[str, Table]]], only: str | None) -> str:
    docs = []
    for head, tabs in reports:
        docs.append(
            {
                **head,
                "tables": {
                    n: {
                        "title": t.title,
                        "columns": t.columns,
                        "rows": [dict(zip(t.columns, r, strict=True)) for r in t.rows],
                    }
                    for n, t in tabs.items()
                    if not only or n == only
                },
            }
        )
    return json.dumps(
        {"units": "ns", "median": "mean of the two middle values for even n", "sessions": docs}, indent=1
    )


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="gpufl summary",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("target", help="a log folder, a segment file, or a session id inside --log-dir")
    ap.add_argument(
        "--log-dir", default="./gpufl-logs", help="where a session id is looked up (default: %(default)s)"
    )
    ap.add_argument(
        "--top", type=int, default=15, help="kernel rows shown per table; 0 shows all (default: %(default)s)"
    )
    ap.add_argument(
        "--format",
        choices=("text", "json", "csv"),
        default="text",
        help="output format (default: %(default)s)",
    )
    ap.add_argument("--table", choices=TABLES, help="only this table (json, csv); default: every table")
    ap.add_argument(
        "--wide", action="store_true", help="print kernel names whole, not shortened in the middle"
    )
    args = ap.parse_args(argv)
    target = Path(args.target)
    session = None
    if not target.exists():
        looks_like_id = re.fullmatch(events.SESSION_ID_PATTERN, args.target) is not None
        log_dir = Path(args.log_dir)
        if not looks_like_id or not log_dir.is_dir():
            # Name what was asked for: the path given (issue #25: this once blamed ./gpufl-logs instead).
            why = f"no such folder or file: {args.target}"
            if looks_like_id:
                why += f" (nor a log folder {log_dir} to look it up in as a session id)"
            print(f"gpufl summary: {why}", file=sys.stderr)
            return 2
        session, target = args.target, log_dir
    sessions = _sessions(target, session)
    if not sessions:
        what = f"session {session} in " if session else ""
        print(f"gpufl summary: no gpufl segments of {what}{target}", file=sys.stderr)
        return 1
    reports = [(header(s), tables(s, args.top)) for s in sessions.values()]
    if args.format == "json":
        print(render_json(reports, args.table))
    elif args.format == "csv":
        sys.stdout.write(render_csv(reports, args.table))
    else:
        lines: list[str] = []
        for head, tabs in reports:
            lines += render_text(head, tabs, args.wide)
        print("\n".join(lines))
    return 0
