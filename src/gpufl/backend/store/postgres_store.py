"""Shared engine: PostgreSQL, so several backends behind a load balancer use one store.

Batches are staged by COPY into a temporary table (dropped at commit); dedup of a (session, stream) is
serialised across processes with a transaction-scoped advisory lock, so two backends receiving the same
re-delivered batch store it once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import psycopg
from psycopg_pool import ConnectionPool

from gpufl.backend.store.engine import StoreError, ValueOutOfRange
from gpufl.backend.store.schema import TABLES
from gpufl.backend.store.sql_store import SqlStore


class PostgresStore(SqlStore):
    engine = "postgresql"
    sql_types: ClassVar[dict[str, str]] = {
        "I": "BIGINT",
        "F": "DOUBLE PRECISION",
        "T": "TEXT",
        "H": "NUMERIC",
    }

    def __init__(self, dsn: str, pool_size: int = 8) -> None:
        self.dsn = dsn
        self._since_compact = {}
        try:
            # Fail fast on an unreachable database (the pool would otherwise retry in the background).
            psycopg.connect(dsn, connect_timeout=5).close()
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to PostgreSQL: {str(e).strip().splitlines()[0]}") from None
        self._pool = ConnectionPool(
            dsn, min_size=1, max_size=pool_size, open=True, kwargs={"autocommit": True}
        )
        self.migrate()

    @contextmanager
    def _read(self) -> Iterator[Any]:
        with self._pool.connection() as conn, conn.cursor() as cur:
            yield cur

    def _stream_rows(self, sql: str, params: Sequence[Any], page: int = 10_000) -> Iterator[tuple[Any, ...]]:
        # A server-side cursor (named, inside a transaction): the client holds one page, not the result.
        with (
            self._pool.connection() as conn,
            conn.transaction(),
            conn.cursor(name=f"gpufl_stream_{id(params)}") as cur,
        ):
            cur.itersize = page
            cur.execute(self._q(sql), list(params))
            yield from cur

    @contextmanager
    def _write(self) -> Iterator[Any]:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    def _q(self, sql: str) -> str:
        # Shared SQL uses DB-API qmark placeholders; psycopg wants %s (no literal % in our SQL).
        return sql.replace("?", "%s")

    def _stage(self, cur: Any, name: str, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        names = [c for c, _ in TABLES[table]]
        cur.execute(f"CREATE TEMP TABLE {name} (LIKE {table}) ON COMMIT DROP")
        try:
            with cur.copy(f"COPY {name} ({', '.join(names)}) FROM STDIN") as cp:
                for row in zip(*(columns[c] for c in names), strict=True):
                    cp.write_row(row)
        except psycopg.errors.NumericValueOutOfRange as e:
            raise ValueOutOfRange(str(e).splitlines()[0]) from None

    def _unstage(self, cur: Any, name: str) -> None:
        cur.execute(f"DROP TABLE {name}")

    def _lock_streams(self, cur: Any, keys: list[tuple[str, str]]) -> None:
        for sid, stream in keys:  # sorted by the caller: a fixed lock order, no deadlocks
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"{stream}:{sid}"])

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
        # The same ORDER BY for every array_agg: all four fields come from the same (longest) row.
        o = f"ORDER BY {end} - {start} DESC, {seq}"
        by = f"{by}, " if by else ""
        return f"""SELECT {by}session_id, {bucket} AS b, device_id, stream_id, sum({n}) AS n, sum({busy}) AS busy,
                          (array_agg({seq} {o}))[1] AS seq, (array_agg({start} {o}))[1] AS start_ns,
                          (array_agg({end} {o}))[1] AS end_ns, (array_agg({launch} {o}))[1] AS launch_id
                   FROM {src} GROUP BY {by}session_id, {bucket}, device_id, stream_id"""

    def _temp_like(self, cur: Any, name: str, table: str) -> None:
        cur.execute(f"CREATE TEMP TABLE {name} (LIKE {table}) ON COMMIT DROP")

    def _json_object(self, fields: list[tuple[str, str]]) -> str:
        return "json_build_object(" + ", ".join(f"'{k}', {e}" for k, e in fields) + ")"

    def _json_array(self, src: str, obj: str, order: str) -> str:
        return f"SELECT COALESCE(json_agg({obj} ORDER BY {order}), '[]'::json)::text FROM {src}"

    def _longest_fields(self, fields: list[tuple[str, str]], dur: str, ties: list[str]) -> list[str]:
        # The integer fields from one max() of an array: (duration, each tie negated, then the fields)
        # compares by the row's rank first, which is unique per row, so the largest array is the longest
        # row's (PostgreSQL computes the repeated max once). An array_agg(... ORDER BY ...) per field sorts
        # the group's rows once per field: ~2x the time for the raw calls of a /launches window. A field of
        # another type (a copy's kind) keeps its ordered array_agg.
        order = f"ORDER BY {dur} DESC, {', '.join(ties)}"
        key = [dur, *(f"-({t})" for t in ties)]
        ints = [f for f, code in fields if code in ("I", "H")]
        arr = "max(ARRAY[" + ", ".join(f"CAST({e} AS NUMERIC)" for e in [*key, *ints]) + "])"
        return [
            f"CAST(({arr})[{len(key) + ints.index(f) + 1}] AS {self.sql_types[code]})"
            if code in ("I", "H")
            else f"(array_agg({f} {order}))[1]"
            for f, code in fields
        ]

    def _idiv(self, a: str, b: str) -> str:
        return f"({a} / {b})"

    def size_bytes(self) -> int:
        with self._read() as cur:
            cur.execute("SELECT pg_database_size(current_database())")
            return int(cur.fetchone()[0])

    def close(self) -> None:
        self._pool.close()
