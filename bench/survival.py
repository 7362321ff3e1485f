"""Hand-over soak: gpufl beside another CUPTI client, many fresh processes per case, on both record paths.

Issue #15's bar: every hand-over run ≥ 20 times per record path, 0 crashes, 0 hangs (a run over 3× the
case's median time, or over --timeout), and the profiler the user started gets its data. Each run is a fresh
Python process (CUPTI state is per process); runs of all cases are interleaved and run --jobs at a time.
Needs a CUDA GPU, torch, and cupti-python (the cupti-python path and the "other library" cases use it).

    python bench/survival.py --runs 20 --jobs 8 --json out.json
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gpufl.contract import events  # noqa: E402

WORK = """
def work(x, n):
    for _ in range(n):
        x = torch.relu(x @ x)
    torch.cuda.synchronize()
    return x
"""

PROFILE = """
def profiled(x, n):
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        x = work(x, n)
    got = sum(1 for e in p.events() if e.device_type.name == "CUDA")
    print("PROFILER_KERNELS", got, flush=True)
    return x
"""

# Another library holding CUPTI through cupti-python (as an in-process tool such as a second profiler would).
OTHER = """
from cupti import cupti
OTHER_RECORDS = [0]
def other_subscribe():
    return cupti.subscribe(lambda *a: None, None)
def other_trace():
    cupti.activity_register_callbacks(lambda: (1 << 20, 0), lambda acts: OTHER_RECORDS.__setitem__(0, OTHER_RECORDS[0] + len(acts)))
    cupti.activity_enable(cupti.ActivityKind.CONCURRENT_KERNEL)
def other_report():
    cupti.activity_flush_all(1)
    print("OTHER_RECORDS", OTHER_RECORDS[0], flush=True)
"""

CASES: dict[str, str] = {
    # torch.profiler started after gpufl.init, torch imported after init (the `gpufl run` order)
    "profiler-after-init": """
        import gpufl
        gpufl.init(app_name="survival", log_dir=LOG)
        import torch
        WORK; PROFILE
        x = torch.randn(256, 256, device="cuda")
        x = work(x, 20)
        x = profiled(x, 50)
        x = work(x, 20)
        gpufl.shutdown()
        """,
    # the same with torch imported first (the hook is installed at init)
    "profiler-after-init-torch-first": """
        import torch, gpufl
        gpufl.init(app_name="survival", log_dir=LOG)
        WORK; PROFILE
        x = torch.randn(256, 256, device="cuda")
        x = work(x, 20)
        x = profiled(x, 50)
        x = work(x, 20)
        gpufl.shutdown()
        """,
    # torch.profiler running when gpufl.init is called: gpufl must leave CUPTI to it
    "profiler-before-init": """
        import torch, gpufl
        from torch.profiler import profile, ProfilerActivity
        WORK
        x = torch.randn(256, 256, device="cuda")
        with profile(activities=[ProfilerActivity.CUDA]) as p:
            gpufl.init(app_name="survival", log_dir=LOG)
            x = work(x, 50)
        print("PROFILER_KERNELS", sum(1 for e in p.events() if e.device_type.name == "CUDA"), flush=True)
        x = work(x, 20)
        gpufl.shutdown()
        """,
    # started and stopped twice in one process
    "profiler-twice": """
        import gpufl
        gpufl.init(app_name="survival", log_dir=LOG)
        import torch
        WORK; PROFILE
        x = torch.randn(256, 256, device="cuda")
        x = work(x, 20)
        x = profiled(x, 50)
        x = work(x, 20)
        x = profiled(x, 50)
        x = work(x, 20)
        gpufl.shutdown()
        """,
    # an nsys/ncu-style second subscriber arrives while gpufl traces: it is refused, nothing breaks
    "second-subscriber": """
        import torch, gpufl
        gpufl.init(app_name="survival", log_dir=LOG)
        WORK; OTHER
        x = torch.randn(256, 256, device="cuda")
        x = work(x, 20)
        try:
            other_subscribe()
            print("OTHER_SUBSCRIBED", flush=True)
        except Exception as e:
            print("OTHER_REFUSED", type(e).__name__, flush=True)
        x = work(x, 20)
        gpufl.shutdown()
        """,
    # CUPTI already held and tracing by another library when gpufl starts: that library keeps its data
    "cupti-held": """
        import torch
        WORK; OTHER
        sub = other_subscribe()
        other_trace()
        x = torch.randn(256, 256, device="cuda")
        x = work(x, 20)
        import gpufl
        gpufl.init(app_name="survival", log_dir=LOG)
        x = work(x, 50)
        gpufl.shutdown()
        other_report()
        """,
}


def program(case: str, log_dir: Path) -> str:
    body = (
        textwrap.dedent(CASES[case])
        .replace("WORK; PROFILE", WORK + PROFILE)
        .replace("WORK; OTHER", WORK + OTHER)
    )
    body = body.replace("\nWORK\n", "\n" + WORK + "\n")
    return f"LOG = {str(log_dir)!r}\n" + body


def check(case: str, rc: int, out: str, log_dir: Path) -> list[str]:
    """What went wrong in one run (empty: it held)."""
    bad: list[str] = []
    if rc != 0:
        bad.append(f"exit {rc}")
    recs: list[Any] = []
    for p in sorted(log_dir.glob("*.device.*.log")):
        recs += [events.decode(line) for line in p.read_bytes().splitlines() if line.strip()]
    if not recs or not isinstance(recs[-1], events.SessionEnd):
        bad.append("no session_end")
    if "PROFILE" in CASES[case] or "profile(" in CASES[case]:
        counts = [int(line.split()[1]) for line in out.splitlines() if line.startswith("PROFILER_KERNELS")]
        want = 2 if case == "profiler-twice" else 1
        if len(counts) != want or min(counts, default=0) < 50:
            bad.append(f"profiler kernels {counts}")
    if case == "cupti-held":
        got = [int(line.split()[1]) for line in out.splitlines() if line.startswith("OTHER_RECORDS")]
        if not got or got[0] < 70:
            bad.append(f"other library records {got}")
    if case == "second-subscriber":
        kernels = [r for r in recs if isinstance(r, events.Kernel)]
        if len(kernels) < 80:  # 40 matmul+relu pairs, before and after the refused subscribe
            bad.append(f"gpufl kernels {len(kernels)}")
    return bad


def outcome(recs_dir: Path) -> str:
    recs: list[Any] = []
    for p in sorted(recs_dir.glob("*.device.*.log")):
        recs += [events.decode(line) for line in p.read_bytes().splitlines() if line.strip()]
    codes = sorted({r.code for r in recs if isinstance(r, events.Notice)})
    return ",".join(codes) or "-"


def run_one(case: str, path: str, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp) / "logs"
        script = Path(tmp) / "prog.py"
        script.write_text(program(case, log_dir))
        env = {**os.environ, "GPUFL_NATIVE": "1" if path == "native" else "0", "PYTHONFAULTHANDLER": "1"}
        t0 = time.monotonic()
        try:
            p = subprocess.run(
                [sys.executable, str(script)], capture_output=True, text=True, timeout=timeout, env=env
            )
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = -999, str(e.stdout or ""), str(e.stderr or "")
        wall = time.monotonic() - t0
        bad = ["hang (timeout)"] if rc == -999 else check(case, rc, out, log_dir)
        return {
            "case": case, "path": path, "rc": rc, "wall_s": round(wall, 2), "bad": bad,
            "notices": outcome(log_dir), "stderr_tail": err[-1500:] if bad else "",
        }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--paths", default="native,cupti-python")
    ap.add_argument("--json", help="write every run here")
    args = ap.parse_args()
    cases, paths = args.cases.split(","), args.paths.split(",")
    plan = [(c, p) for _ in range(args.runs) for c in cases for p in paths]  # interleaved rounds
    results: list[dict[str, Any]] = []
    with cf.ThreadPoolExecutor(args.jobs) as pool:
        for r in pool.map(lambda cp: run_one(cp[0], cp[1], args.timeout), plan):
            results.append(r)
            if r["bad"]:
                print(f"FAIL {r['case']} [{r['path']}]: {r['bad']}\n{r['stderr_tail']}", flush=True)
    print(
        f"\n{'case':34} {'path':13} {'runs':>4} {'ok':>4} {'crash':>5} {'hang':>4} {'median s':>8}  notices"
    )
    for c in cases:
        for p in paths:
            rs = [r for r in results if r["case"] == c and r["path"] == p]
            med = statistics.median(r["wall_s"] for r in rs)
            hang = sum(1 for r in rs if r["rc"] == -999 or r["wall_s"] > 3 * med)
            crash = sum(1 for r in rs if r["rc"] not in (0, -999))
            ok = sum(1 for r in rs if not r["bad"] and r["wall_s"] <= 3 * med)
            notes = sorted({r["notices"] for r in rs})
            print(f"{c:34} {p:13} {len(rs):>4} {ok:>4} {crash:>5} {hang:>4} {med:>8.1f}  {' | '.join(notes)}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
