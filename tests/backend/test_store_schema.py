"""The record tables are the contract's record types (gpufl.backend.store.schema, gpufl.contract.fields), and a
store made before a field existed gets its column at open (migrations.missing_columns)."""

from __future__ import annotations

import msgspec

from gpufl.backend.store import SqlStore, open_store
from gpufl.backend.store.schema import RECORD_TABLES, TABLES
from gpufl.contract import events as ev
from gpufl.contract import fields

from .factory import SessionFactory
from .helpers import feed, kernel_detail


def test_record_tables_hold_every_field_of_their_record() -> None:
    for tag, table in RECORD_TABLES.items():
        cls = ev.TYPE_BY_TAG[tag]
        names = [f.name for f in msgspec.structs.fields(cls) if f.name != "stream"]
        assert [c for c, _ in TABLES[table]] == names, table
        kinds = {f.name: f.kind for f in fields.field_specs(cls)}
        codes = {"int": "I", "float": "F", "str": "T"}
        assert all(codes[kinds[c]] == code for c, code in TABLES[table]), table


def test_field_specs_read_kinds_and_nullability_from_the_structs() -> None:
    specs = {f.name: f for f in fields.field_specs(ev.Memcpy)}
    assert (specs["bytes"].kind, specs["bytes"].nullable, specs["bytes"].required) == ("int", False, True)
    assert (specs["throughput_gbps"].kind, specs["throughput_gbps"].nullable) == ("float", True)
    assert (specs["copy_kind"].kind, specs["src_kind"].required) == ("str", False)  # a literal of strings
    assert fields.field_specs(ev.SessionStart)[-1].kind == "other"  # clock: a struct
    assert [f.name for f in fields.own_fields(ev.ScopeEnd)] == ["inst", "ts_ns", "error"]
    assert (specs["device_id"].ge, specs["device_id"].le) == (0, ev.DEVICE_ID_MAX)
    assert fields.timestamps(ev.Kernel) == ("start_ns", "end_ns", "api_start_ns")  # not api_lead/dur
    assert fields.timestamps(ev.Dropped) == ("first_ns", "last_ns")


def test_a_store_missing_a_contract_column_gets_it_at_open(tmp_path: object) -> None:
    """As if the contract had gained Kernel.graph_node_id and Memset.scope_depth after the store was made: the
    columns are added at open, and records carrying them are stored and read back."""
    import duckdb

    path = f"{tmp_path}/old.duckdb"
    open_store(path).close()
    con = duckdb.connect(path)
    con.execute("ALTER TABLE kernels DROP COLUMN graph_node_id")
    con.execute("ALTER TABLE memsets DROP COLUMN scope_depth")
    con.close()
    store = open_store(path)
    try:
        f = SessionFactory("grown")
        head = [f.start("device"), f.launch(1, "gemm")]
        k = f.kernel(1, 100, 50, graph_node_id=7)
        feed(store, [*head, k])
        assert kernel_detail(store, "grown", k.seq)["graph_node_id"] == 7
        cols = [
            r[0]
            for r in store._all(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'memsets'"
            )
        ]
        assert cols[-1] == "scope_depth"  # appended: inserts name their columns
    finally:
        store.close()


def test_reopening_adds_nothing(store: SqlStore) -> None:
    before = store._all("SELECT table_name, column_name FROM information_schema.columns ORDER BY 1, 2")
    store.migrate()
    assert (
        store._all("SELECT table_name, column_name FROM information_schema.columns ORDER BY 1, 2") == before
    )
