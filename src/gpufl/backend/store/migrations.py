"""Versioned schema migrations. ``schema_migrations`` records each applied version; a store applies the
missing ones in order, each in its own transaction, at open. Append new versions; never edit old ones."""

from __future__ import annotations

from collections.abc import Callable

from gpufl.backend.store.schema import CONTRACT_TABLES, LOD_INDEXES, PG_INDEXES, TABLES, create_table_sql

# version -> function(engine, sql_types) returning that version's statements
Migration = Callable[[str, dict[str, str]], list[str]]


def _v1(engine: str, sql_types: dict[str, str]) -> list[str]:
    stmts = [create_table_sql(t, sql_types) for t in TABLES]
    if engine == "postgresql":
        stmts += list(PG_INDEXES)
    return stmts


def _v2(engine: str, sql_types: dict[str, str]) -> list[str]:
    """Event contract v2: the launch-API entry as a lead before the GPU start. A store created by this
    code's v1 has the column already (v1 is built from TABLES); an older one gets it appended."""
    return [
        f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS api_lead_ns {sql_types['I']}"
        for t in ("kernels", "memcpys")
    ]


def _v3(engine: str, sql_types: dict[str, str]) -> list[str]:
    """Memsets are listed by time window like copies (``/memsets``): PostgreSQL gets the same index
    (DuckDB prunes by its zone maps)."""
    if engine != "postgresql":
        return []
    return ["CREATE INDEX IF NOT EXISTS memsets_time ON memsets (session_id, start_ns)"]


def _v4(engine: str, sql_types: dict[str, str]) -> list[str]:
    """Tombstones of sessions that retention deleted (``SqlStore.prune_session``): their late records are
    refused instead of coming back as a fragment, until a marked re-delivery re-creates the session. Not in
    TABLES: it must outlive the session's rows, which ``delete_session`` removes from every table there."""
    return [
        f"""CREATE TABLE IF NOT EXISTS pruned_sessions (session_id {sql_types["T"]} PRIMARY KEY,
            pruned_ns {sql_types["I"]}, reason {sql_types["T"]})"""
    ]


def _v5(engine: str, sql_types: dict[str, str]) -> list[str]:
    """Event contract v3: ``sync`` records (CUDA synchronisation calls) get their table. A store created by
    this code's v1 has it already (v1 is built from TABLES); copies' ``mode`` column comes by
    ``missing_columns``, as every new contract field does."""
    stmts = [create_table_sql("syncs", sql_types).replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)]
    if engine == "postgresql":
        stmts.append("CREATE INDEX IF NOT EXISTS syncs_time ON syncs (session_id, start_ns)")
    return stmts


def _v6(engine: str, sql_types: dict[str, str]) -> list[str]:
    """Event contract v5: ``capture_window`` records (when a session not in ``continuous`` capture mode traced)
    get their table, read by ``/sessions/{id}/capture-windows``. A store created by this code's v1 has it
    already (v1 is built from TABLES)."""
    stmts = [
        create_table_sql("capture_windows", sql_types).replace(
            "CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1
        )
    ]
    if engine == "postgresql":
        stmts.append("CREATE INDEX IF NOT EXISTS capture_windows_s ON capture_windows (session_id, start_ns)")
    return stmts


def _v7(engine: str, sql_types: dict[str, str]) -> list[str]:
    """Event contract v6: the deep engines' ``profile_range`` records (what a deep range's samples are a share
    of and what was lost) get their table, read by ``/sessions/{id}/deep``. A store created by this code's v1
    has it already (v1 is built from TABLES)."""
    stmts = [
        create_table_sql("profile_ranges", sql_types).replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)
    ]
    if engine == "postgresql":
        stmts.append("CREATE INDEX IF NOT EXISTS profile_ranges_s ON profile_ranges (session_id, scope_inst)")
    return stmts


def _v8(engine: str, sql_types: dict[str, str]) -> list[str]:
    """Stored levels of detail for the memory lanes and the launch-call tracks (``memory_lod``,
    ``launch_lod``), as kernels have. A store created by this code's v1 has them already; the rows of the
    sessions stored before are computed from their raw rows once the contract's columns are in
    (``LodStore.backfill_lod``, run by ``migrate`` after this version)."""
    stmts = [
        create_table_sql(t, sql_types).replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)
        for t in ("memory_lod", "launch_lod")
    ]
    if engine == "postgresql":
        stmts += [i.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS", 1) for i in LOD_INDEXES]
    return stmts


BACKFILL_LOD = 8
"""The version after which ``migrate`` computes the new levels of detail of the sessions already stored."""


def _v9(engine: str, sql_types: dict[str, str]) -> list[str]:
    """Remote capture (issue #22): operators' requests and the agents' reports of the sessions they handed
    each to (``store/captures.py``). Not in TABLES: not a session's rows."""
    t, i, f = sql_types["T"], sql_types["I"], sql_types["F"]
    return [
        f"""CREATE TABLE IF NOT EXISTS capture_requests (id {t} PRIMARY KEY, app {t}, host_glob {t},
            job_id {t}, engines {t}, seconds {f}, requester {t}, created_ns {i}, expires_ns {i})""",
        f"""CREATE TABLE IF NOT EXISTS capture_deliveries (request_id {t}, session_id {t}, host {t},
            delivered_ns {i}, error {t}, PRIMARY KEY (request_id, session_id))""",
    ]


def _v10(engine: str, sql_types: dict[str, str]) -> list[str]:
    """Ingest keys bound to hosts (issue #22): a key's ``host_glob`` limits the hosts it may name on the agent
    routes (``store/keys.py``); NULL, every key before this, names any host."""
    return [f"ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS host_glob {sql_types['T']}"]


def _v11(engine: str, sql_types: dict[str, str]) -> list[str]:
    """The memory lanes' and thread tracks' levels of detail are stored from 2^22 ns (``SIDE_LOD_SHIFTS``):
    the rows of the 2^18 and 2^20 ns levels that versions 8-10 stored are no longer read (a finer resolution
    is answered from the raw rows), and go. The levels from 2^22 ns are the same rows as before, so no answer
    changes. The bound is written out, not read from ``SIDE_LOD_SHIFTS``: a migration keeps meaning what it
    meant when it was added."""
    return [f"DELETE FROM {t} WHERE level < 22" for t in ("memory_lod", "launch_lod")]


MIGRATIONS: dict[int, Migration] = {
    1: _v1, 2: _v2, 3: _v3, 4: _v4, 5: _v5, 6: _v6, 7: _v7, 8: _v8, 9: _v9, 10: _v10, 11: _v11,
}  # fmt: skip
LATEST = max(MIGRATIONS)


def missing_columns(existing: dict[str, set[str]], sql_types: dict[str, str]) -> list[str]:
    """Statements adding to the contract's tables the columns of contract fields they lack (``existing``: each
    table's columns now). Not a numbered version: a field added to the contract is a column a store made
    before lacks, whichever version it is at, so a store checks this at every open (one catalog query)."""
    return [
        f"ALTER TABLE {table} ADD COLUMN {name} {sql_types[code]}"
        for table in CONTRACT_TABLES
        for name, code in TABLES[table]
        if name not in existing.get(table, set())
    ]
