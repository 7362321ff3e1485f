"""Signals that land while gpufl's Python code runs inside a CUPTI callback (the cupti-python record path's
launch callback runs inside the user's CUDA call, main thread or not): a handler that raises or shuts
down there would corrupt that call. The engine says when it is inside (``Engine.in_callback``); the
signal is then delivered again a moment later."""

from __future__ import annotations

import _thread
import threading


def redeliver_signal(signum: int) -> None:
    """A signal reached Python inside the launch callback: raising there leaves the user's CUDA call
    with an exception set (torch: SystemError, and the program exits 1 instead of by the signal). Deliver
    it again a moment later from another thread; it then lands in the program's own code, as it would
    without gpufl (the callback is a tiny part of the thread's time; if it lands there again, again)."""
    threading.Timer(0.002, _thread.interrupt_main, (signum,)).start()
