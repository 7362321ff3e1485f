"""Embedded engine: one DuckDB file in the data directory, no setup. Single process (DuckDB locks the file).

Batches are staged as Arrow tables registered on the connection (columnar, no per-row binding), which is
what makes ingest fast; writes are serialised by a lock, reads use per-thread cursors and run concurrently.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pyarrow as pa

from gpufl.backend.store.engine import StageRefused, StoreError, ValueOutOfRange
from gpufl.backend.store.json_ingest import sweep_staging
from gpufl.backend.store.schema import TABLES
from gpufl.backend.store.sql_store import SqlStore

_ARROW = {"I": pa.int64(), "F": pa.float64(), "T": pa.string(), "H": pa.decimal128(38, 0)}


class DuckDBStore(SqlStore):
    engine = "duckdb"
    sql_types: ClassVar[dict[str, str]] = {"I": "BIGINT", "F": "DOUBLE", "T": "VARCHAR", "H": "HUGEINT"}

    def __init__(self, path: str | Path, memory_limit: int | None = None) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # Checkpoint when the WAL passes 128 MiB (default 16 MiB, i.e. every 2-3 batches of 50k kernels):
        # each checkpoint recompresses the tables' last, partly filled row groups, so rare ones cost about
        # half the CPU per record. A crash replays at most that much WAL (~0.5 s for 128 MiB).
        config: dict[str, str | bool | int | float | list[str]] = {
            "checkpoint_threshold": "128MiB",
            "allocator_flush_threshold": "16MiB",
            "allocator_bulk_deallocation_flush_threshold": "64MiB",
        }
        if memory_limit is not None:
            # DuckDB's default is 80 % of the machine's memory, on top of what the Python side holds.
            config["memory_limit"] = f"{int(memory_limit)}B"
        try:
            self._con = duckdb.connect(self.path, config=config)
        except duckdb.Error as e:
            raise StoreError(f"cannot open DuckDB store {self.path}: {e}") from None
        if self.path != ":memory:":
            # The file is ours now (DuckDB locks it): whatever is in its staging folder is left over.
            self.staging_dir = Path(self.path + ".staging")
            self.staging_dir.mkdir(exist_ok=True)
            sweep_staging(self.staging_dir)
        self._wlock = threading.Lock()
        self._since_compact = {}
        self._local = threading.local()
        self._schemas = {t: pa.schema([(c, _ARROW[k]) for c, k in cols]) for t, cols in TABLES.items()}
        self.migrate()

    def _cursor(self) -> Any:
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cur = cur
        return cur

    @contextmanager
    def _read(self) -> Iterator[Any]:
        yield self._cursor()

    def _stream_rows(self, sql: str, params: Sequence[Any], page: int = 10_000) -> Iterator[tuple[Any, ...]]:
        cur = self._con.cursor()  # its own: the thread-local cursor belongs to whatever else runs there
        try:
            cur.execute(sql, list(params))
            while rows := cur.fetchmany(page):
                yield from rows
        finally:
            cur.close()

    @contextmanager
    def _write(self) -> Iterator[Any]:
        with self._wlock:
            cur = self._cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def _stage(self, cur: Any, name: str, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        try:
            tbl = pa.Table.from_pydict(columns, schema=self._schemas[table])
        except (OverflowError, pa.ArrowInvalid) as e:
            raise ValueOutOfRange(str(e)) from None
        cur.register(name, tbl)

    def _unstage(self, cur: Any, name: str) -> None:
        cur.unregister(name)

    json_stage = True

    def _parse_json(
        self, cur: Any, name: str, path: str, columns: Sequence[tuple[str, str, str | None]]
    ) -> None:
        # read_json parses in C++ without the GIL, so the Python work of other requests (HTTP, msgspec)
        # runs meanwhile on the other core. It refuses duplicate keys and integers past int64 rather than
        # picking a value, which is what makes it safe after msgspec's decode (SqlStore.ingest_json). A
        # temporary table touches no table of the store: it neither waits for nor delays the writer.
        types = ", ".join(f"'{c}': '{self.sql_types[code]}'" for c, code, _ in columns)
        exprs = ", ".join(c if d is None else f"COALESCE({c}, {d}) AS {c}" for c, _, d in columns)
        src = path.replace("'", "''")
        try:
            cur.execute(
                f"""CREATE OR REPLACE TEMP TABLE {name} AS SELECT {exprs}
                    FROM read_json('{src}', columns = {{{types}}}, format = 'newline_delimited',
                                   compression = 'none')"""
            )
        except duckdb.Error as e:
            raise StageRefused(str(e).splitlines()[0]) from None

    def _script(self, cur: Any, statements: Sequence[str]) -> Any:
        # One call for them all: each return to Python waits for the GIL.
        return cur.execute(";\n".join(statements))

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
        # arg_max over a key unique per row (duration, then lowest seq): every field comes from the same
        # (longest) row. HUGEINT so that no duration can overflow it.
        key = f"(CAST({end} - {start} AS HUGEINT) * 18446744073709551616 - {seq})"
        by = f"{by}, " if by else ""
        return f"""SELECT {by}session_id, {bucket} AS b, device_id, stream_id, sum({n}) AS n, sum({busy}) AS busy,
                          arg_max({seq}, {key}) AS seq, arg_max({start}, {key}) AS start_ns,
                          arg_max({end}, {key}) AS end_ns, arg_max({launch}, {key}) AS launch_id
                   FROM {src} GROUP BY {by}session_id, {bucket}, device_id, stream_id"""

    def _temp_like(self, cur: Any, name: str, table: str) -> None:
        cur.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {table} LIMIT 0")

    def _json_object(self, fields: list[tuple[str, str]]) -> str:
        return "json_object(" + ", ".join(f"'{k}', {e}" for k, e in fields) + ")"

    def _json_array(self, src: str, obj: str, order: str) -> str:
        return f"SELECT CAST(to_json(list({obj} ORDER BY {order})) AS VARCHAR) FROM {src}"

    def _longest_fields(self, fields: list[tuple[str, str]], dur: str, ties: list[str]) -> list[str]:
        # arg_max over a row value: (longest, then the lowest of each tie column) is the maximum. One
        # arg_max of a struct of all the fields, which the planner computes once for the field extractions
        # that repeat it: an arg_max per field cost ~40 % more for launch_lod (10 fields), the costliest
        # statement of a kernel batch's write (~95 of ~230 ms CPU per 50,000 kernels on 1 thread).
        key = f"({', '.join([dur, *(f'-({t})' for t in ties)])})"
        row = "{" + ", ".join(f"'{f}': {f}" for f, _ in fields) + "}"
        return [f"struct_extract(arg_max({row}, {key}), '{f}')" for f, _ in fields]

    def _idiv(self, a: str, b: str) -> str:
        return f"({a} // {b})"

    def size_bytes(self) -> int:
        return Path(self.path).stat().st_size if self.path != ":memory:" else 0

    def close(self) -> None:
        self._con.close()
