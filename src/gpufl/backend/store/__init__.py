"""Store selection from a database URL."""

from __future__ import annotations

from gpufl.backend.store.engine import IngestOutcome, NotFound, PageCursor, StoreError, ValueOutOfRange
from gpufl.backend.store.sql_store import SqlStore

__all__ = [
    "IngestOutcome",
    "NotFound",
    "PageCursor",
    "SqlStore",
    "StoreError",
    "ValueOutOfRange",
    "open_store",
]


def open_store(url: str, duckdb_memory_limit: int | None = None) -> SqlStore:
    """``postgresql://...`` (or ``postgres://``) → PostgreSQL; ``duckdb:///path``, ``duckdb::memory:`` or a
    plain path → DuckDB (``duckdb_memory_limit``: its memory_limit in bytes; None: DuckDB's default)."""
    if url.startswith(("postgresql://", "postgres://")):
        from gpufl.backend.store.postgres_store import PostgresStore

        return PostgresStore(url)
    path = url
    if url.startswith("duckdb://"):
        # SQLAlchemy convention: duckdb:///relative/path, duckdb:////absolute/path, duckdb://:memory:
        path = url[len("duckdb://") :]
        if path.startswith("/"):
            path = path[1:]
    if not path:
        raise StoreError(f"bad database URL {url!r}")
    from gpufl.backend.store.duckdb_store import DuckDBStore

    return DuckDBStore(path, memory_limit=duckdb_memory_limit)
