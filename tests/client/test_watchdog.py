"""The watchdog over gpufl's own threads (#15): a stuck step disables gpufl, the program goes on."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from gpufl.client.watchdog import Watchdog
from gpufl.contract import events


def test_a_step_busy_past_the_bound_is_reported_once() -> None:
    fired: list[tuple[str, float]] = []
    dog = Watchdog(0.2, lambda name, s: fired.append((name, s)), period_s=0.02)
    dog.start()
    with dog.busy("quick"):
        time.sleep(0.05)
    time.sleep(0.3)
    assert fired == []  # short steps never fire
    release = threading.Event()

    def stuck() -> None:
        with dog.busy("stuck writer"):
            release.wait(5)

    t = threading.Thread(target=stuck)
    t.start()
    time.sleep(0.6)
    release.set()
    t.join()
    dog.stop()
    assert len(fired) == 1 and fired[0][0] == "stuck writer" and fired[0][1] > 0.2


def test_a_probe_reports_busy_time_of_a_thread_it_cannot_mark() -> None:
    fired: list[str] = []
    dog = Watchdog(0.1, lambda name, s: fired.append(name), period_s=0.02)
    dog.watch("device writer", lambda: 5.0)
    dog.start()
    time.sleep(0.2)
    dog.stop()
    assert fired == ["device writer"]


PROGRAM = """
import time, gpufl
from gpufl.client.engines import system
real = system.HostProbe.sample
calls = [0]
def sample(self):
    calls[0] += 1
    if calls[0] == 3:
        time.sleep(60)  # a snapshot that never comes back (NVML behind a wedged driver)
    return real(self)
system.HostProbe.sample = sample
gpufl.init(app_name="stuck", log_dir=LOG, engines="system", system_interval_s=0.05, watchdog_s=0.5)
t0 = time.monotonic()
n = 0
while time.monotonic() - t0 < 2.0:
    with gpufl.scope("work"):
        n += 1
t1 = time.monotonic()
gpufl.shutdown()
print("LOOPS", n, "SHUTDOWN_S", round(time.monotonic() - t1, 3), flush=True)
"""


def test_a_stuck_sampler_disables_gpufl_and_the_program_goes_on(tmp_path: Path) -> None:
    code = f"LOG = {str(tmp_path)!r}\n" + textwrap.dedent(PROGRAM)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 20  # not the 60 s the stuck snapshot would take
    said = [ln for ln in proc.stderr.splitlines() if "disables itself" in ln]
    assert len(said) == 1 and "NVML sampler" in said[0], proc.stderr
    shutdown_s = float(proc.stdout.split("SHUTDOWN_S")[1])
    assert shutdown_s < 1.0, proc.stdout  # never waits on the stuck thread
    device = [
        events.decode(ln)
        for p in sorted(tmp_path.glob("*.device.*.log"))
        for ln in p.read_bytes().splitlines()
    ]
    assert [r.code for r in device if isinstance(r, events.Notice) and r.code == "watchdog"] == ["watchdog"]
    for stream in ("device", "scope", "system"):  # the streams that are not stuck still end properly
        recs = [
            events.decode(ln)
            for p in tmp_path.glob(f"*.{stream}.*.log")
            for ln in p.read_bytes().splitlines()
        ]
        assert isinstance(recs[-1], events.SessionEnd), (stream, recs[-1])
