"""Remote capture on this node (issue #22): learn of the capture requests addressed to this host, hand each
to the matching live sessions through the control file in the log folder, and report what was delivered.

The agent polls the backend it already ships to (``HttpRequests``: a long poll, so a request reaches the
folder well within a second), or, shipping over Kafka, reads the backend's control topic and reports on the
deliveries topic (``KafkaRequests``), and writes ``<folder>/gpufl-control.json`` atomically (a temporary file
in the folder, then a rename), which the sessions' own background threads read at most once a second
(docs/capture-modes.md): no socket in the training process. A request names an app and optionally a job;
the sessions that match are this host's live sessions in the folder (their ``session_start`` says app, job,
host and pid; a session whose process is gone is not asked). When every live session of the folder matches,
the file names none of them; when one does, ``session_id``; otherwise ``session_ids``. The agent reports
each session it wrote the file for (or the error that kept it from writing), and nothing for a request that
matched no session here. ``--no-remote-capture`` turns all of this off. Requests expire at the backend: an
expired one is not handed on.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import msgspec

from gpufl.agent import discovery, liveness
from gpufl.agent.cursor import WriterInfo
from gpufl.contract.events import ContractError, SessionStart, decode

log = logging.getLogger("gpufl.agent")

CONTROL_FILE = "gpufl-control.json"  # the client's name for it (gpufl.client.capture.CONTROL_FILE)
LONG_POLL_S = 20.0
"""How long one poll waits at the backend for a request (it answers at once when one is made)."""
REPORT_MAX = 100
"""Sessions per delivery report (``DeliveryReport.sessions``' bound)."""
WRITE_GAP_S = 1.5
"""Time between two writes of the control file: sessions read it at most once a second, so a request
written sooner after the last would replace it before some session had read it."""


@dataclass(frozen=True)
class LiveSession:
    session_id: str
    app: str
    job_id: str | None


class Requests(Protocol):
    """Where an agent learns of requests and reports deliveries."""

    def poll(self, host: str, since_ns: int, wait_s: float) -> list[dict[str, Any]]: ...

    def report(self, rid: str, host: str, sessions: list[tuple[str, str | None]]) -> None: ...

    def close(self) -> None: ...


class HttpRequests:
    """The backend's ``/agent/captures`` routes, under the API base the ingest URL names
    (``…/api/v1/events/`` → ``…/api/v1/``), with the agent's ingest token."""

    def __init__(self, ingest_url: str, token: str | None, verify: Any = True) -> None:
        base = ingest_url.rstrip("/")
        if not base.endswith("/events"):
            raise ValueError(f"--url {ingest_url!r} does not end in /events/: cannot find the capture API")
        self.base = base[: -len("events")]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(LONG_POLL_S + 15, connect=10.0), verify=verify
        )

    def poll(self, host: str, since_ns: int, wait_s: float) -> list[dict[str, Any]]:
        r = self._client.get(
            f"{self.base}agent/captures", params={"host": host, "since_ns": since_ns, "wait_s": wait_s}
        )
        r.raise_for_status()
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    def report(self, rid: str, host: str, sessions: list[tuple[str, str | None]]) -> None:
        for i in range(0, len(sessions), REPORT_MAX):  # the route takes at most REPORT_MAX a report
            part = sessions[i : i + REPORT_MAX]
            body = {"host": host, "sessions": [{"session_id": s, "error": e and e[:200]} for s, e in part]}
            self._client.post(f"{self.base}agent/captures/{rid}/deliveries", json=body).raise_for_status()

    def close(self) -> None:
        self._client.close()


class KafkaRequests:
    """The backend's control topic ``<prefix>.captures`` (``gpufl.backend.capture_topic``), for agents that
    ship over Kafka. Each agent reads the whole topic (it must see every request, not a share), from the start,
    and keeps the open requests for its host made after ``since_ns``. Deliveries are reported on the topic
    ``<prefix>.capture-deliveries`` (one message a report, as the HTTP route's body plus ``request_id``), which
    the backend's Kafka bridge stores after the same checks as the route."""

    def __init__(self, brokers: str, prefix: str, host: str, settings: dict[str, str] | None = None) -> None:
        self.topic = f"{prefix}.captures"
        self.deliveries_topic = f"{prefix}.capture-deliveries"
        self.host = host
        self._conf: dict[str, Any] = {**(settings or {}), "bootstrap.servers": brokers}
        self._consumer: Any = None
        self._producer: Any = None

    def _connect(self) -> None:
        """On the poller's thread, at its first poll (and again after a failure): brokers that are down when
        the agent starts must not stop the agent, which ships through them too and retries."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
        from confluent_kafka.admin import AdminClient, NewTopic

        conf = self._conf
        # The topic's one partition is assigned, not joined through a group: a group's join and rebalance took
        # 25 s on Tansu, and every agent reads every request anyway. Made here too when missing (as by the
        # backend at its first request), so the assignment has a partition to read from the start.
        try:
            admin = AdminClient(conf)
            have = admin.list_topics(timeout=10).topics
            missing = [
                NewTopic(t, num_partitions=1) for t in (self.topic, self.deliveries_topic) if t not in have
            ]
            if missing:
                for fut in admin.create_topics(missing).values():
                    try:
                        fut.result(timeout=10)
                    except Exception as e:  # made meanwhile by the backend or another agent
                        if "exist" not in str(e).lower():
                            raise
            consumer = Consumer(
                {
                    **conf,
                    "group.id": f"gpufl-agent-captures-{self.host}",  # librdkafka wants one; never joined
                    "enable.auto.commit": False,
                }
            )
            consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
            producer = Producer({**conf, "acks": "all"})
        except KafkaException as e:
            raise ConnectionError(f"Kafka brokers {conf['bootstrap.servers']}: {e}") from None
        self._consumer, self._producer = consumer, producer

    def poll(self, host: str, since_ns: int, wait_s: float) -> list[dict[str, Any]]:
        if self._consumer is None:
            self._connect()
        now = time.time_ns()
        out = []
        for m in self._consumer.consume(num_messages=100, timeout=min(wait_s, 1.0)):
            err, value = m.error(), m.value()
            if err is not None or value is None:
                log.debug("remote capture: %s", err)
                continue
            try:
                req = json.loads(value)
            except ValueError:
                continue
            if not isinstance(req, dict):
                continue
            open_ = req.get("created_ns", 0) > since_ns and req.get("expires_ns", 0) > now
            if open_ and fnmatch.fnmatchcase(host, str(req.get("host_glob", ""))):
                out.append(req)
        return out

    def report(self, rid: str, host: str, sessions: list[tuple[str, str | None]]) -> None:
        """Publish the report and wait for the brokers' ack; one that cannot be published is logged (the
        sessions' own answers still arrive through ingest)."""
        errors: list[str] = []
        try:
            for i in range(0, len(sessions), REPORT_MAX):
                part = sessions[i : i + REPORT_MAX]
                body = {
                    "request_id": rid, "host": host,
                    "sessions": [{"session_id": s, "error": e and e[:200]} for s, e in part],
                }  # fmt: skip
                self._producer.produce(
                    self.deliveries_topic,
                    key=rid.encode(),
                    value=json.dumps(body).encode(),
                    on_delivery=lambda err, _msg: errors.append(str(err)) if err else None,
                )
            if self._producer.flush(10):
                errors.append("not acknowledged in 10 s")
        except Exception as e:  # never end the agent's poller over a report
            errors.append(f"{type(e).__name__}: {e}")
        if errors:
            log.warning("remote capture %s: delivery report not published: %s", rid, "; ".join(errors))

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        if self._producer is not None:
            self._producer.flush(5)


def write_control_file(folder: str, request: dict[str, Any]) -> str:
    """Write the control file atomically: a reader sees the old file or the new one, never a part."""
    path = os.path.join(folder, CONTROL_FILE)
    tmp = os.path.join(folder, f".{CONTROL_FILE}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(request, f)
    os.replace(tmp, path)
    return path


class RemoteCapture:
    """Hands capture requests on to the live sessions of ``folder`` on this host. ``run`` loops until
    ``stop``; ``handle`` acts on one request (tests call it directly)."""

    def __init__(
        self,
        folder: str,
        requests: Requests,
        host: str | None = None,
        *,
        gone: Callable[[WriterInfo], bool] = liveness.writer_gone,
    ) -> None:
        self.folder = folder
        self.requests = requests
        self.host = host or socket.gethostname()
        self.gone = gone
        self.since_ns = time.time_ns()  # requests made before the agent started are not its to hand on
        self.stop_event = threading.Event()
        self.handled = 0
        self._last_write = -WRITE_GAP_S
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="gpufl-agent-remote-capture", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.requests.close()

    def run(self) -> None:
        backoff = 1.0
        while not self.stop_event.is_set():
            try:
                for req in self.requests.poll(self.host, self.since_ns, LONG_POLL_S):
                    self.since_ns = max(self.since_ns, int(req["created_ns"]))
                    self.handle(req)
                backoff = 1.0
            except httpx.HTTPStatusError as e:
                if e.response.status_code in (404, 405, 501):  # a backend without the capture API (older)
                    log.warning(
                        "remote capture off: %s has no capture API (%d)",
                        e.request.url,
                        e.response.status_code,
                    )
                    return
                log.warning("remote capture: %s; trying again in %.0f s", e, backoff)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 60.0)
            except (httpx.HTTPError, OSError, ValueError, KeyError) as e:
                if self.stop_event.is_set():
                    break
                log.warning("remote capture: %s; trying again in %.0f s", e, backoff)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 60.0)

    def live_sessions(self) -> list[LiveSession]:
        """This host's sessions in the folder whose process still runs, from their session_start."""
        out = []
        for (sid, stream), segs in discovery.scan(self.folder).items():
            if stream != "device" or segs[0].index != 0:
                continue
            start = _session_start(segs[0].path)
            if start is None or start.host != self.host:
                continue
            if self.gone(WriterInfo(start.host, start.pid, start.start_ns)):
                continue
            out.append(LiveSession(sid, start.app, start.job_id))
        return sorted(out, key=lambda s: s.session_id)

    def handle(self, req: dict[str, Any]) -> list[tuple[str, str | None]]:
        """Write the control file for the sessions the request matches; report and return them."""
        live = self.live_sessions()
        match = [s for s in live if s.app == req["app"] and req.get("job_id") in (None, s.job_id)]
        if not match:
            log.info("remote capture %s: no live session of app %r here", req["id"], req["app"])
            return []
        body: dict[str, Any] = {
            "id": req["id"],
            "seconds": req["seconds"],
            "engines": req["engines"],
            "requester": req["requester"],
        }
        if len(match) == 1:
            body["session_id"] = match[0].session_id
        elif len(match) < len(live):
            body["session_ids"] = [s.session_id for s in match]
        error: str | None = None
        wait = self._last_write + WRITE_GAP_S - time.monotonic()
        if wait > 0:
            self.stop_event.wait(wait)
        try:
            write_control_file(self.folder, body)
            self._last_write = time.monotonic()
        except OSError as e:
            error = f"{type(e).__name__}: {e}"
            log.warning("remote capture %s: cannot write the control file: %s", req["id"], error)
        delivered = [(s.session_id, error) for s in match]
        self.requests.report(req["id"], self.host, delivered)
        self.handled += 1
        log.info("remote capture %s: handed to %d session(s)", req["id"], len(match))
        return delivered


def _session_start(path: str) -> SessionStart | None:
    try:
        with open(path, "rb") as f:
            line = f.readline(1 << 20)
        rec = decode(line)
    except (OSError, ContractError, msgspec.DecodeError):
        return None
    return rec if isinstance(rec, SessionStart) else None
