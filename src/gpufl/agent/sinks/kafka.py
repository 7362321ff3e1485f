"""Kafka sink: one message per record line (value = the line, key = session id so a session's records
keep their order within a partition) to topics ``<prefix>.device|scope|system``.

confluent-kafka (librdkafka) is the producer: acks=all, compression. Every setting given — flags and each
``--kafka-option KEY=VALUE`` — goes into the producer's configuration, and librdkafka refuses unknown
keys, so nothing is silently ignored. A batch counts as delivered only when the delivery report of every
one of its messages came back without error.

The producer is not idempotent unless ``--kafka-option=enable.idempotence=true``. Exactly-once in the
store comes from the backend's de-duplication on (session_id, stream, seq), which absorbs the repeats of
a retry (and a restarted agent re-sends what was in flight anyway); the store does not need a
partition's records in order either. Broker-side idempotence only adds a way to lose data: a broker that
commits a producer's sequence before the records (Tansu's object-store engine, killed or restarted
mid-produce) answers the client's retry with DUPLICATE_SEQUENCE_NUMBER, which librdkafka reports as
delivered, for a batch it never stored. Measured: tests/agent/test_kafka_backend.py lost batches of
acknowledged records through broker restarts with it on, none with it off.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from gpufl.agent.batcher import Batch
from gpufl.agent.sinks.base import Fatal, Result, Retryable
from gpufl.contract.events import STREAMS
from gpufl.contract.protocol import Rejection

log = logging.getLogger("gpufl.agent")

# Errors that no retry can fix: the record is dead-lettered with the broker's reason.
# Timeouts and broker outages are not among them: those are retried.
_PERMANENT = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD, KafkaError.INVALID_MSG_SIZE}


class KafkaSink:
    def __init__(
        self,
        brokers: str,
        topic_prefix: str = "gpufl",
        *,
        compression: str = "lz4",
        partitions: int = 3,
        extra: dict[str, str] | None = None,
        batch_bytes: int = 4 << 20,
        probe_timeout: float = 10.0,
    ) -> None:
        self.brokers = brokers
        self.prefix = topic_prefix
        self.name = f"kafka {brokers}"
        self.partitions = partitions
        self.probe_timeout = probe_timeout
        self.topics = {s: f"{topic_prefix}.{s}" for s in STREAMS}
        self.config: dict[str, Any] = {
            "bootstrap.servers": brokers,
            "acks": "all",
            "compression.type": compression,
            "linger.ms": 20,
            # Room for a whole batch in librdkafka's queue, so a batch is produced without waiting.
            "queue.buffering.max.kbytes": max(65536, 2 * batch_bytes // 1024),
            "queue.buffering.max.messages": 1_000_000,
            # A message not acknowledged in this time comes back as an error and the batch is retried
            # by our loop (with backoff), rather than sitting in librdkafka for the default 5 minutes.
            "message.timeout.ms": 30_000,
            "client.id": "gpufl-agent",
        }
        self.extra = dict(extra or {})
        self._producer: Producer | None = None
        self._fatal: str | None = None
        self._send_lock = threading.Lock()
        self.idempotent = False

    # ------------------------------------------------------------------ setup

    def _conf(self) -> dict[str, Any]:
        conf = {**self.config, "enable.idempotence": False, "error_cb": self._on_error}
        conf.update(self.extra)  # explicit options win, and librdkafka validates each key
        return conf

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err.str()
        elif err.code() != KafkaError._TRANSPORT and err.code() != KafkaError._ALL_BROKERS_DOWN:
            log.warning("kafka: %s", err.str())

    def probe(self) -> None:
        admin_conf: dict[str, str | int | float | bool] = {"bootstrap.servers": self.brokers}
        for k, v in self.extra.items():
            if k.startswith(("security.", "sasl.", "ssl.")):
                admin_conf[k] = v
        try:
            admin = AdminClient(admin_conf)
            md = admin.list_topics(timeout=self.probe_timeout)
        except KafkaException as e:
            raise Retryable(f"cannot reach brokers {self.brokers}: {e}", kind="connect") from None
        missing = [t for t in self.topics.values() if t not in md.topics]
        if missing:
            futures = admin.create_topics([NewTopic(t, num_partitions=self.partitions) for t in missing])
            for topic, fut in futures.items():
                try:
                    fut.result(timeout=self.probe_timeout)
                    log.info("kafka: created topic %s (%d partitions)", topic, self.partitions)
                except KafkaException as e:
                    if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise Fatal(f"cannot create topic {topic}: {e}") from None
        if self._producer is None:
            self._producer = self._make_producer()

    def _make_producer(self) -> Producer:
        # Not idempotent unless asked for (see the module's docstring): an explicit option wins in _conf.
        self.idempotent = str(self.extra.get("enable.idempotence", "false")).lower() == "true"
        try:
            p = Producer(self._conf())
        except KafkaException as e:
            raise Fatal(f"kafka producer configuration refused: {e}") from None
        log.info("kafka: producer acks=all, idempotence %s", "on" if self.idempotent else "off")
        return p

    # ------------------------------------------------------------------ delivery

    def send(self, batch: Batch) -> Result:
        if batch.count == 0:
            return Result()
        # One batch at a time: flush() serves every pending delivery report, so two concurrent sends
        # could each see the other's reports arrive late. librdkafka pipelines the messages anyway.
        with self._send_lock:
            return self._send(batch)

    def _send(self, batch: Batch) -> Result:
        if self._producer is None:
            self.probe()
        p = self._producer
        assert p is not None
        if self._fatal is not None:
            # An idempotent producer's fatal error (e.g. sequence desync after a broker lost data)
            # cannot be cleared: start a new producer and resend (the backend de-duplicates).
            log.warning("kafka: producer failed (%s): recreating it", self._fatal)
            self._fatal = None
            self._producer = p = self._make_producer()
        topic = self.topics[batch.stream]
        failed: list[tuple[KafkaError, bytes]] = []

        def report(err: KafkaError | None, msg: Any) -> None:
            # One callback for all messages (a closure per message would cost more than the produce).
            if err is not None:
                failed.append((err, msg.value()))

        for piece in batch.pieces:
            if piece.count == 0:
                continue  # only moves the cursor (dead-lettered lines)
            key = piece.session_id.encode()
            for value in piece.data[:-1].split(b"\n"):
                while True:
                    try:
                        p.produce(topic, value, key, on_delivery=report)
                        break
                    except BufferError:
                        p.poll(0.05)  # librdkafka's queue is full: serve delivery reports, then retry
                    except KafkaException as e:
                        # Refused before sending (e.g. larger than message.max.bytes).
                        failed.append((e.args[0], value))
                        break
        remaining = p.flush(60)
        if remaining > 0:
            raise Retryable(f"{remaining} messages not acknowledged within 60 s", kind="timeout")
        if not failed:
            return Result(batch.count)
        if any(err.code() not in _PERMANENT for err, _ in failed):
            first = next(err for err, _ in failed if err.code() not in _PERMANENT)
            raise Retryable(f"{len(failed)} of {batch.count} messages failed: {first.str()}", kind="kafka")
        # Only records no retry can deliver (e.g. larger than the broker accepts): dead-letter those.
        lines = batch.body()[:-1].split(b"\n")
        reasons = {value: err.str() for err, value in failed}
        rejected = [Rejection(i, None, f"kafka: {reasons[v]}") for i, v in enumerate(lines) if v in reasons]
        return Result(batch.count - len(rejected), rejected=rejected)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
