"""Remote capture latency (issue #22's bar: remote request → first traced kernel in the client <= 2 s, agent
and client on one host). Needs a GPU and torch; run on the GPU host (scripts/gpu_checks.sh remote).

    python3 bench/remote_capture.py [--rounds 5] [--gap 3] [--json out.json]

Starts, on loopback: a real ``gpufl-backend`` (DuckDB in a temporary folder), a real ``gpufl-agent`` tailing
the log folder (remote capture on: its long poll), and a workload process — ``gpufl.init(capture="on-demand")``
and a loop of small matmuls, each followed by a synchronisation, so a kernel starts within about a
millisecond of tracing being switched on. Each round posts ``POST /api/v1/captures`` (1 s of tracing for the
workload's app) and reads the session's device segments for the first ``kernel`` record that started after
the request was sent. Reported per round, in seconds after the request: the control file written by the agent
(its mtime), the session's ``capture_request`` answer (``ts_ns``), and the first traced kernel's
``start_ns`` (the bar). Rounds are ``--gap`` seconds apart (more than the window, so each opens a new one);
their total asks for 1 s each of the client's remote-capture budget (120 s per hour by default).

``--agent-only`` leaves the backend out (for a GPU host without the server's dependencies): the agent's own
``RemoteCapture.handle`` runs in this process on each request, as its poller does when the backend's long poll
answers — it finds the live session in the folder and writes the control file — so a round measures the node's
half (agent → control file → client → first traced kernel); the backend's half (request → the agent's poll
answered) is measured apart without a GPU by ``--server-only``: a real backend and agent, and a live session
without CUDA (``gpufl.init`` with the system engine only, so the agent finds its ``session_start``); a round
is request → the agent's control file written, on any machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

from client_overhead import _gpu_name  # bench/ is the scripts' folder: nvidia-smi's name, or "no GPU"

TOKEN = "remote-capture-bench-admin"
WORKLOAD = """
import os, sys, time, torch, gpufl
log_dir, stop = sys.argv[1], sys.argv[2]
gpufl.init(app_name="remote_bench", log_dir=log_dir, capture="on-demand")
x = torch.randn(256, 256, device="cuda")
print("ready", flush=True)
while not os.path.exists(stop):
    x = torch.relu(x @ x) / 256
    torch.cuda.synchronize()
gpufl.shutdown()
"""
NO_GPU_SESSION = """
import os, sys, time, gpufl
log_dir, stop = sys.argv[1], sys.argv[2]
gpufl.init(app_name="remote_bench", log_dir=log_dir, capture="on-demand", engines=["system"])
print("ready", flush=True)
while not os.path.exists(stop):
    time.sleep(0.05)
gpufl.shutdown()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, headers: dict[str, str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.post(url, content=b"", headers=headers, timeout=5)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def device_records(log_dir: Path) -> list[dict[str, Any]]:
    out = []
    for p in sorted(log_dir.glob("*.device.*.log")):
        for line in p.read_bytes().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line being written
    return out


class _Reported:
    """The agent's ``Requests`` seam without a backend: nothing to poll, deliveries kept here."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, list[tuple[str, str | None]]]] = []

    def poll(self, host: str, since_ns: int, wait_s: float) -> list[dict[str, Any]]:
        return []

    def report(self, rid: str, host: str, sessions: list[tuple[str, str | None]]) -> None:
        self.delivered.append((rid, sessions))

    def close(self) -> None:
        pass


def first_kernel_after(logs: Path, t0: int, rid: str) -> tuple[int | None, int | None]:
    """(first kernel start, capture_request answer) after t0 for request rid, waiting up to 10 s."""
    first: int | None = None
    answer: int | None = None
    end = time.monotonic() + 10
    while time.monotonic() < end and (first is None or answer is None):
        time.sleep(0.1)
        recs = device_records(logs)
        answer = next((x["ts_ns"] for x in recs if x.get("type") == "capture_request"
                       and x.get("request_id") == rid), None)  # fmt: skip
        starts = [x["start_ns"] for x in recs if x.get("type") == "kernel" and x["start_ns"] >= t0]
        first = min(starts) if starts else None
    return first, answer


def report_round(
    i: int, t0: int, control: Path, answer: int | None, first: int | None, sessions: int | None = None
) -> dict[str, float | None]:
    """One round's seconds after the request (t0), printed as it ends."""
    wrote = control.stat().st_mtime_ns if control.exists() else None
    row: dict[str, float | None] = {} if sessions is None else {"sessions": float(sessions)}
    row["control_file_s"] = (wrote - t0) / 1e9 if wrote else None
    row["answer_s"] = (answer - t0) / 1e9 if answer else None
    row["first_kernel_s"] = (first - t0) / 1e9 if first else None
    print(
        f"round {i + 1}: "
        + ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} none" for k, v in row.items())
    )
    return row


def summarise(args: argparse.Namespace, rounds: list[dict[str, float | None]], tmp: Path) -> int:
    key = "control_file_s" if getattr(args, "server_only", False) else "first_kernel_s"
    firsts = [r[key] for r in rounds]
    ok = bool(firsts) and all(f is not None and f <= 2.0 for f in firsts)
    got = [f for f in firsts if f is not None]
    summary = {
        "host": platform.node(),
        "gpu": _gpu_name(),
        "from": "agent handler (no backend)" if args.agent_only else "POST /api/v1/captures",
        "until": key,
        "rounds": rounds,
        "median_s": statistics.median(got) if got else None,
        "max_s": max(got) if got else None,
        "bar_2s_holds": ok,
        "folder": str(tmp),
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0 if ok else 1


def agent_only(args: argparse.Namespace) -> int:
    from gpufl.agent.remote import RemoteCapture

    tmp = Path(tempfile.mkdtemp(prefix="gpufl-remote-bench-"))
    logs, stop = tmp / "logs", tmp / "stop"
    logs.mkdir()
    (tmp / "workload.py").write_text(textwrap.dedent(WORKLOAD))
    work = subprocess.Popen([sys.executable, str(tmp / "workload.py"), str(logs), str(stop)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    rounds: list[dict[str, float | None]] = []
    try:
        assert work.stdout is not None and work.stdout.readline().strip() == "ready"
        agent = RemoteCapture(str(logs), _Reported())
        time.sleep(1)
        for i in range(args.rounds):
            rid = f"cap-bench-{i}"
            t0 = time.time_ns()
            req = {"id": rid, "app": "remote_bench", "job_id": None, "seconds": 1,
                   "engines": ["tracing"], "requester": "bench", "created_ns": t0}  # fmt: skip
            handed = agent.handle(req)
            first, answer = first_kernel_after(logs, t0, rid)
            control = logs / "gpufl-control.json"
            rounds.append(report_round(i, t0, control, answer, first, sessions=len(handed)))
            time.sleep(args.gap)
    finally:
        stop.touch()
        try:
            work.wait(30)
        except subprocess.TimeoutExpired:
            work.kill()
    return summarise(args, rounds, tmp)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--gap", type=float, default=3.0, help="seconds between requests (more than the 1 s window)"
    )
    ap.add_argument("--json", help="write the results here")
    ap.add_argument(
        "--agent-only", action="store_true", help="no backend: the agent's handler in this process"
    )
    ap.add_argument(
        "--server-only", action="store_true", help="no GPU: request -> control file written, per round"
    )
    args = ap.parse_args()
    if args.agent_only:
        return agent_only(args)
    tmp = Path(tempfile.mkdtemp(prefix="gpufl-remote-bench-"))
    logs, data, stop = tmp / "logs", tmp / "backend", tmp / "stop"
    logs.mkdir()
    data.mkdir()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api/v1/"
    admin = {"Authorization": f"Bearer {TOKEN}"}
    env = {**os.environ, "GPUFL_HOST": "127.0.0.1", "GPUFL_PORT": str(port), "GPUFL_DATA_DIR": str(data),
           "GPUFL_ADMIN_TOKEN": TOKEN}  # fmt: skip
    env.pop("GPUFL_DATABASE", None)
    procs: list[subprocess.Popen[Any]] = []
    rounds: list[dict[str, float | None]] = []
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "gpufl.backend.cli"], env=env,
                                      stdout=(tmp / "backend.log").open("wb"), stderr=subprocess.STDOUT))  # fmt: skip
        wait_http(f"{api}events/system", admin)
        ingest = httpx.post(f"{api}keys", json={"role": "ingest", "name": "agent"}, headers=admin).json()[
            "token"
        ]
        (tmp / "workload.py").write_text(textwrap.dedent(NO_GPU_SESSION if args.server_only else WORKLOAD))
        work = subprocess.Popen([sys.executable, str(tmp / "workload.py"), str(logs), str(stop)],
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
        procs.append(work)
        assert work.stdout is not None and work.stdout.readline().strip() == "ready"
        agent_log = tmp / "agent.log"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "gpufl.agent.cli", f"--folder={logs}", "--type=http", f"--url={api}events/",
             f"--token={ingest}", "--poll-interval=0.1"], stderr=agent_log.open("wb"),
        ))  # fmt: skip
        deadline = time.monotonic() + 60
        while b"remote capture: handing" not in agent_log.read_bytes():
            if time.monotonic() > deadline:
                raise SystemExit(f"the agent did not start its remote-capture poller: {agent_log}")
            time.sleep(0.1)
        time.sleep(1)
        for i in range(args.rounds):
            t0 = time.time_ns()
            r = httpx.post(f"{api}captures", json={"app": "remote_bench", "seconds": 1}, headers=admin)
            r.raise_for_status()
            rid = r.json()["id"]
            control = logs / "gpufl-control.json"
            if args.server_only:
                first = answer = None
                end = time.monotonic() + 10
                while time.monotonic() < end and rid not in (control.read_text() if control.exists() else ""):
                    time.sleep(0.005)
            else:
                first, answer = first_kernel_after(logs, t0, rid)
            rounds.append(report_round(i, t0, control, answer, first))
            time.sleep(args.gap)
    finally:
        stop.touch()
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
    return summarise(args, rounds, tmp)


if __name__ == "__main__":
    sys.exit(main())
