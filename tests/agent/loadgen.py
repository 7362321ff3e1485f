"""A client process that writes segments with the project's real writer (gpufl.init, no engines), at a
given rate, rotating often. Run as a script: ``python loadgen.py FOLDER EVENTS RATE SEGMENT_BYTES``.
Prints the session id. 80% of the events go to the device stream, 15% to scope, 5% to system."""

from __future__ import annotations

import sys
import time

import gpufl
from gpufl.contract import events as ev


def main() -> None:
    folder, total, rate, seg_bytes = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    session = gpufl.init(
        app_name="load", log_dir=folder, engines=(), segment_max_bytes=seg_bytes, queue_size=1 << 20
    )
    assert session is not None
    print(session.session_id, flush=True)
    sid = session.session_id
    t0 = time.monotonic()
    chunk = 1000
    for i in range(0, total, chunk):
        for j in range(i, min(total, i + chunk)):
            t = time.time_ns()
            k = j % 20
            if k < 16:
                session.emit(
                    "device",
                    ev.Kernel(
                        session_id=sid,
                        stream="device",
                        launch_id=1,
                        device_id=0,
                        stream_id=7,
                        corr_id=j,
                        start_ns=t,
                        end_ns=t + 100,
                        thread_id=1,
                    ),
                )
            elif k < 19:
                session.emit(
                    "scope",
                    ev.ScopeBegin(
                        session_id=sid, stream="scope", inst=j, path_id=1, depth=0, ts_ns=t, thread_id=1
                    ),
                )
            else:
                session.emit("system", ev.SystemSample(session_id=sid, stream="system", ts_ns=t))
        ahead = (i + chunk) / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
    gpufl.shutdown()


if __name__ == "__main__":
    main()
