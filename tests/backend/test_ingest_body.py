"""Request bodies through ``ingest_body`` (the HTTP path): NDJSON decoded whole without splitting, and on
DuckDB single-type batches parsed by the engine itself (``SqlStore.ingest_json``). Whatever path a batch
takes, the answer (stored, duplicates, each rejection with its reason) and every table's content must be
those of the record-by-record path, fed the same batches in the same order."""

from __future__ import annotations

import json
import random
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gpufl.backend import ingest
from gpufl.backend.ingest import BadBody, IngestResult, TooLarge, ingest_body
from gpufl.backend.store import IngestOutcome, SqlStore, open_store
from gpufl.backend.store.json_ingest import JSON_TYPES
from gpufl.backend.store.schema import LOD_SHIFTS, SESSION_TABLES, TABLES
from gpufl.contract import events as ev

from .conftest import _with_search_path
from .factory import SessionFactory


@pytest.fixture
def reference(store_url: str, tmp_path: Path) -> Iterator[SqlStore]:
    """A second, empty store on the same engine: fed record by record."""
    if store_url.startswith("duckdb"):
        s = open_store(f"duckdb:///{tmp_path / 'reference.duckdb'}")
        yield s
        s.close()
        return
    base = store_url.split("?")[0]
    schema = "r_" + secrets.token_hex(6)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    s = open_store(_with_search_path(base, schema))
    try:
        yield s
    finally:
        s.close()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def json_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per ``ingest_json`` call: whether the engine stored the batch itself."""
    calls: list[bool] = []
    real = SqlStore.ingest_json

    def spy(self: SqlStore, *a: Any, **k: Any) -> IngestOutcome | None:
        out = real(self, *a, **k)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(SqlStore, "ingest_json", spy)
    return calls


def dump(store: SqlStore) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for t in SESSION_TABLES:
        cols = [c for c, _ in TABLES[t] if not (t == "session_streams" and c == "updated_ns")]
        out[t] = sorted(store._all(f"SELECT {', '.join(cols)} FROM {t}"), key=repr)
    return out


def by_records(store: SqlStore, stream: str, body: bytes) -> IngestResult:
    """The reference: split the body, decode and check each record on its own, store the valid ones."""
    raws = ingest.split_records(body, False)
    return ingest._ingest_slow(store, stream, raws)


def answer(r: IngestResult) -> tuple[int, int, list[tuple[int, int | None, str]]]:
    return r.stored, r.duplicates, [(x.index, x.seq, x.reason) for x in r.rejected]


def lines(recs: list[ev.Record]) -> list[bytes]:
    return [ev.encode(r) for r in recs]


def body_of(raws: list[bytes]) -> bytes:
    return b"\n".join(raws) + b"\n"


def kernels(f: SessionFactory, n: int, t: int = 0) -> list[ev.Record]:
    return [
        f.kernel(1 + i % 3, t + i * 1000, 300 + (i * 37) % 900, scope_inst=i // 10, stream_id=7 + i % 2)
        for i in range(n)
    ]


def same_as_records(store: SqlStore, reference: SqlStore, batches: list[tuple[str, bytes]]) -> None:
    for stream, body in batches:
        got = ingest_body(store, stream, body, None, 50_000)
        want = by_records(reference, stream, body)
        assert answer(got) == answer(want)
    assert dump(store) == dump(reference)


def test_clean_kernel_batches_go_to_the_engine_and_store_what_the_record_path_stores(
    store: SqlStore, reference: SqlStore, json_calls: list[bool]
) -> None:
    f = SessionFactory("clean")
    head = lines([f.start("device"), f.launch(1, "a"), f.launch(2, "b"), f.launch(3, "c")])
    ks = lines(kernels(f, 3000))
    batches = [("device", body_of(ks[:1000])), ("device", body_of(head)), ("device", body_of(ks[1000:]))]
    same_as_records(store, reference, batches)
    # The two kernel batches were parsed by DuckDB; the mixed one (session_start, dicts) took the
    # Python path. PostgreSQL has no engine-side parse: every batch took the Python path.
    assert json_calls == ([True, True] if store.json_stage else [])


MUTATIONS: list[tuple[str, object]] = [
    ("seq", -1),
    ("seq", 2**63),
    ("start_ns", -5),
    ("end_ns", 0),
    ("api_start_ns", -1),
    ("device_id", 2**63),
    ("scope_inst", 2**64 - 1),
    ("corr_id", "7"),
    ("corr_id", 1.5),
    ("session_id", ""),
    ("session_id", "x" * 65),
    ("session_id", "é" * 65),
    ("session_id", "nul\u0000"),
    ("stream", "scope"),
    ("type", "memcpy"),
    ("type", "nope"),
]


@pytest.mark.parametrize(("field", "value"), MUTATIONS)
def test_one_bad_record_among_valid_ones_is_rejected_with_its_reason_the_rest_stored(
    store: SqlStore, reference: SqlStore, field: str, value: object
) -> None:
    f = SessionFactory("bad")
    ks = lines(kernels(f, 400))
    doc = json.loads(ks[123])
    doc[field] = value
    ks[123] = json.dumps(doc).encode()
    body = body_of(ks)
    got = ingest_body(store, "device", body, None, 50_000)
    assert got.stored == 399 and len(got.rejected) == 1 and got.rejected[0].index == 123
    assert answer(got) == answer(by_records(reference, "device", body))
    assert dump(store) == dump(reference)


def test_text_the_engine_reads_differently_takes_the_python_path(
    store: SqlStore, reference: SqlStore, json_calls: list[bool]
) -> None:
    f = SessionFactory("odd")
    ks = lines(kernels(f, 60))
    dup = [
        k[:-1] + b', "corr_id": 99999, "end_ns": ' + str(json.loads(k)["end_ns"] + 5).encode() + b"}"
        for k in ks[:20]
    ]
    escaped = [k.replace(b'"odd"', b'"od\\u0064"') for k in ks[20:40]]
    key_escape = [k[:-1] + b', "se\\u0071": ' + str(json.loads(k)["seq"]).encode() + b"}" for k in ks[40:60]]
    same_as_records(
        store,
        reference,
        [("device", body_of(dup)), ("device", body_of(escaped)), ("device", body_of(key_escape))],
    )
    # Duplicate keys: msgspec keeps the last value, and so does the store.
    corr = store._all("SELECT DISTINCT corr_id FROM kernels WHERE session_id = 'odd' AND seq < 20")
    assert corr == [(99999,)]
    if store.json_stage:
        assert json_calls == [False]  # the duplicate keys made DuckDB refuse; escapes never reach it


def test_duplicates_overlaps_repeats_and_gaps_are_counted_as_record_by_record(
    store: SqlStore, reference: SqlStore
) -> None:
    f = SessionFactory("dups")
    ks = lines(kernels(f, 2000))
    g = SessionFactory("gaps")
    gappy = lines(kernels(g, 900))[::3]
    batches = [
        ks[:800],
        ks[:800],  # re-sent whole
        ks[700:1500],  # overlaps the first
        ks[1500:1600] + ks[1500:1550],  # repeats inside a batch
        ks[1600:],
        gappy,  # a batch with gaps inside
        gappy[::-1],
    ]
    same_as_records(store, reference, [("device", body_of(b)) for b in batches])


def test_types_with_defaults_and_every_json_type(store: SqlStore, reference: SqlStore) -> None:
    f = SessionFactory("types")
    t = f.t0
    memsets = [
        ev.Memset(
            session_id="types",
            stream="device",
            seq=i + 1,
            device_id=0,
            stream_id=1,
            corr_id=i,
            start_ns=t + i * 100,
            end_ns=t + i * 100 + 10,
            bytes=64,
            value=i % 2,
        )
        for i in range(50)
    ]  # value 0, mem_kind "unknown": defaults the writer omits
    scope: list[ev.Record] = []
    for i in range(40):
        scope.append(
            ev.ScopeBegin(
                session_id="types",
                stream="scope",
                seq=2 * i + 1,
                inst=i,
                path_id=i % 3,
                depth=0,
                ts_ns=t + i * 50,
                thread_id=1,
                tag="x" if i % 2 else None,
            )
        )
        scope.append(
            ev.ScopeEnd(session_id="types", stream="scope", seq=2 * i + 2, inst=i, ts_ns=t + i * 50 + 9)
        )
    assert {"kernel", "memset", "scope_begin", "scope_end"} <= set(JSON_TYPES)
    same_as_records(
        store,
        reference,
        [
            ("device", body_of(lines(memsets))),
            ("scope", body_of(lines(scope[0::2]))),
            ("scope", body_of(lines(scope[1::2]))),
            (
                "device",
                body_of(lines([f.memcpy(10, 5, 64) for _ in range(10)])),
            ),  # a float column: Python path
        ],
    )


def test_multibyte_session_ids_are_rejected_on_every_path(store: SqlStore, reference: SqlStore) -> None:
    for sid in ("é" * 40, "sé😀"):  # within 64 characters, but outside the contract's id rule (ASCII only)
        ks = lines(kernels(SessionFactory(sid), 30))
        same_as_records(store, reference, [("device", body_of(ks))])
    assert store._one("SELECT count(DISTINCT session_id) FROM kernels") == (0,)


@pytest.mark.parametrize(
    "shape",
    [
        lambda ls: b"\n".join(ls),  # no final newline
        lambda ls: b"\n".join(ls) + b"\n\n\n",
        lambda ls: b"\r\n".join(ls) + b"\r\n",
        lambda ls: b"\n".join(ls[:5]) + b"\n\n  \n" + b"\n".join(ls[5:]),  # blank lines inside
        lambda ls: b"  " + b"  \n  ".join(ls) + b"  ",
    ],
)
def test_ndjson_shapes(store: SqlStore, reference: SqlStore, shape: Callable[[list[bytes]], bytes]) -> None:
    ks = lines(kernels(SessionFactory("shape"), 12))
    same_as_records(store, reference, [("device", shape(ks))])


def test_json_array_body_and_multi_session_batches(store: SqlStore, reference: SqlStore) -> None:
    ks = lines(kernels(SessionFactory("arr"), 40))
    got = ingest_body(store, "device", b"[" + b",\n ".join(ks) + b"]", True, 50_000)
    assert answer(got) == answer(ingest._ingest_slow(reference, "device", ks))
    mixed = lines(kernels(SessionFactory("m1"), 20)) + lines(kernels(SessionFactory("m2"), 20))
    random.Random(3).shuffle(mixed)
    same_as_records(store, reference, [("device", body_of(mixed))])


def test_record_limit_counts_records_not_lines(store: SqlStore) -> None:
    ks = lines(kernels(SessionFactory("lim"), 10))
    with pytest.raises(TooLarge, match="batch of 10 records exceeds 9"):
        ingest_body(store, "device", body_of(ks), None, 9)
    # Blank lines are not records: 10 records in 14 lines fit a limit of 10.
    assert (
        ingest_body(store, "device", b"\n\n".join(ks[:5]) + b"\n\n" + body_of(ks[5:]), None, 10).stored == 10
    )
    with pytest.raises(BadBody, match="no records"):
        ingest_body(store, "device", b" \n\n \r\n", None, 10)


def test_lod_rows_are_the_longest_kernel_per_bucket_at_every_level(store: SqlStore) -> None:
    f = SessionFactory("lod")
    rng = random.Random(5)
    recs = [
        f.kernel(
            rng.randrange(1, 4),
            rng.randrange(0, 3 * 10**9),
            rng.choice([100, 5000, 5000, 2**20]),
            stream_id=rng.choice([7, 8]),
        )
        for _ in range(3000)
    ]
    ks = lines(recs)
    for i in range(0, len(ks), 250):  # batches overlap in time: buckets get rows from several batches
        ingest_body(store, "device", body_of(ks[i : i + 250]), None, 50_000)
    partial = store._one("SELECT count(*) FROM kernel_lod")
    store.compact("lod")
    expect: dict[tuple[int, int, int, int], list[Any]] = {}
    for k in recs:
        assert isinstance(k, ev.Kernel)
        for level in LOD_SHIFTS:
            key = (level, k.start_ns >> level, k.device_id, k.stream_id)
            e = expect.setdefault(key, [0, 0, None])
            e[0] += 1
            e[1] += k.end_ns - k.start_ns
            rank = (k.end_ns - k.start_ns, -k.seq)
            if e[2] is None or rank > e[2][0]:
                e[2] = (rank, (k.seq, k.start_ns, k.end_ns, k.launch_id))
    rows = store._all(
        """SELECT level, bucket, device_id, stream_id, n, busy_ns, seq, start_ns, end_ns, launch_id
           FROM kernel_lod WHERE session_id = 'lod'"""
    )
    got = {tuple(r[:4]): (int(r[4]), int(r[5]), tuple(r[6:])) for r in rows}
    assert len(got) == len(rows)  # compaction left one row per key
    assert got == {k: (e[0], e[1], e[2][1]) for k, e in expect.items()}
    assert partial is not None and partial[0] > len(rows)  # there was something to fold


@pytest.mark.parametrize(
    ("sid", "field", "value", "route"),
    [
        ("x" * 65, None, None, "device"),  # too long
        ("é" * 33, None, None, "device"),  # 33 characters, but not ASCII: outside the id rule
        ("é" * 65, None, None, "device"),
        ("s", "stream", "scope", "device"),  # every record claims another stream
        ("s", None, None, "scope"),  # kernels posted to the scope stream
        ("s", "seq", -3, "device"),
        ("s", "seq", -(2**63), "device"),  # a seq's distance to the one before it overflows a BIGINT
        ("s", "start_ns", -(2**63), "device"),  # and so would a duration
    ],
)
def test_a_whole_batch_failing_one_check(
    store: SqlStore, reference: SqlStore, sid: str, field: str | None, value: object, route: str
) -> None:
    ks = lines(kernels(SessionFactory(sid), 50))
    if field is not None:
        ks = [json.dumps({**json.loads(k), field: value}).encode() for k in ks]
    body = body_of(ks)
    got = ingest_body(store, route, body, None, 50_000)
    assert answer(got) == answer(by_records(reference, route, body))
    assert dump(store) == dump(reference)
    assert got.stored == 0


def test_without_a_usable_staging_folder_the_python_path_stores_the_batch(
    store: SqlStore, reference: SqlStore, json_calls: list[bool]
) -> None:
    if store.staging_dir is not None:
        shutil.rmtree(store.staging_dir)  # removed under the running store: mkstemp fails
    ks = lines(kernels(SessionFactory("notmp"), 100))
    same_as_records(store, reference, [("device", body_of(ks))])
    assert json_calls == ([False] if store.json_stage else [])


def test_seqs_out_of_order_go_to_the_engine_repeats_do_not(
    store: SqlStore, reference: SqlStore, json_calls: list[bool]
) -> None:
    """The engine path finds distinct seqs without hashing them when they increase in scan order; any other
    order is counted exactly, and a repeat anywhere sends the batch down the record path."""
    f = SessionFactory("order")
    ks = lines(kernels(f, 900))
    shuffled = ks[:300]
    random.Random(11).shuffle(shuffled)
    repeat_far = [*ks[300:600], ks[310]]  # increasing but for the last record, a repeat of an early one
    repeat_next = ks[600:700] + ks[699:900]  # one repeat, right after itself
    same_as_records(
        store,
        reference,
        [("device", body_of(shuffled)), ("device", body_of(repeat_far)), ("device", body_of(repeat_next))],
    )
    assert json_calls == ([True, False, False] if store.json_stage else [])


def test_extreme_times_in_a_whole_batch_are_rejected_not_an_error(
    store: SqlStore, reference: SqlStore
) -> None:
    ks = [
        json.dumps({**json.loads(k), "start_ns": -(2**63), "end_ns": 2**63 - 1}).encode()
        for k in lines(kernels(SessionFactory("ext"), 30))
    ]
    body = body_of(ks)
    got = ingest_body(store, "device", body, None, 50_000)
    assert got.stored == 0 and len(got.rejected) == 30
    assert answer(got) == answer(by_records(reference, "device", body))
    assert dump(store) == dump(reference)


def test_a_batch_the_engine_parses_alongside_the_decode_that_msgspec_refuses_is_not_written_by_it(
    store: SqlStore, reference: SqlStore, json_calls: list[bool]
) -> None:
    """The engine's parse starts on a guess (first and last line are kernels) while msgspec decodes: a
    record of another type between them, or one msgspec refuses, means the parse is thrown away."""
    f = SessionFactory("guess")
    ks = lines(kernels(f, 300))
    mixed = [*ks[:100], ev.encode(f.launch(9, "late")), *ks[100:200]]
    bad = ks[200:300]
    bad[50] = bad[50].replace(b'"corr_id":', b'"corr_id":"x","_":')  # a string where an int belongs
    floaty = lines(kernels(f, 50))  # a float where an int belongs: msgspec refuses it, read_json does not
    rec = json.loads(floaty[20])
    floaty[20] = json.dumps({**rec, "corr_id": float(rec["corr_id"])}, separators=(",", ":")).encode()
    assert b"." in floaty[20]
    same_as_records(
        store,
        reference,
        [("device", body_of(mixed)), ("device", body_of(bad)), ("device", body_of(floaty))],
    )
    assert json_calls == ([False, False, False] if store.json_stage else [])


def test_a_batch_interleaving_two_sessions_stores_each_record_under_its_own_session(
    store: SqlStore, reference: SqlStore
) -> None:
    """One record type, two sessions taking turns (what the Kafka bridge hands the store): each notice is stored
    under its own session, as record by record. The store grouped the new records by session while the
    batch's columns stayed in the batch's order, so one session's notices were filed under the other's id
    (seen in CI through remote capture's answers, PostgreSQL over Kafka)."""
    a, b = SessionFactory("interleaved-a"), SessionFactory("interleaved-b")
    starts = [a.start("device"), b.start("device")]
    notices: list[ev.Record] = []
    for i in range(6):
        f = a if i % 2 == 0 else b
        notices.append(
            ev.Notice(
                session_id=f.sid,
                stream="device",
                seq=f._next("device"),
                ts_ns=a.t0 + i,
                code=f"c{i}",
                message=f.sid,
            )
        )
    same_as_records(
        store, reference, [("device", body_of(lines(starts))), ("device", body_of(lines(notices)))]
    )
    rows = store._all("SELECT session_id, body FROM other_events WHERE type = 'notice'")
    assert len(rows) == 6 and all(json.loads(body)["session_id"] == sid for sid, body in rows), rows
