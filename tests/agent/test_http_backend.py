"""The agent against the project's real backend (started here on loopback, DuckDB store): end-to-end
delivery from the real client writer, the backend down under load (bounded memory, resumes by itself),
and kill -9 of the agent and of the backend while events are written and rotated.

Sizes: CI-sized by default; GPUFL_SOAK=1 runs the full bars (1M events, 60 s outage)."""

from __future__ import annotations

import math
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from .conftest import agent_args, require, run_agent, start_loadgen
from .producer import dead_pid, write_session
from .services import Backend, backend_available, free_port
from .verify import assert_store_holds_all

SOAK = os.environ.get("GPUFL_SOAK") == "1"


@pytest.fixture
def backend(tmp_path: str) -> Iterator[Backend]:
    require("the project's backend (gpufl.backend)", backend_available())
    data = os.path.join(tmp_path, "backend")
    os.mkdir(data)
    b = Backend(data).start()
    yield b
    b.stop()


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"VmRSS:\s+(\d+) kB", f.read())
    assert m is not None
    return int(m.group(1)) / 1024


def _metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_real_writer_to_real_backend(folder: str, backend: Backend) -> None:
    gen = start_loadgen(folder, 30_000, 1e9, 256 * 1024)
    assert gen.wait(timeout=120) == 0
    segments = [n for n in os.listdir(folder) if n.endswith(".log")]
    assert len(segments) > 6  # rotated
    r = run_agent(agent_args(folder, backend.url, backend.token, "--exit-when-idle", "--batch-records=4000"))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    # 30,000 emitted + session_start and session_end on each of the three streams.
    assert assert_store_holds_all(backend.url, backend.token, folder) == 30_000 + 6


def test_backend_down_under_load(folder: str, backend: Backend) -> None:
    down_s = 60.0 if SOAK else 15.0
    rate = 20_000.0
    events = int(rate * (down_s + 12))
    metrics_port = free_port()
    gen = start_loadgen(folder, events, rate, 1 << 20)
    # CI size uses 1 MiB batches: the agent then holds at most ~7 MiB of records (queue + senders + open
    # batches), far less than the ~60 MB backlog of a 15 s outage, so read-ahead without a bound shows.
    # The soak (60 s, ~250 MB backlog) runs with the default 8 MiB batches.
    agent = subprocess.Popen(
        agent_args(
            folder,
            backend.url,
            backend.token,
            f"--metrics-port={metrics_port}",
            "--poll-interval=0.2",
            *([] if SOAK else ["--batch-bytes=1M"]),
        ),
        stderr=subprocess.DEVNULL,
    )
    peak = 0.0
    try:
        time.sleep(3)
        assert _metric(metrics_port, "gpufl_agent_events_total") > 0
        rss_before = _rss_mb(agent.pid)
        backend.stop(signal.SIGKILL)
        t_down = time.monotonic()
        while time.monotonic() - t_down < down_s:
            peak = max(peak, _rss_mb(agent.pid))
            assert agent.poll() is None, "the agent exited while the backend was down"
            time.sleep(0.2)
        retries = _metric(metrics_port, "gpufl_agent_retries_total")
        assert retries > 0
        backlog_mb = _metric(metrics_port, "gpufl_agent_lag_bytes") / 2**20
        outage_peak = peak
        assert backlog_mb > 40, f"the test built only {backlog_mb:.0f} MB of backlog"
        assert outage_peak - rss_before < backlog_mb / 2, (
            f"RSS grew {outage_peak - rss_before:.0f} MB with {backlog_mb:.0f} MB waiting: read-ahead is not bounded"
        )
        backend.start()
        assert gen.wait(timeout=120) == 0
        # Delivery resumes by itself: the running agent catches up with everything written.
        deadline = time.monotonic() + 120
        while _metric(metrics_port, "gpufl_agent_lag_bytes") != 0:  # NaN (unknown) is not 0
            peak = max(peak, _rss_mb(agent.pid))
            assert time.monotonic() < deadline, "the agent did not catch up after the backend came back"
            time.sleep(0.5)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
        gen.kill()
    print(
        f"backend down {down_s:.0f}s, {events} events, {backlog_mb:.0f} MB backlog: "
        f"agent RSS {rss_before:.0f} MB before, {outage_peak:.0f} MB peak while down, {peak:.0f} MB overall"
    )
    assert peak <= 200, f"agent RSS reached {peak:.0f} MB"
    assert assert_store_holds_all(backend.url, backend.token, folder) == events + 6


def _soak_sizes() -> tuple[int, float]:
    # (events, rate): the full bar is 1M events; CI runs 150k at the same rotation pressure.
    return (1_000_000, 40_000.0) if SOAK else (150_000, 25_000.0)


def test_kill_9_agent_while_writing(folder: str, backend: Backend, tmp_path: str) -> None:
    events, rate = _soak_sizes()
    cursor = os.path.join(tmp_path, "cursor")  # outside the log folder, as on a read-only NFS mount
    gen = start_loadgen(folder, events, rate, 512 * 1024)
    rng = random.Random(1234)
    kills = 0
    args = agent_args(folder, backend.url, backend.token, f"--cursor-file={cursor}", "--poll-interval=0.1")
    # Kill at least 3 times even if the writer finishes first (the later kills then hit the catch-up).
    while gen.poll() is None or kills < 3:
        agent = subprocess.Popen(args, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 2.0))
        agent.kill()
        agent.wait()
        kills += 1
    assert gen.returncode == 0
    r = run_agent([*args, "--exit-when-idle"], timeout=600)
    assert r.returncode == 0, r.stderr
    print(f"{events} events, agent killed {kills} times")
    assert kills >= 3
    assert assert_store_holds_all(backend.url, backend.token, folder) == events + 6


def test_kill_9_backend_while_writing(folder: str, backend: Backend) -> None:
    events, rate = _soak_sizes()
    metrics_port = free_port()
    gen = start_loadgen(folder, events, rate, 512 * 1024)
    agent = subprocess.Popen(
        agent_args(
            folder, backend.url, backend.token, f"--metrics-port={metrics_port}", "--poll-interval=0.1"
        ),
        stderr=subprocess.DEVNULL,
    )
    rng = random.Random(99)
    restarts = 0
    try:
        while gen.poll() is None or restarts < 2:
            time.sleep(rng.uniform(0.5, 2.5))
            backend.stop(signal.SIGKILL)
            time.sleep(rng.uniform(0.0, 1.0))
            backend.start()
            restarts += 1
        assert gen.returncode == 0
        deadline = time.monotonic() + 300
        while _metric(metrics_port, "gpufl_agent_lag_bytes") != 0:  # NaN (unknown) is not 0
            assert time.monotonic() < deadline and agent.poll() is None
            time.sleep(0.5)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
    print(f"{events} events, backend killed and restarted {restarts} times")
    assert restarts >= 2
    assert assert_store_holds_all(backend.url, backend.token, folder) == events + 6


def _scrape(port: int) -> dict[str, float] | None:
    """The agent's unlabelled samples, or None while its metrics endpoint does not answer yet."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.TransportError:
        return None
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)  # "NaN" parses too
    return out


def test_lag_is_unknown_not_zero_until_the_first_scan(folder: str, backend: Backend) -> None:
    """Regression: gpufl_agent_lag_bytes read 0 for ~0.4 s after start in front of 363 MB unsent, and 0
    is documented as "everything was shipped". Until its first scan has measured the folder the agent must
    say "unknown" (lag NaN and gpufl_agent_lag_known 0), never 0."""
    # ~45 MB unsent in 8 sessions of many small segments: the first scan and read take a while.
    for i in range(8):
        write_session(folder, f"lag{i}", 12_000, per_segment=1_000, pid=dead_pid())
    unsent = sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))
    assert unsent > 30 << 20
    port = free_port()
    agent = subprocess.Popen(
        agent_args(folder, backend.url, backend.token, f"--metrics-port={port}", "--status-interval=0"),
        stderr=subprocess.PIPE,
        text=True,
    )
    samples: list[dict[str, float]] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            s = _scrape(port)
            if s is None:
                assert agent.poll() is None, agent.communicate()[1]
                continue
            samples.append(s)
            if s.get("gpufl_agent_lag_known") == 1 and len(samples) > 3:
                break
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=60)
    assert agent.returncode == 0, err
    assert samples, "the metrics endpoint never answered"
    lags = [s["gpufl_agent_lag_bytes"] for s in samples]
    assert 0.0 not in lags, f"lag read 0 with {unsent} bytes unsent: {lags[:10]}"
    for s in samples:
        known = s.get("gpufl_agent_lag_known")
        assert known in (0.0, 1.0), s
        if known == 0:
            assert math.isnan(s["gpufl_agent_lag_bytes"]) and math.isnan(s["gpufl_agent_lag_seconds"])
        else:
            assert s["gpufl_agent_lag_bytes"] > 0  # measured: most of the folder is still unsent
    assert samples[-1]["gpufl_agent_lag_known"] == 1


def test_records_of_a_pruned_session_are_refused_counted_and_passed(folder: str, tmp_path: str) -> None:
    """Regression: retention deleted a session while it was still arriving and its later records were
    stored as a fragment, unnoticed on both sides. Now the backend refuses them (code "pruned"); the agent
    counts them in gpufl_agent_records_refused_total{reason="pruned"}, logs once per session, does not
    retry or dead-letter them (the segments still hold them) and goes on with the other sessions."""
    data = os.path.join(tmp_path, "backend")
    os.mkdir(data)
    # Any session is over a 1-byte cap; no quiet period; the background job only runs at start (empty).
    backend = Backend(data, max_store_bytes="1", retention_quiet_s="0", retention_interval_s="86400").start()
    try:
        writers = write_session(folder, "p1", 300, per_segment=100, pid=dead_pid())
        r = run_agent(agent_args(folder, backend.url, backend.token, "--exit-when-idle"))
        assert r.returncode == 0, r.stderr
        admin = httpx.Client(base_url=backend.url.removesuffix("events/"), headers=backend.auth, timeout=30)
        assert admin.post("admin/prune").json()["deleted"] == ["p1"]
        for w in writers.values():  # p1's writer goes on after the deletion: 250 late records a stream
            w.write(250)
        write_session(folder, "p2", 200, per_segment=100, pid=dead_pid())
        port = free_port()
        agent = subprocess.Popen(
            agent_args(
                folder,
                backend.url,
                backend.token,
                f"--metrics-port={port}",
                "--batch-records=100",  # several batches of p1's late records: still one log line
                "--poll-interval=0.1",
            ),
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                s = _scrape(port) or {}
                if (
                    s.get("gpufl_agent_lag_bytes") == 0
                    and _metric(port, "gpufl_agent_records_refused_total") == 750
                ):
                    break
                assert time.monotonic() < deadline, f"not delivered and refused: {s}"
                assert agent.poll() is None
                time.sleep(0.2)
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        finally:
            agent.send_signal(signal.SIGTERM)
            _, err = agent.communicate(timeout=60)
        assert agent.returncode == 0, err
        assert 'gpufl_agent_records_refused_total{reason="pruned"} 750.0' in metrics
        events = [x for x in metrics.splitlines() if x.startswith("gpufl_agent_events_total{")]
        assert sum(float(x.rsplit(" ", 1)[1]) for x in events) == 3 * 200  # p2, every record
        # Refused is not invalid: nothing dead-lettered (the segments still hold the records).
        assert not [x for x in metrics.splitlines() if x.startswith("gpufl_agent_dead_letters_total{")]
        assert os.path.getsize(os.path.join(folder, ".gpufl-agent.cursor.deadletter.jsonl")) == 0
        refusals = [x for x in err.splitlines() if "p1" in x and "deleted by retention" in x]
        assert len(refusals) == 1, err
        # No fragment of p1 came back; p2 is whole.
        assert admin.get("sessions/p1").status_code == 404
        streams = admin.get("sessions/p2").json()["streams"]
        assert sorted(x["received"] for x in streams) == [200, 200, 200]
        # Nothing stuck: the cursor is past the refused records, a new run has nothing to send.
        r = run_agent(agent_args(folder, backend.url, backend.token, "--exit-when-idle"))
        assert r.returncode == 0 and "status events=0 " in r.stderr, r.stderr
        admin.close()
    finally:
        backend.stop()
