"""A real client session for the remote-capture tests, in its own process: on-demand capture in FOLDER, app
APP; it runs until STOPFILE exists. No GPU here, so CUPTI's side is a stand-in, the only one:

- with the native record path built (``gpufl.client._native``, libcupti loadable): the real native tracing
  engine and C writer, but CUPTI's start and stop are skipped and its buffer delivery is played by a thread
  that, each time a window switches the module's CUPTI state on, replays the next recorded H100 activity
  buffer (tests/fixtures/native_gpt) through the module's parser, its kernels placed at that moment (the
  stand-in's clock offset); the session's device stream then holds those kernels inside the window;
- without it, a tracing engine that is switched and records nothing.

Each switch is printed with its time (``switch on <ns>``), so a test can time request → tracing on.
Extra arguments: ``remote=0`` (GPUFL_REMOTE_CAPTURE off); ``capture=continuous`` (the default mode of
gpufl.init: tracing on throughout) with ``deep=1`` (it also runs the real deep engine for PC sampling, which
without a GPU cannot set up: a request for it is refused so)."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import gpufl
from gpufl.client import session as session_module

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "native_gpt"
FIRST_NS = 1795609059282891344
"""The first kernel start in the fixture's buffers at offset 0 (the recording's clock)."""


class TracingStandIn:
    name = "tracing"

    def set_capture(self, on: bool) -> None:
        print(f"switch {'on' if on else 'off'} {time.time_ns()}", flush=True)


def _replaying_engine() -> Any:
    """The native tracing engine with CUPTI's part played from recorded buffers, or None (not built)."""
    from gpufl.client.engines import EngineUnavailable
    from gpufl.client.engines.native_tracing import NativeTracingEngine, load_native

    native, _reason = load_native(True)
    if native is None:
        return None
    buffers = []
    for buf in sorted(FIXTURE.glob("buffer-*.bin")):
        names = {}
        for line in buf.with_suffix(".names").read_bytes().splitlines():
            ptr, name = line.split(b"\t", 1)
            names[int(ptr, 16)] = name
        buffers.append((buf.read_bytes(), names))

    class ReplayingTracing(NativeTracingEngine):  # type: ignore[misc]
        def prepare(self, session: Any) -> dict[str, Any]:
            self.session, self.native, self.offset_ns, self._limits = session, native, 0, []
            if not buffers:
                raise EngineUnavailable("native_unavailable", "no recorded buffers")
            return {}

        def _start_native(self) -> int:  # CUPTI's start: the delivery thread instead
            self._cupti_stop = threading.Event()
            self._cupti = threading.Thread(target=self._deliver, daemon=True)
            self._cupti.start()
            return 1

        def _deliver(self) -> None:
            delivered, i = False, 0
            while not self._cupti_stop.wait(0.01):
                on = native.capture_state()[0]
                if on and not delivered:  # what CUPTI records while its activity kinds are on
                    data, names = buffers[i % len(buffers)]
                    i += 1
                    native.detach()
                    native.attach(self.writer.native, [], time.time_ns() - FIRST_NS, False)
                    native.replay_buffer(data, names)
                delivered = on

        def set_capture(self, on: bool) -> None:
            super().set_capture(on)
            print(f"switch {'on' if on else 'off'} {time.time_ns()}", flush=True)

        def stop(self) -> dict[str, Any]:  # CUPTI's flush and finalize: nothing to do
            self._cupti_stop.set()
            self._cupti.join(5)
            self._release()
            return {}

    return ReplayingTracing


def main() -> None:
    folder, app, stopfile, *extra = sys.argv[1:]
    opts = dict(e.split("=", 1) for e in extra)
    replaying = _replaying_engine()
    if replaying is not None:
        real_create = session_module.create
        session_module.create = lambda name, o: replaying() if name == "tracing" else real_create(name, o)
    engines = "tracing,system" if replaying else "system"
    session = gpufl.init(
        app_name=app, log_dir=folder, capture=opts.get("capture", "on-demand"),
        engines=engines + (",pc_sampling" if opts.get("deep") == "1" else ""),
        remote_capture=opts.get("remote", "1") == "1",
    )  # fmt: skip
    assert session is not None and session.capture is not None
    if replaying is None:
        session.capture.engines.append(TracingStandIn())
    print(f"session {session.session_id} {'replaying' if replaying else 'switch-only'}", flush=True)
    try:
        while not os.path.exists(stopfile):
            time.sleep(0.05)
    finally:
        gpufl.shutdown()


if __name__ == "__main__":
    main()
