"""Remote capture over Kafka (issue #22): the backend publishes each capture request to the control topic
``<prefix>.captures`` (one partition, created when missing), where agents shipping over Kafka read them
(``gpufl.agent.remote.KafkaRequests``): such agents do not talk to the backend over HTTP.

Each message is one request as JSON (``id``, ``app``, ``host_glob``, ``job_id``, ``engines``, ``seconds``,
``requester``, ``created_ns``, ``expires_ns``), keyed by its id. Every agent reads the whole topic and keeps
the requests whose host glob matches its host: a Kafka deployment's access to the topic is the brokers'
(ACLs), not the backend's.

Agents over Kafka report the sessions they handed a request to on ``<prefix>.capture-deliveries``: one
message a report, ``{"request_id", "host", "sessions": [{"session_id", "error"}]}``, which the Kafka bridge
stores (``record_deliveries``) after the checks ``POST /agent/captures/{id}/deliveries`` makes (the request
exists, its host glob matches the host); a report that fails them is logged and dropped. Keys play no part
there: who may write the topic is the brokers' matter, as for the record topics.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from pydantic import ValidationError

from gpufl.backend.api.capture import DeliveryReport
from gpufl.backend.config import Settings
from gpufl.backend.store import NotFound, SqlStore
from gpufl.backend.store.captures import host_matches

log = logging.getLogger("gpufl.backend")


def topic_name(prefix: str) -> str:
    return f"{prefix}.captures"


def deliveries_topic(prefix: str) -> str:
    return f"{prefix}.capture-deliveries"


def record_deliveries(store: SqlStore, value: bytes) -> str | None:
    """Store one delivery report from the deliveries topic: None, or why it was not stored."""
    try:
        msg = json.loads(value)
        rid = msg["request_id"]
        if not isinstance(rid, str):
            raise TypeError("request_id: want a string")
        report = DeliveryReport.model_validate({"host": msg["host"], "sessions": msg["sessions"]})
    except (ValueError, KeyError, TypeError, ValidationError) as e:  # ValidationError: a ValueError too
        return f"unreadable delivery report: {str(e)[:200]}"
    try:
        req = store.get_capture_request(rid)
    except NotFound:
        return f"no capture request {rid[:100]!r}"
    if not host_matches(req["host_glob"], report.host):
        return f"capture {rid} is not addressed to host {report.host!r}"
    store.add_deliveries(rid, report.host, [(d.session_id, d.error) for d in report.sessions])
    return None


class CaptureTopic:
    """A producer for the control topic, made at the first request (the backend may start before Kafka)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.kafka_brokers
        self.brokers = settings.kafka_brokers
        self.topic = topic_name(settings.kafka_topic_prefix)
        self._producer: Any = None
        self._lock = threading.Lock()

    def _ready(self) -> Any:
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient, NewTopic

        if self._producer is None:
            admin = AdminClient({"bootstrap.servers": self.brokers})
            if self.topic not in admin.list_topics(timeout=10).topics:
                for fut in admin.create_topics([NewTopic(self.topic, num_partitions=1)]).values():
                    try:
                        fut.result(timeout=10)
                    except Exception as e:  # created meanwhile by another backend
                        if "exist" not in str(e).lower():
                            raise
            self._producer = Producer({"bootstrap.servers": self.brokers, "acks": "all"})
        return self._producer

    def publish(self, request: dict[str, Any]) -> str | None:
        """Publish one request and wait for the brokers' ack: None, or why it could not be published."""
        errors: list[str] = []
        try:
            with self._lock:
                p = self._ready()
                p.produce(
                    self.topic,
                    key=request["id"].encode(),
                    value=json.dumps(request).encode(),
                    on_delivery=lambda err, _msg: errors.append(str(err)) if err else None,
                )
                left = p.flush(10)
            if left:
                errors.append("not acknowledged in 10 s")
        except Exception as e:  # the request is stored; HTTP agents still see it
            errors.append(f"{type(e).__name__}: {e}")
        if errors:
            log.warning("capture %s not published to %s: %s", request["id"], self.topic, "; ".join(errors))
            return "; ".join(errors)
        return None
