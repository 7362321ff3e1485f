"""Replay a recorded session through the real client writer, as a new session happening now.

Used by the demo on machines without a GPU: the committed H100 captures are re-written with a fresh
session id and every timestamp shifted so the session starts now (retention and "newest first" then
behave), through the same ``StreamWriter`` a live session uses — segments, rotation, ``seq`` and dict
records are the writer's own. No value other than ids and the time base is changed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec

from gpufl.client.session import new_session_id
from gpufl.client.writer import SegmentFiles, StreamWriter
from gpufl.contract import events

_TIME_FIELDS = ("start_ns", "end_ns", "ts_ns", "api_start_ns", "first_ns", "last_ns")


def read_capture(folder: Path) -> dict[str, list[events.Record]]:
    """Records of the one session in ``folder``, per stream, in seq order (partial last lines skipped)."""
    by_stream: dict[str, list[events.Record]] = {s: [] for s in events.STREAMS}
    for path in sorted(folder.glob("*.log")):
        name = events.parse_segment_name(path.name)
        if name is None:
            continue
        lines = path.read_bytes().split(b"\n")[:-1]
        by_stream[name.stream].extend(events.decode(line) for line in lines)
    for recs in by_stream.values():
        recs.sort(key=lambda r: r.seq)
    return by_stream


def _shift(rec: Any, delta: int, session_id: str) -> Any:
    changes: dict[str, Any] = {"session_id": session_id, "seq": -1}
    for f in _TIME_FIELDS:
        v = getattr(rec, f, None)
        if isinstance(v, int):
            changes[f] = v + delta
    clock = getattr(rec, "clock", None)
    if clock is not None:
        changes["clock"] = msgspec.structs.replace(clock, measured_at_ns=clock.measured_at_ns + delta)
    return msgspec.structs.replace(rec, **changes)


def replay(
    folder: Path,
    log_dir: Path,
    *,
    app: str | None = None,
    host: str | None = None,
    start_ns: int | None = None,
    session_id: str | None = None,
) -> str:
    """Write the capture in ``folder`` as a new session into ``log_dir``; return the new session id.

    With ``session_id`` and ``start_ns`` given again, the output is the same records (same ids, seqs and
    times) as before: a store that de-duplicates by (session, stream, seq) then holds the session once."""
    streams = read_capture(folder)
    first = streams["device"][0]
    if not isinstance(first, events.SessionStart):
        raise ValueError(f"{folder}: the device stream does not start with session_start")
    sid = session_id or new_session_id()
    delta = (start_ns or time.time_ns()) - first.start_ns
    files = SegmentFiles(str(log_dir), host or first.host, app or first.app, sid)
    for stream, recs in streams.items():
        w = StreamWriter(
            files,
            stream,
            queue_size=len(recs) + 16,
            segment_max_bytes=64 << 20,
            segment_max_age_s=1e9,
            flush_interval_s=0.05,
        )
        w.start()
        for rec in recs:
            rec = _shift(rec, delta, sid)
            if isinstance(rec, events.SessionStart):
                rec = msgspec.structs.replace(rec, app=app or rec.app, host=host or rec.host)
            if isinstance(rec, events.DictEntry):
                w.register(rec)  # emitted again by the writer before first use in each segment
                continue
            if isinstance(rec, events.SessionEnd):
                w.close(rec)
                break
            w.emit(rec)
        else:
            w.close(None)  # the capture was cut short: so is the replay
    return sid
