"""A watchdog over gpufl's own threads that could block the program.

gpufl's background threads (stream writers, the native writer's flush thread, the NVML sampler, the NVTX
drain) each do bounded work between waits: a write to the log folder, one NVML snapshot. If one of those
steps does not come back — a full or hung network file system, NVML behind a wedged driver — the thread
keeps whatever it holds (the GIL between bytecodes, the native writer's lock, NVML's driver lock) and the
program could stall behind it. Each thread marks its step as busy; the watchdog, a daemon thread that
itself holds nothing, checks every ``period_s`` and, when a step has been busy for longer than
``stall_s``, reports it once (``on_stall``): the session then disables itself, so nothing more waits on
the stuck thread, and the program goes on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Probe = Callable[[], float]
"""Seconds the watched thread has been busy in its current step (0 when idle)."""


class Watchdog:
    def __init__(self, stall_s: float, on_stall: Callable[[str, float], None], period_s: float | None = None):
        self.stall_s = stall_s
        self._on_stall = on_stall
        self._period = period_s if period_s is not None else max(0.05, min(1.0, stall_s / 4))
        self._since: dict[str, float] = {}  # name -> monotonic start of the busy step (GIL-atomic dict ops)
        self._probes: dict[str, Probe] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fired: tuple[str, float] | None = None

    @contextmanager
    def busy(self, name: str) -> Iterator[None]:
        """Mark one bounded step of a gpufl thread (cheap: two dict operations)."""
        self._since[name] = time.monotonic()
        try:
            yield
        finally:
            self._since.pop(name, None)

    def watch(self, name: str, probe: Probe) -> None:
        """Watch a thread that reports its busy time itself (the native writer's flush thread)."""
        self._probes[name] = probe

    def start(self) -> None:
        if self.stall_s <= 0:  # 0 turns the watchdog off
            return
        self._thread = threading.Thread(target=self._run, name="gpufl-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2)

    def check(self) -> tuple[str, float] | None:
        """The longest-busy step over the bound, if any."""
        now = time.monotonic()
        worst: tuple[str, float] | None = None
        for name, since in list(self._since.items()):
            age = now - since
            if age > self.stall_s and (worst is None or age > worst[1]):
                worst = (name, age)
        for name, probe in list(self._probes.items()):
            try:
                age = probe()
            except Exception:
                continue
            if age > self.stall_s and (worst is None or age > worst[1]):
                worst = (name, age)
        return worst

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            stalled = self.check()
            if stalled is not None:
                self.fired = stalled
                try:
                    self._on_stall(*stalled)
                except Exception:  # never raise in a daemon thread of the user's process
                    pass
                return  # once: the session is disabled now
