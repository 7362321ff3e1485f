"""Capture modes on a real GPU (issue #21), both record paths: in ``windows`` mode kernels are recorded only
inside capture windows; ``on-demand`` records nothing until asked; a step range records exactly the kernels
torch.profiler counts over as many steps of the same loop (each step ends in a synchronisation, so its kernels
have run before the window's boundary)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from gpufl.contract import events

MS = 1_000_000


def _run(code: str, tmp: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = tmp / "prog.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def _records(log_dir: Path) -> list[events.Record]:
    out: list[events.Record] = []
    for p in sorted(log_dir.glob("*.device.*.log")):
        out += [events.decode(line) for line in p.read_bytes().splitlines()]
    return out


def test_windows_mode_records_kernels_only_inside_windows(tmp_path: Path, tracing_path: str) -> None:
    log_dir = tmp_path / "logs"
    proc = _run(
        f"""
        import time, torch, gpufl
        gpufl.init(app_name="windows", log_dir={str(log_dir)!r}, capture="windows:300ms/1s")
        x = torch.randn(512, 512, device="cuda")
        t_end = time.monotonic() + 3.6
        n = 0
        while time.monotonic() < t_end:
            x = torch.relu(x @ x) / 512
            torch.cuda.synchronize()  # a short queue: each kernel runs within a millisecond of its launch
            n += 1
        gpufl.shutdown()
        print("ITERATIONS", n)
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    recs = _records(log_dir)
    windows = [r for r in recs if isinstance(r, events.CaptureWindow)]
    assert len(windows) >= 3, windows
    assert all(w.trigger.kind == "schedule" and w.engines == ["tracing"] for w in windows)
    kernels = [r for r in recs if isinstance(r, events.Kernel)]
    assert kernels, proc.stderr

    def inside(k: events.Kernel) -> bool:
        return any(w.start_ns - 5 * MS <= k.start_ns and k.end_ns <= w.end_ns + 50 * MS for w in windows)

    outside = [k for k in kernels if not inside(k)]
    assert not outside, (len(outside), len(kernels), [(w.start_ns, w.end_ns) for w in windows])
    per_window = [
        sum(1 for k in kernels if w.start_ns - 5 * MS <= k.start_ns <= w.end_ns + 50 * MS) for w in windows
    ]
    assert all(n > 0 for n in per_window[:3]), (per_window, proc.stderr[-3000:])  # the loop ran through 3
    iterations = int(proc.stdout.split("ITERATIONS")[1].split()[0])
    # 3 or 4 kernels an iteration, about a third of the run traced (0.3 s of each second): at most half
    assert len(kernels) <= iterations * 2, (len(kernels), iterations)
    print(
        "WINDOWS", len(windows), "KERNELS", len(kernels), "PER WINDOW", per_window, "ITERATIONS", iterations
    )


def test_on_demand_records_nothing_until_asked(tmp_path: Path, tracing_path: str) -> None:
    log_dir = tmp_path / "logs"
    proc = _run(
        f"""
        import time, torch, gpufl
        gpufl.init(app_name="ondemand", log_dir={str(log_dir)!r}, capture="on-demand")
        x = torch.randn(256, 256, device="cuda")
        for _ in range(200):
            x = torch.relu(x @ x) / 256
        torch.cuda.synchronize()
        time.sleep(0.1)
        print("ASKED", time.time_ns())
        print("OUTCOME", gpufl.capture(seconds=30))
        for _ in range(50):
            x = torch.relu(x @ x) / 256
        torch.cuda.synchronize()
        gpufl.capture_stop()
        for _ in range(200):
            x = torch.relu(x @ x) / 256
        torch.cuda.synchronize()
        gpufl.shutdown()
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "OUTCOME opened" in proc.stdout
    recs = _records(log_dir)
    (w,) = [r for r in recs if isinstance(r, events.CaptureWindow)]
    assert (w.trigger.kind, w.ended) == ("api", "stopped")
    kernels = [r for r in recs if isinstance(r, events.Kernel)]
    # 50 iterations of a matmul (cuBLAS: 1 or 2 kernels) and a relu and a division, nothing of the other 400
    assert 150 <= len(kernels) <= 200, len(kernels)
    assert all(w.start_ns <= k.start_ns and k.end_ns <= w.end_ns + 50 * MS for k in kernels)


STEPS_LOOP = """
import sys, torch
torch.manual_seed(0)
w1 = torch.randn(1024, 1024, device="cuda") / 32
w2 = torch.randn(1024, 1024, device="cuda") / 32
x = torch.randn(256, 1024, device="cuda")
torch.cuda.synchronize()

def step():
    h = torch.relu(x @ w1)
    y = torch.tanh(h @ w2)
    return y * 0.5 + h
"""


def test_a_step_range_records_what_torch_profiler_counts(tmp_path: Path, tracing_path: str) -> None:
    """steps:5-9 under gpufl (one process) against torch.profiler over five steps of the same loop (another
    process, gpufl not imported): the same number of kernels."""
    log_dir = tmp_path / "logs"
    gp = _run(
        STEPS_LOOP
        + f"""
import gpufl
gpufl.init(app_name="steps", log_dir={str(log_dir)!r}, capture="steps:5-9")
for i in range(15):
    with gpufl.step():
        step()
        torch.cuda.synchronize()
gpufl.shutdown()
""",
        tmp_path,
    )
    assert gp.returncode == 0, gp.stderr
    tp = _run(
        STEPS_LOOP
        + """
from torch.profiler import profile, ProfilerActivity
for i in range(5):
    step()
torch.cuda.synchronize()
with profile(activities=[ProfilerActivity.CUDA]) as p:
    for i in range(5):
        step()
    torch.cuda.synchronize()
cuda = [e for e in p.events() if e.device_type.name == "CUDA"]
print("PROFILER_KERNELS", len(cuda))
print("NAMES", sorted({e.name for e in cuda}))
""",
        tmp_path,
        env={"GPUFL_ENABLED": "0"},
    )
    assert tp.returncode == 0, tp.stderr
    theirs = int(tp.stdout.split("PROFILER_KERNELS")[1].split()[0])
    recs = _records(log_dir)
    (w,) = [r for r in recs if isinstance(r, events.CaptureWindow)]
    assert (w.trigger.kind, w.trigger.first_step, w.trigger.steps, w.ended) == ("steps", 5, 5, "steps")
    kernels = [r for r in recs if isinstance(r, events.Kernel)]
    memsets_copies = [r for r in recs if isinstance(r, events.Memcpy | events.Memset)]
    print("GPUFL", len(kernels), "copies/memsets", len(memsets_copies), "TORCH.PROFILER", theirs)
    assert theirs > 0 and len(kernels) + len(memsets_copies) == theirs, (len(kernels), theirs, tp.stdout)
    assert all(w.start_ns <= k.start_ns and k.end_ns <= w.end_ns for k in kernels)


def _scope_records(log_dir: Path) -> list[events.Record]:
    out: list[events.Record] = []
    for p in sorted(log_dir.glob("*.scope.*.log")):
        out += [events.decode(line) for line in p.read_bytes().splitlines() if line.strip()]
    return out


def test_a_continuous_session_opens_a_pc_sampling_window_on_request(
    tmp_path: Path, tracing_path: str
) -> None:
    """Issue #22: "PC sampling for 10 s on a live job". In the default mode, a control-file request for tracing
    and PC sampling opens a window of the deep engine alone — one ``profile_range`` inside it with PC samples —
    while tracing never stops (kernels before, inside and after the window); a request for tracing alone is
    answered ``continuous``. On the cupti-python path the deep engine cannot run: refused, PC sampling missing."""
    log_dir = tmp_path / "logs"
    proc = _run(
        f"""
        import json, os, time, torch, gpufl
        s = gpufl.init(app_name="live", log_dir={str(log_dir)!r}, engines="tracing,pc_sampling,system")
        x = torch.randn(512, 512, device="cuda")

        def work(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                global x
                x = torch.relu(x @ x) / 512
                torch.cuda.synchronize()

        def ask(req):
            tmp = os.path.join({str(log_dir)!r}, ".ctl.tmp")
            with open(tmp, "w") as f:
                json.dump(req, f)
            os.rename(tmp, os.path.join({str(log_dir)!r}, "gpufl-control.json"))

        work(1.0)
        ask({{"id": "t1", "seconds": 1, "engines": ["tracing"]}})
        work(1.5)  # read within a second
        ask({{"id": "p1", "seconds": 2, "engines": ["tracing", "pc_sampling"]}})
        work(4.0)  # read within a second, then 2 s of window
        gpufl.shutdown()
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    recs = _records(log_dir)
    answers = {r.request_id: r for r in recs if isinstance(r, events.CaptureRequest)}
    assert (answers["t1"].outcome, answers["t1"].engines, answers["t1"].missing) == (
        "continuous",
        ["tracing"],
        [],
    )
    kernels = sorted((r for r in recs if isinstance(r, events.Kernel)), key=lambda k: k.start_ns)
    windows = [r for r in recs if isinstance(r, events.CaptureWindow)]
    if tracing_path == "cupti-python":
        p1 = answers["p1"]
        assert (p1.outcome, p1.reason, p1.missing) == ("refused", "engine_unavailable", ["pc_sampling"])
        assert windows == [] and len(kernels) > 100
        return
    assert answers["p1"].outcome == "opened", answers["p1"]
    (w,) = windows
    assert (w.trigger.mode, w.trigger.request_id, w.engines, w.ended) == (
        "continuous", "p1", ["pc_sampling"], "duration",
    )  # fmt: skip
    assert 1.9e9 <= w.end_ns - w.start_ns <= 3.5e9
    before = [k for k in kernels if k.end_ns < w.start_ns]
    inside = [k for k in kernels if w.start_ns <= k.start_ns and k.end_ns <= w.end_ns]
    after = [k for k in kernels if k.start_ns > w.end_ns]
    assert before and inside and after, (len(before), len(inside), len(after))  # tracing never stopped
    ranges = [r for r in _scope_records(log_dir) if isinstance(r, events.ProfileRange)]
    assert len(ranges) == 1 and ranges[0].engines == ["pc_sampling"] and not ranges[0].error, ranges
    assert w.start_ns <= ranges[0].start_ns and ranges[0].end_ns <= w.end_ns + 500 * MS
    samples = [r for r in _scope_records(log_dir) if isinstance(r, events.ProfileSample)]
    assert samples and all(r.source == "pc_sampling" for r in samples)
