"""Table definitions shared by both engines (column name, type code), and migration 1 built from them.

Type codes: I = 64-bit integer, F = double, T = text, H = wide integer for sums of durations (HUGEINT /
NUMERIC), which hostile or huge inputs can't overflow. Raw records live in one table per record type, keyed
by (session_id, seq) (stream implied by the type); dict entries are resolved at query time by joins, so a
record may arrive before its session_start or its dict entries. Summary tables (kernel_stats,
kernel_sketch, kernel_lod, memory_lod, launch_lod, kernel_scopes, session_streams, type_counts) hold mergeable partial aggregates:
each batch appends its own rows (no upsert: DuckDB's ON CONFLICT costs tens of ms per statement, and
appends never contend between backends); queries merge them (sums, min, max, longest-wins), and
compaction periodically folds a session's partials into one row per key.
"""

from __future__ import annotations

from gpufl.contract import events as ev
from gpufl.contract import fields

Columns = tuple[tuple[str, str], ...]

_KERNEL_LIKE = (("session_id", "T"), ("seq", "I"))
_CODES = {"int": "I", "float": "F", "str": "T"}

# Record types stored verbatim, one table each, its columns the record's fields (``record_columns``). The rest
# are taken apart (system samples, dict entries, session starts and ends) or kept as JSON (``write.py``).
RECORD_TABLES: dict[str, str] = {
    "kernel": "kernels",
    "memcpy": "memcpys",
    "memset": "memsets",
    "sync": "syncs",
    "scope_begin": "scope_begins",
    "scope_end": "scope_ends",
    "profile_sample": "profile_samples",
}


def record_columns(cls: type[ev.Record], other: dict[str, str] | None = None) -> Columns:
    """A record table's columns: the record type's fields in the contract's order (``gpufl.contract.fields``),
    less ``stream`` (implied by the type). The contract is the one list: a field added there is a column
    here, and ``migrations.missing_columns`` adds it to a store made before. Columns are always named in
    inserts, so a store whose columns were created in another order reads and writes the same."""
    cols = []
    for f in fields.field_specs(cls):
        if f.name == "stream":
            continue
        if other and f.name in other:  # a list or flag the table stores in a scalar column (see its writer)
            cols.append((f.name, other[f.name]))
            continue
        if f.kind not in _CODES:
            raise TypeError(f"{cls.__name__}.{f.name}: no column type for a field of kind {f.kind!r}")
        cols.append((f.name, _CODES[f.kind]))
    return tuple(cols)


TABLES: dict[str, Columns] = {
    "sessions": (
        ("session_id", "T"),
        ("host", "T"),
        ("app", "T"),
        ("pid", "I"),
        ("job_id", "T"),
        ("start_ns", "I"),
        ("header", "T"),
    ),
    "session_streams": (
        ("session_id", "T"),
        ("stream", "T"),
        ("received", "I"),
        ("first_ns", "I"),
        ("last_ns", "I"),
        ("bytes", "I"),
        ("updated_ns", "I"),
    ),
    "stream_ends": (
        ("session_id", "T"),
        ("stream", "T"),
        ("seq", "I"),
        ("end_ns", "I"),
        ("reason", "T"),
        ("records", "I"),
        ("dropped", "I"),
    ),
    "type_counts": (("session_id", "T"), ("type", "T"), ("n", "I")),
    "seq_ranges": (("session_id", "T"), ("stream", "T"), ("lo", "I"), ("hi", "I")),
    "dicts": (
        ("session_id", "T"),
        ("stream", "T"),
        ("kind", "T"),
        ("id", "I"),
        ("value", "T"),
        ("mangled", "T"),
        ("frames", "T"),
        ("launch", "T"),
    ),
    **{table: record_columns(ev.TYPE_BY_TAG[tag]) for tag, table in RECORD_TABLES.items()},
    "system_points": (
        *_KERNEL_LIKE,
        ("ts_ns", "I"),
        ("device_id", "I"),
        ("metric", "T"),
        ("value", "F"),
    ),
    "other_events": (
        ("session_id", "T"),
        ("stream", "T"),
        ("seq", "I"),
        ("type", "T"),
        ("ts_ns", "I"),
        ("body", "T"),
    ),
    "capture_windows": (  # contract v5: when a non-continuous session traced; the record whole in ``body``
        ("session_id", "T"),
        ("seq", "I"),
        ("start_ns", "I"),
        ("end_ns", "I"),
        ("mode", "T"),
        ("trigger", "T"),
        ("requester", "T"),
        ("ended", "T"),
        ("body", "T"),
    ),
    # contract v6: the deep engines' ranges, every field a column (the engines as a JSON list, the flag 0/1);
    # not in RECORD_TABLES, whose rows the JSON fast path and the export read as plain scalars.
    "profile_ranges": record_columns(ev.ProfileRange, {"engines": "T", "pc_buffer_full": "I"}),
    "kernel_stats": (
        ("session_id", "T"),
        ("launch_id", "I"),
        ("n", "I"),
        ("total_ns", "H"),
        ("min_ns", "I"),
        ("max_ns", "I"),
    ),
    "kernel_sketch": (("session_id", "T"), ("launch_id", "I"), ("bucket", "I"), ("n", "I")),
    "kernel_lod": (
        ("session_id", "T"),
        ("level", "I"),
        ("bucket", "I"),
        ("device_id", "I"),
        ("stream_id", "I"),
        ("n", "I"),
        ("busy_ns", "H"),
        ("seq", "I"),
        ("start_ns", "I"),
        ("end_ns", "I"),
        ("launch_id", "I"),
    ),
    "kernel_scopes": (("session_id", "T"), ("scope_inst", "I"), ("n", "I"), ("total_ns", "H")),
    # The memory lanes' levels of detail (``lod.MEMORY_LOD``): copies and memsets per level, bucket (by start),
    # kind (the copy kind or "memset") and stream; the longest one's fields (``long_bytes``: its bytes).
    "memory_lod": (
        ("session_id", "T"),
        ("level", "I"),
        ("bucket", "I"),
        ("kind", "T"),
        ("device_id", "I"),
        ("stream_id", "I"),
        ("n", "I"),
        ("bytes", "H"),
        ("busy_ns", "H"),
        ("seq", "I"),
        ("start_ns", "I"),
        ("end_ns", "I"),
        ("long_bytes", "I"),
    ),
    # The thread tracks' levels of detail (``lod.LAUNCH_LOD``): launch-API calls per level, bucket (by call
    # entry a0) and thread; the longest call's fields (kind 0 kernel, 1 copy); the calls' lead (GPU start -
    # entry) bounds, which let a window find its edge calls among the raw rows.
    "launch_lod": (
        ("session_id", "T"),
        ("level", "I"),
        ("bucket", "I"),
        ("thread_id", "I"),
        ("n", "I"),
        ("busy_ns", "H"),
        ("lead_max", "I"),
        ("lead_min", "I"),
        ("kind", "I"),
        ("seq", "I"),
        ("corr_id", "I"),
        ("launch_id", "I"),
        ("copy_kind", "T"),
        ("device_id", "I"),
        ("stream_id", "I"),
        ("gpu_start", "I"),
        ("a0", "I"),
        ("a1", "H"),  # entry + duration: past int64 at the contract's bounds (entry 2200 + 100 years)
    ),
    "api_keys": (
        ("id", "T"),
        ("name", "T"),
        ("role", "T"),
        ("hash", "T"),
        ("created_ns", "I"),
        ("revoked_ns", "I"),
    ),
}

PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "sessions": ("session_id",),
    "stream_ends": ("session_id", "stream"),
    "dicts": ("session_id", "stream", "kind", "id"),
    "api_keys": ("id",),
}

# The copies' and launch calls' levels of detail (migration 8 makes them in a store made before).
LOD_INDEXES: tuple[str, ...] = (
    "CREATE INDEX memory_lod_s ON memory_lod (session_id, level, bucket)",
    "CREATE INDEX launch_lod_s ON launch_lod (session_id, level, bucket)",
)

# Secondary indexes only where an engine uses them (PostgreSQL); DuckDB relies on zone maps (records arrive
# roughly in time order) and skips ART indexes on the big tables, which would slow bulk inserts.
PG_INDEXES: tuple[str, ...] = (
    "CREATE INDEX kernels_time ON kernels (session_id, start_ns)",
    "CREATE INDEX kernels_seq ON kernels (session_id, seq)",
    "CREATE INDEX memcpys_time ON memcpys (session_id, start_ns)",
    "CREATE INDEX memcpys_seq ON memcpys (session_id, seq)",
    "CREATE INDEX memsets_seq ON memsets (session_id, seq)",
    "CREATE INDEX syncs_time ON syncs (session_id, start_ns)",
    "CREATE INDEX scope_begins_s ON scope_begins (session_id, inst)",
    "CREATE INDEX scope_ends_s ON scope_ends (session_id, inst)",
    "CREATE INDEX profile_samples_s ON profile_samples (session_id, scope_inst)",
    "CREATE INDEX system_points_s ON system_points (session_id, metric, device_id, ts_ns)",
    "CREATE INDEX other_events_s ON other_events (session_id)",
    "CREATE INDEX capture_windows_s ON capture_windows (session_id, start_ns)",
    "CREATE INDEX profile_ranges_s ON profile_ranges (session_id, scope_inst)",
    "CREATE INDEX seq_ranges_s ON seq_ranges (session_id, stream)",
    "CREATE INDEX session_streams_s ON session_streams (session_id)",
    "CREATE INDEX type_counts_s ON type_counts (session_id)",
    "CREATE INDEX kernel_stats_s ON kernel_stats (session_id)",
    "CREATE INDEX kernel_sketch_s ON kernel_sketch (session_id)",
    "CREATE INDEX kernel_lod_s ON kernel_lod (session_id, level, bucket)",
    "CREATE INDEX kernel_scopes_s ON kernel_scopes (session_id, scope_inst)",
    *LOD_INDEXES,
)

# Tables whose columns are contract fields: a field added to the contract is a column added at open.
CONTRACT_TABLES: tuple[str, ...] = (*RECORD_TABLES.values(), "profile_ranges")

# Tables that hold a session's data (everything but api_keys): deleting a session deletes its rows here.
SESSION_TABLES = tuple(t for t in TABLES if t != "api_keys")

# Levels of detail for the kernel timeline (the memory and launch-call timelines store the coarser ones:
# SIDE_LOD_SHIFTS): bucket width 2^shift ns, 262 us to 4.3 s, each 4x the last, so a query re-buckets at most
# ~4 stored buckets into each output bucket.
LOD_SHIFTS: tuple[int, ...] = (18, 20, 22, 24, 26, 28, 30, 32)

# The levels the memory lanes' and thread tracks' tables store (``lod.MEMORY_LOD``, ``lod.LAUNCH_LOD``): the
# kernel lanes' from 2^22 ns (4.2 ms). A finer resolution is answered from the raw rows, which at the UI's
# one or two buckets per pixel is a window of seconds: at 10M kernels of a training loop, 2^18 and 2^20 ns
# buckets held ~5 and ~15 calls each, 87 % of launch_lod's rows and half its ingest cost, and served no
# faster than the raw rows (docs/benchmarks.md, 2026-12-06, #24/#17). Migration 11 drops the finer rows
# that stores written before kept.
SIDE_LOD_SHIFTS: tuple[int, ...] = (22, 24, 26, 28, 30, 32)


def create_table_sql(table: str, sql_types: dict[str, str]) -> str:
    cols = [f"{name} {sql_types[code]}" for name, code in TABLES[table]]
    pk = PRIMARY_KEYS.get(table)
    if pk:
        cols.append(f"PRIMARY KEY ({', '.join(pk)})")
    return f"CREATE TABLE {table} ({', '.join(cols)})"
