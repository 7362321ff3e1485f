"""``gpufl run [options] -- python train.py args…`` (or ``-- ./app``): profile an unmodified program.

Python programs: gpufl is initialised before user code through a ``sitecustomize`` placed first on
PYTHONPATH; options become ``GPUFL_*`` environment variables, so child Python processes are profiled too
(each its own session). Other executables (C++ CUDA programs): CUDA loads the native record path into them
through ``CUDA_INJECTION64_PATH``; this process writes the session's system and scope streams. The
program's exit code is returned; signals reach it. ``--agent`` ships the logs while it runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec

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
    if capture_mode(args) is not None:
        env["GPUFL_CAPTURE"] = capture_mode(args)  # type: ignore[assignment]
    return env


def capture_mode(args: argparse.Namespace) -> str | None:
    """``--always-on`` is the windows preset (2 s of every minute); ``--capture`` any mode."""
    from gpufl.client.capture import WINDOWS_PRESET, parse

    if getattr(args, "always_on", False):
        return WINDOWS_PRESET
    text = getattr(args, "capture", None)
    return parse(text).text if text else None


def is_python_program(cmd: list[str]) -> bool:
    """Python programs get gpufl through sitecustomize; other executables through CUDA's injection."""
    path = shutil.which(cmd[0]) or cmd[0]
    if os.path.basename(path).startswith("python"):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return True  # let Popen report it
    if head.startswith(b"\x7fELF"):
        return False
    return head.startswith(b"#!") and b"python" in head.split(b"\n", 1)[0]


def python_interpreter(cmd: list[str]) -> str | None:
    """The interpreter that will run a Python program: the command itself (``python3 train.py``) or a
    script's ``#!`` line (``#!/usr/bin/env python3``); None when it can't be told."""
    path = shutil.which(cmd[0]) or cmd[0]
    if os.path.basename(path).startswith("python"):
        return path
    try:
        with open(path, "rb") as f:
            first = f.readline(256).decode(errors="replace")
    except OSError:
        return None
    words = first[2:].split() if first.startswith("#!") else []
    if words and os.path.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-")]
        return shutil.which(words[0]) if words else None
    return words[0] if words else None


def cannot_import_gpufl(interpreter: str, env: dict[str, str]) -> str | None:
    """Why ``interpreter`` can't import gpufl in ``env`` (its last stderr line), or None when it can or when
    it can't be started (Popen then reports that). Such a child would run unprofiled: issue #25 saw
    ``gpufl run -- python train.py`` outside the venv profile nothing and exit 0."""
    try:
        r = subprocess.run(
            [interpreter, "-c", "import gpufl"], env=env, capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode == 0:
        return None
    return (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]


def native_env(args: argparse.Namespace, cmd: list[str], base: dict[str, str]) -> tuple[Any, dict[str, str]]:
    """The session of a non-Python program: this process writes its scope and system streams (NVML), the
    injection library inside the program writes the device stream under the same session id."""
    from gpufl._version import __version__
    from gpufl.client.config import Options
    from gpufl.client.engines.native_tracing import injection_library, libcupti_candidates
    from gpufl.client.session import Session
    from gpufl.client.writer import _split_segment_path
    from gpufl.contract import events

    lib = injection_library()
    if lib is None:
        raise RuntimeError("the native injection library (gpufl.client._cuda_inject) is not built")
    opts = Options.resolve(
        app_name=args.app_name or os.path.basename(cmd[0]),
        log_dir=args.log_dir,
        engines="system",
        **({"system_interval_s": args.system_interval} if args.system_interval else {}),
        **({"job_id": args.job_id} if args.job_id else {}),
        **({"capture": capture_mode(args)} if capture_mode(args) else {}),
    )
    session = Session(opts, device_stream=False)
    start = events.SessionStart(
        session_id=session.session_id,
        stream="device",
        app=opts.app_name,
        host=session.host,
        pid=0,  # the program's, filled in by the injection library
        argv=list(cmd),
        start_ns=session.start_ns,
        gpufl_version=__version__,
        schema_version=events.SCHEMA_VERSION,
        job_id=opts.job_id,
        options={**opts.as_record(), "engines": ["tracing"]},
    )
    start.seq = -1  # omitted: the writer gives it
    prefix, suffix = _split_segment_path(session.files, "device")
    env = dict(base)
    env.update(
        CUDA_INJECTION64_PATH=lib,
        GPUFL_SESSION_ID=session.session_id,
        GPUFL_INJECT_PREFIX=prefix,
        GPUFL_INJECT_SUFFIX=suffix,
        GPUFL_INJECT_SESSION_START=msgspec.json.encode(start).decode(),
        # the injection library runs the windows (native/capture_modes.c) and reads the control file in the
        # log folder, by an absolute path: the program may change its directory
        GPUFL_CAPTURE=opts.capture,
        GPUFL_CAPTURE_SECONDS=str(opts.capture_seconds),
        GPUFL_LOG_DIR=os.path.abspath(opts.log_dir),
        GPUFL_INJECT_OPTS=f"{opts.segment_max_bytes}:{opts.segment_max_age_s}:{opts.flush_interval_s}:{opts.cupti_buffer_bytes}",
    )
    for path in libcupti_candidates():
        if os.path.exists(path):
            env.setdefault("GPUFL_LIBCUPTI", path)
            break
    return session, env


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="gpufl run", description="profile an unmodified program")
    ap.add_argument(
        "--log-dir",
        default=os.environ.get("GPUFL_LOG_DIR", "./gpufl-logs"),
        help="where the logs go (env GPUFL_LOG_DIR; default: %(default)s)",
    )
    ap.add_argument(
        "--app-name", help="the session's app name (env GPUFL_APP_NAME; default: the program's name)"
    )
    ap.add_argument("--engines", help="comma-separated: tracing,system (default: both)")
    ap.add_argument("--system-interval", type=float, help="seconds between system samples (default: 1)")
    ap.add_argument("--job-id", help="a batch job id to tag the session with (default: none)")
    ap.add_argument("--stacks", action="store_true", help="record the Python call stack of every launch")
    ap.add_argument(
        "--capture",
        help="when kernels are traced (env GPUFL_CAPTURE): continuous (default), windows[:ON/PERIOD], on-demand,"
        " steps:FIRST-LAST (docs/capture-modes.md)",
    )
    ap.add_argument(
        "--always-on",
        action="store_true",
        help="the production preset: --capture windows:2s/60s (system sampling throughout)",
    )
    ap.add_argument(
        "--agent",
        action="store_true",
        help="run gpufl-agent alongside (needs --url and an ingest token: GPUFL_AGENT_TOKEN or --token-file)",
    )
    ap.add_argument("--url", help="agent: backend ingest URL, e.g. http://host:8080/api/v1/events/")
    ap.add_argument("--token-file", help="agent: file holding the ingest token")
    ap.add_argument(
        "--token", help="agent: ingest token (visible to every local user in ps: prefer GPUFL_AGENT_TOKEN)"
    )
    ap.add_argument(
        "--allow-unprofiled",
        action="store_true",
        help="run a Python program even when its interpreter cannot import gpufl (it is then not profiled)",
    )
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.always_on and args.capture:
        ap.error("--always-on is --capture windows:2s/60s: give one of them")
    try:
        capture_mode(args)
    except ValueError as e:
        ap.error(str(e))
    if not cmd:
        ap.error("nothing to run: gpufl run [options] -- python train.py …")
    if args.token is not None:
        print(
            "gpufl run: warning: --token puts the token on the command line, where any local user can read"
            " it (ps): use GPUFL_AGENT_TOKEN or --token-file",
            file=sys.stderr,
        )
    has_token = args.token or args.token_file or os.environ.get("GPUFL_AGENT_TOKEN")
    if args.agent and not (args.url and has_token):
        ap.error("--agent needs --url and an ingest token (GPUFL_AGENT_TOKEN, --token-file or --token)")
    Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    session = None
    if is_python_program(cmd):
        # Asked in the environment the program gets, less our sitecustomize (which would start a session).
        interpreter = python_interpreter(cmd)
        why = cannot_import_gpufl(interpreter, dict(os.environ)) if interpreter else None
        if why is not None:
            print(
                f"gpufl run: {interpreter} cannot import gpufl ({why}), so {cmd[0]} would run unprofiled."
                f" gpufl runs under {sys.executable}: run `gpufl run -- {sys.executable} ...`, install gpufl"
                " for that interpreter, or pass --allow-unprofiled",
                file=sys.stderr,
            )
            if not args.allow_unprofiled:
                return 2
        env = build_env(args, dict(os.environ))
    else:
        try:
            session, env = native_env(args, cmd, dict(os.environ))
        except Exception as e:  # profiling must never stop the program from running
            print(f"gpufl run: not profiling {cmd[0]}: {e}", file=sys.stderr)
            env = dict(os.environ)
    agent = None
    # The token reaches the agent through its environment or a file name, never its arguments (which any
    # local user can read with ps); the profiled program's environment does not get it.
    agent_cmd = [
        str(Path(sys.executable).parent / "gpufl-agent"),
        "--folder",
        args.log_dir,
        "--type",
        "http",
        "--url",
        args.url or "",
        *(["--token-file", args.token_file] if args.token_file and not args.token else []),
    ]
    agent_env = dict(os.environ)
    if args.token:
        agent_env["GPUFL_AGENT_TOKEN"] = args.token
    elif args.token_file:
        agent_env.pop("GPUFL_AGENT_TOKEN", None)  # the file was asked for: it wins
    if args.agent:
        agent = subprocess.Popen(agent_cmd, env=agent_env)
    if session is not None:
        session.start()
    try:
        proc = subprocess.Popen(cmd, env=env)
    except FileNotFoundError:
        print(f"gpufl run: command not found: {cmd[0]}", file=sys.stderr)
        if session is not None:
            session.shutdown()
        return 127
    # Forward the signals a user or scheduler sends; the child decides how to end.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: proc.send_signal(s))
    rc = proc.wait()
    if session is not None:
        session.shutdown()
    if agent is not None:
        agent.terminate()
        agent.wait(30)
        # A last pass from the saved cursor ships what remains, then exits.
        subprocess.run([*agent_cmd, "--exit-when-idle"], env=agent_env)
    # Exit like the child: a negative code means it died by a signal.
    return rc if rc >= 0 else 128 - rc
