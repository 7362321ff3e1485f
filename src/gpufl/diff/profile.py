"""One side of a diff: a session reduced to mergeable per-key sums (count, time, time², bytes) and totals.

Two producers build the same ``Profile``: the store's SQL (``gpufl.backend.store.diff``) and this module's
``profile_from_records`` over a log folder's decoded records (``gpufl diff`` on folders, tests). The sums are
all the comparison needs: a mean and a per-instance variance per key, so a 1M-kernel session is a few hundred
rows by the time it is compared.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import msgspec

from gpufl.contract import events as ev

KINDS = ("kernel", "scope", "copy", "memset")
"""Row kinds: a kernel name, a scope path, a copy direction and size class (``HtoD 4–8 MiB``), a memset
size class. Copies are keyed by size too because one direction mixes a 4 B flag and a 16 MiB upload: pooled,
their spread would read as noise and hide any real change."""

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def _size(n: int) -> str:
    i = 0
    while n >= 1024 and n % 1024 == 0 and i < len(_UNITS) - 1:
        n //= 1024
        i += 1
    return f"{n} {_UNITS[i]}"


def size_class(nbytes: int) -> str:
    """The power-of-two size class a copy or memset falls in: ``4–8 MiB`` holds [4 MiB, 8 MiB)."""
    if nbytes <= 0:
        return "0 B"
    lo = 1 << (nbytes.bit_length() - 1)
    return f"{_size(lo)}–{_size(2 * lo)}"


def copy_key(copy_kind: str, nbytes: int) -> str:
    return f"{copy_kind} {size_class(nbytes)}"


def memset_key(nbytes: int) -> str:
    return f"memset {size_class(nbytes)}"


STEP_SCOPE = ev.STEP_SCOPE
"""The scope name that marks a training step (``gpufl.step()`` opens one): a top-level scope of this name."""


class Stat(msgspec.Struct, kw_only=True):
    """One key's instances on one side: how many, their summed and squared-summed durations, bytes moved."""

    n: int = 0
    total_ns: int = 0
    sumsq: float = 0.0
    """Sum of squared durations (ns²), as a double: int64 would overflow past ~9 s² of squares."""
    bytes: int = 0

    def add(self, dur_ns: int, nbytes: int = 0) -> None:
        self.n += 1
        self.total_ns += dur_ns
        self.sumsq += float(dur_ns) * float(dur_ns)
        self.bytes += nbytes

    def variance(self) -> float:
        """Sample variance of one instance's duration (ns²); 0 below two instances."""
        if self.n < 2:
            return 0.0
        mean = self.total_ns / self.n
        return max(0.0, (self.sumsq - self.n * mean * mean) / (self.n - 1))


class Totals(msgspec.Struct, kw_only=True):
    """Whole-session figures. ``gpu_busy_ns``: the union of kernel, copy and memset intervals per device,
    summed over devices (overlap on one device counted once); ``idle_ns``: each device's span from its first
    activity's start to its last activity's end, less its busy time, summed."""

    gpu_busy_ns: int = 0
    idle_ns: int = 0
    span_ns: int = 0
    kernel_ns: int = 0
    kernels: int = 0
    copy_ns: int = 0
    copy_bytes: int = 0
    copies: int = 0
    memset_ns: int = 0
    memsets: int = 0
    step_ns: int = 0
    """Summed wall time of the step scopes (0 where none)."""


class Profile(msgspec.Struct, kw_only=True):
    session_id: str
    app: str | None = None
    host: str | None = None
    start_ns: int | None = None
    step_scope: str = STEP_SCOPE
    steps: int = 0
    """Closed top-level scopes named ``STEP_SCOPE``; both sides having some makes the diff per step."""
    totals: Totals = msgspec.field(default_factory=Totals)
    rows: dict[str, dict[str, Stat]] = msgspec.field(default_factory=lambda: {k: {} for k in KINDS})
    """kind → key → figures."""


def union_busy(intervals: list[tuple[int, int]]) -> tuple[int, int, int]:
    """(busy, first start, last end) of intervals on one device: overlapping time counted once."""
    intervals.sort()
    busy = 0
    reach = intervals[0][0]
    first, last = intervals[0][0], max(e for _, e in intervals)
    for s, e in intervals:
        if e <= reach:
            continue
        busy += e - max(s, reach)
        reach = e
    return busy, first, last


def profile_from_records(
    session_id: str, records: Iterable[ev.Record], step_scope: str = STEP_SCOPE
) -> Profile:
    """A ``Profile`` of one session from its records (any order, any stream mix)."""
    p = Profile(session_id=session_id, step_scope=step_scope)
    launches: dict[int, str] = {}
    paths: dict[int, str] = {}
    kernels: list[tuple[int, int]] = []  # (launch_id, duration)
    begins: dict[int, ev.ScopeBegin] = {}
    ends: dict[int, int] = {}
    by_device: dict[int, list[tuple[int, int]]] = defaultdict(list)
    t = p.totals
    for r in records:
        if isinstance(r, ev.SessionStart) and p.app is None:
            p.app, p.host, p.start_ns = r.app, r.host, r.start_ns
        elif isinstance(r, ev.DictEntry):
            if r.kind == "launch" and r.launch is not None:
                launches[r.id] = r.launch.name
            elif r.kind == "scope" and r.value is not None:
                paths[r.id] = r.value
        elif isinstance(r, ev.Kernel):
            kernels.append((r.launch_id, r.end_ns - r.start_ns))
            by_device[r.device_id].append((r.start_ns, r.end_ns))
            t.kernels += 1
            t.kernel_ns += r.end_ns - r.start_ns
        elif isinstance(r, ev.Memcpy):
            p.rows["copy"].setdefault(copy_key(r.copy_kind, r.bytes), Stat()).add(
                r.end_ns - r.start_ns, r.bytes
            )
            by_device[r.device_id].append((r.start_ns, r.end_ns))
            t.copies += 1
            t.copy_ns += r.end_ns - r.start_ns
            t.copy_bytes += r.bytes
        elif isinstance(r, ev.Memset):
            p.rows["memset"].setdefault(memset_key(r.bytes), Stat()).add(r.end_ns - r.start_ns, r.bytes)
            by_device[r.device_id].append((r.start_ns, r.end_ns))
            t.memsets += 1
            t.memset_ns += r.end_ns - r.start_ns
        elif isinstance(r, ev.ScopeBegin):
            begins[r.inst] = r
        elif isinstance(r, ev.ScopeEnd):
            ends[r.inst] = r.ts_ns
    for launch_id, dur in kernels:
        name = launches.get(launch_id, f"launch#{launch_id}")
        p.rows["kernel"].setdefault(name, Stat()).add(dur)
    for inst, b in begins.items():
        end = ends.get(inst)
        if end is None:
            continue  # an open scope (the program was cut short) has no duration to compare
        path = paths.get(b.path_id, f"#{b.path_id}")
        p.rows["scope"].setdefault(path, Stat()).add(end - b.ts_ns)
        if b.depth == 0 and path == step_scope:
            p.steps += 1
            t.step_ns += end - b.ts_ns
    for ivs in by_device.values():
        busy, first, last = union_busy(ivs)
        t.gpu_busy_ns += busy
        t.span_ns += last - first
        t.idle_ns += last - first - busy
    return p
