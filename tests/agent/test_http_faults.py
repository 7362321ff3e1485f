"""The HTTP sink under faults the real backend cannot be made to produce on demand (413, scripted
429/503 with Retry-After, refused token), and the command line's failure modes. The target is the
loopback fault-injection server (tests/agent/faultserver.py), a real HTTP server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from gpufl.contract.events import STREAMS

from .conftest import AGENT, agent_args, run_agent
from .faultserver import FaultServer
from .producer import StreamWriter, dead_pid, write_session


def _all_keys(sessions: dict[str, int]) -> set[tuple[str, str, int]]:
    return {(sid, st, q) for sid, n in sessions.items() for st in STREAMS for q in range(n)}


def _dead_letters(folder: str) -> list[dict[str, object]]:
    path = os.path.join(folder, ".gpufl-agent.cursor.deadletter.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(x) for x in f]


def test_delivers_everything_once_and_resumes_from_cursor(folder: str, fault_server: FaultServer) -> None:
    write_session(folder, "s1", 2500, per_segment=1000, pid=dead_pid())
    r = run_agent(agent_args(folder, fault_server.url, "t0ken", "--exit-when-idle", "--batch-records=700"))
    assert r.returncode == 0, r.stderr
    assert fault_server.stored == _all_keys({"s1": 2500})
    assert max(fault_server.deliveries.values()) == 1
    assert "status events=7500 " in r.stderr and "dead_letters=0" in r.stderr  # the status line
    n_requests = len(fault_server.requests)
    # More lines appended (and a rotation): a second run sends exactly the new ones.
    w = StreamWriter(folder, "s1", "device", per_segment=1000, seq=2500, index=2)
    w.write(800)
    r = run_agent(agent_args(folder, fault_server.url, "t0ken", "--exit-when-idle"))
    assert r.returncode == 0, r.stderr
    assert sum(n for _, _, n in fault_server.requests[n_requests:]) == 800
    assert max(fault_server.deliveries.values()) == 1 and len(fault_server.stored) == 3 * 2500 + 800


def test_413_splits_the_batch(folder: str) -> None:
    srv = FaultServer(max_records=300)
    try:
        write_session(folder, "s1", 1000, per_segment=5000, streams=("device",), pid=dead_pid())
        r = run_agent(agent_args(folder, srv.url, "t0ken", "--exit-when-idle", "--batch-records=1000"))
        assert r.returncode == 0, r.stderr
        assert {k[2] for k in srv.stored} == set(range(1000))
        assert any(status == 413 for _, status, _ in srv.requests)
        assert all(n <= 300 for _, status, n in srv.requests if status == 200)
    finally:
        srv.close()


def test_retry_after_is_honoured_on_429_and_503(folder: str, fault_server: FaultServer) -> None:
    write_session(folder, "s1", 50, per_segment=5000, streams=("system",), pid=dead_pid())
    fault_server.script = [(503, None), (429, 2.0), (503, 1.0)]
    r = run_agent(agent_args(folder, fault_server.url, "t0ken", "--exit-when-idle"))
    assert r.returncode == 0, r.stderr
    assert {k[2] for k in fault_server.stored} == set(range(50))
    times = {i: t for i, (t, _, _) in enumerate(fault_server.requests)}
    statuses = [s for _, s, _ in fault_server.requests]
    # The first requests are the start-up probe: it retries, and honours Retry-After, too.
    assert statuses[:3] == [503, 429, 503] and statuses[-1] == 200
    assert times[2] - times[1] >= 2.0  # waited the 429's Retry-After
    assert times[3] - times[2] >= 1.0  # and the 503's


def test_rejected_records_are_dead_lettered_with_reason(folder: str, fault_server: FaultServer) -> None:
    w = StreamWriter(folder, "s1", "device", per_segment=5000, pid=dead_pid())
    w.write(100)
    fault_server.reject_seqs = {17, 42}
    r = run_agent(agent_args(folder, fault_server.url, "t0ken", "--exit-when-idle"))
    assert r.returncode == 0, r.stderr
    assert {k[2] for k in fault_server.stored} == set(range(100)) - {17, 42}
    dl = _dead_letters(folder)
    assert [json.loads(str(d["line"]))["seq"] for d in dl] == [17, 42]
    lines = Path(w.path()).read_bytes().splitlines(keepends=True)
    assert dl[0]["offset"] == sum(len(x) for x in lines[:17])
    assert "seq 17 refused by test" in str(dl[0]["reason"]) and dl[0]["segment"] == os.path.basename(w.path())


def test_malformed_and_partial_lines_are_dead_lettered(folder: str, fault_server: FaultServer) -> None:
    gone = dead_pid()
    # Stream 1: a malformed line in the middle and a partial line ending a rotated segment.
    a = StreamWriter(folder, "s1", "device", per_segment=10, pid=gone)
    a.write(5)
    a.write_raw(b"garbage that is not json\n")
    a.write(5)
    a.write_raw(b'{"type":"kernel","cut here')
    a.write(3)  # rotates: segment 000001 exists, so the partial line in 000000 is final
    # Stream 2: the last segment ends in a partial line and its writer process is gone.
    b = StreamWriter(folder, "s1", "scope", per_segment=100, pid=gone)
    b.write(4)
    b.write_raw(b'{"type":"scope_begin"')
    r = run_agent(agent_args(folder, fault_server.url, "t0ken", "--exit-when-idle"), timeout=60)
    assert r.returncode == 0, r.stderr
    assert {k for k in fault_server.stored if k[1] == "device"} == {("s1", "device", q) for q in range(13)}
    assert {k for k in fault_server.stored if k[1] == "scope"} == {("s1", "scope", q) for q in range(4)}
    dl = _dead_letters(folder)
    assert sorted((d["line"], str(d["reason"]).split(" (")[0].split(":")[0]) for d in dl) == [
        ("garbage that is not json", "malformed line"),
        ('{"type":"kernel","cut here', "partial last line"),
        ('{"type":"scope_begin"', "partial last line"),
    ]
    # The partial lines are final: a second run has nothing left to do.
    requests = len(fault_server.requests)
    r = run_agent(agent_args(folder, fault_server.url, "t0ken", "--exit-when-idle"), timeout=60)
    assert r.returncode == 0 and len(fault_server.requests) == requests + 1  # the probe only
    assert len(_dead_letters(folder)) == 3


def test_partial_line_of_a_live_writer_is_waited_for(folder: str, fault_server: FaultServer) -> None:
    # The writer (this test process) is alive: the agent must not dead-letter its half-written line.
    w = StreamWriter(folder, "s1", "system", per_segment=100)
    w.write(3)
    w.write_raw(b'{"type":"system_sample","session_id":"s1"')
    port = _free_port()
    proc = subprocess.Popen(
        agent_args(
            folder,
            fault_server.url,
            "t0ken",
            "--exit-when-idle",
            "--poll-interval=0.1",
            f"--metrics-port={port}",
        ),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=2)
        assert {k[2] for k in fault_server.stored} == {0, 1, 2}
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'gpufl_agent_events_total{stream="system"} 3.0' in metrics
        # What is not delivered yet is the partial line, 41 bytes.
        assert "gpufl_agent_lag_bytes 41.0" in metrics
        w.write_raw(b',"stream":"system","seq":3,"ts_ns":1700000000000000000}\n')
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()
    assert {k[2] for k in fault_server.stored} == {0, 1, 2, 3}
    assert _dead_letters(folder) == []


def test_vanishing_segment_is_not_an_error(folder: str, fault_server: FaultServer) -> None:
    w = StreamWriter(folder, "s1", "device", per_segment=10, pid=dead_pid())
    w.write(30)
    os.unlink(w.path(0))  # the session byte cap deleted the oldest closed segment
    r = run_agent(agent_args(folder, fault_server.url, "t0ken", "--exit-when-idle"))
    assert r.returncode == 0, r.stderr
    assert {k[2] for k in fault_server.stored} == set(range(10, 30))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--type=http", "--url=http://127.0.0.1:1/"], 2, "--folder is required"),
        (["--folder=/nonexistent/x", "--url=http://127.0.0.1:1/"], 2, "not a directory"),
        (["--folder={folder}", "--type=http"], 2, "needs --url"),
        (["--folder={folder}", "--type=kafka"], 2, "needs --brokers"),
        (["--folder={folder}", "--url=ftp://x/"], 2, "must start with http"),
        (["--folder={folder}", "--url=http://127.0.0.1:1/", "--batch-records=zero"], 2, "invalid value"),
        (["--folder={folder}", "--url=http://127.0.0.1:1/", "--kafka-option=novalue"], 2, "KEY=VALUE"),
        (["--folder={folder}", "--type=nope"], 2, "invalid choice"),
    ],
)
def test_bad_flags_give_a_clear_message(folder: str, args: list[str], code: int, message: str) -> None:
    r = run_agent([*AGENT, *(a.format(folder=folder) for a in args)], timeout=30)
    assert r.returncode == code
    assert message in r.stderr and "Traceback" not in r.stderr


def test_unreachable_target_and_refused_token(folder: str, fault_server: FaultServer) -> None:
    url = f"http://127.0.0.1:{_free_port()}/api/v1/events/"
    r = run_agent(agent_args(folder, url, "x", "--connect-timeout=1"), timeout=30)
    assert r.returncode == 3 and "unreachable" in r.stderr and "Traceback" not in r.stderr
    r = run_agent(agent_args(folder, fault_server.url, "wrong"), timeout=30)
    assert r.returncode == 4 and "token refused" in r.stderr and "Traceback" not in r.stderr


def test_environment_and_config_file_fallbacks(folder: str, fault_server: FaultServer, tmp_path: str) -> None:
    write_session(folder, "s1", 10, per_segment=100, streams=("device",), pid=dead_pid())
    cfg = os.path.join(tmp_path, "agent.toml")
    cursor = os.path.join(tmp_path, "my.cursor")
    with open(cfg, "w") as f:
        f.write(
            f'folder = "{folder}"\nurl = "{fault_server.url}"\ntoken = "wrong"\ncursor-file = "{cursor}"\n'
        )
    env = {**os.environ, "GPUFL_AGENT_TOKEN": "t0ken", "GPUFL_AGENT_EXIT_WHEN_IDLE": "1"}
    r = subprocess.run([*AGENT, f"--config={cfg}"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr  # the environment's token beat the file's
    assert os.path.exists(cursor) and len(fault_server.stored) == 10
    with open(cfg, "a") as f:
        f.write("bogus = 1\n")
    r = subprocess.run([*AGENT, f"--config={cfg}"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2 and "unknown setting 'bogus'" in r.stderr


def test_partial_line_from_another_host_waits_for_rotation(folder: str, fault_server: FaultServer) -> None:
    # The writer ran on another host (an NFS client): its pid says nothing here, so only a later
    # segment makes the partial line final (its pid is dead here, and must not count). --exit-when-idle
    # must not hang on it, nor dead-letter it.
    w = StreamWriter(folder, "s1", "device", per_segment=5, host="otherhost", pid=dead_pid())
    w.write(5)
    w.write_raw(b'{"type":"kernel","half')
    r = run_agent(agent_args(folder, fault_server.url, "t0ken", "--exit-when-idle"), timeout=60)
    assert r.returncode == 0, r.stderr
    assert {k[2] for k in fault_server.stored} == set(range(5)) and _dead_letters(folder) == []
    w.write(3)  # rotation: segment 000001 now exists
    r = run_agent(agent_args(folder, fault_server.url, "t0ken", "--exit-when-idle"), timeout=60)
    assert r.returncode == 0, r.stderr
    assert {k[2] for k in fault_server.stored} == set(range(8))
    assert [(d["line"], d["segment"]) for d in _dead_letters(folder)] == [
        ('{"type":"kernel","half', os.path.basename(w.path(0)))
    ]
