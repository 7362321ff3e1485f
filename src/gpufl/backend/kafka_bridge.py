"""Kafka bridge: consume ``<prefix>.device|scope|system`` and feed the HTTP ingest path.

Offsets are committed only after the store committed the records they carry, so a crash re-delivers and
the store's (session, stream, seq) dedup absorbs the repeats. A commit that fails (broker restarting,
coordinator moving, group rebalancing) is retried with the next batch, or after a second when idle: its
records are stored already, so until then a crash only re-delivers them. Invalid records are logged,
counted and committed (re-reading them would never make them valid). If the store fails, the consumer
seeks back to the batch's first offsets and retries. With PostgreSQL several backends share the topics'
partitions through the consumer group.

A message's value is one record, an NDJSON batch, or a JSON array of records. The bridge also consumes the
agents' remote-capture delivery reports (``<prefix>.capture-deliveries``, ``capture_topic``), stored with
the same commit rule.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from gpufl.backend.capture_topic import deliveries_topic, record_deliveries
from gpufl.backend.config import Settings
from gpufl.backend.ingest import BadBody, IngestResult, ingest_raws, split_records
from gpufl.backend.metrics import Metrics, reason_class
from gpufl.backend.store import SqlStore
from gpufl.contract.events import STREAMS

log = logging.getLogger("gpufl.backend.kafka")


class KafkaBridge:
    def __init__(
        self, store: SqlStore, settings: Settings, metrics: Metrics | None = None, poll_timeout_s: float = 0.5
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.poll_timeout_s = poll_timeout_s
        self.topics = {f"{settings.kafka_topic_prefix}.{s}": s for s in STREAMS}
        self.deliveries = deliveries_topic(settings.kafka_topic_prefix)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpufl-kafka", daemon=True)
        self.batches = 0
        """Batches committed (for tests and logs)."""
        self._uncommitted = False
        self._commit_retry_at = 0.0

    def _consumer(self) -> Consumer:
        c = Consumer(
            {
                "bootstrap.servers": self.settings.kafka_brokers,
                "group.id": self.settings.kafka_group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # A short session timeout lets a restarted or added backend join the group quickly.
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 1000,
                # Topics an agent creates after this backend subscribed are seen within 2 s: librdkafka looks
                # for a subscribed topic that does not exist yet only at this refresh (default 5 minutes).
                "topic.metadata.refresh.interval.ms": 2000,
            }
        )
        c.subscribe([*self.topics, self.deliveries])
        return c

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        consumer = self._consumer()
        try:
            while not self._stop.is_set():
                msgs = consumer.consume(num_messages=1000, timeout=self.poll_timeout_s)
                if msgs:
                    self._handle(consumer, msgs)
                elif self._uncommitted and time.monotonic() >= self._commit_retry_at:
                    self._commit(consumer)
        finally:
            consumer.close()

    def _commit(self, consumer: Consumer) -> bool:
        """Commit the positions of everything consumed (and stored) so far. A failure must not end the
        consumer thread: the offsets stay pending and the next call commits them along with any newer."""
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as e:
            if e.args[0].code() != KafkaError._NO_OFFSET:  # nothing new to commit is no failure
                log.warning("kafka: offset commit failed, retrying with the next one: %s", e.args[0].str())
                self._uncommitted = True
                self._commit_retry_at = time.monotonic() + 1.0
                return False
        self._uncommitted = False
        return True

    def _handle(self, consumer: Consumer, msgs: list[Any]) -> None:
        raws: dict[str, list[bytes]] = defaultdict(list)
        reports: list[bytes] = []
        first: dict[tuple[str, int], int] = {}
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("kafka: %s", err)
                continue
            key = (m.topic(), m.partition())
            first.setdefault(key, m.offset())
            stream = self.topics.get(m.topic())
            value = m.value()
            if m.topic() == self.deliveries and value:
                reports.append(value)
                continue
            if stream is None or not value:
                continue
            try:
                raws[stream].extend(split_records(value))
            except BadBody as e:
                log.warning("kafka: skipping unreadable message %s[%d]@%d: %s", *key, m.offset(), e)
                if self.metrics is not None:
                    self.metrics.rejected.labels("malformed").inc()
        try:
            for value in reports:
                why = record_deliveries(self.store, value)
                if why is not None:
                    log.warning("kafka: remote capture delivery report dropped: %s", why)
            for stream, rs in raws.items():
                for i in range(0, len(rs), self.settings.max_batch_records):
                    self._account(
                        stream, ingest_raws(self.store, stream, rs[i : i + self.settings.max_batch_records])
                    )
        except Exception:
            # Not committed: rewind so these messages are consumed again (dedup makes the retry safe).
            log.exception("kafka: store failed; retrying the batch")
            for (topic, partition), offset in first.items():
                consumer.seek(TopicPartition(topic, partition, offset))
            time.sleep(1.0)
            return
        if first and self._commit(consumer):
            self.batches += 1

    def _account(self, stream: str, res: IngestResult) -> None:
        for r in res.rejected:
            # A pruned session's records can come by the thousand: the ingest path logs them once per session.
            if r.code != "pruned":
                log.warning("kafka: rejected %s record (seq %s): %s", stream, r.seq, r.reason)
        if self.metrics is None:
            return
        self.metrics.records.labels("stored", stream).inc(res.stored)
        self.metrics.records.labels("duplicate", stream).inc(res.duplicates)
        self.metrics.records.labels("rejected", stream).inc(len(res.rejected))
        for r in res.rejected:
            self.metrics.rejected.labels(reason_class(r.reason)).inc()
