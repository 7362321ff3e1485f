"""Checks on what the store holds.

``assert_store_holds_all`` uses only the documented ingest protocol: every record written is re-posted,
and the backend, which de-duplicates on (session_id, stream, seq), must answer that it already holds every
one (``duplicates`` = all, ``stored`` = 0). Together with the de-duplication this is "every event exactly
once in the store".

``assert_store_exactly_once`` opens the store itself (the backend stopped, for DuckDB) and compares its
tables with the segments: per (session, stream) the received count and the seq ranges, per record type
the counts, and the raw rows' seqs of each record type kept in its own table."""

from __future__ import annotations

import os
import ssl
from collections import defaultdict

import httpx
import msgspec

from gpufl.contract.events import parse_segment_name


class _Key(msgspec.Struct):
    session_id: str
    stream: str
    seq: int


class _Typed(msgspec.Struct):
    type: str
    session_id: str
    stream: str
    seq: int


# Record types whose raw rows are kept one per record in a table keyed by (session_id, seq).
_ROW_TABLES = {
    "kernel": "kernels",
    "memcpy": "memcpys",
    "memset": "memsets",
    "scope_begin": "scope_begins",
    "scope_end": "scope_ends",
}


def written(folder: str) -> dict[str, list[bytes]]:
    """Every complete line of every segment in the folder, per stream, in file order."""
    out: dict[str, list[bytes]] = defaultdict(list)
    segs = sorted(
        (s.session_id, s.stream, s.index, name)
        for name in os.listdir(folder)
        if (s := parse_segment_name(name)) is not None
    )
    for _, stream, _, name in segs:
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        out[stream].extend(data[: data.rfind(b"\n")].split(b"\n") if b"\n" in data else [])
    return out


def check_contiguous(lines: dict[str, list[bytes]]) -> int:
    """The producer's own invariant (seq 0..n-1 per session and stream): a broken fixture would make the
    store check meaningless."""
    total = 0
    per: dict[tuple[str, str], list[int]] = defaultdict(list)
    for stream_lines in lines.values():
        for line in stream_lines:
            k = msgspec.json.decode(line, type=_Key)
            per[(k.session_id, k.stream)].append(k.seq)
    for key, seqs in per.items():
        assert sorted(seqs) == list(range(len(seqs))), f"{key}: producer wrote non-contiguous seqs"
        total += len(seqs)
    return total


def assert_store_holds_all(url: str, token: str, folder: str, verify: ssl.SSLContext | bool = True) -> int:
    lines = written(folder)
    total = check_contiguous(lines)
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=120, verify=verify) as client:
        for stream, stream_lines in lines.items():
            for i in range(0, len(stream_lines), 20_000):
                part = stream_lines[i : i + 20_000]
                r = client.post(f"{url}{stream}", content=b"\n".join(part) + b"\n")
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["rejected"] == [], body["rejected"][:3]
                assert (body["stored"], body["duplicates"]) == (0, len(part)), (
                    f"{stream}[{i}:{i + len(part)}]: the store lacked {body['stored']} records"
                )
    return total


def expected_counts(folder: str) -> dict[tuple[str, str], int]:
    """Records written per (session, stream), checked contiguous."""
    lines = written(folder)
    check_contiguous(lines)
    out: dict[tuple[str, str], int] = defaultdict(int)
    for stream_lines in lines.values():
        for line in stream_lines:
            k = msgspec.json.decode(line, type=_Key)
            out[(k.session_id, k.stream)] += 1
    return dict(out)


def assert_store_exactly_once(store_url: str, folder: str) -> int:
    """Every record of the folder's segments is in the store at ``store_url`` exactly once: none missing,
    none stored twice (rows, counters and seq ranges alike), nothing else. Returns the record count."""
    from gpufl.backend.store import open_store

    lines = written(folder)
    total = check_contiguous(lines)
    per_stream: dict[tuple[str, str], int] = defaultdict(int)
    per_type: dict[tuple[str, str], int] = defaultdict(int)
    rows: dict[tuple[str, str], list[int]] = defaultdict(list)
    for stream_lines in lines.values():
        for line in stream_lines:
            k = msgspec.json.decode(line, type=_Typed)
            per_stream[(k.session_id, k.stream)] += 1
            per_type[(k.session_id, k.type)] += 1
            if k.type in _ROW_TABLES:
                rows[(k.session_id, k.type)].append(k.seq)
    store = open_store(store_url)
    try:
        got_streams = {
            (sid, stream): int(n)
            for sid, stream, n in store._all(
                "SELECT session_id, stream, sum(received) FROM session_streams GROUP BY session_id, stream"
            )
        }
        assert got_streams == dict(per_stream), (
            f"received per (session, stream): {got_streams} != {dict(per_stream)}"
        )
        ranges = defaultdict(list)
        for sid, stream, lo, hi in store._all(
            "SELECT session_id, stream, lo, hi FROM seq_ranges ORDER BY lo"
        ):
            ranges[(sid, stream)].append((int(lo), int(hi)))
        assert dict(ranges) == {key: [(0, n - 1)] for key, n in per_stream.items()}, dict(ranges)
        got_types = {
            (sid, t): int(n)
            for sid, t, n in store._all(
                "SELECT session_id, type, sum(n) FROM type_counts GROUP BY session_id, type"
            )
        }
        assert got_types == dict(per_type), f"records per type: {got_types} != {dict(per_type)}"
        for (sid, typ), seqs in rows.items():
            table = _ROW_TABLES[typ]
            stored = sorted(
                int(r[0]) for r in store._all(f"SELECT seq FROM {table} WHERE session_id = ?", [sid])
            )
            if stored != sorted(seqs):
                dup = len(stored) - len(set(stored))
                lost = len(set(seqs) - set(stored))
                raise AssertionError(
                    f"{table} of {sid}: {len(stored)} rows for {len(seqs)} records, {dup} stored twice, {lost} missing"
                )
        sessions = {sid for sid, _ in per_stream}
        assert {r[0] for r in store._all("SELECT session_id FROM sessions")} == sessions
    finally:
        store.close()
    return total
