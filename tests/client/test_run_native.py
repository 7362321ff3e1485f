"""`gpufl run -- ./app` for programs that are not Python: which path a command takes, and the session
plumbing between `gpufl run` (scope + system streams) and the CUDA injection library (device stream),
exercised here by calling the library's InitializeInjection the way CUDA does (no GPU: the library still
writes its session_start/session_end; kernels are checked on the H100 in tests/gpu)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpufl.client.engines.native_tracing import injection_library
from gpufl.client.run import is_python_program, native_env
from gpufl.contract import events

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def test_python_programs_take_the_sitecustomize_path(tmp_path: Path) -> None:
    assert is_python_program([sys.executable, "train.py"])
    assert is_python_program(["python3", "-m", "x"])
    script = tmp_path / "tool"
    script.write_text("#!/usr/bin/env python3\nprint(1)\n")
    assert is_python_program([str(script)])
    shell = tmp_path / "job.sh"
    shell.write_text("#!/bin/sh\n./app\n")
    assert not is_python_program([str(shell)])
    assert not is_python_program(["/bin/true"])  # an ELF executable: CUDA injection


def test_injected_program_writes_the_device_stream_of_the_parents_session(tmp_path: Path) -> None:
    if injection_library() is None:
        if IN_CI:
            pytest.fail("gpufl.client._cuda_inject is not built")
        pytest.skip("gpufl.client._cuda_inject is not built here")
    log_dir = tmp_path / "logs"
    args = argparse.Namespace(app_name="app", log_dir=str(log_dir), system_interval=0.2, job_id="j1")
    session, env = native_env(args, ["./app", "--n", "3"], dict(os.environ))
    session.start()
    # What CUDA does at cuInit in the program: load CUDA_INJECTION64_PATH and call InitializeInjection.
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ctypes, os; ctypes.CDLL(os.environ['CUDA_INJECTION64_PATH']).InitializeInjection();"
            "print(os.getpid(), flush=True); os.system('echo ${CUDA_INJECTION64_PATH:-unset}')",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    session.shutdown()
    assert child.returncode == 0, child.stderr
    pid, inject_after = child.stdout.split()
    assert inject_after == "unset"  # programs it starts are not injected again

    streams = {}
    for stream in events.STREAMS:
        (seg,) = sorted(log_dir.glob(f"*.{session.session_id}.{stream}.000000.log"))
        streams[stream] = [events.decode(line) for line in seg.read_bytes().splitlines()]
    device = streams["device"]
    start, end = device[0], device[-1]
    assert isinstance(start, events.SessionStart) and isinstance(end, events.SessionEnd)
    assert start.session_id == session.session_id and start.pid == int(pid)
    assert start.argv == ["./app", "--n", "3"] and start.app == "app" and start.job_id == "j1"
    assert start.clock is not None and start.cupti_version and start.cupti_version >= 130000
    assert end.reason == "atexit" and end.records == len(device)
    assert [r.seq for r in device] == list(range(len(device)))
    for stream in ("scope", "system"):
        recs = streams[stream]
        assert isinstance(recs[0], events.SessionStart) and recs[0].session_id == session.session_id
        assert isinstance(recs[-1], events.SessionEnd)
