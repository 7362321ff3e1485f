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

import gzip
import hashlib
import logging
import os
import shutil
import sys
import tempfile
from typing import Any

from gpufl.agent.archiver import META_GZ_SHA256, META_SHA256, s3_client
from gpufl.agent.config import Config
from gpufl.agent.metrics import Metrics
from gpufl.agent.runner import Agent, Settings
from gpufl.agent.sinks.base import Fatal, Retryable
from gpufl.contract.events import STREAMS, parse_segment_name

log = logging.getLogger("gpufl.agent")


class ReplayError(Exception):
    """An archived session that cannot be read: a damaged object, nothing under the URL, or (``unreachable``)
    the S3 server or its credentials failing; the message says which."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, ``some/prefix/``); the prefix is "" for a whole bucket."""
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


def fetch(client: Any, url: str, dest: str, endpoint: str) -> list[str]:
    """``download`` of the archived session at ``url``, each failure one ``ReplayError`` in words (S3 errors
    classified against ``endpoint``): what the replay and ``gpufl summary|diff s3://…`` share."""
    from gpufl.agent.archiver import classify

    bucket, prefix = parse_url(url)
    try:
        names = download(client, bucket, prefix, dest)
    except ReplayError:
        raise
    except Exception as e:
        raise ReplayError(str(classify(e, endpoint, bucket)), unreachable=True) from None
    if not names:
        raise ReplayError(f"no archived segments under {url}")
    return names


def download(client: Any, bucket: str, prefix: str, dest: str) -> list[str]:
    """Every archived segment under ``prefix``, verified and decompressed into ``dest``. Returns names."""
    names = []
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for obj in page.get("Contents", []):
            key = obj["Key"]
            base = key.rsplit("/", 1)[-1]
            if not base.endswith(".gz") or parse_segment_name(base[:-3]) is None:
                continue  # not an archived segment (another tool's object under the same prefix)
            got = client.get_object(Bucket=bucket, Key=key)
            gz = got["Body"].read()
            meta = got.get("Metadata", {})
            if META_GZ_SHA256 in meta and hashlib.sha256(gz).hexdigest() != meta[META_GZ_SHA256]:
                raise ReplayError(
                    f"s3://{bucket}/{key}: its bytes do not match the sha256 it was stored with"
                )
            try:
                data = gzip.decompress(gz)
            except (OSError, EOFError) as e:
                raise ReplayError(f"s3://{bucket}/{key}: not readable gzip ({e})") from None
            if META_SHA256 in meta and hashlib.sha256(data).hexdigest() != meta[META_SHA256]:
                raise ReplayError(f"s3://{bucket}/{key}: decompressed bytes do not match the archived sha256")
            name = base[:-3]
            with open(os.path.join(dest, name), "wb") as f:
                f.write(data)
            names.append(name)
    return names


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
