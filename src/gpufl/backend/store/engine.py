"""What every part of the store stands on: the engine hooks a dialect supplies (connections, staging of a
batch, the few SQL forms that differ), statement helpers, migrations, and the store's errors and result types.

The store is one class (``sql_store.SqlStore``) assembled from one module per job: ``write`` (ingest with
dedup), ``json_ingest`` (a batch parsed by the engine itself), ``lod`` (ingest-time summaries, levels of
detail, compaction), ``sessions``, ``activity`` and ``scopes`` (the query families) and ``keys`` (API keys).
Each job's class derives from ``SqlEngine`` and uses only its hooks; the dialects (``duckdb_store``,
``postgres_store``) implement the hooks once for all of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from gpufl.backend.store.migrations import BACKFILL_LOD, LATEST, MIGRATIONS, missing_columns

Row = tuple[Any, ...]


class StoreError(RuntimeError):
    """The store could not be opened or used (unreachable database, bad URL)."""


class NotFound(LookupError):
    pass


class ValueOutOfRange(ValueError):
    """A value does not fit its column (an integer past int64); the batch's transaction was rolled back."""


class StageRefused(ValueError):
    """The engine's JSON reader did not take a batch as msgspec did (a duplicate key, whose last value
    msgspec keeps; an integer past int64): the caller stores the batch from its decoded records instead."""


@dataclass
class IngestOutcome:
    stored: int = 0
    duplicates: int = 0
    refused: dict[str, list[int]] = field(default_factory=dict)
    """Per session that retention deleted (a tombstone), the positions in the batch of its records, which
    were not stored: see ``SqlStore.ingest``'s ``redeliver``."""


@dataclass
class PageCursor:
    """An opaque position in an ordered list: (sort key, tie-breaker)."""

    key: int
    tie: str | int


class SqlEngine:
    """Engine hooks and helpers shared by every job of the store. Subclasses: DuckDBStore, PostgresStore
    (through ``SqlStore``)."""

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

    def _stream_rows(self, sql: str, params: Sequence[Any], page: int = 10_000) -> Iterator[tuple[Any, ...]]:
        """The rows of one query, fetched ``page`` at a time, with no other request's cursor involved (an
        export streams for minutes, through whichever worker thread serves each chunk)."""
        raise NotImplementedError

    def _stage(self, cur: Any, name: str, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        """Make ``columns`` (all of ``table``'s columns, equal-length lists) visible as relation ``name``
        for the rest of the transaction."""
        raise NotImplementedError

    def _unstage(self, cur: Any, name: str) -> None:
        pass

    def _lock_streams(self, cur: Any, keys: list[tuple[str, str]]) -> None:
        """Serialise ingest of the same (session, stream) across processes (no-op where single-process)."""

    def _longest_fields(self, fields: list[tuple[str, str]], dur: str, ties: list[str]) -> list[str]:
        """Aggregate expressions, one per column of ``fields`` (name, type code of ``schema.TABLES``): its
        value in the group's row with the largest ``dur``; among rows as long, the first in ascending
        ``ties`` order (columns that together are unique per row). Every field comes from the same row."""
        raise NotImplementedError

    def _idiv(self, a: str, b: str) -> str:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

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

    def _json_object(self, fields: list[tuple[str, str]]) -> str:
        """SQL expression building a JSON object from (key, SQL expression) pairs."""
        raise NotImplementedError

    def _json_array(self, src: str, obj: str, order: str) -> str:
        """SELECT returning one row: a JSON array (text) of ``obj`` over the rows of ``src`` in ``order``."""
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
        """Apply the missing schema versions in order, one transaction each, then add the record tables'
        missing contract columns (``migrations.missing_columns``). Backends starting together on one
        PostgreSQL serialise on an advisory lock, so each version is applied once."""
        applied: set[int] = set()
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
                applied.add(version)
        with self._write() as cur:
            self._lock_streams(cur, [("__migrations__", "")])
            rows = self._exec(
                cur,
                """SELECT table_name, column_name FROM information_schema.columns
                   WHERE table_catalog = current_database() AND table_schema = current_schema()""",
            ).fetchall()
            existing: dict[str, set[str]] = {}
            for table, column in rows:
                existing.setdefault(table, set()).add(column)
            for stmt in missing_columns(existing, self.sql_types):
                self._exec(cur, stmt)
            if BACKFILL_LOD in applied:  # the rows the stored sessions' new levels of detail need are in now
                self._backfill_lod(cur)

    def _backfill_lod(self, cur: Any) -> None:
        """Compute the levels of detail migration BACKFILL_LOD added for every session stored before it."""
        raise NotImplementedError

    def schema_version(self) -> int:
        row = self._one("SELECT max(version) FROM schema_migrations")
        return int(row[0]) if row and row[0] is not None else 0

    latest_version = LATEST
