"""Kafka bridge against a real Kafka-protocol broker (Tansu, started by scripts/test.sh)."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from gpufl.backend import retention
from gpufl.backend.config import Settings
from gpufl.backend.kafka_bridge import KafkaBridge
from gpufl.backend.metrics import Metrics
from gpufl.backend.store import SqlStore
from gpufl.contract import events as ev

from .conftest import need_env
from .factory import SessionFactory
from .helpers import feed

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def brokers() -> str:
    return need_env("GPUFL_TEST_KAFKA_BROKERS")


def _topics(brokers: str, prefix: str) -> None:
    admin = AdminClient({"bootstrap.servers": brokers})
    futures = admin.create_topics([NewTopic(f"{prefix}.{s}", num_partitions=2) for s in ev.STREAMS])
    for f in futures.values():
        f.result(timeout=30)


def _wait(cond: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def _settings(brokers: str, prefix: str, group: str) -> Settings:
    return Settings(kafka_brokers=brokers, kafka_topic_prefix=prefix, kafka_group=group)


def _produce(brokers: str, prefix: str) -> tuple[SessionFactory, int, int]:
    f = SessionFactory("kafka-s1")
    dev: list[ev.Record] = [f.start("device"), f.launch(1, "gemm")]
    dev += [f.kernel(1, i * 100, 50) for i in range(300)]
    sysrecs = [f.start("system"), *(f.sample(i * 10**8, 50, 1e5, 3) for i in range(20))]
    p = Producer({"bootstrap.servers": brokers})
    # Mixed framings: single records, NDJSON batches, a re-delivered batch and an invalid record.
    for r in dev[:50]:
        p.produce(f"{prefix}.device", ev.encode(r), key=b"kafka-s1")
    p.produce(f"{prefix}.device", ev.encode_lines(dev[50:]), key=b"kafka-s1")
    p.produce(f"{prefix}.device", ev.encode_lines(dev[100:120]), key=b"kafka-s1")  # duplicates
    p.produce(f"{prefix}.device", b'{"type": "kernel", "garbage": true}', key=b"kafka-s1")
    p.produce(f"{prefix}.system", b"[" + b",".join(ev.encode(r) for r in sysrecs) + b"]", key=b"kafka-s1")
    assert p.flush(30) == 0
    return f, len(dev), len(sysrecs)


def _committed(brokers: str, group: str, prefix: str) -> dict[tuple[str, int], int]:
    # A committed-offsets request can time out while the group rebalances on a loaded 2-core machine:
    # ask again (up to 3 times) rather than fail on the transport.
    for attempt in range(3):
        c = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False})
        try:
            tps = [TopicPartition(f"{prefix}.{s}", p) for s in ("device", "system") for p in (0, 1)]
            return {(tp.topic, tp.partition): tp.offset for tp in c.committed(tps, timeout=30)}
        except KafkaException:
            if attempt == 2:
                raise
        finally:
            c.close()
    raise AssertionError("unreachable")


# Messages _produce writes per topic (50 single records + 3 batches on device, 1 array on system).
PRODUCED = {"device": 53, "system": 1}


def _all_committed(brokers: str, group: str, prefix: str) -> bool:
    # Committed offset per topic, summed over partitions (negative = nothing committed there). Compared
    # with the produced message counts, not watermarks (Tansu's watermark replies count differently).
    got: dict[str, int] = defaultdict(int)
    for (topic, _), off in _committed(brokers, group, prefix).items():
        got[topic.rsplit(".", 1)[1]] += max(off, 0)
    return dict(got) == PRODUCED


def test_bridge_ingests_dedups_and_commits_after_store(store: SqlStore, brokers: str) -> None:
    prefix = "t" + secrets.token_hex(4)
    group = "g" + secrets.token_hex(4)
    _topics(brokers, prefix)
    f, n_dev, n_sys = _produce(brokers, prefix)
    bridge = KafkaBridge(store, _settings(brokers, prefix, group), poll_timeout_s=0.2)
    bridge.start()
    try:
        _wait(lambda: store.session_exists(f.sid) and store.session_detail(f.sid)["totals"]["kernels"] == 300)
        _wait(lambda: store.session_detail(f.sid)["totals"]["system_samples"] == n_sys - 1)
        _wait(lambda: _all_committed(brokers, group, prefix))
    finally:
        bridge.stop()
    d = store.session_detail(f.sid)
    assert {s["stream"]: s["received"] for s in d["streams"]} == {"device": n_dev, "system": n_sys}


class FlakyStore:
    """Delegates to a real store, but the first ``fail`` ingests raise (a database outage)."""

    def __init__(self, store: SqlStore, fail: int) -> None:
        self.store = store
        self.fail = fail
        self.calls = 0

    def _write(self) -> None:
        self.calls += 1
        if self.calls <= self.fail:
            raise RuntimeError("database unavailable")

    def ingest(self, *a: Any, **kw: Any) -> Any:
        self._write()
        return self.store.ingest(*a, **kw)

    def ingest_json(self, *a: Any, **kw: Any) -> Any:  # DuckDB's bulk JSON path writes too
        self._write()
        return self.store.ingest_json(*a, **kw)

    def __getattr__(self, name: str) -> Any:  # everything else (flags, reads) as the real store
        return getattr(self.store, name)


def test_store_failure_is_retried_and_nothing_is_committed_before(store: SqlStore, brokers: str) -> None:
    prefix = "t" + secrets.token_hex(4)
    group = "g" + secrets.token_hex(4)
    _topics(brokers, prefix)
    f, n_dev, _ = _produce(brokers, prefix)
    flaky = FlakyStore(store, fail=2)
    bridge = KafkaBridge(flaky, _settings(brokers, prefix, group), poll_timeout_s=0.2)  # type: ignore[arg-type]
    bridge.start()
    try:
        _wait(lambda: flaky.calls >= 1)
        assert all(v < 0 for v in _committed(brokers, group, prefix).values())  # nothing committed yet
        _wait(lambda: _all_committed(brokers, group, prefix))
    finally:
        bridge.stop()
    assert flaky.calls > 2
    d = store.session_detail(f.sid)
    assert {s["stream"]: s["received"] for s in d["streams"]}["device"] == n_dev
    assert d["totals"]["kernels"] == 300


class FlakyCommitBridge(KafkaBridge):
    """A bridge whose first ``fail`` offset commits fail the way they do while the broker restarts."""

    def __init__(self, *a: Any, fail: int, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.fail = fail
        self.commits = 0

    def _consumer(self) -> Consumer:
        real = super()._consumer()
        bridge = self

        class Proxy:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def commit(self, *a: Any, **kw: Any) -> Any:
                bridge.commits += 1
                if bridge.commits <= bridge.fail:
                    raise KafkaException(KafkaError(KafkaError._WAIT_COORD, "Waiting for coordinator"))
                return real.commit(*a, **kw)

        return Proxy()  # type: ignore[return-value]


def test_failed_offset_commit_is_retried_and_the_bridge_keeps_consuming(
    store: SqlStore, brokers: str
) -> None:
    prefix = "t" + secrets.token_hex(4)
    group = "g" + secrets.token_hex(4)
    _topics(brokers, prefix)
    f, n_dev, _ = _produce(brokers, prefix)
    bridge = FlakyCommitBridge(store, _settings(brokers, prefix, group), poll_timeout_s=0.2, fail=2)
    bridge.start()
    try:
        # Every record stored and, once the commits succeed again, every offset committed (the idle retry
        # commits what the failed commits left pending).
        _wait(lambda: bridge.commits > 2 and _all_committed(brokers, group, prefix))
        assert bridge._thread.is_alive()
    finally:
        bridge.stop()
    d = store.session_detail(f.sid)
    assert {s["stream"]: s["received"] for s in d["streams"]}["device"] == n_dev
    assert d["totals"]["kernels"] == 300


def test_late_records_of_a_pruned_session_are_refused_and_committed(
    store: SqlStore, brokers: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Over Kafka no agent hears the refusal: the bridge counts the records (rejected, reason "pruned"),
    the ingest path logs once per session rather than once per record, and the offsets are committed like
    any rejected record's (re-reading them would never make them welcome): nothing stuck, no fragment."""
    prefix = "t" + secrets.token_hex(4)
    group = "g" + secrets.token_hex(4)
    _topics(brokers, prefix)
    f = SessionFactory("kafka-pruned-" + secrets.token_hex(4))
    feed(store, [f.start("device"), f.launch(1, "gemm"), *(f.kernel(1, i * 100, 50) for i in range(10))])
    assert retention.prune(store, None, 1, quiet_s=0) == {f.sid: "size"}
    g = SessionFactory("kafka-live-" + secrets.token_hex(4))
    late = [f.kernel(1, 10**6 + i * 100, 50) for i in range(200)]
    p = Producer({"bootstrap.servers": brokers})
    for r in late[:100]:
        p.produce(f"{prefix}.device", ev.encode(r), key=f.sid.encode())
    p.produce(f"{prefix}.device", ev.encode_lines(late[100:]), key=f.sid.encode())
    live = [g.start("device"), g.launch(1, "k"), *(g.kernel(1, i * 100, 50) for i in range(5))]
    p.produce(f"{prefix}.device", ev.encode_lines(live), key=g.sid.encode())
    assert p.flush(30) == 0
    metrics = Metrics()
    bridge = KafkaBridge(store, _settings(brokers, prefix, group), metrics, poll_timeout_s=0.2)

    def refused() -> float:
        v = metrics.registry.get_sample_value("gpufl_ingest_rejected_records_total", {"reason": "pruned"})
        return v or 0.0

    def committed() -> int:
        return sum(
            max(o, 0) for (t, _), o in _committed(brokers, group, prefix).items() if t.endswith("device")
        )

    with caplog.at_level(logging.WARNING):
        bridge.start()
        try:
            _wait(lambda: store.session_exists(g.sid) and refused() == 200 and committed() == 102)
        finally:
            bridge.stop()
    assert not store.session_exists(f.sid)
    assert store.session_detail(g.sid)["totals"]["kernels"] == 5
    about = [r.getMessage() for r in caplog.records if f.sid in r.getMessage()]
    assert len(about) == 1 and "deleted by retention" in about[0], about


def test_agents_delivery_reports_are_stored_after_the_routes_checks(store: SqlStore, brokers: str) -> None:
    """Remote capture over Kafka (#22): an agent's report on ``<prefix>.capture-deliveries`` is stored as
    ``POST /agent/captures/{id}/deliveries`` stores it; one for an unknown request, for a host the request is
    not addressed to, or unreadable is dropped with a log line — and the bridge goes on."""
    prefix = "t" + secrets.token_hex(4)
    group = "g" + secrets.token_hex(4)
    _topics(brokers, prefix)
    now = time.time_ns()
    rid = "cap-00000000000000aa"
    store.add_capture(
        {"id": rid, "app": "train", "host_glob": "node-*", "job_id": None, "engines": ["tracing"], "seconds": 5.0,
         "requester": "operator:k", "created_ns": now, "expires_ns": now + 60 * 10**9}
    )  # fmt: skip
    topic = f"{prefix}.capture-deliveries"
    admin = AdminClient({"bootstrap.servers": brokers})  # held: its futures need it alive
    admin.create_topics([NewTopic(topic, num_partitions=1)])[topic].result(30)
    p = Producer({"bootstrap.servers": brokers})

    def report(request_id: str, host: str, *sids: str) -> bytes:
        body = {"request_id": request_id, "host": host, "sessions": [{"session_id": s} for s in sids]}
        return json.dumps(body).encode()

    p.produce(topic, report("cap-00000000000000zz", "node-1", "unknown00000000a"), key=b"x")
    p.produce(topic, report(rid, "gpu-9", "elsewhere000000a"), key=rid.encode())
    p.produce(topic, b"{not json", key=rid.encode())
    p.produce(topic, json.dumps({"request_id": rid, "host": "node-1", "sessions": "s"}).encode(), key=b"x")
    p.produce(topic, report(rid, "node-1", "sessiona00000000", "sessionb00000000"), key=rid.encode())
    assert p.flush(30) == 0
    bridge = KafkaBridge(store, _settings(brokers, prefix, group), poll_timeout_s=0.2)
    bridge.start()
    try:
        _wait(lambda: len(store.capture(rid)["sessions"]) == 2)
    finally:
        bridge.stop()
    got = {s["session_id"]: (s["host"], s["status"]) for s in store.capture(rid)["sessions"]}
    assert got == {"sessiona00000000": ("node-1", "delivered"), "sessionb00000000": ("node-1", "delivered")}
    stored = store._all("SELECT request_id, session_id FROM capture_deliveries ORDER BY session_id")
    assert stored == [(rid, "sessiona00000000"), (rid, "sessionb00000000")]  # nothing of the dropped ones
