"""A stored session read back as contract records, stream by stream, in seq order (``gpufl export`` from
the backend: ``GET /sessions/{id}/export``).

Each record table is read by one query, a page at a time (``_stream_rows``: a cursor of its own on DuckDB,
a server-side cursor on PostgreSQL), and the tables of a stream are merged by seq: memory stays bounded
however long the session. Records come back as the contract's structs: session_start from the stored header,
dict entries with their launch configurations, kernels/copies/memsets/scopes from their columns, system
samples reassembled from their points, the rest (notices, capture gaps, dropped reports) from their bodies.
Session ends are not part of the export.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from typing import Any

import msgspec

from gpufl.backend.store.engine import NotFound, SqlEngine
from gpufl.backend.store.schema import RECORD_TABLES, TABLES
from gpufl.contract import events as ev

_TABLES_BY_STREAM: dict[str, tuple[str, ...]] = {
    stream: tuple(tag for tag in RECORD_TABLES if tag in ev.STREAM_TYPES[stream]) for stream in ev.STREAMS
}


_BOOL_GPU_FIELDS = frozenset(f.name for f in msgspec.structs.fields(ev.GpuSample) if "bool" in str(f.type))


class StoredSession:
    """What ``gpufl.export`` reads: ``session_id`` and ``records(stream)``."""

    def __init__(self, store: RecordQueries, session_id: str) -> None:
        self.store = store
        self.session_id = session_id

    def records(self, stream: str) -> Iterator[ev.Record]:
        return self.store.session_records(self.session_id, stream)


class RecordQueries(SqlEngine):
    def stored_session(self, sid: str) -> StoredSession:
        """The session's records for an export, or NotFound."""
        with self._read() as cur:
            cur.execute(self._q("SELECT 1 FROM sessions WHERE session_id = ?"), [sid])
            if cur.fetchone() is None:
                raise NotFound(sid)
        return StoredSession(self, sid)

    def session_records(self, sid: str, stream: str) -> Iterator[ev.Record]:
        yield from self._session_start(sid, stream)
        yield from self._dicts(sid, stream)
        tags = _TABLES_BY_STREAM[stream]
        if stream == "scope":
            # A scope's end must follow its begin: the two tables merged by seq (two cursors at once).
            begins, ends = (self._table(sid, stream, tag) for tag in ("scope_begin", "scope_end"))
            for _, rec in heapq.merge(begins, ends, key=lambda p: p[0]):
                yield rec
            tags = tuple(t for t in tags if t not in ("scope_begin", "scope_end"))
        for tag in tags:  # one table after another: one cursor (a pooled connection) at a time
            for _, rec in self._table(sid, stream, tag):
                yield rec
        if stream == "system":
            for _, rec in self._system(sid):
                yield rec
        for _, rec in self._others(sid, stream):
            yield rec

    def _session_start(self, sid: str, stream: str) -> Iterator[ev.Record]:
        with self._read() as cur:
            cur.execute(self._q("SELECT header FROM sessions WHERE session_id = ?"), [sid])
            row = cur.fetchone()
        if row and row[0]:
            head = json.loads(row[0])
            head["stream"] = stream
            yield msgspec.convert(head, ev.SessionStart)

    def _dicts(self, sid: str, stream: str) -> Iterator[ev.Record]:
        sql = "SELECT kind, id, value, mangled, frames, launch FROM dicts WHERE session_id = ? AND stream = ? ORDER BY kind, id"
        for kind, id_, value, mangled, frames, launch in self._stream_rows(sql, [sid, stream]):
            d: dict[str, Any] = {"type": "dict", "session_id": sid, "stream": stream, "kind": kind, "id": id_}
            if launch:
                d["launch"] = json.loads(launch)
            else:
                d["value"] = value
                if mangled:
                    d["mangled"] = mangled
                if frames:
                    d["frames"] = json.loads(frames)
            yield msgspec.convert(d, ev.DictEntry)

    def _table(self, sid: str, stream: str, tag: str) -> Iterator[tuple[int, ev.Record]]:
        table = RECORD_TABLES[tag]
        cols = [c for c, _ in TABLES[table]]
        cls = ev.TYPE_BY_TAG[tag]
        sql = f"SELECT {', '.join(cols)} FROM {table} WHERE session_id = ? ORDER BY seq"
        seq_at = cols.index("seq")
        for row in self._stream_rows(sql, [sid]):
            d = {c: v for c, v in zip(cols, row, strict=True) if v is not None}
            d["stream"] = stream
            yield row[seq_at], msgspec.convert(d, cls)

    def _others(self, sid: str, stream: str) -> Iterator[tuple[int, ev.Record]]:
        sql = "SELECT seq, body FROM other_events WHERE session_id = ? AND stream = ? ORDER BY seq"
        for seq, body in self._stream_rows(sql, [sid, stream]):
            yield seq, ev.decode(body)
        if stream == "device":  # capture windows (v5) have their own table
            sql = "SELECT seq, body FROM capture_windows WHERE session_id = ? ORDER BY seq"
            for seq, body in self._stream_rows(sql, [sid]):
                yield seq, ev.decode(body)
        if stream == "scope":  # deep ranges (v6) too
            cols = [c for c, _ in TABLES["profile_ranges"]]
            sql = f"SELECT {', '.join(cols)} FROM profile_ranges WHERE session_id = ? ORDER BY seq"
            for row in self._stream_rows(sql, [sid]):
                d = {c: v for c, v in zip(cols, row, strict=True) if v is not None}
                d["engines"] = json.loads(d["engines"])
                if "pc_buffer_full" in d:
                    d["pc_buffer_full"] = bool(d["pc_buffer_full"])
                d["stream"] = "scope"
                yield d["seq"], msgspec.convert(d, ev.ProfileRange)

    def _system(self, sid: str) -> Iterator[tuple[int, ev.Record]]:
        """Samples from their points (one row per metric and device; host metrics have device -1)."""
        sql = "SELECT seq, ts_ns, device_id, metric, value FROM system_points WHERE session_id = ? ORDER BY seq, device_id"
        current: tuple[int, int] | None = None
        host: dict[str, Any] = {}
        gpus: dict[int, dict[str, Any]] = {}

        def sample() -> tuple[int, ev.Record]:
            assert current is not None
            d: dict[str, Any] = {"type": "system_sample", "session_id": sid, "stream": "system", "seq": current[0],
                 "ts_ns": current[1], "host": host or None, "gpus": list(gpus.values())}  # fmt: skip
            for g in d["gpus"]:  # points are doubles: flags back to booleans (integral doubles to ints below)
                for f in _BOOL_GPU_FIELDS & g.keys():
                    g[f] = bool(g[f])
            return current[0], msgspec.convert(d, ev.SystemSample, strict=False)

        for seq, ts, dev, metric, value in self._stream_rows(sql, [sid]):
            if current is not None and seq != current[0]:
                yield sample()
                host, gpus = {}, {}
            current = (seq, ts)
            if dev < 0:
                host[metric] = value
            else:
                gpus.setdefault(dev, {"device_id": dev})[metric] = value
        if current is not None:
            yield sample()
