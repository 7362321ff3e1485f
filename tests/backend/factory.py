"""Builds contract records for tests with the structs of gpufl.contract.events (the writer's own types)."""

from __future__ import annotations

from gpufl.contract import events as ev

T0 = 1_700_000_000_000_000_000


class SessionFactory:
    """One session's three streams, each with its own gap-free seq counter, like the client's writers."""

    def __init__(
        self, session_id: str = "s1", host: str = "h100-a", app: str = "train", t0: int = T0
    ) -> None:
        self.sid = session_id
        self.host = host
        self.app = app
        self.t0 = t0
        self.seqs = {s: 0 for s in ev.STREAMS}

    def _next(self, stream: str) -> int:
        s = self.seqs[stream]
        self.seqs[stream] += 1
        return s

    def start(self, stream: str = "device") -> ev.SessionStart:
        assert self.seqs[stream] == 0
        self._next(stream)
        return ev.SessionStart(
            session_id=self.sid,
            stream=stream,  # type: ignore[arg-type]
            seq=0,
            app=self.app,
            host=self.host,
            pid=4242,
            start_ns=self.t0,
            gpufl_version="0.1.0",
            devices=[ev.DeviceProperties(device_id=0, name="NVIDIA H100 80GB HBM3", sm_count=132)],
        )

    def end(self, stream: str, end_ns: int, dropped: int = 0) -> ev.SessionEnd:
        seq = self._next(stream)
        return ev.SessionEnd(
            session_id=self.sid,
            stream=stream,
            seq=seq,
            end_ns=end_ns,
            records=seq + 1,
            dropped=dropped,  # type: ignore[arg-type]
        )

    def launch(self, lid: int, name: str, stream: str = "device") -> ev.DictEntry:
        return ev.DictEntry(
            session_id=self.sid,
            stream="device",
            seq=self._next(stream),
            kind="launch",
            id=lid,
            launch=ev.LaunchConfig(
                name=name,
                mangled="_Z" + name,
                device_id=0,
                grid=(128, 1, 1),
                block=(256, 1, 1),
                num_regs=32,
                occupancy=0.75,
                limiting_resource="registers",
            ),
        )

    def stack(self, sid_: int, frames: list[tuple[str, int, str]]) -> ev.DictEntry:
        return ev.DictEntry(
            session_id=self.sid,
            stream="device",
            seq=self._next("device"),
            kind="stack",
            id=sid_,
            frames=frames,
        )

    def scope_path(self, pid: int, path: str) -> ev.DictEntry:
        return ev.DictEntry(
            session_id=self.sid, stream="scope", seq=self._next("scope"), kind="scope", id=pid, value=path
        )

    def kernel_name(self, kid: int, name: str) -> ev.DictEntry:
        return ev.DictEntry(
            session_id=self.sid, stream="scope", seq=self._next("scope"), kind="kernel", id=kid, value=name
        )

    def kernel(self, launch_id: int, start: int, dur: int, **kw: object) -> ev.Kernel:
        kw.setdefault("device_id", 0)
        kw.setdefault("stream_id", 7)
        kw.setdefault("corr_id", self.seqs["device"])
        return ev.Kernel(
            session_id=self.sid,
            stream="device",
            seq=self._next("device"),
            launch_id=launch_id,
            start_ns=self.t0 + start,
            end_ns=self.t0 + start + dur,
            **kw,  # type: ignore[arg-type]
        )

    def memcpy(self, start: int, dur: int, nbytes: int, **kw: object) -> ev.Memcpy:
        return ev.Memcpy(
            session_id=self.sid,
            stream="device",
            seq=self._next("device"),
            device_id=0,
            stream_id=7,
            corr_id=1,
            start_ns=self.t0 + start,
            end_ns=self.t0 + start + dur,
            bytes=nbytes,
            **{"copy_kind": "HtoD", **kw},  # type: ignore[arg-type]
        )

    def memset(self, start: int, dur: int, nbytes: int, **kw: object) -> ev.Memset:
        return ev.Memset(
            session_id=self.sid,
            stream="device",
            seq=self._next("device"),
            device_id=0,
            corr_id=2,
            start_ns=self.t0 + start,
            end_ns=self.t0 + start + dur,
            bytes=nbytes,
            mem_kind="Device",
            **{"stream_id": 7, **kw},  # type: ignore[arg-type]
        )

    def sync(self, start: int, dur: int, kind: str = "context", **kw: object) -> ev.Sync:
        return ev.Sync(
            session_id=self.sid,
            stream="device",
            seq=self._next("device"),
            sync_kind=kind,  # type: ignore[arg-type]
            corr_id=3,
            start_ns=self.t0 + start,
            end_ns=self.t0 + start + dur,
            **kw,  # type: ignore[arg-type]
        )

    def scope_begin(
        self, inst: int, path_id: int, ts: int, depth: int = 0, parent: int | None = None
    ) -> ev.ScopeBegin:
        return ev.ScopeBegin(
            session_id=self.sid,
            stream="scope",
            seq=self._next("scope"),
            inst=inst,
            path_id=path_id,
            parent_inst=parent,
            depth=depth,
            ts_ns=self.t0 + ts,
            thread_id=1,
        )

    def scope_end(self, inst: int, ts: int) -> ev.ScopeEnd:
        return ev.ScopeEnd(
            session_id=self.sid, stream="scope", seq=self._next("scope"), inst=inst, ts_ns=self.t0 + ts
        )

    def sample(self, ts: int, util: float, power: float, cpu: float) -> ev.SystemSample:
        return ev.SystemSample(
            session_id=self.sid,
            stream="system",
            seq=self._next("system"),
            ts_ns=self.t0 + ts,
            host=ev.HostSample(cpu_pct=cpu),
            gpus=[ev.GpuSample(device_id=0, util_gpu_pct=util, power_mw=power)],
        )
