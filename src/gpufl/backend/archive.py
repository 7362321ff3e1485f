"""The raw-log archive seen from the backend (issue #23): its sessions listed beside the store, and an archived
session restored into the store as a job.

A restore downloads the session's segments (each checked against the sha256 it was stored with:
``gpufl.archive.read``) and feeds them to the ingest path an agent's batches take (``ingest_body``), marked as
deliberate re-delivery as the agent's ``--replay-from`` marks its batches: a session retention deleted is
re-created by the batch holding its ``session_start``, and whatever the store still holds counts as duplicates.
So the stream with segment 0 goes first, segment by segment, then the others; one batch at a time.

Jobs live in this process's memory: a backend restart forgets them (the restored records stay), and a restore
that was running stops where it was; run it again (de-duplication makes that safe).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from gpufl.archive import s3
from gpufl.archive.read import ArchivedSession, ArchiveReadError, fetch, list_sessions
from gpufl.backend.config import Settings
from gpufl.backend.ingest import BadBody, TooLarge, ingest_body
from gpufl.backend.metrics import Metrics
from gpufl.backend.store import SqlStore
from gpufl.contract.events import STREAMS, parse_segment_name

log = logging.getLogger("gpufl.backend")

WHERE_KEYS = "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or GPUFL_ARCHIVE_CREDENTIALS_FILE in the backend's environment"
BATCH_BYTES = 8 << 20
"""A restore batch's most bytes (and at most ``max_batch_records`` records): what an agent sends by default."""
NOTES_KEPT = 5
"""Rejection reasons a job keeps, the first ones (the counts cover them all)."""


class ArchiveUnavailable(Exception):
    """The archive cannot be read: ``kind`` is ``off`` (not configured), ``config`` (the backend's settings),
    or the S3 failure's (connect, auth, bucket, error); the message says what to do."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class RestoreJob:
    id: str
    session_id: str
    host: str
    app: str
    status: str = "running"
    """running, done or failed (``reason`` says why)."""
    segments: int = 0
    """Archived segments of the session (known once downloaded)."""
    segments_done: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    notes: list[str] = field(default_factory=list)
    reason: str | None = None
    started_ns: int = field(default_factory=time.time_ns)
    ended_ns: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def restore_order(names: list[str]) -> list[str]:
    """Segment names in the order a restore ingests them: first the stream that holds segment 0 (device
    first: its ``session_start`` re-creates a deleted session), then the others; each stream in index order."""
    parsed = {n: parse_segment_name(n) for n in names}
    first = next(
        (
            s
            for s in STREAMS
            if any(p is not None and p.stream == s and p.index == 0 for p in parsed.values())
        ),
        None,
    )
    rank = {s: (0 if s == first else 1 + i) for i, s in enumerate(STREAMS)}
    return sorted(
        (n for n, p in parsed.items() if p is not None),
        key=lambda n: (rank[parsed[n].stream], parsed[n].index),  # type: ignore[union-attr]
    )


def batches(data: bytes, max_records: int, max_bytes: int = BATCH_BYTES) -> list[bytes]:
    """A segment's lines cut into NDJSON bodies of at most ``max_records`` lines and about ``max_bytes``."""
    out, start, n, pos = [], 0, 0, 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl + 1
        n += 1
        pos = end
        if n >= max_records or pos - start >= max_bytes:
            out.append(data[start:pos])
            start, n = pos, 0
    if start < len(data):
        out.append(data[start:])
    return [b for b in out if b.strip()]


class Archive:
    """The archive named by the settings; ``configured`` is False without ``archive_url``."""

    def __init__(self, settings: Settings, store: SqlStore, metrics: Metrics, client: Any = None) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.url = settings.archive_url
        self.endpoint = settings.archive_endpoint or "AWS S3"
        self.bucket, self.prefix = s3.parse_url(self.url) if self.url else ("", "")
        self._client = client
        self.jobs: dict[str, RestoreJob] = {}
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return self.url is not None

    def client(self) -> Any:
        if not self.configured:
            raise ArchiveUnavailable("no archive configured (GPUFL_ARCHIVE_URL=s3://BUCKET/PREFIX)", "off")
        if self._client is None:
            keys: tuple[str | None, str | None] = (None, None)
            if self.settings.archive_credentials_file is not None:
                try:
                    keys = s3.read_credentials_file(str(self.settings.archive_credentials_file))
                except ValueError as e:
                    raise ArchiveUnavailable(f"GPUFL_ARCHIVE_CREDENTIALS_FILE: {e}", "config") from None
            try:
                self._client = s3.client(self.settings.archive_endpoint, self.settings.archive_region, *keys)
            except Exception as e:  # botocore's ValueError for a malformed endpoint URL, ...
                raise ArchiveUnavailable(f"archive settings: {e}", "config") from None
        return self._client

    def sessions(self) -> list[tuple[ArchivedSession, bool]]:
        """Every archived session, with whether the store holds it, in key order."""
        c = self.client()
        try:
            found = list_sessions(c, self.bucket, self.prefix)
        except Exception as e:
            err = s3.classify(e, self.endpoint, self.bucket, WHERE_KEYS)
            raise ArchiveUnavailable(f"archive {self.url}: {err}", err.kind) from None
        present = self.store.present_sessions(sorted({s.session_id for s in found}))
        return [(s, s.session_id in present) for s in found]

    def find(self, session_id: str, host: str | None, app: str | None) -> list[ArchivedSession]:
        return [
            s
            for s, _ in self.sessions()
            if s.session_id == session_id and host in (None, s.host) and app in (None, s.app)
        ]

    def start_restore(self, session: ArchivedSession) -> RestoreJob:
        """A job restoring ``session`` in a thread of its own; the running job of the same session if any."""
        with self._lock:
            for j in self.jobs.values():
                if j.status == "running" and (j.host, j.app, j.session_id) == (
                    session.host,
                    session.app,
                    session.session_id,
                ):
                    return j
            job = RestoreJob(uuid.uuid4().hex[:16], session.session_id, session.host, session.app)
            self.jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, session), name=f"restore-{job.id}", daemon=True).start()
        return job

    def _run(self, job: RestoreJob, session: ArchivedSession) -> None:
        work = tempfile.mkdtemp(prefix="gpufl-restore-")
        try:
            url = f"s3://{self.bucket}/{session.prefix}"
            names = restore_order(fetch(self.client(), url, work, self.endpoint, where_keys=WHERE_KEYS))
            job.segments = len(names)
            for name in names:
                self._ingest_segment(job, os.path.join(work, name), name)
                job.segments_done += 1
            job.status = "done"
            log.info(
                "restore %s: session %s from %s: %d stored, %d duplicates, %d rejected",
                job.id,
                job.session_id,
                url,
                job.stored,
                job.duplicates,
                job.rejected,
            )
        except (ArchiveReadError, ArchiveUnavailable) as e:
            job.status, job.reason = "failed", str(e)
        except Exception as e:  # the store failing, ...: the job says so rather than dying silently
            log.exception("restore %s failed", job.id)
            job.status, job.reason = "failed", f"{type(e).__name__}: {e}"
        finally:
            job.ended_ns = time.time_ns()
            shutil.rmtree(work, ignore_errors=True)

    def _ingest_segment(self, job: RestoreJob, path: str, name: str) -> None:
        stream = parse_segment_name(name).stream  # type: ignore[union-attr]
        with open(path, "rb") as f:
            data = f.read()
        # Notes name a refused record by its number in the segment (blank lines, which ingest skips, not
        # counted): ``first`` is the batch's first record's.
        first = 1
        for body in batches(data, self.settings.max_batch_records):
            records = sum(1 for line in body.split(b"\n") if line.strip())
            try:
                res = ingest_body(
                    self.store, stream, body, False, self.settings.max_batch_records, redeliver=True
                )
            except (BadBody, TooLarge) as e:
                job.rejected += records
                self._note(job, f"{name}: records {first}-{first + records - 1}: {e}")
                first += records
                continue
            job.stored += res.stored
            job.duplicates += res.duplicates
            job.rejected += len(res.rejected)
            self.metrics.records.labels("stored", stream).inc(res.stored)
            self.metrics.records.labels("duplicate", stream).inc(res.duplicates)
            self.metrics.records.labels("rejected", stream).inc(len(res.rejected))
            for r in res.rejected:
                seq = "" if r.seq is None else f" (seq {r.seq})"  # a record too broken to read has none
                self._note(job, f"{name}: record {first + r.index}{seq}: {r.reason}")
            first += records

    @staticmethod
    def _note(job: RestoreJob, text: str) -> None:
        if len(job.notes) < NOTES_KEPT:
            job.notes.append(text)
