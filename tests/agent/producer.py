"""Writes contract-conforming segment files the way the client's writer lays them out: one folder,
``<host>.<app>.<session>.<stream>.<NNNNNN>.log``, append-only, rotating by index, seq 0.. per stream
starting with session_start. Records are encoded with the contract's own encoder (gpufl.contract.events)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from gpufl.contract import events as ev

HOST = socket.gethostname()


def record(session_id: str, stream: str, seq: int, pid: int, host: str = HOST) -> ev.Record:
    t = 1_700_000_000_000_000_000 + seq * 1000
    if seq == 0:
        return ev.SessionStart(
            session_id=session_id,
            stream=stream,
            seq=0,
            app="app",
            host=host,
            pid=pid,  # type: ignore[arg-type]
            start_ns=time.time_ns(),
            gpufl_version="test",
        )
    if stream == "device":
        return ev.Kernel(
            session_id=session_id,
            stream="device",
            seq=seq,
            launch_id=1,
            device_id=0,
            stream_id=7,
            corr_id=seq,
            start_ns=t,
            end_ns=t + 500,
            thread_id=42,
        )
    if stream == "scope":
        return ev.ScopeBegin(
            session_id=session_id,
            stream="scope",
            seq=seq,
            inst=seq,
            path_id=1,
            depth=0,
            ts_ns=t,
            thread_id=42,
        )
    return ev.SystemSample(
        session_id=session_id,
        stream="system",
        seq=seq,
        ts_ns=t,
        gpus=[ev.GpuSample(device_id=0, util_gpu_pct=50.0)],
    )


@dataclass
class StreamWriter:
    """Appends records of one (session, stream) and rotates every ``per_segment`` records."""

    folder: str
    session_id: str
    stream: str
    per_segment: int
    pid: int = field(default_factory=os.getpid)
    host: str = HOST
    app: str = "app"
    seq: int = 0
    index: int = 0

    def path(self, index: int | None = None) -> str:
        i = self.index if index is None else index
        return os.path.join(
            self.folder, ev.segment_name(self.host, self.app, self.session_id, self.stream, i)
        )

    def write(self, n: int) -> None:
        while n > 0:
            in_seg = self.seq - self.index * self.per_segment
            if in_seg >= self.per_segment:
                self.index += 1
                in_seg = 0
            k = min(n, self.per_segment - in_seg)
            recs = [
                record(self.session_id, self.stream, s, self.pid, self.host)
                for s in range(self.seq, self.seq + k)
            ]
            with open(self.path(), "ab") as f:
                f.write(ev.encode_lines(recs))
            self.seq += k
            n -= k

    def write_raw(self, data: bytes) -> None:
        with open(self.path(), "ab") as f:
            f.write(data)


def write_session(
    folder: str,
    session_id: str,
    n: int,
    per_segment: int,
    streams: tuple[str, ...] = ev.STREAMS,
    pid: int | None = None,
) -> dict[str, StreamWriter]:
    out = {}
    for s in streams:
        w = StreamWriter(folder, session_id, s, per_segment, pid=os.getpid() if pid is None else pid)
        w.write(n)
        out[s] = w
    return out


def dead_pid() -> int:
    """A pid that is not running: a child that has exited and been reaped."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def iter_lines(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        yield from f
