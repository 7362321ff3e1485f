"""A real client session for the remote-capture tests, in its own process: on-demand capture in FOLDER, app
APP; it runs until STOPFILE exists. No GPU here: the tracing engine's side of a window is played by a
stand-in at the CUPTI boundary that is switched and records nothing, and that prints each switch with its
time (``switch on <ns>``), so a test can time request → tracing on. Extra arguments: ``remote=0``."""

from __future__ import annotations

import os
import sys
import time

import gpufl


class TracingStandIn:
    name = "tracing"

    def set_capture(self, on: bool) -> None:
        print(f"switch {'on' if on else 'off'} {time.time_ns()}", flush=True)


def main() -> None:
    folder, app, stopfile, *extra = sys.argv[1:]
    opts = dict(e.split("=", 1) for e in extra)
    session = gpufl.init(
        app_name=app, log_dir=folder, engines="system", capture="on-demand",
        remote_capture=opts.get("remote", "1") == "1",
    )  # fmt: skip
    assert session is not None and session.capture is not None
    session.capture.engines.append(TracingStandIn())
    print(f"session {session.session_id}", flush=True)
    try:
        while not os.path.exists(stopfile):
            time.sleep(0.05)
    finally:
        gpufl.shutdown()


if __name__ == "__main__":
    main()
