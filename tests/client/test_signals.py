"""Signals that land inside gpufl's cupti-python launch callback (#15): Python code CUPTI runs inside the
user's CUDA call. Raising there corrupts the call (torch: SystemError, exit 1), so the signal is delivered
again outside it. Driven here without a GPU by calling the callback as CUPTI does."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

PROGRAM = """
import time
from gpufl.client.engines.tracing import TracingEngine

class Data:  # what CUPTI passes; Ctrl-C arrives while the callback reads it
    callback_site = 0
    @property
    def correlation_id(self):
        raise KeyboardInterrupt

eng = TracingEngine()
eng._api_callback(None, None, None, Data())  # must return normally: the CUDA call goes on
print("CALLBACK_RETURNED", flush=True)
try:
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5:
        time.sleep(0.001)
    print("NO_INTERRUPT", flush=True)
except KeyboardInterrupt:
    print("INTERRUPT_IN_USER_CODE", flush=True)
    raise
"""


def test_ctrl_c_inside_the_launch_callback_reaches_the_programs_own_code() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROGRAM)], capture_output=True, text=True, timeout=60
    )
    assert "CALLBACK_RETURNED" in proc.stdout and "INTERRUPT_IN_USER_CODE" in proc.stdout, (
        proc.stdout + proc.stderr
    )
    assert proc.returncode == -signal.SIGINT  # uncaught, it ends the program by the signal, as without gpufl
