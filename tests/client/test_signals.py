"""Signals that land inside gpufl's cupti-python launch callback (#15): Python code CUPTI runs inside the
user's CUDA call. Raising there raises into CUPTI, which swallowed it (on the H100, Ctrl-C hung the program
in 4 of 5 runs); shutting down there flushes CUPTI from inside its own callback. gpufl.client.signals
defers the handler to the moment the CUDA call returns to the program. Driven here without a GPU: a C
function (``sorted``) calls the callback as CUPTI would, and the signal is raised from inside it."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

PRELUDE = """
import functools, os, signal, sys, time
import gpufl
from gpufl.client.engines.tracing import TracingEngine

eng = TracingEngine()

class Data:  # what CUPTI passes; the signal arrives while the callback reads it
    callback_site = 0
    @property
    def correlation_id(self):
        SIGNAL()
        return 7

def cuda_call():
    # a C function calling the callback, as CUPTI does from inside cudaLaunchKernel
    sorted([Data()], key=functools.partial(eng._api_callback, None, None, None))
    print("CALL_RETURNED", flush=True)
"""


def _run(body: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PRELUDE) + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp,
    )


def test_ctrl_c_inside_the_callback_surfaces_when_the_cuda_call_returns(tmp_path: Path) -> None:
    """Through gpufl's SIGINT handler: the callback finishes (the CUDA call goes on), and KeyboardInterrupt
    is raised in the program's code right after the call, uncaught it ends the program by the signal."""
    proc = _run(
        f"""
        gpufl.init(app_name="sig", log_dir={str(tmp_path / "logs")!r}, engines=[])
        SIGNAL = lambda: signal.raise_signal(signal.SIGINT)
        try:
            cuda_call()
        except KeyboardInterrupt:
            print("INTERRUPT_AFTER_THE_CALL", flush=True)
            raise
        """,
        tmp_path,
    )
    assert "INTERRUPT_AFTER_THE_CALL" in proc.stdout and "CALL_RETURNED" not in proc.stdout, (
        proc.stdout + proc.stderr
    )
    assert proc.returncode == -signal.SIGINT, proc.stderr  # as without gpufl


def test_keyboard_interrupt_escaping_into_the_callback_is_deferred_too(tmp_path: Path) -> None:
    """Without gpufl's handler (the program replaced it after init), KeyboardInterrupt raised inside the
    callback is caught there and raised again after the call, not lost in CUPTI."""
    proc = _run(
        """
        def raise_ki():
            raise KeyboardInterrupt
        SIGNAL = raise_ki
        try:
            cuda_call()
        except KeyboardInterrupt:
            print("INTERRUPT_AFTER_THE_CALL", flush=True)
        print("PROFILE_RESTORED", sys.getprofile() is None, flush=True)
        """,
        tmp_path,
    )
    assert "INTERRUPT_AFTER_THE_CALL" in proc.stdout and "CALL_RETURNED" not in proc.stdout, (
        proc.stdout + proc.stderr
    )
    assert "PROFILE_RESTORED True" in proc.stdout


def test_sigterm_inside_the_callback_ends_the_session_after_the_call(tmp_path: Path) -> None:
    """SIGTERM's shutdown (flush, session_end) runs outside the callback, then the program dies by it."""
    logs = tmp_path / "logs"
    proc = _run(
        f"""
        gpufl.init(app_name="sig", log_dir={str(logs)!r}, engines=[])
        SIGNAL = lambda: os.kill(os.getpid(), signal.SIGTERM)
        cuda_call()
        print("NOT_REACHED", flush=True)
        """,
        tmp_path,
    )
    assert proc.returncode == -signal.SIGTERM, proc.stdout + proc.stderr
    assert "NOT_REACHED" not in proc.stdout and "CALL_RETURNED" not in proc.stdout
    ends = [p.read_text().splitlines()[-1] for p in logs.glob("*.scope.*.log")]
    assert ends and all('"type":"session_end"' in e and '"reason":"signal"' in e for e in ends), ends


def test_a_program_that_ignores_sigint_still_ignores_it(tmp_path: Path) -> None:
    proc = _run(
        f"""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        gpufl.init(app_name="sig", log_dir={str(tmp_path / "logs")!r}, engines=[])
        SIGNAL = lambda: os.kill(os.getpid(), signal.SIGINT)
        cuda_call()
        time.sleep(0.05)
        print("STILL_HERE", flush=True)
        """,
        tmp_path,
    )
    assert proc.returncode == 0 and "CALL_RETURNED" in proc.stdout and "STILL_HERE" in proc.stdout, (
        proc.stderr
    )
