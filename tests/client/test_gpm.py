"""GpmReader: NVML GPM readings per interval. No GPU here, so NVML is stood in for at its boundary by a
module that replays the GPM values the real H100 gave in the committed capture (examples/captures/
gpu_activity, recorded by examples/workloads/gpu_activity.py on the lent GPU); tests/gpu checks the real one."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gpufl.client.engines.gpm import METRICS, GpmReader
from gpufl.contract import events

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "examples/captures/gpu_activity"


def recorded_intervals() -> list[dict[str, float]]:
    """GPU 0's GPM fields of every system sample in the capture that has them, in order."""
    out = []
    for seg in sorted(CAPTURE.glob("*.system.*.log")):
        for line in seg.read_bytes().splitlines():
            rec = events.decode(line)
            if isinstance(rec, events.SystemSample):
                got = {k: v for k, v in msgspec.to_builtins(rec.gpus[0]).items() if k in METRICS}
                if got:
                    out.append(got)
    return out


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        self.value = value


class Metric(ctypes.Structure):
    _fields_ = [("metricId", ctypes.c_uint), ("nvmlReturn", ctypes.c_uint), ("value", ctypes.c_double)]


class MetricsGet(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_uint),
        ("numMetrics", ctypes.c_uint),
        ("sample1", ctypes.c_void_p),
        ("sample2", ctypes.c_void_p),
        ("metrics", Metric * 128),
    ]


class ReplayNvml:
    """NVML's GPM calls (names and struct layout as nvidia-ml-py's), answering with recorded intervals.
    Each ``nvmlGpmSampleGet`` stamps a sample buffer with a sequence number; ``nvmlGpmMetricsGet`` checks
    that it is asked for (older, newer) consecutive samples, and answers with the next recorded interval."""

    NVMLError = NVMLError
    NVML_GPM_METRICS_GET_VERSION = 1
    c_nvmlGpmMetricsGet_t = MetricsGet

    def __init__(
        self,
        intervals: list[dict[str, float]],
        supported: bool = True,
        not_supported: tuple[int, ...] = (),
    ) -> None:
        self.intervals = list(intervals)
        self.supported = supported
        self.not_supported = set(not_supported)
        self.samples: list[ctypes.c_uint64] = []
        self.seq = 0
        self.fail_next_sample = False
        self.freed = 0

    def nvmlGpmQueryDeviceSupport(self, h: Any) -> Any:
        return type("Support", (), {"isSupportedDevice": int(self.supported)})()

    def nvmlGpmSampleAlloc(self) -> Any:
        buf = ctypes.c_uint64(0)
        self.samples.append(buf)
        return ctypes.addressof(buf)

    def nvmlGpmSampleFree(self, s: Any) -> None:
        self.freed += 1

    def nvmlGpmSampleGet(self, h: Any, s: Any) -> Any:
        if self.fail_next_sample:
            self.fail_next_sample = False
            raise NVMLError(15)  # NVML_ERROR_GPU_IS_LOST
        self.seq += 1
        ctypes.c_uint64.from_address(s).value = self.seq
        return s

    def nvmlGpmMetricsGet(self, req: MetricsGet) -> MetricsGet:
        first = ctypes.c_uint64.from_address(req.sample1).value
        second = ctypes.c_uint64.from_address(req.sample2).value
        assert second == first + 1, (first, second)  # always the interval between consecutive samples
        interval = self.intervals.pop(0)
        by_id = {i: name for name, i in METRICS.items()}
        for k in range(req.numMetrics):
            m = req.metrics[k]
            if m.metricId in self.not_supported:
                m.nvmlReturn = 3  # NVML_ERROR_NOT_SUPPORTED
                continue
            m.nvmlReturn, m.value = 0, interval.get(by_id[m.metricId], 0.0)
        return req


@pytest.fixture(scope="module")
def intervals() -> list[dict[str, float]]:
    got = recorded_intervals()
    assert len(got) >= 10, "the capture must hold GPM readings"
    return got


def test_each_read_gives_the_interval_since_the_previous_one(intervals: list[dict[str, float]]) -> None:
    nv = ReplayNvml(intervals)
    r = GpmReader(nv, ["gpu0"])
    assert r.available and r.unsupported == []
    assert r.read() == [{}]  # the first sample has nothing to compare with
    for want in intervals[:8]:
        (got,) = r.read()
        assert got == {k: round(v, 2) for k, v in want.items()}
    r.close()
    assert nv.freed == 2


def test_recorded_phases_read_as_expected(intervals: list[dict[str, float]]) -> None:
    """The capture itself: an idle phase near 0, copies DRAM-bound with idle tensor pipes, GEMMs
    tensor-bound (the workload's phases, recorded on the real GPU)."""
    dram = [i for i in intervals if i.get("dram_bw_pct", 0) >= 70]
    tensor = [i for i in intervals if i.get("tensor_active_pct", 0) >= 80]
    idle = [i for i in intervals if i.get("sm_active_pct", 100) < 1]
    assert dram and tensor and idle
    assert all(i.get("tensor_active_pct", 0) < 1 for i in dram)


def test_a_gpu_without_gpm_is_named_once_and_never_read() -> None:
    nv = ReplayNvml([], supported=False)
    r = GpmReader(nv, ["gpu0"])
    assert not r.available
    assert [d for d, _ in r.unsupported] == [0] and "Hopper" in r.unsupported[0][1]
    assert r.read() == [{}] and nv.seq == 0


def test_a_metric_the_gpu_does_not_report_is_dropped_once(intervals: list[dict[str, float]]) -> None:
    nvlink = (METRICS["nvlink_rx_mibs"], METRICS["nvlink_tx_mibs"])
    nv = ReplayNvml(intervals, not_supported=nvlink)
    r = GpmReader(nv, ["gpu0"])
    r.read()
    (got,) = r.read()
    assert "nvlink_rx_mibs" not in got and "sm_active_pct" in got
    assert sorted(r.dropped[0]) == ["nvlink_rx_mibs", "nvlink_tx_mibs"]
    r.read()
    assert sorted(r.dropped[0]) == ["nvlink_rx_mibs", "nvlink_tx_mibs"]  # not asked again


def test_a_failed_sample_starts_a_new_interval(intervals: list[dict[str, float]]) -> None:
    nv = ReplayNvml(intervals)
    r = GpmReader(nv, ["gpu0"])
    r.read()
    assert r.read()[0]
    nv.fail_next_sample = True
    assert r.read() == [{}]  # no reading now
    assert r.read() == [{}]  # nor one spanning the gap
    assert r.read()[0]  # consecutive samples again (the stand-in checks)


def test_a_percentage_out_of_range_is_left_out(intervals: list[dict[str, float]]) -> None:
    bad = [dict(intervals[0], sm_active_pct=250.0, dram_bw_pct=100.2)]
    r = GpmReader(ReplayNvml(bad), ["gpu0"])
    r.read()
    (got,) = r.read()
    assert "sm_active_pct" not in got  # not a percentage: never stored as one
    assert got["dram_bw_pct"] == 100.0  # driver rounding at the edge: clamped
