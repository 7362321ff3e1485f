"""The GPU-metrics collector on its own, fed real capture lines, with a test clock: what a restarted agent
labels, which sample wins, when series go away. The end-to-end checks (a real Prometheus scraping a real
agent) are in test_prometheus.py."""

from __future__ import annotations

import os
import shutil

from prometheus_client import CollectorRegistry, generate_latest

from gpufl.agent.discovery import scan
from gpufl.agent.gpumetrics import SystemMetrics
from gpufl.contract import events as ev

TRAIN = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "captures", "gpt_train")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _system(folder: str) -> tuple[str, list[bytes]]:
    (name,) = [f for f in os.listdir(TRAIN) if ".system." in f]
    shutil.copy(os.path.join(TRAIN, name), folder)
    with open(os.path.join(folder, name), "rb") as f:
        return os.path.join(folder, name), f.read().splitlines(keepends=True)


def _samples(m: SystemMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reg = CollectorRegistry()
    reg.register(m)
    out = {}
    for fam in reg.collect():
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    generate_latest(reg)  # and it renders (raises on a malformed family)
    return out


def _value(m: SystemMetrics, name: str) -> list[tuple[dict[str, str], float]]:
    return [(dict(labels), v) for (n, labels), v in _samples(m).items() if n == name]


def _seg(folder: str) -> object:
    ((_, segs),) = scan(folder).items()
    return segs[0]


def test_resumed_agent_takes_labels_from_segment_zero(tmp_path: os.PathLike[str]) -> None:
    """An agent restarted past session_start (cursor) still labels the GPU with its UUID and model: it
    reads session_start again from the first segment."""
    folder = str(tmp_path)
    _, lines = _system(folder)
    start = ev.decode(lines[0])
    assert isinstance(start, ev.SessionStart)
    m = SystemMetrics(clock=Clock())
    m.observe(_seg(folder), b"".join(lines[5:7]))  # two samples, no session_start in what was read
    ((labels, v),) = _value(m, "gpufl_gpu_temperature_celsius")
    last = ev.decode(lines[6])
    assert isinstance(last, ev.SystemSample)
    assert v == last.gpus[0].temp_c
    assert labels["uuid"] == start.devices[0].uuid and labels["model"] == start.devices[0].name
    ((_, running),) = _value(m, "gpufl_sessions_running")
    assert running == 1


def test_segment_zero_gone_leaves_gpu_identity_empty(tmp_path: os.PathLike[str]) -> None:
    folder = str(tmp_path)
    path, lines = _system(folder)
    with open(path, "wb") as f:  # as if the session cap had deleted it: not a session_start any more
        f.writelines(lines[1:])
    m = SystemMetrics(clock=Clock())
    m.observe(_seg(folder), b"".join(lines[5:7]))
    ((labels, _),) = _value(m, "gpufl_gpu_temperature_celsius")
    assert labels["uuid"] == "" and labels["host"] == "vm" and labels["app"] == "gpt_train"


def test_older_sample_of_another_session_does_not_replace_the_newer(tmp_path: os.PathLike[str]) -> None:
    folder = str(tmp_path)
    _, lines = _system(folder)
    m = SystemMetrics(clock=Clock())
    seg = _seg(folder)
    m.observe(seg, b"".join(lines[:8]))
    newest = ev.decode(lines[7])
    assert isinstance(newest, ev.SystemSample)
    # The same lines as another session (same app, host and GPU), read later but sampled earlier.
    other = b"".join(lines[:4]).replace(newest.session_id.encode(), b"othersession")
    m.observe(seg, other)
    ((_, power),) = _value(m, "gpufl_gpu_power_watts")
    assert newest.gpus[0].power_mw is not None
    assert power == newest.gpus[0].power_mw / 1000


def test_series_go_after_the_ttl_and_ended_sessions_stop_counting(tmp_path: os.PathLike[str]) -> None:
    folder = str(tmp_path)
    _, lines = _system(folder)
    clock = Clock()
    m = SystemMetrics(ttl=60, clock=clock)
    m.observe(_seg(folder), b"".join(lines))  # the whole stream, session_end included
    ((_, running),) = _value(m, "gpufl_sessions_running")
    assert running == 0 and _value(m, "gpufl_gpu_utilization_ratio")
    clock.t += 59
    assert _value(m, "gpufl_gpu_utilization_ratio")
    clock.t += 2
    assert _samples(m) == {}


def test_off_and_bad_lines(tmp_path: os.PathLike[str]) -> None:
    folder = str(tmp_path)
    _, lines = _system(folder)
    off = SystemMetrics("off", clock=Clock())
    off.observe(_seg(folder), b"".join(lines))
    assert _samples(off) == {}
    m = SystemMetrics(clock=Clock())
    m.observe(_seg(folder), b'{"type":"system_sample"}\nnot json\n')  # no reading, and no exception
    assert _samples(m) == {}
