"""The ingest endpoint's edges (issue #16), over the real app on both engines: a gzip body is decoded whole
or refused (never a silent partial), only the documented media types are read, JSON strings with raw
control characters are rejected per line, and the per-request and in-flight memory limits answer 413 / 503
before the memory is spent."""

from __future__ import annotations

import gzip
import json
import random
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from gpufl.backend import cli
from gpufl.backend.app import create_app
from gpufl.backend.config import Settings
from gpufl.backend.limits import MemoryBudget, OverBudget, Reservation
from gpufl.backend.store import SqlStore
from gpufl.contract import events as ev

from .conftest import Api, make_settings
from .factory import SessionFactory

GZ = {"Content-Encoding": "gzip"}


def _batch(sid: str, n: int = 60) -> tuple[bytes, int]:
    """An NDJSON batch of one session (start, a launch, ``n`` kernels) and its record count."""
    f = SessionFactory(sid)
    recs: list[ev.Record] = [f.start("device"), f.launch(1, "gemm")]
    recs += [f.kernel(1, i * 1000, 400 + i) for i in range(n)]
    return ev.encode_lines(recs), len(recs)


def _stored(api: Api, sid: str) -> int:
    r = api.get(f"/sessions/{sid}")
    return 0 if r.status_code == 404 else int(r.json()["totals"]["kernels"])


# --- gzip: every member, or a 400 -----------------------------------------------------------------------


def test_every_member_of_a_multi_member_gzip_body_is_stored(api: Api) -> None:
    body, n = _batch("members")
    # Three members cut at arbitrary bytes (mid-record too: members concatenate to one byte stream, RFC 1952
    # 2.2), one of them empty.
    cuts = sorted(random.Random(4).sample(range(1, len(body)), 2))
    parts = [body[: cuts[0]], b"", body[cuts[0] : cuts[1]], body[cuts[1] :]]
    r = api.post_events("device", b"".join(gzip.compress(p) for p in parts), **GZ)
    assert r.status_code == 200, r.text
    assert r.json() == {"stored": n, "duplicates": 0, "rejected": []}
    assert _stored(api, "members") == n - 2


@pytest.mark.parametrize(
    ("tail", "words"),
    [
        (b"garbage after the member", "trailing"),
        (b"\x00\x00\x00\x00", "trailing"),  # zero padding is bytes the body does not account for either
        (b"\x1f", "truncated"),  # the start of a member's magic, and nothing more
        (gzip.compress(b"x" * 100)[:-6], "truncated"),  # a second member cut short
        (b"\x1f\x8bnot a gzip header at all", "not valid gzip"),
    ],
)
def test_bytes_after_the_last_member_refuse_the_whole_body(api: Api, tail: bytes, words: str) -> None:
    body, _ = _batch("tail")
    r = api.post_events("device", gzip.compress(body) + tail, **GZ)
    assert r.status_code == 400, r.text
    assert words in r.json()["error"] and r.json()["stored"] == 0
    assert _stored(api, "tail") == 0  # nothing of the first member was stored: no silent partial


# --- media types ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ctype",
    [
        "application/xml",
        "text/xml",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/octet-stream",
        "application/x-ndjson; charset=latin-1",
        "application/json; charset=utf-16",
        "ndjson",
    ],
)
def test_other_media_types_get_415_and_nothing_is_stored(api: Api, ctype: str) -> None:
    body, _ = _batch("media")  # valid NDJSON: only the declared type is wrong
    r = api.post_events("device", body, **{"Content-Type": ctype})
    assert r.status_code == 415, r.text
    assert "Content-Type" in r.json()["error"] and "application/x-ndjson" in r.json()["error"]
    assert _stored(api, "media") == 0


@pytest.mark.parametrize(
    ("ctype", "as_array"),
    [
        ("application/x-ndjson", False),  # what the agent sends
        ("Application/X-NDJSON; charset=UTF-8", False),
        ('application/x-ndjson; charset="utf-8"', False),
        ("application/ndjson", False),
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        (None, False),  # no Content-Type: NDJSON or, when it starts with "[", a JSON array
        (None, True),
    ],
)
def test_documented_media_types_are_read(api: Api, ctype: str | None, as_array: bool) -> None:
    sid = f"ok{random.Random(ctype).randrange(10**6)}{as_array}"
    f = SessionFactory(sid)
    recs = [f.start("device"), *(f.kernel(1, i * 1000, 10) for i in range(5))]
    body = b"[" + b",".join(map(ev.encode, recs)) + b"]" if as_array else ev.encode_lines(recs)
    headers = {**api.h("ingest"), **({"Content-Type": ctype} if ctype else {})}
    r = api.client.post("/api/v1/events/device", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["stored"] == 6, r.text


def test_unsupported_content_encoding_is_415(api: Api) -> None:
    body, _ = _batch("enc")
    for enc in ("br", "deflate", "gzip, gzip", "zstd"):
        r = api.post_events("device", body, **{"Content-Encoding": enc})
        assert r.status_code == 415, (enc, r.text)
        assert "Content-Encoding" in r.json()["error"]
    assert api.post_events("device", gzip.compress(body), **{"Content-Encoding": "x-gzip"}).status_code == 200


# --- raw control characters -------------------------------------------------------------------------------


def test_raw_control_characters_in_strings_are_rejected_per_line(api: Api) -> None:
    """RFC 8259 7: U+0000..U+001F must be escaped inside strings. Each line holding one raw is rejected with
    that reason (and counted), whichever path the rest of its batch takes; the escaped form is stored."""
    f = SessionFactory("ctl")
    lines = [ev.encode(r) for r in [f.start("device"), f.launch(1, "k"), f.launch(2, "k")]]
    lines += [ev.encode(f.kernel(1, i * 1000, 10)) for i in range(40)]
    bad = {}
    for i, c in zip((2, 5, 9, 20, 30, 41), (0x00, 0x01, 0x09, 0x0D, 0x1B, 0x1F), strict=True):
        doc = json.loads(lines[i])
        if doc["type"] == "dict":
            lines[i] = lines[i].replace(b'"name":"k"', b'"name":"k' + bytes([c]) + b'"')
        else:  # a kernel: the raw character goes into an unknown field, which the decoders skip
            lines[i] = lines[i][:-1] + b',"note":"a' + bytes([c]) + b'b"}'
        bad[i] = c
    escaped = ev.encode(f.kernel(1, 99_000, 10))[:-1] + b',"note":"a\\u0001\\tb"}'
    r = api.post_events("device", b"\n".join([*lines, escaped]) + b"\n")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["stored"] == len(lines) + 1 - len(bad)
    assert [x["index"] for x in out["rejected"]] == sorted(bad)
    for x in out["rejected"]:
        assert x["reason"].startswith("malformed JSON: unescaped control character"), x
        assert f"U+{bad[x['index']]:04X}" in x["reason"]
    # A batch of kernels only (the one the DuckDB engine would parse itself): the same verdict.
    ks = [ev.encode(f.kernel(2, 10**6 + i * 1000, 10)) for i in range(30)]
    ks[7] = ks[7][:-1] + b',"note":"\x02"}'
    r = api.post_events("device", b"\n".join(ks))
    assert r.json()["stored"] == 29 and [x["index"] for x in r.json()["rejected"]] == [7]
    assert "U+0002" in r.json()["rejected"][0]["reason"]
    metrics = api.client.get("/metrics", headers=api.h("read")).text
    assert 'gpufl_ingest_rejected_records_total{reason="malformed"} 7.0' in metrics


# --- memory limits ----------------------------------------------------------------------------------------


@pytest.fixture
def tight_api(store: SqlStore) -> Iterator[Api]:
    app = create_app(
        make_settings(max_decompressed_bytes=200_000, max_inflight_bytes=8 << 20), store, start_jobs=False
    )
    with TestClient(app) as client:
        yield Api(client, store, app)


def test_a_body_inflating_past_max_decompressed_bytes_is_413(tight_api: Api) -> None:
    body, n = _batch("inflate", 600)  # ~110 kB
    assert 100_000 < len(body) < 200_000
    padded = body + b" " * (200_001 - len(body))  # one byte over, all of it whitespace
    r = tight_api.post_events("device", gzip.compress(padded), **GZ)
    assert r.status_code == 413, r.text
    assert r.json()["max_decompressed_bytes"] == 200_000 and "200000" in r.json()["error"]
    # Members count together: two that are each under the limit but not together.
    half = len(padded) // 2
    r = tight_api.post_events("device", gzip.compress(padded[:half]) + gzip.compress(padded[half:]), **GZ)
    assert r.status_code == 413, r.text
    ok = tight_api.post_events("device", gzip.compress(padded[:200_000]), **GZ)
    assert ok.status_code == 200 and ok.json()["stored"] == n
    # An uncompressed body is its own decompressed size.
    r = tight_api.post_events("device", padded)
    assert r.status_code == 413 and r.json()["max_decompressed_bytes"] == 200_000


def test_requests_over_the_in_flight_budget_get_503_with_retry_after(tight_api: Api) -> None:
    body, n = _batch("budget")
    budget = tight_api.app.state.ingest_budget
    held = budget.limit - 1000  # as if other ingests held all but 1000 bytes of the budget
    assert budget.try_take(held)
    try:
        r = tight_api.post_events("device", body)
        assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text
        assert "memory" in r.json()["error"]
        assert budget.used == held  # the refused request gave back what it had taken
    finally:
        budget.give(held)
    assert tight_api.post_events("device", body).json()["stored"] == n
    assert budget.used == 0


def test_a_body_whose_decode_alone_would_exceed_the_budget_is_413(tight_api: Api) -> None:
    """Decoded JSON takes far more memory than its text where values are small (``{}`` is 3 bytes of text
    and ~90 of Python objects): the budget counts values, so 180 kB of them is over an 8 MiB budget, while a
    kernel batch of the same size is not."""
    f = SessionFactory("dense")
    start = ev.encode(f.start("device"))[:-1] + b',"options":{"x":[' + b"{}," * 60_000 + b"{}]}}"
    r = tight_api.post_events("device", start + b"\n")
    assert r.status_code == 413, r.text
    assert "memory" in r.json()["error"] and r.json()["max_inflight_bytes"] == 8 << 20
    r = tight_api.post_events("device", gzip.compress(start + b"\n"), **GZ)  # the same, compressed
    assert r.status_code == 413, r.text
    body, n = _batch("sparse", 1050)
    assert len(body) > len(start)
    assert tight_api.post_events("device", body).json()["stored"] == n
    assert tight_api.app.state.ingest_budget.used == 0


def test_a_batch_of_more_sessions_than_max_batch_sessions_is_413(store: SqlStore) -> None:
    """A batch's store work grows with its sessions beyond what the memory budget's estimate of the body
    covers (38,000 session_start records in one body took the backend past 1 GiB): more than
    ``max_batch_sessions`` sessions in one body is refused whole, on every decode path, before anything is
    stored; at the limit the batch is stored."""
    app = create_app(make_settings(max_batch_sessions=5), store, start_jobs=False)
    with TestClient(app) as client:
        api = Api(client, store, app)
        starts = [SessionFactory(f"many-{i}").start("device") for i in range(6)]
        bad = b'{"type":"kernel","session_id":"many-0"}'  # a record that fails its check: the slow path
        for body in (
            ev.encode_lines(starts),
            b"[" + b",".join(ev.encode(r) for r in starts) + b"]",
            ev.encode_lines(starts) + bad + b"\n",
            gzip.compress(ev.encode_lines(starts)),
        ):
            headers = (
                GZ
                if body[:2] == b"\x1f\x8b"
                else {"Content-Type": "application/json"}
                if body[:1] == b"["
                else {}
            )
            r = api.post_events("device", body, **headers)
            assert r.status_code == 413, r.text
            assert "6 sessions" in r.json()["error"] and r.json()["max_sessions"] == 5
            assert api.get("/sessions").json()["items"] == []
        r = api.post_events("device", ev.encode_lines(starts[:5]))
        assert r.status_code == 200 and r.json()["stored"] == 5, r.text
        body, n = _batch("one-session", 200)  # many records of one session: not limited
        assert api.post_events("device", body).json()["stored"] == n


def test_limit_flags_and_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each limit of docs/operations.md "Limits" is a serve flag and a GPUFL_ variable."""
    p = cli._Parser()
    cli._add_settings_flags(p)
    flags = ["--max-body-bytes", "500", "--max-decompressed-bytes", "1000", "--max-inflight-bytes", "2000"]
    s = cli._settings(p.parse_args([*flags, "--duckdb-memory-limit", "3000"]))
    assert (s.max_body_bytes, s.max_decompressed_bytes, s.max_inflight_bytes, s.duckdb_memory_limit) == (
        500,
        1000,
        2000,
        3000,
    )
    d = Settings()
    assert (d.max_body_bytes, d.max_decompressed_bytes, d.max_inflight_bytes, d.duckdb_memory_limit) == (
        32 << 20,
        64 << 20,
        512 << 20,
        512 << 20,
    )
    for var in ("MAX_DECOMPRESSED_BYTES", "MAX_INFLIGHT_BYTES", "DUCKDB_MEMORY_LIMIT"):
        monkeypatch.setenv(f"GPUFL_{var}", "4096")
        assert getattr(Settings(), var.lower()) == 4096


def test_the_oldest_request_waits_for_memory_newer_ones_are_refused() -> None:
    """Concurrent batches that each hold part of the budget must not all be refused (again at every retry):
    the oldest in progress waits for the others to give memory back, and what it waits for is not given to
    newer ones meanwhile."""
    budget = MemoryBudget(100)
    old, new = Reservation(budget), Reservation(budget)
    old.add(30)
    new.add(60)
    with pytest.raises(OverBudget) as refused:
        new.add(20, wait=True)  # not the oldest: refused at once, and told to retry (not alone over)
    assert not refused.value.alone
    got: list[bool] = []

    def oldest() -> None:
        old.add(50, wait=True)  # needs 50 of the 10 left: waits
        got.append(True)

    t = threading.Thread(target=oldest)
    t.start()
    time.sleep(0.2)
    assert got == [] and t.is_alive()
    later = Reservation(budget)
    with pytest.raises(OverBudget):
        later.add(5)  # 10 are free, but the waiting oldest needs them
    new.release()
    t.join(5)
    assert got == [True] and budget.used == 80
    with pytest.raises(OverBudget) as alone:
        old.add(21)  # 101 in all: over the budget by itself
    assert alone.value.alone
    for r in (old, later):
        r.release()
    assert budget.used == 0
