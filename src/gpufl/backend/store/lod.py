"""Ingest-time summaries of kernels (stats, duration sketch, scopes, levels of detail) and compaction, which
folds a session's partial aggregates into one row per key."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from gpufl.backend import sketch
from gpufl.backend.store.engine import SqlEngine
from gpufl.backend.store.schema import LOD_SHIFTS
from gpufl.contract import events as ev


class LodStore(SqlEngine):
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

    def _count_batch(self, sids: Iterable[str]) -> None:
        """One more batch stored for each of ``sids``: compact a session every COMPACT_EVERY of them."""
        for sid in sids:
            n = self._since_compact.get(sid, 0) + 1
            self._since_compact[sid] = n
            if n >= self.COMPACT_EVERY:
                self._since_compact.pop(sid, None)
                self.compact(sid)
