"""Signals that arrive while gpufl's own Python runs inside the user's CUDA call (#15).

On the cupti-python record path CUPTI calls gpufl's launch callback, Python code, from inside every CUDA
launch. Python runs signal handlers at the next bytecode boundary of the main thread, and while the program
is in a CUDA call (most of a launch-bound loop) that boundary is the callback's first instruction. A handler
that raises there (Ctrl-C's KeyboardInterrupt) raises into CUPTI, which swallows it: the signal was lost
and the program ran on (seen on the H100: SIGINT hung the program in 4 of 5 runs). A handler that shuts
gpufl down there would flush and finalize CUPTI from inside CUPTI's own callback.

So gpufl's handlers first look at where the signal landed. Inside a registered callback, the signal is
deferred: a one-shot profile hook (``sys.setprofile``) runs the handler at the first event outside the
callback, which is the return of the user's CUDA call into the user's code, exactly where the signal
would have surfaced without gpufl. Elsewhere the handler runs at once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

Handler = Callable[[int, FrameType | None], Any]

_callback_codes: set[CodeType] = set()
_MAX_DEPTH = 32  # the callback and what it calls (scope lookup, stack walk) stay well under this


def register_callback(fn: Callable[..., Any]) -> None:
    """Mark a function that CUPTI calls from inside the user's CUDA calls."""
    code = getattr(fn, "__code__", None) or getattr(getattr(fn, "__func__", None), "__code__", None)
    if code is not None:
        _callback_codes.add(code)


def inside_callback(frame: FrameType | None) -> bool:
    """True if ``frame`` (where a signal landed) is a registered callback or something it called."""
    depth = 0
    while frame is not None and depth < _MAX_DEPTH:
        if frame.f_code in _callback_codes:
            return True
        frame = frame.f_back
        depth += 1
    return False


def defer(handler: Handler, signum: int) -> None:
    """Run ``handler(signum, frame)`` at the first profile event outside the callbacks, on this thread
    (the main thread: Python runs signal handlers there). Whatever profiler was set is put back first, and
    what the handler raises surfaces in the user's code."""
    previous = sys.getprofile()

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        if inside_callback(frame):
            return
        sys.setprofile(previous)
        handler(signum, frame)

    sys.setprofile(hook)


def raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
