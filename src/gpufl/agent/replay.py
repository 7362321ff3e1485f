"""``gpufl-agent --replay-from=s3://BUCKET/PREFIX[/host/app/session]``: re-deliver archived sessions.

The archived segments under the prefix are downloaded, checked against the sha256 in their metadata,
decompressed into a private folder under their original names, and delivered by the ordinary agent
(same batching, retries, dead letters), with a fresh cursor. Over HTTP every batch carries
``X-Gpufl-Redeliver: 1`` (docs/ingest-protocol.md), so a session the store's retention deleted is
re-created; the store de-duplicates everything it still holds.

A deleted session is re-created by the first marked batch that holds its ``session_start`` (seq 0 of
every stream); a batch of it that arrives earlier is refused. So delivery runs in two phases: first one
stream per session (the one with segment 0; device if present), one batch at a time, in order; then
everything, with the usual concurrency (what phase one delivered is not sent again: one cursor).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile

from gpufl.agent.archiver import s3_client
from gpufl.agent.config import Config
from gpufl.agent.metrics import Metrics
from gpufl.agent.runner import Agent, Settings
from gpufl.agent.sinks.base import Fatal, Retryable
from gpufl.archive.read import ArchiveReadError, download, fetch  # noqa: F401 - download: re-exported
from gpufl.archive.s3 import parse_url
from gpufl.contract.events import STREAMS, parse_segment_name

log = logging.getLogger("gpufl.agent")


ReplayError = ArchiveReadError
"""An archived session that cannot be read (``gpufl.archive.read``, shared with the backend)."""


def first_streams(names: list[str]) -> list[str]:
    """The segments of one stream per session, the one that has segment 0 (device first)."""
    by_session: dict[str, dict[str, list[str]]] = {}
    for n in names:
        p = parse_segment_name(n)
        assert p is not None
        by_session.setdefault(p.session_id, {}).setdefault(p.stream, []).append(n)
    out = []
    for sid, streams in by_session.items():
        with_zero = [
            s
            for s in STREAMS
            if any(parse_segment_name(n).index == 0 for n in streams.get(s, []))  # type: ignore[union-attr]
        ]
        if not with_zero:
            log.warning(
                "replay: session %s has no segment 0 archived: a deleted session cannot be re-created", sid
            )
            continue
        out.extend(streams[with_zero[0]])
    return out


def _settings(cfg: Config, folder: str, work: str, senders: int) -> Settings:
    return Settings(
        folder=folder,
        cursor_file=os.path.join(work, "cursor"),
        dead_letter_file=os.path.join(work, "deadletter.jsonl"),
        exit_when_idle=True,
        poll_interval=0.05,
        batch_records=cfg.batch_records,
        batch_bytes=cfg.batch_bytes,
        read_bytes=min(cfg.batch_bytes, 1 << 20),
        senders=senders,
        queue_batches=cfg.queue_batches,
        status_interval=cfg.status_interval,
    )


def replay(cfg: Config) -> int:
    from gpufl.agent.archiver import ArchiveSettings
    from gpufl.agent.cli import EXIT_ERROR, EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, _probe, make_sink

    assert cfg.replay_from is not None and cfg.archiver_endpoint is not None
    bucket = parse_url(cfg.replay_from)[0]
    client = s3_client(
        ArchiveSettings(
            cfg.archiver_endpoint,
            bucket,
            cfg.archiver_region,
            access_key=cfg.archiver_access_key,
            secret_key=cfg.archiver_secret_key,
        )
    )
    work = tempfile.mkdtemp(prefix="gpufl-replay-")
    keep = False
    try:
        everything = os.path.join(work, "all")
        first = os.path.join(work, "first")
        os.mkdir(everything)
        os.mkdir(first)
        try:
            names = fetch(client, cfg.replay_from, everything, cfg.archiver_endpoint)
        except ReplayError as e:
            print(f"gpufl-agent: error: {e}", file=sys.stderr)
            return EXIT_UNREACHABLE if e.unreachable else EXIT_ERROR
        for n in first_streams(names):
            os.link(os.path.join(everything, n), os.path.join(first, n))
        log.info("replay: %d segments from %s (%s)", len(names), cfg.replay_from, "re-delivery")
        metrics = Metrics()
        for folder, senders in ((first, 1), (everything, cfg.senders)):
            sink = make_sink(cfg, redeliver=True)
            try:
                _probe(sink, cfg.connect_timeout)
            except Fatal as e:
                sink.close()
                print(f"gpufl-agent: error: {e}", file=sys.stderr)
                return EXIT_REFUSED
            except Retryable as e:
                sink.close()
                print(f"gpufl-agent: error: {e}", file=sys.stderr)
                return EXIT_UNREACHABLE
            code = Agent(_settings(cfg, folder, work, senders), sink, metrics).run()
            if code != EXIT_OK:
                return code
        keep = metrics.total_dead > 0 or metrics.total_refused > 0
        log.info("replay done: %s", metrics.status_line())
        if keep:
            log.warning("replay: dead letters or refused records; kept %s for inspection", work)
        return EXIT_OK
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
