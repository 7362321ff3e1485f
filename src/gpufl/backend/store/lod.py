"""Ingest-time summaries of kernels (stats, duration sketch, scopes, levels of detail), the levels of detail
of copies, memsets and launch-API calls, and compaction, which folds a session's partial aggregates into one
row per key."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from gpufl.backend import sketch
from gpufl.backend.store.engine import SqlEngine
from gpufl.backend.store.schema import LOD_SHIFTS, RECORD_TABLES, SIDE_LOD_SHIFTS, TABLES
from gpufl.contract import events as ev

# The call's entry: v2+ records carry it as a lead before the activity's start, v1 as an absolute time.
API_START = "coalesce(api_start_ns, start_ns - api_lead_ns)"


@dataclass(frozen=True)
class Fold:
    """A level-of-detail table whose rows merge: per (session_id, level, bucket, *keys), the sums, maxima and
    minima of its columns and the longest row's fields (``dur`` descending, then ``ties`` ascending). Its
    columns are in that order; a raw row is projected to the same names (``rows``), bucketed by ``time``.
    ``shifts``: the levels it stores (bucket width 2^shift ns), finest first."""

    table: str
    keys: tuple[str, ...]
    sums: tuple[str, ...]
    maxes: tuple[str, ...]
    mins: tuple[str, ...]
    longest: tuple[str, ...]
    dur: str
    ties: tuple[str, ...]
    time: str
    shifts: tuple[int, ...]


MEMORY_LOD = Fold(
    "memory_lod",
    keys=("kind", "device_id", "stream_id"),
    sums=("n", "bytes", "busy_ns"),
    maxes=(),
    mins=(),
    longest=("seq", "start_ns", "end_ns", "long_bytes"),
    dur="end_ns - start_ns",
    ties=("seq",),
    time="start_ns",
    shifts=SIDE_LOD_SHIFTS,
)

LAUNCH_LOD = Fold(
    "launch_lod",
    keys=("thread_id",),
    sums=("n", "busy_ns"),
    maxes=("lead_max",),
    mins=("lead_min",),
    longest=(
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
    ),
    dur="a1 - a0",
    ties=("kind", "seq"),
    time="a0",
    shifts=SIDE_LOD_SHIFTS,
)


def memory_rows(table: str, src: str) -> str:
    """The copies (``table`` memcpys) or memsets of relation ``src`` as MEMORY_LOD rows, one each."""
    kind = "copy_kind" if table == "memcpys" else "'memset'"
    return f"""SELECT session_id, {kind} AS kind, device_id, stream_id, 1 AS n, bytes,
                      end_ns - start_ns AS busy_ns, seq, start_ns, end_ns, bytes AS long_bytes FROM {src}"""


def launch_rows(table: str, src: str, wide: str) -> str:
    """The launch-API calls behind the kernels or copies (``table``) of relation ``src`` that carry their API
    timing and thread, as LAUNCH_LOD rows, one each (kind 0 kernel, 1 copy; no duration counts as 0 ns).
    ``wide`` is the dialect's wide integer type: a call's exit (entry + duration) may pass int64 at the
    contract's bounds."""
    kernel = table == "kernels"
    return f"""SELECT session_id, thread_id, 1 AS n, coalesce(api_dur_ns, 0) AS busy_ns,
                      start_ns - {API_START} AS lead_max, start_ns - {API_START} AS lead_min,
                      {0 if kernel else 1} AS kind, seq, corr_id,
                      {"launch_id" if kernel else "CAST(NULL AS BIGINT)"} AS launch_id,
                      {"CAST(NULL AS VARCHAR)" if kernel else "copy_kind"} AS copy_kind, device_id, stream_id,
                      start_ns AS gpu_start, {API_START} AS a0,
                      CAST({API_START} AS {wide}) + coalesce(api_dur_ns, 0) AS a1
               FROM {src} WHERE thread_id IS NOT NULL AND (api_start_ns IS NOT NULL OR api_lead_ns IS NOT NULL)"""


def fold_select(
    fold: Fold,
    src: str,
    bucket: str,
    longest_fields: Callable[[list[tuple[str, str]], str, list[str]], list[str]],
    level: bool = False,
) -> str:
    """SELECT session_id, [level,] b, *keys, then the merged columns, per bucket ``bucket`` of ``src``'s rows
    (``level``: per level too, a column of ``src``). ``longest_fields`` is the dialect's hook
    (``SqlEngine._longest_fields``)."""
    aggs = [f"sum({c}) AS {c}" for c in fold.sums]
    aggs += [f"max({c}) AS {c}" for c in fold.maxes]
    aggs += [f"min({c}) AS {c}" for c in fold.mins]
    types = dict(TABLES[fold.table])
    longest = longest_fields([(c, types[c]) for c in fold.longest], fold.dur, list(fold.ties))
    aggs += [f"{e} AS {c}" for c, e in zip(fold.longest, longest, strict=True)]
    by = ["session_id", *(["level"] if level else []), bucket, *fold.keys]
    head = ["session_id", *(["level"] if level else []), f"{bucket} AS b", *fold.keys]
    return f"SELECT {', '.join(head + aggs)} FROM {src} GROUP BY {', '.join(by)}"


def stored_span(
    start_ns: int, end_ns: int, width: int, shifts: tuple[int, ...] = LOD_SHIFTS
) -> tuple[int, int, int] | None:
    """How a window's buckets of ``width`` ns can come from a stored level of ``shifts``: (shift, lo, hi),
    the coarsest stored level whose buckets tile ``width`` exactly (a multiple of 2^shift) and the output
    buckets [lo, hi) that lie wholly after ``start_ns`` and before ``end_ns``. Their rows (all starting
    inside the window) are whole in the stored level; the buckets at the window's edges, and rows that start
    before it and overlap it, come from the raw rows. None when no stored level tiles ``width`` (finer than
    the finest, or not a multiple of it) or no bucket fits."""
    shift = next((s for s in reversed(shifts) if width >= 1 << s and width % (1 << s) == 0), None)
    lo, hi = start_ns // width + 1, end_ns // width
    return (shift, lo, hi) if shift is not None and lo < hi else None


class LodStore(SqlEngine):
    def _summaries(self, cur: Any, tag: str, src: str) -> None:
        """Fold the staged records of type ``tag`` (relation ``src``) into the ingest-time summaries."""
        selects = self._summary_selects(tag, src)
        if selects:  # most record types have none
            self._script(cur, [f"INSERT INTO {t} {q}" for t, q in selects])

    def _summary_selects(self, tag: str, src: str) -> list[tuple[str, str]]:
        """(summary table, query giving its rows) for the records of type ``tag`` in relation ``src``."""
        out = self._kernel_summary_selects(src) if tag == "kernel" else []
        table = RECORD_TABLES.get(tag)
        if table in ("memcpys", "memsets"):
            out.append((MEMORY_LOD.table, self._levels_select(MEMORY_LOD, memory_rows(table, src))))
        if table in ("kernels", "memcpys"):
            out.append(
                (
                    LAUNCH_LOD.table,
                    self._levels_select(LAUNCH_LOD, launch_rows(table, src, self.sql_types["H"])),
                )
            )
        return out

    def _levels_select(self, fold: Fold, rows: str) -> str:
        """Every stored level's rows of ``fold`` (``fold.shifts``) for the rows ``rows``: the finest level
        aggregated from them, then every level at once from the finest (a cross join with the levels, one
        GROUP BY), as for kernels."""
        base = fold.shifts[0]
        finest = fold_select(fold, f"({rows}) r", f"({fold.time} >> {base})", self._longest_fields)
        levels = ", ".join(f"({s})" for s in fold.shifts)
        every = fold_select(fold, "x", f"(b >> (level - {base}))", self._longest_fields, level=True)
        return f"""WITH f AS MATERIALIZED ({finest}),
                        x AS (SELECT f.*, l.level FROM f CROSS JOIN (VALUES {levels}) l(level))
                   {every}"""

    def _backfill_lod(self, cur: Any) -> None:
        for tag, table in RECORD_TABLES.items():
            selects = [
                (t, q)
                for t, q in self._summary_selects(tag, table)
                if t in (MEMORY_LOD.table, LAUNCH_LOD.table)
            ]
            if selects:
                self._script(cur, [f"INSERT INTO {t} {q}" for t, q in selects])

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
            for fold in (MEMORY_LOD, LAUNCH_LOD):
                self._compact_fold(cur, sid, fold)

    def _compact_fold(self, cur: Any, sid: str, fold: Fold) -> None:
        """Fold the rows of ``fold``'s table that share a key (as for kernel_lod: only those)."""
        key = ("session_id", "level", "bucket", *fold.keys)
        self._temp_like(cur, "compact_keys", fold.table)
        self._exec(
            cur,
            f"""INSERT INTO compact_keys ({", ".join(key)})
                SELECT {", ".join(key)} FROM {fold.table} WHERE session_id = ?
                GROUP BY {", ".join(key)} HAVING count(*) > 1""",
            [sid],
        )
        on = " AND ".join(f"k.{c} = p.{c}" for c in key)
        inner = f"(SELECT p.* FROM {fold.table} p JOIN compact_keys k ON {on} WHERE p.session_id = ?) p"
        self._temp_like(cur, "compact_lod", fold.table)
        self._exec(
            cur,
            f"INSERT INTO compact_lod {fold_select(fold, inner, 'bucket', self._longest_fields, level=True)}",
            [sid],
        )
        on = " AND ".join(f"k.{c} = {fold.table}.{c}" for c in key)
        self._exec(cur, f"DELETE FROM {fold.table} USING compact_keys k WHERE {on}")
        self._exec(cur, f"INSERT INTO {fold.table} SELECT * FROM compact_lod")
        self._drop_materialised(cur, "compact_lod")
        self._drop_materialised(cur, "compact_keys")

    def _count_batch(self, sids: Iterable[str]) -> None:
        """One more batch stored for each of ``sids``: compact a session every COMPACT_EVERY of them."""
        for sid in sids:
            n = self._since_compact.get(sid, 0) + 1
            self._since_compact[sid] = n
            if n >= self.COMPACT_EVERY:
                self._since_compact.pop(sid, None)
                self.compact(sid)
