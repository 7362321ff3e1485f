"""``gpufl-agent``: command-line entry point.

Exit codes: 0 done (``--exit-when-idle``, or stopped by SIGTERM/SIGINT), 1 unexpected failure,
2 bad flags or configuration, 3 target unreachable on start, 4 target refused us (token, URL, topic).
Every failure is one clear line on stderr, never a traceback.
"""

from __future__ import annotations

import logging
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Sequence

from gpufl.agent.archiver import ArchiveError, Archiver, ArchiveSettings
from gpufl.agent.config import Config, ConfigError, parse
from gpufl.agent.cursor import Cursor, CursorError
from gpufl.agent.gpumetrics import SystemMetrics
from gpufl.agent.metrics import Metrics
from gpufl.agent.remote import HttpRequests, KafkaRequests, RemoteCapture
from gpufl.agent.runner import Agent, Settings
from gpufl.agent.sinks.base import Fatal, Retryable, Sink

log = logging.getLogger("gpufl.agent")

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_UNREACHABLE, EXIT_REFUSED = 0, 1, 2, 3, 4


def make_sink(cfg: Config, redeliver: bool = False) -> Sink:
    """``redeliver``: mark every batch as deliberate re-delivery (HTTP only: Kafka records carry no mark)."""
    if cfg.type == "http":
        from gpufl.agent.sinks.http import HttpSink

        assert cfg.url is not None
        return HttpSink(
            cfg.url, cfg.token, cfg.compression, cfg.gzip_level, ca_bundle=cfg.ca_bundle, redeliver=redeliver
        )
    from gpufl.agent.sinks.kafka import KafkaSink

    assert cfg.brokers is not None
    return KafkaSink(
        cfg.brokers,
        cfg.topic_prefix,
        compression=cfg.compression,
        partitions=cfg.topic_partitions,
        extra=cfg.kafka_settings,
        batch_bytes=cfg.batch_bytes,
        probe_timeout=min(cfg.connect_timeout, 10.0),
    )


def archive_settings(cfg: Config) -> ArchiveSettings:
    assert cfg.archiver_endpoint is not None
    return ArchiveSettings(
        endpoint=cfg.archiver_endpoint,
        bucket=cfg.archiver_bucket or "",
        region=cfg.archiver_region,
        prefix=cfg.archiver_prefix,
        access_key=cfg.archiver_access_key,
        secret_key=cfg.archiver_secret_key,
        idle_s=cfg.archiver_idle,
        delete=cfg.archiver_delete,
        multipart_bytes=cfg.archiver_multipart_bytes,
        poll_interval=max(cfg.poll_interval, 0.1),
    )


def _probe_archive(archiver: Archiver, timeout: float) -> None:
    """Archive only: the bucket is the target, so an unreachable one stops the start like a backend."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            archiver.probe()
            return
        except ArchiveError as e:
            if e.kind in ("auth", "bucket"):
                raise Fatal(str(e)) from None
            if time.monotonic() + 0.5 > deadline:
                raise Retryable(f"{e} (for {timeout:.0f}s)") from None
            time.sleep(0.5)


def _archive_only(cfg: Config) -> int:
    metrics = Metrics()
    if cfg.metrics_port is not None:
        metrics.serve(cfg.metrics_port, cfg.metrics_addr)
    archiver = Archiver(archive_settings(cfg), cfg.folder, Cursor(cfg.cursor_file), metrics)
    _probe_archive(archiver, cfg.connect_timeout)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("archiving %s → %s/%s (archive only)", cfg.folder, cfg.archiver_endpoint, cfg.archiver_bucket)
    while not stop.is_set():
        archiver.run_pass(forget=True)
        if cfg.exit_when_idle and archiver.pending == 0:
            if cfg.archiver_delete:
                archiver.run_pass(forget=True)  # removal of what the last pass archived waits for a pass
            break
        stop.wait(cfg.poll_interval)
    archiver.cursor.save()
    return EXIT_OK


def _probe(sink: Sink, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        try:
            sink.probe()
            return
        except Retryable as e:
            wait = max(delay, e.retry_after or 0.0)
            if time.monotonic() + wait > deadline:
                raise Retryable(f"{sink.name} unreachable after {timeout:.0f}s: {e}") from None
            time.sleep(wait)
            delay = min(delay * 2, 2.0)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = parse(argv)
    except ConfigError as e:
        print(f"gpufl-agent: error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(
        level=cfg.log_level.upper(),
        format="%(asctime)s gpufl-agent %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request at INFO: far too much at thousands of batches a minute.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for w in cfg.warnings:
        log.warning("%s", w)
    if cfg.replay_from:
        from gpufl.agent.replay import replay

        return replay(cfg)
    if cfg.type == "none":
        try:
            return _archive_only(cfg)
        except Fatal as e:
            print(f"gpufl-agent: error: {e}", file=sys.stderr)
            return EXIT_REFUSED
        except Retryable as e:
            print(f"gpufl-agent: error: {e}", file=sys.stderr)
            return EXIT_UNREACHABLE
        except (CursorError, OSError) as e:
            print(f"gpufl-agent: error: {e}", file=sys.stderr)
            return EXIT_CONFIG
    sink: Sink | None = None
    archiver: Archiver | None = None
    try:
        sink = make_sink(cfg)
        _probe(sink, cfg.connect_timeout)
        metrics = Metrics()
        system_metrics = SystemMetrics(cfg.gpu_metrics, cfg.gpu_metrics_ttl)
        metrics.registry.register(system_metrics)
        if cfg.metrics_port is not None:
            metrics.serve(cfg.metrics_port, cfg.metrics_addr)
        agent = Agent(
            Settings(
                folder=cfg.folder,
                cursor_file=cfg.cursor_file,
                dead_letter_file=cfg.dead_letter_file,
                exit_when_idle=cfg.exit_when_idle,
                poll_interval=cfg.poll_interval,
                batch_records=cfg.batch_records,
                batch_bytes=cfg.batch_bytes,
                read_bytes=min(cfg.batch_bytes, 1 << 20),
                senders=cfg.senders,
                queue_batches=cfg.queue_batches,
                status_interval=cfg.status_interval,
            ),
            sink,
            metrics,
            on_system=system_metrics.observe,
        )
        if cfg.archiver_endpoint:
            cursor = agent.cursor
            archiver = Archiver(
                archive_settings(cfg),
                cfg.folder,
                cursor,
                metrics,
                delivered=lambda seg, size: cursor.get(seg.name) >= size,
            )
    except Fatal as e:
        print(f"gpufl-agent: error: {e}", file=sys.stderr)
        if sink is not None:
            sink.close()
        return EXIT_REFUSED
    except Retryable as e:
        print(f"gpufl-agent: error: {e}", file=sys.stderr)
        if sink is not None:
            sink.close()
        return EXIT_UNREACHABLE
    except (CursorError, OSError) as e:
        print(f"gpufl-agent: error: {e}", file=sys.stderr)
        if sink is not None:
            sink.close()
        return EXIT_CONFIG

    stopping = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stopping.set()
        agent.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("tailing %s → %s", cfg.folder, sink.name)
    if archiver is not None:
        log.info("archiving closed segments → %s/%s", cfg.archiver_endpoint, cfg.archiver_bucket)
        archiver.start()
    remote = _remote_capture(cfg)
    if remote is not None:
        remote.start()
    try:
        code = agent.run()
        if archiver is not None:
            archiver.stop()
            if code == EXIT_OK and cfg.exit_when_idle:
                # everything delivered: now everything closed must be archived too (retried until it is)
                archiver.stop_event.clear()
                archiver.drain(stopping)
        return code
    except Exception as e:  # last resort: one line, not a traceback (details at debug level)
        log.debug("agent failed", exc_info=True)
        print(f"gpufl-agent: error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if archiver is not None:
            archiver.stop()
        if remote is not None:
            remote.stop()


def _remote_capture(cfg: Config) -> RemoteCapture | None:
    """The remote-capture poller (off with --no-remote-capture or --exit-when-idle)."""
    if cfg.no_remote_capture or cfg.exit_when_idle:
        return None
    if cfg.type == "kafka" and cfg.brokers:
        host = socket.gethostname()
        log.info("remote capture: handing this host's capture requests (topic %s.captures) to the sessions in %s",
                 cfg.topic_prefix, cfg.folder)  # fmt: skip
        return RemoteCapture(cfg.folder, KafkaRequests(cfg.brokers, cfg.topic_prefix, host), host)
    if cfg.type != "http" or cfg.url is None:
        return None
    verify: ssl.SSLContext | bool = True
    if cfg.ca_bundle is not None:
        verify = ssl.create_default_context(cafile=cfg.ca_bundle)
    try:
        requests = HttpRequests(cfg.url, cfg.token, verify)
    except ValueError as e:
        log.warning("remote capture off: %s", e)
        return None
    log.info("remote capture: handing this host's capture requests to the sessions in %s", cfg.folder)
    return RemoteCapture(cfg.folder, requests)


if __name__ == "__main__":
    sys.exit(main())
