"""Archiver throughput: segments/s and MB/s from a log folder to an S3 server (Ceph radosgw on loopback),
and the agent's delivery rate to the backend with archiving on and off, side by side.

    .venv/bin/python bench/archiver.py [--events 1000000] [--segment-mb 8] [--rounds 2]

The S3 server: GPUFL_TEST_S3_ENDPOINT/_ACCESS_KEY/_SECRET_KEY if set (scripts/services.sh exports them),
else a private radosgw started with scripts/radosgw.sh (Debian's ceph packages). Everything runs on this
machine, so the agent shares the cores with radosgw (and the backend). Segments are bench/agent_throughput's
(kernel records); ``--archiver-idle`` is set very low so the last, still "open" segment counts as closed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from agent_throughput import free_port, wait_port, write_segments  # bench/agent_throughput.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-token"


def s3_server(work: str) -> tuple[dict[str, str], str | None]:
    env = os.environ
    if env.get("GPUFL_TEST_S3_ENDPOINT"):
        return {k: env[k] for k in env if k.startswith("GPUFL_TEST_S3_")}, None
    rgw = os.path.join(work, "rgw")
    out = subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "radosgw.sh"), "start", rgw], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"radosgw did not start: {out.stderr[-2000:]}")
    return dict(line.split("=", 1) for line in out.stdout.split()), rgw


def new_bucket(s3: dict[str, str]) -> str:
    import boto3

    c = boto3.client(
        "s3",
        endpoint_url=s3["GPUFL_TEST_S3_ENDPOINT"],
        aws_access_key_id=s3["GPUFL_TEST_S3_ACCESS_KEY"],
        aws_secret_access_key=s3["GPUFL_TEST_S3_SECRET_KEY"],
        region_name="us-east-1",
    )
    name = f"bench-{uuid.uuid4().hex[:10]}"
    c.create_bucket(Bucket=name)
    return name


def run_agent(args: list[str], s3: dict[str, str]) -> tuple[float, float, float]:
    """(seconds to delivered, seconds to exit, agent CPU seconds). "Delivered" is the agent's own log line
    saying everything present was acknowledged; with the archiver it then waits for the archive."""
    env = {
        **os.environ,
        "GPUFL_AGENT_TOKEN": TOKEN,
        "AWS_ACCESS_KEY_ID": s3["GPUFL_TEST_S3_ACCESS_KEY"],
        "AWS_SECRET_ACCESS_KEY": s3["GPUFL_TEST_S3_SECRET_KEY"],
    }
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpufl.agent.cli", *args, "--exit-when-idle", "--status-interval=0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    delivered = [0.0]
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "everything present was delivered" in line and not delivered[0]:
                delivered[0] = time.perf_counter() - t

    reader = threading.Thread(target=read)
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    total = time.perf_counter() - t
    reader.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("agent failed:\n" + "".join(lines[-20:]))
    return delivered[0] or total, total, usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--segment-mb", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="gpufl-bench-archiver-")
    rgw = None
    backend = None
    try:
        s3, rgw = s3_server(work)
        folder = os.path.join(work, "logs")
        os.mkdir(folder)
        nbytes = write_segments(folder, a.events, a.segment_mb << 20)
        nseg = len([n for n in os.listdir(folder) if n.endswith(".log")])
        print(
            f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}; "
            f"{a.events} records, {nbytes / 1e6:.0f} MB in {nseg} segments of {a.segment_mb} MiB"
        )
        arch = ["--archiver-endpoint=" + s3["GPUFL_TEST_S3_ENDPOINT"], "--archiver-idle=0.01"]

        print("\narchive only (--type=none): folder → radosgw")
        print("| round | wall s | segments/s | MB/s (raw) | agent CPU s |")
        print("|---|---:|---:|---:|---:|")
        for r in range(a.rounds):
            cursor = os.path.join(work, f"cursor-arch-{r}")
            _, wall, cpu = run_agent(
                [
                    f"--folder={folder}",
                    "--type=none",
                    f"--cursor-file={cursor}",
                    *arch,
                    f"--archiver-bucket={new_bucket(s3)}",
                ],
                s3,
            )
            print(f"| {r + 1} | {wall:.1f} | {nseg / wall:.1f} | {nbytes / 1e6 / wall:.1f} | {cpu:.1f} |")

        data = os.path.join(work, "backend")
        port = free_port()
        backend = subprocess.Popen(
            [sys.executable, "-c", "import sys; from gpufl.backend.cli import main; sys.exit(main())"],
            env={
                **os.environ,
                "GPUFL_HOST": "127.0.0.1",
                "GPUFL_PORT": str(port),
                "GPUFL_DATA_DIR": data,
                "GPUFL_ADMIN_TOKEN": TOKEN,
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(port, backend)
        url = f"http://127.0.0.1:{port}/api/v1/events/"
        print("\ndelivery to the backend (DuckDB, http, --compression=none), archiving off / on, alternating")
        print("(every run re-sends the same records: the first stores them, later ones are de-duplicated)")
        print("| round | archiving | to delivered s | events/s delivered | to exit s | agent CPU s |")
        print("|---|---|---:|---:|---:|---:|")
        for r in range(a.rounds + 1):
            for on in (False, True):
                cursor = os.path.join(work, f"cursor-deliv-{r}-{on}")
                extra = [*arch, f"--archiver-bucket={new_bucket(s3)}"] if on else []
                deliv, total, cpu = run_agent(
                    [
                        f"--folder={folder}",
                        "--type=http",
                        f"--url={url}",
                        "--compression=none",
                        f"--cursor-file={cursor}",
                        *extra,
                    ],
                    s3,
                )
                print(
                    f"| {r + 1} | {'on' if on else 'off'} | {deliv:.1f} | {a.events / deliv:,.0f} | "
                    f"{total:.1f} | {cpu:.1f} |"
                )
    finally:
        if backend is not None:
            backend.terminate()
            backend.wait()
        if rgw is not None:
            subprocess.run(["bash", os.path.join(ROOT, "scripts", "radosgw.sh"), "stop", rgw])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
