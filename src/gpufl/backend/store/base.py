"""The store: one interface, two engines (DuckDB embedded, PostgreSQL shared).

Almost all SQL is shared; an engine supplies connections, bulk staging of a batch (``_stage``), integer
division, and its own locking. Every batch is one transaction: dedup ranges, raw rows and summaries
commit together, so a crash or a retry never double-counts.
"""

from __future__ import annotations

import bisect
import json
import operator
import os
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from gpufl.backend import sketch
from gpufl.backend.store.migrations import LATEST, MIGRATIONS
from gpufl.backend.store.schema import LOD_SHIFTS, SESSION_TABLES, TABLES
from gpufl.contract import events as ev

Row = tuple[Any, ...]


STAGING_PREFIX, STAGING_SUFFIX = "gpufl-batch-", ".ndjson"
_STALE_TMP_S = 3600


def sweep_staging(folder: Path) -> None:
    """Delete the batch files left in a store's staging ``folder`` (a backend killed mid-batch leaves its
    file: every one there is stale once the store is open, its engine locking the store file), and those
    over an hour old in the system temp directory, where earlier versions staged them (a batch file lives
    for one batch's parse, so a younger one may be another backend's)."""
    for p in folder.glob(f"{STAGING_PREFIX}*{STAGING_SUFFIX}"):
        p.unlink(missing_ok=True)
    cutoff = time.time() - _STALE_TMP_S
    try:
        old = list(Path(tempfile.gettempdir()).glob(f"{STAGING_PREFIX}*{STAGING_SUFFIX}"))
    except OSError:
        return
    for p in old:
        try:
            if p.is_file() and p.stat().st_mtime < cutoff:
                p.unlink()
        except OSError:
            pass  # another user's, or gone meanwhile


class StoreError(RuntimeError):
    """The store could not be opened or used (unreachable database, bad URL)."""


class NotFound(LookupError):
    pass


class ValueOutOfRange(ValueError):
    """A value does not fit its column (an integer past int64); the batch's transaction was rolled back."""


class StageRefused(ValueError):
    """The engine's JSON reader did not take a batch as msgspec did (a duplicate key, whose last value
    msgspec keeps; an integer past int64): the caller stores the batch from its decoded records instead."""


class _NotHere(Exception):
    """``ingest_json`` can't store this batch as is (a check failed, a record repeats or is held already):
    roll back and let the caller take the record path."""


@dataclass
class IngestOutcome:
    stored: int = 0
    duplicates: int = 0
    refused: dict[str, list[int]] = field(default_factory=dict)
    """Per session that retention deleted (a tombstone), the positions in the batch of its records, which
    were not stored: see ``SqlStore.ingest``'s ``redeliver``."""


@dataclass
class Cursor:
    """An opaque position in an ordered list: (sort key, tie-breaker)."""

    key: int
    tie: str | int


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


def _columns(recs: Sequence[ev.Record], names: Sequence[str]) -> dict[str, list[Any]]:
    """Columns of same-typed records (a comprehension per column: allocates no per-record objects, so it
    stays fast when the garbage collector is busy, unlike astuple + transpose)."""
    return {n: [getattr(r, n) for r in recs] for n in names}


def _plain_columns(table: str) -> list[str]:
    return [c for c, _ in TABLES[table]]


# Record types whose table's columns are exactly fields of the record, stored verbatim.
_PLAIN = {"kernel": "kernels", "memcpy": "memcpys", "memset": "memsets", "scope_begin": "scope_begins"}
_PLAIN |= {"scope_end": "scope_ends", "profile_sample": "profile_samples"}
_TS_FIELDS = {
    "kernel": ("start_ns", "end_ns"),
    "memcpy": ("start_ns", "end_ns"),
    "memset": ("start_ns", "end_ns"),
    "scope_begin": ("ts_ns", "ts_ns"),
    "scope_end": ("ts_ns", "ts_ns"),
    "system_sample": ("ts_ns", "ts_ns"),
    "session_start": ("start_ns", "start_ns"),
    "session_end": ("end_ns", "end_ns"),
}
# Record types whose batches the engine may parse from JSON text itself (``SqlStore.ingest_json``): stored
# verbatim in one table, with no float column (integers and escape-free strings read the same in any JSON
# parser; two float parsers need not agree on every digit string).
JSON_TYPES: dict[str, str] = {
    tag: table for tag, table in _PLAIN.items() if all(code != "F" for _, code in TABLES[table])
}


def _sql_literal(value: Any) -> str | None:
    """A field's default as an SQL literal (None: no default, or null)."""
    if value is None or value is msgspec.NODEFAULT:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"no SQL literal for default {value!r}")
    return str(value) if isinstance(value, int) else "'" + value.replace("'", "''") + "'"


_OTHER_TS = {"dropped": "first_ns", "segments_deleted": "ts_ns", "notice": "ts_ns", "capture_gap": "start_ns"}
_GPU_FIELDS = [f.name for f in msgspec.structs.fields(ev.GpuSample) if f.name != "device_id"]
_HOST_FIELDS = [f.name for f in msgspec.structs.fields(ev.HostSample)]


class SqlStore:
    """Shared implementation. Subclasses: DuckDBStore, PostgresStore."""

    engine = "sql"
    _since_compact: dict[str, int]
    sql_types: ClassVar[dict[str, str]] = {}

    # ---- engine hooks -------------------------------------------------------------------------------

    def _read(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Any]:
        """A cursor inside one transaction (committed on exit, rolled back on error)."""
        raise NotImplementedError

    def _q(self, sql: str) -> str:
        return sql

    def _stage(self, cur: Any, name: str, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        """Make ``columns`` (all of ``table``'s columns, equal-length lists) visible as relation ``name``
        for the rest of the transaction."""
        raise NotImplementedError

    def _unstage(self, cur: Any, name: str) -> None:
        pass

    def _lock_streams(self, cur: Any, keys: list[tuple[str, str]]) -> None:
        """Serialise ingest of the same (session, stream) across processes (no-op where single-process)."""

    def _idiv(self, a: str, b: str) -> str:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # ---- helpers -------------------------------------------------------------------------------------

    def _exec(self, cur: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        cur.execute(self._q(sql), list(params))
        return cur

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._read() as cur:
            rows: list[Row] = self._exec(cur, sql, params).fetchall()
            return rows

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    # ---- migrations ----------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Apply the missing schema versions in order, one transaction each. Backends starting together
        on one PostgreSQL serialise on an advisory lock, so each version is applied once."""
        for version in sorted(MIGRATIONS):
            with self._write() as cur:
                self._lock_streams(cur, [("__migrations__", "")])
                self._exec(
                    cur,
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ns BIGINT)",
                )
                done = self._exec(
                    cur, "SELECT 1 FROM schema_migrations WHERE version = ?", [version]
                ).fetchall()
                if done:
                    continue
                for stmt in MIGRATIONS[version](self.engine, self.sql_types):
                    self._exec(cur, stmt)
                self._exec(cur, "INSERT INTO schema_migrations VALUES (?, ?)", [version, time.time_ns()])

    def schema_version(self) -> int:
        row = self._one("SELECT max(version) FROM schema_migrations")
        return int(row[0]) if row and row[0] is not None else 0

    latest_version = LATEST

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
            for sid, idx in by_session.items():
                rows = self._exec(
                    cur,
                    "SELECT lo, hi FROM seq_ranges WHERE session_id = ? AND stream = ? ORDER BY lo",
                    [sid, stream],
                ).fetchall()
                ranges = [(int(a), int(b)) for a, b in rows]
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
                self._save_ranges(cur, sid, stream, ranges, merged)
                if len(fresh) == len(records):
                    new = list(records)
                    new_bytes[sid] += _total(sizes)
                else:
                    new.extend(records[i] for i in fresh)
                    new_bytes[sid] += sum(sizes[i] for i in fresh) if sizes is not None else 0
            out.stored = len(new)
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

    def _save_ranges(
        self, cur: Any, sid: str, stream: str, ranges: list[tuple[int, int]], merged: list[tuple[int, int]]
    ) -> None:
        if merged == ranges:
            return
        self._exec(cur, "DELETE FROM seq_ranges WHERE session_id = ? AND stream = ?", [sid, stream])
        self._stage(
            cur,
            "stage_ranges",
            "seq_ranges",
            {
                "session_id": [sid] * len(merged),
                "stream": [stream] * len(merged),
                "lo": [a for a, _ in merged],
                "hi": [b for _, b in merged],
            },
        )
        self._exec(cur, "INSERT INTO seq_ranges SELECT * FROM stage_ranges")
        self._unstage(cur, "stage_ranges")

    json_stage: ClassVar[bool] = False
    """The engine reads NDJSON itself (``_parse_json``), so ``ingest_json`` can store a batch."""
    staging_dir: Path | None = None
    """Where ``ingest_json`` writes a batch for the engine to read: a folder of the store's own (swept when
    the store opens, ``sweep_staging``), or None for the system temp directory (an in-memory store)."""

    def _parse_json(
        self, cur: Any, name: str, path: str, columns: Sequence[tuple[str, str, str | None]]
    ) -> None:
        """Make the records of the NDJSON file ``path`` a temporary table ``name`` with ``columns`` (name,
        type code, SQL literal for an absent field or None), visible to this thread's reads and writes; or
        raise StageRefused where the engine's reader refuses a record. Runs outside the write lock."""
        raise NotImplementedError

    def _script(self, cur: Any, statements: Sequence[str]) -> Any:
        """Run ``statements`` (no parameters) in order; returns the cursor holding the last one's result."""
        out = None
        for q in statements:
            out = self._exec(cur, q)
        return out

    def ingest_json(
        self,
        stream: str,
        cls: type[ev.Record],
        text: bytes,
        count: int,
        nbytes: int,
        valid: Callable[[], bool] | None = None,
    ) -> IngestOutcome | None:
        """Store a batch of ``count`` records of one type of JSON_TYPES from its NDJSON ``text`` (one record
        per line, no backslash, ``nbytes`` bytes without the newlines), the engine parsing it (``_parse_json``).
        ``valid``: where the caller's decode runs at the same time as the engine's parse, it waits for that
        decode and says whether it found ``count`` valid records of ``cls``; nothing is written before it
        said yes.

        The caller has decoded the batch with msgspec: that decode is what makes a record valid (types,
        required fields, literals), and the engine only supplies the values, which for such text are the
        same (a duplicate key, where msgspec keeps the last value, makes the engine refuse the batch). The
        rest of the contract (``gpufl.contract.events.check``) is checked here in SQL. Returns None, having stored
        nothing, where the record path must do it: a check fails (it finds which record and why), the
        engine refuses the text, the batch spans sessions, or a record repeats or is held already (it
        counts the duplicates).

        Parsing and checking are done before the write lock is taken, overlapping the batch being written;
        under the lock the writes and the summaries' rows (aggregated from the parsed batch straight into
        their tables) go to the engine as one script, because each return to Python has to wait for the GIL
        while another request's thread runs Python."""
        tag = ev.type_tag(cls)
        table = JSON_TYPES.get(tag)
        if (
            not self.json_stage
            or table is None
            or stream not in ev.STREAMS
            or tag not in ev.STREAM_TYPES[stream]
        ):
            return None
        defaults = {f.name: f.default for f in msgspec.structs.fields(cls)}
        columns = [(c, code, _sql_literal(defaults[c])) for c, code in TABLES[table]]
        columns.append(("stream", "T", None))
        name = "json_" + table
        with self._read() as cur:
            try:
                try:
                    fd, path = tempfile.mkstemp(
                        prefix=STAGING_PREFIX, suffix=STAGING_SUFFIX, dir=self.staging_dir
                    )
                except OSError:
                    return None  # no writable staging folder: the Python path needs none
                try:
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(text)
                    self._parse_json(cur, name, path, columns)
                except OSError:
                    return None  # e.g. the temp directory is full
                finally:
                    os.unlink(path)
                return self._ingest_parsed(cur, stream, tag, table, name, columns, count, nbytes, valid)
            except StageRefused:
                return None
            finally:
                self._script(cur, [f"DROP TABLE IF EXISTS {t}" for t in (name, f"{name}_facts")])

    def _ingest_parsed(
        self,
        read_cur: Any,
        stream: str,
        tag: str,
        table: str,
        name: str,
        columns: list[tuple[str, str, str | None]],
        count: int,
        nbytes: int,
        valid: Callable[[], bool] | None = None,
    ) -> IngestOutcome | None:
        names = {c for c, _, _ in columns}
        first, last = _TS_FIELDS[tag]
        # The batch's facts, kept in a one-row table so that the writes below take the session id from
        # it: no value of a record is spliced into SQL (``stream`` and ``tag`` are this module's names).
        facts = {
            "n": "count(*)",
            "sid": "min(session_id)",
            "sid_max": "max(session_id)",  # equal to the minimum: one id, whose form is checked below
            "lo": "min(seq)",
            "hi": "max(seq)",
            # No seq at or below the one before it, in whatever order the rows are scanned: a strictly
            # increasing sequence, so the seqs are distinct (the usual batch) without hashing them.
            # (A comparison, not a difference: no overflow, whatever the seqs.)
            "unordered": "count(*) FILTER (WHERE seq <= prev_seq)",
            "off_stream": f"count(*) FILTER (WHERE stream <> '{stream}')",
            "reversed": "count(*) FILTER (WHERE end_ns < start_ns)"
            if {"start_ns", "end_ns"} <= names
            else "0",
            "first_ns": f"min({first})",
            "last_ns": f"max({last})",
        }
        got = self._script(
            read_cur,
            [
                f"CREATE OR REPLACE TEMP TABLE {name}_facts AS SELECT "
                + ", ".join(f"{e} AS {k}" for k, e in facts.items())
                + f" FROM (SELECT *, lag(seq) OVER () AS prev_seq FROM {name}) t",
                f"SELECT * FROM {name}_facts",
            ],
        )
        row = dict(zip(facts, got.fetchall()[0], strict=True))
        n, sid, lo, hi = row["n"], row["sid"], row["lo"], row["hi"]
        if row["unordered"]:
            row["seqs"] = self._exec(read_cur, f"SELECT count(DISTINCT seq) FROM {name}").fetchall()[0][0]
        else:
            row["seqs"] = n
        # The numbers' ranges are the decoder's (types of the contract): its verdict (``valid``) covers them.
        # What ``gpufl.contract.events.check`` adds is checked here: the session id's form, a stamped seq, the stream,
        # the order of start and end.
        if (
            n != count
            or sid != row["sid_max"]
            or not ev.valid_session_id(sid)
            or lo < 0
            or row["off_stream"]
            or row["reversed"]
        ):
            return None
        if valid is not None and not valid():
            return None  # msgspec's decode did not clear the batch: nothing may be stored from this parse
        try:
            with self._write() as cur:
                self._lock_streams(cur, [(sid, stream)])
                # A deleted session's tombstone comes back as a row (-1, -1), ahead of the real ranges
                # (seqs are >= 0), in the same round trip: the record path then refuses the batch.
                rows = self._exec(
                    cur,
                    """SELECT lo, hi FROM seq_ranges WHERE session_id = ? AND stream = ?
                       UNION ALL SELECT -1, -1 FROM pruned_sessions WHERE session_id = ?
                       ORDER BY lo""",
                    [sid, stream, sid],
                ).fetchall()
                ranges = [(int(a), int(b)) for a, b in rows]
                if (
                    row["seqs"] != n
                    or any(a <= hi and b >= lo for a, b in ranges)
                    or (ranges and ranges[0][0] < 0)
                ):
                    raise _NotHere
                if n == hi - lo + 1:  # gap-free (the usual batch): one run
                    merged = merge_ranges([*ranges, (lo, hi)], [])
                else:
                    seqs = self._exec(cur, f"SELECT seq FROM {name} ORDER BY seq").fetchall()
                    merged = merge_ranges(ranges, [int(r[0]) for r in seqs])
                the_sid = f"(SELECT sid FROM {name}_facts)"
                script = [
                    f"DELETE FROM seq_ranges WHERE session_id = {the_sid} AND stream = '{stream}'",
                    f"INSERT INTO seq_ranges SELECT f.sid, '{stream}', r.lo, r.hi FROM (VALUES "
                    + ", ".join(f"({int(a)}, {int(b)})" for a, b in merged)
                    + f") r(lo, hi), {name}_facts f",
                    f"INSERT INTO {table} SELECT {', '.join(c for c, _ in TABLES[table])} FROM {name}",
                ]
                # The summaries' rows go straight into their tables (temporary tables for them, made before
                # the lock, cost four more CREATE and DROP statements and a copy of their rows per batch).
                if tag == "kernel":
                    script += [f"INSERT INTO {t} {q}" for t, q in self._kernel_summary_selects(name)]
                script += [
                    f"""INSERT INTO session_streams SELECT sid, '{stream}', n, first_ns, last_ns, {int(nbytes)},
                               {time.time_ns()} FROM {name}_facts""",
                    f"INSERT INTO type_counts SELECT sid, '{tag}', n FROM {name}_facts",
                ]
                self._script(cur, script)
        except _NotHere:
            return None
        self._count_batch([sid])
        return IngestOutcome(stored=count)

    def _count_batch(self, sids: Iterable[str]) -> None:
        """One more batch stored for each of ``sids``: compact a session every COMPACT_EVERY of them."""
        for sid in sids:
            n = self._since_compact.get(sid, 0) + 1
            self._since_compact[sid] = n
            if n >= self.COMPACT_EVERY:
                self._since_compact.pop(sid, None)
                self.compact(sid)

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
            if tag in _TS_FIELDS:
                a, b = _TS_FIELDS[tag]
                note(sids, col(rs, a, tag), col(rs, b, tag))
            elif tag in _OTHER_TS:
                t = _col(rs, _OTHER_TS[tag])
                note(sids, t, t)
            else:
                note(sids, [None] * len(rs), [None] * len(rs))

            if tag in _PLAIN:
                table = _PLAIN[tag]
                cols = {n: col(rs, n, tag) for n in _plain_columns(table)}
                self._stage(cur, "stage_" + table, table, cols)
                self._exec(cur, f"INSERT INTO {table} SELECT * FROM stage_{table}")
                if tag == "kernel":
                    self._kernel_summaries(cur)
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
            else:
                tcol = _col(rs, _OTHER_TS[tag])
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

    def _kernel_summaries(self, cur: Any) -> None:
        """Fold the staged kernels (relation stage_kernels) into the ingest-time summaries."""
        self._script(cur, [f"INSERT INTO {t} {q}" for t, q in self._kernel_summary_selects("stage_kernels")])

    def _kernel_summary_selects(self, src: str) -> list[tuple[str, str]]:
        """(summary table, query giving its rows) for the kernels of relation ``src``."""
        dur = "(end_ns - start_ns)"
        out = [
            (
                "kernel_stats",
                f"""SELECT session_id, launch_id, count(*), sum({dur}), min({dur}), max({dur})
                    FROM {src} GROUP BY session_id, launch_id""",
            ),
            (
                "kernel_sketch",
                f"""SELECT session_id, launch_id, {sketch.sql_key(dur)} AS b, count(*)
                    FROM {src} GROUP BY session_id, launch_id, b""",
            ),
            (
                "kernel_scopes",
                f"""SELECT session_id, scope_inst, count(*), sum({dur})
                    FROM {src} WHERE scope_inst IS NOT NULL GROUP BY session_id, scope_inst""",
            ),
        ]
        # Levels of detail: the finest level aggregated from the batch, then every level at once from the
        # finest (a cross join with the levels, one GROUP BY): the aggregates merge (sums, and the longest
        # row by a key unique per row), so this is the same as aggregating the kernels at each level, and
        # one statement with two aggregations costs less than one per level (~2x for 15k-kernel batches).
        base = LOD_SHIFTS[0]
        finest = self._lod_select(
            src, f"(start_ns >> {base})", "1", dur, "seq", "start_ns", "end_ns", "launch_id"
        )
        levels = ", ".join(f"({s})" for s in LOD_SHIFTS)
        every = self._lod_select(
            "x", f"(b >> (level - {base}))", "n", "busy", "seq", "start_ns", "end_ns", "launch_id", by="level"
        )
        out.append(
            (
                "kernel_lod",
                f"""WITH f AS MATERIALIZED ({finest}),
                         x AS (SELECT f.*, l.level FROM f CROSS JOIN (VALUES {levels}) l(level))
                    SELECT session_id, level, b, device_id, stream_id, n, busy, seq, start_ns, end_ns, launch_id
                    FROM ({every}) t""",
            )
        )
        return out

    def _lod_select(
        self,
        src: str,
        bucket: str,
        n: str,
        busy: str,
        seq: str,
        start: str,
        end: str,
        launch: str,
        by: str = "",
    ) -> str:
        """SELECT session_id, b, device_id, stream_id, n, busy, seq, start_ns, end_ns, launch_id: per bucket
        of ``src``, the sums of ``n`` and ``busy`` and the longest row (ties: lowest seq)."""
        raise NotImplementedError

    def _drop_materialised(self, cur: Any, name: str) -> None:
        self._exec(cur, f"DROP TABLE {name}")

    def _temp_like(self, cur: Any, name: str, table: str) -> None:
        """An empty temporary table ``name`` with ``table``'s columns, for the rest of the transaction."""
        raise NotImplementedError

    # ---- compaction ----------------------------------------------------------------------------------

    COMPACT_EVERY = 32
    """Batches of a session after which this process folds the session's partial aggregates."""

    _COMPACT_SQL: ClassVar[dict[str, str]] = {
        "kernel_stats": "SELECT session_id, launch_id, sum(n), sum(total_ns), min(min_ns), max(max_ns) "
        "FROM kernel_stats WHERE session_id = ? GROUP BY session_id, launch_id",
        "kernel_sketch": "SELECT session_id, launch_id, bucket, sum(n) FROM kernel_sketch WHERE session_id = ? "
        "GROUP BY session_id, launch_id, bucket",
        "kernel_scopes": "SELECT session_id, scope_inst, sum(n), sum(total_ns) FROM kernel_scopes "
        "WHERE session_id = ? GROUP BY session_id, scope_inst",
        "session_streams": "SELECT session_id, stream, sum(received), min(first_ns), max(last_ns), sum(bytes), "
        "max(updated_ns) FROM session_streams WHERE session_id = ? GROUP BY session_id, stream",
        "type_counts": "SELECT session_id, type, sum(n) FROM type_counts WHERE session_id = ? "
        "GROUP BY session_id, type",
    }

    def compact(self, sid: str) -> None:
        """Fold a session's partial aggregates into one row per key (same query results, fewer rows)."""
        with self._write() as cur:
            # Hold every stream's ingest lock: no batch of this session commits between read and rewrite.
            self._lock_streams(cur, [(sid, s) for s in sorted(ev.STREAMS)])
            for table, select in self._COMPACT_SQL.items():
                self._temp_like(cur, "compact_tmp", table)
                self._exec(cur, f"INSERT INTO compact_tmp {select}", [sid])
                self._exec(cur, f"DELETE FROM {table} WHERE session_id = ?", [sid])
                self._exec(cur, f"INSERT INTO {table} SELECT * FROM compact_tmp")
                self._drop_materialised(cur, "compact_tmp")
            # kernel_lod holds most of a session's summary rows (about one per three kernels at the finest
            # level) and batches rarely share a bucket, since records arrive in time order: fold only the keys
            # that have several rows, rather than rewrite the session's whole timeline each time (a cost that
            # grew with the session). The rows that result are the same.
            key = ("session_id", "level", "bucket", "device_id", "stream_id")
            self._temp_like(cur, "compact_keys", "kernel_lod")
            self._exec(
                cur,
                f"""INSERT INTO compact_keys ({", ".join(key)})
                    SELECT {", ".join(key)} FROM kernel_lod WHERE session_id = ?
                    GROUP BY {", ".join(key)} HAVING count(*) > 1""",
                [sid],
            )
            on = " AND ".join(f"k.{c} = p.{c}" for c in key)
            self._temp_like(cur, "compact_lod", "kernel_lod")
            inner = f"(SELECT p.* FROM kernel_lod p JOIN compact_keys k ON {on} WHERE p.session_id = ?) p"
            agg = self._lod_select(
                inner, "bucket", "n", "busy_ns", "seq", "start_ns", "end_ns", "launch_id", by="level"
            )
            self._exec(
                cur,
                f"""INSERT INTO compact_lod SELECT session_id, level, b, device_id, stream_id, n, busy, seq,
                           start_ns, end_ns, launch_id FROM ({agg}) t""",
                [sid],
            )
            on = " AND ".join(f"k.{c} = kernel_lod.{c}" for c in key)
            self._exec(cur, f"DELETE FROM kernel_lod USING compact_keys k WHERE {on}")
            self._exec(cur, "INSERT INTO kernel_lod SELECT * FROM compact_lod")
            self._drop_materialised(cur, "compact_lod")
            self._drop_materialised(cur, "compact_keys")

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

    # ---- sessions ------------------------------------------------------------------------------------

    _SESSION_SELECT = """
        WITH a AS (SELECT session_id, min(first_ns) AS first_ns, max(last_ns) AS last_ns,
                          sum(received) AS records, count(DISTINCT stream) AS nstreams
                   FROM session_streams GROUP BY session_id),
             e AS (SELECT session_id, count(*) AS nended, max(end_ns) AS end_ns
                   FROM stream_ends GROUP BY session_id),
             c AS (SELECT session_id,
                          sum(CASE WHEN type = 'kernel' THEN n ELSE 0 END) AS kernels,
                          sum(CASE WHEN type = 'memcpy' THEN n ELSE 0 END) AS memcpys
                   FROM type_counts GROUP BY session_id),
             x AS (SELECT a.session_id, s.host, s.app, s.pid, s.job_id, s.start_ns, e.end_ns, a.last_ns,
                          s.header, c.kernels, c.memcpys, a.records, a.nstreams, e.nended,
                          COALESCE(s.start_ns, a.first_ns) AS sort_ns
                   FROM a LEFT JOIN sessions s ON s.session_id = a.session_id
                          LEFT JOIN e ON e.session_id = a.session_id
                          LEFT JOIN c ON c.session_id = a.session_id)
        SELECT session_id, host, app, pid, job_id, start_ns, end_ns, last_ns, header, kernels, memcpys,
               records, nstreams, nended, sort_ns FROM x"""

    @staticmethod
    def _session_item(row: Row) -> dict[str, Any]:
        (
            sid,
            host,
            app,
            pid,
            job,
            start,
            end,
            last,
            header,
            kernels,
            memcpys,
            records,
            nstreams,
            nended,
            _,
        ) = row
        gpus: list[str] = []
        if header:
            gpus = [
                d.get("name") or f"GPU {d.get('device_id')}" for d in json.loads(header).get("devices", [])
            ]
        ended = (nended or 0) >= nstreams
        return {
            "session_id": sid,
            "host": host,
            "app": app,
            "pid": pid,
            "job_id": job,
            "start_ns": start,
            "end_ns": end,
            "last_ns": int(last or 0),
            "gpus": gpus,
            "kernels": int(kernels or 0),
            "memcpys": int(memcpys or 0),
            "records": int(records or 0),
            "ended": ended,
            "cut_short": not ended,
        }

    def list_sessions(
        self,
        host: str | None = None,
        app: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int = 50,
        cursor: Cursor | None = None,
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if host is not None:
            where.append("host = ?")
            params.append(host)
        if app is not None:
            where.append("app = ?")
            params.append(app)
        if since is not None:
            where.append("sort_ns >= ?")
            params.append(since)
        if until is not None:
            where.append("sort_ns < ?")
            params.append(until)
        if cursor is not None:
            where.append("(sort_ns < ? OR (sort_ns = ? AND session_id < ?))")
            params += [cursor.key, cursor.key, str(cursor.tie)]
        sql = f"{self._SESSION_SELECT} WHERE {' AND '.join(where)} ORDER BY sort_ns DESC, session_id DESC LIMIT ?"
        rows = self._all(sql, [*params, limit + 1])
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = Cursor(int(rows[-1][14]), rows[-1][0])
        return [self._session_item(r) for r in rows], nxt

    def hosts(self) -> list[dict[str, Any]]:
        rows = self._all(
            """SELECT COALESCE(s.host, '(unknown)'), COALESCE(s.app, '(unknown)'), count(*), max(s.start_ns)
               FROM (SELECT DISTINCT session_id FROM session_streams) a
               LEFT JOIN sessions s ON s.session_id = a.session_id
               GROUP BY 1, 2 ORDER BY 1, 2"""
        )
        hosts: dict[str, dict[str, Any]] = {}
        for host, app, n, last in rows:
            h = hosts.setdefault(host, {"host": host, "sessions": 0, "apps": []})
            h["sessions"] += int(n)
            h["apps"].append({"app": app, "sessions": int(n), "last_start_ns": last})
        return list(hosts.values())

    def session_exists(self, sid: str) -> bool:
        return self._one("SELECT 1 FROM session_streams WHERE session_id = ? LIMIT 1", [sid]) is not None

    def session_detail(self, sid: str) -> dict[str, Any]:
        streams = self._all(
            """SELECT t.stream, t.received, t.first_ns, t.last_ns, e.reason, e.records, e.dropped
               FROM (SELECT session_id, stream, sum(received) AS received, min(first_ns) AS first_ns,
                            max(last_ns) AS last_ns
                     FROM session_streams WHERE session_id = ? GROUP BY session_id, stream) t
               LEFT JOIN stream_ends e
                 ON e.session_id = t.session_id AND e.stream = t.stream
               ORDER BY t.stream""",
            [sid],
        )
        if not streams:
            raise NotFound(sid)
        hdr_row = self._one("SELECT header FROM sessions WHERE session_id = ?", [sid])
        header = json.loads(hdr_row[0]) if hdr_row else None
        counts: dict[str, int] = dict(
            self._all("SELECT type, sum(n) FROM type_counts WHERE session_id = ? GROUP BY type", [sid])
        )
        gpu = self._one("SELECT sum(total_ns) FROM kernel_stats WHERE session_id = ?", [sid])
        others = self._all(
            "SELECT type, body FROM other_events WHERE session_id = ? ORDER BY ts_ns, stream, seq", [sid]
        )
        dropped_by_stream: dict[str, int] = defaultdict(int)
        notices = []
        for typ, body in others:
            b = json.loads(body)
            if typ == "dropped":
                dropped_by_stream[b["stream"]] += int(b["count"])
            elif typ in ("notice", "capture_gap"):
                notices.append(b)
        out_streams = []
        for stream, received, first, last, reason, written, ended_dropped in streams:
            ended = reason is not None
            dropped = int(ended_dropped) if ended else dropped_by_stream.get(stream, 0)
            out_streams.append(
                {
                    "stream": stream,
                    "received": int(received),
                    "first_ns": first,
                    "last_ns": last,
                    "ended": ended,
                    "end_reason": reason,
                    "written": written,
                    "missing": (int(written) - int(received)) if ended else None,
                    "dropped": dropped,
                }
            )
        return {
            "session_id": sid,
            "header": header,
            "devices": header.get("devices", []) if header else [],
            "streams": out_streams,
            "totals": {
                "kernels": int(counts.get("kernel", 0)),
                "memcpys": int(counts.get("memcpy", 0)),
                "memsets": int(counts.get("memset", 0)),
                "scope_instances": int(counts.get("scope_begin", 0)),
                "profile_samples": int(counts.get("profile_sample", 0)),
                "system_samples": int(counts.get("system_sample", 0)),
                "gpu_time_ns": int(gpu[0] or 0) if gpu else 0,
            },
            "dropped": sum(s["dropped"] for s in out_streams),
            "cut_short": not all(s["ended"] for s in out_streams),
            "notices": notices,
        }

    def delete_session(self, sid: str) -> bool:
        with self._write() as cur:
            found = self._exec(
                cur, "SELECT 1 FROM session_streams WHERE session_id = ? LIMIT 1", [sid]
            ).fetchall()
            for t in SESSION_TABLES:
                self._exec(cur, f"DELETE FROM {t} WHERE session_id = ?", [sid])
        return bool(found)

    def prune_session(self, sid: str, reason: str, quiet_since_ns: int | None = None) -> bool:
        """Delete a session for retention and leave its tombstone, so that its late records are refused
        (``ingest``) rather than stored as a fragment. Spares it (returns False) if it received records at
        or after ``quiet_since_ns``, checked under every stream's ingest lock: a batch commits either before
        (and spares it) or after (and is refused). False too when it is gone already (another backend)."""
        with self._write() as cur:
            self._lock_streams(cur, [(sid, s) for s in sorted(ev.STREAMS)])
            row = self._exec(
                cur, "SELECT max(updated_ns) FROM session_streams WHERE session_id = ?", [sid]
            ).fetchall()
            last = row[0][0] if row else None
            if last is None or (quiet_since_ns is not None and int(last) >= quiet_since_ns):
                return False
            for t in SESSION_TABLES:
                self._exec(cur, f"DELETE FROM {t} WHERE session_id = ?", [sid])
            self._exec(
                cur,
                "INSERT INTO pruned_sessions VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [sid, time.time_ns(), reason],
            )
        self._since_compact.pop(sid, None)
        return True

    def is_pruned(self, sid: str) -> bool:
        """Whether retention deleted the session (and no re-delivery has re-created it since)."""
        return self._one("SELECT 1 FROM pruned_sessions WHERE session_id = ?", [sid]) is not None

    def sessions_received_since(self, since_ns: int) -> set[str]:
        """Sessions that stored records at or after ``since_ns`` (the backends' clock, not the records')."""
        rows = self._all("SELECT DISTINCT session_id FROM session_streams WHERE updated_ns >= ?", [since_ns])
        return {r[0] for r in rows}

    def session_usage(self) -> list[tuple[str, int, int]]:
        """(session_id, last activity ns, stored bytes) for every session, oldest activity first."""
        rows = self._all(
            """SELECT session_id, max(COALESCE(last_ns, updated_ns)), max(updated_ns), sum(bytes)
               FROM session_streams GROUP BY session_id ORDER BY 2, 1"""
        )
        return [(r[0], int(max(r[1] or 0, 0)), int(r[3] or 0)) for r in rows]

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
        stream: int | None,
        scope: int | None,
        cursor: Cursor | None,
        where: list[str],
        params: list[Any],
    ) -> None:
        """The filters kernels and copies share (alias ``k``): device, CUDA stream, scope path, and the
        (start_ns, seq) cursor of their common ordering."""
        if device is not None:
            where.append("k.device_id = ?")
            params.append(device)
        if stream is not None:
            where.append("k.stream_id = ?")
            params.append(stream)
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
        stream: int | None = None,
        name: str | None = None,
        scope: int | None = None,
        limit: int = 1000,
        cursor: Cursor | None = None,
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        where: list[str] = ["k.session_id = ?"]
        params: list[Any] = [sid]
        self._window("kernels", sid, start_ns, end_ns, where, params)
        if name is not None:
            where.append(
                "k.launch_id IN (SELECT id FROM dicts WHERE session_id = ? AND stream = 'device' "
                "AND kind = 'launch' AND value = ?)"
            )
            params += [sid, name]
        self._activity_filters(sid, device, stream, scope, cursor, where, params)
        rows = self._all(
            f"""SELECT k.seq, d.value, k.launch_id, k.device_id, k.stream_id, k.corr_id, k.start_ns, k.end_ns,
                       k.scope_inst, k.stack_id, k.graph_id, k.thread_id
                FROM kernels k {self._LAUNCH_JOIN}
                WHERE {" AND ".join(where)} ORDER BY k.start_ns, k.seq LIMIT ?""",
            [*params, limit + 1],
        )
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = Cursor(int(rows[-1][6]), int(rows[-1][0]))
        return [self._kernel_row(r) for r in rows], nxt

    @staticmethod
    def _kernel_row(r: Row) -> dict[str, Any]:
        seq, name, launch, dev, stream, corr, start, end, scope_inst, stack, graph, thread = r[:12]
        return {
            "id": str(seq),
            "seq": seq,
            "name": name,
            "launch_id": launch,
            "device_id": dev,
            "stream_id": stream,
            "corr_id": corr,
            "start_ns": start,
            "end_ns": end,
            "dur_ns": end - start,
            "scope_inst": scope_inst,
            "stack_id": stack,
            "graph_id": graph,
            "thread_id": thread,
        }

    def kernel(self, sid: str, seq: int) -> dict[str, Any]:
        row = self._one(
            f"""SELECT k.seq, d.value, k.launch_id, k.device_id, k.stream_id, k.corr_id, k.start_ns, k.end_ns,
                       k.scope_inst, k.stack_id, k.graph_id, k.thread_id,
                       d.mangled, coalesce(k.api_start_ns, k.start_ns - k.api_lead_ns), k.api_dur_ns, k.graph_node_id, d.launch
                FROM kernels k {self._LAUNCH_JOIN} WHERE k.session_id = ? AND k.seq = ?""",
            [sid, seq],
        )
        if row is None:
            raise NotFound(f"kernel {seq}")
        out = self._kernel_row(row)
        out.update(
            mangled=row[12],
            api_start_ns=row[13],
            api_dur_ns=row[14],
            graph_node_id=row[15],
            launch=json.loads(row[16]) if row[16] else None,
            stack=None,
            scope=None,
        )
        if out["stack_id"] is not None:
            st = self._one(
                "SELECT frames FROM dicts WHERE session_id = ? AND stream = 'device' AND kind = 'stack' AND id = ?",
                [sid, out["stack_id"]],
            )
            if st and st[0]:
                out["stack"] = [{"file": f, "line": ln, "function": fn} for f, ln, fn in json.loads(st[0])]
        if out["scope_inst"] is not None:
            sc = self._one(
                """SELECT b.path_id, d.value FROM scope_begins b
                   LEFT JOIN dicts d ON d.session_id = b.session_id AND d.stream = 'scope' AND d.kind = 'scope'
                        AND d.id = b.path_id
                   WHERE b.session_id = ? AND b.inst = ?""",
                [sid, out["scope_inst"]],
            )
            out["scope"] = {
                "inst": out["scope_inst"],
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
        stream: int | None = None,
        max_buckets: int = 100_000,
    ) -> bytes:
        """The level-of-detail timeline (schemas.KernelTimeline) as JSON bytes."""
        levels = [s for s in LOD_SHIFTS if (1 << s) <= resolution_ns]
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
        if device is not None:
            where.append("device_id = ?")
            params.append(device)
        if stream is not None:
            where.append("stream_id = ?")
            params.append(stream)
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

    def kernel_timeline(
        self,
        sid: str,
        start_ns: int,
        end_ns: int,
        resolution_ns: int,
        device: int | None = None,
        stream: int | None = None,
        max_buckets: int = 100_000,
    ) -> dict[str, Any]:
        """kernel_timeline_json, decoded."""
        out: dict[str, Any] = msgspec.json.decode(
            self.kernel_timeline_json(sid, start_ns, end_ns, resolution_ns, device, stream, max_buckets)
        )
        return out

    def _json_object(self, fields: list[tuple[str, str]]) -> str:
        """SQL expression building a JSON object from (key, SQL expression) pairs."""
        raise NotImplementedError

    def _json_array(self, src: str, obj: str, order: str) -> str:
        """SELECT returning one row: a JSON array (text) of ``obj`` over the rows of ``src`` in ``order``."""
        raise NotImplementedError

    def kernel_summary(self, sid: str, sort: str = "total", limit: int = 100) -> dict[str, Any]:
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
        sketches: dict[str | None, dict[int, int]] = defaultdict(dict)
        for name, b, n in sk_rows:
            sketches[name][int(b)] = int(n)
        gpu = sum(int(r[2]) for r in stats)
        items = []
        for name, n, total, mn, mx in stats:
            sk = sketch.Sketch(sketches.get(name, {}))
            n, total, mn, mx = int(n), int(total), int(mn), int(mx)

            def clamp(v: float | None, lo: int = mn, hi: int = mx) -> float:
                return float(min(max(v if v is not None else lo, lo), hi))

            items.append(
                {
                    "name": name,
                    "count": n,
                    "total_ns": total,
                    "mean_ns": total / n,
                    "min_ns": mn,
                    "p50_ns": clamp(sk.quantile(0.5)),
                    "p95_ns": clamp(sk.quantile(0.95)),
                    "max_ns": mx,
                    "share": total / gpu if gpu else 0.0,
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
        return {"gpu_time_ns": gpu, "items": items[:limit]}

    # ---- memcpy, memset ------------------------------------------------------------------------------

    _ACTIVITY_HEAD: ClassVar = ("seq", "device_id", "stream_id", "corr_id", "start_ns", "end_ns")
    _ACTIVITY_COLUMNS: ClassVar = {
        "memcpys": (
            "bytes",
            "copy_kind",
            "src_kind",
            "dst_kind",
            "throughput_gbps",
            "scope_inst",
            "stack_id",
        ),
        "memsets": ("bytes", "value", "mem_kind", "scope_inst", "stack_id"),
    }

    def _activity_page(
        self,
        table: str,
        sid: str,
        start_ns: int | None,
        end_ns: int | None,
        device: int | None,
        stream: int | None,
        scope: int | None,
        limit: int,
        cursor: Cursor | None,
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        """Copies or memsets in a window: the kernels' filters and (start_ns, seq) order, every column."""
        where: list[str] = ["k.session_id = ?"]
        params: list[Any] = [sid]
        self._window(table, sid, start_ns, end_ns, where, params)
        self._activity_filters(sid, device, stream, scope, cursor, where, params)
        keys = (*self._ACTIVITY_HEAD, *self._ACTIVITY_COLUMNS[table])
        rows = self._all(
            f"""SELECT {", ".join("k." + c for c in keys)}
                FROM {table} k WHERE {" AND ".join(where)} ORDER BY k.start_ns, k.seq LIMIT ?""",
            [*params, limit + 1],
        )
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = Cursor(int(rows[-1][4]), int(rows[-1][0]))
        items = []
        for row in rows:
            item = dict(zip(keys, row, strict=True))
            items.append({"id": str(row[0]), **item, "dur_ns": row[5] - row[4]})
        return items, nxt

    def memcpys(
        self,
        sid: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        device: int | None = None,
        stream: int | None = None,
        scope: int | None = None,
        limit: int = 1000,
        cursor: Cursor | None = None,
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        return self._activity_page("memcpys", sid, start_ns, end_ns, device, stream, scope, limit, cursor)

    def memsets(
        self,
        sid: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        device: int | None = None,
        stream: int | None = None,
        scope: int | None = None,
        limit: int = 1000,
        cursor: Cursor | None = None,
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        return self._activity_page("memsets", sid, start_ns, end_ns, device, stream, scope, limit, cursor)

    # ---- scopes --------------------------------------------------------------------------------------

    def scope_tree(self, sid: str) -> list[dict[str, Any]]:
        rows = self._all(
            """SELECT b.path_id, d.value, count(*), sum(CASE WHEN e.ts_ns IS NULL THEN 0 ELSE e.ts_ns - b.ts_ns END),
                      sum(CASE WHEN e.ts_ns IS NULL THEN 1 ELSE 0 END), sum(COALESCE(ks.n, 0)),
                      sum(COALESCE(ks.total_ns, 0)), min(b.depth)
               FROM scope_begins b
               LEFT JOIN scope_ends e ON e.session_id = b.session_id AND e.inst = b.inst
               LEFT JOIN (SELECT scope_inst, sum(n) AS n, sum(total_ns) AS total_ns FROM kernel_scopes
                          WHERE session_id = ? GROUP BY scope_inst) ks ON ks.scope_inst = b.inst
               LEFT JOIN dicts d ON d.session_id = b.session_id AND d.stream = 'scope' AND d.kind = 'scope'
                    AND d.id = b.path_id
               WHERE b.session_id = ? GROUP BY b.path_id, d.value""",
            [sid, sid],
        )
        nodes: dict[str, dict[str, Any]] = {}
        for path_id, path, calls, wall, open_calls, kn, kns, depth in rows:
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

    def profile_samples(self, sid: str, scope_id: int) -> dict[str, Any]:
        path = self._one(
            "SELECT value FROM dicts WHERE session_id = ? AND stream = 'scope' AND kind = 'scope' AND id = ?",
            [sid, scope_id],
        )
        rows = self._all(
            """SELECT d.value, p.function_name, p.pc_offset, p.source_file, p.source_line, p.source,
                      p.metric_name, p.stall_reason, sum(p.metric_value), sum(p.sample_count)
               FROM profile_samples p
               LEFT JOIN dicts d ON d.session_id = p.session_id AND d.stream = 'scope' AND d.kind = 'kernel'
                    AND d.id = p.kernel_name_id
               WHERE p.session_id = ?
                 AND p.scope_inst IN (SELECT inst FROM scope_begins WHERE session_id = ? AND path_id = ?)
               GROUP BY d.value, p.function_name, p.pc_offset, p.source_file, p.source_line, p.source,
                        p.metric_name, p.stall_reason""",
            [sid, sid, scope_id],
        )
        by_kernel: dict[str | None, dict[str, Any]] = {}
        by_line: dict[tuple[Any, ...], dict[str, Any]] = {}
        for kname, fn, pc, file, line, source, metric, stall, mval, scount in rows:
            k = by_kernel.setdefault(kname, {"kernel": kname, "metrics": {}, "stalls": {}})
            lk = (kname, fn, pc, file, line)
            ln = by_line.setdefault(
                lk,
                {
                    "kernel": kname,
                    "function_name": fn,
                    "pc_offset": pc,
                    "source_file": file,
                    "source_line": line,
                    "metrics": {},
                    "stalls": {},
                },
            )
            for target in (k, ln):
                if source == "sass_metric" and metric is not None:
                    target["metrics"][metric] = target["metrics"].get(metric, 0.0) + float(mval or 0)
                elif source == "pc_sampling" and stall is not None:
                    target["stalls"][stall] = target["stalls"].get(stall, 0) + int(scount or 0)
        lines = sorted(
            by_line.values(),
            key=lambda x: (
                -sum(x["stalls"].values()),
                str(x["kernel"]),
                x["pc_offset"] or 0,
                x["source_line"] or 0,
            ),
        )
        return {
            "scope_id": scope_id,
            "path": path[0] if path else None,
            "by_kernel": sorted(
                by_kernel.values(), key=lambda x: (-sum(x["stalls"].values()), str(x["kernel"]))
            ),
            "by_line": lines,
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
            f"""SELECT metric, device_id, {b} AS b, min(value), max(value), avg(value) FROM system_points
                WHERE {" AND ".join(where)} GROUP BY metric, device_id, b ORDER BY metric, device_id, b""",
            params,
        )
        series: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        for m, dev, bk, mn, mx, mean in rows:
            series[(m, int(dev))].append(
                {"t_ns": start_ns + int(bk) * width, "min": float(mn), "max": float(mx), "mean": float(mean)}
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

    # ---- API keys ------------------------------------------------------------------------------------

    def add_key(self, key_id: str, name: str, role: str, key_hash: str) -> None:
        with self._write() as cur:
            self._exec(
                cur,
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL)",
                [key_id, name, role, key_hash, time.time_ns()],
            )

    def put_key(self, key_id: str, name: str, role: str, key_hash: str) -> None:
        """Insert or replace (the bootstrap key from GPUFL_ADMIN_TOKEN follows the environment)."""
        with self._write() as cur:
            self._lock_streams(cur, [("__keys__", key_id)])  # backends starting together
            self._exec(cur, "DELETE FROM api_keys WHERE id = ?", [key_id])
            self._exec(
                cur,
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL)",
                [key_id, name, role, key_hash, time.time_ns()],
            )

    def get_key(self, key_id: str) -> tuple[str, str, int | None] | None:
        """(role, hash, revoked_ns) of a key."""
        row = self._one("SELECT role, hash, revoked_ns FROM api_keys WHERE id = ?", [key_id])
        return (row[0], row[1], row[2]) if row else None

    def list_keys(self) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT id, name, role, created_ns, revoked_ns FROM api_keys ORDER BY created_ns, id"
        )
        return [dict(zip(("id", "name", "role", "created_ns", "revoked_ns"), r, strict=True)) for r in rows]

    def revoke_key(self, key_id: str) -> bool:
        with self._write() as cur:
            found = self._exec(
                cur, "SELECT 1 FROM api_keys WHERE id = ? AND revoked_ns IS NULL", [key_id]
            ).fetchall()
            self._exec(
                cur,
                "UPDATE api_keys SET revoked_ns = ? WHERE id = ? AND revoked_ns IS NULL",
                [time.time_ns(), key_id],
            )
        return bool(found)

    def has_active_admin(self) -> bool:
        return (
            self._one("SELECT 1 FROM api_keys WHERE role = 'admin' AND revoked_ns IS NULL LIMIT 1")
            is not None
        )

    # ---- scope instances (timeline lane) -------------------------------------------------------------

    def scope_instances(
        self,
        sid: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        min_dur_ns: int | None = None,
        limit: int = 1000,
        cursor: Cursor | None = None,
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        """Scope instances overlapping [start_ns, end_ns), ordered by (start, inst). An instance without a
        scope_end is open (end_ns None): it overlaps every window from its start on, and is never skipped
        by ``min_dur_ns`` (its duration is unknown)."""
        where: list[str] = ["b.session_id = ?"]
        params: list[Any] = [sid, sid]  # the scope_ends sub-select, then scope_begins
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
            nxt = Cursor(int(rows[-1][6]), int(rows[-1][0]))
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
