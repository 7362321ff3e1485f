"""The ingest fast path (whole-batch decode, column-wise checks) must accept and reject exactly what the
record-by-record path (gpufl.contract.events.decode + this backend's checks) does."""

from __future__ import annotations

import json
import random

import pytest

from gpufl.backend import ingest
from gpufl.backend.store import SqlStore
from gpufl.contract import events as ev

from .factory import SessionFactory


def _valid_records() -> dict[str, list[ev.Record]]:
    f = SessionFactory("v")
    dev: list[ev.Record] = [f.start("device"), f.launch(1, "k"), f.stack(2, [("a.py", 1, "f")])]
    dev += [f.kernel(1, i * 10, 5, stack_id=2, api_start_ns=f.t0 + 1, scope_inst=3) for i in range(20)]
    dev += [f.memcpy(500, 10, 64), f.end("device", f.t0 + 10**6)]
    scope: list[ev.Record] = [
        f.start("scope"),
        f.scope_path(1, "a"),
        f.scope_begin(1, 1, 0),
        f.scope_end(1, 5),
    ]
    system: list[ev.Record] = [f.start("system"), f.sample(0, 1, 2, 3)]
    return {"device": dev, "scope": scope, "system": system}


MUTATIONS = [
    ("seq", -1),
    ("seq", 2**63),
    ("seq", 2**64 + 1),
    ("start_ns", -5),
    ("end_ns", 0),
    ("start_ns", 2**63),
    ("device_id", 2**63),
    ("device_id", -(2**63) - 1),
    ("device_id", -7),
    ("session_id", ""),
    ("session_id", "x" * 65),
    ("session_id", "nul\u0000"),
    ("stream", "scope"),
    ("stream", "bogus"),
    ("type", "kernel"),
    ("type", "nope"),
    ("ts_ns", -1),
    ("api_start_ns", -1),
    ("scope_inst", 2**70),
    ("records", 2**63),
    ("pid", 2**64),
    ("id", 2**63),
    ("end_ns", 2**63 + 1),
    ("seq", 1),
    ("seq", 0),
    # The contract's ranges and id rule (issue #16): the whole-batch decode, the column checks and the
    # engine's own parse must reject exactly what the record path rejects.
    ("api_lead_ns", -(2**63)),
    ("api_lead_ns", ev.SPAN_MAX_NS + 1),
    ("api_dur_ns", -1),
    ("start_ns", ev.TIME_MIN_NS - 1),
    ("end_ns", ev.TIME_MAX_NS + 1),
    ("ts_ns", ev.TIME_MAX_NS + 1),
    ("device_id", 2**31),
    ("stream_id", -1),
    ("session_id", "a/b"),
    ("session_id", "a.b"),
    ("session_id", "-"),
]


@pytest.mark.parametrize("seed", range(len(MUTATIONS) + 5))
def test_fast_path_agrees_with_record_by_record(store: SqlStore, seed: int) -> None:
    rng = random.Random(seed)
    stream = rng.choice(list(ev.STREAMS))
    recs = _valid_records()[stream]
    raws = [ev.encode(r) for r in recs]
    i = rng.randrange(len(raws))
    doc = json.loads(raws[i])
    field, value = MUTATIONS[seed % len(MUTATIONS)]
    if field in doc or field in (
        "start_ns",
        "end_ns",
        "api_start_ns",
        "scope_inst",
        "api_lead_ns",
        "api_dur_ns",
    ):
        doc[field] = value
    raws[i] = json.dumps(doc).encode()
    good, _, slow = ingest._validate_slow(stream, raws)
    got = ingest.ingest_raws(store, stream, raws)
    # Same rejections with the same reasons, and exactly the records the slow path accepts are stored
    # (integers past int64 in bulk types are caught by the store's overflow and redone record by record).
    assert [(r.index, r.reason) for r in got.rejected] == [(r.index, r.reason) for r in slow.rejected]
    distinct = len({r.seq for r in good})  # a mutated seq may repeat another one in the batch
    assert got.stored == distinct and got.duplicates == len(good) - distinct
    stored = store._one("SELECT sum(received) FROM session_streams")  # a mutated id may be valid ("-")
    assert stored is not None and int(stored[0] or 0) == distinct
