"""The write path: a batch of checked records of one log stream, deduplicated by (session, stream, seq)
against the stored ranges and written in one transaction with its summaries."""

from __future__ import annotations

import bisect
import operator
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from gpufl.backend.store.engine import IngestOutcome
from gpufl.backend.store.lod import LodStore
from gpufl.backend.store.schema import RECORD_TABLES, TABLES
from gpufl.contract import events as ev


def merge_ranges(ranges: list[tuple[int, int]], seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Union of inclusive ranges and a sorted list of seqs, as sorted, disjoint, non-adjacent ranges."""
    runs: list[tuple[int, int]] = []
    if seqs and seqs[-1] - seqs[0] + 1 == len(seqs):  # contiguous (the usual batch): one run
        runs, seqs = [(seqs[0], seqs[-1])], []
    for s in seqs:
        if runs and s <= runs[-1][1] + 1:
            if s > runs[-1][1]:
                runs[-1] = (runs[-1][0], s)
        else:
            runs.append((s, s))
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges + runs):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def covered(ranges: list[tuple[int, int]], seq: int) -> bool:
    """ranges: sorted, disjoint."""
    i = bisect.bisect_right(ranges, (seq, 2**64)) - 1
    return i >= 0 and ranges[i][0] <= seq <= ranges[i][1]


_json = msgspec.json.Encoder()


def _js(v: Any) -> str | None:
    return None if v is None else _json.encode(v).decode()


def _total(sizes: Sequence[int] | None) -> int:
    """Sum of ``sizes``; a sequence may carry it already (``total``) so that it is never split per record."""
    if sizes is None:
        return 0
    total = getattr(sizes, "total", None)
    return int(total) if total is not None else sum(sizes)


def _col(recs: Sequence[Any], name: str) -> list[Any]:
    return [getattr(r, name) for r in recs]


def _plain_columns(table: str) -> list[str]:
    return [c for c, _ in TABLES[table]]


class WriteStore(LodStore):
    # ---- ingest --------------------------------------------------------------------------------------

    def ingest(
        self,
        stream: str,
        records: Sequence[ev.Record],
        sizes: Sequence[int] | None = None,
        columns: dict[type, dict[str, Sequence[Any]]] | None = None,
        redeliver: bool = False,
    ) -> IngestOutcome:
        """Store the records of one stream that the store does not hold yet; count the rest as duplicates.

        ``records`` are valid (decoded + checked) records of ``stream``; ``sizes`` their encoded sizes
        (for the per-session byte accounting used by retention); ``columns`` optionally, per record type,
        every field of that type's records (in order) as a list, already built by the caller.

        Records of a session that retention deleted (``prune_session``) are not stored but listed in
        ``refused``: stored, they would be a fragment of it. ``redeliver`` marks a deliberate re-delivery
        of whole sessions: a batch of it that holds a deleted session's session_start clears that session's
        tombstone and is stored, re-creating the session; one without is refused like a late record."""
        out = IngestOutcome()
        if not records:
            return out
        single = columns is not None and len(columns) == 1
        if single:
            (only,) = columns.values()  # type: ignore[union-attr]
            sids = only["session_id"]
        else:
            sids = [r.session_id for r in records]
        by_session: dict[str, list[int]] = {}
        if len(set(sids)) == 1:  # the usual batch: one session
            by_session[sids[0]] = list(range(len(records)))
        else:
            for i, sid in enumerate(sids):
                by_session.setdefault(sid, []).append(i)
        with self._write() as cur:
            self._lock_streams(cur, sorted((s, stream) for s in by_session))
            # Under the stream locks, which prune_session takes too: a session is either deleted before
            # this batch (its records refused here) or after it (and the batch counts as activity).
            for sid in self._tombstoned(cur, by_session):
                idx = by_session[sid]
                if redeliver and any(type(records[i]) is ev.SessionStart for i in idx):
                    self._exec(cur, "DELETE FROM pruned_sessions WHERE session_id = ?", [sid])
                else:
                    out.refused[sid] = by_session.pop(sid)
            new: list[ev.Record] = []
            new_bytes: dict[str, int] = defaultdict(int)
            stored = self._stored_ranges(cur, stream, list(by_session))
            changed: dict[str, list[tuple[int, int]]] = {}
            for sid, idx in by_session.items():
                ranges = stored.get(sid, [])
                seqs = only["seq"] if single and len(idx) == len(records) else [records[i].seq for i in idx]
                lo, hi = min(seqs), max(seqs)
                uniq = set(seqs)
                if len(uniq) == len(seqs) and not any(a <= hi and b >= lo for a, b in ranges):
                    fresh = idx  # nothing stored overlaps this batch and it has no repeats
                else:
                    seen: set[int] = set()
                    fresh = []
                    for i, sq in zip(idx, seqs, strict=True):
                        if sq not in seen and not covered(ranges, sq):
                            seen.add(sq)
                            fresh.append(i)
                    uniq = seen
                out.duplicates += len(idx) - len(fresh)
                if not fresh:
                    continue
                # A gap-free batch (the usual case) is one run: no need to sort its seqs.
                if len(uniq) == hi - lo + 1:
                    merged = merge_ranges([*ranges, (lo, hi)], [])
                else:
                    merged = merge_ranges(ranges, sorted(uniq))
                if merged != ranges:
                    changed[sid] = merged
                if len(fresh) == len(records):
                    new = list(records)
                    new_bytes[sid] += _total(sizes)
                else:
                    new.extend(records[i] for i in fresh)
                    new_bytes[sid] += sum(sizes[i] for i in fresh) if sizes is not None else 0
            self._save_ranges(cur, stream, changed)
            out.stored = len(new)
            if len(new) == len(records):
                # every record is new: keep the batch's order, which the caller's columns are in (``new`` is
                # grouped by session: with the columns beside it, an interleaved batch of two sessions stored
                # one session's records under the other's id where a table mixes both)
                new = list(records)
            if new:
                whole = columns if len(new) == len(records) else None  # every record is new: reuse columns
                self._store_new(cur, stream, new, new_bytes, whole)
        if out.stored:
            self._count_batch(by_session)  # refused sessions were taken out of it
        return out

    def _tombstoned(self, cur: Any, sids: Iterable[str]) -> list[str]:
        """Which of ``sids`` retention deleted (their tombstones in pruned_sessions)."""
        ids = list(sids)
        marks = ", ".join("?" * len(ids))
        rows = self._exec(
            cur, f"SELECT session_id FROM pruned_sessions WHERE session_id IN ({marks})", ids
        ).fetchall()
        return [r[0] for r in rows]

    def _stored_ranges(self, cur: Any, stream: str, sids: list[str]) -> dict[str, list[tuple[int, int]]]:
        """The seq ranges stored for ``sids`` on ``stream``, each session's in order. One query for all of
        them: a query per session cost ~2.4 ms and ~25 KB of DuckDB memory held to the end of the
        transaction, each, so that one batch of 38,000 sessions (each a real session_start, within every
        limit) took 300 s and the backend past 1.3 GB (bench/backend_memory.py, issue #16)."""
        if not sids:
            return {}
        if len(sids) == 1:
            rows = self._exec(
                cur,
                "SELECT session_id, lo, hi FROM seq_ranges WHERE session_id = ? AND stream = ? ORDER BY lo",
                [sids[0], stream],
            ).fetchall()
        else:
            marks = ", ".join("?" * len(sids))
            rows = self._exec(
                cur,
                f"SELECT session_id, lo, hi FROM seq_ranges WHERE stream = ? AND session_id IN ({marks}) "
                "ORDER BY session_id, lo",
                [stream, *sids],
            ).fetchall()
        out: dict[str, list[tuple[int, int]]] = {}
        for sid, lo, hi in rows:
            out.setdefault(sid, []).append((int(lo), int(hi)))
        return out

    def _save_ranges(self, cur: Any, stream: str, changed: dict[str, list[tuple[int, int]]]) -> None:
        """Replace the seq ranges of the sessions in ``changed`` by theirs (one DELETE, one INSERT)."""
        if not changed:
            return
        sids = list(changed)
        if len(sids) == 1:
            self._exec(cur, "DELETE FROM seq_ranges WHERE session_id = ? AND stream = ?", [sids[0], stream])
        else:
            marks = ", ".join("?" * len(sids))
            self._exec(
                cur, f"DELETE FROM seq_ranges WHERE stream = ? AND session_id IN ({marks})", [stream, *sids]
            )
        merged = [(sid, r) for sid, ranges in changed.items() for r in ranges]
        self._stage(
            cur,
            "stage_ranges",
            "seq_ranges",
            {
                "session_id": [sid for sid, _ in merged],
                "stream": [stream] * len(merged),
                "lo": [a for _, (a, _) in merged],
                "hi": [b for _, (_, b) in merged],
            },
        )
        self._exec(cur, "INSERT INTO seq_ranges SELECT * FROM stage_ranges")
        self._unstage(cur, "stage_ranges")

    def _store_new(
        self,
        cur: Any,
        stream: str,
        recs: list[ev.Record],
        nbytes: dict[str, int],
        columns: dict[type, dict[str, Sequence[Any]]] | None = None,
    ) -> None:
        by_cls: dict[type, list[Any]] = defaultdict(list)
        if columns is not None and len(columns) == 1:
            by_cls[next(iter(columns))] = recs
        else:
            for r in recs:
                by_cls[type(r)].append(r)
        by_type = {ev.type_tag(t): rs for t, rs in by_cls.items()}
        pre = {ev.type_tag(t): c for t, c in (columns or {}).items()}

        def col(rs: list[Any], name: str, tag: str) -> Sequence[Any]:
            c = pre.get(tag)
            return c[name] if c is not None else list(map(operator.attrgetter(name), rs))

        # Per session: received count, time span, bytes; per (session, type): counts.
        activity: dict[str, list[Any]] = {}
        counts: Counter[tuple[str, str]] = Counter()

        def note(sids: Sequence[str], lo: Sequence[int | None], hi: Sequence[int | None]) -> None:
            groups: dict[str, tuple[Sequence[int | None], Sequence[int | None]]]
            if len(set(sids)) == 1:
                groups = {sids[0]: (lo, hi)}
            else:
                lists: dict[str, tuple[list[int | None], list[int | None]]] = {}
                for s_, a_, b_ in zip(sids, lo, hi, strict=True):
                    g = lists.setdefault(s_, ([], []))
                    g[0].append(a_)
                    g[1].append(b_)
                groups = dict(lists)
            for s_, (los, his) in groups.items():
                act = activity.setdefault(s_, [0, None, None])
                act[0] += len(los)
                # `None in` scans in C; most columns (a kernel's start and end) have no None to drop.
                lo_v: Sequence[int] = [v for v in los if v is not None] if None in los else los  # type: ignore[assignment]
                hi_v: Sequence[int] = [v for v in his if v is not None] if None in his else his  # type: ignore[assignment]
                if lo_v:
                    act[1] = min(lo_v) if act[1] is None else min(act[1], min(lo_v))
                if hi_v:
                    act[2] = max(hi_v) if act[2] is None else max(act[2], max(hi_v))

        for tag, rs in by_type.items():
            sids = col(rs, "session_id", tag)
            for s_, n_ in Counter(sids).items():
                counts[(s_, tag)] += n_
            if tag in ev.TIME_SPAN:
                a, b = ev.TIME_SPAN[tag]
                note(sids, col(rs, a, tag), col(rs, b, tag))
            else:
                note(sids, [None] * len(rs), [None] * len(rs))

            if tag in RECORD_TABLES:
                table = RECORD_TABLES[tag]
                cols = {n: col(rs, n, tag) for n in _plain_columns(table)}
                self._stage(cur, "stage_" + table, table, cols)
                names = ", ".join(cols)  # named: a store made by older code may order its columns otherwise
                self._exec(cur, f"INSERT INTO {table} ({names}) SELECT {names} FROM stage_{table}")
                self._summaries(cur, tag, "stage_" + table)
                self._unstage(cur, "stage_" + table)
            elif tag == "dict":
                self._store_dicts(cur, rs)
            elif tag == "session_start":
                self._store_starts(cur, rs)
            elif tag == "session_end":
                cols = {
                    c: _col(rs, c)
                    for c in ("session_id", "stream", "seq", "end_ns", "reason", "records", "dropped")
                }
                self._stage(cur, "stage_ends", "stream_ends", cols)
                self._exec(cur, "INSERT INTO stream_ends SELECT * FROM stage_ends ON CONFLICT DO NOTHING")
                self._unstage(cur, "stage_ends")
            elif tag == "system_sample":
                self._store_system(cur, rs)
            elif tag == "capture_window":
                self._store_windows(cur, rs)
            elif tag == "profile_range":
                self._store_profile_ranges(cur, rs)
            else:
                tcol = _col(rs, ev.TIME_SPAN[tag][0])
                cols = {
                    "session_id": sids,
                    "stream": _col(rs, "stream"),
                    "seq": _col(rs, "seq"),
                    "type": [tag] * len(rs),
                    "ts_ns": tcol,
                    "body": [_js(ev.to_builtins(r)) for r in rs],
                }
                self._stage(cur, "stage_other", "other_events", cols)
                self._exec(cur, "INSERT INTO other_events SELECT * FROM stage_other")
                self._unstage(cur, "stage_other")

        self._store_activity(cur, stream, activity, nbytes, counts)

    def _store_windows(self, cur: Any, rs: list[ev.CaptureWindow]) -> None:
        """capture_window records: the columns the API selects by, and the record whole (its trigger's fields
        vary by kind)."""
        cols = {
            "session_id": _col(rs, "session_id"),
            "seq": _col(rs, "seq"),
            "start_ns": _col(rs, "start_ns"),
            "end_ns": _col(rs, "end_ns"),
            "mode": [r.trigger.mode for r in rs],
            "trigger": [r.trigger.kind for r in rs],
            "requester": _col(rs, "requester"),
            "ended": _col(rs, "ended"),
            "body": [_js(ev.to_builtins(r)) for r in rs],
        }
        self._stage(cur, "stage_windows", "capture_windows", cols)
        self._exec(cur, "INSERT INTO capture_windows SELECT * FROM stage_windows")
        self._unstage(cur, "stage_windows")

    def _store_profile_ranges(self, cur: Any, rs: list[ev.ProfileRange]) -> None:
        """profile_range records (v6): every field a column; the engines as a JSON list, the flag as 0/1."""
        cols: dict[str, list[Any]] = {c: _col(rs, c) for c in _plain_columns("profile_ranges")}
        cols["engines"] = [_js(e) for e in cols["engines"]]
        cols["pc_buffer_full"] = [None if b is None else int(b) for b in cols["pc_buffer_full"]]
        self._stage(cur, "stage_pranges", "profile_ranges", cols)
        names = ", ".join(cols)
        self._exec(cur, f"INSERT INTO profile_ranges ({names}) SELECT {names} FROM stage_pranges")
        self._unstage(cur, "stage_pranges")

    def _store_activity(
        self,
        cur: Any,
        stream: str,
        activity: dict[str, list[Any]],
        nbytes: dict[str, int],
        counts: Counter[tuple[str, str]],
    ) -> None:
        """The batch's partial rows of session_streams (per session: [records, first_ns, last_ns]) and
        type_counts (per (session, type): records)."""
        now = time.time_ns()
        sids = sorted(activity)
        self._stage(
            cur,
            "stage_streams",
            "session_streams",
            {
                "session_id": sids,
                "stream": [stream] * len(sids),
                "received": [activity[s][0] for s in sids],
                "first_ns": [activity[s][1] for s in sids],
                "last_ns": [activity[s][2] for s in sids],
                "bytes": [nbytes.get(s, 0) for s in sids],
                "updated_ns": [now] * len(sids),
            },
        )
        self._exec(
            cur,
            "INSERT INTO session_streams SELECT * FROM stage_streams",
        )
        self._unstage(cur, "stage_streams")
        keys = sorted(counts)
        self._stage(
            cur,
            "stage_counts",
            "type_counts",
            {
                "session_id": [k[0] for k in keys],
                "type": [k[1] for k in keys],
                "n": [counts[k] for k in keys],
            },
        )
        self._exec(
            cur,
            "INSERT INTO type_counts SELECT * FROM stage_counts",
        )
        self._unstage(cur, "stage_counts")

    def _store_dicts(self, cur: Any, rs: list[ev.DictEntry]) -> None:
        # The same entry is re-emitted in every segment (same id, same value): the first stored wins.
        uniq: dict[tuple[str, str, str, int], ev.DictEntry] = {}
        for r in rs:
            uniq.setdefault((r.session_id, r.stream, r.kind, r.id), r)
        vals = list(uniq.values())
        cols: dict[str, list[Any]] = {
            "session_id": _col(vals, "session_id"),
            "stream": _col(vals, "stream"),
            "kind": _col(vals, "kind"),
            "id": _col(vals, "id"),
            "value": [r.launch.name if r.launch is not None else r.value for r in vals],
            "mangled": [
                r.launch.mangled if r.launch is not None and r.launch.mangled else r.mangled for r in vals
            ],
            "frames": [_js(r.frames) for r in vals],
            "launch": [_js(r.launch) for r in vals],
        }
        self._stage(cur, "stage_dicts", "dicts", cols)
        self._exec(cur, "INSERT INTO dicts SELECT * FROM stage_dicts ON CONFLICT DO NOTHING")
        self._unstage(cur, "stage_dicts")

    def _store_starts(self, cur: Any, rs: list[ev.SessionStart]) -> None:
        uniq = {r.session_id: r for r in rs}
        vals = list(uniq.values())
        cols: dict[str, list[Any]] = {
            "session_id": _col(vals, "session_id"),
            "host": _col(vals, "host"),
            "app": _col(vals, "app"),
            "pid": _col(vals, "pid"),
            "job_id": _col(vals, "job_id"),
            "start_ns": _col(vals, "start_ns"),
            "header": [_js(ev.to_builtins(r)) for r in vals],
        }
        self._stage(cur, "stage_sessions", "sessions", cols)
        self._exec(cur, "INSERT INTO sessions SELECT * FROM stage_sessions ON CONFLICT DO NOTHING")
        self._unstage(cur, "stage_sessions")

    def _store_system(self, cur: Any, rs: list[ev.SystemSample]) -> None:
        cols: dict[str, list[Any]] = {c: [] for c, _ in TABLES["system_points"]}
        sid, seq, ts, dev, met, val = (cols[c] for c, _ in TABLES["system_points"])

        def add(r: ev.SystemSample, d: int, m: str, v: Any) -> None:
            sid.append(r.session_id)
            seq.append(r.seq)
            ts.append(r.ts_ns)
            dev.append(d)
            met.append(m)
            val.append(float(v))

        for r in rs:
            if r.host is not None:
                for m, v in msgspec.to_builtins(r.host).items():
                    if v is not None:
                        add(r, -1, m, v)
            for g in r.gpus:
                for m, v in msgspec.to_builtins(g).items():
                    if m != "device_id" and v is not None:
                        add(r, g.device_id, m, v)
        if sid:
            self._stage(cur, "stage_system", "system_points", cols)
            self._exec(cur, "INSERT INTO system_points SELECT * FROM stage_system")
            self._unstage(cur, "stage_system")
