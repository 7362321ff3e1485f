"""The Chrome trace-event JSON format, for small sessions and tools that read only that.

Written as a stream (one event per line inside ``traceEvents``). Times are microseconds since the
session's start, as floats: absolute epoch microseconds would keep only a quarter-microsecond in a double.
``otherData.start_ns`` gives the epoch nanoseconds of zero. Slices are complete events (``X``), scopes
``B``/``E``, counters ``C``, flows ``s``/``f`` bound to their slices, notices instants ``i``; names of
processes and threads are metadata events (``M``). GPUs are processes of their own (pid 2^30 + device)
with one thread per CUDA stream.
"""

from __future__ import annotations

import json
from typing import IO, Any

from gpufl.export.model import Begin, Counter, Counts, End, Instant, Slice, Track, Walk
from gpufl.export.source import LogSession

GPU_PID_BASE = 1 << 30
GPUFL_TID = 0  # gpufl's own track (gaps, notices) in the program's process


class _Writer:
    def __init__(self, out: IO[str], walk: Walk) -> None:
        self.out = out
        self.walk = walk
        self.first = True
        self.where: dict[tuple[Any, ...], tuple[int, int]] = {}  # track → (pid, tid)

    def emit(self, ev: dict[str, Any]) -> None:
        self.out.write(("\n" if self.first else ",\n") + json.dumps(ev, separators=(",", ":")))
        self.first = False

    def us(self, ns: int) -> float:
        return (ns - self.walk.t0_ns) / 1000

    def track(self, t: Track) -> None:
        if t.kind == "process":
            self.where[t.key] = (t.pid or 0, 0)
            self.emit({"ph": "M", "name": "process_name", "pid": t.pid or 0, "args": {"name": t.name}})
        elif t.kind == "thread":
            self.where[t.key] = (t.pid or 0, t.tid or 0)
            self.emit(
                {
                    "ph": "M",
                    "name": "thread_name",
                    "pid": t.pid or 0,
                    "tid": t.tid or 0,
                    "args": {"name": t.name},
                }
            )
        elif t.kind == "gpu":
            pid = GPU_PID_BASE + t.key[1]
            self.where[t.key] = (pid, 0)
            self.emit({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": t.name}})
        elif t.kind == "stream":
            pid = GPU_PID_BASE + t.key[1]
            self.where[t.key] = (pid, t.key[2])
            self.emit(
                {"ph": "M", "name": "thread_name", "pid": pid, "tid": t.key[2], "args": {"name": t.name}}
            )
        elif t.kind == "gpufl":
            pid = self.where[("process",)][0]
            tid = GPUFL_TID if t.key == ("gpufl",) else GPUFL_TID + 1  # gpufl's own row; CUDA syncs' row
            self.where[t.key] = (pid, tid)
            self.emit({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": t.name}})
        else:  # counter: drawn in its parent's process, named by the track
            assert t.parent is not None
            self.where[t.key] = self.where[t.parent]

    def slice(self, s: Slice) -> None:
        pid, tid = self.where[s.track.key]
        ts = self.us(s.start_ns)
        self.emit({"ph": "X", "name": s.name, "cat": s.category, "ts": ts, "dur": (s.end_ns - s.start_ns) / 1000,
                   "pid": pid, "tid": tid, "args": {**s.shared_args, **s.args}})  # fmt: skip
        if s.flow_out is not None:
            self.emit(
                {
                    "ph": "s",
                    "name": "launch",
                    "cat": "flow",
                    "id": s.flow_out,
                    "ts": ts,
                    "pid": pid,
                    "tid": tid,
                }
            )
        if s.flow_in is not None:
            self.emit({"ph": "f", "bp": "e", "name": "launch", "cat": "flow", "id": s.flow_in, "ts": ts,
                       "pid": pid, "tid": tid})  # fmt: skip


def export(session: LogSession, out: IO[str]) -> Counts:
    """Write ``session`` to ``out`` as trace-event JSON; returns what was written, per kind."""
    walk = Walk(session)
    w = _Writer(out, walk)
    out.write('{"displayTimeUnit":"ns","traceEvents":[')
    for ev in walk.timeline():
        if isinstance(ev, Track):
            w.track(ev)
        elif isinstance(ev, Slice):
            w.slice(ev)
        elif isinstance(ev, Begin):
            pid, tid = w.where[ev.track.key]
            w.emit({"ph": "B", "name": ev.name, "cat": ev.category, "ts": w.us(ev.ts_ns), "pid": pid, "tid": tid,
                    "args": ev.args})  # fmt: skip
        elif isinstance(ev, End):
            pid, tid = w.where[ev.track.key]
            w.emit({"ph": "E", "ts": w.us(ev.ts_ns), "pid": pid, "tid": tid})
        elif isinstance(ev, Counter):
            pid, _ = w.where[ev.track.key]
            w.emit(
                {
                    "ph": "C",
                    "name": ev.track.name,
                    "ts": w.us(ev.ts_ns),
                    "pid": pid,
                    "args": {"value": ev.value},
                }
            )
        elif isinstance(ev, Instant):
            pid, tid = w.where[ev.track.key]
            w.emit({"ph": "i", "s": "t", "name": ev.name, "cat": "gpufl", "ts": w.us(ev.ts_ns), "pid": pid,
                    "tid": tid, "args": ev.args})  # fmt: skip
    other = {"session_id": session.session_id, "start_ns": walk.t0_ns}
    out.write('\n],"otherData":' + json.dumps(other) + "}\n")
    return walk.counts
