"""``gpufl run [options] -- python train.py args…``: profile an unmodified Python program.

gpufl is initialised before user code through a ``sitecustomize`` placed first on PYTHONPATH; options
become ``GPUFL_*`` environment variables, so child Python processes are profiled too (each its own
session). The program's exit code is returned; signals reach it. ``--agent`` ships the logs while it runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

INJECT_DIR = Path(__file__).resolve().parent / "_inject"


def build_env(args: argparse.Namespace, base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env["GPUFL_RUN_ACTIVE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(INJECT_DIR), base.get("PYTHONPATH", "")) if p)
    env["GPUFL_LOG_DIR"] = args.log_dir
    for opt, var in (
        ("app_name", "GPUFL_APP_NAME"),
        ("engines", "GPUFL_ENGINES"),
        ("system_interval", "GPUFL_SYSTEM_INTERVAL"),
        ("job_id", "GPUFL_JOB_ID"),
    ):
        value = getattr(args, opt)
        if value is not None:
            env[var] = str(value)
    if args.stacks:
        env["GPUFL_STACKS"] = "1"
    return env


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="gpufl run", description="profile an unmodified program")
    ap.add_argument("--log-dir", default=os.environ.get("GPUFL_LOG_DIR", "./gpufl-logs"))
    ap.add_argument("--app-name")
    ap.add_argument("--engines", help="comma-separated: tracing,system")
    ap.add_argument("--system-interval", type=float)
    ap.add_argument("--job-id")
    ap.add_argument("--stacks", action="store_true", help="record the Python call stack of every launch")
    ap.add_argument(
        "--agent", action="store_true", help="run gpufl-agent alongside (needs --url and --token)"
    )
    ap.add_argument("--url", help="agent: backend ingest URL, e.g. http://host:8080/api/v1/events/")
    ap.add_argument("--token", help="agent: ingest token")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        ap.error("nothing to run: gpufl run [options] -- python train.py …")
    if args.agent and not (args.url and args.token):
        ap.error("--agent needs --url and --token")
    Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    env = build_env(args, dict(os.environ))
    agent = None
    agent_cmd = [
        str(Path(sys.executable).parent / "gpufl-agent"),
        "--folder",
        args.log_dir,
        "--type",
        "http",
        "--url",
        args.url or "",
        "--token",
        args.token or "",
    ]
    if args.agent:
        agent = subprocess.Popen(agent_cmd)
    try:
        proc = subprocess.Popen(cmd, env=env)
    except FileNotFoundError:
        print(f"gpufl run: command not found: {cmd[0]}", file=sys.stderr)
        return 127
    # Forward the signals a user or scheduler sends; the child decides how to end.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: proc.send_signal(s))
    rc = proc.wait()
    if agent is not None:
        agent.terminate()
        agent.wait(30)
        # A last pass from the saved cursor ships what remains, then exits.
        subprocess.run([*agent_cmd, "--exit-when-idle"])
    # Exit like the child: a negative code means it died by a signal.
    return rc if rc >= 0 else 128 - rc
