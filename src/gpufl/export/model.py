"""A session as a timeline any trace viewer draws: tracks, slices, counters, instants and flows.

The walk reads the three streams once, in file order, and yields neutral events; the writers
(``perfetto``, ``chrome_json``) only encode them. What it keeps: the dictionaries (launch configurations,
kernel/scope names, thread names), the scopes still open, and the tracks declared — bounded by the
program's shape, not its length.

Tracks:
- the program (``pid`` of session_start) and one thread track per OS thread: scopes and NVTX ranges as
  nested slices, the CUDA launch call of each kernel whose call site is known (the start of its flow);
- one GPU per device and one track per CUDA stream under it: kernels, copies, memsets (the flow's end);
- counters: each GPU metric of the system stream under its GPU, host metrics under the program;
- "gpufl": capture gaps and capture windows as slices, notices and dropped-record reports as instants.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from gpufl.contract import events
from gpufl.export.source import LogSession

# Metric → (counter name, unit, scale to base unit). Base units as the viewers expect: bytes, watts, hertz.
GPU_COUNTERS: dict[str, tuple[str, str, float]] = {
    "util_gpu_pct": ("GPU utilization", "%", 1.0),
    "util_mem_pct": ("memory controller utilization", "%", 1.0),
    "mem_used_mib": ("memory used", "bytes", float(1 << 20)),
    "temp_c": ("temperature", "°C", 1.0),
    "power_mw": ("power", "W", 1e-3),
    "fan_pct": ("fan", "%", 1.0),
    "clk_sm_mhz": ("SM clock", "Hz", 1e6),
    "clk_mem_mhz": ("memory clock", "Hz", 1e6),
    "pcie_rx_kbs": ("PCIe rx", "bytes/s", 1e3),
    "pcie_tx_kbs": ("PCIe tx", "bytes/s", 1e3),
    # GPU activity (NVML GPM, contract v4): each the mean over the sampling interval ending at the sample
    "sm_active_pct": ("SM active", "%", 1.0),
    "sm_occupancy_pct": ("SM occupancy", "%", 1.0),
    "tensor_active_pct": ("tensor pipes active", "%", 1.0),
    "dram_bw_pct": ("DRAM bandwidth", "%", 1.0),
    "pcie_rx_mibs": ("PCIe rx (interval mean)", "bytes/s", float(1 << 20)),
    "pcie_tx_mibs": ("PCIe tx (interval mean)", "bytes/s", float(1 << 20)),
    "nvlink_rx_mibs": ("NVLink rx", "bytes/s", float(1 << 20)),
    "nvlink_tx_mibs": ("NVLink tx", "bytes/s", float(1 << 20)),
}
HOST_COUNTERS: dict[str, tuple[str, str, float]] = {
    "cpu_pct": ("host CPU", "%", 1.0),
    "ram_used_mib": ("host memory used", "bytes", float(1 << 20)),
    "proc_rss_mib": ("process RSS", "bytes", float(1 << 20)),
}


GRAPH_CALLS_REMEMBERED = 4096


@dataclass(frozen=True)
class Track:
    """``kind``: process, thread, gpu, stream, counter or gpufl. ``parent``: the enclosing track's key."""

    key: tuple[Any, ...]
    kind: str
    name: str
    parent: tuple[Any, ...] | None = None
    pid: int | None = None
    tid: int | None = None
    unit: str | None = None


@dataclass
class Slice:
    track: Track
    name: str
    start_ns: int
    end_ns: int
    category: str
    args: dict[str, Any] = field(default_factory=dict)
    flow_out: int | None = None
    """A flow starts at this slice (the launch call) ..."""
    flow_in: int | None = None
    """... and ends at this one (its kernel, copy or memset)."""
    shared_key: tuple[Any, ...] | None = None
    """Slices with the same key share ``shared_args`` (a kernel's launch configuration): writers may encode
    them once."""
    shared_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Begin:
    """An open-ended slice (scopes, NVTX ranges): its end comes later, as an ``End`` on the same track."""

    track: Track
    name: str
    ts_ns: int
    category: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class End:
    track: Track
    ts_ns: int


@dataclass
class Counter:
    track: Track
    ts_ns: int
    value: float


@dataclass
class Instant:
    track: Track
    name: str
    ts_ns: int
    args: dict[str, Any] = field(default_factory=dict)


Event = Track | Slice | Begin | End | Counter | Instant


@dataclass
class Counts:
    """What was exported, per kind, to compare with the session."""

    kernels: int = 0
    memcpys: int = 0
    memsets: int = 0
    launches: int = 0
    scopes: int = 0
    scope_ends: int = 0
    counters: int = 0
    gaps: int = 0
    windows: int = 0
    instants: int = 0
    syncs: int = 0


class Walk:
    """One pass over a session; iterate ``timeline()`` once. ``counts`` is complete when it is exhausted."""

    def __init__(self, session: LogSession) -> None:
        self.session = session
        self.counts = Counts()
        self._tracks: dict[tuple[Any, ...], Track] = {}
        self._launches: dict[int, events.LaunchConfig] = {}
        self._names: dict[tuple[str, int], str] = {}  # (dict kind, id) → value
        self._open: dict[int, Track] = {}  # scope inst → its thread track
        self._launch_args: dict[int, dict[str, Any]] = {}
        self._graph_calls: dict[int, None] = {}  # recent graph launches' correlation ids, oldest first
        self._pid = 0
        self.t0_ns = 0
        """The session's start (session_start's ``start_ns``): where relative timelines begin."""
        self._app = session.session_id
        self._devices: dict[int, str] = {}

    # ------------------------------------------------------------------ tracks, declared on first use

    def _track(self, track: Track) -> Iterator[Event]:
        if track.key not in self._tracks:
            self._tracks[track.key] = track
            if track.parent is not None and track.parent not in self._tracks:
                yield from self._track(self._parent_of(track.parent))
            yield track

    def _parent_of(self, key: tuple[Any, ...]) -> Track:
        if key[0] == "gpu":
            dev = key[1]
            return Track(
                key, "gpu", f"GPU {dev}" + (f": {self._devices[dev]}" if dev in self._devices else "")
            )
        if key[0] == "process":
            return Track(key, "process", self._app, pid=self._pid)
        raise KeyError(key)

    def _process(self) -> Track:
        return self._parent_of(("process",))

    def _thread(self, tid: int) -> Track:
        name = self._names.get(("thread", tid)) or f"thread {tid}"
        return Track(("thread", tid), "thread", name, parent=("process",), pid=self._pid, tid=tid)

    def _stream(self, dev: int, stream: int) -> Track:
        return Track(("stream", dev, stream), "stream", f"stream {stream}", parent=("gpu", dev))

    def _syncs(self) -> Track:
        return Track(("syncs",), "gpufl", "CUDA synchronisation", parent=("process",))

    def _gpufl(self) -> Track:
        return Track(("gpufl",), "gpufl", "gpufl", parent=("process",))

    # ------------------------------------------------------------------ the walk

    def timeline(self) -> Iterator[Event]:
        # Thread names are dict records of the scope stream, read after the device stream whose launch calls
        # declare most thread tracks: collect them first (a pass over dict records only, which are few).
        for rec in self.session.records("scope"):
            if isinstance(rec, events.DictEntry) and rec.kind == "thread" and rec.value is not None:
                self._names[("thread", rec.id)] = rec.value
        for stream in ("device", "scope", "system"):
            for rec in self.session.records(stream):
                yield from self._record(rec)

    def _record(self, rec: events.Record) -> Iterator[Event]:
        if isinstance(rec, events.SessionStart):
            if not self._pid:
                self._pid, self._app, self.t0_ns = rec.pid, rec.app, rec.start_ns
                self._devices = {d.device_id: d.name for d in rec.devices or [] if d.name}
                yield from self._track(self._process())
        elif isinstance(rec, events.DictEntry):
            if rec.kind == "launch" and rec.launch is not None:
                self._launches[rec.id] = rec.launch
                self._launch_args.pop(rec.id, None)
            elif rec.value is not None:
                self._names[(rec.kind, rec.id)] = rec.value
        elif isinstance(rec, events.Kernel):
            yield from self._kernel(rec)
        elif isinstance(rec, events.Memcpy | events.Memset):
            yield from self._copy(rec)
        elif isinstance(rec, events.ScopeBegin):
            thread = self._thread(rec.thread_id)
            yield from self._track(thread)
            self._open[rec.inst] = thread
            path = self._names.get(("scope", rec.path_id), f"scope {rec.path_id}")
            args: dict[str, Any] = {"path": path, "inst": rec.inst}
            if rec.tag:
                args["tag"] = rec.tag
            self.counts.scopes += 1
            yield Begin(
                thread, path.rsplit("/", 1)[-1], rec.ts_ns, "nvtx" if rec.inst >= 1 << 40 else "scope", args
            )
        elif isinstance(rec, events.ScopeEnd):
            opened = self._open.pop(rec.inst, None)
            if opened is not None:
                self.counts.scope_ends += 1
                yield End(opened, rec.ts_ns)
        elif isinstance(rec, events.SystemSample):
            yield from self._sample(rec)
        elif isinstance(rec, events.Sync):
            # The host waiting in a CUDA synchronisation (contract v3), on the process's own track: CUPTI's
            # synchronisation records carry no thread.
            track = self._syncs()
            yield from self._track(track)
            self.counts.syncs += 1
            sync_args: dict[str, Any] = {"corr_id": rec.corr_id, "sync_kind": rec.sync_kind}
            if rec.stream_id is not None:
                sync_args["stream"] = rec.stream_id
            if rec.event_id is not None:
                sync_args["event"] = rec.event_id
            yield Slice(track, f"sync {rec.sync_kind}", rec.start_ns, rec.end_ns, "cuda_sync", sync_args)
        elif isinstance(rec, events.CaptureGap):
            track = self._gpufl()
            yield from self._track(track)
            self.counts.gaps += 1
            end = rec.end_ns if rec.end_ns is not None else rec.start_ns
            yield Slice(
                track, f"capture gap: {rec.reason}", rec.start_ns, end, "gpufl", {"reason": rec.reason}
            )
        elif isinstance(rec, events.CaptureWindow):
            # When kernels were traced (a session not in continuous mode): outside these, not recorded.
            track = self._gpufl()
            yield from self._track(track)
            self.counts.windows += 1
            t = rec.trigger
            window_args: dict[str, Any] = {"mode": t.mode, "trigger": t.kind, "ended": rec.ended}
            for key in ("seconds", "steps", "first_step", "scope", "signal", "control_file", "request_id"):
                if getattr(t, key) is not None:
                    window_args[key] = getattr(t, key)
            if rec.requester is not None:
                window_args["requester"] = rec.requester
            if rec.extended or rec.refused:
                window_args["extended"], window_args["refused"] = rec.extended, rec.refused
            yield Slice(track, f"capture window: {t.kind}", rec.start_ns, rec.end_ns, "gpufl", window_args)
        elif isinstance(rec, events.Notice | events.Dropped):
            track = self._gpufl()
            yield from self._track(track)
            self.counts.instants += 1
            if isinstance(rec, events.Notice):
                yield Instant(track, rec.code, rec.ts_ns, {"message": rec.message, "level": rec.level})
            else:
                yield Instant(
                    track, "dropped", rec.last_ns, {"count": rec.count, "by_type": dict(rec.by_type)}
                )

    def _kernel(self, k: events.Kernel) -> Iterator[Event]:
        cfg = self._launches.get(k.launch_id)
        name = cfg.name if cfg is not None else f"kernel (launch {k.launch_id})"
        track = self._stream(k.device_id, k.stream_id)
        yield from self._track(track)
        args: dict[str, Any] = {"corr_id": k.corr_id}
        if k.graph_id is not None:
            args["graph_id"] = k.graph_id
        shared = self._launch_args.get(k.launch_id)
        if shared is None:
            shared = self._launch_args[k.launch_id] = _launch_args(cfg)
        flow = yield from self._launch(k, f"launch {name}")
        self.counts.kernels += 1
        yield Slice(track, name, k.start_ns, k.end_ns, "kernel", args, flow_in=flow,
                    shared_key=("launch", k.launch_id), shared_args=shared)  # fmt: skip

    def _copy(self, m: events.Memcpy | events.Memset) -> Iterator[Event]:
        track = self._stream(m.device_id, m.stream_id)
        yield from self._track(track)
        args: dict[str, Any] = {"corr_id": m.corr_id, "bytes": m.bytes, "stream": m.stream_id}
        if isinstance(m, events.Memcpy):
            name = f"memcpy {m.copy_kind}"
            args.update(copy_kind=m.copy_kind, src_kind=m.src_kind, dst_kind=m.dst_kind)
            self.counts.memcpys += 1
            cat = "memcpy"
        else:
            name = "memset"
            args.update(value=m.value, mem_kind=m.mem_kind)
            self.counts.memsets += 1
            cat = "memset"
        flow = None
        if isinstance(m, events.Memcpy):  # memsets carry no launch site in the contract
            flow = yield from self._launch(m, name)
        yield Slice(track, name, m.start_ns, m.end_ns, cat, args, flow_in=flow)

    def _launch(self, rec: events.Kernel | events.Memcpy, name: str) -> Generator[Event, None, int | None]:
        """The CUDA call that launched ``rec`` on its thread, when the site is known; returns the flow id
        (the correlation id: unique per process)."""
        api_start = events.api_start_ns(rec)
        if api_start is None or rec.api_dur_ns is None or rec.thread_id is None:
            return None
        if rec.graph_id is not None:
            # A graph launch is one call for all its kernels (one correlation id): one call slice, one flow to
            # the first of them. Its kernels arrive together, so a short memory of graph calls is enough.
            if rec.corr_id in self._graph_calls:
                return None
            self._graph_calls[rec.corr_id] = None
            if len(self._graph_calls) > GRAPH_CALLS_REMEMBERED:
                del self._graph_calls[next(iter(self._graph_calls))]
        thread = self._thread(rec.thread_id)
        yield from self._track(thread)
        self.counts.launches += 1
        yield Slice(
            thread, name, api_start, api_start + rec.api_dur_ns, "cuda_api", {"corr_id": rec.corr_id},
            flow_out=rec.corr_id,
        )  # fmt: skip
        return rec.corr_id

    def _sample(self, s: events.SystemSample) -> Iterator[Event]:
        for g in s.gpus:
            for field_name, (label, unit, scale) in GPU_COUNTERS.items():
                value = getattr(g, field_name)
                if value is None:  # not supported on this GPU: absent, never 0
                    continue
                track = Track(
                    ("counter", "gpu", g.device_id, field_name), "counter", f"GPU {g.device_id} {label}",
                    parent=("gpu", g.device_id), unit=unit,
                )  # fmt: skip
                yield from self._track(track)
                self.counts.counters += 1
                yield Counter(track, s.ts_ns, float(value) * scale)
        if s.host is not None:
            for field_name, (label, unit, scale) in HOST_COUNTERS.items():
                value = getattr(s.host, field_name)
                if value is None:
                    continue
                track = Track(
                    ("counter", "host", field_name), "counter", label, parent=("process",), unit=unit
                )
                yield from self._track(track)
                self.counts.counters += 1
                yield Counter(track, s.ts_ns, float(value) * scale)


def _launch_args(cfg: events.LaunchConfig | None) -> dict[str, Any]:
    """What every kernel of one launch configuration shares."""
    if cfg is None:
        return {}
    args: dict[str, Any] = {
        "grid": list(cfg.grid),
        "block": list(cfg.block),
        "registers": cfg.num_regs,
        "shared_bytes": cfg.static_shared_bytes + cfg.dyn_shared_bytes,
    }
    if cfg.occupancy is not None:
        args["occupancy"] = cfg.occupancy
    return args
